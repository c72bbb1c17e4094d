"""Blind PSF estimation and the automatic window, on real-looking synthetic scenes."""

import numpy as np
import pytest
from scipy import fft

from benchmarks.error_ratio import error_ratio
from worker.deconv.luminance import luminance
from worker.deconv.periodic import (
    centred_kernel_spectrum,
    fast_shape,
    forward_gradients,
    gradient_adjoint,
    smooth_periodic_extension,
)
from worker.deconv.psf import (
    estimate_kernel,
    estimate_psf,
    gradient_normal,
    strong_gradient_adjoint,
    unclipped,
)
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves, shake
from worker.deconv.window import NEAR_WHITE, choose_window
from worker.errors import InputError


def shaken_scene(seed: int, shape=(320, 320), size=15, noise=0.003):
    rng = np.random.default_rng(seed)
    sharp = dead_leaves(shape, rng)
    psf = camera_shake_kernel(size, rng)
    blurred = shake(sharp, psf) + rng.normal(0, noise, sharp.shape).astype(np.float32)
    return sharp, blurred, psf


@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_a_camera_shake_kernel(seed: int) -> None:
    sharp, blurred, truth = shaken_scene(seed)
    psf, report = estimate_psf(blurred, 19)  # the blur's extent, with some margin
    # The benchmark's scorer works in correlation orientation: flip both kernels.
    ratio = error_ratio(
        luminance(blurred).astype(np.float64),
        luminance(sharp).astype(np.float64),
        truth[::-1, ::-1],
        psf[::-1, ::-1],
    )
    assert ratio <= 2.0
    assert report.iterations > 0 and report.seconds > 0
    x, y, w, h = report.window
    assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 320


