"""Spatially varying deblurring: a camera that turned while the shutter was open."""

import itertools
from dataclasses import replace

import numpy as np
import pytest
from scenes import sharp_photograph
from scipy import ndimage

from worker.deconv import DeblurSettings, deblur
from worker.deconv.blind import (
    AGREEMENT,
    GAUSSIAN,
    NO_BLUR,
    UNCHECKED,
    estimate_blur,
    similarity,
)
from worker.deconv.kernel_error import kernel_error_ratio
from worker.deconv.local import kernel_evidence
from worker.deconv.noise import estimate_noise_model
from worker.deconv.noise_correlation import for_correlated_noise
from worker.deconv.parametric import disc_kernel, kernel_spread
from worker.deconv.psf import PsfReport, estimate_psf
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves, psnr, shake
from worker.deconv.varying import (
    LEAVE_MARGIN,
    MAX_SPREAD,
    NOTHING_EXPLAINED,
    VARYING,
    best_kernel,
    blend_weights,
    bounds,
    choose_kernels,
    deblur_grid,
    deblur_varying,
    describe,
    estimate_grid,
    is_sharp,
    neighbour_agreement,
    neighbourhood,
    refused_as_varying,
    tile_errors,
    tile_kernel,
    tile_twins,
    tile_views,
)
from worker.errors import InputError
from worker.jobspec import JobSpec
from worker.stages import StopReason

SIDE, MARGIN = 780, 40


def shaken_and_rolled_scene(seed: int = 3, degrees: float = 1.2, shift: float = 8.0):
    """A dead-leaves scene and its copy blurred by a camera that slid sideways by `shift` px while
    rolling `degrees` about the centre (the mean of 31 poses along that path, 0.3 % noise): a
    straight blur whose length and direction change across the frame, from about 4 px in one
    corner to 19 px in the opposite one."""
    rng = np.random.default_rng(seed)
    scene = dead_leaves((SIDE + 2 * MARGIN,) * 2, rng)
    centre = (SIDE + 2 * MARGIN - 1) / 2
    poses = []
    for t in np.linspace(-0.5, 0.5, 31):
        angle = np.radians(degrees * t)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        offset = centre - turn @ [centre, centre] + [0.0, shift * t]
        poses.append(
            np.stack([
                ndimage.affine_transform(scene[..., c], turn, offset, order=1)
                for c in range(3)
            ], axis=-1)
        )  # fmt: skip
    frame = np.s_[MARGIN:-MARGIN, MARGIN:-MARGIN]
    blurred = np.mean(poses, axis=0)[frame] + rng.normal(0, 0.003, (SIDE, SIDE, 3))
    return scene[frame], blurred.astype(np.float32)


def tile_gains(result: np.ndarray, blurred: np.ndarray, sharp: np.ndarray) -> np.ndarray:
    edges = bounds(SIDE, 3)
    return np.array([
        psnr(result[a:b, c:d], sharp[a:b, c:d]) - psnr(blurred[a:b, c:d], sharp[a:b, c:d])
        for a, b in itertools.pairwise(edges)
        for c, d in itertools.pairwise(edges)
    ])  # fmt: skip


@pytest.mark.slow
def test_a_turning_cameras_corners_improve() -> None:
    sharp, blurred = shaken_and_rolled_scene()
    settings = DeblurSettings(max_iterations=30)
    result, report, varying = deblur_varying(blurred, 21, settings)
    assert result.shape == blurred.shape and not varying.uniform
    assert varying.grid == (3, 3) and len(varying.kernels) == 9
    assert varying.kernel == VARYING and 0 < varying.confidence <= 1
    used = sum(window is not None for window in varying.windows)
    assert varying.reason.startswith(f"the blur varies across the frame: {used} of 9 parts")
    gains = tile_gains(result, blurred, sharp)
    kernel, _ = estimate_psf(blurred, 21)
    uniform = tile_gains(deblur(blurred, kernel, settings)[0], blurred, sharp)
    # The bottom corners, where the slide and the roll add up to the longest blur, gain, and
    # more than with one kernel for the whole frame; the tiles gain more on average. (Measured
    # from the half-quadratic start: corners +0.70 / +1.29 dB, +0.82 / +1.35 over one kernel;
    # mean +0.22 against -0.23 dB; from the back-projection +0.88 / +1.50, +0.95 / +1.55, +0.22
    # against -0.11. Two middle tiles still lose up to 0.9 dB: every kernel explains them, so
    # none is left as is.)
    assert gains[[6, 8]].min() >= 0.5 and (gains - uniform)[[6, 8]].min() >= 0.6
    assert gains.mean() >= uniform.mean() + 0.25
    assert report.iterations <= 30 and report.seconds > 0


