"""Noise that demosaicing spread over neighbouring pixels: detected, and measured at half size.

A raw converter's demosaicing fills two of each pixel's three colours by interpolating between
neighbouring photosites, so the noise of a picture made from a raw file is correlated between
neighbours: low-pass. The 3 x 3 operator of `noise.estimate_noise` (Immerkaer 1996) mostly passes
the highest frequencies, which interpolation removes: on darktable 4.2's exports of DNG files it
reads 0.45-0.54 of the noise's true standard deviation (benchmarks/bench_raw.py), and a
regularisation fitted to that lets the noise through.

Detection: a Bayer mosaic repeats every 2 x 2 pixels, and so does what demosaicing does to the
noise: at a photosite its own colour is measured, elsewhere interpolated. So the strength of the
noise response `N * f` differs between the four positions of the 2 x 2 lattice, while a
picture's content and white noise are the same at all four. `bayer_phase_ratio` is the largest,
over the channels, max / min of the four positions' median |N * f|: 1.01-1.05 for white noise on
sharp or blurred synthetic scenes at every level tried, 1.30-1.54 on darktable's exports of DNG
files. Above PHASE_RATIO the noise is taken as demosaiced.

Level: the same estimator on the picture averaged over 2 x 2 blocks. Averaging four independent
samples halves white noise; demosaiced noise loses far less (its neighbours are alike), so
`q = 2 sigma_half / sigma` measures how much the 3 x 3 operator missed. On darktable's exports q
is 2.5-3.0 while the true sigma is 1.9-2.2 times the estimate: q overshoots a little, and the
noise model scaled by q deblurred best there of the factors tried (1, 1.5, 2.2, q: mean gains of
-1.92, +0.06, +1.88, +2.53 dB on bench_raw's ten cases without a tone mapper). q is no
detector: on detailed pictures with little white noise, their own detail reads as noise at half
size and q reaches 3 too.
"""

import numpy as np

from worker.deconv.noise import NoiseModel, estimate_noise, noise_response, wholly_usable
from worker.parallel import in_threads

PHASE_RATIO = 1.15  # bayer_phase_ratio above this: demosaiced noise
_SAMPLE_SIDE = 1024  # the phase ratio is measured on a central crop at most this large


def _half(image: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 block (an odd last row or column is dropped)."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:height, :width].reshape(height // 2, 2, width // 2, 2, *image.shape[2:])
    return blocks.mean(axis=(1, 3))


def _central_crop(array: np.ndarray) -> np.ndarray:
    """At most _SAMPLE_SIDE x _SAMPLE_SIDE from the middle, starting on an even row and column."""
    top = max(0, (array.shape[0] - _SAMPLE_SIDE) // 4 * 2)
    left = max(0, (array.shape[1] - _SAMPLE_SIDE) // 4 * 2)
    return array[top : top + _SAMPLE_SIDE, left : left + _SAMPLE_SIDE]


def bayer_phase_ratio(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """How unequal the noise is over the four positions of the 2 x 2 lattice (module's notes).

    The largest, over the channels, ratio of the strongest to the weakest of the four lattice
    positions' median noise response |N * f|: about 1 for white noise, well above for demosaiced
    noise. Measured on the usable pixels (`mask` nonzero, the 3 x 3 neighbourhood wholly usable)
    of a central crop of at most 1024 x 1024 that starts on an even row and column.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The picture.
    mask : ndarray, shape (H, W), optional
        Nonzero where a pixel is usable (as in `noise.estimate_noise`); None: every pixel.

    Returns
    -------
    float
        The ratio, at least 1. inf when some positions carry no noise and others do; 1.0 when
        none does, or when a position has no usable pixel.
    """
    image = _central_crop(np.asarray(image, np.float32))
    if image.ndim == 2:
        image = image[..., None]
    whole = np.ones(image.shape[:2], bool) if mask is None else _central_crop(np.asarray(mask))
    usable = wholly_usable(whole)
    phases = [(row, col) for row in (0, 1) for col in (0, 1)]
    if not all(usable[row::2, col::2].any() for row, col in phases):
        return 1.0

    def ratio(response: np.ndarray) -> float:
        np.abs(response, out=response)
        medians = [
            float(np.median(response[row::2, col::2][usable[row::2, col::2]]))
            for row, col in phases
        ]
        if max(medians) == 0:
            return 1.0
        return max(medians) / min(medians) if min(medians) > 0 else np.inf

    responses = [noise_response(plane) for plane in np.moveaxis(image, 2, 0)]
    return float(max(1.0, *in_threads(ratio, responses)))


def correlation_factor(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The factor by which `estimate_noise` underestimates demosaiced noise (module's notes).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The picture.
    mask : ndarray, shape (H, W), optional
        As in `estimate_noise`: nonzero where a pixel is usable; at half size a 2 x 2 block
        counts when all its pixels do. None: every pixel.

    Returns
    -------
    float
        ``q = 2 sigma_half / sigma`` (at least 1) when `bayer_phase_ratio` exceeds
        `PHASE_RATIO`; 1.0 otherwise, and for a picture under 6 px on a side or without
        measurable noise.
    """
    if min(np.shape(image)[:2]) < 6 or bayer_phase_ratio(image, mask) <= PHASE_RATIO:
        return 1.0
    sigma = estimate_noise(image, mask)
    if sigma <= 0:
        return 1.0
    half_mask = None if mask is None else _half((np.asarray(mask) != 0).astype(np.float32)) == 1
    ratio = 2 * estimate_noise(_half(np.asarray(image, np.float32)), half_mask) / sigma
    return max(1.0, float(ratio))


def for_correlated_noise(
    model: NoiseModel, image: np.ndarray, mask: np.ndarray | None = None
) -> NoiseModel:
    """`model` scaled to the noise's level when demosaicing correlated it.

    Parameters
    ----------
    model : NoiseModel
        The noise model fitted on `image` (`noise.estimate_noise_model`).
    image : ndarray, shape (H, W) or (H, W, C)
        The picture.
    mask : ndarray, shape (H, W), optional
        As in `correlation_factor`.

    Returns
    -------
    NoiseModel
        `model` itself when `correlation_factor` is 1; else a new model whose variances (`gain`,
        `read_variance`) are multiplied by the factor squared and `sigma` by the factor.
    """
    factor = correlation_factor(image, mask)
    if factor == 1.0:
        return model
    return NoiseModel(model.gain * factor**2, model.read_variance * factor**2, model.sigma * factor)
