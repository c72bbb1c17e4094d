"""The blur of a photograph, cross-checked on a second part of it, with a confidence.

`psf.estimate_psf` learns a free-form kernel from one window. On real photographs it can be wrong
(texture, noise, a window that is out of focus), and a wrong kernel makes the picture worse: echo
edges, grain, a shift. Camera shake blurs every in-focus part of a picture alike, so a kernel that
is right is found again elsewhere. Here:

1. two windows apart are chosen and a free-form kernel is learnt on each, at the size the blur
   needs (`worker.deconv.blur_size`: the best window that a kernel can be learnt from and the
   best one far enough from it; the size found with `--blur auto`, or fitted to the blur within
   the size given, which is an upper bound). Two windows side by side are no independent check:
   a photo's best two are often neighbours on its most detailed part, and a hand-held shot's
   rotation blurs that corner alike and the centre otherwise (on the rotation benchmark, two
   neighbouring windows agreed on a corner's kernel, which made five tiles of nine worse);
2. their agreement, the peak of their normalised cross-correlation (1: the same kernel up to a
   shift; the kernel similarity of Hu and Yang, "Good regions to deblur", ECCV 2012,
   doi:10.1007/978-3-642-33715-4_5), is the confidence;
3. at `AGREEMENT` or above the first window's kernel is used, unless it means no blur
   (`sharp_learnt`: its rms radius under `SHARP_SPREAD`, or `SHARP_FLOOR` of every frequency let
   through, a sharp copy of the picture on a soft pedestal, which is how the estimate draws a
   sharp photograph's own soft detail): the picture is sharp already and left as it is. Below,
   a safe correction: the Gaussian softness that best explains the first window by generalised
   cross-validation (`worker.deconv.gcv`), no stronger than `MILD_SIGMA`, and only if it also
   explains the second window better than no blur (`mild_correction`); otherwise, or when that
   softness is under sigma 1 px (its rms radius under `MIN_SOFTNESS`: the softness of a sharp
   or a shaken photograph's own edges; `applied`), the picture is left as it is.
   A Gaussian is one number too, found on each window alone (`best_gaussian`): where the
   second window shows the same softness (`agreed_softness`, within a step of `SIGMAS`), the
   softness is confirmed and removed whole, not only up to `MILD_SIGMA`; and an agreed
   free-form kernel that means no blur gives way to it (`sharp_or_soft`): learning edges, the
   free-form estimate sees a softness of 1.2 px under ISO 3200-like noise as no blur
   (on the blind benchmark that picture went from +0.00 to +4.38 dB, the true kernel +4.50),
   where two sharp photographs' windows show no softness, or not the same;
   but a free-form kernel is hundreds of taps, learnt from edges: a defocus seen through noise
   or on soft content defeats it (on the blind benchmark two windows' kernels of a defocus of
   radius 8 px agreed at 0.25-0.34). A defocus disc is one number, found on each window alone
   (`best_disc`: to a quarter pixel, 7.75 px on both windows there). So where the free-form
   kernel is not used (the two windows' kernels disagree, or agree but predict held-out pixels
   clearly worse than the safe correction, 4) and the two windows' discs agree (`agreed_disc`),
   the disc is offered beside the safe correction and, as an agreed kernel, used unless the
   safe correction predicts held-out pixels of the second window `CLEARLY` better
   (`safe_or_disc`);
4. two windows can agree on the same wrong kernel, so an agreed kernel must also predict pixels
   of the second window held out of its restoration better than that safe correction does
   (`worker.deconv.holdout`); if the safe correction predicts them clearly better (its error
   `CLEARLY` lower), it is used instead (`predicted`). Restoring from half the pixels favours
   mild corrections a little (measured on the blind benchmark: good kernels up to 6 % worse
   than the mild Gaussian, the same from one random split to the next to 1 %; a wrong one that
   loses 3.8 dB 24-36 % worse), so only a clear difference counts. An agreed kernel that stays
   still gives way to a disc both windows show that predicts those pixels better
   (`free_or_disc`: the free-form estimate draws a defocus roughly);
5. a blur of the whole frame leaves no part of it sharper than the kernel: where a tenth of the
   picture is (`worker.deconv.whole_frame`: depth of field, a subject that moved), the kernel,
   learnt on the windows' soft content, is not the frame's blur, and the picture is left as it
   is (`SHARPER_PARTS`; local mode, which deblurs only what the kernel explains, does not ask).

An agreed kernel is still not exact, and where the noise is low its error, not the noise,
dominates what the deblur must not fit: the two windows' kernels' disagreement measures that
error as a share of the noise variance (`worker.deconv.kernel_error`), which the deblur counts
as noise (`noise.regularisation_weight`: lambda raised by `kernel_smoothing`).

A kernel that could not be checked (a picture with one usable part only) is not trusted either:
the safe correction of 3 is used. Every kernel returned is centred on its centroid to the
sub-pixel (`centre_subpixel`), so the deblurred picture does not move. A picture without a usable
window (flat sky, pure noise, blown-out highlights) teaches nothing: it is left as it is, with
confidence 0.
"""

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft

