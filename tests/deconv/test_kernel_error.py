"""A learnt kernel's error counted as noise: measured from two kernels, raising lambda only then."""

import numpy as np
import pytest

from worker.deconv import DeblurSettings, deblur
from worker.deconv.kernel_error import kernel_error_ratio
from worker.deconv.luminance import luminance
from worker.deconv.noise import (
    LAMBDA_POWER,
    NoiseModel,
    estimate_noise,
    kernel_smoothing,
    regularisation_weight,
)
from worker.deconv.psf_tools import centre_subpixel
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves, psnr


def scene(psf: np.ndarray, noise: float, shape=(256, 256), seed=5):
    """A dead-leaves scene blurred ("valid") by `psf`, with white noise; (truth, blurred)."""
    rng = np.random.default_rng(seed)
    half = psf.shape[0] // 2
    sharp = dead_leaves((shape[0] + 2 * half, shape[1] + 2 * half), rng)
    blurred = blur_valid(sharp, psf) + rng.normal(0, noise, (*shape, 3)).astype(np.float32)
    return sharp[half : half + shape[0], half : half + shape[1]], blurred


def perturbed(psf: np.ndarray, spread: float, seed: int) -> np.ndarray:
    """`psf` with relative noise of `spread` on its taps, as a learnt kernel might be."""
    rng = np.random.default_rng(seed)
    taps = psf * (1 + spread * rng.normal(size=psf.shape)) + spread * psf.max() * 0.2 * (
        rng.random(psf.shape) < 0.1
    )
    taps = np.clip(taps, 0, None)
    return (taps / taps.sum()).astype(np.float32)


TRUE = centre_subpixel(camera_shake_kernel(15, np.random.default_rng(8)))


def test_identical_or_shifted_kernels_add_no_error() -> None:
    _, blurred = scene(TRUE, 0.003)
    assert kernel_error_ratio(blurred, TRUE, TRUE) == 0.0
    shifted = np.roll(TRUE, 1, axis=1)  # a shift is no error: kernels are centred when used
    assert kernel_error_ratio(blurred, TRUE, shifted) < 1e-3


def test_a_window_without_noise_gives_no_ratio() -> None:
    quiet = np.zeros((256, 256, 3), np.float32)
    quiet[:, 128:] = 0.5  # one straight edge: the noise measure reads exactly 0
    first, second = perturbed(TRUE, 0.3, 1), perturbed(TRUE, 0.3, 2)
    assert kernel_error_ratio(quiet, first, second) == 0.0


def test_the_error_grows_with_the_kernels_disagreement() -> None:
    _, blurred = scene(TRUE, 0.003)
    ratios = [
        kernel_error_ratio(blurred, perturbed(TRUE, spread, 1), perturbed(TRUE, spread, 2))
        for spread in (0.05, 0.2, 0.6)
    ]
    assert 0 < ratios[0] < ratios[1] < ratios[2]


def test_without_a_shared_part_the_error_is_counted_about_as_it_is() -> None:
    """The measure counts a part of the error both windows would share as large as each one's
    own (`SHARED_ERROR`). Where the two kernels' errors are independent there is none, and over
    nine such pairs the ratio to the first kernel's true error (measured on the true scene) is
    about 1 (0.74-2.4, median 1.0; without a shared part counted, half of that)."""
    truth, blurred = scene(TRUE, 0.002, shape=(320, 320))
    noise = estimate_noise(blurred) ** 2
    shares = []
    for spread in (0.1, 0.3, 0.6):
        for seed in (1, 3, 5):
            first, second = perturbed(TRUE, spread, seed), perturbed(TRUE, spread, seed + 1)
            error = luminance(blur_valid(truth, centre_subpixel(first)) - blur_valid(truth, TRUE))
            shares.append(kernel_error_ratio(blurred, first, second) * noise / np.mean(error**2))
    assert 0.8 <= float(np.median(shares)) <= 1.5


def test_the_same_disagreement_matters_less_where_the_noise_is_high() -> None:
    first, second = perturbed(TRUE, 0.3, 1), perturbed(TRUE, 0.3, 2)
    low = kernel_error_ratio(scene(TRUE, 0.002)[1], first, second)
    high = kernel_error_ratio(scene(TRUE, 0.02)[1], first, second)
    assert high < low / 10


def test_lambda_rises_with_the_kernel_error_as_with_more_noise() -> None:
    model = NoiseModel(gain=1e-4, read_variance=1e-6, sigma=0.005)
    exact = regularisation_weight(model, 1.0, 0.3)
    assert regularisation_weight(model, 1.0, 0.3, kernel_error=0.0) == exact
    assert kernel_smoothing(0.0) == 1.0
    raised = regularisation_weight(model, 1.0, 0.3, kernel_error=3.0)
    assert raised == pytest.approx(exact * 4**LAMBDA_POWER)


def test_a_given_kernel_keeps_its_lambda() -> None:
    _, blurred = scene(TRUE, 0.003)
    settings = DeblurSettings(max_iterations=3)
    # The rule's lambda (no factor fitted to the picture, `weight_choice`)
    _, given = deblur(blurred, TRUE, settings, weight_scale=1.0)
    _, exact = deblur(blurred, TRUE, settings, kernel_error=0.0, weight_scale=1.0)
    _, doubted = deblur(blurred, TRUE, settings, kernel_error=3.0, weight_scale=1.0)
    assert given.lam == exact.lam
    assert doubted.lam == pytest.approx(given.lam * 4**LAMBDA_POWER, rel=1e-6)


def test_counting_a_wrong_kernels_error_as_noise_restores_better() -> None:
    """At low noise a kernel a little wrong, deblurred with the noise's lambda, makes echoes and
    grain; with its error (measured from a second, independently wrong kernel) counted as noise,
    the result is closer to the truth."""
    truth, blurred = scene(TRUE, 0.002, shape=(320, 320))
    first, second = perturbed(TRUE, 0.1, 1), perturbed(TRUE, 0.1, 2)
    ratio = kernel_error_ratio(blurred, first, second)
    assert ratio > 1  # the kernel's error outweighs this little noise
    settings = DeblurSettings(max_iterations=30)
    plain, _ = deblur(blurred, centre_subpixel(first), settings)
    counted, _ = deblur(blurred, centre_subpixel(first), settings, kernel_error=ratio)
    inner = (slice(20, -20), slice(20, -20))
    assert psnr(counted[inner], truth[inner]) > psnr(plain[inner], truth[inner]) + 0.2
