"""Hold-out cross-validation of a kernel: the right blur predicts unseen pixels best."""

import warnings

import numpy as np
import pytest

from worker.deconv.blind import FREE_FORM, predicted
from worker.deconv.holdout import HeldOutWindow
from worker.deconv.luminance import luminance
from worker.deconv.parametric import disc_kernel, gaussian_kernel
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves


def blurred_grey(psf: np.ndarray, shape=(256, 512), noise=0.002, seed=5) -> np.ndarray:
    """A dead-leaves scene blurred ("valid") by `psf`, with noise, as luminance."""
    rng = np.random.default_rng(seed)
    half = psf.shape[0] // 2
    scene = dead_leaves((shape[0] + 2 * half, shape[1] + 2 * half), rng)
    blurred = blur_valid(scene, psf.astype(np.float32))
    return luminance(blurred + rng.normal(0, noise, blurred.shape).astype(np.float32))


def line(length: int, vertical: bool) -> np.ndarray:
    """A straight motion blur of `length` px, horizontal or vertical."""
    psf = np.zeros((length, length))
    if vertical:
        psf[:, length // 2] = 1.0
    else:
        psf[length // 2, :] = 1.0
    return psf / psf.sum()


def test_the_true_blur_predicts_held_out_pixels_better_than_a_wrong_one() -> None:
    grey = blurred_grey(line(15, vertical=False))
    window = HeldOutWindow(grey[:, :256], 15)
    true = window.error(line(15, vertical=False))
    assert true < window.error(line(15, vertical=True))  # the same blur, the wrong way
    assert true < window.error(np.ones((1, 1)))  # no blur
    assert true < window.error(disc_kernel(3.0))  # a round blur of a similar size


@pytest.mark.parametrize("right", [True, False])
def test_an_agreed_kernel_that_predicts_worse_gives_way(right: bool) -> None:
    """A right agreed kernel is kept; a wrong one (a long shake where the blur is a mild
    softness) gives way to the safe correction."""
    truth = gaussian_kernel(1.5) if not right else camera_shake_kernel(15, np.random.default_rng(2))
    grey = blurred_grey(truth)
    free = truth if right else camera_shake_kernel(15, np.random.default_rng(3))
    free = np.pad(free, (15 - free.shape[0]) // 2)
    windows = [(0, 0, 256, 256), (256, 0, 256, 256)]
    kernel, kind, reason, _ = predicted(grey, windows, 15, free)
    if right:
        assert kind == FREE_FORM and kernel is free, reason
    else:
        assert kind != FREE_FORM and "predicts unseen pixels worse" in reason


def test_a_window_too_narrow_to_hold_pixels_out_scores_nothing() -> None:
    """Held-out pixels lie a margin from the border: a 12 px window holds none for a 7 px
    margin, and says so rather than scoring a kernel by the mean of nothing (NaN)."""
    grey = blurred_grey(line(3, vertical=False))
    assert HeldOutWindow(grey[:64, :64], 7).can_score
    narrow = HeldOutWindow(grey[:12, :12], 7)
    assert not narrow.can_score
    with pytest.raises(ValueError, match="no held-out pixel"):
        narrow.error(np.ones((1, 1)))


def test_an_agreed_kernel_that_cannot_be_tested_gives_way() -> None:
    """On a picture a few pixels across, the check window holds no pixel to test an agreed
    kernel on: it is not confirmed, and the safe correction is used. Until engine 0.3.19 the
    test's NaN error let every such kernel through, with warnings on stderr."""
    grey = blurred_grey(gaussian_kernel(1.0), shape=(600, 12))
    windows = [(0, 0, 12, 12), (0, 300, 12, 12)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, kind, reason, _ = predicted(grey, windows, 3, np.full((3, 3), 1 / 9))
    assert kind != FREE_FORM and "cannot be tested on unseen pixels" in reason, reason


def test_errors_taken_side_by_side_are_those_taken_one_after_the_other() -> None:
    """The blind step scores its pairs of kernels on threads (`HeldOutWindow.errors`): the
    window is only read, and each score is the same to the last bit."""
    check = HeldOutWindow(blurred_grey(disc_kernel(4.0)), 15)
    kernels = [disc_kernel(radius) for radius in (2.0, 4.0, 6.0)] + [gaussian_kernel(1.5)]
    assert check.errors(kernels) == [check.error(kernel) for kernel in kernels]
