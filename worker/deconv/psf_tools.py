"""Checks and small transformations of point spread functions (PSFs)."""

import numpy as np
from scipy import ndimage

from worker.errors import InputError
from worker.resize import zoom_to


def validate_psf(psf: np.ndarray, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return `psf` as a float32 kernel summing to one, or raise `InputError` saying what is wrong.

    A usable PSF is 2-D, odd-sized in both directions, finite, non-negative, not all zero, and no
    larger than the image it blurs.

    Parameters
    ----------
    psf : ndarray
        The kernel as given (any real dtype).
    image_shape : tuple of int or None, optional
        The shape of the image it blurs, (H, W, ...); None: the size is not checked.

    Returns
    -------
    ndarray of float32, shape (kh, kw)
        The kernel divided by its sum.

    Raises
    ------
    InputError
        When the PSF is not 2-D, holds no real numbers (complex, boolean or not numbers at all),
        has an even side, holds NaN or infinite or negative values, is all zeros, or is larger
        than `image_shape`.
    """
    psf = np.asarray(psf)
    if psf.ndim != 2:
        raise InputError(f"the PSF must be a 2-D array, this one has {psf.ndim} dimension(s)")
    if not np.issubdtype(psf.dtype, np.number) or np.issubdtype(psf.dtype, np.complexfloating):
        raise InputError(f"the PSF must hold real numbers, not {psf.dtype}")
    height, width = psf.shape
    if height % 2 == 0 or width % 2 == 0:
        raise InputError(
            f"the PSF must have odd sizes so that it has a centre, not {width}x{height}"
        )
    psf = psf.astype(np.float64)
    if not np.all(np.isfinite(psf)):
        raise InputError("the PSF holds NaN or infinite values")
    if np.any(psf < 0):
        raise InputError("the PSF has negative values; a blur kernel is non-negative")
    peak = psf.max()
    if peak <= 0:
        raise InputError("the PSF is all zeros")
    if peak > np.finfo(np.float64).max / psf.size:  # a sum would overflow: proportions count
        psf /= peak
    total = psf.sum()
    if image_shape is not None and (height > image_shape[0] or width > image_shape[1]):
        raise InputError(
            f"the PSF ({width}x{height}) is larger than the image "
            f"({image_shape[1]}x{image_shape[0]})"
        )
    return (psf / total).astype(np.float32)


def center_on_centroid(psf: np.ndarray) -> np.ndarray:
    """Shift `psf` by whole pixels so that its centroid falls on the central pixel.

    Deconvolving with an off-centre kernel translates the result; centring keeps the restored
    picture registered with the input. Mass shifted past the border is dropped, then the kernel is
    renormalised.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel: non-negative, with a positive sum.

    Returns
    -------
    ndarray of float32, shape (kh, kw)
        The shifted kernel, summing to one.
    """
    psf = np.asarray(psf, dtype=np.float64)
    total = psf.sum()
    rows, cols = np.indices(psf.shape)
    centroid = ((rows * psf).sum() / total, (cols * psf).sum() / total)
    shift = [round(c0 - c) for c0, c in zip(np.array(psf.shape) // 2, centroid, strict=True)]
    shifted = ndimage.shift(psf, shift, order=0, mode="constant", cval=0.0)
    return (shifted / shifted.sum()).astype(np.float32)


def resize_psf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`psf` resized to `shape` (bilinear on the pixel grid), non-negative, summing to one, centred.

    A kernel that vanishes on the way (all its mass clipped) becomes a centred delta.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel.
    shape : tuple of int
        The new (rows, columns).

    Returns
    -------
    ndarray of float32, shape `shape`
        The resized kernel, centred on its centroid to the whole pixel (`center_on_centroid`).
    """
    psf = np.asarray(psf, dtype=np.float64)
    resized = np.clip(zoom_to(psf, shape, edges="grid-constant"), 0, None)
    if resized.sum() <= 0:
        resized = np.zeros(shape)
        resized[shape[0] // 2, shape[1] // 2] = 1.0
    return center_on_centroid(resized / resized.sum())


def resample_psf(psf: np.ndarray, scale: float) -> np.ndarray:
    """`psf` for the picture shrunk by `scale` (`resize.shrink_area`): every tap's light moved
    to its place at the new scale and shared between the pixels around it.

    A tap at offset ``d = j - c`` from the kernel's centre ``c`` blurs the shrunk picture by
    ``d * scale`` of its pixels. Its mass goes to the pixels around that point by linear (tent)
    weights, the adjoint of linear interpolation:

        ``k'[J] = sum_j k[j] tri(J - (j - c) scale)``, ``tri(t) = max(0, 1 - |t|)``

    (per axis). It is exact for a picture constant over each block that the shrinking averages:
    such a picture moved by a fraction t of a block mixes each block with its neighbour by t.
    Every tap's light is kept (resampling a thin trajectory at the new pixels' centres drops the
    light that falls between them), the centroid stays where it was, and the extent is scaled by
    `scale` exactly, not stretched to fill a rounded size.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel: non-negative, with a positive sum.
    scale : float
        The factor the picture is shrunk by, 0 < scale <= 1 (a preview's, or the coarse start's).

    Returns
    -------
    ndarray of float32, shape (2 ry + 1, 2 rx + 1)
        The kernel, summing to one, with ``r = max(1, ceil((k - 1) / 2 * scale))`` per side:
        odd, at least 3 x 3, `psf`'s own shape at scale 1.
    """
    psf = np.asarray(psf, dtype=np.float64)
    rows, cols = (_tent_weights(n, scale) for n in psf.shape)
    out = rows @ psf @ cols.T
    return (out / out.sum()).astype(np.float32)


def _tent_weights(size: int, scale: float) -> np.ndarray:
    """(2 r + 1, size): how `resample_psf` shares each of `size` taps along one axis."""
    centre = (size - 1) / 2
    radius = max(1, int(np.ceil(centre * scale - 1e-9)))  # (10 x 0.1 is 1, not 2)
    landed = (np.arange(size) - centre) * scale + radius  # where each tap lands
    return np.maximum(0.0, 1 - np.abs(np.arange(2 * radius + 1)[:, None] - landed))


def centre_subpixel(psf: np.ndarray) -> np.ndarray:
    """`psf` moved so that its centroid falls exactly (to the sub-pixel) on the central pixel.

    The whole-pixel part of the move is `center_on_centroid`'s; the remaining fraction (at most
    half a pixel each way) is a bilinear shift. Deconvolving with the result leaves the picture
    where it was, to a small fraction of a pixel.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel: non-negative, with a positive sum.

    Returns
    -------
    ndarray of float32, shape (kh, kw)
        The moved kernel, non-negative, summing to one.
    """
    psf = center_on_centroid(psf).astype(np.float64)
    rows, cols = np.indices(psf.shape)
    centroid = np.array([(rows * psf).sum(), (cols * psf).sum()]) / psf.sum()
    moved = ndimage.shift(psf, np.array(psf.shape) // 2 - centroid, order=1, mode="constant")
    moved = np.clip(moved, 0, None)
    return (moved / moved.sum()).astype(np.float32)
