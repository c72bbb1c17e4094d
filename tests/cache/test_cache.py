"""The on-disk cache: whole entries or none, LRU under a cap, a free-disk floor, clean-up, keys."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from service_support import run_dt, tiny_disk

from cache.key import MAX_SIDECAR, cache_key, history_fingerprint
from cache.store import MAX_RECORD_BYTES, PSF, PSF_PNG, RESULT, CacheLimits, ResultCache
from tests.permissions import obey_permissions
from tests.tiffs import write_tiff
from worker.errors import InputError, NotCached
from worker.files import icc

DATA = Path(__file__).parent.parent / "data"
SIDECAR = DATA / "darktable_sidecar.xmp"


def kernel_of(cache: ResultCache, key: str) -> Path | None:
    """The cached PSF (`.npy`) for `key`, kept even after results are cleaned, or None."""
    entry = cache.entry(key)
    return entry.file(PSF) if entry else None


def make_files(folder: Path, result_bytes: int = 1000) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {RESULT: folder / "r.tif", PSF: folder / "k.npy", PSF_PNG: folder / "k.png"}
    files[RESULT].write_bytes(os.urandom(result_bytes))
    files[PSF].write_bytes(b"kernel")
    files[PSF_PNG].write_bytes(b"png")
    return files


def test_a_key_that_is_none_stores_nothing(tmp_path: Path) -> None:
    """`store` under a path instead of a key is refused before anything is written (until
    engine 0.3.23 its staging folder stayed in the cache, and room was made for it)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    kept = cache.store("a" * 16, make_files(tmp_path / "one"), {})
    cache.limits = CacheLimits(max_bytes=1500, min_free_bytes=0)  # room for one entry only
    with pytest.raises(InputError, match="is not a cache key"):
        cache.store("../x", make_files(tmp_path / "src"), {})
    assert sorted(path.name for path in cache.root.iterdir()) == [kept.key]


