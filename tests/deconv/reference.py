"""Reference operators for the engine's tests: plain forms of what the engine fuses into tiles."""

import numba
import numpy as np

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
