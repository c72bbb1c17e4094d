"""Linear light to integer samples through a tone curve, by thresholds: exact and fast.

An integer sample of `top` levels (255 or 65535) encodes a linear value `x` as

    q(x) = rint(clip(E(x), 0, 1) top),

`E` the channel's tone curve's encoding (`icc.ToneCurve.encode`, a power law in float64 for sRGB),
which cost 1.2 s for the three channels of a 24 Mpx picture. On the curves of real profiles
(sRGB, gamma, tables) `q` never decreases as `x` grows, so it is fixed by its `top` thresholds

    T_n = min { x : q(x) >= n },    n = 1 .. top,     q(x) = max { n : T_n <= x },

each found once per curve by bisection over the float32 numbers (a non-negative float32's bits
order it as an integer), evaluating `q` itself, so that the quantiser's result is the reference's
sample for sample. Counting thresholds per pixel is then a search; to make it a step or two, the
float32 numbers in [0, 1) are cut into buckets by their top bits (exponent and `23 - SHIFT`
mantissa bits: a relative width of 2^-(23 - SHIFT)), each knowing the sample of its lowest number,
and a pixel walks up from its bucket's sample past the thresholds under it (at most a few at
`SHIFT` 11: the sRGB curve's steepest relative step, near white, spans 7 samples of 65535). A
curve whose samples fall somewhere, or that needs linear values above 1 to reach `top`, has no
thresholds and is encoded directly.
"""

import functools

import numba
import numpy as np

from worker.compiled import compiled
from worker.files.icc import ToneCurve

SHIFT = 11  # a bucket is the float32 numbers sharing all but their last SHIFT bits
BRACKET = 64  # float32 steps either side of a threshold's first guess
ROWS = 256  # rows encoded at a time where there are no thresholds (bounds float64 temporaries)
_ONE_BITS = int(np.float32(1.0).view(np.uint32))


def reference_samples(curve: ToneCurve, linear: np.ndarray, top: int) -> np.ndarray:
    """`q(x)` computed directly, through the curve's encoding: what the thresholds reproduce.

    Parameters
    ----------
    curve : ToneCurve
        The channel's tone curve.
    linear : ndarray of float32
        Linear values.
    top : int
        The largest sample (255, 65535).

    Returns
    -------
    ndarray of float32
        The samples, whole numbers in [0, top], in `linear`'s shape.
    """
    return np.rint(np.clip(curve.encode(linear), 0.0, 1.0) * np.float32(top))


@functools.lru_cache(maxsize=16)
def thresholds(curve: ToneCurve, top: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The thresholds `T_n` of `curve`'s samples and each bucket's sample (the module's notes).

    Parameters
    ----------
    curve : ToneCurve
        The channel's tone curve.
    top : int
        The largest sample.

    Returns
    -------
    limits : ndarray of float32, shape (top + 1,)
        `T_n`, the smallest positive float32 whose sample is `n` or more; `T_0` = 0.
    starts : ndarray of uint16, shape (bits of 1.0 >> SHIFT,)
        The sample of each bucket's lowest positive number.
    None
        Where `T_top` is above 1 (beyond the buckets) or the buckets' lowest numbers do not have
        the samples the thresholds give them: a curve whose samples fall somewhere (some
        parametric curves' offsets make them fall first above 0), which thresholds cannot
        describe; `quantise` then encodes directly.
    """
    high = _first_reaching(curve, top)
    limits = _numbers(np.concatenate([[0], high]))
    if limits[-1] > 1:
        return None
    bits = np.arange(_ONE_BITS >> SHIFT, dtype=np.uint32) << SHIFT
    lowest = np.maximum(bits, 1).view(np.float32)  # the first bucket's: the smallest positive
    starts = (np.searchsorted(limits, lowest, side="right") - 1).astype(np.uint16)
    if np.any(reference_samples(curve, lowest, top) != starts):
        return None
    return limits, starts


def _first_reaching(curve: ToneCurve, top: int) -> np.ndarray:
    """The bits of `T_1 .. T_top` (the module's notes): bisection over the float32 numbers,
    from brackets of `BRACKET` numbers either side of the curve's own inverse at `n - 1/2`,
    widened to [0, 2] where they do not hold."""
    wanted = np.arange(1, top + 1)
    middle = _bits(curve.linearise((wanted - 0.5) / top))
    low, high = np.maximum(middle - BRACKET, 0), middle + BRACKET  # low 0: unevaluated
    wrong = reference_samples(curve, _numbers(high), top) < wanted
    wrong |= (low > 0) & (reference_samples(curve, _numbers(low), top) >= wanted)
    low[wrong], high[wrong] = 0, _bits(np.array(2.0))
    active = np.flatnonzero(high - low > 1)
    while active.size:
        middle = (low[active] + high[active]) // 2
        above = reference_samples(curve, _numbers(middle), top) >= wanted[active]
        high[active] = np.where(above, middle, high[active])
        low[active] = np.where(above, low[active], middle)
        active = active[high[active] - low[active] > 1]
    return high


def _bits(numbers: np.ndarray) -> np.ndarray:
    """The bits of non-negative numbers as float32, as int64 (0 for those not above 0)."""
    numbers = np.asarray(numbers, np.float32)
    return np.where(numbers > 0, numbers, np.float32(0)).view(np.uint32).astype(np.int64)


def _numbers(bits: np.ndarray) -> np.ndarray:
    """The float32 numbers of non-negative bits (`_bits`' inverse)."""
    return bits.astype(np.uint32).view(np.float32)


@compiled(parallel=True)
def _quantise(linear: np.ndarray, bits: np.ndarray, limits: np.ndarray, starts: np.ndarray,
              out: np.ndarray) -> int:  # fmt: skip
    """`out = q(linear)` for a 2-D plane's positive values (`bits`: its float32 numbers' bits;
    the module's notes): `top` from `T_top` up, else the bucket's sample walked up past the
    thresholds under it. Returns how many values are not above 0 (or NaN), left at 0."""
    top = len(limits) - 1
    height, width = linear.shape
    left = 0
    for i in numba.prange(height):
        for j in range(width):
            x = linear[i, j]
            if not x > 0:
                out[i, j] = 0
                left += 1
            elif x >= limits[top]:
                out[i, j] = top
            else:
                n = starts[bits[i, j] >> SHIFT]
                while x >= limits[n + 1]:
                    n += 1
                out[i, j] = n
    return left


def quantise(curve: ToneCurve, linear: np.ndarray, out: np.ndarray) -> None:
    """Integer samples of linear values through `curve`: `reference_samples`, exactly, faster.

    Parameters
    ----------
    curve : ToneCurve
        The channel's tone curve.
    linear : ndarray of float32, shape (H, W)
        Linear values, 1 for white.
    out : ndarray of uint8 or uint16, shape (H, W)
        Where the samples go; its dtype sets `top`. A NaN gives 0.
    """
    top = int(np.iinfo(out.dtype).max)
    linear = np.asarray(linear, np.float32)
    tables = thresholds(curve, top)
    if tables is None:
        for first in range(0, len(linear), ROWS):
            rows = slice(first, first + ROWS)
            out[rows] = np.nan_to_num(reference_samples(curve, linear[rows], top), nan=0.0)
    elif _quantise(linear, linear.view(np.uint32), *tables, out):
        rest = ~(linear > 0)  # zero, negative, NaN: through the curve (odd below 0), rare
        out[rest] = np.nan_to_num(reference_samples(curve, linear[rest], top), nan=0.0)
