"""Saving an estimated PSF: the kernel itself (.npy) and a picture of it (.png) to look at."""

import os
from pathlib import Path

import numpy as np

from worker.atomic import atomic_file
from worker.files.imageio import write_png

PICTURE_SIDE = 256  # the PNG is enlarged (each tap a square block) to about this many pixels


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
    return Path(kernel_path).with_suffix(".png")
