"""Test pictures for the blind estimate's tests: a natural-like scene, blurred and noisy, and a
real photograph, sharp and noisy."""

import numpy as np
from skimage import data

from worker.deconv.synthetic import blur_valid, dead_leaves
from worker.files.icc import SRGB


def blurred_scene(psf: np.ndarray, shape=(480, 720), noise=0.002, seed=3):
    """A dead-leaves scene, blurred ("valid") by `psf`, with noise; (truth, blurred)."""
    rng = np.random.default_rng(seed)
    half = psf.shape[0] // 2
    scene = dead_leaves((shape[0] + 2 * half, shape[1] + 2 * half), rng)
    blurred = blur_valid(scene, psf) + rng.normal(0, noise, (*shape, 3)).astype(np.float32)
    return scene[half : half + shape[0], half : half + shape[1]], blurred


def sharp_photograph(name: str, seed: int = 0) -> np.ndarray:
    """scikit-image's photograph `name` (``astronaut``, ``coffee``), unblurred, in linear light,
    under ISO 800-like noise (shot noise 0.006 at mid grey, read noise 0.0015), clipped to 0..1;
    float32 (H, W, 3)."""
    sharp = SRGB.linearise(getattr(data, name)() / 255.0)
    rng = np.random.default_rng(seed)
    gain = 0.006**2 / 0.18
    noisy = rng.poisson(sharp / gain) * gain + rng.normal(0, 0.0015, sharp.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)