def test_a_uniform_blur_is_deblurred_in_one_piece_as_run_does() -> None:
    # (Seed 1: with seed 8, used until engine 0.3.30, `run` now leaves the picture as it is: its
    # safe correction was a softness of sigma 0.76 px, which cost that picture 0.65 dB.)
    rng = np.random.default_rng(1)
    psf = camera_shake_kernel(11, rng)
    blurred = shake(dead_leaves((540, 540), rng), psf)
    blurred += rng.normal(0, 0.003, blurred.shape).astype(np.float32)
    settings = DeblurSettings(max_iterations=10)
    result, _, varying = deblur_varying(blurred, 13, settings)
    assert varying.uniform and varying.grid == (1, 1)
    kernel, blur = estimate_blur(blurred, 13)  # as `run` finds it, checked
    assert varying.kernel == blur.kernel
    assert varying.reason == f"the blur is the same across the frame: {blur.reason}"
    assert np.array_equal(varying.kernels[0], kernel)
    expected, _ = deblur(blurred, kernel, settings, None, blur.kernel_error)
    assert np.array_equal(result, expected)


def test_a_uniform_blur_that_run_would_not_trust_gets_runs_decision() -> None:
    # Stars slightly soft (a Gaussian, sigma 0.8 px) over a dark sky: every tile takes the best
    # window's free-form kernel, which `run`'s checks do not trust. Deblurred with that kernel
    # unchecked (until engine 0.3.19) the sky came out 0.05 dB worse than the input; `run`
    # removed a Gaussian instead (+3.4 dB) until engine 0.3.30, which removes no softness under
    # sigma 1 px (`blind.MIN_SOFTNESS`) and gives the sky back as it was: run's decision either way.
    rng = np.random.default_rng(0)
    sky = np.full((540, 540), 0.01, np.float32)
    stars = rng.integers(0, 540, (1000, 2))
    sky[stars[:, 0], stars[:, 1]] += rng.uniform(0.2, 1.0, 1000)
    sharp = np.repeat(sky[..., None], 3, axis=2)
    blurred = ndimage.gaussian_filter(sharp, (0.8, 0.8, 0))
    blurred = (blurred + rng.normal(0, 0.003, blurred.shape)).astype(np.float32)
    result, _, varying = deblur_varying(blurred, 13)
    _, blur = estimate_blur(blurred, 13)
    assert varying.uniform and varying.kernel == blur.kernel == NO_BLUR, varying.reason
    assert varying.reason == f"no part of the frame is deblurred: {blur.reason}"
    assert np.array_equal(result, blurred)


def test_only_runs_disagreeing_windows_give_way_to_the_tiles() -> None:
    """`run` leaving a picture as it is because its two windows' kernels disagree is what a
    blur varying across the frame does to it, and gives way to the tiles' verdict (a rotation of
    the blind benchmark's LadyBird: 0 -> 61 % of the per-tile oracle); its verdict that the
    blur learnt means none (the star field above), its fallback, and a kernel it could not
    check on a second window do not."""
    rng = np.random.default_rng(0)
    sky = np.full((270, 270, 3), 0.01, np.float32)
    stars = rng.integers(0, 270, (250, 2))
    sky[stars[:, 0], stars[:, 1]] += 0.5
    _, sharp = estimate_blur(ndimage.gaussian_filter(sky, (0.8, 0.8, 0)), 13)
    assert sharp.kernel == NO_BLUR and sharp.check_window != sharp.window
    assert not refused_as_varying(sharp)  # agreed: the picture is sharp
    disagreeing = replace(sharp, confidence=0.52)
    assert refused_as_varying(disagreeing)
    assert not refused_as_varying(replace(disagreeing, kernel=GAUSSIAN))
    assert not refused_as_varying(replace(disagreeing, check_window=sharp.window))


