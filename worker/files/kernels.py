"""Kernel files: a PSF read from a .npy file, checked before it is loaded; a PSF (or a grid of them)
saved as .npy, with a picture of it (.png) to look at."""

import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from worker.atomic import atomic_file
from worker.errors import InputError
from worker.files.imageio import write_png
from worker.regular import open_regular

PICTURE_SIDE = 256  # the PNG is enlarged (each tap a square block) to about this many pixels
PICTURE_TAPS = 9  # a kernel is drawn on at least this many taps a side: a delta is a dot
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


def _declared_array(handle: BinaryIO) -> tuple[int, np.dtype] | None:
    """What the .npy header at the start of `handle` declares, read before numpy allocates it.

    Parameters
    ----------
    handle : BinaryIO
        An open file, at its start; it is back at its start on return.

    Returns
    -------
    tuple of (int, numpy.dtype) or None
        How many values the array holds (its shape's product, times that of a sub-array
        type's shape), and their type; None when there is no header of a format numpy writes,
        1.0, 2.0 or 3.0 (numpy decides).
    """
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):  # 3.0 is 2.0 in UTF-8: its shape reads alike
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return None
    except (ValueError, EOFError, SyntaxError):
        return None
    finally:
        handle.seek(0)
    return math.prod(shape) * math.prod(dtype.shape), dtype


def read_kernel(path: str | os.PathLike[str], max_side: int) -> np.ndarray:
    """The array in the .npy file at `path`, its header checked before numpy allocates it.

    Parameters
    ----------
    path : str or PathLike
        The .npy file, one array; pickled objects are never loaded.
    max_side : int
        The largest kernel's side: a file declaring more than ``max_side ** 2`` values is
        refused unread.

    Returns
    -------
    ndarray
        The array as stored (its shape, type and values are the caller's to check).

    Raises
    ------
    InputError
        Naming `path`: more values than a `max_side` x `max_side` kernel, values that are not
        numbers (a record or a sub-array type), not a .npy file, or an .npz archive.
    OSError
        When `path` cannot be opened or is not a regular file (`open_regular`).
    """
    try:
        with open_regular(path) as handle:
            declared = _declared_array(handle)  # before numpy allocates it
            if declared is not None:
                size, dtype = declared
                if size > max_side**2:
                    raise InputError(
                        f"{path} holds {size} values, more than any kernel ({max_side} x "
                        f"{max_side})"
                    )
                if dtype.kind not in "biuf":
                    raise InputError(
                        f"{path} holds values of type {dtype.str}, not numbers: it is no kernel"
                    )
            kernel = np.load(handle, allow_pickle=False)
    except InputError:
        raise
    except (ValueError, EOFError) as error:
        if "pickle" in str(error):  # numpy's advice to load it anyway is not for users
            raise InputError(
                f"{path} is not a NumPy .npy array file (no array header; pickled Python "
                "objects are never loaded)"
            ) from None
        raise InputError(f"{path} is not a NumPy .npy array file ({error})") from error
    if not isinstance(kernel, np.ndarray):  # an .npz archive
        kernel.close()
        raise InputError(f"{path} is an .npz archive; the PSF must be one array in a .npy file")
    return kernel


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

    The kernel is divided by its peak, centred on a black field at least `PICTURE_TAPS` taps a
    side, and written through `write_png` (sRGB, 8-bit); each tap becomes a block of
    ``max(1, PICTURE_SIDE // side)`` pixels a side. Without the field, the 1 px kernel of a
    picture left as it is filled the whole picture: a white square, which reads as a huge blur.

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
    short = [max(PICTURE_TAPS - n, 0) for n in psf.shape]
    psf = np.pad(psf, [(n // 2, n - n // 2) for n in short])
    block = max(1, PICTURE_SIDE // max(psf.shape))
    scaled = psf / max(float(psf.max()), 1e-30)
    write_png(path, np.kron(scaled, np.ones((block, block), dtype=np.float32)), replace)


def save_kernels(path: str | os.PathLike[str], kernels: np.ndarray, replace: bool = True) -> None:
    """Save a kernel, or a grid of them, to `path` (.npy), with its picture beside it.

    Parameters
    ----------
    path : str or PathLike
        The .npy file, written atomically (float32); the picture goes to `picture_path(path)`.
    kernels : ndarray, shape (K, K) or (rows, cols, K, K)
        One kernel, or a grid of them; the grid's picture is a montage, each kernel framed by
        one pixel of zeros (two between neighbours).
    replace : bool, optional
        Whether files at their names are replaced (else `NameTaken`).

    Raises
    ------
    OSError
        When a file cannot be written.
    """
    save_kernel(path, kernels, replace)
    if kernels.ndim == 4:
        montage = np.pad(kernels, ((0, 0), (0, 0), (1, 1), (1, 1))).transpose(0, 2, 1, 3)
        kernels = montage.reshape(montage.shape[0] * montage.shape[1], -1)
    save_kernel_picture(picture_path(path), kernels, replace)


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
