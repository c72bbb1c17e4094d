"""The blur's size and the windows it is learnt on: `auto`, a size given as an upper bound, a
kernel cut off by its support, two windows apart, learnt at once."""

import numpy as np
import pytest
from scenes import blurred_scene

from worker.deconv.blind import FREE_FORM, NO_BLUR, UNCHECKED, estimate_blur, similarity
from worker.deconv.blur_size import (
    APART,
    AUTO_SIZES,
    FIT_MARGIN,
    TRUNCATED,
    auto_size,
    fit_support,
    fitted_size,
    grown_size,
    learn_pair,
    learning_windows,
    second_kernel,
)
from worker.deconv.luminance import luminance
from worker.deconv.parametric import border_mass, disc_kernel, gaussian_kernel, kernel_extent
from worker.deconv.psf import estimate_psf
from worker.deconv.psf_tools import centre_subpixel
from worker.deconv.settings import AUTO_BLUR
from worker.deconv.synthetic import camera_shake_kernel
from worker.deconv.window import distance


def test_the_two_windows_learnt_at_once_give_the_kernels_learnt_one_after_the_other() -> None:
    _, observed = blurred_scene(centre_subpixel(camera_shake_kernel(11, np.random.default_rng(8))))
    size, windows, _ = learning_windows(observed, luminance(observed), 13, None, np.inf)
    assert len(windows) == 2 and windows[0] != windows[1]
    first, report, second = learn_pair(observed, size, windows, None, np.inf)
    alone, alone_report = estimate_psf(observed, size, windows[0], None, np.inf)
    assert np.array_equal(first, alone) and report.window == alone_report.window
    assert second is not None
    assert np.array_equal(second, second_kernel(observed, size, windows, np.inf))
    assert not np.array_equal(first, second)  # each from its own window


@pytest.mark.parametrize("make", [lambda: disc_kernel(4.0), lambda: gaussian_kernel(2.0)])
def test_auto_finds_the_extent_of_a_blur(make) -> None:
    truth_psf = make()
    _, observed = blurred_scene(truth_psf, noise=0.001)
    _, report = estimate_blur(observed, None)
    assert report.kernel != NO_BLUR, report.reason
    assert abs(report.extent - kernel_extent(truth_psf)) <= 0.3 * kernel_extent(truth_psf)


def test_the_second_window_does_not_overlap_the_first() -> None:
    _, observed = blurred_scene(gaussian_kernel(1.5))
    _, report = estimate_blur(observed, 9)
    (x1, y1, w1, h1), (x2, y2, w2, h2) = report.window, report.check_window
    assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1


def test_the_check_window_is_learnt_away_from_the_first() -> None:
    """Where the detail crowds one part of the picture its best two windows are neighbours,
    which a blur that varies across the frame (a camera's roll) blurs alike: the check is
    learnt on the best window a third of the shorter side away instead."""
    _, observed = blurred_scene(gaussian_kernel(1.5), shape=(1200, 1600))
    faint = np.ones(observed.shape[:2], bool)
    faint[:400, :560] = False  # full contrast in the top left corner only
    observed[faint] = 0.4 + 0.25 * (observed[faint] - 0.4)
    _, windows, _ = learning_windows(observed, luminance(observed), 9, None, np.inf)
    assert len(windows) == 2
    x, y, width, height = windows[0]
    assert x + width / 2 < 560 and y + height / 2 < 400  # the first on the detail
    assert distance(*windows) >= APART * 1200


def test_a_small_picture_is_still_cross_checked() -> None:
    """Two windows of the usual side (8 K, at least 256 px) do not fit in 300 x 420 px: smaller
    ones do, and the kernel is checked on the second, not trusted unchecked."""
    truth_psf = centre_subpixel(camera_shake_kernel(9, np.random.default_rng(5)))
    _, observed = blurred_scene(truth_psf, shape=(300, 420))
    _, report = estimate_blur(observed, 11)
    assert report.window != report.check_window
    assert report.confidence != UNCHECKED, report.reason
    (x1, y1, w1, h1), (x2, y2, w2, h2) = report.window, report.check_window
    assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1


def test_a_blown_out_best_window_gives_way_to_another() -> None:
    """The automatic choice skips a part that is mostly clipped highlights (no error)."""
    truth_psf = gaussian_kernel(1.5)
    _, observed = blurred_scene(truth_psf)
    observed[:, :300] = np.where(observed[:, :300] > 0.3, 1.0, observed[:, :300])  # clipped
    observed[:, :300] *= 1.0 + 0.5 * (np.indices(observed.shape[:2])[1][:, :300, None] % 7 == 0)
    observed = np.clip(observed, 0, 1)
    _, report = estimate_blur(observed, AUTO_BLUR)  # the widest erosion around the highlights
    assert report.window[0] >= 300 - AUTO_BLUR, report.window