def test_store_then_lookup_copies_the_result(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    files = make_files(tmp_path / "src")
    entry = cache.store("a" * 16, files, {"parameters": {"blur": 9}})
    assert entry.file(RESULT).read_bytes() == files[RESULT].read_bytes()
    assert cache.lookup("b" * 16) is None
    out = tmp_path / "out.tif"
    assert cache.lookup("a" * 16, out) == out
    assert out.read_bytes() == files[RESULT].read_bytes()
    assert kernel_of(cache, "a" * 16).read_bytes() == b"kernel"
    entry = cache.entry("a" * 16)
    assert entry.record["parameters"] == {"blur": 9}
    assert entry.record["files"][RESULT] == 1000
    assert entry.last_used >= entry.record["created"]


def test_the_cap_evicts_the_least_recently_used(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c", CacheLimits(max_bytes=2500, min_free_bytes=0))
    files = make_files(tmp_path / "src", result_bytes=1000)
    for key in ("1" * 16, "2" * 16):
        cache.store(key, files, {})
        time.sleep(0.01)
    cache.lookup("1" * 16)  # now 2 is the least recently used
    cache.store("3" * 16, files, {})
    assert [entry.key for entry in cache.entries()] == ["1" * 16, "3" * 16]
    with pytest.raises(NotCached, match="larger than the cache's cap"):
        cache.store("4" * 16, make_files(tmp_path / "big", result_bytes=3000), {})


def test_the_free_disk_floor_refuses_and_says_so(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=free + 2**30))
    with pytest.raises(NotCached, match="must stay free"):
        cache.store("a" * 16, make_files(tmp_path / "src"), {})
    assert cache.entries() == []
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize(
    ("options", "size", "message"),
    [("size=1m", 3 * 2**20, "must stay free"), ("size=8m,nr_inodes=4", 1000, "no space left")],
)
def test_a_full_disk_is_refused_and_leaves_no_half_entry(
    tmp_path: Path, options: str, size: int, message: str
) -> None:
    with tiny_disk(tmp_path / "tiny", options) as folder:
        cache = ResultCache(folder, CacheLimits(min_free_bytes=0))
        with pytest.raises(NotCached, match=message):
            cache.store("a" * 16, make_files(tmp_path / "src", result_bytes=size), {})
        assert list(folder.iterdir()) == []


def test_clean_on_exit_keeps_kernels_and_clean_empties(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    cache.store("a" * 16, make_files(tmp_path / "src"), {"parameters": {}})
    assert cache.clean(on_exit=True, keep_results=True)["results_removed"] == 0
    assert cache.lookup("a" * 16) is not None
    report = cache.clean(on_exit=True)
    assert report == {"entries_removed": 0, "results_removed": 1, "bytes_freed": 1000}
    assert cache.lookup("a" * 16) is None
    assert kernel_of(cache, "a" * 16).read_bytes() == b"kernel"
    assert cache.stats()["kernels"] == 1
    report = cache.clean()  # (an entry left with its kernels only)
    assert report["entries_removed"] == 1 and report["results_removed"] == 0
    assert cache.entries() == []
    # Emptied, the cache counts the results that went with their entries (until engine 0.3.58,
    # none: "removed 1 entries, 0 results" for a full result removed).
    cache.store("b" * 16, make_files(tmp_path / "src2"), {"parameters": {}})
    report = cache.clean()
    assert report == {"entries_removed": 1, "results_removed": 1, "bytes_freed": 1009}


WRITER = """
import sys
from pathlib import Path
from cache.store import CacheLimits, ResultCache
cache = ResultCache(sys.argv[1], CacheLimits(min_free_bytes=0))
files = {"result.tif": Path(sys.argv[2]), "psf.npy": Path(sys.argv[3])}
print("ready", flush=True)
n = 0
while True:
    cache.store(f"{n:016x}", files, {"n": n})
    n += 1
"""


def assert_whole_entries(root: Path) -> None:
    """What a reader sees: every entry under a key is whole."""
    cache = ResultCache(root)
    for child in root.iterdir():
        if not child.name.startswith("."):
            entry = cache.entry(child.name)
            assert entry is not None
            assert entry.file(RESULT).stat().st_size == 300_000
            assert entry.file(PSF).read_bytes() == b"kernel"


def test_a_writer_killed_at_any_instant_leaves_whole_entries_only(tmp_path: Path) -> None:
    # Sources on another file system (when there is one), so that entries are copied, not linked.
    shm = Path("/dev/shm")
    source = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path / "src"
    try:
        files = make_files(source, result_bytes=300_000)
        root = tmp_path / "c"
        rng = np.random.default_rng(1)
        for _ in range(6):
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(root), str(files[RESULT]), str(files[PSF])],
                stdout=subprocess.PIPE,
                cwd=Path(__file__).parent.parent.parent,
            )
            writer.stdout.readline()
            deadline = time.monotonic() + rng.uniform(0.0, 0.2)
            while time.monotonic() < deadline:  # a concurrent reader
                assert_whole_entries(root)
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            writer.stdout.close()
            assert_whole_entries(root)
            ResultCache(root).remove_stale()
            assert not [c for c in root.iterdir() if c.name.startswith(".")]
    finally:
        shutil.rmtree(source, ignore_errors=True)


# ---- keys ---------------------------------------------------------------------------------


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = SIDECAR.read_text()
    assert old in text
    path = tmp_path / f"edit{abs(hash(new))}.xmp"
    path.write_text(text.replace(old, new))
    return path


def test_history_fingerprint_reads_the_history_blocks() -> None:
    found = history_fingerprint(SIDECAR)
    assert found["history_end"] == ["4"]
    assert found["iop_order_version"] == ["2"]
    assert 'operation="colorin"' in found["history"][0]
    assert "masks_history" in found["masks_history"][0]


