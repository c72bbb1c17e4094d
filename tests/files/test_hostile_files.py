"""Attacks on how results are written: temporary files swapped for links, names that are not
UTF-8, outputs that share their bytes with the cache (issue 11: F2, F4, F14)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyexiv2
from tiffs import CAMERA_EXIF, write_tiff

from cache.store import PSF, RESULT, ResultCache
from worker.files.imageio import read_picture, write_picture

KEY = "ab" * 16


SWAPPER = """
import os, sys, time
folder, victim, until = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
swaps = 0
while time.monotonic() < until and not os.path.exists(os.path.join(folder, "STOP")):
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.endswith(".part") and not os.path.islink(path):
            try:
                os.unlink(path)
                os.symlink(victim, path)
                swaps += 1
            except OSError:
                pass
print(swaps)
"""


class LinkSwapper:
    """Another process (as another user writing in a shared folder could) that replaces every
    `.part` file appearing in `folder` by a symbolic link to `victim`, for at most a minute."""

    def __init__(self, folder: Path, victim: Path) -> None:
        self.folder, self.victim = folder, victim
        self.swaps = 0

    def __enter__(self) -> "LinkSwapper":
        self.process = subprocess.Popen(
            [sys.executable, "-c", SWAPPER, str(self.folder), str(self.victim), "60"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        (self.folder / "STOP").touch()
        output, _ = self.process.communicate(timeout=70)
        (self.folder / "STOP").unlink()
        self.swaps = int(output.strip() or 0)


def test_a_temporary_file_swapped_for_a_link_never_redirects_the_write(tmp_path: Path) -> None:
    """F2: 40 results written while an attacker swaps each `.part` file for a link to a victim
    file: the victim is never written; each write either lands whole or fails with OSError."""
    rng = np.random.default_rng(0)
    source = tmp_path / "in.tif"
    write_tiff(source, rng.integers(0, 65535, (64, 64, 3)).astype(np.uint16), exif=CAMERA_EXIF)
    picture = read_picture(source)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.rc"
    victim.write_bytes(b"export PATH=/usr/bin\n")
    failures = 0
    deadline = time.monotonic() + 60
    with LinkSwapper(out, victim) as swapper:
        for n in range(40):
            try:
                write_picture(out / f"r{n}.tif", picture, picture.pixels)
            except OSError:
                failures += 1
            if time.monotonic() > deadline:
                break
    assert victim.read_bytes() == b"export PATH=/usr/bin\n"
    assert swapper.swaps > 0, "the attack never ran"
    for result in out.glob("r*.tif"):
        if not result.is_symlink():
            assert read_picture(result).pixels.shape == (64, 64, 3)


def test_names_that_are_not_utf8_keep_their_exif(tmp_path: Path) -> None:
    """F4: pictures whose names are not valid UTF-8 (Latin-1 file systems, damaged names) are
    read and written with their EXIF, not refused with a UnicodeEncodeError."""
    folder = os.fsdecode(bytes(tmp_path) + b"/caf\xe9 \xff")
    os.mkdir(folder)
    source = Path(folder) / os.fsdecode(b"IMG \xe9\xff.tif")
    write_tiff(tmp_path / "plain.tif", np.full((16, 16, 3), 30000, np.uint16), exif=CAMERA_EXIF)
    os.rename(tmp_path / "plain.tif", source)
    picture = read_picture(source)
    assert picture.exif["Exif.Image.Model"] == "Canon EOS 5D Mark IV"
    output = Path(folder) / os.fsdecode(b"IMG \xe9\xff_deconv.tif")
    write_picture(output, picture, picture.pixels)
    os.rename(output, tmp_path / "check.tif")
    with pyexiv2.Image(str(tmp_path / "check.tif")) as image:
        assert image.read_exif()["Exif.Image.Model"] == "Canon EOS 5D Mark IV"


def test_outputs_and_cache_entries_never_share_an_inode(tmp_path: Path) -> None:
    """F14: the cache stores its own copy of a result and hands out copies: editing an output
    (darktable rewriting its EXIF in place) never changes the cached result."""
    result, kernel = tmp_path / "result.tif", tmp_path / "psf.npy"
    result.write_bytes(b"deblurred pixels" * 1000)
    np.save(kernel, np.ones((3, 3), np.float32) / 9)
    cache = ResultCache(tmp_path / "cache")
    entry = cache.store(KEY, {RESULT: result, PSF: kernel}, {"job": "x"})
    cached = entry.path / RESULT
    assert os.stat(cached).st_ino != os.stat(result).st_ino
    with open(result, "r+b") as handle:  # edited in place, as exiv2 does
        handle.write(b"EDITED")
    assert cached.read_bytes() == b"deblurred pixels" * 1000
    output = tmp_path / "out.tif"
    assert cache.lookup(KEY, output) == output
    assert os.stat(output).st_nlink == 1 and os.stat(cached).st_nlink == 1
    with open(output, "r+b") as handle:
        handle.write(b"EDITED AGAIN")
    assert cached.read_bytes() == b"deblurred pixels" * 1000
