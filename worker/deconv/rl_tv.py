"""Non-blind deconvolution: Richardson-Lucy with vectorial total variation, accelerated.

Dey et al., "Richardson-Lucy algorithm with total variation regularization for 3D confocal
microscope deconvolution", Microscopy Research and Technique 69 (2006), doi:10.1002/jemt.20294,
on the extended grid of Bertero and Boccacci (see `boundaries`), with a data-term mask `w`. Its
fixed point is

    A^T( w (f + b) / (A u + b) ) - A^T w = lambda d TV / d u,

`A` the valid blur with the PSF, `A^T` its adjoint, TV colour-coupled (see `tv`). Dey et al.
put `-lambda div(grad u / |grad u|)` in the denominator, which changes sign and blows up for the
lambda that noisy photos need. Here the TV gradient is split into
non-negative parts, d TV / d u = u S - V (see `tv.split_gradient_at`), and each goes where it
keeps the update positive (the split-gradient method of Lanteri, Roche and Aime, Inverse
Problems 18, 2002, doi:10.1088/0266-5611/18/5/313):

    v <- v * ( A^T( w (f + b) / A v ) + lambda' (V + b S) ) / ( A^T w + lambda' S v ),
    u = max(v - b, floor),

written for the shifted picture `v = u + b` (`A v = A u + b`, the PSF summing to 1; the TV
gradient is unchanged by the shift, `u S - V = v S - (V + b S)`). It is stable for any lambda
and has the same fixed point. Iterating on `v` is the EM algorithm of the shifted-Poisson model
(Snyder et al., below): each step moves a pixel in proportion to `u + b` rather than to `u`, so
when read noise makes `b` large (noise that hardly grows with the light) it converges in far
fewer iterations than the multiplicative step on `u`. `lambda' = lambda min(A^T w, 1) t`: on the
rim of the extended grid and around clipped highlights, where few observations constrain `u`,
the prior is weakened with the data so that it cannot override them; `t` in (0, 1] is the
texture weight of `texture` (lower where the blurred picture's fine detail stands out of its
noise), so that grass, fur and wood grain are not flattened into cartoon-like patches. `lambda`
is the rule's (`noise.regularisation_weight`, from the noise) times a factor fitted to the
picture by hold-out prediction on a crop (`weight_choice`: smooth content takes more).

The offset `b` is the shifted-Poisson treatment of read noise (Snyder, Hammoud and White, "Image
recovery from data acquired with a charge-coupled-device camera", JOSA A 1993): with the picture's
Poisson-Gaussian noise model `var f = gain y + read_variance` (see `noise.NoiseModel`), `b =
read_variance / gain`, so that each pixel is weighted by the inverse of its own noise variance.
Plain Richardson-Lucy (b = 0) takes all noise for shot noise: it trusts dark pixels far too much,
and noise around black (f > 0 where A u ~ 0) makes the ratio explode and fills dark areas with
speckles. Extended-grid pixels that no usable observation reaches (A^T w ~ 0, e.g. inside a large
clipped highlight) keep their first estimate.

Acceleration: Biggs and Andrews, "Acceleration of iterative image restoration algorithms",
Applied Optics 36 (1997), doi:10.1364/AO.36.001766, the vector extrapolation of MATLAB's deconvlucy:

    y_k = max( x_k + alpha_k (x_k - x_k-1), floor ),   x_k+1 = RL-TV step from y_k,
    g_k = x_k+1 - y_k,   alpha_k+1 = clip( <g_k, g_k-1> / <g_k-1, g_k-1>, 0, 1 ).

Large pictures (over `COARSE_START_PIXELS`) start from a coarse solution: the picture and PSF
halved, deblurred for a few iterations (from an even coarser start if still large), enlarged
bilinearly. The coarse run fixes the large structures at a quarter of the cost per iteration,
so the full-size run needs fewer iterations. Smaller pictures (and the coarsest level) without
clipped pixels start from a few half-quadratic splitting steps of TV-L2 deconvolution
(`half_quadratic`), a
regularised inverse whose every step is one Fourier-domain solve: sharp already, it leaves
Richardson-Lucy-TV fewer iterations (17 -> 12 on a 2 Mpx photo with a 31 px shake,
docs/MEASUREMENTS.md) and lands on a better estimate of finely textured photos under mild blur.
Pictures with clipped pixels, or with nothing to regularise with (`lam` or `sigma` 0), start from
the back-projection A^T(w f) / A^T w (`_first_estimate`).

The run stops on residual whiteness, stagnation or the cap (see `stopping`); from a given
start, whiteness is measured against that of the blurred picture itself (`_blurred_whiteness`):
a coarse start is nearly white already, and measured against its own whiteness the run would
stop before it has sharpened. Stagnation is judged alike from every start: from the coarse start
the full-size run gains little once its iterates change by less than that (0.05-0.07 dB more on
to the 60-iteration cap on the speed benchmark's mosaics, at most 0.05 dB on its photographs;
docs/MEASUREMENTS.md). All arrays are float32. The convolutions run in FFT tiles on all cores
(see `convolve`) and the per-pixel work is fused into them: each tile of `A y` becomes the ratio
(and the whiteness sums) at once, each tile of `A^T ratio` the update, so neither is ever stored
whole.
"""

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial

