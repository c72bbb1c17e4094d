"""Where to learn the blur: choosing and checking the window that PSF estimation looks at.

A kernel can only be learnt from edges, and from edges of several orientations: a window with
only horizontal edges says nothing about the blur's horizontal extent. Flat sky teaches nothing,
and clipped highlights break the linear blur model. The automatic choice therefore scores every
candidate window by the gradient energy of its strong edges, weighted by how evenly that energy
spreads over orientations, and penalised by its share of saturated pixels.
"""

import math

import numpy as np
from scipy import ndimage

from worker.deconv.noise import estimate_noise
from worker.deconv.settings import AUTO, AUTO_BLUR, CENTRE, MIN_BLUR, window_spelling
from worker.errors import InputError
from worker.resize import block_means

Window = tuple[int, int, int, int]

ORIENTATION_BINS = 8
MIN_WINDOW = 256
ANALYSIS_SIZE = 1000  # larger pictures are shrunk to about this for choosing the window
NEAR_WHITE = 0.98  # "saturated" for the window score: luminance at this share of the peak
FIRST_TRIES = 64  # when the best window leaves no room for a second, the next best lead
KERNELS_ACROSS = 3  # a window is at least this many kernels wide
EDGE_OVER_NOISE = 8.0  # a window's strongest detail must stand this many noise sigmas out...
EDGE_OVER_LEVEL = 1e-3  # ...and this share of its mean level, or it is flat
STRONG_EDGE_PERCENTILE = 90  # the window score counts the gradients above this percentile...
EDGE_CAP_PERCENTILE = 99  # ...each capped at this one (a few glints do not make a window)
SATURATION_PENALTY = 20  # the score falls by this many times the window's saturated share


def window_side(image_shape: tuple[int, int], size: int) -> int:
    """The side of the automatic window: max(256, 8 K), no larger than the image.

    Parameters
    ----------
    image_shape : tuple of int
        The picture's (height, width), in pixels.
    size : int
        The blur size K, in pixels.

    Returns
    -------
    int
        ``min(max(MIN_WINDOW, 8 size), height, width)``, in pixels.
    """
    return int(min(max(MIN_WINDOW, 8 * size), *image_shape))


