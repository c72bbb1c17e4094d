"""The half-quadratic TV-L2 start of Richardson-Lucy-TV: sharper than its input, no ringing at
the frame's borders, and fewer iterations after it."""

import numpy as np
import pytest
from skimage import data

from worker.deconv import DeblurSettings, deblur, rl_tv
from worker.deconv.half_quadratic import (
    _gradient_adjoint,
    _shrink_gradients,
    half_quadratic_start,
)
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, psnr


def _photo(name: str) -> np.ndarray:
    """A 200 x 240 crop of a scikit-image photograph, in linear light, (H, W, 3)."""
    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return ((pixels[:200, :240, :3] / 255) ** 2.2).astype(np.float32)


def _gaussian(sigma: float) -> np.ndarray:
    x = np.arange(-4, 5)
    line = np.exp(-(x**2) / (2 * sigma**2))
    kernel = np.outer(line, line)
    return (kernel / kernel.sum()).astype(np.float32)


def _case(name: str, psf: np.ndarray, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(truth on the frame, blurred noisy frame) for a photo blurred by `psf` (valid)."""
    scene = _photo(name)
    observed = blur_valid(scene, psf)
    observed += np.random.default_rng(seed).normal(0, 0.005, observed.shape).astype(np.float32)
    h = psf.shape[0] // 2
    return scene[h:-h, h:-h], observed


def _start(observed: np.ndarray, psf: np.ndarray) -> np.ndarray | None:
    f = np.ascontiguousarray(observed.transpose(2, 0, 1))
    mask = np.ones(f.shape[1:], np.float32)
    return half_quadratic_start(f, mask, psf, None, lam=0.01, sigma=0.005, offset=0.02)


def test_the_start_covers_the_extended_grid_and_is_sharper_than_its_input() -> None:
    psf = camera_shake_kernel(15, np.random.default_rng(3))
    truth, observed = _case("astronaut", psf)
    start = _start(observed, psf)
    assert start is not None and start.dtype == np.float32
    assert start.shape == (3, observed.shape[0] + 14, observed.shape[1] + 14)
    frame = start[:, 7:-7, 7:-7].transpose(1, 2, 0)
    assert psnr(frame, truth) > psnr(observed, truth) + 3


def test_the_frame_borders_do_not_ring() -> None:
    """A lopsided shake: a circular deconvolution of the frame (or of its mirror image) would ring
    along the borders; with the data term on the observed pixels only, the error in a 12 px band
    along the borders stays close to that inside."""
    psf = camera_shake_kernel(15, np.random.default_rng(3))
    truth, observed = _case("astronaut", psf)
    error = np.abs(_start(observed, psf)[:, 7:-7, 7:-7].transpose(1, 2, 0) - truth).mean(axis=2)
    band = np.ones(error.shape, bool)
    band[12:-12, 12:-12] = False
    blurred_error = np.abs(observed - truth).mean(axis=2)
    ratio, blurred_ratio = error[band].mean() / error[~band].mean(), 1.0
    blurred_ratio = blurred_error[band].mean() / blurred_error[~band].mean()
    assert ratio < 1.25 * blurred_ratio


@pytest.mark.parametrize(("lam", "sigma"), [(0.0, 0.005), (0.01, 0.0)])
def test_without_regularisation_there_is_no_start(lam: float, sigma: float) -> None:
    psf = _gaussian(1.2)
    _, observed = _case("gravel", psf)
    f = np.ascontiguousarray(observed.transpose(2, 0, 1))
    mask = np.ones(f.shape[1:], np.float32)
    assert half_quadratic_start(f, mask, psf, None, lam=lam, sigma=sigma, offset=0.02) is None


@pytest.mark.parametrize("name", ["grass", "gravel"])
def test_texture_under_mild_softness_needs_fewer_iterations(name: str, monkeypatch) -> None:
    """Fine texture under a Gaussian of 1.2 px: from the half-quadratic start the run stops
    sooner than from the back-projection, at about the same quality."""
    psf = _gaussian(1.2)
    truth, observed = _case(name, psf)
    split, split_report = deblur(observed, psf, DeblurSettings())
    monkeypatch.setattr(rl_tv, "half_quadratic_start", lambda *args, **kwargs: None)
    back, back_report = deblur(observed, psf, DeblurSettings())
    assert split_report.iterations < 0.75 * back_report.iterations
    assert psnr(split, truth) > psnr(back, truth) - 0.3


def test_pictures_with_clipped_highlights_start_from_the_back_projection(monkeypatch) -> None:
    """Around a blown highlight the half-quadratic start left more ringing: not used there."""
    calls = []
    monkeypatch.setattr(rl_tv, "half_quadratic_start", lambda *args, **kwargs: calls.append(1))
    psf = _gaussian(1.2)
    _, observed = _case("gravel", psf)
    deblur(observed, psf, DeblurSettings(clip_level=1e6), weight_scale=1.0)
    assert calls == [1]
    observed[40:60, 40:60] = 1.0  # a clipped plateau
    deblur(observed, psf, DeblurSettings(clip_level=1.0), weight_scale=1.0)
    assert calls == [1]


@pytest.mark.parametrize("shape", [(3, 6, 7), (1, 5, 1), (3, 1, 4)])
def test_shrinkage_and_adjoint_match_circular_differences(shape: tuple[int, int, int]) -> None:
    """The kernels against NumPy: circular forward differences (the last column's and row's
    wrap around), shrunk by the colour-coupled norm, and `D^T` their exact adjoint."""
    rng = np.random.default_rng(3)
    u = rng.random(shape, dtype=np.float32)
    threshold = rng.random(shape[1:], dtype=np.float32)
    dx, dy = np.roll(u, -1, axis=2) - u, np.roll(u, -1, axis=1) - u
    norm = np.sqrt((dx.astype(np.float64) ** 2 + dy.astype(np.float64) ** 2).sum(axis=0))
    keep = np.maximum(1 - 0.3 * threshold / np.where(norm > 0, norm, 1), 0) * (norm > 0)
    gx, gy = np.empty_like(u), np.empty_like(u)
    _shrink_gradients(u, threshold, 0.3, gx, gy)
    np.testing.assert_allclose(gx, dx * keep, atol=1e-6)
    np.testing.assert_allclose(gy, dy * keep, atol=1e-6)
    adjoint = np.empty_like(u)
    _gradient_adjoint(gx, gy, adjoint)
    expected = np.roll(gx, 1, axis=2) - gx + np.roll(gy, 1, axis=1) - gy
    np.testing.assert_allclose(adjoint, expected, atol=1e-6)
