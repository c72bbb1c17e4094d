"""Vectorial (colour-coupled) total variation: the gradient-norm weights and the split gradient.

    TV(u) = sum_p sqrt( sum_c |grad u_c(p)|^2 + eps^2 )

One norm for all channels (Blomgren and Chan, "Color TV: total variation methods for restoration
of vector-valued images", IEEE TIP 1998; Bresson and Chan 2008): an edge present in one channel
lowers the penalty in all of them, so edges stay aligned and colour noise is smoothed away.
The gradient uses forward differences (zero across the last row and column) and the divergence
backward differences, so `div = -grad^T` exactly and

    d TV / d u_c = -div( grad u_c / |grad u|_eps ),

which tests/deconv/test_deconv_operators.py checks against finite differences of the energy
(`tv_energy` and `tv_divergence` in tests/deconv/reference.py). The deconvolution uses the
divergence only in its split form (`split_gradient_at`). The kernels are fused
numba loops over rows, parallel on all cores, compiled once and cached on disk.
"""

import math

import numba
import numpy as np

from worker.compiled import compiled


@compiled(parallel=True, fastmath=True)
def gradient_weights(u: np.ndarray, eps: float, out: np.ndarray) -> np.ndarray:
    """The reciprocal of the vectorial gradient norm, per pixel.

    ``out[i, j] = 1 / sqrt(sum_c |grad u_c[i, j]|^2 + eps^2)``, with forward differences (zero
    across the last row and column): the weight of the pixel's right and down links in the TV
    gradient, stored once per iteration so the update multiplies instead of dividing. Each row is
    summed channel by channel, the last column (no right neighbour) apart, so that the inner loop
    has no branch and runs in SIMD lanes (twice as fast as a loop over pixels with the channels
    inside, docs/MEASUREMENTS.md).

    Parameters
    ----------
    u : ndarray, shape (C, H, W)
        The picture, channels first.
    eps : float
        Smoothing of the norm near zero (in the picture's units).
    out : ndarray, shape (H, W)
        Where the weights are written.

    Returns
    -------
    ndarray, shape (H, W)
        `out`.
    """
    channels, height, width = u.shape
    for i in numba.prange(height):
        below = min(i + 1, height - 1)  # the last row's own: no vertical difference
        total = np.full(width, eps * eps)
        for c in range(channels):
            for j in range(width - 1):
                centre = u[c, i, j]
                dx, dy = np.float64(u[c, i, j + 1] - centre), np.float64(u[c, below, j] - centre)
                total[j] += dx * dx + dy * dy
            dy = np.float64(u[c, below, width - 1] - u[c, i, width - 1])
            total[width - 1] += dy * dy
        for j in range(width):
            out[i, j] = 1.0 / math.sqrt(total[j])
    return out


@numba.njit(inline="always")
def split_gradient_at(
    plane: np.ndarray, weights: np.ndarray, i: int, j: int
) -> tuple[float, float]:
    """The TV gradient at (i, j) split into non-negative parts, `d TV / d u = u S - V`.

    The pixel's four links carry the weights of `gradient_weights` (right and down: its own;
    left and up: the neighbour's). `S` is the sum of the weights and `V` the weighted sum of the
    neighbours, so that `u S - V = sum_links w (u - u_neighbour) = -div(grad u / |grad u|)`. For
    a non-negative image both parts are non-negative, which is what the split-gradient
    multiplicative update needs (Lanteri, Roche and Aime [1]_). A link that would leave the
    picture is left out.

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        One channel of the picture.
    weights : ndarray, shape (H, W)
        The picture's `gradient_weights`.
    i, j : int
        The pixel's row and column.

    Returns
    -------
    tuple of float
        (S, V).

    References
    ----------
    .. [1] H. Lanteri, M. Roche and C. Aime, "Penalized maximum likelihood image restoration
       with positivity constraints: multiplicative algorithms", Inverse Problems 18, 2002,
       doi:10.1088/0266-5611/18/5/313.
    """
    height, width = plane.shape
    total = neighbours = 0.0
    own = weights[i, j]
    if j + 1 < width:
        total += own
        neighbours += own * plane[i, j + 1]
    if j > 0:
        w = weights[i, j - 1]
        total += w
        neighbours += w * plane[i, j - 1]
    if i + 1 < height:
        total += own
        neighbours += own * plane[i + 1, j]
    if i > 0:
        w = weights[i - 1, j]
        total += w
        neighbours += w * plane[i - 1, j]
    return total, neighbours