def pair_side(image_shape: tuple[int, int], size: int) -> int:
    """The side of two automatic windows that must fit side by side without overlapping.

    The usual `window_side`, smaller on a picture too small for two of those (a little under half
    its longer side, so that two fit on `choose_windows`' grid), never under 3 kernels.

    Parameters
    ----------
    image_shape : tuple of int
        The picture's (height, width), in pixels.
    size : int
        The blur size, in pixels.

    Returns
    -------
    int
        ``max(min(window_side, longer * 4 // 9, shorter), KERNELS_ACROSS * size)``, in pixels.
        On a picture narrower than `KERNELS_ACROSS` kernels it exceeds the shorter side
        (`choose_windows` clips it to the picture).
    """
    longer, shorter = max(image_shape), min(image_shape)
    return int(
        max(min(window_side(image_shape, size), longer * 4 // 9, shorter), KERNELS_ACROSS * size)
    )


def check_room(image_shape: tuple[int, int]) -> None:
    """Raise `InputError` when a picture is too small to learn a blur from.

    It is too small when its shorter side holds no window `KERNELS_ACROSS` times the smallest blur
    (`MIN_BLUR`).

    Parameters
    ----------
    image_shape : tuple of int
        The picture's (height, width), in pixels.

    Raises
    ------
    InputError
        When the shorter side is under ``KERNELS_ACROSS * MIN_BLUR`` px.
    """
    smallest = KERNELS_ACROSS * MIN_BLUR
    if min(image_shape) < smallest:
        height, width = image_shape
        raise InputError(
            f"the picture is {width}x{height} pixels: too small to learn its blur from (at least "
            f"{smallest}x{smallest}; with a known kernel, `deblur --psf` takes it)"
        )


def largest_blur(side: int) -> int:
    """The largest odd blur size a window `side` px wide holds `KERNELS_ACROSS` times.

    Parameters
    ----------
    side : int
        The window's side (the shorter one), in pixels.

    Returns
    -------
    int
        The largest odd ``K`` with ``KERNELS_ACROSS * K <= side``: 1 for a side of 3 to 8 px, -1
        under 3 px.
    """
    return (side // KERNELS_ACROSS - 1) | 1


def automatic_size(image_shape: tuple[int, int], size: int) -> int:
    """The blur size automatic windows learn at: `size`, or the largest they hold on a picture
    too small for it (a size given is an upper bound).

    Parameters
    ----------
    image_shape : tuple of int
        The picture's (height, width), in pixels.
    size : int
        The largest blur wanted, in pixels.

    Returns
    -------
    int
        ``min(size, largest_blur(min(pair_side, height, width)))``.
    """
    return min(size, largest_blur(min(pair_side(image_shape, size), *image_shape)))


def centre_window(image_shape: tuple[int, int], size: int) -> Window:
    """The automatic-size window in the middle of the image.

    Parameters
    ----------
    image_shape : tuple of int
        The picture's (height, width), in pixels.
    size : int
        The blur size, in pixels, which sets the side (`window_side`).

    Returns
    -------
    Window
        (x, y, side, side) in pixels, the corner rounded down to the whole pixel.
    """
    side = window_side(image_shape, size)
    height, width = image_shape
    return (width - side) // 2, (height - side) // 2, side, side


def patch_of(grey: np.ndarray, window: Window) -> np.ndarray:
    """The part of a picture under a window.

    Parameters
    ----------
    grey : ndarray, shape (H, W) or (H, W, C)
        The picture: its luminance, or its colour planes.
    window : Window
        (x, y, width, height) in pixels.

    Returns
    -------
    ndarray, shape (height, width) or (height, width, C)
        A view of `grey`, not a copy.
    """
    x, y, width, height = window
    return grey[y : y + height, x : x + width]


def orientation(patch: np.ndarray) -> tuple[float, float]:
    """How much a grey patch's edges run in one direction, and which: its structure tensor.

    With ``J = sum (g_x, g_y)^T (g_x, g_y)`` over the patch (gradients of the patch smoothed by a
    Gaussian of 1 px, so that noise does not set the direction), the coherence is
    ``(l1 - l2) / (l1 + l2)``, ``l1 >= l2`` J's eigenvalues: 0 when the gradients point every
    way, 1 when all are parallel (Bigun and Granlund, ICCV 1987; Jaehne, *Digital Image
    Processing*, 2005).

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The grey patch.

    Returns
    -------
    coherence : float
        In [0, 1]; 0 for a flat patch.
    angle : float
        The dominant gradient direction, in degrees in (-90, 90] (0: the gradients run along
        the rows, across vertical edges).
    """
    gy, gx = np.gradient(ndimage.gaussian_filter(np.asarray(patch, np.float64), 1.0))
    xx, yy, xy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    trace, spread = xx + yy, math.hypot(xx - yy, 2 * xy)
    coherence = spread / trace if trace > 0 else 0.0
    return coherence, 0.5 * math.degrees(math.atan2(2 * xy, xx - yy))


def distance(first: Window, second: Window) -> float:
    """The distance between the centres of two windows, px.

    Parameters
    ----------
    first, second : Window
        The windows (x, y, width, height), in pixels.

    Returns
    -------
    float
        The distance, in pixels.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = first, second
    return math.hypot(x1 + w1 / 2 - x2 - w2 / 2, y1 + h1 / 2 - y2 - h2 / 2)


def overlap(first: Window, second: Window) -> bool:
    """Whether two windows share any pixel.

    Parameters
    ----------
    first, second : Window
        The windows (x, y, width, height), in pixels.

    Returns
    -------
    bool
        True when they share a pixel.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = first, second
    return x1 < x2 + w2 and x2 < x1 + w1 and y1 < y2 + h2 and y2 < y1 + h1


def check_edges(patch: np.ndarray, size: int) -> None:
    """Raise `InputError` when `patch` holds nothing but noise and smooth shading.

    Detail is the band-pass ``G_1 * patch - G_s * patch`` with ``s = size / 2`` (at least 2): it
    ignores shading broader than the blur and most of the noise, yet keeps edges however blurred.
    The patch has edges when the 99th percentile of ``|detail|`` reaches eight times what the noise
    alone gives there (white noise of the measured sigma reaches about 2.6 times the filter's noise
    gain) and a thousandth of the patch's mean level.

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The grey window, in the picture's units.
    size : int
        The blur size, in pixels.

    Raises
    ------
    InputError
        When the window is flat: there are no edges to learn the blur from.
    """
    patch = patch.astype(np.float64)
    broad = max(size / 2, 2.0)
    detail = ndimage.gaussian_filter(patch, 1.0) - ndimage.gaussian_filter(patch, broad)
    impulse = np.zeros((2 * int(4 * broad) + 1,) * 2)
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1.0
    response = ndimage.gaussian_filter(impulse, 1.0) - ndimage.gaussian_filter(impulse, broad)
    noise_gain = float(np.sqrt((response**2).sum()))
    strength = float(np.percentile(np.abs(detail), 99))
    floor = max(
        EDGE_OVER_NOISE * noise_gain * estimate_noise(patch),
        EDGE_OVER_LEVEL * abs(float(patch.mean())),
        1e-9,
    )
    if strength < floor:
        raise InputError(
            "the window is flat: there are no edges to learn the blur from; "
            "choose a window with detail (--window X,Y,W,H)"
        )


def check_window(window: Window, image_shape: tuple[int, int], size: int) -> None:
    """Raise `InputError` unless `window` lies inside the image and holds `KERNELS_ACROSS` kernels.

    The window's width and height must both be at least ``KERNELS_ACROSS * size``.

    Parameters
    ----------
    window : Window
        (x, y, width, height) in pixels.
    image_shape : tuple of int
        The picture's (height, width), in pixels.
    size : int
        The blur size, in pixels.

    Raises
    ------
    InputError
        When the window is empty or reaches outside the image, or when its shorter side is under
        ``KERNELS_ACROSS * size``.
    """
    x, y, width, height = window
    rows, cols = image_shape
    if width <= 0 or height <= 0 or x < 0 or y < 0 or x + width > cols or y + height > rows:
        raise InputError(
            f"the window {x},{y},{width},{height} (x,y,width,height) is not inside the "
            f"{cols}x{rows} image"
        )
    if size > min(width, height):
        raise InputError(
            f"the blur size {size} is larger than the window ({width}x{height}); "
            "use a larger window or a smaller --blur"
        )
    if min(width, height) < KERNELS_ACROSS * size:
        raise InputError(
            f"the window ({width}x{height}) is smaller than {KERNELS_ACROSS} times the blur size "
            f"({KERNELS_ACROSS * size} px); "
            "use a larger window or a smaller --blur"
        )


def learning_patch(grey: np.ndarray, window: Window, size: int) -> np.ndarray:
    """The grey patch under `window` to learn a `size` px blur from.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    window : Window
        (x, y, width, height) in pixels.
    size : int
        The blur size, in pixels.

    Returns
    -------
    ndarray, shape (height, width)
        A float64 copy of `grey` under the window.

    Raises
    ------
    InputError
        Unless the window fits (`check_window`) and holds edges (`check_edges`).
    """
    check_window(window, grey.shape, size)
    x, y, width, height = window
    patch = grey[y : y + height, x : x + width].astype(np.float64)
    check_edges(patch, size)
    return patch


def window_from_text(text: str, image_shape: tuple[int, int], size: int | None) -> Window | None:
    """The window a user asked for: "auto", "centre" or "X,Y,W,H" in pixels.

    Parameters
    ----------
    text : str
        "auto", "centre" (or "center") or "X,Y,W,H": four whole numbers, in pixels. Letter case
        and spaces around the words and numbers do not matter.
    image_shape : tuple of int
        The picture's (height, width), in pixels.
    size : int or None
        The blur size in pixels, which sets the side of the centre window; None: `--blur auto`,
        up to `AUTO_BLUR`, and the centre window is sized for `AUTO_BLUR`.

    Returns
    -------
    Window or None
        (x, y, width, height) in pixels; None for "auto": choose it. "X,Y,W,H" is returned as
        given, not checked against the picture (`check_window` does that).

    Raises
    ------
    InputError
        When `text` is none of these forms (`window_spelling`).
    """
    spelling = window_spelling(text)
    if spelling == AUTO:
        return None
    if spelling == CENTRE:
        return centre_window(image_shape, size or AUTO_BLUR)
    x, y, width, height = (int(number) for number in spelling.split(","))
    return x, y, width, height


def box_sums(values: np.ndarray, side: int, step: int) -> np.ndarray:
    """Sums of `values` over side x side boxes whose corners lie on a `step` grid.

    All the sums come from one summed-area table: four look-ups each, whatever `side`.

    Parameters
    ----------
    values : ndarray, shape (H, W)
        The values to sum.
    side : int
        The boxes' side, in pixels of `values`.
    step : int
        The spacing of the boxes' top-left corners, in pixels of `values`.

    Returns
    -------
    ndarray, shape (M, N)
        float64, one sum per box that fits inside `values`, ``M = ceil((H - side + 1) / step)``
        and ``N`` likewise: entry ``[i, j]`` sums ``values[i * step : i * step + side,
        j * step : j * step + side]``.
    """
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    table[1:, 1:] = values.cumsum(0).cumsum(1)
    ys = np.arange(0, values.shape[0] - side + 1, step)
    xs = np.arange(0, values.shape[1] - side + 1, step)
    y0, x0 = np.ix_(ys, xs)
    return table[y0 + side, x0 + side] - table[y0, x0 + side] - table[y0 + side, x0] + table[y0, x0]


def choose_window(grey: np.ndarray, size: int) -> Window:
    """The square window, side `window_side`, with the most strong and varied edges.

    The candidates are scored as `choose_windows` says.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    size : int
        The blur size, in pixels, which sets the side.

    Returns
    -------
    Window
        (x, y, side, side) in pixels.
    """
    return choose_windows(grey, size, 1)[0]


def choose_windows(
    grey: np.ndarray, size: int, count: int, side: int | None = None
) -> list[Window]:
    """Up to `count` square windows, best first, none overlapping another.

    Score = (strong-edge energy) x (orientation diversity) x (1 - 20 x saturated share), where a
    strong edge is a gradient above the image's 90th percentile magnitude, its energy is the
    magnitude capped at the 99th percentile (so that many good edges outweigh a few lamps), and
    diversity is ``exp(entropy)`` of the energy's distribution over 8 orientation bins divided by
    8 (1 for evenly spread orientations, 1/8 for a single one); a pixel is saturated at
    `NEAR_WHITE` of the picture's maximum or above. A picture whose shorter side is 2000 px or
    more is scored on a copy shrunk by a whole factor (block means) to a shorter side of 1000 to
    1499 px, which keeps this to a fraction of a second. Each next window is the best one that
    does not overlap those already chosen; when the best one leaves no room for a second (a small
    picture), the next best leads instead (up to `FIRST_TRIES` leads are tried).

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance.
    size : int
        The blur size, in pixels, which sets the default side.
    count : int
        How many windows at most.
    side : int or None, optional
        The windows' side in pixels; None (or 0): `window_side`. It is clipped to the picture's
        shorter side.

    Returns
    -------
    list of Window
        (x, y, side, side) in pixels, best first: at least one, fewer than `count` where no other
        candidate overlaps none of those chosen.
    """
    side = min(side or window_side(grey.shape, size), *grey.shape)
    factor = max(1, min(grey.shape) // ANALYSIS_SIZE)
    small = block_means(grey, factor)
    small_side = max(side // factor, 2)
    step = max(small_side // 8, 1)
    score = window_scores(grey, small, factor, small_side, step)
    rows, cols = np.unravel_index(np.argsort(score, axis=None)[::-1], score.shape)
    xs = np.minimum(cols * step * factor, grey.shape[1] - side)
    ys = np.minimum(rows * step * factor, grey.shape[0] - side)
    best: list[int] = []
    for first in range(min(len(xs), FIRST_TRIES)):
        chosen = greedy_windows(xs, ys, side, count, first)
        if len(chosen) > len(best):
            best = chosen
        if len(best) >= min(count, 2):  # a pair to cross-check: the best window leads if it can
            break
    return [(int(xs[i]), int(ys[i]), side, side) for i in best]


def greedy_windows(xs: np.ndarray, ys: np.ndarray, side: int, count: int, first: int) -> list[int]:
    """Indices of up to `count` windows that do not overlap.

    The `first`-best leads, then each next best that overlaps none chosen.

    Parameters
    ----------
    xs, ys : ndarray of int
        The candidate windows' top-left corners, in pixels, best first.
    side : int
        The windows' side, in pixels.
    count : int
        How many windows at most.
    first : int
        The index of the window that leads.

    Returns
    -------
    list of int
        Indices into `xs` and `ys`: `first`, then the others in the candidates' order.
    """
    chosen = [first]
    for index in range(len(xs)):
        if len(chosen) == count:
            break
        if all(abs(xs[index] - xs[i]) >= side or abs(ys[index] - ys[i]) >= side for i in chosen):
            chosen.append(index)
    return chosen


def window_scores(
    grey: np.ndarray, small: np.ndarray, factor: int, small_side: int, step: int
) -> np.ndarray:
    """The score of every candidate window (corners on a `step` grid of the shrunk `small`).

    The score is the one `choose_windows` describes.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The picture's luminance at full size, for its saturated share.
    small : ndarray, shape (H // factor, W // factor)
        `grey` shrunk by `factor` (`block_means`), for its edges.
    factor : int
        How many times smaller `small` is than `grey`.
    small_side : int
        The windows' side, in pixels of `small`.
    step : int
        The spacing of the windows' corners, in pixels of `small`.

    Returns
    -------
    ndarray, shape (M, N)
        float64, one score per corner, laid out as `box_sums` lays out its boxes.
    """
    smooth = ndimage.gaussian_filter(small, 1.0)
    gy, gx = np.gradient(smooth)
    magnitude = np.hypot(gx, gy)
    strong = magnitude > np.percentile(magnitude, STRONG_EDGE_PERCENTILE)
    capped = np.minimum(magnitude, np.percentile(magnitude, EDGE_CAP_PERCENTILE))
    energy = np.where(strong, capped, 0.0)
    orientation = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((orientation / np.pi * ORIENTATION_BINS).astype(int), ORIENTATION_BINS - 1)
    per_bin = np.stack(
        [box_sums(energy * (bins == b), small_side, step) for b in range(ORIENTATION_BINS)]
    )
    total = per_bin.sum(axis=0)
    share = per_bin / np.maximum(total, 1e-30)
    entropy = -(share * np.log(np.maximum(share, 1e-30))).sum(axis=0)
    diversity = np.exp(entropy) / ORIENTATION_BINS
    saturated = block_means(grey >= NEAR_WHITE * grey.max(), factor)
    saturated_share = box_sums(saturated, small_side, step) / small_side**2
    kept = np.clip(1 - SATURATION_PENALTY * saturated_share, 0, None)
    return (total * diversity * kept).astype(np.float64)