def test_every_description_of_the_sidecar_counts(tmp_path: Path) -> None:
    # A sidecar split into two rdf:Description elements (as exiftool may write it): an edit in
    # the first kept the key until engine 0.3.20, when only the last one's properties counted.
    text = SIDECAR.read_text()
    second = (
        '<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" '
        'darktable:history_end="0"/></rdf:RDF>'
    )
    assert text.count("</rdf:RDF>") == 1 and 'darktable:history_end="4"' in text
    split = tmp_path / "split.xmp"
    split.write_text(text.replace("</rdf:RDF>", second))
    edited = tmp_path / "edited.xmp"
    edited.write_text(split.read_text().replace('history_end="4"', 'history_end="3"'))
    assert history_fingerprint(split)["history_end"] == ["4", "0"]
    assert cache_key(SIDECAR, {}, "1", sidecar=split) != cache_key(SIDECAR, {}, "1", sidecar=edited)


def test_the_key_follows_edits_but_not_ratings_or_tags(tmp_path: Path) -> None:
    image = tmp_path / "pic.tif"
    image.write_bytes(b"raw file")
    params = {"blur": 9, "settings": {"tolerance": 5.0}}

    def key(sidecar: Path = SIDECAR, **changes: object) -> str:
        arguments = {"parameters": params, "algorithm_version": "1", "sidecar": sidecar}
        return cache_key(image, **{**arguments, **changes})

    base = key()
    assert len(base) == 64 and base == key()
    same = [
        edited(tmp_path, 'xmp:Rating="1"', 'xmp:Rating="5"'),
        edited(tmp_path, "<rdf:li>holiday</rdf:li>", "<rdf:li>work</rdf:li>"),
        edited(tmp_path, 'darktable:change_timestamp="63835412399000000"', ""),
        # text beside the history, not in it ("internal error: ParseError" until 0.3.20)
        edited(tmp_path, "</darktable:history>", "</darktable:history>junk"),
    ]
    for sidecar in same:
        assert key(sidecar) == base, sidecar.read_text()[:0]
    different = [
        edited(tmp_path, 'darktable:params="ffffffff"', 'darktable:params="00000000"'),
        edited(tmp_path, 'darktable:history_end="4"', 'darktable:history_end="3"'),
        edited(tmp_path, 'iop_order_version="2"', 'iop_order_version="3"'),
        edited(tmp_path, "<rdf:Seq/>", "<rdf:Seq><rdf:li darktable:mask_num='1'/></rdf:Seq>"),
    ]
    for sidecar in different:
        assert key(sidecar) != base
    assert key(duplicate=1) != base
    assert key(export="bpp=32 profile=linear") != base
    assert key(algorithm_version="2") != base
    assert key(parameters={**params, "blur": 11}) != base
    os.utime(image, ns=(1, 1))
    assert key() != base


def test_the_same_picture_named_otherwise_has_the_same_key(tmp_path: Path) -> None:
    # `key ../a.tif` and `key /abs/a.tif` (or a link to it) missed each other's results.
    (tmp_path / "sub").mkdir()
    image = tmp_path / "pic.tif"
    image.write_bytes(b"raw file")
    (tmp_path / "link.tif").symlink_to(image)
    keys = {
        cache_key(name, {}, "1", sidecar=SIDECAR)
        for name in (image, tmp_path / "sub" / ".." / "pic.tif", tmp_path / "link.tif")
    }
    assert len(keys) == 1