def test_a_tile_that_no_kernel_explains_is_left_as_it_is() -> None:
    # A shaken scene whose top-left tile is sharp (as a part in focus that did not move would
    # be): the kernel does not explain it, so it is left as it is, bit for bit, inside the ramp;
    # the other tiles take the kernel and change.
    rng = np.random.default_rng(8)
    psf = camera_shake_kernel(11, rng)
    scene = dead_leaves((540, 540), rng)
    blurred = shake(scene, psf)
    blurred[:180, :180] = scene[:180, :180]
    blurred += rng.normal(0, 0.003, blurred.shape).astype(np.float32)
    overall = psf, PsfReport((0, 0, 64, 64), 0, 1, 0.0)
    chosen = choose_kernels(blurred, [None] * 9, overall, (3, 3), 13)
    assert chosen[0] is None and all(estimate is overall for estimate in chosen[1:])
    kernels = [None if estimate is None else estimate[0] for estimate in chosen]
    result, reports = deblur_grid(blurred, kernels, (3, 3), DeblurSettings(max_iterations=5))
    assert reports[0] is None and all(report is not None for report in reports[1:])
    assert np.array_equal(result[:130, :130], blurred[:130, :130])
    assert np.abs(result[400:, 400:] - blurred[400:, 400:]).mean() > 0.01


def test_a_tile_its_kernel_cannot_have_made_is_left_and_said_so() -> None:
    # A 1 x 2 grid: a scene blurred by a disc, and beside it a noise-free 1 px checkerboard
    # whose white is the clip level, which no disc can have made (deblurred with one it would
    # lose its light). That tile is handed back as it was, and the reason counts it among the
    # parts left, not the parts deblurred (until engine 0.3.53 it said "2 of 2 deblurred").
    rng = np.random.default_rng(4)
    disc = disc_kernel(3)
    picture = shake(dead_leaves((128, 1024), rng), disc)
    rows, cols = np.mgrid[:128, :384]
    picture[:, 640:] = ((rows + cols) % 2)[..., None]  # (beyond the left tile's reach)
    settings = DeblurSettings(clip_level=1.0, max_iterations=5)
    result, reports = deblur_grid(picture, [disc, disc], (1, 2), settings)
    assert reports[0] is not None and reports[0].stop_reason != StopReason.UNEXPLAINED
    assert reports[1] is not None and reports[1].stop_reason == StopReason.UNEXPLAINED
    assert np.allclose(result[:, 640:], picture[:, 640:], atol=1e-6)
    estimate = disc, PsfReport((0, 0, 64, 64), 0, 1, 0.0)
    kind, _, reason = describe([estimate, estimate], [disc, disc], reports)
    assert kind == VARYING
    assert reason.startswith("the blur varies across the frame: 1 of 2 parts deblurred"), reason
    left = "; 1 left as it is: deblurred with its kernel it would not keep its light"
    assert reason.endswith(left), reason


def test_a_black_tile_is_left_and_said_so() -> None:
    # A 1 x 2 grid whose right tile is black: its deblur hands it back with nothing to deblur
    # (since engine 0.3.58), and the reason counts it among the parts left, not deblurred.
    rng = np.random.default_rng(4)
    disc = disc_kernel(3)
    picture = shake(dead_leaves((128, 1024), rng), disc)
    picture[:, 384:] = 0  # (the right tile with its margin: no light)
    settings = DeblurSettings(max_iterations=5)
    result, reports = deblur_grid(picture, [disc, disc], (1, 2), settings)
    assert reports[1] is not None and reports[1].stop_reason == StopReason.NO_BLUR
    assert not result[:, 640:].any()
    estimate = disc, PsfReport((0, 0, 64, 64), 0, 1, 0.0)
    kind, _, reason = describe([estimate, estimate], [disc, disc], reports)
    assert kind == VARYING
    assert reason.startswith("the blur varies across the frame: 1 of 2 parts deblurred"), reason
    assert reason.endswith("; 1 left as it is: black, with nothing to deblur"), reason