import numba
import numpy as np

from worker.compiled import compiled
from worker.deconv.boundaries import BlurOperator, data_mask, detect_clip_level, hold_edges
from worker.deconv.convolve import TILE
from worker.deconv.half_quadratic import half_quadratic_start
from worker.deconv.local import blend_locally
from worker.deconv.noise import (
    NoiseModel,
    estimate_noise_model,
    regularisation_weight,
    white_level,
)
from worker.deconv.noise_correlation import for_correlated_noise
from worker.deconv.preview import check_preview, preview_inputs
from worker.deconv.psf_tools import validate_psf
from worker.deconv.settings import MAX_LAMBDA, DeblurSettings
from worker.deconv.stopping import (
    StoppingRule,
    centred_correlations,
    residual_ratio,
    whiteness,
)
from worker.deconv.texture import texture_weight
from worker.deconv.tv import gradient_weights, split_gradient_at
from worker.deconv.weight_choice import (
    ITERATIONS,
    SCALES,
    best_scale,
    grey_centre,
    held_out_pixels,
    prediction_error,
    training_data,
)
from worker.errors import InputError
from worker.numbers import is_finite_number
from worker.parallel import zeroed
from worker.resize import enlarge_bilinear
from worker.stages import Progress, Stage, StopReason

UNOBSERVED = 1e-3  # extended-grid pixels with A^T w under this keep their first estimate
_UNOBSERVED32 = np.float32(UNOBSERVED)  # (in float32 arithmetic, twice the SIMD lanes)
Scalar = float | np.floating  # a compiled kernel's number: float64 or float32
WELL_OBSERVED = 0.5  # stagnation is measured where A^T w is above this (the frame, mostly)
TV_EPS = 0.03  # smoothing of |grad u| in TV, as a fraction of the picture's mean level...
TV_EPS_PER_NOISE = 0.5  # ...and at least this many noise sigmas
POSITIVE_FLOOR = 1e-5  # the estimate is kept above this fraction of the mean level
COARSE_START_PIXELS = 3_000_000  # larger pictures start from a half-size run (`_coarse_start`)...
MIN_COARSE_PSF = 5  # ...if the PSF is at least twice this wide
COARSE_SCALE = 0.5  # the coarse run's scale
COARSE_ITERATIONS = 30  # the coarse run's cap (an iteration there costs a quarter)
WARM_MIN_ITERATIONS = 10  # from a coarse start, stopping rules may fire after this many...
SPLIT_MIN_ITERATIONS = 6  # ...from a half-quadratic start (`half_quadratic`), after this many
# A blur keeps the light (its kernel sums to one), so a deblurred picture's mean level is the
# picture's: on the blind benchmark's 100 results (true kernels and learnt ones, up to 11 % of
# the pixels clipped, as written) it moved by 0.5 % at most, and by 3.7 % on a test scene whose
# pixels are 55 % clipped (the clipped ones are no data). A result whose mean moved by more than
# this share is no deblur of the picture: noise-free content the kernel cannot have made (a 1 px
# checkerboard of white at the clip level under a disc: 99.7 % of the light lost; sharp stripes
# under a disc `run` found: over 5 %, and 42 % once written, its overshoot cut at white) is
# handed back as it was (`StopReason.UNEXPLAINED`); a part of `--varying` so handed back is
# counted among the parts left as they are (`varying.describe`).
LIGHT_KEPT = 0.05


@dataclass
class DeblurReport:
    """What a run did: iterations, which one was returned and why it stopped, the parameters."""

    iterations: int
    best_iteration: int
    stop_reason: StopReason  # `StopReason.NO_BLUR`: `left_as_is`
    noise_sigma: float
    noise_gain: float  # the fitted noise model's shot-noise gain (see `noise.NoiseModel`)...
    noise_offset: float  # ...and its read-noise offset b, in image units
    lam: float
    seconds: float
    scale: float
    lambda_factor: float  # the factor fitted to the picture on the rule's lambda (`weight_choice`)

    def as_dict(self) -> dict:
        """The report as a JSON-ready dict.

        Returns
        -------
        dict
            One entry a field, `lam` spelled ``lambda``; `stop_reason` is a `StopReason`, a
            string.
        """
        record = asdict(self)
        record["lambda"] = record.pop("lam")
        return record

    @classmethod
    def left_as_is(cls, scale: float, why: StopReason = StopReason.NO_BLUR) -> "DeblurReport":
        """The report of a picture left as it is.

        Parameters
        ----------
        scale : float
            The preview's scale, 0 < scale <= 1 (1: not a preview).
        why : StopReason, optional
            `StopReason.NO_BLUR` (no blur found, or nothing to deblur: the default) or
            `StopReason.UNEXPLAINED`.

        Returns
        -------
        DeblurReport
            No iteration, `why`, every number 0 but `scale`.
        """
        return cls(0, 0, why, 0.0, 0.0, 0.0, 0.0, 0.0, scale, 0.0)


