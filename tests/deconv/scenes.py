"""Test pictures for the blind estimate's tests: a natural-like scene, blurred and noisy."""

import numpy as np

from worker.deconv.synthetic import blur_valid, dead_leaves


def blurred_scene(psf: np.ndarray, shape=(480, 720), noise=0.002, seed=3):
    """A dead-leaves scene, blurred ("valid") by `psf`, with noise; (truth, blurred)."""
    rng = np.random.default_rng(seed)
    half = psf.shape[0] // 2
    scene = dead_leaves((shape[0] + 2 * half, shape[1] + 2 * half), rng)
    blurred = blur_valid(scene, psf) + rng.normal(0, noise, (*shape, 3)).astype(np.float32)
    return scene[half : half + shape[0], half : half + shape[1]], blurred
