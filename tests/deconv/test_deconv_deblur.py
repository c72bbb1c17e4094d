"""The non-blind engine end to end: quality, boundaries, highlights, stopping, previews, errors."""

import numpy as np
import pytest
from scipy import ndimage

from worker.deconv import DeblurSettings, deblur, rl_tv
from worker.deconv.noise import estimate_noise_model, regularisation_weight, white_level
from worker.deconv.parametric import disc_kernel
from worker.deconv.preview import check_preview
from worker.deconv.rl_tv import LIGHT_KEPT, keeps_light, richardson_lucy_tv
from worker.deconv.settings import MAX_LAMBDA
from worker.deconv.stopping import StoppingRule
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves, psnr
from worker.errors import InputError
from worker.resize import enlarge_bilinear, shrink_area
from worker.stages import StopReason


@pytest.fixture(scope="module")
def shaken() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, blurred noisy observation, PSF): a dead-leaves scene shaken by a 13 px path."""
    rng = np.random.default_rng(10)
    scene = dead_leaves((212, 252), rng)
    psf = camera_shake_kernel(13, rng)
    observed = blur_valid(scene, psf)
    observed += rng.normal(0, 0.01, observed.shape).astype(np.float32)
    return scene[6:-6, 6:-6], observed, psf


def test_deblurring_raises_psnr(shaken) -> None:
    truth, observed, psf = shaken
    restored, report = deblur(observed, psf)
    assert restored.shape == observed.shape and restored.dtype == np.float32
    assert psnr(restored, truth) > psnr(observed, truth) + 3
    assert report.noise_sigma == pytest.approx(0.01, rel=0.3)
    assert report.lam > 0 and 1 <= report.best_iteration <= report.iterations


def test_grayscale_works_like_colour(shaken) -> None:
    truth, observed, psf = shaken
    restored, _ = deblur(observed[..., 1:2], psf)
    assert restored.shape == observed[..., 1:2].shape
    assert psnr(restored, truth[..., 1:2]) > psnr(observed[..., 1:2], truth[..., 1:2]) + 3


def test_a_bright_edge_does_not_wrap_to_the_opposite_edge() -> None:
    image = np.full((80, 96, 3), 0.2, np.float32)
    image[:, :6] = 0.9  # a bright band at the left edge
    psf = np.zeros((11, 11), np.float32)
    psf[5, :] = 1.0
    restored, _ = deblur(image, psf, DeblurSettings(lam=0.0, max_iterations=20))
    # Circular (FFT) deconvolution would pull the band's light into the right edge.
    np.testing.assert_allclose(restored[:, -20:], 0.2, atol=2e-3)


def test_saturated_highlights_do_not_ring(monkeypatch) -> None:
    # Both runs from the same start (the half-quadratic one is used on unclipped pictures only).
    monkeypatch.setattr(rl_tv, "half_quadratic_start", lambda *args, **kwargs: None)
    rng = np.random.default_rng(11)
    scene = np.full((150, 150, 3), 0.15, np.float32)
    scene[60:90, 60:90] = 8.0  # a lamp, far brighter than the sensor can hold
    psf = camera_shake_kernel(15, rng)
    truth = scene[7:-7, 7:-7]
    observed = np.minimum(blur_valid(scene, psf), 1.0)  # clipped at 1
    observed += rng.normal(0, 0.003, observed.shape).astype(np.float32)
    ring = np.zeros(truth.shape[:2], bool)
    ring[35:100, 35:100] = True
    ring[observed[..., 0] > 0.5] = False  # around the highlight, outside its glow
    far = np.zeros(truth.shape[:2], bool)
    far[:25] = True  # the same flat background, away from the highlight
    ringing = {}
    for clip in (1.0, 1e6):  # masked; and a clip level so high that nothing is masked
        restored, _ = deblur(observed, psf, DeblurSettings(clip_level=clip))
        error = np.abs(restored - truth)
        ringing[clip] = error[ring].mean() - error[far].mean()  # the excess near the light
    assert ringing[1.0] < 0.6 * ringing[1e6]


def test_a_bright_area_just_under_white_keeps_its_data() -> None:
    # A well-exposed red area: the red channel just under the white level, so that the sensor
    # clips the light and its noise together and a share of its pixels sits at 1. Only those are
    # censored; the rest were measured and must count, or the area is left to the prior.
    rng = np.random.default_rng(12)
    scene = dead_leaves((172, 172), rng)
    scene[..., 0] = 0.97 + 0.03 * scene[..., 0]  # red between 0.97 and 1.0
    psf = camera_shake_kernel(11, rng)
    truth = scene[5:-5, 5:-5]
    blurred = blur_valid(scene, psf)
    gain = 0.01**2 / 0.18  # shot noise of deviation 0.01 at mid grey, and read noise
    observed = rng.poisson(blurred / gain) * gain + rng.normal(0, 0.01, blurred.shape)
    observed = np.minimum(observed, 1.0).astype(np.float32)
    assert 0.05 < (observed[..., 0] >= 1.0).mean() < 0.3  # clipped, a share of the red
    restored, _ = deblur(observed, psf, DeblurSettings(clip_level=1.0))
    assert psnr(restored, truth) > psnr(observed, truth) + 4.5  # 98 % and up left out: +2.6


def test_stop_reasons_are_reachable(shaken) -> None:
    _, observed, psf = shaken
    _, capped = deblur(observed, psf, DeblurSettings(max_iterations=2))
    assert (capped.stop_reason, capped.iterations) == ("cap", 2)
    _, white = deblur(observed, psf, DeblurSettings(lam=0.0, tolerance=1.0))
    assert white.stop_reason == "whiteness" and white.best_iteration < white.iterations
    flat = np.full((60, 60, 3), 0.3, np.float32)
    _, still = deblur(flat, psf)
    assert still.stop_reason == "stagnation"


def test_preview_downsizes_image_and_psf(shaken) -> None:
    _, observed, psf = shaken
    preview, report = deblur(observed, psf, DeblurSettings(scale=0.5))
    assert preview.shape == (100, 120, 3) and report.scale == 0.5
    assert report.as_dict()["scale"] == 0.5


def test_a_preview_sharpens_what_the_full_run_sharpens() -> None:
    """A preview deblurs the shrunk picture with the kernel shrunk as the picture is: a long
    shake at a quarter size (a 31 px path, 7.5 px there) comes back sharper than the shrunk
    input, by 7.5 dB here. Until engine 0.3.40 the kernel was resized to a rounded odd size by
    bilinear sampling, stretched by 16 % and short of the light between its samples: +1.4 dB
    here, and a real photograph's preview came back worse than its input."""
    rng = np.random.default_rng(5)
    scene = dead_leaves((430, 510), rng)
    psf = camera_shake_kernel(31, rng)
    observed = blur_valid(scene, psf) + rng.normal(0, 0.005, (400, 480, 3)).astype(np.float32)
    truth = shrink_area(scene[15:-15, 15:-15], 0.25)
    preview, _ = deblur(observed, psf, DeblurSettings(scale=0.25))
    assert psnr(preview, truth) > psnr(shrink_area(observed, 0.25), truth) + 4