def test_a_kernel_that_part_of_its_tile_is_sharper_than_is_not_the_tiles_blur() -> None:
    # A tile shaken by a kernel but for its right fifth, sharp (a part in focus that did not
    # move): the kernel explains the tile's spectra on average better than no blur, and until
    # engine 0.3.53 deblurred it all. A tenth of its patches are sharper than the kernel allows,
    # so it is not the tile's blur, as `run` judges a kernel on the whole frame; the same tile
    # shaken all over still takes it.
    rng = np.random.default_rng(9)
    psf = camera_shake_kernel(11, rng)
    scene = dead_leaves((540, 540), rng)
    estimate = psf, PsfReport((0, 0, 64, 64), 0, 1, 0.0)
    for sharp_from, taken in ((432, False), (540, True)):
        tile = shake(scene, psf)
        tile[:, sharp_from:] = scene[:, sharp_from:]
        tile = (tile + np.random.default_rng(1).normal(0, 0.003, tile.shape)).astype(np.float32)
        model = estimate_noise_model(tile)
        margins, _ = kernel_evidence(tile, [psf], 13, 1, model)
        assert margins[0].mean() > LEAVE_MARGIN  # its spectra alone would keep the kernel
        chosen = best_kernel(tile, [estimate], None, 13, model, for_correlated_noise(model, tile))
        assert (chosen is estimate) == taken


def test_a_sharp_photograph_whose_windows_agree_is_left_as_run_leaves_it() -> None:
    # scikit-image's coffee, unblurred, under ISO 800-like noise: `run`'s two windows agree on
    # a kernel that lets a fifth of every detail through, a sharp picture (`blind.sharp_learnt`).
    # Until engine 0.3.53 `--varying` let its tiles overrule that, and their kernels, learnt
    # from the texture, made the blind benchmark's copy of it 10.5 dB worse.
    noisy = sharp_photograph("coffee")
    result, report, varying = deblur_varying(noisy, 15)
    _, blur = estimate_blur(noisy, 15)
    assert blur.kernel == NO_BLUR and blur.confidence >= AGREEMENT, blur.reason
    assert np.array_equal(result, noisy) and report.iterations == 0
    assert report.seconds == 0 < varying.seconds  # nothing deblurred; the estimate took time
    assert varying.uniform and varying.kernel == NO_BLUR
    assert varying.reason == f"no part of the frame is deblurred: {blur.reason}"


def test_a_sharp_part_is_never_deblurred_with_a_kernel_narrower_than_a_pixel() -> None:
    # A dead-leaves scene shaken by a small blur everywhere but its sharp top-left quarter: that
    # quarter learnt its own near-delta kernel (0.83 at the centre, 0.08 on two neighbours),
    # which explained it as well as no blur, and deblurring with it cost 43.4 -> 31.6 dB (sRGB)
    # until engine 0.3.9. A kernel narrower than a pixel now means no blur, as for `run`.
    rng = np.random.default_rng(9)
    sharp = dead_leaves((540, 540), rng)
    blurred = shake(sharp, camera_shake_kernel(9, rng))
    blurred[:270, :270] = sharp[:270, :270]
    blurred = (blurred + rng.normal(0, 0.003, blurred.shape)).astype(np.float32)
    out, _, varying = deblur_varying(blurred, 9, DeblurSettings(max_iterations=10))
    corner = np.s_[:200, :200]
    assert psnr(out[corner], sharp[corner]) >= psnr(blurred[corner], sharp[corner]) - 0.1
    assert "sharp already" in varying.reason or "left as" in varying.reason, varying.reason
    assert is_sharp((np.eye(1, dtype=np.float32), PsfReport((0, 0, 1, 1), 0, 1, 0.0)))


