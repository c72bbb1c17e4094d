"""The texture-aware weight of the TV prior: lower on texture, full on flat or clipped areas."""

import numpy as np
import pytest

from worker.deconv import deblur, rl_tv
from worker.deconv.noise import NoiseModel
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves, psnr
from worker.deconv.texture import texture_weight

SIGMA = 0.01


def _half_textured(rng: np.random.Generator) -> np.ndarray:
    """(C, H, W): left half flat grey, right half fine stripes of 10 noise sigmas; noisy."""
    f = np.full((3, 96, 128), 0.3, np.float32)
    f[:, :, 64:] += 0.1 * np.sign(np.sin(np.arange(64) * 1.3))[None, None, :]
    return f + rng.normal(0, SIGMA, f.shape).astype(np.float32)


def test_the_weight_is_low_on_texture_and_full_on_flat_noise() -> None:
    f = _half_textured(np.random.default_rng(20))
    model = NoiseModel(gain=0.0, read_variance=SIGMA**2, sigma=SIGMA)
    weight = texture_weight(f, np.ones(f.shape[1:], np.float32), model, (5, 5))
    assert weight.shape == (100, 132) and weight.dtype == np.float32
    assert weight[20:80, 2:40].min() > 0.7  # flat: the noise alone is no texture
    assert weight[20:80, 90:130].max() < 0.2


def test_the_weight_stays_full_around_clipped_highlights() -> None:
    f = _half_textured(np.random.default_rng(21))
    mask = np.ones(f.shape[1:], np.float32)
    mask[40:50, 100:110] = 0  # a clipped light in the texture
    model = NoiseModel(gain=0.0, read_variance=SIGMA**2, sigma=SIGMA)
    weight = texture_weight(f, mask, model, (5, 5))
    assert weight[2 + 45, 2 + 105] == 1 and weight[2 + 45, 2 + 90] == 1
    assert weight[2 + 10, 2 + 75] < 0.2  # far from it, texture as before


def test_texture_is_kept_better_than_with_a_uniform_weight(monkeypatch) -> None:
    rng = np.random.default_rng(10)
    scene = dead_leaves((212, 252), rng)  # discs, lines and fine texture
    psf = camera_shake_kernel(13, rng)
    observed = blur_valid(scene, psf) + rng.normal(0, SIGMA, (200, 240, 3)).astype(np.float32)
    truth = scene[6:-6, 6:-6]
    aware, report = deblur(observed, psf)

    def uniform_weight(f, mask, model, psf_shape):
        return np.ones((f.shape[1] + psf_shape[0] - 1, f.shape[2] + psf_shape[1] - 1), np.float32)

    monkeypatch.setattr(rl_tv, "texture_weight", uniform_weight)
    uniform, _ = deblur(observed, psf)
    assert psnr(aware, truth) > psnr(uniform, truth) + 0.3
    assert aware.min() >= 0 and report.stop_reason in ("stagnation", "whiteness", "cap")


@pytest.mark.parametrize("noise", [0.003, 0.03])
def test_the_weight_is_between_0_and_1(noise: float) -> None:
    rng = np.random.default_rng(22)
    f = np.clip(dead_leaves((64, 80), rng).transpose(2, 0, 1), 0, None)
    f += rng.normal(0, noise, f.shape).astype(np.float32)
    model = NoiseModel(gain=noise**2 / 0.18, read_variance=noise**2, sigma=noise)
    weight = texture_weight(f, np.ones(f.shape[1:], np.float32), model, (7, 7))
    assert weight.min() > 0 and weight.max() <= 1