@pytest.mark.parametrize(("size", "channels"), [(5, 3), (9, 1), (21, 3)])
def test_kernel_invariants(size: int, channels: int) -> None:
    _, blurred, _ = shaken_scene(3, shape=(256, 256), size=9)
    psf, _ = estimate_psf(blurred[..., :channels], size)
    assert psf.shape == (size, size) and psf.dtype == np.float32
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1, abs=1e-5)
    rows, cols = np.indices(psf.shape)
    centroid = ((rows * psf).sum(), (cols * psf).sum())
    assert np.allclose(centroid, size // 2, atol=0.5)


@pytest.mark.parametrize("zoom", [1, 3])  # 3: a large picture, scored on a shrunk copy
def test_automatic_window_avoids_flat_and_saturated_regions(zoom: int) -> None:
    rng = np.random.default_rng(4)
    image = luminance(dead_leaves((768, 768), rng))
    image[:, :384] = 0.3 + rng.normal(0, 0.002, (768, 384))  # flat: a clear sky
    image[:384, 384:] = np.minimum(4 * image[:384, 384:], 1.0)  # blown-out highlights
    image = np.kron(image, np.ones((zoom, zoom), np.float32))
    x, y, w, h = choose_window(image, 15)
    window = image[y : y + h, x : x + w]
    assert w == h == 256 and x + w <= image.shape[1] and y + h <= image.shape[0]
    assert x >= 384 * zoom  # not on the sky
    assert np.mean(window >= NEAR_WHITE * image.max()) < 0.02  # hardly any near-white pixels


@pytest.mark.parametrize(
    ("size", "window", "message"),
    [
        (15, (200, 0, 100, 100), "not inside"),
        (15, (-1, 0, 100, 100), "not inside"),
        (15, (0, 0, 40, 40), "smaller than 3 times"),
        (51, (0, 0, 48, 48), "larger than the window"),
        (14, None, "odd"),
        (1, None, "odd"),
    ],
)
def test_bad_requests_are_refused(size: int, window, message: str) -> None:
    _, blurred, _ = shaken_scene(6, shape=(256, 256), size=9)
    with pytest.raises(InputError, match=message):
        estimate_psf(blurred, size, window)


@pytest.mark.parametrize("shading", [0.0, 0.4])
def test_flat_window_says_there_is_nothing_to_learn_from(shading: float) -> None:
    rng = np.random.default_rng(7)
    sky = 0.3 + shading * np.linspace(0, 1, 300)[:, None, None]  # even or a smooth gradient
    image = (sky + rng.normal(0, 0.01, (300, 300, 3))).astype(np.float32)
    with pytest.raises(InputError, match="no edges to learn the blur from"):
        estimate_psf(image, 15)


def test_heavy_noise_is_not_mistaken_for_a_flat_window() -> None:
    _, blurred, _ = shaken_scene(8, shape=(256, 256), size=25, noise=0.02)
    psf, _ = estimate_psf(blurred, 29)
    assert psf.shape == (29, 29)


def test_clipped_lights_are_left_out_of_the_fit() -> None:
    rng = np.random.default_rng(20)
    sharp = dead_leaves((256, 256), rng)
    for cy, cx in rng.integers(20, 236, (12, 2)):
        sharp[cy - 2 : cy + 3, cx - 2 : cx + 3] = 8.0  # street lights, far brighter than white
    truth = camera_shake_kernel(17, rng)
    blurred = np.minimum(shake(sharp, truth) + rng.normal(0, 0.003, sharp.shape), 1.0)
    psf, _ = estimate_psf(blurred.astype(np.float32), 21, (0, 0, 256, 256))
    ratio = error_ratio(
        luminance(blurred).astype(np.float64),
        luminance(np.minimum(sharp, 1.0)).astype(np.float64),
        truth[::-1, ::-1],
        psf[::-1, ::-1],
    )
    assert ratio <= 1.5


def test_a_blown_out_window_is_refused() -> None:
    _, blurred, _ = shaken_scene(9, shape=(256, 256), size=9)
    blurred = np.minimum(blurred * 6, 1.0)  # most of the frame clipped at white
    with pytest.raises(InputError, match="blown-out highlights"):
        estimate_psf(blurred, 9, (0, 0, 256, 256))


def test_the_periodic_extension_has_no_seam() -> None:
    rng = np.random.default_rng(13)
    image = rng.random((40, 50))
    extended = smooth_periodic_extension(image, (54, 64))
    assert np.array_equal(extended[:40, :50], image)
    # Tiled, every step between neighbours, the seams included, is no larger than inside.
    steps = [np.abs(np.diff(extended, axis=a, append=extended.take([0], axis=a))) for a in (0, 1)]
    inside = max(np.abs(np.diff(image, axis=a)).max() for a in (0, 1))
    assert max(step.max() for step in steps) <= inside


def test_the_kernel_step_finds_the_blur_of_a_known_sharp_image() -> None:
    rng = np.random.default_rng(14)
    sharp = luminance(dead_leaves((96, 96), rng)).astype(np.float64)
    truth = camera_shake_kernel(11, rng).astype(np.float64)
    shape = fast_shape((96 + 10, 96 + 10))
    sharp_extended = smooth_periodic_extension(sharp, shape)
    blurred = fft.irfft2(fft.rfft2(sharp_extended) * centred_kernel_spectrum(truth, shape), s=shape)
    # Only the window counts: the extension around it is corrupted on purpose.
    blurred[96:, :] = rng.random((shape[0] - 96, shape[1]))
    usable = np.ones((96, 96), bool)
    found = estimate_kernel(sharp_extended, blurred, 11, 1e-6, usable)
    assert np.abs(found - truth).max() < 1e-3 * truth.max()


def test_a_known_clip_level_keeps_small_highlights_out_of_the_kernel_fit() -> None:
    # Three blown pixels are too few for the plateau detector, but an integer file says where
    # it clipped: with that, the highlight and half a kernel around it leave the fit.
    image = np.full((200, 200, 3), 0.3, np.float32)
    image[100, 100:103] = 1.0
    window = (0, 0, 200, 200)
    assert unclipped(image, window, 9).all()
    usable = unclipped(image, window, 9, clip_level=1.0)
    assert not usable[100, 100] and not usable[96, 104] and usable[90, 90]


SHAPES = [(37, 41), (1, 6), (5, 1), (1, 1), (2, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_gradient_normal_is_the_adjoint_of_the_differences_to_the_last_bit(
    shape: tuple[int, int], dtype: type
) -> None:
    """One compiled pass gives ``D^T D u`` as NumPy's differences of differences do, bit for
    bit: the held-out fits of a kernel (`holdout`) stay what they were."""
    u = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    expected = gradient_adjoint(*forward_gradients(u))
    found = gradient_normal(u)
    assert found.dtype == expected.dtype and np.array_equal(found, expected)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 2.0, 1e9])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_l0_step_keeps_the_strong_gradients_to_the_last_bit(
    shape: tuple[int, int], threshold: float
) -> None:
    """`strong_gradient_adjoint` zeroes each gradient whose squared norm is under the threshold
    and takes ``D^T`` of the rest, as the masked NumPy arrays do, bit for bit."""
    u = np.random.default_rng(5).standard_normal(shape)
    gx, gy = forward_gradients(u)
    weak = gx * gx + gy * gy < threshold
    gx[weak], gy[weak] = 0, 0
    assert np.array_equal(strong_gradient_adjoint(u, threshold), gradient_adjoint(gx, gy))


@pytest.mark.parametrize(
    ("size", "shape"),
    [((7, 7), (64, 80)), ((31, 31), (31, 31)), ((3, 5), (4, 9)), ((1, 1), (5, 6))],
)
def test_a_kernels_spectrum_has_its_centre_tap_at_the_origin(
    size: tuple[int, int], shape: tuple[int, int]
) -> None:
    """The kernel wrapped around the grid's origin, its centre tap at (0, 0) (MATLAB's psf2otf),
    bit for bit as the grid padded and rolled by half a kernel."""
    psf = np.random.default_rng(6).random(size)
    padded = np.zeros(shape)
    padded[: size[0], : size[1]] = psf
    rolled = np.roll(padded, (-(size[0] // 2), -(size[1] // 2)), axis=(0, 1))
    assert np.array_equal(centred_kernel_spectrum(psf, shape), fft.rfft2(rolled))