def test_without_a_sidecar_the_key_hashes_what_the_result_carries(tmp_path: Path) -> None:
    # The pixels and the tags a result carries or reads them by (ICC profile, caption, EXIF)
    # count; how the file stores them, and when and by what it was written, do not. Until
    # engine 0.3.20 only the pixels counted: the same samples under a linear ICC profile, or
    # with another caption, got the other file's cached result.
    pixels = np.arange(48, dtype=np.uint16).reshape(4, 4, 3)
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"

    def key_of(**tags: object) -> str:
        tifffile.imwrite(second, pixels, photometric="rgb", metadata=None, **tags)
        return cache_key(second, {}, "1")

    tifffile.imwrite(first, pixels, photometric="rgb", metadata=None, description="one")
    base = cache_key(first, {}, "1")
    assert key_of(description="one", compression="zlib", rowsperstrip=1) == base
    assert key_of(description="one", software="darktable", datetime="2026:12:02 10:00:00") == base
    # darktable writes the export's own path, and lcms the time into its profile: each export
    # anew (until engine 0.3.56 no two exports of a picture without a sidecar had one key)
    path = [(269, "s", 0, "/tmp/dt-deconvolve-1-abcdefgh/a.tif", True)]
    assert key_of(description="one", extratags=path) == base
    profile = bytearray(icc.matrix_profile())
    profile[24:36], profile[84:100] = b"\x07\xea\x00\x0c" + bytes(8), b"\xff" * 16
    profiled = key_of(description="one", iccprofile=icc.matrix_profile())
    assert key_of(description="one", iccprofile=bytes(profile)) == profiled
    assert key_of(description="two") != base
    assert key_of(description="one", iccprofile=icc.matrix_profile()) != base
    assert key_of(description="one", resolution=(300, 300), resolutionunit=2) != base
    tifffile.imwrite(second, pixels + 1, photometric="rgb", metadata=None, description="one")
    assert cache_key(second, {}, "1") != base
    write_tiff(first, pixels, exif={"Exif.Image.Artist": "Alice"})
    write_tiff(second, pixels, exif={"Exif.Image.Artist": "Bob"})
    assert cache_key(first, {}, "1") != cache_key(second, {}, "1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<x:xmpmeta", "not valid XML"),
        (b"<a/>", "no darktable history"),
        # encodings Python does not know, or cannot parse XML in: "internal error" until 0.3.20
        (b'<?xml version="1.0" encoding="bogus"?><a/>', r"not valid XML \(unknown encoding"),
        (b'<?xml version="1.0" encoding="UTF-32"?><a/>', "not valid XML"),
        (b'<?xml version="1.0" encoding="idna"?><a/>', "not valid XML"),
        (b'<?xml version="1.0" encoding="rot13"?><a/>', "not valid XML"),
        (b" " * (MAX_SIDECAR + 1), "over 32 MiB"),  # refused before it is parsed
    ],
)
def test_bad_sidecars_and_images_are_one_line_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    sidecar = tmp_path / "bad.xmp"
    sidecar.write_bytes(content)
    with pytest.raises(InputError, match=message):
        cache_key(SIDECAR, {}, "1", sidecar=sidecar)
    with pytest.raises(InputError, match="cannot read the pixels"):
        cache_key(sidecar, {}, "1")
    with pytest.raises(InputError, match="no such file"):
        cache_key(tmp_path / "missing.tif", {}, "1")
    header = tmp_path / "header.tif"  # a TIFF header, no page: tifffile returns nothing
    header.write_bytes(b"II*\x00\x08\x00\x00\x00")
    with pytest.raises(InputError, match="holds no pixels"):
        cache_key(header, {}, "1")


def test_a_sidecar_nested_too_deep_or_a_picture_that_is_no_file_is_refused_in_a_line(
    tmp_path: Path,
) -> None:
    """Until engine 0.3.56 a history nested a thousand deep was an internal error
    (RecursionError), and with a sidecar the picture itself was never checked: a folder, a
    FIFO, a device or no name at all got a key."""
    deep = tmp_path / "deep.xmp"
    nested = "<a>" * 1000 + "</a>" * 1000
    deep.write_text(
        SIDECAR.read_text().replace("<darktable:history>", "<darktable:history>" + nested, 1)
    )
    with pytest.raises(InputError, match="nests its history too deep"):
        cache_key(SIDECAR, {}, "1", sidecar=deep)
    os.mkfifo(tmp_path / "fifo")
    for picture in (tmp_path, tmp_path / "fifo", "/dev/zero"):
        with pytest.raises(InputError, match="not a regular file"):
            cache_key(picture, {}, "1", sidecar=SIDECAR)
    with pytest.raises(InputError, match="no name"):
        cache_key("", {}, "1", sidecar=SIDECAR)


