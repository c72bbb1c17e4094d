"""Local mode: a shaken part is deblurred, sharp and flat parts come back as they were."""

import dataclasses

import numpy as np
import pytest
from scenes import sharp_photograph

from worker.deconv import DeblurSettings, deblur
from worker.deconv.blind import NO_BLUR
from worker.deconv.local import (
    MISFIT,
    REPRODUCED,
    SMOOTHNESS,
    blend_locally,
    blurred_again,
    describe_subject,
    explained_cells,
    explained_region,
    explained_weight,
    misfit,
    pixel_misfit,
    subject_kernel,
    subject_twin,
)
from worker.deconv.noise import estimate_noise_model, kernel_smoothing
from worker.deconv.psf import PsfReport
from worker.deconv.rl_tv import DeblurReport
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves, psnr, shake
from worker.jobspec import JobSpec
from worker.pipeline import estimate_kernel
from worker.resize import shrink_area

SIZE = 15


def half_shaken_scene(seed: int = 5, side: int = 512):
    """A dead-leaves scene shaken on its left half, sharp on its right half, with a flat
    (noisy, featureless) band along the bottom of the right half; noise 0.003."""
    rng = np.random.default_rng(seed)
    sharp = dead_leaves((side, side), rng)
    sharp[-96:, side // 2 :] = 0.4
    psf = camera_shake_kernel(SIZE, rng)
    scene = sharp.copy()
    scene[:, : side // 2] = shake(sharp, psf)[:, : side // 2]
    scene += rng.normal(0, 0.003, scene.shape).astype(np.float32)
    return sharp, scene, psf


def test_local_mode_deblurs_the_shaken_part_and_returns_the_rest_as_it_was() -> None:
    sharp, scene, psf = half_shaken_scene()
    half = scene.shape[1] // 2
    settings = DeblurSettings(max_iterations=30)
    deblurred, _ = deblur(scene, psf, settings)
    local, _ = deblur(scene, psf, dataclasses.replace(settings, local=True))
    assert np.allclose(local, blend_locally(scene, deblurred, psf), atol=1e-6)
    inner = np.s_[SIZE:-SIZE, SIZE : half - 4 * SIZE]  # away from the frame and the seam
    assert psnr(local[inner], sharp[inner]) >= psnr(scene[inner], sharp[inner]) + 2
    # The sharp half and its flat band come back bit for bit: no ringing crosses the seam.
    right = np.s_[:, half:]
    assert np.abs(local[right] - scene[right]).max() <= 1e-6
    # Deblurring everything rings all over the sharp half.
    assert psnr(deblurred[right], sharp[right]) < psnr(scene[right], sharp[right]) - 3
    weight = explained_weight(scene, deblurred, psf)
    assert weight[inner].mean() > 0.4 and weight[right].max() == 0


def test_a_large_subject_is_taken_whole_and_a_patch_the_kernel_cannot_reproduce_is_not() -> None:
    margin = np.full((24, 24), -0.03)  # static: the kernel loses
    margin[2:14, 2:14] = SMOOTHNESS * 0.75  # a subject: every patch wins, each by a little
    margin[19, 19] = SMOOTHNESS * 0.75  # the same alone: chance
    fit = np.ones(margin.shape)
    fit[6:8, 2:8] = 3 * MISFIT  # a sharp static edge reaching into the subject
    cells = explained_cells(margin, np.ones(margin.shape, bool), fit)
    assert cells[2:6, 2:14].all() and cells[8:14, 2:14].all() and cells[6:8, 8:14].all()
    assert not cells[6:8, 2:8].any() and not cells[19, 19]
    assert cells.sum() == 12 * 12 - 12
    assert explained_cells(margin, np.ones(margin.shape, bool))[2:14, 2:14].all()  # no veto


def test_the_deblurred_picture_reblurred_fits_the_shaken_part_only() -> None:
    _, scene, psf = half_shaken_scene()
    deblurred, _ = deblur(scene, psf, DeblurSettings(max_iterations=30))
    fit = misfit(scene, deblurred, psf, estimate_noise_model(scene))
    half = fit.shape[1] // 2
    assert np.median(fit[1:-1, 1 : half - 1]) < MISFIT  # within the noise
    assert np.median(fit[1:-4, half + 1 : -1]) > 2 * MISFIT  # the sharp half's edges: missed


def test_the_region_reaches_where_the_deblurred_picture_stops_fitting() -> None:
    _, scene, psf = half_shaken_scene()
    half = scene.shape[1] // 2
    deblurred, _ = deblur(scene, psf, DeblurSettings(max_iterations=30), weight_scale=1.0)
    region = explained_region(scene, deblurred, psf)
    # Pulled in by a whole patch's reach the region held 45 % of the shaken half (engine 0.3.37);
    # the pixels the deblurred picture reproduces take it to most of it, and never past the seam.
    assert region[:, :half].mean() > 0.7 and not region[:, half:].any()
    fit = pixel_misfit(scene, deblurred, psf, estimate_noise_model(scene))
    assert np.median(fit[SIZE:-SIZE, SIZE : half - 2 * SIZE]) < REPRODUCED  # shaken: fitted
    assert np.median(fit[SIZE:-SIZE, half : half + SIZE]) > MISFIT  # the seam: no blur makes it


def test_clipped_pixels_do_not_count_as_a_misfit() -> None:
    _, scene, psf = half_shaken_scene()
    level = float(np.quantile(scene[:, : scene.shape[1] // 2], 0.6))
    clipped = np.minimum(scene, level)  # the shaken half's highlights clipped
    settings = DeblurSettings(max_iterations=30, clip_level=level)
    deblurred, _ = deblur(clipped, psf, settings, weight_scale=1.0)  # local mode's lambda
    model = estimate_noise_model(scene)
    shaken = np.s_[1:-1, 1 : misfit(clipped, deblurred, psf, model).shape[1] // 2 - 1]
    assert np.median(misfit(clipped, deblurred, psf, model, level)[shaken]) < MISFIT
    assert np.median(misfit(clipped, deblurred, psf, model)[shaken]) > MISFIT


def test_the_subjects_kernel_comes_from_the_shaken_part() -> None:
    _, scene, _ = half_shaken_scene(seed=6, side=768)
    found = subject_kernel(scene, SIZE + 4)
    assert found is not None
    estimate, report, twin = found
    x, _, width, _ = report.window
    assert x + width <= scene.shape[1] // 2 + width // 4  # mostly on the shaken half
    assert np.count_nonzero(estimate > 0.05 * estimate.max()) > 5  # a shake, not a point
    assert twin is None or twin.shape == estimate.shape


def test_a_window_given_around_the_subject_is_searched_for_its_kernel() -> None:
    """`run --local --window` on the shaken half: until engine 0.3.57 the kernel was checked, as
    `run` checks it, against a second window elsewhere, on the sharp half here, which shows no
    such blur, so the kernel was doubted (its smoothing raised 26-fold) and the picture came back
    as it was. Now the subject's kernel is searched for inside that window; a window on the
    sharp half still learns that there is no blur."""
    sharp, scene, _ = half_shaken_scene()
    half, settings = scene.shape[1] // 2, DeblurSettings(local=True)
    spec = JobSpec("in.tif", "out.tif", blur=SIZE + 4, window="16,64,224,384", settings=settings)
    psf, found = estimate_kernel(scene, spec, None, lambda *_: None)
    assert found["reason"].startswith("the blur of the subject, learnt on the 224 x 224 px window")
    x, y, width, height = found["window"]  # inside the window given
    assert x >= 16 and y >= 64 and x + width <= 16 + 224 and y + height <= 64 + 384
    assert "check_window" not in found
    local, _ = deblur(scene, psf, settings, None, found["kernel_error"])
    inner = np.s_[SIZE:-SIZE, SIZE : half - 4 * SIZE]
    assert psnr(local[inner], sharp[inner]) >= psnr(scene[inner], sharp[inner]) + 3
    assert np.abs(local[:, half:] - scene[:, half:]).max() <= 1e-6
    on_sharp = dataclasses.replace(spec, window="280,64,224,256")
    assert estimate_kernel(scene, on_sharp, None, lambda *_: None)[1]["kernel"] == NO_BLUR


def test_a_twin_is_learnt_where_the_subjects_kernel_explains_the_picture() -> None:
    def learnt(x: int, y: int) -> PsfReport:
        return PsfReport(window=(x, y, 64, 64), iterations=1, levels=1, seconds=0.0)

    line, blob = np.zeros((2, 9, 9))
    line[4, 1:8], blob[3:6, 3:6] = 1 / 7, 1 / 9
    region = np.zeros((4, 6), bool)
    region[:2, :3] = True  # the subject: the top left 96 x 64 px (patches of 32 px)
    found = [(line, learnt(0, 0)), (line.copy(), learnt(128, 64)), (blob, learnt(56, 0))]
    # The copy is the line itself but learnt where the line explains nothing: another blur
    # that looks alike. The blob's window is 5/8 in the region.
    assert subject_twin(found, 0, region, 32) is blob
    assert subject_twin(found[:2], 0, region, 32) is None


def test_the_subjects_kernel_is_smoothed_by_how_much_its_twin_differs() -> None:
    _, scene, psf = half_shaken_scene()
    window = PsfReport(window=(16, 16, 224, 224), iterations=1, levels=1, seconds=0.0)  # shaken
    same = describe_subject(scene, psf, window, psf)
    assert same["kernel_error"] == 0 and same["smoothing"] == 1.0
    assert "smoothing" not in same["reason"]
    point = np.zeros_like(psf)
    point[SIZE // 2, SIZE // 2] = 1
    other = describe_subject(scene, psf, window, point)  # a twin that saw no blur at all
    assert other["smoothing"] == round(kernel_smoothing(other["kernel_error"]), 2) > 1.5
    assert f"raises the smoothing x{other['smoothing']:.1f}" in other["reason"]
    unchecked = describe_subject(scene, psf, window, None)  # nothing to compare with
    assert unchecked["smoothing"] == 1.0 and "no other part of the picture" in unchecked["reason"]
    assert {"blur", "extent"} <= same.keys() and same["blur"] == SIZE


def test_a_flat_picture_has_no_subject_to_learn_from() -> None:
    flat = (0.4 + np.random.default_rng(2).normal(0, 0.002, (400, 400, 3))).astype(np.float32)
    assert subject_kernel(flat, SIZE) is None


def test_streaks_that_run_one_way_teach_no_subject_kernel() -> None:
    # A streaked road: every edge runs along the rows, so a blur along them leaves them as they
    # are, and every window would learn the streaks' own softness across them as a kernel.
    rng = np.random.default_rng(4)
    edges = np.sort(rng.choice(np.arange(1, 400), 40, replace=False))
    profile = np.split(np.zeros(400, np.float32), edges)
    rows = np.concatenate([part + rng.uniform(0.1, 0.9) for part in profile])
    streaks = np.repeat(rows[:, None, None], 400, axis=1).repeat(3, axis=2)
    streaks += rng.normal(0, 0.003, streaks.shape).astype(np.float32)
    assert subject_kernel(streaks, SIZE) is None


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_noiseless_flat_picture_comes_back_as_it_was() -> None:
    # No noise and no detail: Whittle's terms were 0 / 0 and log 0 (warnings, NaN margins).
    flat = np.full((200, 300, 3), 0.4, np.float32)
    out, report = deblur(flat, np.ones((5, 5), np.float32) / 25, DeblurSettings(local=True))
    assert np.array_equal(out, flat)
    # ... and says so: it reported the run's iterations until engine 0.3.39
    assert report == DeblurReport.left_as_is(1.0)


def test_a_picture_smaller_than_a_patch_is_left_as_it_is() -> None:
    image = dead_leaves((48, 60), np.random.default_rng(0))
    box = np.ones((5, 5), np.float32) / 25
    out, _ = deblur(image, box, DeblurSettings(local=True, max_iterations=3))
    assert np.array_equal(out, image)


def test_a_preview_smaller_than_half_a_patch_is_left_as_it_is() -> None:
    # A 256 px picture at a twentieth: 13 px, under the patch's half-step margin (until engine
    # 0.3.9 an internal error).
    image = dead_leaves((256, 256), np.random.default_rng(0))
    box = np.ones((9, 9), np.float32) / 81
    out, _ = deblur(image, box, DeblurSettings(local=True, max_iterations=3, scale=0.05))
    assert np.array_equal(out, shrink_area(image, 0.05))


def test_blurred_again_is_the_mirrored_blur_without_wrap_around() -> None:
    """The same size as the picture; inside, the plain sum over the kernel; along the border,
    the mirrored picture's (not the opposite border's, as a circular blur would take)."""
    rng = np.random.default_rng(3)
    sharp = rng.random((40, 57))
    psf = rng.random((7, 7))
    psf /= psf.sum()
    out = blurred_again(sharp, psf)
    assert out.shape == sharp.shape
    # the output at (20, 30) sums sharp[20 + 3 - i, 30 + 3 - j] psf[i, j]
    direct = (sharp[17:24, 27:34][::-1, ::-1] * psf).sum()
    assert np.isclose(out[20, 30], direct)
    mirrored = np.pad(sharp, 3, mode="symmetric")
    corner = (mirrored[:7, :7][::-1, ::-1] * psf).sum()
    assert np.isclose(out[0, 0], corner)


def test_a_sharp_photograph_shows_no_blurred_subject() -> None:
    """scikit-image's coffee, unblurred, under ISO 800-like noise: the kernel that explains most
    of it, learnt from its texture, lets a fifth of every frequency through, which means no blur
    (`blind.sharp_learnt`). Until engine 0.3.53 local mode deblurred what it explained, and the
    blind benchmark's copy of the picture came back 0.2 dB worse (astronaut 2.3 dB)."""
    assert subject_kernel(sharp_photograph("coffee"), 15) is None
