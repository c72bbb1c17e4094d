"""The TV weight fitted to the picture by hold-out prediction (`worker.deconv.weight_choice`)."""

import warnings

import numba
import numpy as np
import pytest
from scipy import ndimage, signal

from worker.deconv import DeblurSettings, deblur, rl_tv
from worker.deconv.rl_tv import _data_term, _weight_scale
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves, psnr
from worker.deconv.varying import deblur_grid
from worker.deconv.weight_choice import (
    HELD_OUT,
    SCALES,
    TIE,
    best_scale,
    grey_centre,
    held_out_pixels,
    prediction_error,
    training_data,
)
from worker.errors import InputError


def test_the_split_is_the_same_every_time_and_holds_out_its_share() -> None:
    held = held_out_pixels((300, 400))
    assert np.array_equal(held, held_out_pixels((300, 400)))
    assert abs(held.mean() - HELD_OUT) < 0.01


def test_the_grey_crop_is_the_centre_and_a_small_picture_whole() -> None:
    image = np.zeros((1000, 800, 3), dtype=np.float32)
    image[500, 400] = (3, 6, 9)  # the centre pixel
    crop = grey_centre(image, 100)
    assert crop.shape == (100, 100, 1) and crop[50, 50, 0] == 6
    assert grey_centre(image[:60], 100).shape == (60, 100, 1)


def test_held_out_pixels_leave_the_data_and_the_start_cannot_see_them() -> None:
    rng = np.random.default_rng(0)
    f = np.full((3, 64, 64), 0.5, dtype=np.float32)
    held = held_out_pixels((64, 64))
    f[:, held] = rng.uniform(5, 9, held.sum())  # values no training pixel has
    filled, mask = training_data(f, np.ones((64, 64), np.float32), held)
    assert np.all(mask[held] == 0) and np.all(mask[~held] == 1)
    assert np.allclose(filled, 0.5)  # each held-out pixel is its training neighbours' mean


def test_the_prediction_error_is_nil_for_the_picture_that_made_the_data() -> None:
    rng = np.random.default_rng(1)
    psf = camera_shake_kernel(9, rng)
    sharp = ndimage.gaussian_filter(rng.random((2, 80, 90)), (0, 2, 2)).astype(np.float32)
    mirrored = [np.pad(plane, 4, mode="symmetric") for plane in sharp]
    blurred = np.stack([signal.fftconvolve(plane, psf, "valid") for plane in mirrored])
    held = held_out_pixels((80, 90))
    assert prediction_error(sharp, blurred, psf, held) < 1e-12
    assert prediction_error(sharp * 1.1, blurred, psf, held) > 1e-4


def _scene(noise: float, smooth: float, grain: float) -> tuple[np.ndarray, ...]:
    """A dead-leaves scene softened by a Gaussian of sigma `smooth` px, with fine `grain` on
    it, shaken by a 9 px kernel, with noise at `noise` of the white level: (truth, blurred,
    kernel)."""
    rng = np.random.default_rng(4)
    psf = camera_shake_kernel(9, rng)
    scene = ndimage.gaussian_filter(dead_leaves((264, 264), rng), (smooth, smooth, 0))
    scene = scene + grain * rng.standard_normal(scene.shape[:2])[..., None].astype(np.float32)
    scene = np.clip(scene, 0.01, None)
    blurred = blur_valid(scene, psf)
    blurred = blurred + rng.normal(0, noise, blurred.shape).astype(np.float32)
    return scene[4:-4, 4:-4], blurred, psf


def test_a_smooth_picture_takes_more_smoothing_and_gains_by_it() -> None:
    """Soft content under noise predicts its hidden pixels best with more smoothing than the
    rule's, and the picture deblurred with it is closer to the truth."""
    truth, blurred, psf = _scene(0.005, 6, 0)
    scale, _ = _weight_scale(blurred, psf, DeblurSettings(), None, 0.0)
    assert scale > 1
    chosen, report = deblur(blurred, psf)
    rule, rule_report = deblur(blurred, psf, weight_scale=1.0)
    assert report.lambda_factor == scale and rule_report.lambda_factor == 1
    assert report.lam == pytest.approx(rule_report.lam * scale, rel=1e-6)
    assert psnr(chosen, truth) > psnr(rule, truth)


def test_fine_grain_keeps_the_rules_weight() -> None:
    _, blurred, psf = _scene(0.002, 0, 0.1)
    assert _weight_scale(blurred, psf, DeblurSettings(), None, 0.0)[0] == SCALES[0] == 1