def test_report_is_json_ready(shaken) -> None:
    _, observed, psf = shaken
    _, report = deblur(observed, psf, DeblurSettings(max_iterations=3))
    record = report.as_dict()
    assert set(record) >= {"iterations", "stop_reason", "noise_sigma", "lambda", "seconds"}
    assert record["noise_gain"] >= 0 and record["noise_offset"] >= 0
    assert "lam" not in record


def test_progress_reports_and_can_cancel(shaken) -> None:
    _, observed, psf = shaken
    seen: list[tuple[float, str]] = []
    settings = DeblurSettings(max_iterations=150)
    _, report = deblur(observed, psf, settings, progress=lambda f, s: seen.append((f, s)))
    assert report.stop_reason != "cap"  # stopped early, and still reports the end
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert {s for _, s in seen} == {"deblurring"}

    def cancel(fraction: float, stage: str) -> None:
        if fraction > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deblur(observed, psf, DeblurSettings(max_iterations=10), cancel)


GOOD = np.full((20, 20, 3), 0.5, np.float32)
DELTA = np.ones((3, 3), np.float32)


@pytest.mark.parametrize(
    ("image", "psf", "settings", "message"),
    [
        (np.where(np.eye(20)[..., None], np.nan, GOOD), DELTA, {}, "NaN"),
        (np.where(np.eye(20)[..., None], np.inf, GOOD), DELTA, {}, "infinite"),
        (np.ones((1, 1, 3), np.float32), np.ones((1, 1)), {}, "too small"),
        (np.ones((0, 5, 3), np.float32), DELTA, {}, "too small"),
        (np.ones((20, 20), np.float32), DELTA, {}, "shaped"),
        (np.ones((20, 20, 4), np.float32), DELTA, {}, "shaped"),
        (GOOD.astype(complex), DELTA, {}, "real numbers"),
        (GOOD, np.ones((4, 3)), {}, "odd"),
        (GOOD, np.ones((21, 21)), {}, "larger than the image"),
        (GOOD, DELTA, {"priority": 1.5}, "priority"),
        (GOOD, DELTA, {"priority": float("nan")}, "priority"),
        (GOOD, DELTA, {"scale": 0.0}, "scale"),
        (GOOD, DELTA, {"scale": 1.5}, "scale"),
        (GOOD, DELTA, {"tolerance": 0.0}, "tolerance"),
        (GOOD, DELTA, {"tolerance": -5.0}, "tolerance"),
        (GOOD, DELTA, {"lam": -1.0}, "lambda"),
        (GOOD, DELTA, {"max_iterations": 0}, "iteration"),
        (GOOD, DELTA, {"max_iterations": 2.5}, "iteration"),
        (GOOD, DELTA, {"clip_level": 0.0}, "clip level"),
        (GOOD, np.ones((9, 9)), {"scale": 0.1}, r"too small for the blur \(3x3 px at that scale\)"),
    ],
)
def test_bad_input_raises_one_line_input_error(image, psf, settings, message) -> None:
    with pytest.raises(InputError, match=message) as caught:
        deblur(image, psf, DeblurSettings(**settings))
    assert "\n" not in str(caught.value)


