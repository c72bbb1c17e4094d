"""Previews: the image and its PSF downsized together (ALGORITHM.md section 8).

Deblurring a picture shrunk by `scale` with the kernel shrunk by the same factor gives, in a
fraction of the time, what the full run will look like at screen size.
"""

import numpy as np
from scipy import sparse

from worker.deconv.psf_tools import resample_psf


def _area_weights(size: int, new_size: int) -> sparse.csr_matrix:
    """(new_size, size) matrix averaging the input cells that each output cell covers.

    Output cell i spans input coordinates [i * size / new_size, (i + 1) * size / new_size);
    each input pixel contributes in proportion to the length of its overlap (area averaging,
    so no aliasing and the mean level is kept).
    """
    edges = np.arange(new_size + 1) * (size / new_size)
    rows, cols, weights = [], [], []
    for i in range(new_size):
        start, stop = edges[i], edges[i + 1]
        first, last = int(np.floor(start)), min(int(np.ceil(stop)), size)
        pixels = np.arange(first, last)
        overlap = np.minimum(pixels + 1, stop) - np.maximum(pixels, start)
        rows.append(np.full(len(pixels), i))
        cols.append(pixels)
        weights.append(overlap / (stop - start))
    return sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(new_size, size),
        dtype=np.float32,
    )


def downsize(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` (H, W, C) shrunk by `scale` (0 < scale <= 1) by area averaging, float32.

    The new size is round(H * scale) x round(W * scale), at least 1 x 1.
    """
    height, width, channels = image.shape
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_height, new_width) == (height, width):
        return image
    rows, cols = _area_weights(height, new_height), _area_weights(width, new_width)
    out = np.empty((new_height, new_width, channels), dtype=np.float32)
    for c in range(channels):
        out[..., c] = (cols @ (rows @ image[..., c]).T).T
    return out


def preview_inputs(
    image: np.ndarray, psf: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The image and PSF for a preview at `scale`: both downsized (the PSF stays odd, >= 3x3)."""
    if scale >= 1:
        return image, psf
    return downsize(image, scale), resample_psf(psf, scale)
