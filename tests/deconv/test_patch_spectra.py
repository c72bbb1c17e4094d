"""Patches' power spectra: the binning and the likelihood of a blur."""

import warnings

import numpy as np

from worker.deconv.noise import NoiseModel
from worker.deconv.parametric import disc_kernel
from worker.deconv.patch_spectra import bin_means, patch_spectra
from worker.deconv.synthetic import blur_valid, dead_leaves


def test_bin_means_average_each_bins_frequencies_and_leave_out_the_unused() -> None:
    rng = np.random.default_rng(4)
    bins = rng.integers(-1, 5, (8, 5))  # -1: a frequency no bin uses
    values = rng.random((2, 3, 8, 5))
    means = bin_means(values, bins, 5)
    assert means.shape == (2, 3, 5)
    for b in range(5):
        assert np.allclose(means[..., b], values[..., bins == b].mean(axis=-1))


def test_a_blurred_picture_is_more_likely_blurred_and_a_sharp_one_sharp() -> None:
    rng = np.random.default_rng(6)
    disc = disc_kernel(4.0)
    scene = dead_leaves((320, 320), rng)
    noise = NoiseModel(0.0, 1e-6, 1e-3)
    for picture, blurred in ((scene[8:-8, 8:-8], False), (blur_valid(scene, disc), True)):
        picture = picture + rng.normal(0, 1e-3, picture.shape).astype(np.float32)
        spectra = patch_spectra(picture, 64, 32, noise)
        assert spectra.detail().all()
        margin = spectra.likelihood(disc) - spectra.likelihood(None, (0.0,))
        assert (np.median(margin) > 0) == blurred


def test_a_noiseless_picture_is_scored_without_overflow() -> None:
    """A synthetic picture without noise (flat rectangles), against a kernel with spectral
    zeros (a 9 px line): finite likelihoods and no warnings. Until engine 0.3.19 the noise's
    power was floored only at the smallest positive number, and a hypothesis's zeros made
    Whittle's ratios overflow (warnings on stderr, infinite terms)."""
    rng = np.random.default_rng(7)
    picture = np.full((240, 300), 0.3, np.float32)
    for _ in range(40):
        y, x = rng.integers(0, 240), rng.integers(0, 300)
        picture[y : y + rng.integers(5, 60), x : x + rng.integers(5, 60)] = rng.uniform(0.05, 0.9)
    line = np.zeros((9, 9))
    line[4] = 1 / 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spectra = patch_spectra(np.repeat(picture[..., None], 3, -1), 64, 32)
        scores = spectra.likelihood(line), spectra.likelihood(None)
    assert all(np.isfinite(score).all() for score in scores)


def test_a_grey_pictures_luminance_holds_all_its_noise() -> None:
    """A one-channel picture's luminance is that channel, noise and all; that of three channels
    with independent noise holds 0.2126^2 + 0.7152^2 + 0.0722^2 (0.54) of a channel's. Until
    engine 0.3.55 a grey picture's was taken at 0.54 too."""
    grey = dead_leaves((192, 192), np.random.default_rng(8))[..., :1]
    model = NoiseModel(1e-3, 1e-5, 1e-2)
    one = patch_spectra(grey, 64, 32, model).noise
    three = patch_spectra(np.repeat(grey, 3, -1), 64, 32, model).noise
    np.testing.assert_allclose(one / three, 1 / (0.2126**2 + 0.7152**2 + 0.0722**2), rtol=1e-3)