def test_a_kernel_cut_off_by_its_support_keeps_mass_on_its_border() -> None:
    assert border_mass(disc_kernel(4.0)) > TRUNCATED  # a 9 px disc on a 9 px support
    inside = np.pad(disc_kernel(4.0), 3)  # the same disc with room to spare
    assert border_mass(inside) == 0.0


@pytest.mark.parametrize(("psf", "smallest", "largest"), [
    (disc_kernel(2.0), AUTO_SIZES[0], AUTO_SIZES[0]),
    (centre_subpixel(camera_shake_kernel(25, np.random.default_rng(4))), 25, AUTO_BLUR),
])  # fmt: skip
def test_auto_grows_the_size_only_while_the_blur_is_cut_off(psf, smallest, largest) -> None:
    """A small disc is learnt at the smallest size, not at 45 px; a 25 px shake at a size that
    holds it."""
    _, observed = blurred_scene(psf.astype(np.float32), noise=0.001)
    grey = luminance(observed)
    size, _, _, (kernel, _, _) = auto_size(observed, grey, None, np.inf, None)
    assert smallest <= size <= largest and kernel.shape == (size, size)


def test_the_fitted_size_holds_the_extent_with_room_to_spare() -> None:
    assert fitted_size(gaussian_kernel(1.0)) == AUTO_SIZES[0]  # 5 px: the smallest size
    assert fitted_size(np.pad(np.ones((1, 12)), ((0, 0), (2, 2)))) == 21  # 12 + 2 x 2 > 15
    assert fitted_size(np.ones((45, 45))) == AUTO_SIZES[-1]  # none holds it: the largest


def test_a_kernel_cut_off_grows_by_the_margin_as_far_as_your_window_holds_it() -> None:
    assert grown_size(15, None) == 15 + 2 * FIT_MARGIN
    assert grown_size(15, (0, 0, 3 * 19, 60)) == 19
    assert grown_size(15, (0, 0, 50, 60)) == 15  # 3 x 17 > 50: no larger
    assert grown_size(15, (0, 0, 40, 60)) == 15  # too small even for 15 (refused before)


def test_a_defocus_given_at_its_visible_extent_is_learnt_whole() -> None:
    """A defocus disc asked for at its extent (taps above 5 % of the peak; its anti-aliased rim
    lies beyond) is cut off there, so it is learnt again with room: whole, and like the truth
    (on the extent alone: 0.92 alike, its rim cut off and said to be). The free-form kernel
    is looked at: since engine 0.3.25 `estimate_blur` uses the disc both windows show here,
    which predicts held-out pixels better (`blind.free_or_disc`)."""
    truth_psf = disc_kernel(4.0)
    _, observed = blurred_scene(truth_psf, noise=0.01)
    grey = luminance(observed)
    size, windows, _ = learning_windows(observed, grey, kernel_extent(truth_psf) | 1, None, np.inf)
    pair = learn_pair(observed, size, windows, None, np.inf)
    _, _, (free, _, _) = fit_support(observed, grey, size, None, windows, pair, np.inf)
    psf = centre_subpixel(free)  # as `estimate_blur` returns it
    assert border_mass(psf) < TRUNCATED
    assert similarity(psf.astype(np.float64), truth_psf) > 0.95


def test_a_size_given_is_an_upper_bound() -> None:
    """A 7 px softness asked for as a 31 px blur is learnt at the size it needs, and alike; asked
    for as a 15 px one (less than twice that size), at 15 px."""
    truth_psf = gaussian_kernel(1.5)
    _, observed = blurred_scene(truth_psf, noise=0.001)
    psf, report = estimate_blur(observed, 31)
    assert report.kernel == FREE_FORM, report.reason
    assert report.blur == psf.shape[0] == fitted_size(truth_psf) < 31
    assert similarity(psf.astype(np.float64), truth_psf) > 0.9
    assert estimate_blur(observed, 15)[1].blur == 15  # not cut off there: not grown


def test_a_kernel_cut_off_by_the_fitted_size_is_not_used() -> None:
    """A first kernel that looks small, on a picture whose blur is large: learnt again at the
    small size, the blur is cut off, so what was learnt at the size given stays."""
    _, observed = blurred_scene(centre_subpixel(camera_shake_kernel(25, np.random.default_rng(4))))
    grey = luminance(observed)
    size, windows, _ = learning_windows(observed, grey, 31, None, np.inf)
    small = np.pad(gaussian_kernel(1.0), (size - 7) // 2)  # a 5 px blur on the 31 px support
    learnt = (small, None, None)
    kept, kept_windows, pair = fit_support(
        observed,
        grey,
        size,
        None,
        windows,
        learnt,
        np.inf,  # type: ignore[arg-type]
    )
    assert kept == size and kept_windows is windows and pair is learnt


def test_a_blur_larger_than_the_size_given_is_said_to_be() -> None:
    _, observed = blurred_scene(centre_subpixel(camera_shake_kernel(25, np.random.default_rng(4))))
    _, report = estimate_blur(observed, 11)
    assert report.blur == 11 + 2 * FIT_MARGIN
    assert f"fills the {report.blur} px it was learnt at and may be larger" in report.reason