@dataclass
class Iterates:
    """What `richardson_lucy_tv` returns.

    Attributes
    ----------
    estimate : ndarray of float32, shape (C, H, W)
        The restored picture on the observed window: a view of the extended grid's planes, not
        a copy (its caller copies it once, into the layout it needs).
    iterations : int
        How many iterations ran.
    best_iteration : int
        The iteration `estimate` comes from (one before the last on a whiteness stop: the last
        within the tolerance).
    stop_reason : StopReason
        Whiteness, stagnation or the cap (see `stopping`).
    """

    estimate: np.ndarray
    iterations: int
    best_iteration: int
    stop_reason: StopReason


@dataclass
class Restoration:
    """What `_restore` returns: the run's `Iterates` and the parameters it chose.

    Attributes
    ----------
    run : Iterates
        The iterations and their result.
    model : NoiseModel
        The picture's fitted noise model.
    offset : float
        The shifted-Poisson offset b used (`noise.NoiseModel.offset`), in image units.
    lam : float
        The TV weight lambda used.
    """

    run: Iterates
    model: NoiseModel
    offset: float
    lam: float


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InputError(f"the image must be shaped (H, W, 1) or (H, W, 3), not {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise InputError(f"the image must hold real numbers, not {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"the image is too small ({image.shape[1]}x{image.shape[0]} pixels)")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise InputError("the image holds NaN or infinite pixels")
    return image


@compiled(parallel=True, fastmath=True)
def _extrapolate(x: np.ndarray, previous: np.ndarray, alpha: float, floor: float, y: np.ndarray):
    """`y = max(x + alpha (x - previous), floor)` (Biggs-Andrews prediction, kept positive)."""
    channels, height, _ = x.shape
    for row in numba.prange(channels * height):
        c = row // height
        i = row - c * height
        for j in range(x.shape[2]):
            y[c, i, j] = max(x[c, i, j] + alpha * (x[c, i, j] - previous[c, i, j]), floor)


@numba.njit(inline="always")
def _updated(
    current: Scalar,
    atw: Scalar,
    total: Scalar,
    neighbours: Scalar,
    correction: Scalar,
    weight: Scalar,
    offset: Scalar,
    floor: Scalar,
) -> Scalar:
    """The split-gradient RL-TV update of one pixel whose TV gradient is `total` u -
    `neighbours` (`split_gradient_at`): `current` times (A^T ratio + weight V) / (A^T w +
    weight S u), shifted by `offset`, kept above `floor`; a pixel too poorly observed (the
    denominator under `UNOBSERVED`) keeps its value. A select rather than a branch, so that a
    loop of these runs in SIMD lanes."""
    shifted = current + offset
    denominator = atw + weight * total * shifted
    observed = denominator > _UNOBSERVED32
    gain = (correction + weight * (neighbours + offset * total)) / (
        denominator if observed else _UNOBSERVED32
    )
    return max(shifted * gain - offset, floor) if observed else current


@numba.njit(inline="always")
def _update_inner(
    y: np.ndarray,
    tv_weights: np.ndarray,
    normalisation: np.ndarray,
    prior: np.ndarray,
    correction: np.ndarray,
    i: int,
    start: int,
    lam: Scalar,
    offset: Scalar,
    floor: Scalar,
    out: np.ndarray,
) -> None:
    """`out[k]` = the update of pixel (i, start + k) of an inner row, none of them on the first
    or last column, from `correction[k]`: all four TV links exist. Every plane is read through
    a view of the row, so that each index is the loop's own and the loop has no branch."""
    a, b = start, start + out.shape[0]
    centre, east, west = y[i, a:b], y[i, a + 1 : b + 1], y[i, a - 1 : b - 1]
    north, south = y[i - 1, a:b], y[i + 1, a:b]
    own, west_weight, north_weight = (
        tv_weights[i, a:b],
        tv_weights[i, a - 1 : b - 1],
        tv_weights[i - 1, a:b],
    )
    atw, weight = normalisation[i, a:b], prior[i, a:b]
    for k in range(out.shape[0]):
        total = 2 * own[k] + west_weight[k] + north_weight[k]
        neighbours = (
            own[k] * (east[k] + south[k]) + west_weight[k] * west[k] + north_weight[k] * north[k]
        )
        out[k] = _updated(
            centre[k], atw[k], total, neighbours, correction[k], lam * weight[k], offset, floor
        )


@compiled(nogil=True, fastmath=True)
def _rl_tv_step(
    y: np.ndarray,
    tv_weights: np.ndarray,
    normalisation: np.ndarray,
    prior: np.ndarray,
    lam: float,
    offset: float,
    floor: float,
    x: np.ndarray,
    x_new: np.ndarray,
    step: np.ndarray,
    top: int,
    left: int,
    correction: np.ndarray,
) -> np.ndarray:
    """One RL-TV update of channel `y` into `x_new` on the tile of `correction` (= A^T ratio)
    whose corner is (top, left); `step` (g_k-1) becomes g_k = x_new - y there.

    Returns float64 [<g_k, g_k-1>, <g_k-1, g_k-1>, ||x_new - x||^2, ||x||^2] over the tile, for
    the acceleration and the stagnation test, counted where A^T w > WELL_OBSERVED: the poorly
    observed rim of the extended grid moves a lot without changing the picture. The TV term is
    scaled down with A^T w on that rim so that it cannot outweigh the little data there. Runs
    without the GIL, so tiles run in parallel. Row by row: the inner pixels in one branch-free
    loop (`_update_inner`, SIMD lanes), the first and last rows and columns, which have fewer TV
    links, apart (`split_gradient_at`), then the sums and the stores in another loop.
    """
    height, width = y.shape
    rows, cols = correction.shape
    # float32 arithmetic (twice the SIMD lanes of float64); the sums per row, then in float64
    lam32, offset32, floor32 = np.float32(lam), np.float32(offset), np.float32(floor)
    dot = old = change = size = 0.0
    updated = np.empty(cols, np.float32)  # one row's new values
    for ti in range(rows):
        i = top + ti
        inner = 0 < i < height - 1
        first = max(1 - left, 0) if inner else cols  # the row's inner pixels: first..last - 1
        last = max(min(width - 1 - left, cols), first) if inner else cols
        if last > first:  # (the first and last rows have no inner pixels: no rows around them)
            _update_inner(
                y,
                tv_weights,
                normalisation,
                prior,
                correction[ti, first:last],
                i,
                left + first,
                lam32,
                offset32,
                floor32,
                updated[first:last],
            )
        for part in range(2):  # the border pixels before and after them
            for tj in range(0, first) if part == 0 else range(last, cols):
                j = left + tj
                total, neighbours = split_gradient_at(y, tv_weights, i, j)
                updated[tj] = _updated(
                    y[i, j],
                    normalisation[i, j],
                    total,
                    neighbours,
                    correction[ti, tj],
                    lam32 * prior[i, j],
                    offset32,
                    floor32,
                )
        row = slice(left, left + cols)
        current, before, atw = y[i, row], x[i, row], normalisation[i, row]
        steps, out = step[i, row], x_new[i, row]
        row_dot = row_old = row_change = row_size = np.float32(0.0)
        for k in range(cols):
            new, previous = updated[k], steps[k]
            g, delta = new - current[k], new - before[k]
            counted = np.float32(1.0) if atw[k] > WELL_OBSERVED else np.float32(0.0)
            row_dot += counted * g * previous
            row_old += counted * previous * previous
            row_change += counted * delta * delta
            row_size += counted * before[k] * before[k]
            steps[k] = g
            out[k] = new
        dot += float(row_dot)
        old += float(row_old)
        change += float(row_change)
        size += float(row_size)
    return np.array([dot, old, change, size])


def _ratio_tile(
    f: np.ndarray,
    mask: np.ndarray,
    offset: float,
    floor: float,
    ratio: np.ndarray,
    top: int,
    left: int,
    blurred: np.ndarray,
) -> np.ndarray:
    """`residual_ratio` on the tile of `blurred` (= A y) whose corner is (top, left)."""
    rows, cols = slice(top, top + blurred.shape[0]), slice(left, left + blurred.shape[1])
    return residual_ratio(
        f[rows, cols], blurred, mask[rows, cols], offset, floor, ratio[rows, cols]
    )


def _first_estimate(
    f: np.ndarray,
    mask: np.ndarray,
    blur: BlurOperator,
    normalisation: np.ndarray,
    floor: float,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """The starting point on the extended grid: the back-projection A^T(w f) / A^T w.

    It is the observation spread back along the PSF (as a first Richardson-Lucy step from a flat
    picture would), so it starts out smooth, with its noise averaged down, and reaches into the
    rim of the extended grid; where fewer than half the kernel's observations exist, the
    nearest observed pixel is used instead. A given `start` (C, h, w) is used instead of the
    back-projection: as it is when it covers the extended grid (`half_quadratic`), else
    enlarged bilinearly to the frame (see `resize.enlarge_bilinear`) and extended to the rim by
    its nearest pixels.
    """
    if start is not None and start.shape[1:] == blur.extended_shape:
        x = start
    else:  # the frame's picture written into the grid's window, then held out to the rim
        x = np.empty((f.shape[0], *blur.extended_shape), np.float32)
        window = x[(slice(None), *blur.window)]
        if start is not None:
            enlarge_bilinear(start, window)
        else:
            window[:] = f
        hold_edges(x, blur.window)
    if start is None:
        well_observed = normalisation > WELL_OBSERVED
        for c in range(f.shape[0]):
            backprojected = blur.adjoint(mask * f[c])
            np.divide(backprojected, normalisation, out=x[c], where=well_observed)
    np.maximum(x, floor, out=x)
    return x


def _blurred_whiteness(
    f: np.ndarray,
    mask: np.ndarray,
    blur: BlurOperator,
    offset: float,
    floor: float,
    scratch: np.ndarray,
    ratio: np.ndarray,
) -> float:
    """The whiteness `W` of the residual left by the blurred picture itself taken as the estimate
    (extended to the rim by its nearest pixels): the structure the blur left, the stopping rule's
    reference. `scratch` (extended grid) and `ratio` (observed window) are planes it may
    overwrite."""
    correlations = np.zeros(5)
    for c in range(f.shape[0]):
        scratch[blur.window] = f[c]
        hold_edges(scratch, blur.window)  # the rim: the nearest observed pixels
        to_ratio = partial(_ratio_tile, f[c], mask, offset, floor, ratio)
        blurred = blur.forward_tiles(scratch, to_ratio)
        assert blurred is not None  # each tile returns its sums
        correlations += centred_correlations(blurred)
    return whiteness(correlations)


def richardson_lucy_tv(
    f: np.ndarray,
    mask: np.ndarray,
    psf: np.ndarray,
    lam: float,
    sigma: float,
    offset: float,
    rule: StoppingRule,
    progress: Progress | None = None,
    tile: int = TILE,
    start: np.ndarray | None = None,
    texture: np.ndarray | None = None,
) -> Iterates:
    """Deconvolve `f` with `psf`: Richardson-Lucy-TV on the extended grid (see the module).

    Parameters
    ----------
    f : ndarray of float32, shape (C, H, W)
        The blurred picture, non-negative, one plane per channel.
    mask : ndarray of float32, shape (H, W)
        The data term's weight `w` (1: use the pixel, 0: ignore it; `boundaries.data_mask`).
    psf : ndarray, shape (kh, kw)
        The kernel, odd-sized, summing to one (`psf_tools.validate_psf`).
    lam : float
        The TV weight lambda.
    sigma : float
        The noise's standard deviation, in image units: TV's smoothing of ``|grad u|`` is at
        least `TV_EPS_PER_NOISE` times it.
    offset : float
        The shifted-Poisson offset b, in image units (see `noise.NoiseModel.offset`).
    rule : StoppingRule
        When to stop (see `stopping`); its state changes as the run goes, and its `reference`
        is set here when `start` is given.
    progress : Progress, optional
        Called after each iteration with the share of `rule.max_iterations` done and
        `Stage.DEBLURRING`; what it raises (cancellation) propagates. None: no report.
    tile : int, optional
        The base FFT tile size (see `BlurOperator`); the result does not depend on it beyond
        rounding.
    start : ndarray of float32, shape (C, h, w), optional
        The first estimate: on the extended grid, (C, H + kh - 1, W + kw - 1), used as it is
        (and overwritten); else on the observed window, at the frame's size or smaller, enlarged
        to the frame and extended to the rim by its nearest pixels (see `_first_estimate`).
        None: the back-projection of `f`.
    texture : ndarray of float32, shape (H + kh - 1, W + kw - 1), optional
        The texture weight `t` of the prior, in (0, 1] (see `texture`); its memory is reused
        (overwritten). None: 1.

    Returns
    -------
    Iterates
        The estimate on the observed window and how the run went: on a whiteness stop the
        estimate is the one before the last (the last within the tolerance), else the last.
    """
    channels, height, width = f.shape
    level = max(float(f.mean()), 1e-12)
    floor, eps = POSITIVE_FLOOR * level, max(TV_EPS_PER_NOISE * sigma, TV_EPS * level)
    with BlurOperator(psf, (height, width), tile=tile) as blur:
        window = (slice(None), *blur.window)  # the observed window, every channel
        normalisation = blur.adjoint(mask)
        # The prior's weight lambda' / lambda, in the texture weight's memory if there is one.
        prior = np.ones(blur.extended_shape, np.float32) if texture is None else texture
        prior *= np.minimum(normalisation, 1)
        del texture
        x = _first_estimate(f, mask, blur, normalisation, floor, start)
        weights = np.empty(blur.extended_shape, dtype=np.float32)
        ratio = np.empty((height, width), dtype=np.float32)
        if start is not None:  # a good start is nearly white already (see `stopping`)
            rule.reference = _blurred_whiteness(f, mask, blur, offset, floor, weights, ratio)
        # `previous` is first written by the first update: the first extrapolation, at alpha 0
        # (y = x), reads x in its place. The update reads `step` (g_k-1, 0 at first) before it
        # writes it: zeros written at once (`zeroed`; a plane of 290 MB at 24 Mpx).
        previous, y, step = np.empty_like(x), np.empty_like(x), zeroed(x.shape, x.dtype)
        alpha, iteration, reason = 0.0, 0, None
        while reason is None:
            iteration += 1
            _extrapolate(x, x if iteration == 1 else previous, alpha, floor, y)
            gradient_weights(y, eps, weights)
            correlations, sums = np.zeros(5), np.zeros(4)
            for c in range(channels):
                # A y, tile by tile, straight into the ratio (and the whiteness sums)...
                to_ratio = partial(_ratio_tile, f[c], mask, offset, floor, ratio)
                blurred = blur.forward_tiles(y[c], to_ratio)
                assert blurred is not None  # each tile returns its sums
                correlations += centred_correlations(blurred)
                # ...then A^T ratio, tile by tile, straight into the update.
                update = partial(_rl_tv_step, y[c], weights, normalisation, prior, lam, offset,
                                 floor, x[c], previous[c], step[c])  # fmt: skip
                tile_sums = blur.adjoint_tiles(ratio, update)
                assert tile_sums is not None
                sums += tile_sums
            x, previous = previous, x
            alpha = float(np.clip(sums[0] / sums[1], 0, 1)) if sums[1] > 0 else 0.0
            change = math.sqrt(sums[2] / sums[3]) if sums[3] > 0 else 0.0
            reason = rule.update(iteration, whiteness(correlations), change)
            if progress is not None:
                progress(min(iteration / rule.max_iterations, 1.0), Stage.DEBLURRING)
        del y, step, weights  # make room for the result
    if reason is StopReason.WHITENESS:  # x_k was computed from y_k-1, the last within the tolerance
        x, iteration_returned = previous, iteration - 1
    else:
        iteration_returned = iteration
    del previous
    assert reason is not None
    return Iterates(x[window], iteration, iteration_returned, reason)


@dataclass
class _DataTerm:
    """What a run restores from, whatever its lambda: the picture and what is measured on it.

    Attributes
    ----------
    f : ndarray of float32, shape (C, H, W)
        The picture, one plane per channel, negative samples as 0.
    mask : ndarray of float32, shape (H, W)
        The data term's weight (`boundaries.data_mask`).
    model : NoiseModel
        The picture's fitted noise model (correlated noise counted).
    offset : float
        The shifted-Poisson offset b (`noise.NoiseModel.offset`), in image units.
    rule_lambda : float
        The rule's lambda (`noise.regularisation_weight`, the kernel's error counted as noise).
    texture : ndarray of float32
        The prior's texture weight on the extended grid (`texture.texture_weight`).
    unclipped : bool
        Whether every pixel is in the data (no clipped highlight).
    """

    f: np.ndarray
    mask: np.ndarray
    model: NoiseModel
    offset: float
    rule_lambda: float
    texture: np.ndarray
    unclipped: bool


def _data_term(
    image: np.ndarray,
    psf: np.ndarray,
    settings: DeblurSettings,
    clip_level: float | None,
    kernel_error: float,
) -> _DataTerm:
    """Measure the noise and the texture of `image` (H, W, C) and derive the rule's lambda."""
    mask = data_mask(image, clip_level)
    model = for_correlated_noise(estimate_noise_model(image, mask), image, mask)
    f = np.ascontiguousarray(image.transpose(2, 0, 1))  # (C, H, W): one plane per channel
    np.maximum(f, 0, out=f)
    white = white_level(f)
    rule_lambda = regularisation_weight(
        model, white, float(f.mean()), settings.priority, kernel_error
    )
    texture = texture_weight(f, mask, model, psf.shape)
    return _DataTerm(f, mask, model, model.offset(white), rule_lambda, texture, bool(mask.all()))


def _run(
    data: _DataTerm,
    psf: np.ndarray,
    settings: DeblurSettings,
    lam: float,
    start: np.ndarray | None,
    progress: Progress | None,
) -> Restoration:
    """Run `richardson_lucy_tv` on `data` with `lam`, from `start` (a coarse start) if given,
    else, without clipped pixels, from a few half-quadratic TV-L2 steps (`half_quadratic`),
    else from the back-projection. The run reuses the memory of `data.texture`."""
    min_iterations = WARM_MIN_ITERATIONS  # from the coarse start
    # Around clipped highlights a half-quadratic start leaves more ringing (half as much again in
    # tests/deconv: test_saturated_highlights_do_not_ring): such pictures start from the
    # back-projection (`_first_estimate`).
    if start is None and data.unclipped:
        start = half_quadratic_start(
            data.f, data.mask, psf, data.texture, lam=lam, sigma=data.model.sigma,
            offset=data.offset,
        )  # fmt: skip
        min_iterations = SPLIT_MIN_ITERATIONS
    if start is None:  # from the back-projection
        min_iterations = StoppingRule.min_iterations
    rule = StoppingRule(settings.tolerance, settings.max_iterations, min_iterations=min_iterations)
    run = richardson_lucy_tv(
        data.f, data.mask, psf, lam, data.model.sigma, data.offset, rule, progress,
        start=start, texture=data.texture,
    )  # fmt: skip
    return Restoration(run, data.model, data.offset, lam)


def _scaled(rule_lambda: float, weight_scale: float) -> float:
    """The rule's lambda times the picture's factor, at most `MAX_LAMBDA`."""
    return min(rule_lambda * weight_scale, MAX_LAMBDA)


def _restore(
    image: np.ndarray,
    psf: np.ndarray,
    settings: DeblurSettings,
    clip_level: float | None,
    progress: Progress | None = None,
    kernel_error: float = 0.0,
    weight_scale: float = 1.0,
    data: _DataTerm | None = None,
) -> Restoration:
    """Measure the noise, derive lambda (with the kernel's error counted as noise,
    `noise.regularisation_weight`, times `weight_scale`) and run `richardson_lucy_tv` on `image`
    (H, W, C), from a coarse start if it is large (see `_coarse_start`), else as `_run` starts.
    `data`, where given, is `image`'s data term, already measured (`_weight_scale`).

    Returns
    -------
    Restoration
        The run (its estimate is (C, H, W)) and the noise model, offset and lambda it used.
    """
    start = _coarse_start(image, psf, settings, clip_level, kernel_error, weight_scale)
    if data is None:
        data = _data_term(image, psf, settings, clip_level, kernel_error)
    lam = settings.lam
    if lam is None:
        lam = _scaled(data.rule_lambda, weight_scale)
    return _run(data, psf, settings, lam, start, progress)


def _coarse_start(
    image: np.ndarray,
    psf: np.ndarray,
    settings: DeblurSettings,
    clip_level: float | None,
    kernel_error: float,
    weight_scale: float,
) -> np.ndarray | None:
    """A first estimate (C, H / 2, W / 2) for a large picture: the picture deblurred at half size.

    At half size an iteration costs a quarter; the coarse result, enlarged (bilinear), already
    holds the large-scale structure, so the full-size run needs fewer iterations. It is
    enlarged where the full-size run makes its first estimate, so that only the small one is
    held during the run (a quarter of the memory). The half-size
    run starts the same way when it is large itself (a pyramid). Pictures under
    `COARSE_START_PIXELS` (and PSFs too small to halve) get None: `_restore` starts them from
    the half-quadratic estimate, or from the back-projection where pixels are clipped.
    """
    height, width, _ = image.shape
    if height * width < COARSE_START_PIXELS or min(psf.shape) < 2 * MIN_COARSE_PSF:
        return None
    small, small_psf = preview_inputs(image, psf, COARSE_SCALE)
    cap = min(settings.max_iterations, COARSE_ITERATIONS)
    coarse = replace(settings, max_iterations=cap)
    restoration = _restore(small, small_psf, coarse, clip_level, None, kernel_error, weight_scale)
    return restoration.run.estimate


def keeps_light(image: np.ndarray, result: np.ndarray) -> bool:
    """Whether `result` keeps the light of `image`, as a deblur of it must (`LIGHT_KEPT`).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The blurred picture, linear.
    result : ndarray, shape (H, W, C)
        Its deblurred version.

    Returns
    -------
    bool
        True when their mean levels differ by at most `LIGHT_KEPT` of the picture's (a black
        picture keeps its light when its result is black too).
    """
    level = float(image.mean(dtype=np.float64))
    return abs(float(result.mean(dtype=np.float64)) - level) <= LIGHT_KEPT * level


def _weight_scale(
    image: np.ndarray,
    psf: np.ndarray,
    settings: DeblurSettings,
    clip_level: float | None,
    kernel_error: float,
) -> tuple[float, _DataTerm | None]:
    """The factor on the rule's lambda that best predicts held-out pixels (`weight_choice`).

    The trials run side by side, one thread each, their compiled loops on one core (numba's
    thread count is the calling thread's own): a crop's convolution is one FFT tile, which one
    trial alone would run on one core. Beside them, a picture under `COARSE_START_PIXELS` gets
    its own data term measured, which its run needs next and which would not keep both cores
    busy either; a larger picture's is measured after its coarse run, so that the two are not
    held at once. On the 2-core test machine a 2 Mpx picture's `deblur` took 2.56-2.61 s
    where with the trials one after the other it took 2.86-2.97 s (docs/MEASUREMENTS.md, speed).

    Returns
    -------
    scale : float
        One of `weight_choice.SCALES`: each is tried on the picture's grey centre crop, its
        held-out pixels out of the data, for at most `weight_choice.ITERATIONS` iterations.
    data : _DataTerm or None
        `image`'s data term (`_data_term`); None for a picture of `COARSE_START_PIXELS` or more.
    """
    crop = grey_centre(image)  # under `COARSE_START_PIXELS`: no coarse start
    held = held_out_pixels(crop.shape[:2])
    trial = replace(settings, max_iterations=min(settings.max_iterations, ITERATIONS))
    data = _data_term(crop, psf, settings, clip_level, kernel_error)
    f, mask = training_data(data.f, data.mask, held)

    def error_at(scale: float) -> float:
        numba.set_num_threads(1)
        # Each trial gets its own texture weight: a run reuses its memory.
        training = replace(data, f=f, mask=mask, texture=data.texture.copy())
        run = _run(training, psf, trial, _scaled(data.rule_lambda, scale), None, None).run
        return prediction_error(run.estimate, data.f, psf, held)

    height, width, _ = image.shape
    with ThreadPoolExecutor(len(SCALES) + 1, thread_name_prefix="weight-trial") as pool:
        picture = None
        if height * width < COARSE_START_PIXELS:
            picture = pool.submit(_data_term, image, psf, settings, clip_level, kernel_error)
        scale = best_scale(list(pool.map(error_at, SCALES)))
        return scale, None if picture is None else picture.result()


def deblur(
    image: np.ndarray,
    psf: np.ndarray,
    settings: DeblurSettings = DeblurSettings(),
    progress: Progress | None = None,
    kernel_error: float = 0.0,
    weight_scale: float | None = None,
) -> tuple[np.ndarray, DeblurReport]:
    """Deblur `image`, blurred by `psf`.

    Negative samples (out-of-gamut colours) count as 0 in the data term; a picture with no
    sample above 0 (black) is handed back as it is (`DeblurReport.left_as_is`). In local mode
    (`settings.local`) the result is blended with the input (`local.blend_locally`); where the
    kernel explains no part of the picture, that is the input as it is, reported as such
    (`DeblurReport.left_as_is`: it said the run's iterations, for a picture it left alone).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture in linear light, C in {1, 3}, real numbers (converted to float32).
    psf : ndarray, shape (kh, kw)
        The kernel (convolution convention): odd-sized, non-negative, no larger than the image;
        it is divided by its sum (`psf_tools.validate_psf`).
    settings : DeblurSettings, optional
        What the user chose; at `scale` < 1 the image and the PSF are downsized together (a
        preview).
    progress : Progress, optional
        Called with the share done and `Stage.DEBLURRING`; what it raises (cancellation)
        propagates. None: no report.
    kernel_error : float, optional
        A learnt kernel's error as a share of the noise variance (`worker.deconv.kernel_error`),
        at least 0, which raises lambda (never above the settings' `MAX_LAMBDA`, beyond which
        the maths overflows); 0 takes `psf` as exact. A lambda set in `settings` is used as it
        is.
    weight_scale : float, optional
        The factor on the rule's lambda; None: the one of `weight_choice.SCALES` that best
        predicts held-out pixels of the picture (`_weight_scale`), or 1 in local mode. Unused
        when `settings` sets lambda.

    Returns
    -------
    sharp : ndarray of float32, shape (H, W, C)
        The deblurred picture; the downsized shape of a preview (`settings.scale` < 1).
    report : DeblurReport
        What the run did and the parameters it chose.

    Raises
    ------
    InputError
        For a bad image, PSF, setting, `kernel_error` or `weight_scale`, or a preview too small
        for the kernel.
    """
    start = time.perf_counter()
    image = _check_image(image)
    psf = validate_psf(psf, image.shape)
    settings.validate()
    if not (is_finite_number(kernel_error) and kernel_error >= 0):
        raise InputError(f"a kernel's error must be a number, at least 0, not {kernel_error!r}")
    if weight_scale is not None and not (is_finite_number(weight_scale) and weight_scale > 0):
        raise InputError(f"a weight's factor must be a number above 0, not {weight_scale!r}")
    if progress is not None:
        progress(0.0, Stage.DEBLURRING)
    black = float(image.max()) <= 0  # no light: nothing a blur spread, nothing to deblur
    image, psf = preview_inputs(image, psf, settings.scale)
    check_preview(image, psf, settings.scale)
    if black:
        return image, DeblurReport.left_as_is(settings.scale)
    clip_level = settings.clip_level
    if clip_level is None:
        clip_level = detect_clip_level(image)
    data = None  # the picture's data term, where measured beside the weight's trials
    if weight_scale is None:
        weight_scale = 1.0
        # Local mode's test of where the kernel explains the picture (`local.misfit`) is
        # calibrated on the rule's lambda: a smoother result fits the data less closely.
        if settings.lam is None and not settings.local:
            weight_scale, data = _weight_scale(image, psf, settings, clip_level, kernel_error)
    restoration = _restore(
        image, psf, settings, clip_level, progress, kernel_error, weight_scale, data
    )
    run, model = restoration.run, restoration.model
    result = np.ascontiguousarray(run.estimate.transpose(1, 2, 0))
    if progress is not None:
        progress(1.0, Stage.DEBLURRING)
    if settings.local:
        blended = blend_locally(image, result, psf, clip_level)
        if blended is None:  # the kernel explains no part of it
            return image, DeblurReport.left_as_is(settings.scale)
        result = blended
    if not keeps_light(image, result):
        return image, DeblurReport.left_as_is(settings.scale, StopReason.UNEXPLAINED)
    report = DeblurReport(
        iterations=run.iterations,
        best_iteration=run.best_iteration,
        stop_reason=run.stop_reason,
        noise_sigma=model.sigma,
        noise_gain=model.gain,
        noise_offset=restoration.offset,
        lam=restoration.lam,
        seconds=time.perf_counter() - start,
        scale=settings.scale,
        lambda_factor=weight_scale if settings.lam is None else 1.0,
    )
    return result, report
