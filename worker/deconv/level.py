"""The working level: a picture far darker than any file holds is worked on brightened.

Some of the engine's floors are absolute (the level Richardson-Lucy-TV works from is at least
1e-12, its positive floor a share of that), set for pictures whose mean level is at least the
step of a 16-bit file. A valid picture can be far darker: a float export at -30 EV, or an
integer file whose ICC curve maps white to 1e-20. Worked on as it is, such a picture came back
as one flat value (measured: a picture scaled by 1e-20, and 16-bit samples under a curve
``Y = (X / 65536)^4``, returned as a constant, or white; `run` found it flat; results drifted
from a picture scaled by 1e-8 on). It is multiplied by a
power of two for the work and divided by it after: a power of two changes no sample's
mantissa, so nothing but the engine's view of the level changes; every other picture is worked
on exactly as it is.
"""

import math

import numpy as np

DARK_LEVEL = 2.0**-16  # a picture darker than this on average (a 16-bit file's step)...
WORKING_LEVEL = 2.0**-3  # ...is brightened to about this mean level (a mid-grey photograph's)


def working_gain(pixels: np.ndarray) -> float:
    """The power of two to multiply the linear picture `pixels` by for the engine's work.

    Parameters
    ----------
    pixels : ndarray
        The linear picture.

    Returns
    -------
    float
        1.0 unless the mean level is positive and under `DARK_LEVEL`; then the power of two that
        brings the mean to `WORKING_LEVEL` or under it by less than a factor of 2.
    """
    level = float(np.mean(pixels, dtype=np.float64))
    if not 0 < level < DARK_LEVEL:
        return 1.0
    return 2.0 ** math.floor(math.log2(WORKING_LEVEL / level))


def brighten(pixels: np.ndarray, clip_level: float | None) -> tuple[float, float | None]:
    """Multiply `pixels` in place by their `working_gain`.

    Parameters
    ----------
    pixels : ndarray
        The linear picture, float; left untouched when the gain is 1 (an ordinary picture).
    clip_level : float or None
        The value at which the picture clipped; None: unknown.

    Returns
    -------
    tuple of (float, float or None)
        The gain, and `clip_level` brought to the same level (None stays None).
    """
    gain = working_gain(pixels)
    if gain == 1:
        return gain, clip_level
    pixels *= gain
    return gain, None if clip_level is None else clip_level * gain
