"""Blur that varies across the frame: one kernel per tile of a grid, blended smoothly.

Camera shake includes rotation (roll about the lens axis, and yaw and pitch seen through a wide
lens), so the blur of a hand-held shot is longer in the corners than in the centre and changes
direction across the frame (Whyte, Sivic, Zisserman and Ponce, "Non-uniform deblurring for shaken
images", IJCV 98, 2012, doi:10.1007/s11263-011-0502-7). Over a region a few hundred pixels wide it
is close to one kernel, which is what the efficient filter flow of Hirsch, Sra, Schoelkopf and
Harmeling ("Efficient filter flow for space-variant multiframe blind deconvolution", CVPR 2010,
doi:10.1109/CVPR.2010.5540158) builds on: overlapping patches, each with its own kernel, blended
by a partition of unity, every patch at FFT speed. Here:

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
   `LEAVE_MARGIN`), the tile is left as it is: a kernel that does not fit makes it worse. With
   no estimate anywhere (a flat or featureless picture) every tile is left as it is, as `run`
   leaves such a picture. The tiles are scored on all cores at once, as in step 1.
3. **Deblur** (`deblur_grid`): each tile, widened by half a blend ramp and a margin of two kernels
   (so that its own border effects stay outside what is kept), is deblurred with its kernel by
   `rl_tv.deblur`; the results are blended with separable partition-of-unity weights, 1 inside a
   tile and ramping linearly over `RAMP` pixels across each inner border, so the kernel in use
   changes smoothly from tile to tile and the weights sum to one everywhere. (Hirsch et al.
   blend the blurred patches inside one joint deconvolution; blending the deconvolved tiles
   keeps the engine as it is, at the cost of a margin per tile.) A tile left as it is
   contributes the input itself to the blend. A kernel narrower than a pixel means no blur, as
   `run` judges a picture (`is_sharp`): its tile is smoothed as with no blur, not sharpened.

When every tile takes the whole picture's kernel, the blur is uniform, and the picture is treated
in one piece exactly as `run` treats it (`deblur_uniform`): the blur is found by
`blind.estimate_blur`, which checks the kernel on a second window and against the parts of the
frame sharper than it, and falls back to a safe correction or leaves the picture as it is when
the kernel fails (the best window's kernel alone, unchecked, made a slightly soft star field
worse than the input where `run` gained 3.4 dB).

The report says, as `run`'s does, what was done (`reason`), with which kind of kernel (`kernel`:
`VARYING`; `run`'s kind when uniform; `NO_BLUR` when every tile is left as it is) and how sure it
is (`confidence`, `neighbour_agreement`): blur that varies across the frame varies smoothly, so
the kernel a tile takes should be alike to one learnt independently around it.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from worker.deconv.blind import (
    NO_BLUR,
    SHARP_SPREAD,
    UNCHECKED,
    estimate_blur,
    similarity,
)
from worker.deconv.local import kernel_evidence
from worker.deconv.noise import NoiseModel, estimate_noise_model
from worker.deconv.parametric import kernel_spread
from worker.deconv.preview import check_preview
from worker.deconv.psf import PsfReport, estimate_psf, luminance
from worker.deconv.psf_tools import resample_psf
from worker.deconv.rl_tv import DeblurReport, deblur
from worker.deconv.settings import DeblurSettings
from worker.deconv.window import Window, check_room, choose_window, learning_patch, window_side
from worker.errors import InputError
from worker.parallel import cpu_count
from worker.resize import shrink_area
from worker.stages import Progress, Stage

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


Estimate = tuple[np.ndarray, PsfReport]  # a kernel and how it was found


@dataclass
class VaryingReport:
    """What `deblur_varying` found: the grid (rows, cols), the kernels used per tile (row by
    row; a delta where the tile was left as it is), the windows they were learnt on (None where
    left as it is), and whether the blur was found uniform (then the grid is 1 x 1 and its kernel
    the one `run` would use, of any size: `deblur_uniform`); the kind of kernel used, the
    confidence and the reason, as in `blind.BlurReport` (`describe`)."""

    grid: tuple[int, int]
    kernels: list[np.ndarray]
    windows: list[Window | None]
    uniform: bool
    seconds: float
    kernel: str
    confidence: float
    reason: str


def grid_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """Tiles per column and row: up to `GRID`, each tile at least `MIN_TILE_WINDOWS` windows."""
    side = MIN_TILE_WINDOWS * window_side((10**9, 10**9), size)
    return max(1, min(GRID, shape[0] // side)), max(1, min(GRID, shape[1] // side))


def bounds(length: int, parts: int) -> np.ndarray:
    """The `parts + 1` edges splitting `length` into nearly equal parts."""
    return np.linspace(0, length, parts + 1).round().astype(int)


def tile_views(image: np.ndarray, grid: tuple[int, int]) -> list[tuple[int, int, np.ndarray]]:
    """The tiles of `image` (row by row): each one's top and left edge and a view of it."""
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
    """The kernel of each tile (row by row) with its report (the window in the picture's
    coordinates); None where the tile has too little detail or the estimate failed."""
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
    fails, on the next one away from it (up to `ATTEMPTS` windows); None if all fail."""
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
    """Each tile's kernel (row by row), chosen among the whole picture's (`overall`), the tile's
    own estimate and its neighbours' as the one that explains the tile best: the highest mean
    `kernel_evidence` margin over its patches, the whole picture's kernel getting `SWITCH`
    ahead (another must do clearly better); None (leave the tile as it is) when even the best
    stays under `LEAVE_MARGIN`. Tile estimates whose mass spreads (root mean square
    about the centroid) over more than `MAX_SPREAD` kernel sizes are left out: a straight blur
    as long as the kernel's diagonal spreads over 0.41, a blob filling the kernel (what an
    out-of-focus tile or one without real edges can give) more; it would explain the tile's
    softness but deblur it into ringing. `model`: the picture's noise (None: fitted here).
    With no estimate at all (a flat or featureless picture) every tile is left as it is."""
    known = {
        t: estimate
        for t, estimate in enumerate(estimates)
        if estimate is not None and kernel_spread(estimate[0]) <= MAX_SPREAD * size
    }
    if not known and overall is None:
        return [None] * len(estimates)
    if model is None:
        model = estimate_noise_model(image)
    with ThreadPoolExecutor(cpu_count(), thread_name_prefix="tile-choice") as pool:
        pending = []
        for t, (_, _, tile) in enumerate(tile_views(image, grid)):
            near = [g for g in neighbourhood(t, grid) if g in known]
            candidates = [known[g] for g in near or known]
            pending.append(pool.submit(best_kernel, tile, candidates, overall, size, model))
        return [future.result() for future in pending]


def neighbourhood(tile: int, grid: tuple[int, int]) -> list[int]:
    """The tiles (row-by-row indices) of `tile` and its up to eight neighbours on `grid`."""
    i, j = divmod(tile, grid[1])
    rows = range(max(i - 1, 0), min(i + 2, grid[0]))
    return [r * grid[1] + c for r in rows for c in range(max(j - 1, 0), min(j + 2, grid[1]))]


def best_kernel(
    tile: np.ndarray,
    candidates: list[Estimate],
    overall: Estimate | None,
    size: int,
    model: NoiseModel,
) -> Estimate | None:
    """Among `overall` (first, `SWITCH` ahead) and `candidates`, the kernel with the highest
    mean `kernel_evidence` margin over the tile's patches; None when it stays under
    `LEAVE_MARGIN`."""
    if overall is not None:
        candidates = [overall, *candidates]  # first: it wins a tie
    margins, _ = kernel_evidence(tile, [psf for psf, _ in candidates], size, 1, model)
    scores = [float(margin.mean()) for margin in margins]
    if overall is not None:  # the whole picture's kernel unless another clearly does better
        scores[0] += SWITCH
    best = int(np.argmax(scores))
    return candidates[best] if scores[best] >= LEAVE_MARGIN else None


def blend_weights(length: int, edges: np.ndarray, ramp: int) -> np.ndarray:
    """Partition-of-unity weights along one axis, (parts, length): part k is 1 between its edges,
    ramping linearly to 0 over `ramp` px centred on each inner edge; they sum to 1."""
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
) -> tuple[np.ndarray, list[DeblurReport]]:
    """`image` (H, W, C) deblurred tile by tile, each with its kernel (None: the tile as it
    is), blended (see the module); and the report of each tile deblurred."""
    height, width, _ = image.shape
    rows, cols = bounds(height, grid[0]), bounds(width, grid[1])
    ramp = min(RAMP, int(np.diff(rows).min()) // 2, int(np.diff(cols).min()) // 2)
    row_weights, col_weights = blend_weights(height, rows, ramp), blend_weights(width, cols, ramp)
    out = np.zeros(image.shape, dtype=np.float32)
    reports = []
    for t, kernel in enumerate(kernels):
        i, j = divmod(t, grid[1])
        reach = ramp // 2 + (0 if kernel is None else 2 * kernel.shape[0])
        top, bottom = max(rows[i] - reach, 0), min(rows[i + 1] + reach, height)
        left, right = max(cols[j] - reach, 0), min(cols[j + 1] + reach, width)

        def tile_progress(fraction: float, stage: str, done: int = t) -> None:
            if progress is not None:
                progress((done + fraction) / len(kernels), stage)

        sharp = image[top:bottom, left:right]
        if kernel is not None:
            sharp, report = deblur(sharp, kernel, settings, tile_progress)
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
    """Estimate the blur of `image` (float32 (H, W, C), linear) on a grid of tiles and remove it,
    tile by tile, blended (see the module); `size` is the largest kernel to estimate (odd);
    `window` is where to learn the whole picture's kernel (None: automatic).

    Returns the result (the downsized shape for a preview, `settings.scale` < 1), a report like
    `rl_tv.deblur`'s (its iterations the most of any tile's, its seconds the whole run's) and
    the `VaryingReport`. A picture with nothing to learn a blur from comes back as it is; one too
    small to learn from raises `InputError` (`check_room`), as `run` does.
    """
    started = time.perf_counter()
    check_room(image.shape[:2])
    grid = grid_shape(image.shape[:2], size)
    count = grid[0] * grid[1] + 1  # estimates: the whole picture's, then each tile's

    def tiles_progress(fraction: float, stage: str) -> None:
        if estimating is not None:
            estimating((1 + fraction * (count - 1)) / count, stage)

    delta = np.zeros((size, size), np.float32)
    delta[size // 2, size // 2] = 1
    # A window you gave, and a preview too small for the tiles' kernels, are refused at once,
    # not after the tiles' work.
    picture = shrink_area(image, settings.scale)
    check_preview(picture, resample_psf(delta, settings.scale), settings.scale)
    if window is not None:
        learning_patch(luminance(image), window, size)
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
    if overall is not None and all(estimate is overall for estimate in chosen):
        return deblur_uniform(image, size, settings, window, deblurring, started)
    said = describe(chosen, found, overall, grid)
    # A kernel narrower than a pixel means no blur, as `run` judges a picture: deblurring a
    # sharp tile with it would over-sharpen it, so the tile is smoothed as with no blur.
    kernels = [
        None if estimate is None else estimate[0] if not is_sharp(estimate) else delta
        for estimate in chosen
    ]
    scaled = [None if k is None else resample_psf(k, settings.scale) for k in kernels]
    if any(k is not None for k in scaled):
        result, reports = deblur_grid(
            picture, scaled, grid, replace(settings, scale=1.0), deblurring
        )
    else:  # every tile as it is: the picture as it was, bit for bit (a blend would round it)
        result, reports = picture.copy(), []
    seconds = time.perf_counter() - started
    longest = max(
        reports, key=lambda r: r.iterations, default=DeblurReport.left_as_is(settings.scale)
    )
    report = replace(longest, seconds=seconds, scale=settings.scale)
    windows = [None if estimate is None else estimate[1].window for estimate in chosen]
    used = [delta if k is None else k for k in kernels]
    return result, report, VaryingReport(grid, used, windows, False, seconds, *said)


def deblur_uniform(
    image: np.ndarray,
    size: int,
    settings: DeblurSettings,
    window: Window | None,
    deblurring: Progress | None,
    started: float,
) -> tuple[np.ndarray, DeblurReport, VaryingReport]:
    """`image` treated in one piece as `run` treats it, when every tile took the whole picture's
    kernel: the blur found and checked by `blind.estimate_blur` (largest `size`, learnt on
    `window`), the picture deblurred with it counting its error as noise, or left as it is
    when none was found. Returns what `deblur_varying` returns, on a 1 x 1 grid."""
    psf, blur = estimate_blur(image, size, window, None, settings.clip_level)
    if blur.kernel == NO_BLUR:
        result, report = shrink_area(image, settings.scale), DeblurReport.left_as_is(settings.scale)
    else:
        result, report = deblur(image, psf, settings, deblurring, blur.kernel_error)
    seconds = time.perf_counter() - started
    reason = f"the blur is the same across the frame: {blur.reason}"
    said = VaryingReport(
        (1, 1), [psf], [blur.window], True, seconds, blur.kernel, blur.confidence, reason
    )
    return result, replace(report, seconds=seconds), said


def is_sharp(estimate: Estimate) -> bool:
    """Whether a kernel is narrower than a pixel (rms radius under `blind.SHARP_SPREAD`): no
    blur, as `run` judges a picture."""
    return kernel_spread(estimate[0]) < SHARP_SPREAD


def describe(
    chosen: list[Estimate | None],
    found: list[Estimate | None],
    overall: Estimate | None,
    grid: tuple[int, int],
) -> tuple[str, float, str]:
    """The kind of kernel used, the confidence (`neighbour_agreement`) and the reason, in words,
    for the tiles' `chosen` kernels (row by row; None: left as it is)."""
    used = sum(estimate is not None for estimate in chosen)
    if used == 0:
        return NO_BLUR, 0.0, NOTHING_EXPLAINED
    confidence = neighbour_agreement(chosen, found, overall, grid)
    sharp = sum(estimate is not None and is_sharp(estimate) for estimate in chosen)
    left = len(chosen) - used
    clauses = [
        f"the blur varies across the frame: {used - sharp} of {len(chosen)} parts deblurred, "
        "each with the kernel that explains it best",
        _count(sharp, "sharp already: only its noise is smoothed",
               "sharp already: only their noise is smoothed"),
        _count(left, "left as it is: no kernel explains it",
               "left as they are: no kernel explains them"),
    ]  # fmt: skip
    reason = "; ".join(clause for clause in clauses if clause)
    return VARYING, confidence, reason


