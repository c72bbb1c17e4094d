"""The noise of a picture, and the regularisation weight derived from it.

Noise level: Immerkaer, "Fast noise variance estimation", Computer Vision and Image Understanding
64 (1996), doi:10.1006/cviu.1996.0060. The 3 x 3 operator

    N = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]

is the difference of two discrete Laplacians: it cancels smooth shading and straight edges
almost entirely and passes white noise with a gain of ||N|| = 6. Immerkaer averages |N * f|;
here the median is used instead (as Donoho's MAD does for wavelet bands), which ignores the
minority of pixels on corners and texture: sigma = median(|N * f|) / (6 * 0.6745).

Noise model: a camera's noise is Poisson-Gaussian (Foi, Trimeche, Katkovnik and Egiazarian,
"Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE TIP
17, 2008): photon shot noise, whose variance grows with the signal, plus signal-independent
read noise,

    var f(p) = gain * y(p) + read_variance,    y the noise-free picture.

Both parameters are fitted on the picture itself, as Foi et al. do: the pixels are sorted into
bins by their local mean (3 x 3), the noise variance of each bin is measured with N as above,
and a line is fitted through the (mean, variance) points. An integer file clips the noise at
black, where a picture's shadows lie (10-37 % of the benchmarks' photographs' pixels under 1 %
of white): a bin within three deviations of black has the lower tail of its noise cut off, and
its variance read low, so such bins are left out of the line (Foi et al. model the clipping
instead). Fitted through them, the read variance came out at 0.13-0.60 of the true one on real
photographs and the slope 1.4-2.5 times too steep (docs/MEASUREMENTS.md).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from worker.compiled import compiled
from worker.parallel import in_bands, in_threads

# Immerkaer's operator (a Laplacian difference that cancels smooth content), divided by 6 so
# that its gain on white noise is 1: its response to noise of deviation sigma has deviation sigma.
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32) / 6
_MAD_TO_SIGMA = 1 / 0.6744897501960817
_SAMPLE_PIXELS = 4_000_000  # larger pictures are measured on evenly spaced bands of rows
_BAND_ROWS = 64
_FIT_SAMPLES = 1_000_000  # the noise model is fitted on one to two times this many samples


def _sample_rows(
    image: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Evenly spaced bands of rows holding about `_SAMPLE_PIXELS` pixels (all of a small image).

    The median of a few million values is as good as that of 24 million and far cheaper. Each
    band is followed by one row of zero weight, so no 3 x 3 neighbourhood straddles two bands.
    """
    height, width = image.shape[:2]
    bands = _SAMPLE_PIXELS // (_BAND_ROWS * width)
    if bands * _BAND_ROWS >= height // 2:
        return image, mask
    starts = np.linspace(0, height - _BAND_ROWS, bands).astype(int)
    rows = np.concatenate([np.arange(s, s + _BAND_ROWS + 1) for s in starts])
    rows = np.minimum(rows, height - 1)
    weight = np.ones((len(rows), width), dtype=np.float32) if mask is None else mask[rows]
    weight = weight.copy()
    weight[_BAND_ROWS :: _BAND_ROWS + 1] = 0  # the separator rows
    return image[rows], weight


@numba.njit(inline="always")
def _correlate_at(plane: np.ndarray, weights: np.ndarray, rows: tuple, columns: tuple) -> float:
    """The sum over the 3 x 3 of `weights` times `plane` at `rows` x `columns`, row by row, in
    float64 (the order scipy's `ndimage.correlate` takes)."""
    total = 0.0
    for a in range(3):
        for b in range(3):
            total += np.float64(plane[rows[a], columns[b]]) * weights[a, b]
    return total


