"""The whole-frame check: a kernel that parts of the picture are sharper than is not the frame's."""

import math

import numpy as np
from reference import bilinear_demosaic

from worker.deconv.blind import FREE_FORM, NO_BLUR, estimate_blur
from worker.deconv.noise import NoiseModel, estimate_noise
from worker.deconv.parametric import disc_kernel
from worker.deconv.psf_tools import centre_subpixel
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves
from worker.deconv.whole_frame import SHARPER_MARGIN, sharper_margin, sharper_parts
from worker.files.dng import mosaic

SHAPE = (480, 720)


def scene_blurred_left_of(psf: np.ndarray, sharp_from: int, seed: int = 3) -> np.ndarray:
    """A dead-leaves scene (`SHAPE`) blurred by `psf` left of column `sharp_from`; from there
    on sharp vertical stripes 2-12 px wide (edges of one orientation: the windows a kernel is
    learnt on prefer the leaves); noise 0.002."""
    rng = np.random.default_rng(seed)
    half = psf.shape[0] // 2
    picture = blur_valid(dead_leaves((SHAPE[0] + 2 * half, SHAPE[1] + 2 * half), rng), psf)
    edges = np.cumsum(rng.integers(2, 13, SHAPE[1]))
    stripes = rng.uniform(0.1, 0.7, SHAPE[1])[np.searchsorted(edges, np.arange(SHAPE[1]), "right")]
    picture[:, sharp_from:] = stripes[None, sharp_from:, None]
    return picture + rng.normal(0, 0.002, picture.shape).astype(np.float32)


def test_a_kernel_that_blurs_the_whole_frame_is_its_blur() -> None:
    for psf in (centre_subpixel(camera_shake_kernel(13, np.random.default_rng(4))), disc_kernel(4)):
        picture = scene_blurred_left_of(psf, SHAPE[1])
        assert sharper_margin(picture, psf) < SHARPER_MARGIN / 2
        assert not sharper_parts(picture, psf)


def test_a_third_of_the_frame_sharper_than_the_kernel_shows_it_is_not_the_frames_blur() -> None:
    psf = centre_subpixel(camera_shake_kernel(13, np.random.default_rng(4)))
    assert sharper_parts(scene_blurred_left_of(psf, 2 * SHAPE[1] // 3), psf)
    sharp = dead_leaves(SHAPE, np.random.default_rng(5))
    sharp += np.float32(0.002) * np.random.default_rng(6).standard_normal(sharp.shape, np.float32)
    assert sharper_parts(sharp, disc_kernel(4))


def test_noise_that_demosaicing_correlated_is_not_taken_for_sharp_detail() -> None:
    # A raw file's noise is added to the mosaic, after the blur, and demosaicing correlates it:
    # counted as white noise of the level a 3 x 3 operator reads, it made darktable's exports of
    # shaken DNGs look sharper than their true kernels (bench_raw.py's ten cases).
    rng = np.random.default_rng(7)
    psf = centre_subpixel(camera_shake_kernel(15, rng))
    scene = dead_leaves((SHAPE[0] + 14, SHAPE[1] + 14), rng)
    noise, rounding = rng.normal(0, 0.03, SHAPE), rng.normal(0, 0.0015, (*SHAPE, 3))
    shaken, sharp = (  # (rounding: the output file's)
        (bilinear_demosaic(mosaic(picture) + noise) + rounding).astype(np.float32)
        for picture in (blur_valid(scene, psf), scene[7:-7, 7:-7])
    )
    white = NoiseModel(0.0, estimate_noise(shaken) ** 2, estimate_noise(shaken))
    assert sharper_parts(shaken, psf, white)  # the 3 x 3 operator's level: a false alarm
    assert not sharper_parts(shaken, psf)  # at the level demosaicing left it
    assert sharper_parts(sharp, psf)


def test_a_flat_picture_shows_nothing_sharper() -> None:
    flat = np.full((*SHAPE, 3), 0.4, np.float32)
    assert sharper_margin(flat, disc_kernel(4)) == -math.inf
    assert not sharper_parts(flat, disc_kernel(4))


def test_run_leaves_a_picture_with_sharp_parts_as_it_is_and_local_mode_keeps_the_kernel() -> None:
    psf = centre_subpixel(camera_shake_kernel(13, np.random.default_rng(4)))
    picture = scene_blurred_left_of(psf, 7 * SHAPE[1] // 10)
    kernel, report = estimate_blur(picture, 17)
    assert report.kernel == NO_BLUR and kernel.shape == (1, 1), report.reason
    assert "sharper" in report.reason and "left as it is" in report.reason
    kernel, report = estimate_blur(picture, 17, whole_frame=False)
    assert report.kernel == FREE_FORM, report.reason