def test_a_whole_entry_replaces_a_kernel_only_one(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    files = make_files(tmp_path / "src")
    cache.store("a" * 16, {PSF: files[PSF]}, {})
    kernel = kernel_of(cache, "a" * 16)
    cache.store("a" * 16, {RESULT: files[RESULT], PSF: kernel}, {})
    assert cache.lookup("a" * 16) is not None
    assert kernel_of(cache, "a" * 16).read_bytes() == b"kernel"


DAMAGED_RECORDS = [
    '{"files": {"result.tif": "abc"}}',
    '{"files": {"result.tif": -5}}',
    '{"files": {"../x": 5}}',
    '{"files": {"psf.npy": 5}, "report": "str"}',
    '{"files": {"result.tif": 10}, "report": {"psf_iterations": NaN}}',  # no reply can carry...
    '{"files": {"result.tif": 10}, "report": {"reason": "%s"}}' % ("x" * 100_000),  # ...these
    "[1, 2]",
    "garbage",
]


@pytest.mark.parametrize("damaged", DAMAGED_RECORDS)
def test_a_damaged_record_is_a_miss_that_clean_removes(tmp_path: Path, damaged: str) -> None:
    """One edited or damaged record must not break the cache for every job (until engine 0.3.9
    a record's `last_used` of "yesterday" made every store, `stats` and `clean` fail)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    bad = cache.root / ("0" * 32)
    bad.mkdir(parents=True)
    (bad / "record.json").write_text(damaged)
    (bad / RESULT).write_bytes(b"x")
    assert cache.entry("0" * 32) is None and cache.lookup("0" * 32) is None
    cache.store("a" * 16, make_files(tmp_path / "src"), {})  # evicting looks at every entry
    assert cache.stats()["entries"] == 1
    assert cache.clean() == {"entries_removed": 2, "results_removed": 1, "bytes_freed": 1009}
    assert not bad.exists()


OLD_LAST_USED = ['"yesterday"', "NaN", "1" + "0" * 400, "1.0"]  # a field no longer read


@pytest.mark.parametrize("last_used", OLD_LAST_USED)
def test_a_record_with_an_old_last_used_field_is_a_hit(tmp_path: Path, last_used: str) -> None:
    """Older releases wrote `last_used` in the record, and read it (one of "yesterday" made
    every store, `stats` and `clean` fail until engine 0.3.9): whatever it holds, the entry is
    used, and its use is its record's time."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    old = cache.root / ("0" * 32)
    old.mkdir(parents=True)
    (old / RESULT).write_bytes(b"x")
    (old / "record.json").write_text('{"files": {"result.tif": 1}, "last_used": ' + last_used + "}")
    entry = cache.entry("0" * 32)
    assert entry is not None and entry.last_used == (old / "record.json").stat().st_mtime
    assert cache.lookup("0" * 32) is not None
    cache.store("a" * 16, make_files(tmp_path / "src"), {})
    assert cache.stats()["entries"] == 2
    assert cache.clean()["entries_removed"] == 2


@contextlib.contextmanager
def within(seconds: int) -> Iterator[None]:
    """Fail the test, rather than hang it, when the block takes longer than `seconds`."""

    def timed_out(_signum: int, _frame: object) -> None:
        raise AssertionError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name", ["record.json", RESULT, PSF])
def test_a_fifo_in_an_entry_is_damage_not_a_wait(tmp_path: Path, name: str) -> None:
    """A FIFO at an entry's record or file (opening it waits for a writer, for ever) makes the
    entry damaged or the file absent: lookups miss, stats and cleaning go on, and a store
    under its key replaces it (until engine 0.3.10 each of them waited for ever, and with them
    the worker's loop: ping and shutdown unanswered)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    files = make_files(tmp_path / "src")
    key = "f" * 16
    cache.store(key, files, {})
    (cache.root / key / name).unlink()
    os.mkfifo(cache.root / key / name)
    out = tmp_path / "out.tif"
    with within(20):
        assert cache.lookup(key, out) is None or name == PSF
        assert kernel_of(cache, key) is None or name == RESULT
        cache.stats()
        cache.clean(on_exit=True)
        cache.store(key, files, {})
        assert cache.lookup(key, out) == out and out.read_bytes() == files[RESULT].read_bytes()
        cache.clean()
    assert list(cache.root.iterdir()) == []


@pytest.mark.parametrize("damage", ["empty record", "a file at the key", "a link at the key"])
def test_a_damaged_entry_gives_way_to_the_next_store(tmp_path: Path, damage: str) -> None:
    """A job whose key holds a damaged entry is stored, not failed after its work (the rename
    onto the damaged folder failed with "Directory not empty", naming the cache's temporary
    folder, and the job's output was removed); cleaning leaves nothing, not even a `.trash-`
    file, and never follows a link out of the cache."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    files = make_files(tmp_path / "src")
    key = "d" * 16
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("mine")
    if damage == "empty record":
        cache.store(key, files, {})
        (cache.root / key / "record.json").write_bytes(b"")
    elif damage == "a file at the key":
        (cache.root / key).write_text("not an entry")
    else:
        (cache.root / key).symlink_to(outside)
    assert cache.entry(key) is None and cache.lookup(key) is None
    cache.store(key, files, {})
    assert cache.has_result(key)
    cache.clean()
    assert list(cache.root.iterdir()) == [] and (outside / "keep").read_text() == "mine"


def test_a_lookup_ending_after_its_result_was_dropped_keeps_the_new_entry_true(
    tmp_path: Path,
) -> None:
    """A lookup marks its entry used after copying; if `clean --on-exit` replaced the entry by a
    kernel-only one meanwhile, the mark must not bring back the old record (it did, until
    engine 0.3.10: the entry then listed a result it did not hold, a hit that copies nothing,
    and a key that stayed so until a full clean)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    key = "e" * 16
    cache.store(key, make_files(tmp_path / "src"), {})
    read = cache.entry(key)  # the lookup has read the entry and copied its result...
    cache.drop_result(read)  # ...as `clean --on-exit` drops the result...
    cache.touch(read)  # ...and then the lookup marks it used
    assert not cache.has_result(key) and cache.lookup(key) is None
    assert kernel_of(cache, key) is not None
    assert RESULT not in cache.entry(key).record["files"]


def test_a_read_only_cache_over_its_cap_does_not_fail_the_job(tmp_path: Path) -> None:
    """Where nothing can be evicted (a read-only cache folder), storing is refused with
    `NotCached` (the job is done, with a note), not a permission error that failed the job
    and removed its output."""
    cache = ResultCache(tmp_path / "c", CacheLimits(max_bytes=1500, min_free_bytes=0))
    files = make_files(tmp_path / "src")
    cache.store("1" * 16, files, {})
    cache.root.chmod(0o555)
    script = (
        "import sys; from pathlib import Path; from cache.store import CacheLimits, ResultCache;"
        "from worker.errors import NotCached\n"
        "cache = ResultCache(sys.argv[1], CacheLimits(max_bytes=1500, min_free_bytes=0))\n"
        "files = {name: Path(sys.argv[2]) / name for name in ('r.tif', 'k.npy', 'k.png')}\n"
        "try:\n"
        "    cache.store('2' * 16, dict(zip(('result.tif', 'psf.npy', 'psf.png'), "
        "files.values())), {})\n"
        "except NotCached as error:\n"
        "    print(error)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(cache.root), str(tmp_path / "src")],
            capture_output=True, text=True, timeout=60, preexec_fn=obey_permissions,
            cwd=Path(__file__).parents[2],
        )  # fmt: skip
    finally:
        cache.root.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert "not cached: cannot make room" in done.stdout, done.stdout
    assert cache.has_result("1" * 16)


def test_a_record_too_large_or_through_a_link_is_a_miss(tmp_path: Path) -> None:
    """A record is read only from the entry's own file, and only so much of it (until engine
    0.3.56 a link was followed out of the cache, and a 1 GiB record read whole, on the worker's
    loop)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    for key in ("1" * 16, "2" * 16):
        cache.store(key, make_files(tmp_path / f"src{key[0]}"), {})
        assert cache.entry(key) is not None
    outside = tmp_path / "outside.json"
    outside.write_text((cache.root / ("1" * 16) / "record.json").read_text())
    (cache.root / ("1" * 16) / "record.json").unlink()
    (cache.root / ("1" * 16) / "record.json").symlink_to(outside)
    with (cache.root / ("2" * 16) / "record.json").open("a") as record:
        record.write(" " * MAX_RECORD_BYTES)  # (still JSON)
    assert cache.entry("1" * 16) is None and cache.entry("2" * 16) is None


def test_the_cap_counts_what_the_files_take_not_what_records_say(tmp_path: Path) -> None:
    """A record edited to claim a huge file evicted every other entry, and one claiming a
    number too large for a float ended `stats` and `clean` in an OverflowError (until engine
    0.3.56): what counts is each file's own size."""
    cache = ResultCache(tmp_path / "c", CacheLimits(max_bytes=4000, min_free_bytes=0))
    for key in ("1" * 16, "2" * 16):
        cache.store(key, make_files(tmp_path / f"src{key[0]}"), {})
    record_path = cache.root / ("1" * 16) / "record.json"
    record = json.loads(record_path.read_text())
    record["files"][PSF_PNG] = 10**400
    record_path.write_text(json.dumps(record))
    assert cache.stats()["bytes"] == 2 * 1009
    cache.store("3" * 16, make_files(tmp_path / "src3"), {})  # room for it: nothing evicted
    assert all(cache.entry(key) is not None for key in ("1" * 16, "2" * 16, "3" * 16))
    assert cache.clean()["bytes_freed"] == 3 * 1009


def test_a_cache_folder_removed_by_hand_is_made_again(tmp_path: Path) -> None:
    """Emptied by hand (the folder itself removed) under a running worker, the cache answers
    `stats` and stores again (`stats` failed with "no such file" until a job made it again)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    shutil.rmtree(cache.root)
    assert cache.stats()["entries"] == 0
    shutil.rmtree(cache.root)
    cache.store("a" * 16, make_files(tmp_path / "src"), {})
    assert cache.has_result("a" * 16)


def test_only_the_caches_own_temporary_folders_are_cleaned(tmp_path: Path) -> None:
    """`clean` removes staging and trash folders named as the cache names them, never another
    folder that happens to start with a dot and "tmp" (`--cache-dir` may name any folder)."""
    cache = ResultCache(tmp_path / "c")
    mine = [cache.root / ".tmp-notes", cache.root / ".trash-old", cache.root / ".tmp-a-1-b"]
    stale = [cache.root / ".tmp-x-999999999-0123abcd", cache.root / f".trash-{'a' * 16}-0123abcd"]
    for folder in mine + stale:
        folder.mkdir()
        (folder / "file").write_text("keep me")
    assert cache.remove_stale() == 2
    assert all(folder.exists() for folder in mine) and not any(f.exists() for f in stale)


def test_cache_commands_refuse_an_empty_folder_name(user_env, tmp_path: Path) -> None:
    keep = tmp_path / ".tmp-keep"
    keep.mkdir()
    for option in ("--cache-dir", "--exports-dir"):
        result = run_dt(user_env, "cache", "clean", "--on-exit", option, "", cwd=tmp_path)
        assert result.returncode == 2 and "an empty name is not a folder" in result.stderr
    assert keep.exists()


def test_a_file_cut_short_or_replaced_is_no_hit(tmp_path: Path) -> None:
    """The record holds each file's size: a result emptied by hand is a miss (until engine
    0.3.19 an empty file was copied out as a hit), and a kernel replaced by another file is
    none (every job for its key failed reading it)."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    entry = cache.store("d" * 16, make_files(tmp_path / "src"), {})
    entry.file(RESULT).write_bytes(b"")
    entry.file(PSF).write_bytes(b"not the kernel it was")
    assert cache.lookup("d" * 16, tmp_path / "out.tif") is None
    assert not (tmp_path / "out.tif").exists()
    assert kernel_of(cache, "d" * 16) is None and not cache.has_result("d" * 16)