from worker.deconv.blur_size import TRUNCATED, auto_size, fit_support, learn_pair, learning_windows
from worker.deconv.boundaries import detect_clip_level
from worker.deconv.gcv import GcvWindow
from worker.deconv.holdout import HeldOutWindow
from worker.deconv.kernel_error import kernel_error_ratio
from worker.deconv.luminance import luminance
from worker.deconv.noise import kernel_smoothing
from worker.deconv.parametric import (
    border_mass,
    disc_kernel,
    frequency_floor,
    gaussian_kernel,
    kernel_extent,
    kernel_spread,
)
from worker.deconv.psf_tools import centre_subpixel
from worker.deconv.settings import AUTO_BLUR
from worker.deconv.whole_frame import sharper_parts
from worker.deconv.window import (
    ORIENTATION_BINS,
    Window,
    check_room,
    choose_windows,
    orientation,
    pair_side,
    patch_of,
)
from worker.parallel import in_threads
from worker.stages import Progress

AGREEMENT = 0.6  # the two windows' kernels must be at least this alike to be trusted
MILD_SIGMA = 1.5  # the strongest Gaussian the fallback removes, px
SHARP_SPREAD = 1.0  # an agreed kernel narrower than this (rms radius, px) means no blur...
SHARP_FLOOR = 0.1  # ...and so does one that lets this share of every frequency through
MIN_SOFTNESS = 1.4  # the safe correction removes no Gaussian narrower (rms radius, px; sigma 1)
LEFT = "the picture is left as it is"
UNCHECKED = 0.5  # the confidence of a kernel not cross-checked on a second window (run falls back)
CLEARLY = 0.1  # an agreed kernel gives way when the safe correction predicts this much better
MIN_GAIN = 0.02  # the fallback must explain the second window this much better than no blur
SAID_SMOOTHING = 1.05  # the reason mentions a kernel's uncertainty that raises lambda this much
SIGMAS = np.geomspace(0.5, 8.0, 21)  # the Gaussian softness searched, px
SOFTNESS_AGREEMENT = 1.001 * SIGMAS[1] / SIGMAS[0]  # two windows' softness agree within a step
RADII = np.arange(1.0, AUTO_BLUR / 2, 0.25)  # the defocus discs searched, px (1: no defocus)
ONE_WAY = 0.6  # a window whose edges' coherence is this or more runs one way (l1 = 4 l2)...
SAME_WAY = 180 / ORIENTATION_BINS  # ...and two whose directions differ by less (deg), the same
RADIUS_AGREEMENT = 0.1  # two windows' discs agree within this share of the larger (or a step)
SHORTLIST = 3  # the discs' GCV minima judged by held-out pixels (`best_disc`)
NO_BLUR, FREE_FORM, GAUSSIAN, DISC = "none", "free-form", "gaussian", "disc"
SHARPER_PARTS = (
    "depth of field or a subject that moved, not a blur of the whole frame (local mode deblurs "
    "only the blurred part); the picture is left as it is"
)


@dataclass
class BlurReport:
    """What `estimate_blur` found and how sure it is.

    kernel: what is used: `FREE_FORM` (the estimate), `DISC` (a defocus both parts show),
        `GAUSSIAN` (the safe fallback) or `NO_BLUR`.
    confidence: 0..1, how alike the kernels learnt on two parts of the picture are (`UNCHECKED`
        where there is no second part to learn from); `reason` says what was done, in words.
    blur: the kernel's side in pixels; extent: the extent of its significant taps.
    window, check_window: where it was learnt, and where it was checked (x, y, width, height).
    kernel_error: a kept kernel's (free-form or disc) error variance over the noise's
        (`uncertainty`), 0 for the others; smoothing: how many times it raises the deblur's
        lambda (`kernel_smoothing`).
    iterations: the rounds of the first window's estimate (`PsfReport`); seconds: the whole
        estimate's time, every window and size included.
    sharp: the two windows agreed that the picture is sharp: on a kernel that means no blur
        (`sharp_learnt`), or, their edges running one way, neither shows a softness to remove
        (`safe_or_disc`); not where the agreed kernel was refused for predicting unseen pixels
        badly or for parts of the frame sharper than it, which a blur varying across the frame
        also does.
    """

    kernel: str
    confidence: float
    reason: str
    blur: int
    extent: int
    window: Window
    check_window: Window
    iterations: int
    seconds: float
    kernel_error: float = 0.0
    smoothing: float = 1.0
    sharp: bool = False

    def as_dict(self) -> dict:
        """The report as a dict of plain values, for JSON.

        Returns
        -------
        dict
            The fields by name, `window` and `check_window` as lists [x, y, width, height].
        """
        report = asdict(self)
        report["window"] = list(self.window)
        report["check_window"] = list(self.check_window)
        return report


def fits(kernel: np.ndarray, largest: int) -> bool:
    """Whether a parametric `kernel` is a blur of `largest` px or less.

    It is measured as a size given measures a blur: by its extent (`kernel_extent`, its taps above
    5 % of the peak), not by the array it is sampled on (a Gaussian's reaches 3 sigma, where its
    taps are 1 % of the peak: by that, a blur of 5 px would hold no Gaussian over sigma 0.67 px,
    where its extent holds sigma 1.2).

    Parameters
    ----------
    kernel : ndarray, shape (k, k)
        The kernel (`gaussian_kernel`, `disc_kernel`).
    largest : int
        The largest blur, in pixels.

    Returns
    -------
    bool
        ``kernel_extent(kernel) <= largest``.
    """
    return kernel_extent(kernel) <= largest