def test_the_trials_side_by_side_keep_the_callers_threads_and_measure_the_picture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trials run in threads of their own, their compiled loops on one core each: the
    caller's numba thread count is as it was. A picture under `COARSE_START_PIXELS` gets its
    data term measured beside them, the same as measured alone; a larger one's is left to its
    run (measured after its coarse start)."""
    _, blurred, psf = _scene(0.005, 6, 0)
    threads = numba.get_num_threads()
    _, beside = _weight_scale(blurred, psf, DeblurSettings(), None, 0.0)
    assert numba.get_num_threads() == threads
    alone = _data_term(blurred, psf, DeblurSettings(), None, 0.0)
    assert beside is not None
    for plane in ("f", "mask", "texture"):
        assert np.array_equal(getattr(beside, plane), getattr(alone, plane))
    assert (beside.model, beside.rule_lambda) == (alone.model, alone.rule_lambda)
    monkeypatch.setattr(rl_tv, "COARSE_START_PIXELS", blurred.shape[0] * blurred.shape[1])
    assert _weight_scale(blurred, psf, DeblurSettings(), None, 0.0)[1] is None


def test_a_tie_goes_to_the_rules_weight_and_a_clear_win_to_its_scale() -> None:
    # An unblurred photograph's trials, to seven digits: the float's last digits chose before.
    assert best_scale([1.606776932e-4, 1.606776787e-4, 1.606776787e-4]) == SCALES[0] == 1
    assert best_scale([1.0, 1.0 - TIE / 2, 1.0]) == 1
    assert best_scale([1.0, 1.0 - 2 * TIE, 1.0 - 2 * TIE]) == SCALES[1]
    assert best_scale([1.0, 0.9, 0.8]) == SCALES[2]


def test_a_picture_too_small_to_hold_a_pixel_out_keeps_the_rules_weight() -> None:
    # A 2 x 2 picture's crop holds no pixel out (the share drawn is a tenth): nothing to predict.
    assert not held_out_pixels((2, 2)).any()
    assert np.isnan(prediction_error(np.ones((1, 2, 2)), np.ones((1, 2, 2)), np.ones((1, 1)),
                                     held_out_pixels((2, 2))))  # fmt: skip
    assert best_scale([float("nan")] * len(SCALES)) == SCALES[0]
    assert best_scale([float("nan"), 1.0, 0.5]) == SCALES[2]
    picture = np.random.default_rng(3).uniform(0.2, 0.8, (2, 2, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" on the way
        restored, report = deblur(picture, np.ones((1, 1)))
    assert restored.shape == picture.shape and np.isfinite(restored).all()
    assert report.lambda_factor == SCALES[0]


def test_an_expert_lambda_is_used_as_it_is() -> None:
    _, blurred, psf = _scene(0.02, 0, 0)
    _, report = deblur(blurred, psf, DeblurSettings(lam=0.01))
    assert report.lam == 0.01 and report.lambda_factor == 1


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_factor_is_refused_in_one_line(factor: float) -> None:
    _, blurred, psf = _scene(0.02, 0, 0)
    with pytest.raises(InputError, match="a weight's factor must be a number above 0"):
        deblur(blurred, psf, weight_scale=factor)


def test_local_mode_keeps_the_rules_weight() -> None:
    """Local mode's misfit test is calibrated on the rule's lambda (on a scene its kernel
    explains: where it explains none, nothing is deblurred and no lambda reported)."""
    _, blurred, psf = _scene(0.005, 0, 0)
    _, local = deblur(blurred, psf, DeblurSettings(max_iterations=10, local=True))
    _, rule = deblur(blurred, psf, DeblurSettings(max_iterations=10), weight_scale=1.0)
    assert local.iterations > 0 and local.lam == rule.lam


def test_each_tile_of_a_varying_blur_fits_its_own_weight() -> None:
    """`--varying` deblurs each tile as `deblur` does a picture: a smooth tile beside a grainy
    one takes more smoothing, the grainy one the rule's."""
    _, smooth, psf = _scene(0.005, 6, 0)
    _, grainy, same_psf = _scene(0.002, 0, 0.1)
    assert np.array_equal(psf, same_psf)
    picture = np.concatenate([smooth, grainy], axis=1)
    _, reports = deblur_grid(picture, [psf, psf], (1, 2), DeblurSettings())
    smooth_tile, grainy_tile = reports
    assert smooth_tile is not None and grainy_tile is not None
    assert smooth_tile.lambda_factor > 1 and grainy_tile.lambda_factor == 1