def test_a_copy_into_the_cache_itself_is_refused(tmp_path: Path) -> None:
    """`cache lookup -o` (or the worker's `cache_lookup`) naming a file inside the cache: until
    engine 0.3.19 a copy onto an entry's record destroyed the entry."""
    cache = ResultCache(tmp_path / "c", CacheLimits(min_free_bytes=0))
    entry = cache.store("e" * 16, make_files(tmp_path / "src"), {})
    for inside in (entry.path / "record.json", entry.path / PSF, tmp_path / "c" / ("f" * 16)):
        with pytest.raises(InputError, match="is inside the cache"):
            cache.lookup("e" * 16, inside)
    assert cache.lookup("e" * 16) == entry.file(RESULT)
    (tmp_path / "into").symlink_to(entry.path)  # a folder's link is followed
    with pytest.raises(InputError, match="is inside the cache"):
        cache.lookup("e" * 16, tmp_path / "into" / "x.tif")
    # a link at the name itself is replaced, what it leads to untouched (until engine 0.3.23
    # it was refused), and a loop of links is said in words (it was an internal error)
    (tmp_path / "named.tif").symlink_to(entry.path / RESULT)
    assert cache.lookup("e" * 16, tmp_path / "named.tif") == tmp_path / "named.tif"
    assert not (tmp_path / "named.tif").is_symlink() and entry.file(RESULT) is not None
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InputError, match="cannot follow the links"):
        cache.lookup("e" * 16, tmp_path / "loop" / "x.tif")


