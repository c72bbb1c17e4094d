"""Reference operators for the engine's tests: plain forms of what the engine fuses into tiles."""

import numba
import numpy as np
from scipy import ndimage

from worker.deconv.boundaries import BlurOperator
from worker.deconv.tv import gradient_weights, split_gradient_at


def blur_forward(blur: BlurOperator, u: np.ndarray) -> np.ndarray:
    """`A u` through the operator's own tiled path, each tile kept in a whole-frame array."""
    out = np.empty(blur.observed_shape, dtype=np.float32)

    def keep(top: int, left: int, tile: np.ndarray) -> None:
        out[top : top + tile.shape[0], left : left + tile.shape[1]] = tile

    blur.forward_tiles(u, keep)
    return out


@numba.njit(parallel=True, cache=True, fastmath=True)
def tv_divergence(plane: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`out = div(grad plane / |grad u|)` for one (H, W) channel, `weights` from
    `gradient_weights` (of all channels)."""
    height, width = plane.shape
    for i in numba.prange(height):
        for j in range(width):
            total, neighbours = split_gradient_at(plane, weights, i, j)
            out[i, j] = neighbours - plane[i, j] * total
    return out


def tv_energy(u: np.ndarray, eps: float) -> float:
    """The vectorial TV of `u` (C, H, W), in float64."""
    weights = gradient_weights(
        np.ascontiguousarray(u, dtype=np.float64), eps, np.empty(u.shape[1:], dtype=np.float64)
    )
    return float((1 / weights).sum())


def bilinear_demosaic(cfa: np.ndarray) -> np.ndarray:
    """The simplest demosaicing of an RGGB mosaic: each missing colour is the mean of its
    nearest photosites of that colour."""
    sites = np.zeros((*cfa.shape, 3))
    sites[0::2, 0::2, 0] = sites[1::2, 1::2, 2] = 1
    sites[..., 1] = 1 - sites[..., 0] - sites[..., 2]
    red_blue = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    green = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    return np.stack(
        [
            ndimage.convolve(cfa * sites[..., c], kernel, mode="mirror")
            for c, kernel in ((0, red_blue), (1, green), (2, red_blue))
        ],
        axis=-1,
    )