def test_the_tiles_learnt_and_chosen_concurrently_are_those_learnt_one_after_another() -> None:
    # The tiles' kernels are learnt, and chosen, on all cores at once: the same kernels, bit for
    # bit, as one tile after another, in the same order. (On a 2 x 2 grid every tile is every
    # other's neighbour, so each chooses among all the estimates.)
    rng = np.random.default_rng(5)
    scene = dead_leaves((540, 540), rng)
    blurred = shake(scene, camera_shake_kernel(11, rng))
    blurred[:270, :270] = scene[:270, :270]
    blurred += rng.normal(0, 0.003, blurred.shape).astype(np.float32)
    found = estimate_grid(blurred, 13, (2, 2), None)
    views = tile_views(blurred, (2, 2))
    for (top, left, tile), estimate in zip(views, found, strict=True):
        alone = tile_kernel(tile, 13, None)
        assert (alone is None) == (estimate is None)
        if alone is not None and estimate is not None:
            assert np.array_equal(alone[0], estimate[0])
            x, y, w, h = alone[1].window
            assert estimate[1].window == (x + left, y + top, w, h)
    known = [e for e in found if e is not None and kernel_spread(e[0]) <= MAX_SPREAD * 13]
    assert len(known) >= 2
    chosen = choose_kernels(blurred, found, None, (2, 2), 13)
    model = estimate_noise_model(blurred)
    deblurred_noise = for_correlated_noise(model, blurred)
    one_by_one = [best_kernel(tile, known, None, 13, model, deblurred_noise) for *_, tile in views]
    assert all(a is b for a, b in zip(chosen, one_by_one, strict=True))


def test_a_tiles_neighbourhood_is_itself_and_the_tiles_around_it() -> None:
    assert neighbourhood(4, (3, 3)) == list(range(9))
    assert neighbourhood(0, (3, 3)) == [0, 1, 3, 4]
    assert neighbourhood(5, (3, 3)) == [1, 2, 4, 5, 7, 8]
    assert neighbourhood(2, (1, 4)) == [1, 2, 3]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_the_blend_weights_are_a_partition_of_unity(parts: int) -> None:
    weights = blend_weights(500, bounds(500, parts), 64)
    assert weights.shape == (parts, 500) and weights.min() >= 0 and weights.max() <= 1
    assert np.allclose(weights.sum(axis=0), 1)
    assert all(weights[k, (a + b) // 2] == 1 for k, (a, b) in enumerate(zip(
        bounds(500, parts)[:-1], bounds(500, parts)[1:], strict=True)))  # fmt: skip


def test_varying_needs_the_blur_size_not_a_kernel_file() -> None:
    job = JobSpec("/a.tif", "/b.tif", psf="/k.npy", settings=DeblurSettings(varying=True))
    with pytest.raises(InputError, match="--varying"):
        job.validate()


def test_a_flat_picture_comes_back_as_it_is() -> None:
    # As `run` leaves it: nothing to learn a blur from is no error, the picture is as it was.
    rng = np.random.default_rng(2)
    flat = (0.4 + rng.normal(0, 0.002, (540, 540, 3))).astype(np.float32)
    out, report, varying = deblur_varying(flat, 13)
    assert np.array_equal(out, flat)
    assert report.stop_reason == "no_blur" and varying.windows == [None] * len(varying.windows)
    # The deblur's seconds as `run` reports them: none (until engine 0.3.57 the whole run's,
    # the estimate's included, though the report says nothing was deblurred).
    assert report.seconds == 0 < varying.seconds
    assert (varying.kernel, varying.confidence, varying.reason) == (NO_BLUR, 0, NOTHING_EXPLAINED)
    # its kernels are the 1 px delta of "no blur", as `run` saves it (until engine 0.3.41 13 px)
    assert all(kernel.shape == (1, 1) for kernel in varying.kernels)


def test_a_blur_size_larger_than_the_picture_is_an_upper_bound() -> None:
    # As `run` takes it: learnt at the largest size the windows hold (until engine 0.3.41
    # refused: "the picture, 300x300 px, is smaller than the blur (1001x1001 px)").
    flat = np.full((300, 300, 3), 0.4, np.float32)
    out, report, _ = deblur_varying(flat, 1001)
    assert np.array_equal(out, flat) and report.stop_reason == "no_blur"


def learnt_at(x: int, y: int = 0, side: int = 64) -> PsfReport:
    """The report of a kernel learnt on the side x side window at (x, y)."""
    return PsfReport((x, y, side, side), 0, 1, 0.0)


