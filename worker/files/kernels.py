"""Saving an estimated PSF: the kernel itself (.npy) and a picture of it (.png) to look at."""

import os
from pathlib import Path

import numpy as np

from worker.atomic import atomic_file
from worker.errors import InputError
from worker.files.imageio import write_png

PICTURE_SIDE = 256  # the PNG is enlarged (each tap a square block) to about this many pixels
KERNEL_SUFFIX, PICTURE_SUFFIX = ".npy", ".png"  # what a kernel and its picture are saved as


def check_names(
    kernel: str | os.PathLike[str] | None, picture: str | os.PathLike[str] | None
) -> None:
    """Check that a kernel's name ends in .npy and its picture's in .png.

    The files hold that format whatever they are called, so a kernel asked for as `k.png` or
    `k.tif` would be an array no viewer opens (and `k.png`'s picture, drawn beside it as `k.png`,
    would replace it). The case of the suffix does not matter.

    Parameters
    ----------
    kernel : str or PathLike or None
        Where the kernel is to be saved; None: it is not.
    picture : str or PathLike or None
        Where its picture is to be saved; None: it is not.

    Raises
    ------
    InputError
        When a name given has the wrong suffix.
    """
    for path, suffix, what in (
        (kernel, KERNEL_SUFFIX, "kernel"),
        (picture, PICTURE_SUFFIX, "kernel's picture"),
    ):
        if path is not None and Path(path).suffix.lower() != suffix:
            raise InputError(
                f"the {what} is written as a {suffix} file: its name must be NAME{suffix}, not "
                f"{Path(path).name}"
            )


def save_kernel(path: str | os.PathLike[str], psf: np.ndarray, replace: bool = True) -> None:
    """Write `psf` as a NumPy `.npy` file, atomically.

    Parameters
    ----------
    path : str or PathLike
        The file to write; one already there is replaced, unless `replace` is False.
    psf : ndarray
        The kernel, saved as float32.
    replace : bool, optional
        Whether a file at `path` is replaced (`atomic_file`; else `NameTaken`).

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    with atomic_file(path, replace=replace) as handle:
        np.save(handle, np.asarray(psf, dtype=np.float32))


def save_kernel_picture(
    path: str | os.PathLike[str], psf: np.ndarray, replace: bool = True
) -> None:
    """Write a PNG of `psf`: white where the kernel is strongest, each tap a square block.

    The kernel is divided by its peak and written through `write_png` (sRGB, 8-bit); each tap
    becomes a block of ``max(1, PICTURE_SIDE // max(kh, kw))`` pixels a side.

    Parameters
    ----------
    path : str or PathLike
        The file to write, atomically; one already there is replaced, unless `replace` is False.
    psf : ndarray, shape (kh, kw)
        The kernel.
    replace : bool, optional
        Whether a file at `path` is replaced (`write_png`; else `NameTaken`).

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    psf = np.asarray(psf, dtype=np.float32)
    block = max(1, PICTURE_SIDE // max(psf.shape))
    scaled = psf / max(float(psf.max()), 1e-30)
    write_png(path, np.kron(scaled, np.ones((block, block), dtype=np.float32)), replace)


def picture_path(kernel_path: str | os.PathLike[str]) -> Path:
    """Where the picture of a kernel saved at `kernel_path` goes: beside it, ending in .png.

    Parameters
    ----------
    kernel_path : str or PathLike
        The kernel's file.

    Returns
    -------
    Path
        `kernel_path` with its suffix replaced by .png (or .png added where it has none).
    """
    return Path(kernel_path).with_suffix(PICTURE_SUFFIX)