def test_tiled_iterations_equal_whole_frame_ones(shaken) -> None:
    _, observed, psf = shaken
    f = np.ascontiguousarray(observed.transpose(2, 0, 1).clip(0, None))
    mask = np.ones(f.shape[1:], np.float32)
    results = [
        richardson_lucy_tv(
            f, mask, psf, 0.01, 0.01, 0.1, StoppingRule(5.0, 6, min_iterations=99), tile=tile
        ).estimate
        for tile in (40, 4096)
    ]  # small tiles (54 px FFTs, 6 x 7 of them); one transform for the whole frame
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)


def test_enlarge_is_bilinear_on_pixel_centres() -> None:
    small = np.random.default_rng(12).random((2, 7, 9), dtype=np.float32)
    expected = ndimage.zoom(small, (1, 15 / 7, 19 / 9), order=1, mode="nearest", grid_mode=True)
    enlarged = enlarge_bilinear(small, np.empty((2, 15, 19), np.float32))
    np.testing.assert_allclose(enlarged, expected, atol=1e-6)
    grid = np.full((2, 21, 25), np.nan, np.float32)  # into the window of a larger grid
    enlarge_bilinear(small, grid[:, 3:18, 3:22])
    np.testing.assert_array_equal(grid[:, 3:18, 3:22], enlarged)
    assert np.isnan(grid[:, :3]).all() and np.isnan(grid[:, :, 22:]).all()  # the rest untouched


def test_coarse_start_gives_the_same_quality_sooner(shaken, monkeypatch) -> None:
    """Against the back-projection start, under the same stopping rule (the half-quadratic one
    has tests of its own)."""
    truth, observed, psf = shaken
    monkeypatch.setattr(rl_tv, "half_quadratic_start", lambda *args, **kwargs: None)
    settings = DeblurSettings(max_iterations=150)  # both runs stop before this cap
    cold, cold_report = deblur(observed, psf, settings)
    monkeypatch.setattr(rl_tv, "COARSE_START_PIXELS", observed.shape[0] * observed.shape[1])
    warm, warm_report = deblur(observed, psf, settings)
    assert warm_report.iterations < cold_report.iterations
    assert psnr(warm, truth) > psnr(cold, truth) - 0.5


def test_each_start_has_its_own_first_iterations_and_one_stagnation(shaken, monkeypatch) -> None:
    """Stopping rules may fire after 6 iterations from the half-quadratic start, 10 from a coarse
    one (it is nearly white already), 8 from the back-projection; a change under the same
    threshold counts as stagnation from every start."""
    _, observed, psf = shaken
    rules: list[StoppingRule] = []

    class Recorded(StoppingRule):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            rules.append(self)

    monkeypatch.setattr(rl_tv, "StoppingRule", Recorded)
    deblur(observed, psf, weight_scale=1.0)  # from the half-quadratic start (no weight trials)
    clipped = observed.copy()
    clipped[:4, :4] = observed.max()  # clipped pixels: from the back-projection
    deblur(clipped, psf, DeblurSettings(clip_level=float(observed.max())), weight_scale=1.0)
    monkeypatch.setattr(rl_tv, "COARSE_START_PIXELS", observed.shape[0] * observed.shape[1])
    deblur(observed, psf, weight_scale=1.0)  # a half-size run (its own rule), then the full-size
    split, back_projection, coarse, full = rules
    assert coarse.max_iterations == rl_tv.COARSE_ITERATIONS
    assert split.min_iterations == coarse.min_iterations == rl_tv.SPLIT_MIN_ITERATIONS
    assert full.min_iterations == rl_tv.WARM_MIN_ITERATIONS
    assert back_projection.min_iterations == StoppingRule.min_iterations
    assert len({rule.stagnation for rule in rules}) == 1