def test_a_cache_folder_that_is_a_file_is_refused_in_words(tmp_path: Path) -> None:
    """`--cache-dir` naming a file (or /dev/null): until engine 0.3.19 "File exists: ..."."""
    (tmp_path / "file").write_bytes(b"")
    for path in (tmp_path / "file", Path("/dev/null")):
        with pytest.raises(InputError, match="is not a folder"):
            ResultCache(path)


def test_cache_commands_make_no_folder_where_there_is_no_cache(user_env, tmp_path: Path) -> None:
    """Every cache command reads a missing `--cache-dir` as an empty cache and leaves no folder
    there (until engine 0.3.41 each made it: a typo in the name made an empty cache)."""
    typo = tmp_path / "typo" / "cache"
    key = "a" * 16
    stats = run_dt(user_env, "cache", "stats", "--cache-dir", typo)
    assert stats.returncode == 0 and stats.stdout.startswith("no cache yet (nothing cached) at")
    as_json = run_dt(user_env, "cache", "stats", "--json", "--cache-dir", typo)
    assert '"exists": false' in as_json.stdout and '"entries": 0' in as_json.stdout
    for action in (["lookup", key], ["kernel", key], ["clean"], ["clean", "--on-exit"]):
        done = run_dt(user_env, "cache", *action, "--cache-dir", typo)
        assert done.returncode == 0, done.stderr
    assert not (tmp_path / "typo").exists()
    cache = ResultCache(typo, CacheLimits(min_free_bytes=0))  # the worker's cache makes it
    assert cache.root.is_dir() and cache.stats()["exists"]
