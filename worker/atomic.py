"""Write files so that readers see either the old file, the whole new one, or nothing."""

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give a new file


SUFFIX = ".part"


def _prefix(final: Path) -> str:
    return f".{final.name}."


def temporaries(final: str | os.PathLike[str]) -> list[Path]:
    """The temporary files that `atomic_path(final)` writers left behind (killed mid-write)."""
    final = Path(final)
    return list(final.parent.glob(glob.escape(_prefix(final)) + "*" + SUFFIX))


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` when the block succeeds.

    The temporary file lives in the same folder (so the rename is atomic), starts with a dot and
    ends in `.part`. On any exception it is removed and nothing is left behind. With `fsync`, the
    data reaches the disk before the rename, so a crash at any instant leaves a whole file or none.
    """
    final = Path(final)
    fd, name = tempfile.mkstemp(prefix=_prefix(final), suffix=SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(_FILE_MODE)  # mkstemp makes 0600; the result should look like any new file
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