def test_the_fitted_read_noise_offset_beats_plain_richardson_lucy() -> None:
    """Shot plus read noise on a darkish scene: weighting each pixel by its own noise (the
    shifted-Poisson offset b of the fitted noise model) restores better than b = 0, which
    takes all noise for shot noise and over-trusts the dark pixels."""
    rng = np.random.default_rng(13)
    scene = dead_leaves((212, 252), rng) * 0.5
    psf = camera_shake_kernel(13, rng)
    clean = blur_valid(scene, psf)
    gain, read_variance = 0.02**2 / 0.18, 0.02**2
    shot = rng.poisson(clean / gain) * gain
    observed = (shot + rng.normal(0, np.sqrt(read_variance), clean.shape)).astype(np.float32)
    f = np.ascontiguousarray(observed.transpose(2, 0, 1).clip(0, None))
    mask = np.ones(f.shape[1:], np.float32)
    model, white = estimate_noise_model(observed), white_level(f)
    assert model.offset(white) == pytest.approx(read_variance / gain, rel=0.2)
    lam = regularisation_weight(model, white, float(f.mean()))
    scores = {
        offset: psnr(
            richardson_lucy_tv(
                f, mask, psf, lam, model.sigma, offset, StoppingRule(5.0, 60)
            ).estimate.transpose(1, 2, 0),
            scene[6:-6, 6:-6],
        )
        for offset in (model.offset(white), 0.0)
    }
    assert scores[model.offset(white)] > scores[0.0] + 0.2


@pytest.mark.parametrize("error", [np.nan, -1.0, np.inf])
def test_a_kernel_error_that_is_no_share_of_the_noise_is_refused(shaken, error) -> None:
    _, observed, psf = shaken
    with pytest.raises(InputError, match="kernel's error"):
        deblur(observed, psf, kernel_error=error)


def test_a_huge_kernel_error_smooths_no_more_than_the_largest_lambda(shaken) -> None:
    """A kernel error of 1e20 made lambda 3e34 and the picture's samples 1e25 (a damaged cache
    record's, engine 0.3.22 before a helper's attack): lambda stops at `MAX_LAMBDA`."""
    _, observed, psf = shaken
    restored, report = deblur(observed, psf, DeblurSettings(max_iterations=3), kernel_error=1e20)
    assert report.lam == MAX_LAMBDA
    assert np.isfinite(restored).all() and restored.max() < 2 * observed.max()


def test_a_picture_smaller_than_its_blur_is_named_as_the_picture() -> None:
    """At scale 1 there is no preview: "scale 1 leaves a 300x300 preview" (`run --varying
    --blur 1001` on a 300 px picture, until engine 0.3.39) named one."""
    image, psf = np.zeros((300, 300, 3), np.float32), np.ones((1001, 1001), np.float32)
    with pytest.raises(InputError, match=r"^the picture, 300x300 px, is smaller than the blur"):
        check_preview(image, psf, 1.0)
    with pytest.raises(InputError, match=r"^scale 0.5 leaves a 300x300 preview, too small"):
        check_preview(image, psf, 0.5)


def test_a_result_that_would_not_keep_the_light_is_no_deblur() -> None:
    """A blur keeps the light, so a deblur of it keeps the picture's mean. Noise-free content no
    disc can have made (a 1 px checkerboard, its white at the clip level, which leaves it out of
    the data) came back 99.7 % darker; it is handed back as it was, saying why. A picture the
    kernel did blur keeps its light, and is deblurred."""
    rows, cols = np.mgrid[:96, :96]
    board = np.repeat(((rows + cols) % 2).astype(np.float32)[..., None], 3, axis=2)
    disc = disc_kernel(3)
    restored, report = deblur(board, disc, DeblurSettings(clip_level=1.0))
    assert report.stop_reason == StopReason.UNEXPLAINED and report.iterations == 0
    assert np.array_equal(restored, board)
    scene = dead_leaves((128, 128), np.random.default_rng(5))
    blurred = blur_valid(scene, disc)
    restored, report = deblur(blurred, disc)
    assert report.stop_reason not in (StopReason.UNEXPLAINED, StopReason.NO_BLUR)
    assert keeps_light(blurred, restored)
    assert not keeps_light(blurred, restored * (1 - 2 * LIGHT_KEPT))


def test_a_black_picture_is_handed_back_as_it_is() -> None:
    """A black picture holds no light that a blur could have spread. Until engine 0.3.58 its
    deblur came back a little brighter, so it was handed back as one the kernel "does not
    explain" (`StopReason.UNEXPLAINED`), which says the kernel is wrong; now as one with nothing
    to deblur."""
    black = np.zeros((64, 64, 3), np.float32)
    restored, report = deblur(black, disc_kernel(3))
    assert report.stop_reason == StopReason.NO_BLUR and report.iterations == 0
    assert np.array_equal(restored, black)
    restored, report = deblur(-black - 0.01, disc_kernel(3))  # (out of gamut: no light either)
    assert report.stop_reason == StopReason.NO_BLUR
