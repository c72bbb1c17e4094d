"""Non-blind deconvolution: Richardson-Lucy with vectorial total variation, accelerated.

Dey et al., "Richardson-Lucy algorithm with total variation regularization for 3D confocal
microscope deconvolution", Microscopy Research and Technique 69 (2006), on the extended grid of
Bertero and Boccacci (see `boundaries`), with a data-term mask `w`:

    u <- u * A^T( w (f + b) / (A u + b) ) / max( A^T w - lambda div( grad u / |grad u|_eps ),
                                               0.1 A^T w )

`A` is the valid blur with the PSF, `A^T` its adjoint, and the TV term is colour-coupled (see
`tv`). The offset `b` (a multiple of the noise sigma) is the shifted-Poisson treatment of read
noise (Snyder, Hammoud and White, "Image recovery from data acquired with a charge-coupled-device
camera", JOSA A 1993): without it, noise around black (f > 0 where A u ~ 0) makes the ratio
explode and dark areas fill with speckles. The denominator is clamped to a fraction of `A^T w`
so it stays positive. Extended-grid pixels that no usable observation reaches (A^T w ~ 0, e.g.
inside a large clipped highlight) keep their first estimate.

Acceleration: Biggs and Andrews, "Acceleration of iterative image restoration algorithms",
Applied Optics 36 (1997), the vector extrapolation of MATLAB's deconvlucy:

    y_k = max( x_k + alpha_k (x_k - x_k-1), floor ),   x_k+1 = RL-TV step from y_k,
    g_k = x_k+1 - y_k,   alpha_k+1 = clip( <g_k, g_k-1> / <g_k-1, g_k-1>, 0, 1 ).

The run stops on residual whiteness, stagnation or the cap (see `stopping`) and returns the
iterate with the whitest residual. All arrays are float32; the per-pixel work is fused numba
loops on all cores, the convolutions FFT tiles (see `convolve`).
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numba
import numpy as np

from worker import paths
from worker.deconv.boundaries import BlurOperator, data_mask, detect_clip_level
from worker.deconv.fft import fftw_wisdom
from worker.deconv.local import blend_locally
from worker.deconv.noise import estimate_noise, regularisation_weight, white_level
from worker.deconv.preview import preview_inputs
from worker.deconv.psf_tools import validate_psf
from worker.deconv.stopping import (
    StoppingRule,
    centred_correlations,
    residual_ratio,
    whiteness,
)
from worker.deconv.tv import divergence_at, gradient_norm
from worker.errors import InputError

Progress = Callable[[float, str], None]
STAGE = "deblurring"
DENOMINATOR_FLOOR = 0.1  # the denominator never falls below this fraction of A^T w
UNOBSERVED = 1e-3  # extended-grid pixels with A^T w under this keep their first estimate
WELL_OBSERVED = 0.5  # stagnation is measured where A^T w is above this (the frame, mostly)
TV_EPS = 0.25  # smoothing of |grad u| in TV, as a fraction of the picture's mean level...
TV_EPS_PER_NOISE = 2.0  # ...and at least this many noise sigmas
POSITIVE_FLOOR = 1e-5  # the estimate is kept above this fraction of the mean level
OFFSET_PER_NOISE = 1.0  # the shifted-Poisson offset b, in noise sigmas


@dataclass(frozen=True)
class DeblurSettings:
    """What the user may choose. Defaults suit most photographs.

    tolerance: percent by which the residual's whiteness may rise above its best before the run
        stops (smaller stops earlier: softer, cleaner; larger: sharper, riskier).
    priority: -1 favours denoising (more regularisation), 0 balances, +1 favours deblurring.
    lam: expert override of the TV weight lambda (None: derived from the noise and priority).
    max_iterations: iteration cap (a safety net; the other rules usually stop earlier).
    scale: 0 < scale <= 1; below 1 a preview: image and PSF are downsized together.
    clip_level: the value at which the sensor clipped (1.0 for integer files); None: detect a
        clipped plateau from the data, if any.
    local: local mode: keep the deblurred picture only where the PSF explains the blur, the
        original elsewhere, blended smoothly (see `worker.deconv.local`).
    """

    tolerance: float = 5.0
    priority: float = 0.0
    lam: float | None = None
    max_iterations: int = 60
    scale: float = 1.0
    clip_level: float | None = None
    local: bool = False

    def validate(self) -> None:
        """Raise `InputError` (one line) when a setting is out of range."""
        checks = [
            (_finite(self.tolerance) and self.tolerance > 0, "the tolerance must be above 0 %"),
            (_finite(self.priority) and -1 <= self.priority <= 1, "priority must be in [-1, 1]"),
            (self.lam is None or (_finite(self.lam) and self.lam >= 0), "lambda must be >= 0"),
            (
                isinstance(self.max_iterations, int) and self.max_iterations >= 1,
                "the iteration cap must be a whole number of at least 1",
            ),
            (_finite(self.scale) and 0 < self.scale <= 1, "scale must be in (0, 1]"),
            (
                self.clip_level is None or (_finite(self.clip_level) and self.clip_level > 0),
                "the clip level must be above 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass
class DeblurReport:
    """What a run did: iterations, which one was returned and why it stopped, the parameters."""

    iterations: int
    best_iteration: int
    stop_reason: str  # "stagnation" | "whiteness" | "cap"
    noise_sigma: float
    lam: float
    seconds: float
    scale: float

    def as_dict(self) -> dict:
        """JSON-ready; `lam` is spelled `lambda`."""
        record = asdict(self)
        record["lambda"] = record.pop("lam")
        return record


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InputError(f"the image must be shaped (H, W, 1) or (H, W, 3), not {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise InputError(f"the image must hold real numbers, not {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"the image is too small ({image.shape[0]}x{image.shape[1]} pixels)")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise InputError("the image holds NaN or infinite pixels")
    return image


@numba.njit(parallel=True, cache=True, fastmath=True)
def _extrapolate(x: np.ndarray, previous: np.ndarray, alpha: float, floor: float, y: np.ndarray):
    """`y = max(x + alpha (x - previous), floor)` (Biggs-Andrews prediction, kept positive)."""
    channels, height, _ = x.shape
    for row in numba.prange(channels * height):
        c = row // height
        i = row - c * height
        for j in range(x.shape[2]):
            y[c, i, j] = max(x[c, i, j] + alpha * (x[c, i, j] - previous[c, i, j]), floor)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _rl_tv_step(
    y: np.ndarray,
    norm: np.ndarray,
    correction: np.ndarray,
    normalisation: np.ndarray,
    lam: float,
    x: np.ndarray,
    x_new: np.ndarray,
    step: np.ndarray,
) -> np.ndarray:
    """One RL-TV update of channel `y` into `x_new`; `step` (g_k-1) becomes g_k = x_new - y.

    Returns float64 [<g_k, g_k-1>, <g_k-1, g_k-1>, ||x_new - x||^2, ||x||^2] for the
    acceleration and the stagnation test (the last two where A^T w > WELL_OBSERVED: the poorly
    observed rim of the extended grid moves a lot without changing the picture).
    """
    height, width = y.shape
    rows = np.zeros((height, 4))
    for i in numba.prange(height):
        dot = old = change = size = 0.0
        for j in range(width):
            atw = normalisation[i, j]
            current = y[i, j]
            if atw > UNOBSERVED:
                denominator = atw - lam * min(atw, 1.0) * divergence_at(y, norm, i, j)
                new = current * correction[i, j] / max(denominator, DENOMINATOR_FLOOR * atw)
            else:
                new = current
            g = new - current
            if atw > WELL_OBSERVED:
                dot += g * step[i, j]
                old += step[i, j] * step[i, j]
                delta = new - x[i, j]
                change += delta * delta
                size += x[i, j] * x[i, j]
            step[i, j] = g
            x_new[i, j] = new
        rows[i, 0] = dot
        rows[i, 1] = old
        rows[i, 2] = change
        rows[i, 3] = size
    return rows.sum(axis=0)


def richardson_lucy_tv(
    f: np.ndarray,
    mask: np.ndarray,
    psf: np.ndarray,
    lam: float,
    sigma: float,
    rule: StoppingRule,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """Deconvolve `f` (C, H, W), non-negative, with `psf`; data weight `mask` (H, W); noise
    `sigma`.

    Returns the estimate on the observed window (C, H, W), the number of iterations run, the
    iteration that estimate comes from and the stop reason. On a whiteness stop the estimate is
    the one before the last (the last within the tolerance), else the last.
    """
    channels, height, width = f.shape
    level = max(float(f.mean()), 1e-12)
    floor, eps = POSITIVE_FLOOR * level, max(TV_EPS_PER_NOISE * sigma, TV_EPS * level)
    offset = OFFSET_PER_NOISE * sigma
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    window = (slice(None), slice(cy, cy + height), slice(cx, cx + width))
    with BlurOperator(psf, (height, width)) as blur:
        x = np.pad(f, ((0, 0), (cy, cy), (cx, cx)), mode="edge")
        np.maximum(x, floor, out=x)
        previous, y, step = x.copy(), np.empty_like(x), np.zeros_like(x)
        normalisation = blur.adjoint(mask)
        norm = np.empty(blur.extended_shape, dtype=np.float32)
        correction = np.empty(blur.extended_shape, dtype=np.float32)
        blurred = np.empty((height, width), dtype=np.float32)
        ratio = np.empty((height, width), dtype=np.float32)
        alpha, iteration, reason = 0.0, 0, None
        while reason is None:
            iteration += 1
            _extrapolate(x, previous, alpha, floor, y)
            gradient_norm(y, eps, norm)
            correlations, sums = np.zeros(5), np.zeros(4)
            for c in range(channels):
                blur.forward(y[c], blurred)
                correlations += centred_correlations(
                    residual_ratio(f[c], blurred, mask, offset, floor, ratio)
                )
                blur.adjoint(ratio, correction)
                sums += _rl_tv_step(y[c], norm, correction, normalisation, lam, x[c],
                                    previous[c], step[c])  # fmt: skip
            x, previous = previous, x
            alpha = float(np.clip(sums[0] / sums[1], 0, 1)) if sums[1] > 0 else 0.0
            change = math.sqrt(sums[2] / sums[3]) if sums[3] > 0 else 0.0
            reason = rule.update(iteration, whiteness(correlations), change)
            if progress is not None:
                progress(min(iteration / rule.max_iterations, 1.0), STAGE)
    if reason == "whiteness":  # x_k was computed from y_k-1, the last within the tolerance
        return np.ascontiguousarray(previous[window]), iteration, iteration - 1, reason
    return np.ascontiguousarray(x[window]), iteration, iteration, reason


def deblur(
    image: np.ndarray,
    psf: np.ndarray,
    settings: DeblurSettings = DeblurSettings(),
    progress: Progress | None = None,
) -> tuple[np.ndarray, DeblurReport]:
    """Deblur `image` (float32 (H, W, C), linear light) blurred by `psf`; returns (sharp, report).

    The result has the image's shape, or the downsized shape of a preview (`settings.scale` < 1).
    Negative samples (out-of-gamut colours) count as 0 in the data term. Raises `InputError` for a
    bad image, PSF or setting; exceptions raised by `progress` (cancellation) propagate.
    """
    start = time.perf_counter()
    image = _check_image(image)
    psf = validate_psf(psf, image.shape)
    settings.validate()
    if progress is not None:
        progress(0.0, STAGE)
    image, psf = preview_inputs(image, psf, settings.scale)
    clip_level = settings.clip_level
    if clip_level is None:
        clip_level = detect_clip_level(image)
    mask = data_mask(image, clip_level)
    sigma = estimate_noise(image, mask)
    f = np.ascontiguousarray(image.transpose(2, 0, 1))  # (C, H, W): one plane per channel
    np.maximum(f, 0, out=f)
    lam = settings.lam
    if lam is None:
        lam = regularisation_weight(sigma, white_level(f), settings.priority)
    rule = StoppingRule(settings.tolerance, settings.max_iterations)
    with fftw_wisdom(paths.cache_dir() / "fftw-wisdom"):
        best, iterations, best_iteration, reason = richardson_lucy_tv(
            f, mask, psf, lam, sigma, rule, progress
        )
    del f
    result = np.ascontiguousarray(best.transpose(1, 2, 0))
    if settings.local:
        result = blend_locally(image, result, psf)
    report = DeblurReport(
        iterations=iterations,
        best_iteration=best_iteration,
        stop_reason=reason,
        noise_sigma=sigma,
        lam=lam,
        seconds=time.perf_counter() - start,
        scale=settings.scale,
    )
    return result, report
