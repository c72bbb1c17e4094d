"""Resizing pictures, masks and kernels: every resampling the project does, in one place.

- `shrink_area`: area averaging by any factor (no aliasing, the mean kept): previews and the
  engine's coarse start.
- `block_means`: area averaging by a whole factor, ragged edges dropped: the window search.
- `shrink_smooth`: a light Gaussian anti-alias, then bilinear sampling: the blur estimate's
  pyramid, where the picture and its mask shrink alike.
- `enlarge_bilinear`: bilinear enlargement on pixel centres, edges held: the coarse start.
- `zoom_to`: bilinear resampling to a given shape on the pixel grid: kernels (`psf_tools`) and
  alpha channels (`files.imageio`).
"""

import numba
import numpy as np
from scipy import ndimage, sparse

from worker.compiled import compiled


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


def shrink_area(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` shrunk by `scale` by area averaging (no aliasing, the mean kept).

    Each output pixel is the mean of the input area it covers, pixels cut by its edges counted
    by their overlap: separable, the rows' weights then the columns' (`_area_weights`), summed in
    the picture's precision (float32 for float32) on all cores (`_shrink_rows_then_columns`).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture, channels last.
    scale : float
        The factor, 0 < scale <= 1.

    Returns
    -------
    ndarray, shape (round(H * scale), round(W * scale), C)
        The shrunk picture, float32, at least 1 x 1. When the size does not change, `image`
        itself (not a copy, and of its own dtype).
    """
    height, width, channels = image.shape
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_height, new_width) == (height, width):
        return image
    rows, cols = _area_weights(height, new_height), _area_weights(width, new_width)
    out = np.empty((new_height, new_width, channels), dtype=np.float32)
    picture = np.ascontiguousarray(image, dtype=np.result_type(image.dtype, np.float32))
    _shrink_rows_then_columns(
        picture, rows.indptr, rows.indices, rows.data, cols.indptr, cols.indices, cols.data, out
    )
    return out


@compiled(parallel=True)
def _shrink_rows_then_columns(image: np.ndarray, row_starts: np.ndarray, row_pixels: np.ndarray,
                              row_weights: np.ndarray, col_starts: np.ndarray,
                              col_pixels: np.ndarray, col_weights: np.ndarray,
                              out: np.ndarray) -> None:  # fmt: skip
    """`out[i, q] = sum_p c[q, p] sum_j r[i, j] image[j, p]`, `r` and `c` the row and column
    weights as compressed sparse rows (start of each output's weights, input pixels, weights);
    an output row per task. Each sum runs over its weights in order, in `image`'s precision,
    without fused or reordered arithmetic (no `fastmath`): the figures of
    ``c @ (r @ plane).T`` by scipy's sparse product, bit for bit, at a tenth of its time."""
    width, channels = image.shape[1], image.shape[2]
    for i in numba.prange(out.shape[0]):
        line = np.zeros_like(image[0])  # the input rows' weighted sum, (W, C)
        flat = line.reshape(width * channels)  # (one loop over the row: vectorised)
        for k in range(row_starts[i], row_starts[i + 1]):
            source, weight = image[row_pixels[k]].reshape(width * channels), row_weights[k]
            for p in range(width * channels):
                flat[p] += weight * source[p]
        total = np.zeros_like(line[0])  # one output pixel's channels
        for q in range(out.shape[1]):
            total[:] = 0
            for k in range(col_starts[q], col_starts[q + 1]):
                pixel, weight = col_pixels[k], col_weights[k]
                for c in range(channels):
                    total[c] += weight * line[pixel, c]
            for c in range(channels):
                out[i, q, c] = total[c]


def block_means(plane: np.ndarray, factor: int) -> np.ndarray:
    """Means of `plane` over factor x factor blocks (the ragged right and bottom edges dropped).

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        The values to average (a boolean mask gives the fraction of True in each block).
    factor : int
        The blocks' side, in pixels (>= 1).

    Returns
    -------
    ndarray, shape (H // factor, W // factor)
        The means, float32 (a float32 copy of `plane` when `factor` is 1).
    """
    if factor == 1:
        return plane.astype(np.float32)
    rows, cols = plane.shape[0] // factor, plane.shape[1] // factor
    blocks = plane[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def shrink_smooth(image: np.ndarray, scale: float) -> np.ndarray:
    """Shrink `image` by `scale` with a light anti-alias blur and bilinear sampling.

    The blur is Gaussian, of standard deviation ``0.5 * sqrt(1 / scale**2 - 1)`` input pixels;
    beyond the edges the nearest pixel is held.

    Parameters
    ----------
    image : ndarray
        The picture, a plane (H, W): every axis is blurred and shrunk alike.
    scale : float
        The factor, 0 < scale <= 1.

    Returns
    -------
    ndarray
        Each side n becomes round(n * scale); of `image`'s dtype. `image` itself when `scale` is
        1 (or more).
    """
    if scale >= 1:
        return image
    sigma = 0.5 * np.sqrt(1 / scale**2 - 1)
    smooth = ndimage.gaussian_filter(image, sigma, mode="nearest")
    return ndimage.zoom(smooth, scale, order=1, grid_mode=True, mode="nearest")


@compiled(parallel=True, fastmath=True)
def enlarge_bilinear(small: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`small` enlarged by bilinear interpolation into `out`, pixel centres aligned (output pixel
    i sits at input coordinate (i + 1/2) h / height - 1/2), edges held.

    Compiled (numba), the rows in parallel. `out` may be a view (the window of a larger grid:
    the coarse start is enlarged straight into the extended grid, no plane of the frame's size
    allocated for it).

    Parameters
    ----------
    small : ndarray, shape (C, h, w)
        The picture, channels first.
    out : ndarray of float32, shape (C, height, width)
        Where the enlarged picture is written: its shape is the new size.

    Returns
    -------
    ndarray, shape (C, height, width)
        `out`.
    """
    channels, h, w = small.shape
    height, width = out.shape[1], out.shape[2]
    for row in numba.prange(channels * height):
        c, i = row // height, row % height
        y = min(max((i + 0.5) * h / height - 0.5, 0.0), h - 1.0)
        i0 = min(int(y), h - 2) if h > 1 else 0
        fy = y - i0
        i1 = min(i0 + 1, h - 1)
        for j in range(width):
            x = min(max((j + 0.5) * w / width - 0.5, 0.0), w - 1.0)
            j0 = min(int(x), w - 2) if w > 1 else 0
            fx = x - j0
            j1 = min(j0 + 1, w - 1)
            top = small[c, i0, j0] + fx * (small[c, i0, j1] - small[c, i0, j0])
            bottom = small[c, i1, j0] + fx * (small[c, i1, j1] - small[c, i1, j0])
            out[c, i, j] = top + fy * (bottom - top)
    return out


def zoom_to(plane: np.ndarray, shape: tuple[int, ...], edges: str = "nearest") -> np.ndarray:
    """`plane` resampled to `shape` (bilinear, pixel grids aligned).

    Parameters
    ----------
    plane : ndarray
        The values: a kernel (K, K) or an alpha channel (H, W), float.
    shape : tuple of int
        The new shape, one size per axis of `plane`.
    edges : str, optional
        How values beyond the border are taken: "nearest" (held) or "grid-constant" (zero: a
        kernel's mass does not spread from outside); any `scipy.ndimage` mode is passed on.

    Returns
    -------
    ndarray, shape `shape`
        The resampled values, of `plane`'s dtype; a kernel is not renormalised here.
    """
    zoom = [new / old for new, old in zip(shape, plane.shape, strict=True)]
    resized = ndimage.zoom(plane, zoom, order=1, mode=edges, grid_mode=True)
    return resized[tuple(slice(0, n) for n in shape)]
