"""A Gaussian blur of a plane, compiled: `scipy.ndimage.gaussian_filter`'s figures, sooner.

scipy's filter copies every line of the plane into a buffer of doubles, filters it and copies it
back, one line at a time; on the 2-core test machine a sigma of 4 px over a 24 Mpx plane took 0.8 s
of one core, and a sigma of 1.5 px, with a kernel a third as long, still 0.6 s (0.25 and 0.15 s
here). Here the columns are filtered a row of outputs at a time (the rows they read stay in the
cache) and the rows each from one buffer, both in loops over the outputs that run in SIMD lanes.

The arithmetic is scipy's, so the figures are the same bit for bit
(`tests/deconv/test_gaussian_blur.py`): the weights `exp(-x^2 / (2 sigma^2))` normalised to sum
1, `x` up to ``int(4 sigma + 0.5)``; the columns first, then the rows, each pass kept in the
plane's precision; each output, in doubles, the centre sample times its weight plus, from the
farthest pair in, each pair of samples at the same distance summed, then times their weight
(scipy's sum for a symmetric kernel); beyond the edges the plane mirrored about them
(``mode="reflect"``: d c b a | a b c d | d c b a).
"""

import numpy as np

from worker.compiled import compiled

TRUNCATE = 4.0  # the kernel reaches this many sigmas (scipy's default)


def reach(sigma: float) -> int:
    """How many pixels a Gaussian blur of `sigma` reads on either side: ``int(TRUNCATE sigma +
    0.5)``, as scipy's.

    Parameters
    ----------
    sigma : float
        The standard deviation, in pixels.

    Returns
    -------
    int
        The kernel's radius r (its taps ``-r .. r``).
    """
    return int(TRUNCATE * sigma + 0.5)


def gaussian_weights(sigma: float) -> np.ndarray:
    """The normalised Gaussian of `sigma` on the taps ``-r .. r``, ``r = reach(sigma)``.

    Parameters
    ----------
    sigma : float
        The standard deviation, in pixels, above 0.

    Returns
    -------
    ndarray of float64, shape (2 r + 1,)
        The weights, summing to 1, as `scipy.ndimage.gaussian_filter` computes them.
    """
    radius = reach(sigma)
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * taps**2)
    return weights / weights.sum()


def gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """`plane` blurred by a Gaussian of `sigma` pixels, its edges mirrored.

    The same figures as ``scipy.ndimage.gaussian_filter(plane, sigma, mode="reflect")`` (see the
    module's notes), on one core, without the GIL (`worker.parallel.in_bands` runs bands of a
    large plane side by side).

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        The values, float32 or float64.
    sigma : float
        The standard deviation, in pixels, above 0.

    Returns
    -------
    ndarray, shape (H, W)
        The blurred plane, of `plane`'s dtype.

    Raises
    ------
    ValueError
        When `plane` is not a 2-D float32 or float64 array, or `sigma` is not above 0.
    """
    if plane.ndim != 2 or plane.dtype not in (np.float32, np.float64):
        raise ValueError("a Gaussian blur takes a 2-D plane of float32 or float64")
    if not sigma > 0:
        raise ValueError(f"a Gaussian blur's sigma must be above 0, not {sigma!r}")
    plane = np.ascontiguousarray(plane)
    weights = gaussian_weights(sigma)
    out = np.empty_like(plane)
    _blur_columns(plane, weights, out)
    _blur_rows(out, weights, out)  # (in place: each row is read into a buffer first)
    return out


@compiled(nogil=True)
def _mirrored(index: int, length: int) -> int:
    """`index` on a line of `length` samples mirrored about its edges, period 2 `length`."""
    period = index % (2 * length)
    return period if period < length else 2 * length - 1 - period


@compiled(nogil=True)
def _blur_columns(plane: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """`out` = `plane` filtered along its columns by the symmetric `weights`, a row of outputs
    at a time (the sum of `gaussian_blur`'s notes)."""
    height, width = plane.shape
    radius = weights.shape[0] // 2
    total = np.empty(width)
    for i in range(height):
        centre, weight = plane[i], weights[radius]
        for j in range(width):
            total[j] = np.float64(centre[j]) * weight
        for distance in range(radius, 0, -1):
            above = plane[_mirrored(i - distance, height)]
            below = plane[_mirrored(i + distance, height)]
            weight = weights[radius - distance]
            for j in range(width):
                total[j] += (np.float64(above[j]) + np.float64(below[j])) * weight
        row = out[i]
        for j in range(width):
            row[j] = total[j]


@compiled(nogil=True)
def _blur_rows(plane: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """`out` = `plane` filtered along its rows by the symmetric `weights`, each row from one
    mirrored buffer of doubles (the sum of `gaussian_blur`'s notes); `out` may be `plane`."""
    height, width = plane.shape
    radius = weights.shape[0] // 2
    line = np.empty(width + 2 * radius)
    total = np.empty(width)
    for i in range(height):
        row = plane[i]
        for k in range(radius):  # the mirrored margins...
            line[k] = row[_mirrored(k - radius, width)]
            line[width + radius + k] = row[_mirrored(width + k, width)]
        for j in range(width):  # ...and the row between them
            line[radius + j] = row[j]
        centre, weight = line[radius:], weights[radius]
        for j in range(width):  # (views indexed from 0: loops without index checks, in SIMD)
            total[j] = centre[j] * weight
        for distance in range(radius, 0, -1):
            left, right = line[radius - distance :], line[radius + distance :]
            weight = weights[radius - distance]
            for j in range(width):
                total[j] += (left[j] + right[j]) * weight
        target = out[i]
        for j in range(width):
            target[j] = total[j]