def reach(size: int, *kernels: np.ndarray) -> int:
    """The margin a window needs to score `kernels` and any blur of `size` px: the widest array.

    Parameters
    ----------
    size : int
        The largest blur, in pixels.
    *kernels : ndarray
        Square kernels to be scored.

    Returns
    -------
    int
        The largest of `size` and the kernels' sides, in pixels.
    """
    return max(size, *(kernel.shape[0] for kernel in kernels))


def best_gaussian(patch: np.ndarray, largest: int) -> tuple[np.ndarray, float]:
    """The Gaussian with the lowest GCV on the grey window `patch`, and its sigma.

    The candidates are those of `SIGMAS` no wider than `largest` px (`fits`); the narrowest
    searched when none fits.

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The grey window.
    largest : int
        The largest blur, in pixels.

    Returns
    -------
    gaussian : ndarray, shape (k, k)
        The kernel (`gaussian_kernel`), summing to one.
    sigma : float
        Its standard deviation, in pixels.
    """
    candidates = [(sigma, gaussian_kernel(sigma)) for sigma in SIGMAS]
    candidates = [c for c in candidates if fits(c[1], largest)] or candidates[:1]
    fit = GcvWindow(patch, reach(largest, candidates[-1][1]))
    sigma, gaussian = min(candidates, key=lambda candidate: fit.score(candidate[1]))
    return gaussian, float(sigma)


def best_disc(patch: np.ndarray, largest: int) -> float:
    """The radius of the defocus disc that best explains the grey window `patch`.

    The discs' GCV (`worker.deconv.gcv`) has a minimum at the true radius, but where noise hides
    the disc's spectral zeros a smaller radius can score lower still (a disc of 5 px under noise
    0.01: 2.75 px). So the `SHORTLIST` lowest local minima of the GCV curve are judged by the
    prediction of held-out pixels (`worker.deconv.holdout`), whose error is lowest at the true
    radius there; in a window too narrow to hold pixels out, the lowest GCV minimum is taken.

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The grey window.
    largest : int
        The largest blur, in pixels: only the `RADII` whose disc `fits` it are searched.

    Returns
    -------
    float
        The radius, in pixels: one of `RADII`; `RADII[0]` when no disc fits.
    """
    radii = [radius for radius in RADII if fits(disc_kernel(radius), largest)]
    if not radii:
        return float(RADII[0])
    discs = [disc_kernel(radius) for radius in radii]
    fit = GcvWindow(patch, reach(largest, discs[-1]))
    scores = [fit.score(disc) for disc in discs]
    padded = [math.inf, *scores, math.inf]
    minima = [i for i in range(len(radii)) if padded[i + 1] <= min(padded[i], padded[i + 2])]
    shortlist = sorted(minima, key=lambda i: scores[i])[:SHORTLIST]
    check = HeldOutWindow(patch, reach(largest, discs[-1]))
    if not check.can_score:  # a window too narrow to hold pixels out: the lowest GCV minimum
        return float(radii[shortlist[0]])
    errors = [check.error(discs[i]) for i in shortlist]
    return float(radii[shortlist[int(np.argmin(errors))]])


def agreed_disc(grey: np.ndarray, windows: list[Window], size: int) -> tuple[float, float] | None:
    """The radii of the defocus disc that both `windows` show (`best_disc` on each), or None.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window and the second (x, y, width, height); any more are not looked at.
    size : int
        The largest blur, in pixels.

    Returns
    -------
    tuple of float or None
        (the first window's radius, the second's) in pixels; None unless they agree
        (`agreed_radii`).
    """
    first, second = in_threads(lambda window: best_disc(patch_of(grey, window), size), windows[:2])
    return (first, second) if agreed_radii(first, second) else None


def agreed_radii(first: float, second: float) -> bool:
    """Whether two windows' defocus discs agree, and are a defocus.

    They agree unless they differ by more than `RADIUS_AGREEMENT` of the larger radius and more
    than a step of `RADII`: a measure that is the same whichever window comes first (until engine
    0.3.34 it was a share of the first window's radius, so that 5.25 and 4.75 px agreed, 4.75 and
    5.25 did not). A first radius of `RADII[0]`, the smallest searched, is no defocus to speak of.

    Parameters
    ----------
    first, second : float
        The windows' radii (`best_disc`), the first window's first, in pixels.

    Returns
    -------
    bool
        True when both hold.
    """
    step = float(RADII[1] - RADII[0])
    if first <= RADII[0]:
        return False
    return abs(first - second) <= max(step, RADIUS_AGREEMENT * max(first, second))


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """The peak of the normalised cross-correlation of two kernels.

    It is 1 when they are the same up to a shift, near 0 when they share nothing. The correlation
    is taken by FFT on a grid as large as the full correlation, where the circular one holds every
    lag once (scipy.signal, which would do the same, takes a third of a second to import: a tenth
    of a small picture's whole run).

    Parameters
    ----------
    first, second : ndarray
        The two kernels, 2-D and non-negative; their sizes may differ.

    Returns
    -------
    float
        The largest correlation over all shifts, divided by the product of their L2 norms.
    """
    shape = tuple(a + b - 1 for a, b in zip(first.shape, second.shape, strict=True))
    correlation = fft.irfft2(fft.rfft2(first, shape) * np.conj(fft.rfft2(second, shape)), shape)
    return float(correlation.max() / np.sqrt((first**2).sum() * (second**2).sum()))