def _count(number: int, one: str, many: str) -> str:
    """ "1 `one`", "N `many`", or nothing for none."""
    return "" if number == 0 else f"1 {one}" if number == 1 else f"{number} {many}"


def neighbour_agreement(
    chosen: list[Estimate | None],
    found: list[Estimate | None],
    overall: Estimate | None,
    grid: tuple[int, int],
) -> float:
    """How alike each tile's kernel is to one learnt independently around it, 0..1: for each
    tile with a kernel, the highest `blind.similarity` between it and the other estimates of
    the tile and its neighbours (`found`, row by row) and of the whole picture (`overall`),
    averaged over those tiles (`UNCHECKED` for a tile with no other estimate to compare)."""
    scores = []
    for t, estimate in enumerate(chosen):
        if estimate is None:
            continue
        near = [found[g] for g in neighbourhood(t, grid)]
        others = [o[0] for o in (overall, *near) if o is not None and o is not estimate]
        alike = [similarity(estimate[0], other) for other in others]
        scores.append(max(alike, default=UNCHECKED))
    return round(float(np.clip(np.mean(scores), 0, 1)), 3)


def whole_kernel(
    image: np.ndarray, size: int, window: Window | None, clip_level: float | None
) -> Estimate | None:
    """The whole picture's kernel, learnt on `window` (None: automatic) as `run` does; None when
    the estimate broke down (a NaN: the tiles' may not)."""
    try:
        return estimate_psf(image, size, window, None, clip_level)
    except ValueError:
        return None
