"""Blur that varies across the frame: one kernel per tile of a grid, blended smoothly.

Camera shake includes rotation (roll about the lens axis, and yaw and pitch seen through a wide
lens), so the blur of a hand-held shot is longer in the corners than in the centre and changes
direction across the frame (Whyte, Sivic, Zisserman and Ponce, "Non-uniform deblurring for shaken
images", IJCV 98, 2012, doi:10.1007/s11263-011-0502-7). Over a region a few hundred pixels wide it
is close to one kernel, which is what the efficient filter flow of Hirsch, Sra, Schoelkopf and
Harmeling ("Efficient filter flow for space-variant multiframe blind deconvolution", CVPR 2010,
doi:10.1109/CVPR.2010.5540158) builds on: overlapping patches, each with its own kernel, blended
by a partition of unity, every patch at FFT speed. Here:

0. **`run`'s verdict** (`blind.estimate_blur`, checked on a second window): where its two
   windows agree that the picture is sharp (`BlurReport.sharp`), the picture is left as it is,
   as `run` leaves it; texture-learnt tile kernels made sharp photographs worse otherwise.
1. **Estimate** (`estimate_grid`): as `run` does, a kernel for the whole picture on its automatic
   (or given) window; then the frame is cut into a grid of tiles (`GRID` x `GRID`, fewer when
   tiles would be too small to learn from) and `estimate_psf` learns a kernel in each, on the
   tile's own most detailed window (the next one if that fails), the tiles on all cores at once
   (threads: the FFTs and most array work release the GIL; each tile's estimate is the same, bit
   for bit, as alone; the whole picture's kernel and its noise model, for step 2, are found
   beside them). A tile with too little detail gets none.
2. **Check and fill in** (`choose_kernels`): an estimate can fail, and a tile without detail has
   none. Each tile takes, among the whole picture's kernel, its own and its neighbours', the one
   that explains the tile best: the highest mean margin of `local.kernel_evidence` (the
   likelihood of the tile's local spectra blurred by that kernel, against no blur and isotropic
   blurs) over its patches. A wrong estimate explains its tile worse than a neighbour's right
   one; a tile without detail inherits whatever explains it best nearby. When no kernel explains
   the tile even nearly as well as no blur or an isotropic blur (every margin under
   `LEAVE_MARGIN`), or when a tenth of the tile is sharper than the kernel it takes (the test
   `run` makes on the whole frame, `whole_frame.sharper_parts`), the tile is left as it is: a
   kernel that does not fit makes it worse. With no estimate anywhere (a flat or featureless
   picture) every tile is left as it is, as `run` leaves such a picture. The tiles are scored on
   all cores at once, as in step 1.
3. **Deblur** (`deblur_grid`): each tile, widened by half a blend ramp and a margin of two kernels
   (so that its own border effects stay outside what is kept), is deblurred with its kernel by
   `rl_tv.deblur`, its TV weight fitted to the tile (`weight_choice`); the results are blended
   with separable partition-of-unity weights, 1 inside a tile and ramping linearly over `RAMP`
   pixels across each inner border, so the kernel in use changes smoothly from tile to tile and
   the weights sum to one everywhere. (Hirsch et al. blend the blurred patches inside one joint
   deconvolution; blending the deconvolved tiles keeps the engine as it is, at the cost of a
   margin per tile.) A tile left as it is contributes the input itself to the blend. A kernel
   narrower than a pixel means no blur, as `run` judges a picture (`is_sharp`): its tile is
   smoothed as with no blur, not sharpened.

When every tile takes the whole picture's kernel, the blur is uniform, and the picture is treated
in one piece exactly as `run` treats it (`deblur_uniform`): the blur is found by
`blind.estimate_blur`, which checks the kernel on a second window and against the parts of the
frame sharper than it, and falls back to a safe correction when the kernel fails (the best
window's kernel alone, unchecked, made a slightly soft star field worse than the input where
`run` gained 3.4 dB). But where those checks leave the picture as it is, the tiles' verdict
stands and each is deblurred with the kernel it kept (`refused_as_varying`): two windows' kernels
that differ are what a blur varying across the frame shows by nature, while every tile's spectra
kept this kernel (a rotation of the blind benchmark's LadyBird, left as it is that way, gained
+5.7 / +7.9 / +6.0 dB in its corners / centre / edges deblurred tile by tile;
docs/MEASUREMENTS.md).

The report says, as `run`'s does, what was done (`reason`), with which kind of kernel (`kernel`:
`VARYING`; `run`'s kind when uniform; `NO_BLUR` when every tile is left as it is) and how sure it
is (`confidence`, `neighbour_agreement`): blur that varies across the frame varies smoothly, so
the kernel a tile takes should be alike to one learnt independently around it. The most alike of
those is its twin, and their difference measures the kernel's error as `run` measures a kernel's
against its second window's (`worker.deconv.kernel_error`), on the kernel's window and on the
tile's own, the larger counting; each tile's deblur counts that error as noise (`tile_errors`).
"""

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from worker.deconv.blind import (
    AGREEMENT,
    NO_BLUR,
    SHARP_SPREAD,
    UNCHECKED,
    BlurReport,
    estimate_blur,
    same_size,
    similarity,
)
from worker.deconv.kernel_error import kernel_error_ratio
from worker.deconv.local import kernel_evidence
from worker.deconv.luminance import luminance
from worker.deconv.noise import NoiseModel, estimate_noise_model
from worker.deconv.noise_correlation import for_correlated_noise
from worker.deconv.parametric import kernel_spread
from worker.deconv.preview import check_preview
from worker.deconv.psf import PsfReport, estimate_psf
from worker.deconv.psf_tools import centre_subpixel, resample_psf
from worker.deconv.rl_tv import DeblurReport, deblur
from worker.deconv.settings import DeblurSettings
from worker.deconv.whole_frame import sharper_parts
from worker.deconv.window import (
    Window,
    automatic_size,
    check_room,
    choose_window,
    learning_patch,
    overlap,
    patch_of,
    window_side,
)
from worker.errors import InputError
from worker.parallel import cpu_count, zeroed
from worker.resize import shrink_area
from worker.stages import Progress, Stage, StopReason

