"""Noise correlated by demosaicing: detected, and measured at its true level."""

import numpy as np
from reference import bilinear_demosaic

from worker.deconv.noise import NoiseModel, estimate_noise, estimate_noise_model
from worker.deconv.noise_correlation import (
    bayer_phase_ratio,
    correlation_factor,
    for_correlated_noise,
)
from worker.deconv.synthetic import dead_leaves
from worker.files.dng import mosaic


def robust_sigma(noise: np.ndarray) -> float:
    return float(np.mean([np.median(np.abs(noise[..., c])) for c in range(3)]) / 0.6745)


def test_white_noise_is_left_alone() -> None:
    rng = np.random.default_rng(1)
    scene = dead_leaves((256, 256), rng)
    for sigma in (0.002, 0.005, 0.01, 0.03):  # little noise on much detail: no false alarm
        noisy = scene + rng.normal(0, sigma, scene.shape)
        assert bayer_phase_ratio(noisy) < 1.1
        assert correlation_factor(noisy) == 1.0
        model = NoiseModel(0.001, 1e-5, 0.01)
        assert for_correlated_noise(model, noisy) is model


def test_demosaiced_noise_is_measured_at_its_true_level() -> None:
    rng = np.random.default_rng(2)
    scene = dead_leaves((256, 256), rng)
    clean = bilinear_demosaic(mosaic(scene))
    for sigma in (0.02, 0.04):
        noisy = bilinear_demosaic(mosaic(scene) + rng.normal(0, sigma, scene.shape[:2]))
        noisy += rng.normal(0, sigma / 20, noisy.shape)  # rounding in the output file
        true = robust_sigma(noisy - clean)
        assert bayer_phase_ratio(noisy) > 2
        assert estimate_noise(noisy) < 0.4 * true  # what the 3 x 3 operator alone reads
        factor = correlation_factor(noisy)
        corrected = for_correlated_noise(NoiseModel(0.0, estimate_noise(noisy) ** 2, 0.0), noisy)
        assert 0.8 * true < factor * estimate_noise(noisy) < 2.5 * true, (factor, true)
        assert np.isclose(corrected.read_variance, (factor * estimate_noise(noisy)) ** 2)


def test_masked_pixels_stay_out_of_the_half_size_measure() -> None:
    rng = np.random.default_rng(3)
    noisy = 0.5 + rng.normal(0, 0.01, (64, 64, 3))
    mask = np.ones((64, 64))
    noisy[:, :32] = 5.0 * (rng.random((64, 32, 3)) > 0.5)  # wild, and masked out
    mask[:, :34] = 0
    assert correlation_factor(noisy, mask) == 1.0
    assert correlation_factor(noisy[:4, :4]) == 1.0  # too small to measure twice


def test_a_channel_interpolated_between_photosites_does_not_break_the_fit() -> None:
    # Bilinear demosaicing makes red and blue linear between their photosites, where the
    # noise response is float32 rounding: its variance squared underflowed, the fit's weight
    # was infinite and the least squares failed (a traceback from `deblur` and `run`).
    for seed in (1, 4, 6):
        rng = np.random.default_rng(seed)
        scene = dead_leaves((256, 256), rng)
        noisy = bilinear_demosaic(mosaic(scene) + rng.normal(0, 0.003, scene.shape[:2]))
        model = estimate_noise_model(noisy.astype(np.float32))
        assert np.isfinite([model.gain, model.read_variance, model.sigma]).all()