def confidence_of(agreement: float) -> float:
    """The confidence a report gives for two windows' `agreement`: clipped to 0..1, to three
    decimals. A reason that prints the agreement prints this, so that both read alike.

    Parameters
    ----------
    agreement : float
        The two kernels' `similarity` (or `UNCHECKED`).

    Returns
    -------
    float
        The confidence.
    """
    return round(float(np.clip(agreement, 0, 1)), 3)


def agreed_softness(sigmas: list[float]) -> bool:
    """Whether two windows show the same Gaussian softness, and one to remove.

    The same: within a step of `SIGMAS`. One to remove: the first window's rms radius (sigma
    sqrt 2) is `MIN_SOFTNESS` or more (`applied`).

    Parameters
    ----------
    sigmas : list of float
        The sigmas of the windows' Gaussians (`best_gaussian`, via `softness`), the first window's
        first, in pixels.

    Returns
    -------
    bool
        True when both hold; False with fewer than two sigmas.
    """
    if len(sigmas) < 2 or sigmas[0] * math.sqrt(2) < MIN_SOFTNESS:
        return False
    return max(sigmas) <= SOFTNESS_AGREEMENT * min(sigmas)


def softness(grey: np.ndarray, windows: list[Window], size: int) -> list[float]:
    """The sigma of the Gaussian softness each of the (up to two) `windows` shows (`best_gaussian`).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The windows (x, y, width, height); only the first two are looked at.
    size : int
        The largest blur, in pixels.

    Returns
    -------
    list of float
        One sigma per window, in pixels, the first window's first.
    """
    return in_threads(lambda window: best_gaussian(patch_of(grey, window), size)[1], windows[:2])


def mild_correction(
    grey: np.ndarray,
    windows: list[Window],
    size: int,
    doubt: str,
    sigmas: list[float] | None = None,
) -> tuple[np.ndarray, str, str]:
    """The milder correction a learnt kernel is measured against (`doubt` says why it is asked).

    The Gaussian softness that best explains the first window (GCV), if it explains the last window
    (the second, when there is one) better than no blur (its GCV at least `MIN_GAIN` lower); else
    nothing. It is no wider than `MILD_SIGMA` unless the second window shows the same softness
    (`agreed_softness`). What is applied is `fallback`'s, which takes a softness narrower than a
    pixel for none.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window, and the second if there is one.
    size : int
        The largest blur, in pixels.
    doubt : str
        Why the free-form kernel is not used, in words; the reason starts with it.
    sigmas : list of float or None, optional
        The windows' `softness`, if known; None: measured here.

    Returns
    -------
    kernel : ndarray
        The Gaussian (`gaussian_kernel`), or a 1 x 1 delta (float64) for no blur.
    kind : str
        `GAUSSIAN` or `NO_BLUR`.
    reason : str
        What was done and why, in words.
    """
    sigmas = softness(grey, windows, size) if sigmas is None else sigmas
    agreed = agreed_softness(sigmas)
    sigma = sigmas[0] if agreed else min(sigmas[0], MILD_SIGMA)
    gaussian = gaussian_kernel(sigma)
    check = GcvWindow(patch_of(grey, windows[-1]), reach(size, gaussian))
    if check.score(gaussian) > (1 - MIN_GAIN) * check.score(np.ones((1, 1))):
        return np.ones((1, 1)), NO_BLUR, f"{doubt}: {LEFT}"
    if agreed:
        return gaussian, GAUSSIAN, f"{doubt}, but both show a softness of sigma {sigma:.1f} px"
    return gaussian, GAUSSIAN, f"{doubt}: only a mild softness (sigma {sigma:.1f} px) is removed"


def applied(correction: tuple[np.ndarray, str, str], doubt: str) -> tuple[np.ndarray, str, str]:
    """`mild_correction`'s result as it is applied: a softness under `MIN_SOFTNESS` is none.

    A Gaussian whose rms radius is under `MIN_SOFTNESS` (sigma 1 px) is no blur. A sharp
    photograph's own edges show a Gaussian of sigma 0.5-0.66 px: removing it sharpens what the
    lens drew (on the blind benchmark's held-out photographs, unblurred, it cost four of fourteen
    5-15 dB at ISO 100-800, with dark outlines along every edge; on the blurred ones it gained
    nothing). A shaken photograph whose kernel failed its checks shows one of 0.76-0.87 px on both
    windows, the softness of its edges across the shake, not its blur: removed, it made three of
    them worse than the input (by 0.15 to 0.55 dB, engine 0.3.29; docs/MEASUREMENTS.md), while
    the Gaussian blurs of the benchmark (sigma 1-2.5 px) show 1 px or more. The yardstick of the
    held-out checks stays the softness itself, so the decision between a learnt kernel and the
    milder correction does not change.

    Parameters
    ----------
    correction : tuple of (ndarray, str, str)
        `mild_correction`'s kernel, kind and reason.
    doubt : str
        Why the free-form kernel is not used, in words; the reason starts with it.

    Returns
    -------
    kernel : ndarray
        The correction's kernel, or a 1 x 1 delta (float64) for no blur.
    kind : str
        `GAUSSIAN` or `NO_BLUR`.
    reason : str
        What was done and why, in words.
    """
    kernel, kind, _ = correction
    if kind == GAUSSIAN and kernel_spread(kernel) < MIN_SOFTNESS:
        return np.ones((1, 1)), NO_BLUR, f"{doubt}: the softness it shows is under a pixel: {LEFT}"
    return correction