GRID = 3  # tiles per side, at most
MIN_TILE_WINDOWS = 1  # a tile is at least this many estimation windows wide
ATTEMPTS = 2  # windows tried per tile
MAX_SPREAD = 0.4  # tile kernels spread over more than this share of the size are left out
SWITCH = 0.01  # a tile takes another kernel than the whole picture's if it explains it this better
RAMP = 128  # px: the width of the blend between neighbouring tiles
LEAVE_MARGIN = -0.02  # a tile whose best kernel's mean margin is under this is left as it is
VARYING = "varying"  # the kernel kind of a picture deblurred tile by tile with its own kernels
NOTHING_EXPLAINED = (
    "no part of the picture shows a blur that a kernel learnt from it explains: "
    "the picture is left as it is"
)
SAME_BLUR = "the blur is the same across the frame"  # (the reason's start: `deblur_uniform`)
# What the reason adds where the tiles' verdict overrides `run`'s (`refused_as_varying`), with
# the agreement of `run`'s two windows' kernels.
RUN_REFUSED = (
    "for every part that is the whole picture's kernel, kept although the kernels learnt on two "
    "parts of the picture disagree (agreement {:.2f}), as a blur that varies makes them"
)


Estimate = tuple[np.ndarray, PsfReport]  # a kernel and how it was found


@dataclass
class VaryingReport:
    """What `deblur_varying` found.

    Attributes
    ----------
    grid : tuple of int
        The grid, (rows, cols).
    kernels : list of ndarray
        The kernel used per tile, row by row, at the picture's full size: a delta where the tile
        was left as it is or was sharp already (`is_sharp`). When the blur was found uniform,
        the one kernel `run` would use, of any size (`deblur_uniform`).
    windows : list of Window or None
        The windows (x, y, width, height, in the picture's pixels) the kernels were learnt on,
        row by row; None where the tile was left as it is.
    uniform : bool
        Whether the blur was found uniform: then the grid is 1 x 1.
    seconds : float
        The estimate's time: every kernel's, until the deblur starts (the deblur's own is
        `DeblurReport.seconds`, as for `run`).
    kernel : str
        The kind of kernel used, as in `blind.BlurReport`: `VARYING`, `NO_BLUR` when every tile
        was left as it is, `run`'s kind when uniform.
    confidence : float
        How sure it is, 0..1 (`neighbour_agreement`; `run`'s when uniform).
    reason : str
        What was done, in words (`describe`).
    """

    grid: tuple[int, int]
    kernels: list[np.ndarray]
    windows: list[Window | None]
    uniform: bool
    seconds: float
    kernel: str
    confidence: float
    reason: str


