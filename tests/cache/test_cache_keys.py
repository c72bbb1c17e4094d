"""Keys are checked in one place (`ResultCache.folder`), whichever path reaches the cache: the
worker's protocol, the command line's `cache lookup` and the store itself (issue 11: F3)."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache.store import RESULT, ResultCache
from worker.errors import InputError


def outside_entry(folder: Path) -> Path:
    """A folder outside the cache that looks like an entry: a record and a result."""
    folder.mkdir(parents=True)
    (folder / RESULT).write_bytes(b"not yours")
    (folder / "record.json").write_text(json.dumps({"files": {RESULT: 9}, "last_used": 1.0}))
    return folder


@pytest.mark.parametrize("key", ["../outside", "ABSOLUTE", "..", ".", "", "ab/../../outside"])
def test_cache_lookup_refuses_what_is_not_a_key(run_cli, tmp_path: Path, key: str) -> None:
    entry = outside_entry(tmp_path / "outside")
    before = (entry / "record.json").read_text()
    cache = tmp_path / "cache"
    key = str(entry) if key == "ABSOLUTE" else key
    out = tmp_path / "out.tif"
    result = run_cli("cache", "lookup", key, "-o", out, "--cache-dir", cache)
    assert result.returncode == 1, result.stdout
    assert "is not a cache key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert not out.exists()
    assert (entry / "record.json").read_text() == before


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_only_keys_name_entries(key: str) -> None:
    cache = ResultCache(Path(os.environ.get("TMPDIR", "/tmp")) / "dtd-key-check")
    if key and set(key) <= set("0123456789abcdef") and 16 <= len(key) <= 128:
        assert cache.folder(key) == cache.root / key
        return
    for operation in (cache.entry, cache.remove, cache.lookup, cache.folder):
        with pytest.raises(InputError):
            operation(key)


@pytest.mark.parametrize(
    ("action", "name", "message"),
    [
        ("lookup", "result.png", "must be a .tif or .tiff file"),
        ("kernel", "kernel.npy", "its name must be NAME.png"),
    ],
)
def test_cache_copies_are_named_as_what_they_hold(
    run_cli, tmp_path: Path, action: str, name: str, message: str
) -> None:
    # A result is a TIFF file, a kernel's picture a PNG: `cache kernel -o k.npy` replaced the
    # user's kernel with a PNG, `cache lookup -o r.png` wrote a TIFF under a PNG's name.
    mine = tmp_path / name
    mine.write_bytes(b"the user's own file")
    result = run_cli("cache", action, "ab" * 16, "-o", mine, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert mine.read_bytes() == b"the user's own file"
