"""FFTW wisdom (the plans FFTW found fastest) kept in a file between runs.

The engine plans its transforms in memory (`worker.deconv.fft`); a run wrapped in `fftw_wisdom`
starts from the plans saved by earlier runs and saves the new ones, so planning is paid once per
machine and picture size.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pyfftw

from worker.atomic import atomic_file

_WISDOM_SEPARATOR = b"\0"  # FFTW wisdom is text: it never holds a NUL byte


def _read_wisdom(path: Path) -> None:
    with contextlib.suppress(OSError):
        parts = path.read_bytes().split(_WISDOM_SEPARATOR)
        if len(parts) == 3:
            pyfftw.import_wisdom(tuple(parts))


def _write_wisdom(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, fsync=False) as handle:
            handle.write(_WISDOM_SEPARATOR.join(pyfftw.export_wisdom()))


@contextlib.contextmanager
def fftw_wisdom(path: Path | None) -> Iterator[None]:
    """Load FFTW wisdom from `path` on entry and save it back on exit if planning added to it.

    The file is written atomically; an unreadable or unwritable file only costs planning time.
    The wisdom is saved even when the block raises.

    Parameters
    ----------
    path : Path or None
        The wisdom file; None: neither loaded nor saved.

    Yields
    ------
    None
        Control, for the block that plans transforms.
    """
    if path is None:
        yield
        return
    _read_wisdom(path)
    before = pyfftw.export_wisdom()
    try:
        yield
    finally:
        if pyfftw.export_wisdom() != before:
            _write_wisdom(path)
