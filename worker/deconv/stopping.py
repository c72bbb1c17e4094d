"""When to stop iterating: stagnation, residual whiteness, or the iteration cap.

Residual whiteness: Almeida and Figueiredo, "New stopping criteria for iterative blind image
deblurring based on residual whiteness measures" (IEEE SSP 2011; TIP 2013). While the estimate
improves, the residual `r = f - A u` loses the image's structure and approaches the noise, which
is white; once the iteration starts fitting noise (and ringing), structure returns. The measure
is the energy of the residual's normalised autocorrelation at the nonzero lags of a small window,

    W = sum_{d != 0, |d| <= 1} ( R(d) / R(0) )^2,    R(d) = sum_p r(p) r(p + d),

summed over the channels' correlations, on the observed, unsaturated pixels only, with the
residual's mean removed. The run stops when `W` has risen above its minimum so far by more than the
user's tolerance, in percent of the structure the blur left at the start (the reference minus the
minimum: the `W` of the blurred picture itself when the run starts from a half-quadratic or coarse
estimate, else the `W` of the first iterate); the last estimate still within the tolerance is
returned. With TV weighted as in `noise.regularisation_weight`, `W` typically reaches its minimum
early (after 5-10 iterations), then creeps up by a few percent while the picture still sharpens; a
tolerance relative to the starting structure lets those runs go on to their plateau and stops the
ones that start amplifying noise.
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
    """Write the Richardson-Lucy ratio of one tile into `ratio`; return its residual's sums.

    The ratio is ``mask (f + offset) / max(blurred + offset, floor)`` and the residual
    ``r = mask * (f - blurred)``. One pass over the plane does both jobs (the Richardson-Lucy ratio
    and the whiteness statistics). It runs on one tile of the frame, without the GIL, so tiles run
    in parallel; the pairs that straddle two tiles or touch the tile's first or last column (a
    fraction of a percent) are not counted. The sums are taken in float32 along each row, then
    added up in float64.

    Parameters
    ----------
    f : ndarray, shape (h, w)
        The observed tile, one channel.
    blurred : ndarray, shape (h, w)
        The current estimate blurred (``A u``) on the same tile.
    mask : ndarray, shape (h, w)
        The data weight (`boundaries.data_mask`): 0 on clipped pixels, 1 elsewhere.
    offset : float
        The shifted-Poisson offset added to `f` and `blurred` (`noise.NoiseModel.offset`).
    floor : float
        The least denominator: keeps the ratio finite where ``blurred + offset`` nears 0.
    ratio : ndarray of float32, shape (h, w)
        Where the ratio is written.

    Returns
    -------
    ndarray of float64, shape (7,)
        R(0), then R(d) for the four lags (0, 1), (1, -1), (1, 0), (1, 1), then sum(r) and
        sum(mask); summed over the tiles, what `centred_correlations` takes.
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
    """The residual's correlations with its mean removed, from `residual_ratio`'s sums.

    A residual with a nonzero mean correlates equally at every lag; removing the mean
    (R(d) - n mean^2, to first order) leaves the structure the whiteness test is about.

    Parameters
    ----------
    sums : ndarray, shape (7,)
        `residual_ratio`'s result, summed over the tiles of one channel.

    Returns
    -------
    ndarray of float64, shape (5,)
        R(0) and R(d) for the four lags, each less ``sum(r)^2 / sum(mask)`` (the count taken
        as at least 1).
    """
    count = max(sums[6], 1.0)
    return sums[:5] - sums[5] ** 2 / count


def whiteness(correlations: np.ndarray) -> float:
    """The whiteness measure `W` of the residual (see the module's notes).

    Parameters
    ----------
    correlations : ndarray, shape (5,)
        R(0), then R(d) for the four lags of `residual_ratio`, summed over the channels
        (`centred_correlations`).

    Returns
    -------
    float
        ``W = 2 sum_d (R(d) / R(0))^2`` (the factor 2 counts the four mirrored lags); 0.0 when
        R(0) is not positive (no residual).
    """
    if correlations[0] <= 0:
        return 0.0
    return float(2 * np.sum((correlations[1:] / correlations[0]) ** 2))


@dataclass
class StoppingRule:
    """Decides, iteration by iteration, whether to go on.

    - "whiteness": `W` rose above its minimum by more than `tolerance` percent of (`reference` -
      minimum); the iterate before this one is the one to return. `reference` is the `W` of the
      blurred picture taken as its own estimate (what the blur left); without it, the first
      iterate's `W`. A good start (see `rl_tv.richardson_lucy_tv`'s `start`) is already nearly
      white: measured from its own `W`, the allowed rise would be nil;
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
        """Why to stop after `iteration`, or None to go on.

        The first call sets the starting whiteness (`reference`, else `white`); every call updates
        the least whiteness so far.

        Parameters
        ----------
        iteration : int
            The iteration just done, counted from 1.
        white : float
            The whiteness `W` of its residual (`whiteness`).
        change : float
            Its relative change ``||u_t+1 - u_t|| / ||u_t||``.

        Returns
        -------
        StopReason or None
            `StopReason.WHITENESS` (return the iterate before this one), `STAGNATION` or `CAP`; None
            to go on.
        """
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
