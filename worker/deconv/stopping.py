"""When to stop iterating: stagnation, residual whiteness, or the iteration cap.

Residual whiteness: Almeida and Figueiredo, "New stopping criteria for iterative blind image
deblurring based on residual whiteness measures" (IEEE SSP 2011; TIP 2013). While the estimate
improves, the residual `r = f - A u` loses the image's structure and approaches the noise, which
is white; once the iteration starts fitting noise (and ringing), structure returns. The measure
is the energy of the residual's normalised autocorrelation at the nonzero lags of a small window,

    W = sum_{d != 0, |d| <= 1} ( R(d) / R(0) )^2,    R(d) = sum_p r(p) r(p + d),

summed over the channels' correlations, on the observed, unsaturated pixels only. The run stops
when `W` has risen by more than the user's tolerance (percent) above its minimum so far, and the
estimate at that minimum is returned.
"""

from dataclasses import dataclass, field

import numba
import numpy as np

# Half of the lag window |d| <= 1 without the origin; the other half is its mirror image.
LAGS = ((0, 1), (1, -1), (1, 0), (1, 1))


@numba.njit(parallel=True, cache=True, fastmath=True)
def residual_ratio(
    f: np.ndarray, blurred: np.ndarray, mask: np.ndarray, floor: float, ratio: np.ndarray
) -> np.ndarray:
    """Write `ratio = mask * f / max(blurred, floor)`; return the residual correlations.

    The residual is `r = mask * (f - blurred)`; the result holds R(0) then R(d) for each lag of
    `LAGS`, in float64. One pass over the plane does both jobs (the Richardson-Lucy ratio and the
    whiteness statistics).
    """
    height, width = f.shape
    rows = np.zeros((height, 5))
    for i in numba.prange(height):
        acc0 = acc1 = acc2 = acc3 = acc4 = 0.0
        for j in range(width):
            m = mask[i, j]
            ratio[i, j] = m * f[i, j] / max(blurred[i, j], floor)
            r = m * (f[i, j] - blurred[i, j])
            acc0 += r * r
            if j + 1 < width:
                acc1 += r * mask[i, j + 1] * (f[i, j + 1] - blurred[i, j + 1])
            if i + 1 < height:
                below = i + 1
                acc3 += r * mask[below, j] * (f[below, j] - blurred[below, j])
                if j > 0:
                    acc2 += r * mask[below, j - 1] * (f[below, j - 1] - blurred[below, j - 1])
                if j + 1 < width:
                    acc4 += r * mask[below, j + 1] * (f[below, j + 1] - blurred[below, j + 1])
        rows[i, 0] = acc0
        rows[i, 1] = acc1
        rows[i, 2] = acc2
        rows[i, 3] = acc3
        rows[i, 4] = acc4
    return rows.sum(axis=0)


def whiteness(correlations: np.ndarray) -> float:
    """The whiteness measure `W` from summed correlations [R(0), R(d) for d in LAGS]."""
    if correlations[0] <= 0:
        return 0.0
    return float(2 * np.sum((correlations[1:] / correlations[0]) ** 2))


@dataclass
class StoppingRule:
    """Decides, iteration by iteration, whether to go on, and which iterate is the best.

    - "whiteness": `W` rose more than `tolerance` percent above its minimum;
    - "stagnation": the relative change `||u_t+1 - u_t|| / ||u_t||` fell under `stagnation`;
    - "cap": `max_iterations` reached.
    `update` returns (is_best, reason or None). The first `min_iterations` never stop.
    """

    tolerance: float
    max_iterations: int
    stagnation: float = 2e-4
    min_iterations: int = 3
    best_whiteness: float = field(default=np.inf, init=False)
    best_iteration: int = field(default=0, init=False)

    def update(self, iteration: int, white: float, change: float) -> tuple[bool, str | None]:
        is_best = white <= self.best_whiteness
        if is_best:
            self.best_whiteness, self.best_iteration = white, iteration
        if iteration >= self.min_iterations:
            if white > self.best_whiteness * (1 + self.tolerance / 100):
                return is_best, "whiteness"
            if change < self.stagnation:
                return is_best, "stagnation"
        if iteration >= self.max_iterations:
            return is_best, "cap"
        return is_best, None