def grid_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """Tiles per column and row: up to `GRID`, each tile at least `MIN_TILE_WINDOWS` windows.

    Parameters
    ----------
    shape : tuple of int
        The picture's (H, W).
    size : int
        The largest kernel to estimate, in pixels: a window is ``max(256, 8 size)`` px wide
        (`window_side`).

    Returns
    -------
    tuple of int
        The grid, (rows, cols), each 1 .. `GRID`.
    """
    side = MIN_TILE_WINDOWS * window_side((10**9, 10**9), size)
    return max(1, min(GRID, shape[0] // side)), max(1, min(GRID, shape[1] // side))


def bounds(length: int, parts: int) -> np.ndarray:
    """The edges splitting `length` into nearly equal parts.

    Parameters
    ----------
    length : int
        The length to split, in pixels.
    parts : int
        How many parts.

    Returns
    -------
    ndarray of int, shape (parts + 1,)
        The edges, from 0 to `length`.
    """
    return np.linspace(0, length, parts + 1).round().astype(int)


def tile_views(image: np.ndarray, grid: tuple[int, int]) -> list[tuple[int, int, np.ndarray]]:
    """The tiles of `image`, row by row.

    Parameters
    ----------
    image : ndarray, shape (H, W, ...)
        The picture.
    grid : tuple of int
        The grid, (rows, cols); the edges are `bounds`'.

    Returns
    -------
    list of tuple of (int, int, ndarray)
        Each tile's top and left edge, and a view of it.
    """
    rows, cols = bounds(image.shape[0], grid[0]), bounds(image.shape[1], grid[1])
    return [
        (int(rows[i]), int(cols[j]), image[rows[i] : rows[i + 1], cols[j] : cols[j + 1]])
        for i in range(grid[0])
        for j in range(grid[1])
    ]


def estimate_grid(
    image: np.ndarray,
    size: int,
    grid: tuple[int, int],
    clip_level: float | None,
    progress: Progress | None = None,
) -> list[Estimate | None]:
    """The kernel of each tile (`tile_kernel`), the tiles on all cores at once.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    size : int
        The kernel's size, in pixels (odd).
    grid : tuple of int
        The grid, (rows, cols).
    clip_level : float or None
        Where the sensor clipped; None: detected on each tile (`estimate_psf`).
    progress : Progress, optional
        Called after each tile with the share of the tiles done and `Stage.ESTIMATING`; what it
        raises propagates. None: no report.

    Returns
    -------
    list of (ndarray, PsfReport) or None
        Row by row, each tile's kernel with its report (the window in the picture's
        coordinates); None where the tile has too little detail or the estimate failed.
    """
    views = tile_views(image, grid)
    found: list[Estimate | None] = []
    with ThreadPoolExecutor(cpu_count(), thread_name_prefix="tile-kernel") as pool:
        pending = [pool.submit(tile_kernel, tile, size, clip_level) for _, _, tile in views]
        for (top, left, _), future in zip(views, pending, strict=True):
            estimate = future.result()
            if estimate is not None:
                psf, report = estimate
                x, y, w, h = report.window
                estimate = psf, replace(report, window=(x + left, y + top, w, h))
            found.append(estimate)
            if progress is not None:
                progress(len(found) / len(views), Stage.ESTIMATING)
    return found


def tile_kernel(tile: np.ndarray, size: int, clip_level: float | None) -> Estimate | None:
    """The kernel of one tile, learnt on its most detailed window (`choose_window`), or, if that
    fails, on the next one away from it (up to `ATTEMPTS` windows).

    Parameters
    ----------
    tile : ndarray, shape (h, w, C)
        The tile of the linear picture.
    size : int
        The kernel's size, in pixels (odd).
    clip_level : float or None
        Where the sensor clipped; None: detected on the tile (`estimate_psf`).

    Returns
    -------
    tuple of (ndarray, PsfReport), or None
        `estimate_psf`'s kernel and report (the window in the tile's coordinates); None when
        every attempt raised a `ValueError` (too flat, or the estimate broke down).
    """
    grey = luminance(tile)
    for _ in range(ATTEMPTS):
        x, y, width, height = window = choose_window(grey, size)
        try:
            return estimate_psf(tile, size, window, None, clip_level)
        except (InputError, ValueError):  # too flat; or the estimate broke down (a NaN)
            grey = grey.copy()
            grey[y : y + height, x : x + width] = float(np.median(grey))
    return None


def choose_kernels(
    image: np.ndarray,
    estimates: list[Estimate | None],
    overall: Estimate | None,
    grid: tuple[int, int],
    size: int,
    model: NoiseModel | None = None,
) -> list[Estimate | None]:
    """Each tile's kernel, chosen among the whole picture's (`overall`), the tile's own estimate
    and its neighbours' as the one that explains the tile best (`best_kernel`).

    The best has the highest mean `kernel_evidence` margin over the tile's patches, the whole
    picture's kernel getting `SWITCH` ahead (another must do clearly better); None (leave the
    tile as it is) when even the best stays under `LEAVE_MARGIN`. Tile estimates whose mass
    spreads (root mean square about the centroid) over more than `MAX_SPREAD` kernel sizes are
    left out: a straight blur as long as the kernel's diagonal spreads over 0.41, a blob filling
    the kernel (what an out-of-focus tile or one without real edges can give) more; it would
    explain the tile's softness but deblur it into ringing. A tile none of whose neighbours
    (itself included) has an estimate left weighs every tile's. With no estimate at all (a flat
    or featureless picture) every tile is left as it is. The tiles are scored on all cores.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    estimates : list of (ndarray, PsfReport) or None
        Each tile's own estimate, row by row (`estimate_grid`).
    overall : tuple of (ndarray, PsfReport), or None
        The whole picture's kernel and report (`whole_kernel`); None: none.
    grid : tuple of int
        The grid, (rows, cols).
    size : int
        The kernel's size, in pixels.
    model : NoiseModel, optional
        The picture's noise; None: fitted here (`estimate_noise_model`).

    Returns
    -------
    list of (ndarray, PsfReport) or None
        Row by row, the estimate each tile takes (the very `overall` object where it takes the
        whole picture's kernel); None where it is left as it is.
    """
    known = {
        t: estimate
        for t, estimate in enumerate(estimates)
        if estimate is not None and kernel_spread(estimate[0]) <= MAX_SPREAD * size
    }
    if not known and overall is None:
        return [None] * len(estimates)
    if model is None:
        model = estimate_noise_model(image)
    deblurred_noise = for_correlated_noise(model, image)  # as the deblur counts it
    with ThreadPoolExecutor(cpu_count(), thread_name_prefix="tile-choice") as pool:
        pending = []
        for t, (_, _, tile) in enumerate(tile_views(image, grid)):
            near = [g for g in neighbourhood(t, grid) if g in known]
            candidates = [known[g] for g in near or known]
            pending.append(
                pool.submit(best_kernel, tile, candidates, overall, size, model, deblurred_noise)
            )
        return [future.result() for future in pending]


def neighbourhood(tile: int, grid: tuple[int, int]) -> list[int]:
    """The tiles of `tile` and its up to eight neighbours on `grid`.

    Parameters
    ----------
    tile : int
        The tile's row-by-row index.
    grid : tuple of int
        The grid, (rows, cols).

    Returns
    -------
    list of int
        The row-by-row indices, in that order, `tile` itself included.
    """
    i, j = divmod(tile, grid[1])
    rows = range(max(i - 1, 0), min(i + 2, grid[0]))
    return [r * grid[1] + c for r in rows for c in range(max(j - 1, 0), min(j + 2, grid[1]))]


def best_kernel(
    tile: np.ndarray,
    candidates: list[Estimate],
    overall: Estimate | None,
    size: int,
    model: NoiseModel,
    deblurred_noise: NoiseModel,
) -> Estimate | None:
    """Among `overall` (first, `SWITCH` ahead) and `candidates`, the kernel with the highest
    mean `kernel_evidence` margin over the tile's patches (side by side), if no part of the tile
    is sharper than it.

    A kernel that a tenth of the tile's detailed patches find sharper than it allows is no blur
    of the tile (`whole_frame.sharper_parts`, the test `run` makes of a kernel on the whole
    frame): on the main set of the blind benchmark's unblurred photographs it refuses 11 of the
    67 tiles' kernels that explained their spectra better than no blur, and none of the 68 of
    the rotation benchmark's eight photographs (docs/MEASUREMENTS.md).

    Parameters
    ----------
    tile : ndarray, shape (h, w, C)
        The tile of the linear picture.
    candidates : list of (ndarray, PsfReport)
        The tiles' estimates to weigh.
    overall : tuple of (ndarray, PsfReport), or None
        The whole picture's kernel and report; it wins a tie. None: none.
    size : int
        The kernel's size, in pixels: the patches' side is `patch_side(size)`.
    model : NoiseModel
        The picture's noise.
    deblurred_noise : NoiseModel
        The picture's noise as its deblur counts it (`for_correlated_noise`), for the test of
        sharper parts.

    Returns
    -------
    tuple of (ndarray, PsfReport), or None
        The best estimate; None when its score stays under `LEAVE_MARGIN`, or parts of the tile
        are sharper than it.
    """
    if overall is not None:
        candidates = [overall, *candidates]  # first: it wins a tie
    margins, _ = kernel_evidence(tile, [psf for psf, _ in candidates], size, 1, model)
    scores = [float(margin.mean()) for margin in margins]
    if overall is not None:  # the whole picture's kernel unless another clearly does better
        scores[0] += SWITCH
    best = int(np.argmax(scores))
    if scores[best] < LEAVE_MARGIN:
        return None
    kernel = candidates[best][0]
    if not is_sharp(candidates[best]) and sharper_parts(
        tile, centre_subpixel(kernel), deblurred_noise
    ):
        return None
    return candidates[best]


def blend_weights(length: int, edges: np.ndarray, ramp: int) -> np.ndarray:
    """Partition-of-unity weights along one axis.

    Part k is 1 between its edges, ramping linearly to 0 over `ramp` px centred on each inner
    edge; they sum to 1 where no part is shorter than `ramp`.

    Parameters
    ----------
    length : int
        The axis's length, in pixels.
    edges : ndarray of int, shape (parts + 1,)
        The parts' edges (`bounds`).
    ramp : int
        The width of each blend, in pixels (at least 1 is used).

    Returns
    -------
    ndarray of float64, shape (parts, length)
        Each part's weight at each pixel.
    """
    x = np.arange(length) + 0.5
    parts = len(edges) - 1
    weights = np.zeros((parts, length))
    half = max(ramp, 1) / 2
    for k in range(parts):
        rise = 1.0 if k == 0 else np.clip((x - edges[k] + half) / (2 * half), 0, 1)
        fall = 1.0 if k == parts - 1 else np.clip((edges[k + 1] + half - x) / (2 * half), 0, 1)
        weights[k] = np.minimum(rise, fall)
    return weights


def deblur_grid(
    image: np.ndarray,
    kernels: list[np.ndarray | None],
    grid: tuple[int, int],
    settings: DeblurSettings,
    progress: Progress | None = None,
    errors: list[float] | None = None,
) -> tuple[np.ndarray, list[DeblurReport | None]]:
    """`image` deblurred tile by tile, each with its kernel, blended (see the module).

    Each tile is widened by half a blend ramp, and by two kernels when it is deblurred (so that
    its border effects stay outside what is kept); the ramp is `RAMP` px, at most half the
    shortest tile.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    kernels : list of ndarray or None
        Each tile's kernel, row by row, at the picture's scale; None: the tile as it is.
    grid : tuple of int
        The grid, (rows, cols).
    settings : DeblurSettings
        How to deblur each tile (`rl_tv.deblur`); its `scale` must be 1, so that each tile
        comes back at its size. Each tile's TV weight is fitted to it (`weight_choice`), as
        `deblur` fits a picture's.
    progress : Progress, optional
        Called with the share of the tiles done and the stage; what it raises propagates. None:
        no report.
    errors : list of float, optional
        Each tile's kernel's error over the noise variance, counted as noise in its deblur
        (`tile_errors`); None: 0 for every tile.

    Returns
    -------
    result : ndarray of float32, shape (H, W, C)
        The blended picture.
    reports : list of DeblurReport or None
        Each tile's report, row by row; None for a tile left as it is (no kernel).

    Raises
    ------
    InputError
        As `rl_tv.deblur` does, for a tile.
    """
    height, width, _ = image.shape
    rows, cols = bounds(height, grid[0]), bounds(width, grid[1])
    ramp = min(RAMP, int(np.diff(rows).min()) // 2, int(np.diff(cols).min()) // 2)
    row_weights, col_weights = blend_weights(height, rows, ramp), blend_weights(width, cols, ramp)
    out = zeroed(image.shape)  # the tiles' weighted results are added into it
    reports: list[DeblurReport | None] = []
    for t, kernel in enumerate(kernels):
        i, j = divmod(t, grid[1])
        reach = ramp // 2 + (0 if kernel is None else 2 * kernel.shape[0])
        top, bottom = max(rows[i] - reach, 0), min(rows[i + 1] + reach, height)
        left, right = max(cols[j] - reach, 0), min(cols[j + 1] + reach, width)

        def tile_progress(fraction: float, stage: str, done: int = t) -> None:
            if progress is not None:
                progress((done + fraction) / len(kernels), stage)

        sharp, report = image[top:bottom, left:right], None
        if kernel is not None:
            error = 0.0 if errors is None else errors[t]
            sharp, report = deblur(sharp, kernel, settings, tile_progress, error)
        reports.append(report)
        weight = np.outer(row_weights[i, top:bottom], col_weights[j, left:right])
        out[top:bottom, left:right] += (weight[..., None] * sharp).astype(np.float32)
    return out, reports


def deblur_varying(
    image: np.ndarray,
    size: int,
    settings: DeblurSettings = DeblurSettings(),
    window: Window | None = None,
    estimating: Progress | None = None,
    deblurring: Progress | None = None,
) -> tuple[np.ndarray, DeblurReport, VaryingReport]:
    """Estimate the blur of `image` on a grid of tiles and remove it, tile by tile, blended (see
    the module).

    A picture with nothing to learn a blur from comes back as it is. When every tile takes the
    whole picture's kernel, the picture is treated in one piece (`deblur_uniform`).

    Parameters
    ----------
    image : ndarray of float32, shape (H, W, C)
        The linear picture.
    size : int
        The largest kernel to estimate, in pixels (odd); with no `window`, on a picture too
        small for it, the largest its windows hold (`automatic_size`), as `run` learns.
    settings : DeblurSettings, optional
        What the user chose; at `scale` < 1, a preview: the picture and the kernels are
        downsized together.
    window : Window, optional
        Where to learn the whole picture's kernel, (x, y, width, height) in pixels; None:
        automatic.
    estimating : Progress, optional
        Called with the share of the estimation done and `Stage.ESTIMATING`. None: no report.
    deblurring : Progress, optional
        Called with the share of the deblurring done and the stage. None: no report.

    Returns
    -------
    result : ndarray of float32, shape (H, W, C)
        The deblurred picture; the downsized shape for a preview (`settings.scale` < 1).
    report : DeblurReport
        A report like `rl_tv.deblur`'s: the tile's with the most iterations, its seconds the
        whole deblur's (`DeblurReport.left_as_is`, 0 s, when no tile was deblurred).
    varying : VaryingReport
        The grid, the kernels and windows used, and why.

    Raises
    ------
    InputError
        For a picture too small to learn from (`check_room`), as `run` does; a preview too small
        for the kernels (`check_preview`); a given `window` that does not fit or holds no edges
        (`learning_patch`); or as `blind.estimate_blur` and `rl_tv.deblur` do.
    """
    started = time.perf_counter()
    check_room(image.shape[:2])
    if window is None:
        size = automatic_size(image.shape[:2], size)
    grid = grid_shape(image.shape[:2], size)
    count = grid[0] * grid[1] + 2  # estimates: `run`'s, the whole picture's, then each tile's

    def run_progress(fraction: float, stage: str) -> None:
        if estimating is not None:
            estimating(fraction / count, stage)

    def tiles_progress(fraction: float, stage: str) -> None:
        if estimating is not None:
            estimating((2 + fraction * (count - 2)) / count, stage)

    delta = np.zeros((size, size), np.float32)
    delta[size // 2, size // 2] = 1
    # A window you gave, and a preview too small for the tiles' kernels, are refused at once,
    # not after the tiles' work.
    picture = shrink_area(image, settings.scale)
    check_preview(picture, resample_psf(delta, settings.scale), settings.scale)
    if window is not None:
        learning_patch(luminance(image), window, size)
    psf, blur = estimate_blur(image, size, window, run_progress, settings.clip_level)  # `run`'s
    # Where `run`'s two windows agree that the picture is sharp (`BlurReport.sharp`), the tiles
    # do not overrule them: on the blind benchmark's unblurred photographs (two sets, 26) the
    # tiles learnt kernels from the texture that explained their spectra better than no blur
    # did, and made 21 of 26 worse, by 1.3 to 26.8 dB, where `run` leaves all but one as they
    # are. Windows that disagree, as a blur varying across the frame makes them, or that agree
    # on a kernel refused for another reason, leave the verdict to the tiles
    # (docs/MEASUREMENTS.md).
    if blur.sharp:
        return deblur_uniform(image, psf, blur, settings, deblurring, started)
    with ThreadPoolExecutor(2, thread_name_prefix="whole-picture") as pool:  # beside the tiles
        whole = pool.submit(whole_kernel, image, size, window, settings.clip_level)
        noise = pool.submit(estimate_noise_model, image)
        tiles_progress(0.0, Stage.ESTIMATING)
        found = (
            estimate_grid(image, size, grid, settings.clip_level, tiles_progress)
            if grid != (1, 1)
            else [whole.result()]  # one part, the whole picture: its kernel, learnt where asked
        )
        overall = whole.result()
        chosen = choose_kernels(image, found, overall, grid, size, noise.result())
    refused = None  # `run`'s report, where its verdict gives way to the tiles'
    if overall is not None and all(estimate is overall for estimate in chosen):
        if not refused_as_varying(blur):
            return deblur_uniform(image, psf, blur, settings, deblurring, started)
        refused = blur
    twins = tile_twins(chosen, found, overall, grid)
    # A kernel narrower than a pixel means no blur, as `run` judges a picture: deblurring a
    # sharp tile with it would over-sharpen it, so the tile is smoothed as with no blur.
    kernels = [
        None if estimate is None else estimate[0] if not is_sharp(estimate) else delta
        for estimate in chosen
    ]
    scaled = [None if k is None else resample_psf(k, settings.scale) for k in kernels]
    estimated = time.perf_counter()
    if any(k is not None for k in scaled):
        errors = tile_errors(image, chosen, twins, found)
        result, reports = deblur_grid(
            picture, scaled, grid, replace(settings, scale=1.0), deblurring, errors
        )
    else:  # every tile as it is: the picture as it was, bit for bit (a blend would round it)
        result, reports = picture.copy(), []
    said = describe(chosen, twins, reports)
    if refused is not None:
        said = (said[0], said[1], f"{said[2]}; {RUN_REFUSED.format(refused.confidence)}")
    longest = max(
        (r for r in reports if r is not None),
        key=lambda r: r.iterations,
        default=None,
    )
    report = (
        DeblurReport.left_as_is(settings.scale)
        if longest is None
        else replace(longest, seconds=time.perf_counter() - estimated, scale=settings.scale)
    )
    windows = [None if estimate is None else estimate[1].window for estimate in chosen]
    # A tile left as it is shows a delta as wide as its neighbours' kernels; when every tile is
    # left, the grid holds the 1 px delta of "no blur", as `run` saves it.
    blank = delta if any(k is not None for k in kernels) else np.ones((1, 1), np.float32)
    used = [blank if k is None else k for k in kernels]
    seconds = estimated - started
    return result, report, VaryingReport(grid, used, windows, False, seconds, *said)


def deblur_uniform(
    image: np.ndarray,
    psf: np.ndarray,
    blur: BlurReport,
    settings: DeblurSettings,
    deblurring: Progress | None,
    started: float,
) -> tuple[np.ndarray, DeblurReport, VaryingReport]:
    """`image` treated in one piece as `run` treats it, when every tile took the whole picture's
    kernel (unless `refused_as_varying`): deblurred with `blind.estimate_blur`'s kernel,
    counting its error as noise, or left as it is when that found none.

    Parameters
    ----------
    image : ndarray of float32, shape (H, W, C)
        The linear picture.
    psf : ndarray
        `blind.estimate_blur`'s kernel.
    blur : BlurReport
        Its report.
    settings : DeblurSettings
        What the user chose (see `deblur_varying`).
    deblurring : Progress or None
        Called with the share of the deblurring done and the stage; None: no report.
    started : float
        When the whole run began (`time.perf_counter`), for the estimate's seconds.

    Returns
    -------
    tuple of (ndarray, DeblurReport, VaryingReport)
        What `deblur_varying` returns, on a 1 x 1 grid, `uniform` set.

    Raises
    ------
    InputError
        As `rl_tv.deblur` does.
    """
    seconds = time.perf_counter() - started
    if blur.kernel == NO_BLUR:
        result, report = shrink_area(image, settings.scale), DeblurReport.left_as_is(settings.scale)
    else:
        result, report = deblur(image, psf, settings, deblurring, blur.kernel_error)
    start = "no part of the frame is deblurred" if blur.kernel == NO_BLUR else SAME_BLUR
    said = VaryingReport(
        (1, 1), [psf], [blur.window], True, seconds, blur.kernel, blur.confidence,
        f"{start}: {blur.reason}",
    )  # fmt: skip
    return result, report, said


def refused_as_varying(blur: BlurReport) -> bool:
    """Whether `run` left the picture as it is because its two windows' kernels disagree.

    A blur that varies across the frame fails that check by nature (the two windows see two
    blurs), so where every tile took the whole picture's kernel, the tiles' verdict stands
    (`RUN_REFUSED`). Not where `run` found a kernel (it is used in one piece), where its two
    windows agreed on a kernel that means no blur (a slightly soft star field, agreement 0.999,
    lost 0.12 dB deblurred tile by tile with the tiles' kernel), or where it could not check the
    kernel on a second window.

    Parameters
    ----------
    blur : BlurReport
        `blind.estimate_blur`'s report on the whole picture.

    Returns
    -------
    bool
        True when its kind is `NO_BLUR` and its confidence (the windows' agreement) under
        `blind.AGREEMENT`, with a second window to check on.
    """
    checked = blur.check_window != blur.window
    return blur.kernel == NO_BLUR and checked and blur.confidence < AGREEMENT


def is_sharp(estimate: Estimate) -> bool:
    """Whether a kernel is narrower than a pixel: no blur, as `run` judges a picture.

    `run` also takes a kernel that lets a tenth of every frequency through for no blur
    (`blind.sharp_learnt`); a tile's kernel is not, as it is not checked on a second window: on
    a synthetic rotation that rule took a short blur's tile, learnt as a peak on a pedestal, for
    sharp (docs/MEASUREMENTS.md).

    Parameters
    ----------
    estimate : tuple of (ndarray, PsfReport)
        The kernel and its report.

    Returns
    -------
    bool
        Whether the kernel's rms radius (`kernel_spread`) is under `blind.SHARP_SPREAD` px.
    """
    return kernel_spread(estimate[0]) < SHARP_SPREAD


def describe(
    chosen: list[Estimate | None],
    twins: list[np.ndarray | None],
    reports: Sequence[DeblurReport | None],
) -> tuple[str, float, str]:
    """The kind of kernel used, the confidence and the reason, in words, for the tiles' kernels.

    Parameters
    ----------
    chosen : list of (ndarray, PsfReport) or None
        The estimate each tile takes, row by row (`choose_kernels`); None: left as it is.
    twins : list of ndarray or None
        Each tile's twin, row by row (`tile_twins`).
    reports : sequence of DeblurReport or None
        Each tile's deblur, row by row (`deblur_grid`; empty when no tile was deblurred). A
        tile whose deblur handed it back as it was counts as left as it is: with its kernel it
        would not keep its light, so that kernel cannot have made it (`StopReason.UNEXPLAINED`),
        or it is black, with nothing to deblur (`StopReason.NO_BLUR`).

    Returns
    -------
    kind : str
        `VARYING`; `NO_BLUR` when every tile is left as it is.
    confidence : float
        `neighbour_agreement`; 0.0 when every tile is left as it is.
    reason : str
        How many tiles were deblurred, sharp already or left as they are.
    """
    used = sum(estimate is not None for estimate in chosen)
    if used == 0:
        return NO_BLUR, 0.0, NOTHING_EXPLAINED
    confidence = neighbour_agreement(chosen, twins)
    sharp = sum(estimate is not None and is_sharp(estimate) for estimate in chosen)
    left = len(chosen) - used
    handed_back = [
        report.stop_reason
        for estimate, report in zip(chosen, reports, strict=True)
        if estimate is not None and not is_sharp(estimate) and report is not None
    ]
    back = handed_back.count(StopReason.UNEXPLAINED)
    black = handed_back.count(StopReason.NO_BLUR)
    clauses = [
        f"the blur varies across the frame: {used - sharp - back - black} of {len(chosen)} parts "
        "deblurred, each with the kernel that explains it best",
        _count(sharp, "sharp already: only its noise is smoothed",
               "sharp already: only their noise is smoothed"),
        _count(left, "left as it is: no kernel explains it",
               "left as they are: no kernel explains them"),
        _count(back, "left as it is: deblurred with its kernel it would not keep its light",
               "left as they are: deblurred with their kernels they would not keep their light"),
        _count(black, "left as it is: black, with nothing to deblur",
               "left as they are: black, with nothing to deblur"),
    ]  # fmt: skip
    reason = "; ".join(clause for clause in clauses if clause)
    return VARYING, confidence, reason


def _count(number: int, one: str, many: str) -> str:
    """ "1 `one`", "N `many`", or nothing for none."""
    return "" if number == 0 else f"1 {one}" if number == 1 else f"{number} {many}"


def neighbour_agreement(chosen: list[Estimate | None], twins: list[np.ndarray | None]) -> float:
    """How alike each tile's kernel is to one learnt independently around it.

    For each tile with a kernel, its `blind.similarity` to its twin (`UNCHECKED` for a tile
    with no twin), averaged over those tiles.

    Parameters
    ----------
    chosen : list of (ndarray, PsfReport) or None
        The estimate each tile takes, row by row; None: left as it is.
    twins : list of ndarray or None
        Each tile's twin, row by row (`tile_twins`).

    Returns
    -------
    float
        The agreement, 0..1, to 3 decimals; NaN (with numpy's warning) when no tile has a
        kernel.
    """
    scores = [
        UNCHECKED if twin is None else similarity(estimate[0], twin)
        for estimate, twin in zip(chosen, twins, strict=True)
        if estimate is not None
    ]
    return round(float(np.clip(np.mean(scores), 0, 1)), 3)


def tile_twins(
    chosen: list[Estimate | None],
    found: list[Estimate | None],
    overall: Estimate | None,
    grid: tuple[int, int],
) -> list[np.ndarray | None]:
    """Each tile's twin: the kernel learnt independently around it most alike to the one it takes.

    Parameters
    ----------
    chosen : list of (ndarray, PsfReport) or None
        The estimate each tile takes, row by row (`choose_kernels`); None: left as it is.
    found : list of (ndarray, PsfReport) or None
        Each tile's own estimate, row by row.
    overall : tuple of (ndarray, PsfReport), or None
        The whole picture's kernel and report.
    grid : tuple of int
        The grid, (rows, cols).

    Returns
    -------
    list of ndarray or None
        Row by row: of the estimates of the tile and its neighbours and of the whole picture
        learnt on windows that do not overlap the tile's estimate's (the same pixels learnt
        twice are no second view: the whole picture's window may lie in a tile's), the kernel
        most alike to it (`blind.similarity`); None for a tile left as it is, or with none.
    """
    twins: list[np.ndarray | None] = []
    for t, estimate in enumerate(chosen):
        if estimate is None:
            twins.append(None)
            continue
        kernel, window = estimate[0], estimate[1].window
        near = [found[g] for g in neighbourhood(t, grid)]
        others = [
            o[0] for o in (overall, *near) if o is not None and not overlap(o[1].window, window)
        ]
        twins.append(max(others, key=lambda other: similarity(kernel, other), default=None))
    return twins


def tile_errors(
    image: np.ndarray,
    chosen: list[Estimate | None],
    twins: list[np.ndarray | None],
    found: list[Estimate | None],
) -> list[float]:
    """Each tile's kernel's error over the noise variance, measured against its twin.

    As `run` measures a kernel's error against the kernel of its second window (`blind`,
    `kernel_error.kernel_error_ratio`); the twin is the most alike of the kernels learnt around
    the tile (`tile_twins`): a turning camera's blur changes little from a tile to the next, so
    their difference is mostly their errors. The error ``(k - k_twin) * x`` depends on the
    content ``x`` it blurs, so it is measured on the window the kernel was learnt on and on the
    tile's own window (where the tile's estimate was learnt: the tile's most detailed part,
    which the deblur must not ring on), and the larger counts. On the rotation benchmark the
    tile's window alone lost a quarter of the gain; the larger of the two kept the gain, and on
    four photographs the benchmark never used cut the worst tile's loss from 4.3 to 2.6 dB
    (docs/MEASUREMENTS.md).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    chosen : list of (ndarray, PsfReport) or None
        The estimate each tile takes, row by row (`choose_kernels`); None: left as it is.
    twins : list of ndarray or None
        Each tile's twin, row by row (`tile_twins`); None: no error is measured.
    found : list of (ndarray, PsfReport) or None
        Each tile's own estimate, row by row (`estimate_grid`), for its window; None: the
        error is measured on the chosen kernel's window only.

    Returns
    -------
    list of float
        Row by row, 0 or more; 0 for a tile left as it is, one sharp already (`is_sharp`: it is
        only smoothed) or one whose kernel has no twin.
    """
    errors = []
    for estimate, twin, own in zip(chosen, twins, found, strict=True):
        if estimate is None or twin is None or is_sharp(estimate):
            errors.append(0.0)
            continue
        kernel, other = same_size(estimate[0], twin)
        windows = {e[1].window for e in (estimate, own) if e is not None}  # one, if the same
        errors.append(max(kernel_error_ratio(patch_of(image, w), kernel, other) for w in windows))
    return errors


def whole_kernel(
    image: np.ndarray, size: int, window: Window | None, clip_level: float | None
) -> Estimate | None:
    """The whole picture's kernel, learnt on one window (`estimate_psf`).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    size : int
        The kernel's size, in pixels (odd).
    window : Window or None
        Where to learn it, (x, y, width, height) in pixels; None: automatic.
    clip_level : float or None
        Where the sensor clipped; None: detected.

    Returns
    -------
    tuple of (ndarray, PsfReport), or None
        The kernel and its report; None when `estimate_psf` raised a `ValueError`: the estimate
        broke down (a NaN), or its `InputError` (a window too flat, a bad size). The tiles'
        estimates may still succeed.
    """
    try:
        return estimate_psf(image, size, window, None, clip_level)
    except ValueError:
        return None