@compiled(nogil=True)
def _correlate_3x3(plane: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`plane` correlated with the 3 x 3 `weights`, the border mirrored (scipy's "reflect"):
    ``ndimage.correlate(plane, weights, mode="reflect")`` bit for bit, without its generic
    neighbourhood walk: one core reads a 2 Mpx plane in 2 ms (in bands on two cores, the threads'
    start cost more than they saved), without the GIL."""
    height, width = plane.shape
    out = np.empty((height, width), np.float32)
    for i in range(height):
        rows = (max(i - 1, 0), i, min(i + 1, height - 1))
        for j in (0, width - 1):  # the mirrored columns
            columns = (max(j - 1, 0), j, min(j + 1, width - 1))
            out[i, j] = _correlate_at(plane, weights, rows, columns)
        for j in range(1, width - 1):
            out[i, j] = _correlate_at(plane, weights, rows, (j - 1, j, j + 1))
    return out


@compiled(nogil=True)
def _inside_3x3(usable: np.ndarray) -> np.ndarray:
    """True where the whole 3 x 3 neighbourhood is inside the picture and `usable`: the binary
    erosion by a 3 x 3 square with nothing usable beyond the border (on one core, without the GIL,
    as `_correlate_3x3`)."""
    height, width = usable.shape
    out = np.empty((height, width), np.bool_)
    for i in range(height):
        for j in range(width):
            inside = 0 < i < height - 1 and 0 < j < width - 1
            if inside:
                for row in range(i - 1, i + 2):
                    for col in range(j - 1, j + 2):
                        inside = inside and usable[row, col]
            out[i, j] = inside
    return out


def noise_response(plane: np.ndarray) -> np.ndarray:
    """Immerkaer's response ``N * f / 6`` of one plane: its standard deviation is the noise's.

    Parameters
    ----------
    plane : ndarray, shape (H, W)
        One channel of the picture.

    Returns
    -------
    ndarray of float32, shape (H, W)
        The response, the border mirrored (the same as ``ndimage.correlate(plane, IMMERKAER,
        mode="reflect")``, bit for bit).
    """
    # A channel of an (H, W, C) picture is read five times faster copied out first.
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    if plane.size == 0:  # (no column to mirror)
        return plane.copy()
    return _correlate_3x3(plane, IMMERKAER.astype(np.float64))


def wholly_usable(usable: np.ndarray) -> np.ndarray:
    """Where a pixel's whole 3 x 3 neighbourhood is usable (what `noise_response` may count).

    Parameters
    ----------
    usable : ndarray, shape (H, W)
        Nonzero where a pixel is usable.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True where the pixel and its eight neighbours are inside the picture and usable (the
        binary erosion by a 3 x 3 square, nothing usable beyond the border).
    """
    return _inside_3x3(np.ascontiguousarray(np.asarray(usable) != 0))


def _noise_responses(
    image: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The (sampled) picture (H, W, C), where its 3 x 3 neighbourhoods are wholly usable, and
    each channel's noise response N * f / 6 (whose standard deviation is the noise's)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    image, mask = _sample_rows(image, mask)
    usable = wholly_usable(np.ones(image.shape[:2], bool) if mask is None else mask)
    responses = [noise_response(plane) for plane in np.moveaxis(image, 2, 0)]
    return image, usable, responses


def _three_by_three(filtered: Callable[[np.ndarray], np.ndarray], plane: np.ndarray) -> np.ndarray:
    """`filtered(plane)`, a 3 x 3 filter, on all cores (`worker.parallel.in_bands`)."""
    return in_bands(lambda rows: filtered(plane[rows]), plane.shape[0], 1)


def estimate_noise(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation of the noise in `image`, in image units.

    The channels' estimates are averaged. A pixel counts only when its whole 3 x 3 neighbourhood
    is usable. Pictures over about 8 Mpx are measured on bands of rows spread over the frame,
    about 4 Mpx in all.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The picture.
    mask : ndarray, shape (H, W), optional
        Nonzero where a pixel is usable: it leaves out pixels, such as clipped highlights, where
        the noise was erased. None: every pixel is usable.

    Returns
    -------
    float
        The noise's standard deviation (Immerkaer's operator, median of its absolute response);
        0.0 for an image too small to measure (under 3 x 3) or with no usable pixel.
    """
    if min(np.shape(image)[:2]) < 3:
        return 0.0
    _, usable, responses = _noise_responses(image, mask)
    return _median_sigma(usable, responses)


def _median_sigma(usable: np.ndarray, responses: list[np.ndarray]) -> float:
    """The channels' robust (MAD) noise sigmas over the usable pixels, averaged; 0.0 if none."""
    if not usable.any():
        return 0.0
    medians = in_threads(lambda response: np.median(np.abs(response[usable])), responses)
    return float(np.mean(medians) * _MAD_TO_SIGMA)


NOISE_BINS = 16  # intensity bins of the noise model's fit
MIN_BIN_PIXELS = 200  # a bin with fewer usable pixels is left out of the fit
MIN_LEVEL_SPAN = 0.2  # bins' levels spanning less than this fraction of the top one: Gaussian
ABOVE_BLACK = 3.0  # a bin counts when its level is this many of its noise deviations above 0
MAX_OFFSET = 1.0  # the shifted-Poisson offset is at most this many white levels


@dataclass(frozen=True)
class NoiseModel:
    """Poisson-Gaussian noise, `var f = gain * y + read_variance` (see the module's notes), and
    the picture's typical noise level `sigma` (as `estimate_noise` measures it).

    Attributes
    ----------
    gain : float
        The growth of the noise variance with the noise-free level `y`, at least 0.
    read_variance : float
        The signal-independent (read) noise variance, at least 0, in squared image units.
    sigma : float
        The picture's typical noise standard deviation, in image units.
    """

    gain: float
    read_variance: float
    sigma: float

    def offset(self, white: float) -> float:
        """The shifted-Poisson offset `b = read_variance / gain`: `(f + b) / gain` is close to a
        Poisson variable of mean `(y + b) / gain` (Snyder, Hammoud and White, JOSA A 10, 1993).

        Capped at MAX_OFFSET white levels: noise that hardly grows with the signal (a large b)
        is then treated as Gaussian, which a large offset approaches anyway.

        Parameters
        ----------
        white : float
            The picture's white level (`white_level`), in image units.

        Returns
        -------
        float
            ``min(read_variance / gain, MAX_OFFSET * white)``, in image units;
            ``MAX_OFFSET * white`` when the gain is 0.

        References
        ----------
        .. [1] D. L. Snyder, A. M. Hammoud and R. L. White, "Image recovery from data acquired
           with a charge-coupled-device camera", Journal of the Optical Society of America A
           10, 1993.
        """
        if self.gain <= 0:
            return MAX_OFFSET * white
        return min(self.read_variance / self.gain, MAX_OFFSET * white)

    def effective_gain(self, white: float) -> float:
        """The gain of the shifted-Poisson model with the capped offset that has the picture's
        noise variance at its white level.

        Parameters
        ----------
        white : float
            The picture's white level (`white_level`), in image units.

        Returns
        -------
        float
            ``var f(white) / (white + offset(white))``, with
            ``var f(white) = gain * white + read_variance``.
        """
        return (self.gain * white + self.read_variance) / (white + self.offset(white))


def _fit_line(
    levels: np.ndarray, variances: np.ndarray, weights: np.ndarray
) -> tuple[float, float]:
    """Weighted least squares `variance = gain * level + read_variance`, both kept >= 0."""
    design = np.stack([levels, np.ones_like(levels)], axis=1) * np.sqrt(weights)[:, None]
    gain, read = np.linalg.lstsq(design, variances * np.sqrt(weights), rcond=None)[0]
    if read < 0:  # pure shot noise: a line through the origin
        gain, read = np.sum(weights * levels * variances) / np.sum(weights * levels**2), 0.0
    if gain < 0:  # noise that does not grow with the signal: Gaussian
        gain, read = 0.0, np.sum(weights * variances) / np.sum(weights)
    return float(gain), float(read)


def estimate_noise_model(image: np.ndarray, mask: np.ndarray | None = None) -> NoiseModel:
    """Fit the Poisson-Gaussian `NoiseModel` of `image`, in image units.

    The usable pixels (as in `estimate_noise`) of all channels are sorted into NOISE_BINS bins
    of equal count by their local 3 x 3 mean; each bin gives its median level and its robust
    noise variance (the MAD of the noise response, squared). The line through those points is
    fitted with weights count / variance^2 (the relative precision of each variance), leaving
    out the bins whose level is under `ABOVE_BLACK` of their noise deviations (their noise cut
    at black). With too few bins to fit, or bins too close in level to tell a slope (a flat,
    tiny or dark picture), the noise is taken as Gaussian with the variance `estimate_noise`
    gives.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The picture.
    mask : ndarray, shape (H, W), optional
        Nonzero where a pixel is usable (as in `estimate_noise`); None: every pixel is usable.

    Returns
    -------
    NoiseModel
        The fitted gain and read variance (both at least 0), and the picture's noise level
        `sigma` (`estimate_noise`'s).
    """
    picture, usable, responses = _noise_responses(image, mask)
    sigma = _median_sigma(usable, responses)
    levels = np.concatenate(
        [
            _three_by_three(ndimage.uniform_filter, plane)[usable]
            for plane in np.moveaxis(picture, 2, 0)
        ]
    )
    noise = np.concatenate([r[usable] for r in responses])
    step = max(1, levels.size // _FIT_SAMPLES)  # a million samples fit the line as well
    levels, noise = levels[::step], noise[::step]
    order = np.argsort(levels)
    levels, noise = levels[order], noise[order]  # each bin then a slice, read in order
    points = []
    for chunk_levels, chunk_noise in zip(
        np.array_split(levels, NOISE_BINS), np.array_split(noise, NOISE_BINS), strict=True
    ):
        if chunk_levels.size < MIN_BIN_PIXELS:
            continue
        # In float64: a channel interpolated linearly between photosites (a bilinear
        # demosaicing) has a noise response of float32 rounding, whose variance squared
        # underflows float32 and made the weight infinite (the fit then failed).
        variance = (float(np.median(np.abs(chunk_noise))) * _MAD_TO_SIGMA) ** 2
        level = float(np.median(chunk_levels))
        if variance > 0 and level >= ABOVE_BLACK * np.sqrt(variance):  # (noise cut at black)
            points.append((level, variance, chunk_levels.size / variance**2))
    if len(points) >= 3:
        bin_levels, variances, weights = (np.array(column) for column in zip(*points, strict=True))
        if np.ptp(bin_levels) >= MIN_LEVEL_SPAN * np.abs(bin_levels).max():
            return NoiseModel(*_fit_line(bin_levels, variances, weights), sigma)
    return NoiseModel(0.0, sigma**2, sigma)


LAMBDA_SCALE = 2.2  # lambda = LAMBDA_SCALE * (gain / scale)^LAMBDA_POWER at priority 0
LAMBDA_POWER = 0.75
PRIORITY_RANGE = 4.0  # lambda is divided by this at priority +1 and multiplied at -1
WHITE_PER_MEAN = 3.85  # the prior's scale is at most this many times the mean level


def regularisation_weight(
    model: NoiseModel, white: float, mean: float, priority: float = 0.0, kernel_error: float = 0.0
) -> float:
    """The TV weight `lambda` of Richardson-Lucy-TV for the noise `model` and a priority in
    [-1, 1], with a learnt kernel's error counted as noise (`kernel_error`).

    In the shifted-Poisson likelihood the data term is divided by the gain, so the MAP weight of
    a TV (Laplacian gradient) prior in the Richardson-Lucy form is the gain divided by the
    prior's scale, the typical size of the picture's gradients, which follows the light the
    picture holds. The white level measures it on ordinary photographs, but not on a night
    scene, where a few lamps set the white level (the 99.5th percentile) far above the dark
    street around them: such a scene was smoothed 6 to 16 times too little and left worse than
    its shaken input (benchmarks/bench_raw.py; README, raw files). So the scale is the white
    level, at most WHITE_PER_MEAN times the mean level (the geometric mean of white / mean over
    the seven photographs of the quality benchmark, where the rule was fitted: ordinary pictures
    keep their weight). lambda is unchanged when a picture and its noise are scaled together,
    and the priority moves it on a log scale, monotonically:

        lambda = LAMBDA_SCALE * (g / min(white, WHITE_PER_MEAN mean))^LAMBDA_POWER
                 * PRIORITY_RANGE^(-priority) * kernel_smoothing(kernel_error),

    `g` the model's effective gain. -1 (denoise) regularises PRIORITY_RANGE times more than 0
    (balanced), +1 (deblur) PRIORITY_RANGE times less. The scale and the power were fitted on
    the quality benchmark (benchmarks/bench_deblur.py, noise of 1 % and 3 % of white at mid
    grey): the power below 1 is the smaller relative smoothing that heavy noise measured best
    with.

    Parameters
    ----------
    model : NoiseModel
        The picture's noise (`estimate_noise_model`).
    white : float
        The picture's white level (`white_level`), in image units.
    mean : float
        The picture's mean level, in image units.
    priority : float, optional
        From -1 (denoise) through 0 (balanced) to +1 (deblur).
    kernel_error : float, optional
        A learnt kernel's error variance over the noise's, ``r`` (`worker.deconv.kernel_error`);
        0 for a kernel taken as exact.

    Returns
    -------
    float
        lambda; 0.0 when the scale or the effective gain is not positive.
    """
    scale = min(white, WHITE_PER_MEAN * mean)
    if scale <= 0:
        return 0.0
    gain = model.effective_gain(white)
    if gain <= 0:
        return 0.0
    weight = LAMBDA_SCALE * (gain / scale) ** LAMBDA_POWER * PRIORITY_RANGE ** (-priority)
    return float(weight * kernel_smoothing(kernel_error))


def kernel_smoothing(kernel_error: float) -> float:
    """How many times a learnt kernel's error raises lambda (`regularisation_weight`).

    Parameters
    ----------
    kernel_error : float
        The kernel's error variance over the noise's, ``r`` (`worker.deconv.kernel_error`); a
        negative value counts as 0.

    Returns
    -------
    float
        ``(1 + r)^LAMBDA_POWER``, 1 for a kernel taken as exact (``r = 0``).
    """
    return float((1 + max(kernel_error, 0.0)) ** LAMBDA_POWER)


def white_level(image: np.ndarray) -> float:
    """The picture's white level: the 99.5th percentile of its values.

    Measured on every n-th value, one to two million of them (all of a smaller picture), which
    is plenty for a percentile.

    Parameters
    ----------
    image : ndarray
        The picture, any shape (all channels' values count alike).

    Returns
    -------
    float
        The 99.5th percentile, in image units.
    """
    values = np.asarray(image).reshape(-1)
    step = max(1, values.size // 1_000_000)
    return float(np.percentile(values[::step], 99.5))
