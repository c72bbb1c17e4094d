"""When to stop iterating: stagnation, residual whiteness, or the iteration cap.

Residual whiteness: Almeida and Figueiredo, "New stopping criteria for iterative blind image
deblurring based on residual whiteness measures" (IEEE SSP 2011; TIP 2013). While the estimate
improves, the residual `r = f - A u` loses the image's structure and approaches the noise, which
is white; once the iteration starts fitting noise (and ringing), structure returns. The measure
is the energy of the residual's normalised autocorrelation at the nonzero lags of a small window,

    W = sum_{d != 0, |d| <= 1} ( R(d) / R(0) )^2,    R(d) = sum_p r(p) r(p + d),

summed over the channels' correlations, on the observed, unsaturated pixels only, with the
residual's mean removed. The run stops when `W` has risen above its minimum so far by more than the
user's tolerance, in percent of the structure the blur left at the start (`W` of the first iterate
minus the minimum); the last estimate still within the tolerance is returned. With TV weighted as in
`noise.regularisation_weight`, `W` typically reaches its minimum early (after 5-10 iterations), then
creeps up by a few percent while the picture still sharpens; a tolerance relative to the starting
structure lets those runs go on to their plateau and stops the ones that start amplifying noise.
"""

from dataclasses import dataclass, field

import numpy as np

from worker.compiled import compiled
from worker.stages import StopReason

# The lags d counted, in this order: (0, 1), (1, -1), (1, 0), (1, 1), half of the window |d| <= 1
# without the origin (the other half is its mirror image, with the same correlations).


@compiled(nogil=True, fastmath=True)
def residual_ratio(
    f: np.ndarray,
    blurred: np.ndarray,
    mask: np.ndarray,
    offset: float,
    floor: float,
    ratio: np.ndarray,
) -> np.ndarray:
    """Write `ratio = mask (f + offset) / max(blurred + offset, floor)`; return the residual's
    correlations.

    The residual is `r = mask * (f - blurred)`; the result holds, in float64, R(0), R(d) for each
    of the four lags above, then sum(r) and sum(mask). One pass over the plane does both jobs
    (the Richardson-Lucy ratio and the whiteness statistics). It runs on one tile of the frame,
    without the GIL, so tiles run in parallel; the pairs that straddle two tiles or touch the
    tile's first or last column (a fraction of a percent) are not counted.
    """
    height, width = f.shape
    shift, least = np.float32(offset), np.float32(floor)  # float32 arithmetic: twice the lanes
    residual = np.empty((height, width), dtype=np.float32)
    total = count = acc0 = 0.0
    for i in range(height):
        row_total = row_count = row_energy = np.float32(0.0)  # a row's sums, then float64
        for j in range(width):
            m = mask[i, j]
            ratio[i, j] = m * (f[i, j] + shift) / max(blurred[i, j] + shift, least)
            r = m * (f[i, j] - blurred[i, j])
            residual[i, j] = r
            row_total += r
            row_count += m
            row_energy += r * r
        total += float(row_total)
        count += float(row_count)
        acc0 += float(row_energy)
    acc1 = acc2 = acc3 = acc4 = 0.0
    for i in range(height - 1):
        lag1 = lag2 = lag3 = lag4 = np.float32(0.0)
        for j in range(1, width - 1):
            r = residual[i, j]
            lag1 += r * residual[i, j + 1]
            lag2 += r * residual[i + 1, j - 1]
            lag3 += r * residual[i + 1, j]
            lag4 += r * residual[i + 1, j + 1]
        acc1 += float(lag1)
        acc2 += float(lag2)
        acc3 += float(lag3)
        acc4 += float(lag4)
    return np.array([acc0, acc1, acc2, acc3, acc4, total, count])


def centred_correlations(sums: np.ndarray) -> np.ndarray:
    """[R(0), R(d)...] of the residual minus its mean, from `residual_ratio`'s sums.

    A residual with a nonzero mean correlates equally at every lag; removing the mean
    (R(d) - n mean^2, to first order) leaves the structure the whiteness test is about.
    """
    count = max(sums[6], 1.0)
    return sums[:5] - sums[5] ** 2 / count


def whiteness(correlations: np.ndarray) -> float:
    """The whiteness measure `W` from correlations [R(0), R(d) for the four lags of
    `residual_ratio`] (summed over channels)."""
    if correlations[0] <= 0:
        return 0.0
    return float(2 * np.sum((correlations[1:] / correlations[0]) ** 2))


@dataclass
class StoppingRule:
    """Decides, iteration by iteration, whether to go on.

    - "whiteness": `W` rose above its minimum by more than `tolerance` percent of (`reference` -
      minimum); the iterate before this one is the one to return. `reference` is the `W` of the
      blurred picture taken as its own estimate (what the blur left); without it, the first
      iterate's `W`. A good start (see `start`) is already nearly white: measured from its own
      `W`, the allowed rise would be nil;
    - "stagnation": the relative change `||u_t+1 - u_t|| / ||u_t||` fell under `stagnation`;
    - "cap": `max_iterations` reached.
    `update` returns the reason, or None to go on. The first `min_iterations` never stop on
    whiteness or stagnation: on noisy pictures `W` jumps about at the start, and stopping there
    cost up to 1 dB on the benchmark.
    """

    tolerance: float
    max_iterations: int
    stagnation: float = 5e-4
    min_iterations: int = 8
    reference: float | None = None
    first_whiteness: float | None = field(default=None, init=False)
    least_whiteness: float = field(default=np.inf, init=False)

    def update(self, iteration: int, white: float, change: float) -> StopReason | None:
        """Why to stop after `iteration` (its whiteness `white`, relative `change`), or None."""
        if self.first_whiteness is None:
            self.first_whiteness = white if self.reference is None else self.reference
        self.least_whiteness = min(self.least_whiteness, white)
        if iteration >= self.min_iterations:
            allowed = self.tolerance / 100 * (self.first_whiteness - self.least_whiteness)
            if white > self.least_whiteness + allowed:
                return StopReason.WHITENESS
            if change < self.stagnation:
                return StopReason.STAGNATION
        return StopReason.CAP if iteration >= self.max_iterations else None
