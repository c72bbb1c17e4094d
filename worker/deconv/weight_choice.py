"""The TV weight fitted to the picture: the rule's lambda scaled by hold-out prediction.

`noise.regularisation_weight` sets lambda from the noise alone, but the best lambda also depends
on the content: smooth pictures take more smoothing than the rule gives, finely detailed ones
less (docs/MEASUREMENTS.md, *Removing a known blur*). The factor is chosen by cross-validation
(Stone, "Cross-validatory choice and assessment of statistical predictions", J. R. Stat. Soc. B
36, 1974, doi:10.1111/j.2517-6161.1974.tb00994.x), as `holdout` judges a kernel: a share `H` of
a centre crop's pixels, drawn at random, is held out of the data term, the crop is deblurred
from the rest at each scale `s` of `SCALES` (a few iterations, grey: the channels' mean), and
the scale whose result, blurred again, best predicts the held-out pixels is kept
(`best_scale`):

    s* = argmin_s  sum_{x in H} ((k * u_s)(x) - f(x))^2,
    u_s = the restoration of f on the other pixels with lambda = s lambda_rule.

A held-out pixel is predicted from what its neighbours imply: too little smoothing fits their
noise, too much their detail away, and either predicts it worse. Only scales of 1 and more are
tried: on the blind benchmark's photographs with their true kernels, the choice among 0.7-2 also
lost up to 0.5 dB where the crop asked for less smoothing than the whole picture wanted, the
choice among 1-2 lost nowhere on its main set (+0.24 dB on average; the best of the three
+0.30).
"""

import math

import numpy as np
from scipy import ndimage

from worker.deconv.local import blurred_again

SCALES = (1.0, 1.4, 2.0)  # the rule's lambda times these is tried
CROP = 512  # the centre crop's side, px (smaller crops chose worse: 384 px +0.19 dB, 256 +0.11)
HELD_OUT = 0.1  # the share of the crop's pixels held out
ITERATIONS = 12  # each trial's cap (the choice at 12 was as good as from full runs)
FILL = 5  # a held-out pixel's stand-in in the start: the mean of the training pixels this near
SEED = 5  # the split is drawn from a fixed seed: the same picture gets the same choice
TIE = 1e-4  # errors this close (relative) are a tie, which goes to the earliest scale of them


def grey_centre(image: np.ndarray, size: int = CROP) -> np.ndarray:
    """The centre `size` x `size` crop of `image`, as one grey channel.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture.
    size : int, optional
        The crop's side; a picture smaller than it is taken whole along that side.

    Returns
    -------
    ndarray of float32, shape (min(H, size), min(W, size), 1)
        The channels' mean over the crop.
    """
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    crop = image[top : top + size, left : left + size]
    return np.ascontiguousarray(crop.mean(axis=2, keepdims=True, dtype=np.float32))


def held_out_pixels(shape: tuple[int, int]) -> np.ndarray:
    """The held-out pixels of a crop: a share `HELD_OUT`, drawn from `SEED`.

    Parameters
    ----------
    shape : tuple of int
        The crop's (height, width).

    Returns
    -------
    ndarray of bool, shape `shape`
        True where a pixel is held out.
    """
    return np.random.default_rng(SEED).random(shape) < HELD_OUT


def training_data(
    f: np.ndarray, mask: np.ndarray, held: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The data a trial restores from: the held-out pixels taken out of the data term.

    Parameters
    ----------
    f : ndarray, shape (C, H, W)
        The observed picture, one plane a channel.
    mask : ndarray of float32, shape (H, W)
        The data term's weight (`boundaries.data_mask`).
    held : ndarray of bool, shape (H, W)
        The held-out pixels (`held_out_pixels`).

    Returns
    -------
    f : ndarray of float32, shape (C, H, W)
        The picture, each held-out pixel replaced by the mean of the training pixels within
        `FILL` // 2 px (so that no start, which reads every pixel, sees it).
    mask : ndarray of float32, shape (H, W)
        The weight, 0 on the held-out pixels.
    """
    training = (mask * ~held).astype(np.float32)
    share = np.maximum(ndimage.uniform_filter(training, FILL), 1e-3)
    filled = np.empty_like(f, dtype=np.float32)
    for channel, plane in enumerate(f):
        local = ndimage.uniform_filter(plane * training, FILL) / share
        filled[channel] = np.where(held, local, plane)
    return filled, training


def prediction_error(
    estimate: np.ndarray, f: np.ndarray, psf: np.ndarray, held: np.ndarray
) -> float:
    """How far the re-blurred estimate is from the held-out pixels: their mean squared error.

    Parameters
    ----------
    estimate : ndarray, shape (C, H, W)
        A trial's restoration, on the observed frame.
    f : ndarray, shape (C, H, W)
        The observed picture.
    psf : ndarray, shape (kh, kw)
        The kernel, summing to 1.
    held : ndarray of bool, shape (H, W)
        The held-out pixels.

    Returns
    -------
    float
        mean over the held-out pixels and channels of ((k * u)(x) - f(x))^2, the estimate's
        borders mirrored so that the blur keeps the frame's size (`local.blurred_again`); NaN
        when no pixel is held out (a crop of a few pixels), which predicts nothing.
    """
    if not held.any():
        return math.nan
    error = 0.0
    for plane, observed in zip(estimate, f, strict=True):
        error += float(np.mean((blurred_again(plane, psf) - observed)[held] ** 2))
    return error / len(f)


def best_scale(errors: list[float]) -> float:
    """The scale of `SCALES` whose trial predicted the held-out pixels best.

    Errors within `TIE` (relative) of the least count as equal, and the first such scale wins:
    the rule's own weight unless a larger one predicts clearly better. Where no trial predicted
    anything (NaN errors: no pixel held out), that is the rule's weight too. Without a blur (a 1 px
    kernel) a held-out pixel's prediction is the estimate at that pixel, which no data term
    reaches, so every trial predicts it alike (on an unblurred photograph of the blind
    benchmark, to seven digits); the least error then followed the floats' last digits, and
    the choice, worth 0.9-1.6 dB there, changed from one run to the next (docs/MEASUREMENTS.md,
    *Removing a known blur*).

    Parameters
    ----------
    errors : list of float
        `prediction_error` of each trial, in the order of `SCALES`.

    Returns
    -------
    float
        The chosen scale.
    """
    if not any(math.isfinite(error) for error in errors):
        return SCALES[0]
    least = min(error for error in errors if math.isfinite(error))
    return next(
        scale for scale, error in zip(SCALES, errors, strict=True) if error <= least * (1 + TIE)
    )