def fallback(
    grey: np.ndarray,
    windows: list[Window],
    size: int,
    doubt: str,
    sigmas: list[float] | None = None,
) -> tuple[np.ndarray, str, str]:
    """The safe correction when the free-form kernel is not confirmed (`doubt` says why).

    `mild_correction`, `applied`: no blur for a softness narrower than a pixel.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window, and the second if there is one.
    size : int
        The largest blur, in pixels.
    doubt : str
        Why the free-form kernel is not used, in words; the reason starts with it.
    sigmas : list of float or None, optional
        The windows' `softness`, if known; None: measured here.

    Returns
    -------
    tuple of (ndarray, str, str)
        The kernel (a Gaussian, or a 1 x 1 delta for no blur), its kind (`GAUSSIAN` or
        `NO_BLUR`) and the reason, as `applied` gives them.
    """
    return applied(mild_correction(grey, windows, size, doubt, sigmas), doubt)


def sharp_learnt(kernel: np.ndarray) -> str | None:
    """Why an agreed free-form kernel means no blur, in words, or None when it is a blur.

    It is no blur when it is narrower than `SHARP_SPREAD` (rms radius), or when it lets
    `SHARP_FLOOR` or more of every frequency through (`frequency_floor`): a sharp copy of the
    picture on a soft pedestal, which is how the estimate draws a sharp photograph's own soft
    detail. Blurs wipe some detail out: a Gaussian of sigma 1 px (the least softness removed,
    `MIN_SOFTNESS`) keeps under a hundredth of the finest, a defocus disc and a motion have
    zeros, the eight camera shakes Levin et al. recorded (CVPR 2009, the Levin benchmark) keep
    at most 0.3 % of some frequency, and the blind benchmark's 26 simulated ones at most 6 % (a
    shake that rests a while: Garden's, a fifth of its light on one tap). On six of its
    unblurred photographs, the kernels learnt (seven runs, at 15 px or `auto`) let 12-22 %
    through and made them 4.7-17.0 dB worse (docs/MEASUREMENTS.md).

    Parameters
    ----------
    kernel : ndarray
        The free-form kernel, non-negative with a positive sum.

    Returns
    -------
    str or None
        The reason's start, or None.
    """
    if kernel_spread(kernel) < SHARP_SPREAD:
        return "the blur learnt is narrower than a pixel"
    passed = frequency_floor(kernel)
    if passed >= SHARP_FLOOR:
        return (
            f"the blur learnt lets {passed:.0%} of every detail through, as a sharp picture "
            "with a soft halo would"
        )
    return None


def sharp_or_soft(
    grey: np.ndarray, windows: list[Window], size: int, doubt: str
) -> tuple[np.ndarray, str, str]:
    """For an agreed kernel that means no blur (`sharp_learnt`): none, or a softness both show.

    No blur, unless both windows show the same Gaussian softness (`agreed_softness`; a softness
    the free-form estimate, learning edges, sees as no blur) and it explains the second window
    better than no blur (`fallback`).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window and the second.
    size : int
        The largest blur, in pixels.
    doubt : str
        Why the kernel means no blur, in words (`sharp_learnt`); the reason starts with it.

    Returns
    -------
    kernel : ndarray
        A 1 x 1 delta (float64), or the Gaussian.
    kind : str
        `NO_BLUR` or `GAUSSIAN`.
    reason : str
        What was done and why, in words.
    """
    sharp = np.ones((1, 1)), NO_BLUR, f"{doubt}: the picture is already sharp and is left as it is"
    sigmas = softness(grey, windows, size)
    return fallback(grey, windows, size, doubt, sigmas) if agreed_softness(sigmas) else sharp