def agreement(chosen: list, found: list, overall: tuple | None, grid: tuple[int, int]) -> float:
    """`neighbour_agreement` of the tiles' twins (`tile_twins`)."""
    return neighbour_agreement(chosen, tile_twins(chosen, found, overall, grid))


def test_the_confidence_is_how_alike_each_tiles_kernel_is_to_one_learnt_beside_it() -> None:
    rng = np.random.default_rng(4)
    first, second = camera_shake_kernel(9, rng), camera_shake_kernel(9, rng)
    a, a_again, b = (first, learnt_at(0)), (first.copy(), learnt_at(100)), (second, learnt_at(200))
    # 1 x 2 tiles: each takes its own estimate, and the other tile learnt the same kernel.
    assert agreement([a, a_again], [a, a_again], None, (1, 2)) == 1.0
    # One tile's kernel is the other's, which learnt another: as alike as the two kernels.
    assert agreement([b, None], [a, b], None, (1, 2)) == round(similarity(a[0], b[0]), 3)
    assert similarity(a[0], b[0]) < 0.9
    # Far apart on a 1 x 3 grid, nothing else to compare with: unchecked.
    assert agreement([a, None, None], [a, None, None], None, (1, 3)) == UNCHECKED
    # The whole picture's kernel counts as one learnt beside every tile.
    assert agreement([b, None, None], [b, None, None], a, (1, 3)) < 0.9
    # The same pixels learnt twice (the whole picture's window in a tile) are no second view.
    a_twice = (first.copy(), learnt_at(32, 32))
    assert agreement([a, None], [None, a_twice], None, (1, 2)) == UNCHECKED


def test_each_tiles_kernel_error_is_measured_against_its_twin_on_both_windows() -> None:
    _, blurred = shaken_and_rolled_scene()
    rng = np.random.default_rng(4)
    first, second = camera_shake_kernel(9, rng), camera_shake_kernel(9, rng)
    point = np.zeros((9, 9), np.float32)
    point[4, 4] = 1
    a, a_again = (first, learnt_at(0, 0, 128)), (first.copy(), learnt_at(500, 0, 128))
    b, dot = (second, learnt_at(200, 200, 256)), (point, learnt_at(0, 600, 128))
    # 1 x 4 tiles: a twin learnt the same kernel; another learnt a different one; a tile left
    # as it is; a sharp tile.
    chosen, found = [a, b, None, dot], [a_again, a, None, dot]
    twins = tile_twins(chosen, found, None, (1, 4))
    assert twins[0] is a_again[0] and np.array_equal(twins[1], first) and twins[3] is None
    errors = tile_errors(blurred, chosen, twins, found)
    assert errors[0] == 0.0  # its twin is the very same kernel
    # Measured where the kernel was learnt and where the tile learnt its own: the larger counts.
    learnt_there = kernel_error_ratio(blurred[200:456, 200:456], second, first)
    tile_there = kernel_error_ratio(blurred[0:128, 0:128], second, first)
    assert errors[1] == max(learnt_there, tile_there) > 0.5
    assert learnt_there != tile_there  # (the content matters: the two windows differ)
    assert errors[2] == errors[3] == 0.0  # not deblurred at all, or only smoothed
    # A tile that learnt nothing of its own: the kernel's window alone.
    assert tile_errors(blurred, [b], [first], [None]) == [learnt_there]
    assert tile_errors(blurred, [a, None], [None, None], [a, None]) == [0.0, 0.0]  # no twin


def test_a_window_you_gave_is_refused_before_any_tile_is_learnt() -> None:
    """A flat or misplaced `--window` is a one-line error at once, not after the tiles' work."""
    rng = np.random.default_rng(2)
    picture = dead_leaves((540, 540), rng)
    picture[:200, :200] = 0.4  # a flat corner
    stages: list[float] = []
    for window, message in (((10, 10, 150, 150), "edges"), ((500, 500, 150, 150), "inside")):
        with pytest.raises(InputError, match=message):
            deblur_varying(picture, 13, window=window, estimating=lambda f, _: stages.append(f))
    assert stages == []
