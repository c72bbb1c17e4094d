"""The blur's size, the windows it is learnt on, and the two windows' kernels learnt there.

`worker.deconv.blind` judges a pair of free-form kernels, each learnt on a window of its own;
this module gives it that pair, at the size the blur needs.

The windows (`learning_windows`): among the `CANDIDATES` best automatic ones, the first that a
kernel can be learnt from (edges, few clipped highlights; `usable_windows`) and the first whose
centre is at least `APART` of the picture's shorter side away from it; or your window and the
best automatic one beside it; smaller on a small picture, so that two fit (`pair_side`). The
two kernels are learnt at once, on two threads (`learn_pair`).

With `--blur auto` (no size given) the size is found first (`auto_size`): the first window's kernel
is learnt at growing sizes, from `AUTO_SIZES[0]` up to `AUTO_BLUR`, and the smallest size is kept
at which the kernel, and the kernel at the next size too, leave their support's outer ring all
but empty (`border_mass` under `TRUNCATED`): a support that a blur fits in with room to spare. A
larger support than the blur needs gives the estimate freedom it fills with texture and noise
(a 3 px disc learnt as a 33 px smear at 45 px); a smaller one cuts the blur off. Both windows'
kernels are learnt at each size, so the size found needs no further estimate.

A size you give (`--blur K`) is an upper bound, for the same reason: learnt at 31 or 45 px, a 6 px
shake grows spurs of texture and noise (on the blind benchmark: -0.6 and -2.1 dB against the
input, +3.9 dB learnt at 11 px). So when the kernel learnt at K fits, with room to spare, a
size of `AUTO_SIZES` at most half of K (`fitted_size`), the blur is learnt again as if that
size had been given (`fit_support`), unless it is cut off there. Between once and twice the
size a kernel needs, learning again changed the estimate about as often for the worse as for
the better, so it is not done.

The other way round, a kernel that fills the size given (`border_mass` at `TRUNCATED` or more)
is cut off by it: a size given as the blur looks (its visible streak or disc) leaves out the
faint tails beyond (a defocus disc's soft rim, a Gaussian's far side, a shake's slow ends), and
the kernel puts their mass into the taps it has. So the blur is learnt again with `FIT_MARGIN`
px more on each side (`fit_support`, `grown_size`; on your window as far as it holds three
kernels), and that kernel is used (on the blind benchmark, defocus at its true extent went from
65 % to 74 % of the true kernel's gain). If it fills that support too it is still used, as it
often helps (a defocus disc cut off by its support still sharpens), but the reason says that
the blur may be larger (`worker.deconv.blind`), so that the photographer can try a larger size.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from worker.deconv.parametric import border_mass, kernel_extent
from worker.deconv.psf import PsfReport, estimate_psf, unclipped
from worker.deconv.settings import AUTO_BLUR
from worker.deconv.window import (
    Window,
    automatic_size,
    check_edges,
    choose_windows,
    distance,
    largest_blur,
    learning_patch,
    overlap,
    pair_side,
    patch_of,
)
from worker.errors import InputError
from worker.stages import Progress, Stage

AUTO_SIZES = (11, 15, 21, 31, AUTO_BLUR)  # the kernel sizes `--blur auto` tries, smallest first
TRUNCATED = 0.03  # a kernel with this share of its mass on its outer ring is cut off by its size
FIT_MARGIN = 2  # px to spare on each side of a kernel learnt again at another size
CANDIDATES = 12  # automatic windows considered, best first, for the two that are used
APART = 1 / 3  # the check window's centre is this share of the shorter side from the first's
# What `learn_pair` learns: the first window's kernel and report, the second window's kernel.
KernelPair = tuple[np.ndarray, PsfReport, np.ndarray | None]


def learning_windows(
    image: np.ndarray, grey: np.ndarray, size: int, window: Window | None, clip_level: float
) -> tuple[int, list[Window], str]:
    """The size to learn at and the windows to learn from.

    `window` (checked) and the best automatic one beside it, or the best automatic one and the best
    `APART` from it (the size then no larger than a third of their side); an empty list, and why,
    when no automatic window is usable.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, for its clipped highlights.
    grey : ndarray, shape (H, W)
        Its luminance.
    size : int
        The largest blur wanted, in pixels.
    window : Window or None
        Your window (x, y, width, height), or None to choose both.
    clip_level : float
        Where the sensor clipped (`math.inf`: nowhere).

    Returns
    -------
    size : int
        The size to learn at: `size`, or less where the chosen windows hold no more.
    windows : list of Window
        The window to learn from, then the one to check on: two, one (no second usable), or none.
    why_not : str
        Why the first automatic window left out was unusable ("" when none was, or with `window`).

    Raises
    ------
    InputError
        When `window` is given and does not fit the picture and the blur, or holds no edges
        (`learning_patch`).
    """
    side = pair_side(grey.shape, size)
    if window is None:
        size = automatic_size(grey.shape, size)
        candidates = choose_windows(grey, size, CANDIDATES, side)
        apart = APART * min(grey.shape)
        windows, why_not = usable_windows(image, grey, size, candidates, clip_level, apart)
        return size, windows, why_not
    learning_patch(grey, window, size)
    others = [w for w in choose_windows(grey, size, CANDIDATES, side) if not overlap(w, window)]
    return size, [window, *usable_windows(image, grey, size, others, clip_level)[0][:1]], ""


def auto_size(
    image: np.ndarray,
    grey: np.ndarray,
    window: Window | None,
    clip_level: float,
    progress: Progress | None,
) -> tuple[int, list[Window], str, KernelPair | None]:
    """The blur size for `--blur auto`, its windows, and the two windows' kernels learnt at it.

    The size is the smallest of `AUTO_SIZES` at which the first window's kernel, and its kernel at
    the next size, are not cut off by their support (`border_mass` under `TRUNCATED`); else the
    last size learnt at. On your own `window` only the sizes it holds three times are tried (3
    when it holds none), on a small picture only those its windows hold. The windows are those the
    kernels were learnt on, so they are not chosen again. The second window's kernel is learnt at
    each size beside the first's (on the other core), so that the size found needs no further
    estimate.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    grey : ndarray, shape (H, W)
        Its luminance.
    window : Window or None
        Your window (x, y, width, height), or None to choose.
    clip_level : float
        Where the sensor clipped (`math.inf`: nowhere).
    progress : Progress or None
        Called with (share of the sizes done, `Stage.ESTIMATING`) as each size is tried.

    Returns
    -------
    size : int
        The blur size, in pixels.
    windows : list of Window
        The windows at that size (`learning_windows`): empty when none is usable.
    why_not : str
        `learning_windows`' reason: why the first automatic window left out was unusable, or "".
    pair : KernelPair or None
        The kernels learnt at that size (`learn_pair`); None when no window is usable.

    Raises
    ------
    InputError
        As `learning_windows` and `learn_pair` (`estimate_psf`) raise it.
    """
    sizes = [s for s in AUTO_SIZES if window is None or s <= largest_blur(min(window[2:]))] or [3]
    fitted = last = None  # the last size the kernel fitted in, the last tried: the answer
    for index, wanted in enumerate(sizes):
        size, windows, why_not = learning_windows(image, grey, wanted, window, clip_level)
        if progress is not None:
            progress(index / len(sizes), Stage.ESTIMATING)
        if not windows:
            continue
        last = size, windows, why_not, learn_pair(image, size, windows, None, clip_level)
        if border_mass(last[3][0]) >= TRUNCATED:
            fitted = None
        elif fitted is not None:
            return fitted
        else:
            fitted = last
        if size < wanted:  # capped by the picture: no larger size to try
            break
    return fitted or last or (*learning_windows(image, grey, sizes[-1], window, clip_level), None)


def grown_size(size: int, window: Window | None) -> int:
    """The support a blur cut off at `size` px is learnt again on.

    `FIT_MARGIN` px more on each side; on your `window` no more than it holds three times (`size`
    when it holds no more).

    Parameters
    ----------
    size : int
        The size the blur was learnt at, in pixels.
    window : Window or None
        Your window (x, y, width, height), or None (automatic windows).

    Returns
    -------
    int
        The new size, in pixels.
    """
    room = size + 2 * FIT_MARGIN
    if window is None:
        return room
    return min(room, max(size, largest_blur(min(window[2:]))))


def fitted_size(kernel: np.ndarray) -> int:
    """The smallest of `AUTO_SIZES` that holds `kernel`'s extent with `FIT_MARGIN` px to spare.

    Parameters
    ----------
    kernel : ndarray
        A learnt kernel; its extent is `kernel_extent`'s.

    Returns
    -------
    int
        The size, in pixels: ``kernel_extent + 2 FIT_MARGIN`` or more; the largest of
        `AUTO_SIZES` when none holds it.
    """
    needed = kernel_extent(kernel) + 2 * FIT_MARGIN
    return next((size for size in AUTO_SIZES if size >= needed), AUTO_SIZES[-1])


def fit_support(
    image: np.ndarray,
    grey: np.ndarray,
    size: int,
    window: Window | None,
    windows: list[Window],
    pair: KernelPair,
    clip_level: float,
) -> tuple[int, list[Window], KernelPair]:
    """The size, windows and pair of kernels (`learn_pair`) to use for a size given.

    From the `windows` and `pair` learnt at that `size` (on your `window` if any):

    1. a first kernel cut off by its support (`border_mass` at `TRUNCATED` or more) is learnt
       again at `grown_size`, room for its tails;
    2. a first kernel that fits a support half as large or less (`fitted_size`) is learnt again
       as if that size had been given, and that is kept unless it is cut off there.

    Each is learnt again only where the windows at the new size can be learnt from.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    grey : ndarray, shape (H, W)
        Its luminance.
    size : int
        The size given, in pixels, as `learning_windows` capped it.
    window : Window or None
        Your window (x, y, width, height), or None (automatic windows).
    windows : list of Window
        The windows learnt on at `size`.
    pair : KernelPair
        The kernels learnt at `size`.
    clip_level : float
        Where the sensor clipped (`math.inf`: nowhere).

    Returns
    -------
    size : int
        The size to use, in pixels.
    windows : list of Window
        The windows learnt on at that size.
    pair : KernelPair
        The kernels learnt at that size.
    """
    room = grown_size(size, window)
    if border_mass(pair[0]) >= TRUNCATED and room > size:
        grown = learnt_again(image, grey, room, window, clip_level)
        if grown is not None and grown[0] > size:  # (the windows may hold no larger blur)
            size, windows, pair = grown
    fitted = fitted_size(pair[0])
    if 2 * fitted <= size:
        refit = learnt_again(image, grey, fitted, window, clip_level)
        if refit is not None and border_mass(refit[2][0]) < TRUNCATED:
            return refit
    return size, windows, pair


def learnt_again(
    image: np.ndarray, grey: np.ndarray, wanted: int, window: Window | None, clip_level: float
) -> tuple[int, list[Window], KernelPair] | None:
    """The blur learnt as if `wanted` had been given: its size, windows and pair of kernels.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    grey : ndarray, shape (H, W)
        Its luminance.
    wanted : int
        The size to learn at, in pixels.
    window : Window or None
        Your window (x, y, width, height), or None (automatic windows).
    clip_level : float
        Where the sensor clipped (`math.inf`: nowhere).

    Returns
    -------
    tuple or None
        (size, windows, pair): the size and windows of `learning_windows`, the kernels of
        `learn_pair`; None where no window there can be learnt from (none usable, or any
        `InputError`, such as edges too soft at that size).
    """
    try:
        size, windows, _ = learning_windows(image, grey, wanted, window, clip_level)
        if not windows:
            return None
        return size, windows, learn_pair(image, size, windows, None, clip_level)
    except InputError:
        return None


def learn_pair(
    image: np.ndarray,
    size: int,
    windows: list[Window],
    progress: Progress | None,
    clip_level: float | None,
) -> KernelPair:
    """The first window's kernel and report, and the second window's kernel, learnt at once.

    The first comes from `estimate_psf`, the second from `second_kernel`, on two threads: the
    transforms and most NumPy loops let go of the GIL, so on two cores the pair takes 1.0 s
    instead of 1.7 s (a 2 Mpx photo's 256 px windows; docs/MEASUREMENTS.md), and the kernels are
    the same bit for bit.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    size : int
        The kernel size, in pixels.
    windows : list of Window
        The first window, and the second if there is one.
    progress : Progress or None
        Follows the first window's estimate.
    clip_level : float or None
        Where the sensor clipped (None: detected).

    Returns
    -------
    KernelPair
        (the first window's kernel, its `PsfReport`, the second window's kernel or None).

    Raises
    ------
    InputError
        As `estimate_psf` raises it for the first window.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        second = pool.submit(second_kernel, image, size, windows, clip_level)
        free, report = estimate_psf(image, size, windows[0], progress, clip_level)
        return free, report, second.result()


def second_kernel(
    image: np.ndarray,
    size: int,
    windows: list[Window],
    clip_level: float | None,
) -> np.ndarray | None:
    """The free-form kernel of the second window, or None when there is none or it is unusable.

    It reports no progress: it runs beside the first window's kernel, which does.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    size : int
        The kernel size, in pixels.
    windows : list of Window
        The first window, and the second if there is one.
    clip_level : float or None
        Where the sensor clipped (None: detected).

    Returns
    -------
    ndarray or None
        The kernel (`estimate_psf`); None with one window, or where `estimate_psf` raises
        `InputError` there (flat, or mostly clipped).
    """
    if len(windows) < 2:
        return None
    try:
        return estimate_psf(image, size, windows[1], None, clip_level)[0]
    except InputError:  # flat, or mostly clipped: nothing to check against
        return None


def usable_windows(
    image: np.ndarray,
    grey: np.ndarray,
    size: int,
    candidates: list[Window],
    clip_level: float,
    apart: float = 0.0,
) -> tuple[list[Window], str]:
    """The first of `candidates` that a kernel can be learnt from, and the next one `apart` from it.

    A window is usable with edges (`check_edges`) and enough pixels away from clipped highlights
    (`unclipped`); the second must also have its centre at least `apart` px from the first's.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, for its clipped highlights.
    grey : ndarray, shape (H, W)
        Its luminance, for its edges.
    size : int
        The blur size, in pixels.
    candidates : list of Window
        The windows to try, best first.
    clip_level : float
        Where the sensor clipped (`math.inf`: nowhere).
    apart : float, optional
        The least distance between the two windows' centres, in pixels.

    Returns
    -------
    usable : list of Window
        Up to two windows, in the candidates' order.
    why_not : str
        Why the first window left out as unusable was (its `InputError`'s first clause), or "".
    """
    usable: list[Window] = []
    why_not = ""
    for window in candidates:
        if usable and distance(window, usable[0]) < apart:
            continue
        try:
            check_edges(patch_of(grey, window), size)
            unclipped(image, window, size, clip_level)
        except InputError as unusable:
            why_not = why_not or str(unusable).split(";")[0]
            continue
        usable.append(window)
        if len(usable) == 2:
            break
    return usable, why_not