def safe_or_disc(
    grey: np.ndarray,
    windows: list[Window],
    size: int,
    doubt: str,
    sigmas: list[float] | None = None,
) -> tuple[np.ndarray, str, str, np.ndarray | None]:
    """The safe correction (`fallback`), or the defocus disc both windows agree on.

    The disc (`agreed_disc`, the first window's) is checked as an agreed free-form kernel is
    (`predicted`): it is used unless the milder correction (`mild_correction`) predicts held-out
    pixels of the second window `CLEARLY` better (`worker.deconv.holdout`), and not where the
    second window is too narrow to hold pixels out. Restoring from half the pixels favours mild
    corrections a little: in four runs on three held-out defocused photographs of the blind
    benchmark, the disc found (at the true radius or a quarter pixel off) predicted them only
    0.1-3.8 % better than the milder correction.
    It is offered wherever the free-form kernel is not used: where the two windows' kernels
    disagree, and where they agree but predict held-out pixels worse than the milder correction
    (`predicted`: two windows of a defocus of radius 6 px agreed at 0.69 on a wrong 12 px kernel,
    where both showed a disc of 6 px).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window and the second.
    size : int
        The largest blur, in pixels.
    doubt : str
        Why the free-form kernel is not used, in words; the reason starts with it.
    sigmas : list of float or None, optional
        The windows' `softness`, if known; None: measured here.

    Returns
    -------
    kernel : ndarray
        The disc (`disc_kernel`), or `fallback`'s kernel.
    kind : str
        `DISC`, or `fallback`'s kind.
    reason : str
        What was done and why, in words.
    twin : ndarray or None
        The second window's disc, for the disc's error (`uncertainty`); None with the fallback.
    """
    mild = mild_correction(grey, windows, size, doubt, sigmas)
    safe = applied(mild, doubt)
    radii = agreed_disc(grey, windows, size)
    if radii is None:
        return (*safe, None)
    disc, twin = (disc_kernel(radius) for radius in radii)
    check = HeldOutWindow(patch_of(grey, windows[-1]), reach(size, disc, mild[0]))
    if not check.can_score:
        return (*safe, None)
    mild_error, disc_error = check.errors([mild[0], disc])
    if (1 + CLEARLY) * mild_error < disc_error:
        return (*safe, None)
    reason = f"{doubt}, but both show the same defocus: a disc of radius {radii[0]:g} px"
    return disc, DISC, reason, twin


def same_way(grey: np.ndarray, windows: list[Window]) -> bool:
    """Whether both windows' edges run one way, the same (`orientation`): then they cannot check
    a kernel.

    A blur along the edges leaves them as they are, so two windows of grass blades, leaf veins
    or a streaked road see no blur along them, and both learn the content's own softness across
    them as the same streak: their agreement is no evidence. On the blind benchmark's sharp
    photographs two such windows agreed (0.75 and 0.88) on kernels that made the pictures 13 and
    21 dB worse (a 10 px streak along GreenMeadow's out-of-focus blades), and on Dune's grass
    under a 17 px shake on a wrong kernel (-0.72 dB) (docs/MEASUREMENTS.md).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window and the second.

    Returns
    -------
    bool
        True when both windows' coherence is at least `ONE_WAY` (the dominant direction holds
        four times the gradients' energy of the other) and their directions are within
        `SAME_WAY` degrees (one of eight orientation bins).
    """
    (first, a), (second, b) = (orientation(patch_of(grey, window)) for window in windows)
    apart = abs(a - b) % 180
    return min(first, second) >= ONE_WAY and min(apart, 180 - apart) < SAME_WAY


