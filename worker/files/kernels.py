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
    """Raise `InputError` unless a kernel is to be saved under a name ending in .npy and its
    picture under one ending in .png: the files hold that format whatever they are called, so a
    kernel asked for as `k.png` or `k.tif` would be an array no viewer opens (and `k.png`'s
    picture, drawn beside it as `k.png`, would replace it)."""
    for path, suffix, what in (
        (kernel, KERNEL_SUFFIX, "kernel"),
        (picture, PICTURE_SUFFIX, "kernel's picture"),
    ):
        if path is not None and Path(path).suffix.lower() != suffix:
            raise InputError(
                f"the {what} is written as a {suffix} file: its name must be NAME{suffix}, not "
                f"{Path(path).name}"
            )


def save_kernel(path: str | os.PathLike[str], psf: np.ndarray) -> None:
    """Write `psf` (float32) as a NumPy `.npy` file, atomically."""
    with atomic_file(path) as handle:
        np.save(handle, np.asarray(psf, dtype=np.float32))


def save_kernel_picture(path: str | os.PathLike[str], psf: np.ndarray) -> None:
    """Write a PNG of `psf`: white where the kernel is strongest, each tap a square block."""
    psf = np.asarray(psf, dtype=np.float32)
    block = max(1, PICTURE_SIDE // max(psf.shape))
    scaled = psf / max(float(psf.max()), 1e-30)
    write_png(path, np.kron(scaled, np.ones((block, block), dtype=np.float32)))


def picture_path(kernel_path: str | os.PathLike[str]) -> Path:
    """Where the picture of a kernel saved at `kernel_path` goes: beside it, ending in .png."""
    return Path(kernel_path).with_suffix(PICTURE_SUFFIX)