def same_size(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two odd-sized kernels zero-padded to the larger one's size.

    Parameters
    ----------
    first, second : ndarray
        Square kernels, odd-sized.

    Returns
    -------
    tuple of ndarray
        (first, second), each padded with zeros equally on every side to the larger side.
    """
    side = max(first.shape[0], second.shape[0])
    first, second = (np.pad(k, (side - k.shape[0]) // 2) for k in (first, second))
    return first, second


def no_blur(why: str, windows: list[Window], started: float) -> tuple[np.ndarray, BlurReport]:
    """The delta kernel and its report, when there is nothing to learn a blur from.

    Parameters
    ----------
    why : str
        Why there is nothing to learn from, in words; the reason adds that the picture is left as
        it is.
    windows : list of Window
        The windows to report, at least one: the first as `window`, the last as `check_window`.
    started : float
        When the estimate began (`time.perf_counter`), for its time.

    Returns
    -------
    kernel : ndarray, shape (1, 1)
        float32, 1: no blur.
    report : BlurReport
        `NO_BLUR`, with confidence 0.
    """
    return np.ones((1, 1), np.float32), BlurReport(
        kernel=NO_BLUR,
        confidence=0.0,
        reason=f"{why}: {LEFT}",
        blur=1,
        extent=1,
        window=windows[0],
        check_window=windows[-1],
        iterations=0,
        seconds=time.perf_counter() - started,
    )


def estimate_blur(
    image: np.ndarray,
    size: int | None,
    window: Window | None = None,
    progress: Progress | None = None,
    clip_level: float | None = None,
    whole_frame: bool = True,
) -> tuple[np.ndarray, BlurReport]:
    """The blur of a linear picture, checked on a second window, and a `BlurReport`.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, C in {1, 3}.
    size : int or None
        The largest blur in pixels (odd), None to find it (`auto_size`).
    window : Window or None, optional
        (x, y, width, height) in pixels where to learn it, None to choose.
    progress : Progress or None, optional
        Called with (share done, `Stage.ESTIMATING`): as each size is tried (`auto_size`), or
        after each pyramid level of the first window's estimate (a size given).
    clip_level : float or None, optional
        Where the sensor clipped (1.0 for integer files); None: detected once on the whole picture
        (`detect_clip_level`), nothing clipped where there is no plateau.
    whole_frame : bool, optional
        The blur is to be removed from the whole frame, so a kernel that parts of the picture are
        sharper than is not used (`worker.deconv.whole_frame`; local mode, which deblurs only what
        the kernel explains, does not ask).

    Returns
    -------
    kernel : ndarray
        float32, odd-sized, summing to one, centred to the sub-pixel; a 1 x 1 delta when no blur
        was found.
    report : BlurReport
        What was used, how sure it is and why.

    Raises
    ------
    InputError
        For a picture too small to learn a blur from (`check_room`); for a `window` outside the
        picture, under `window.KERNELS_ACROSS` kernels wide, without edges
        (`window.learning_patch`) or mostly clipped; and as `psf.estimate_psf` raises it when a
        kernel is learnt: a bad size, NaN or infinite values. A picture without a usable
        automatic window is no error: it is left as it is.
    """
    started = time.perf_counter()
    grey = luminance(np.asarray(image))
    check_room(grey.shape)
    if clip_level is None:  # detected once for every window; no plateau: nothing clipped
        clip_level = detect_clip_level(image) or math.inf
    pair = None  # the two windows' kernels, when the size search has learnt them already
    if size is None:
        size, windows, why_not, pair = auto_size(image, grey, window, clip_level, progress)
    else:
        size, windows, why_not = learning_windows(image, grey, size, window, clip_level)
    if not windows:  # nothing usable: the report shows the best automatic window
        return no_blur(why_not, choose_windows(grey, size, 1, pair_side(grey.shape, size)), started)
    if pair is None:  # a size given: an upper bound
        pair = learn_pair(image, size, windows, progress, clip_level)
        size, windows, pair = fit_support(image, grey, size, window, windows, pair, clip_level)
    free, report, second = pair
    twin = None  # the disc as the second window sees it, where a disc is used
    sharp = False  # the windows agree that the picture is sharp (`BlurReport.sharp`)
    if second is None:
        agreement = UNCHECKED
        doubt = "the blur could not be checked on a second part of the picture"
        kernel, chosen, reason = fallback(grey, windows, size, doubt)  # (no second disc either)
    else:
        agreement = similarity(free, second)
        shown = confidence_of(agreement)
        meaning_none = sharp_learnt(free) if agreement >= AGREEMENT else None
        if meaning_none is not None:
            kernel, chosen, reason = sharp_or_soft(grey, windows, size, meaning_none)
            sharp = chosen == NO_BLUR
        elif agreement >= AGREEMENT and same_way(grey, windows):
            doubt = (
                f"the blur learnt on two parts of the picture agrees (agreement {shown:.2f}), "
                "but both parts' edges run the same way, which hides a blur along them"
            )
            kernel, chosen, reason, twin = safe_or_disc(grey, windows, size, doubt)
            sharp = chosen == NO_BLUR
        elif agreement >= AGREEMENT:
            kernel, chosen, reason, twin = predicted(grey, windows, size, free)
        else:
            doubt = f"the blur learnt on two parts of the picture disagrees (agreement {shown:.2f})"
            kernel, chosen, reason, twin = safe_or_disc(grey, windows, size, doubt)
    # (said of a kernel used: of a picture left as it is, it would contradict the reason)
    if border_mass(free) >= TRUNCATED and chosen != NO_BLUR:
        reason = f"{reason}; the blur fills the {size} px it was learnt at and may be larger"
    # The kernel the deblur would use, centred to the sub-pixel: the one to judge.
    centred = centre_subpixel(kernel) if kernel.shape[0] > 1 else kernel.astype(np.float32)
    if whole_frame and chosen != NO_BLUR and sharper_parts(image, centred):
        kernel = centred = np.ones((1, 1), np.float32)
        chosen, reason = NO_BLUR, f"{reason}; but parts of the picture are sharper: {SHARPER_PARTS}"
    error = 0.0  # from the kernel used and its twin, as the second window sees it
    used, twin = (free, second) if chosen == FREE_FORM else (kernel, twin)
    if chosen in (FREE_FORM, DISC) and twin is not None:
        error, reason = uncertainty(patch_of(image, windows[0]), *same_size(used, twin), reason)
    kernel = centred
    return kernel, BlurReport(
        kernel=chosen,
        confidence=confidence_of(agreement),
        reason=reason,
        blur=int(kernel.shape[0]),
        extent=kernel_extent(kernel),
        window=report.window,
        check_window=windows[-1],
        iterations=report.iterations,
        seconds=time.perf_counter() - started,
        kernel_error=round(error, 3),
        smoothing=round(kernel_smoothing(error), 2),
        sharp=sharp,
    )


def uncertainty(
    patch: np.ndarray, used: np.ndarray, second: np.ndarray, reason: str
) -> tuple[float, str]:
    """The error of the kernel used, over the noise variance, and the reason saying what it does.

    The error is `kernel_error_ratio`'s, from the kernel's difference with `second`, learnt on
    another part of the picture.

    Parameters
    ----------
    patch : ndarray, shape (h, w, C)
        The linear colour window the kernel was learnt on (the first).
    used : ndarray, shape (k, k)
        The kernel used: the agreed free-form kernel, or the first window's disc.
    second : ndarray, shape (k, k)
        Its twin, learnt on the second window, zero-padded to the same size (`same_size`).
    reason : str
        What was done, in words.

    Returns
    -------
    error : float
        ``sigma_k^2 / sigma_n^2``, 0 or more (`kernel_error_ratio`).
    reason : str
        `reason`; where the error raises the deblur's smoothing `SAID_SMOOTHING` times or more, with
        a clause saying by how much.
    """
    error = kernel_error_ratio(patch, used, second)
    factor = kernel_smoothing(error)
    if factor < SAID_SMOOTHING:
        return error, reason
    return error, f"{reason}; its uncertainty, counted as noise, raises the smoothing x{factor:.1f}"


def pixels(count: int) -> str:
    """A length with its article, as it is read aloud: 'a 5 px', 'an 8 px', 'an 11 px'.

    Parameters
    ----------
    count : int
        The length, in pixels.

    Returns
    -------
    str
        The article, the number and "px".
    """
    article = "an" if str(count).startswith("8") or count in (11, 18) else "a"
    return f"{article} {count} px"


def predicted(
    grey: np.ndarray, windows: list[Window], size: int, free: np.ndarray
) -> tuple[np.ndarray, str, str, np.ndarray | None]:
    """The agreed free-form kernel, unless a safe correction predicts unseen pixels clearly better.

    The milder correction (`mild_correction`) is the yardstick: where it predicts held-out pixels
    of the check window clearly better (`worker.deconv.holdout`; its error `CLEARLY` lower), the
    safe correction or a defocus disc both windows show is used instead (`safe_or_disc`); where the
    check window is too narrow to hold pixels out, the safe correction (`fallback`: the milder
    one, `applied`).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window and the second (the check window).
    size : int
        The largest blur, in pixels.
    free : ndarray, shape (size, size)
        The agreed free-form kernel, learnt on the first window.

    Returns
    -------
    kernel : ndarray
        `free`, the disc, or `fallback`'s kernel.
    kind : str
        `FREE_FORM`, `DISC`, or `fallback`'s kind.
    reason : str
        What was done and why, in words.
    twin : ndarray or None
        The second window's disc where the disc is used (`safe_or_disc`), else None.
    """
    extent = kernel_extent(centre_subpixel(free))  # (as the report gives it: centred, as used)
    found = f"{pixels(extent)} blur, found alike on two parts of the picture"
    doubt = f"{found}, but it predicts unseen pixels worse than a milder correction"
    sigmas = softness(grey, windows, size)  # (learnt once: the fallback may be asked twice)
    mild = mild_correction(grey, windows, size, doubt, sigmas)
    check = HeldOutWindow(patch_of(grey, windows[-1]), reach(size, mild[0]))
    if not check.can_score:  # a window too narrow to test it on: not confirmed
        untested = f"{found} cannot be tested on unseen pixels: the picture is too narrow"
        return (*fallback(grey, windows, size, untested, sigmas), None)
    mild_error, free_error = check.errors([mild[0], free])
    if (1 + CLEARLY) * mild_error < free_error:
        return safe_or_disc(grey, windows, size, doubt, sigmas)
    return free_or_disc(grey, windows, size, free, found)


def free_or_disc(
    grey: np.ndarray, windows: list[Window], size: int, free: np.ndarray, found: str
) -> tuple[np.ndarray, str, str, np.ndarray | None]:
    """The agreed free-form kernel, or the defocus disc both windows show if it predicts better.

    A free-form kernel is hundreds of taps learnt from edges, and draws a defocus roughly where
    both windows agree on it. Where the two windows also show the same disc (`agreed_disc`), at
    least as wide as the free-form kernel (`kernel_spread`), and it predicts held-out pixels of
    the second window better than the free-form kernel does (`worker.deconv.holdout`), the disc,
    one number, is used (on the blind benchmark, Garden's defocus of radius 8 px: an agreed
    free-form kernel that gained +1.77 dB where the true disc gains +7.03, and a disc of 7.75 px
    on both windows that predicted the pixels 3.6 % better). A narrower disc is a milder
    correction, which held-out pixels favour (4): one of 1.5 px predicted them better than a
    shake's right 27 px kernel, which gained +9.68 dB, and the disc -0.04.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    windows : list of Window
        The first window and the second (the check window).
    size : int
        The largest blur, in pixels.
    free : ndarray, shape (size, size)
        The agreed free-form kernel, learnt on the first window.
    found : str
        What the free-form kernel is, in words; the reason starts with it.

    Returns
    -------
    kernel : ndarray
        `free`, or the disc (`disc_kernel`).
    kind : str
        `FREE_FORM` or `DISC`.
    reason : str
        What was done and why, in words.
    twin : ndarray or None
        The second window's disc where the disc is used, else None.
    """
    radii = agreed_disc(grey, windows, size)
    if radii is None or kernel_spread(disc_kernel(radii[0])) < kernel_spread(free):
        return free, FREE_FORM, found, None
    disc, twin = (disc_kernel(radius) for radius in radii)
    check = HeldOutWindow(patch_of(grey, windows[-1]), reach(size, disc, free))
    if not check.can_score:
        return free, FREE_FORM, found, None
    disc_error, free_error = check.errors([disc, free])
    if disc_error >= free_error:
        return free, FREE_FORM, found, None
    better = "a defocus both show predicts unseen pixels better"
    return disc, DISC, f"{found}, but {better}: a disc of radius {radii[0]:g} px", twin
