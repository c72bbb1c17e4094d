"""Local mode: deblur only where the PSF explains the blur; leave everything else as it was.

A photograph often holds several blurs: a moving subject on a sharp background, a soft static
horizon. Deconvolving everything with the subject's kernel rings on the sharp parts and re-shapes
the soft ones. Local mode blends the deblurred image ``d`` and the original ``f`` with a weight
``w`` that is exactly 0 outside the region the kernel explains, ``out = w d + (1 - w) f``, so the
rest of the picture comes back unchanged (bit for bit) and no ringing crosses the region's border.

**Which region the kernel explains** (`kernel_evidence`). The luminance is cut into patches (a power
of two, at least 4 kernels wide, half overlapping); each patch's power spectrum, binned in
log-spaced rings and orientations, is compared with what a natural picture (power falling as ``1 /
|w|^p``, Field, JOSA A 4, 1987, doi:10.1364/JOSAA.4.002379) would give if it were blurred by the
kernel, and if it were not blurred or blurred isotropically (defocus, haze), each with the picture's
own softness, contrast and the noise of the picture's Poisson-Gaussian model. Whittle's likelihood
scores each hypothesis (`worker.deconv.patch_spectra`); a patch's evidence is the kernel's
log-likelihood per frequency over the best alternative. At this noise much of a moving subject beats
the alternatives by only a little, patch by patch, so the region is decided as a whole
(`explained_cells`): a subject is one piece, each border between a patch in and a patch out costs
`SMOOTHNESS`, and the most likely labelling of that Markov random field (a graph cut) takes a large
subject's interior whole while stopping where the evidence turns. A second test protects sharp
static detail beside the subject (`misfit`): the deblurred picture, blurred again by the kernel,
must reproduce each patch to within the noise; where its mean square miss exceeds `MISFIT` times the
noise's variance, no picture blurred by the kernel holds what the patch shows (a sharp hair, an
edge), the deblurring would ring there, and the patch is out whatever its spectrum says. A patch
half on the subject may count, so the region is pulled in by the patches' reach, except where the
same test, read a kernel wide around each pixel (`pixel_misfit`), finds the deblurred picture
reproducing it within the noise (`REPRODUCED`, a stricter bar than the patches' veto: a pixel
joins without a patch of its own to vouch for it): inside the squares the patches taken stand
for, such pixels stay, as far as they join the pulled-in region (`explained_region`). A subject's
border is where the picture stops being a blur of anything (the subject's light smeared over a
static background), so it fails that test there and the region stops at it instead of a patch's
reach short of it. Patches left out
(sharp, defocused, ambiguous or flat) come back as they were: when the picture cannot tell, it is
left alone.

**Where to learn the kernel** (`subject_kernel`, used in local mode when the window is automatic):
kernels are estimated on a few detailed windows in different places, and the one that explains
the largest region (as above, each patch's evidence counted above `CHOICE` rather than 0, and
without the misfit test, since nothing is deblurred yet) is the subject's. A window whose edges
run one way (`blind.ONE_WAY`: a streaked road, grass blades, wood grain) learns nothing: a blur
along its edges leaves them as they are, so it learns the content's own softness across them as a
streak, which then explains every patch of that texture, static or not (`run`'s reason for its
`same_way` rule; on a held-out scene such a kernel, learnt on a static road, took 3.6 dB off the
static region). Its error is measured as `run` measures a kernel's, against a twin: the kernel
of another window in that region, a second view of the same blur (`subject_twin`,
`describe_subject`), and counted as noise by the deblur. When no window has edges to learn from
there is none, and the picture is judged as `run` judges it (a flat or featureless picture is
left as it is, `worker.pipeline`).
"""

import contextlib
import dataclasses
from typing import Any

import numpy as np
from scipy import fft, ndimage, sparse
from scipy.sparse import csgraph

from worker.deconv.blind import (
    FREE_FORM,
    ONE_WAY,
    UNCHECKED,
    same_size,
    sharp_learnt,
    similarity,
    uncertainty,
)
from worker.deconv.boundaries import data_mask
from worker.deconv.luminance import luminance, luminance_noise
from worker.deconv.noise import NoiseModel, estimate_noise_model, kernel_smoothing
from worker.deconv.parametric import kernel_extent
from worker.deconv.patch_spectra import patch_side, patch_spectra
from worker.deconv.psf import PsfReport, estimate_psf
from worker.deconv.settings import AUTO_BLUR, MIN_BLUR
from worker.deconv.window import (
    Window,
    check_window,
    choose_window,
    largest_blur,
    orientation,
    overlap,
    patch_of,
)
from worker.stages import Progress, Stage

MARGIN = 0.0  # log-likelihood per frequency by which the kernel must beat every alternative...
SMOOTHNESS = 0.02  # ...summed over a region, less this per border between two patches
MISFIT = 1.2  # a patch missed by more than this many times the noise's variance is not explained
REPRODUCED = 1.0  # a pixel near the region's border joins it when missed by no more than the noise
CHOICE = 0.02  # choosing the subject's kernel, a patch counts for a kernel it favours by more
FLAT = SMOOTHNESS / 4  # a flat patch gains nothing from deblurring but amplified noise
CUT_UNIT = 1e-5  # the graph cut's costs are whole multiples of this
CANDIDATES = 6  # windows tried for the subject's kernel
TWIN_SHARE = 0.5  # a window this much in the subject's region sees the subject's blur
OVERLAP = 2  # patches overlap: a patch's step is its side over this


def kernel_evidence(
    image: np.ndarray,
    psfs: list[np.ndarray],
    size: int,
    overlap: int = OVERLAP,
    model: NoiseModel | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per patch, for each of `psfs`: the log-likelihood margin per frequency of "blurred by
    this kernel" over the best alternative (no blur, isotropic blurs:
    `PatchSpectra.likelihood`); and whether the patch has detail.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    psfs : list of ndarray
        The kernels to weigh, each no larger than a patch.
    size : int
        The blur size, in pixels: the patches' side is `patch_side(size)`.
    overlap : int, optional
        The patches are side // `overlap` apart (1: side by side).
    model : NoiseModel, optional
        The picture's noise; None: fitted on `image` (`estimate_noise_model`).

    Returns
    -------
    margins : list of ndarray, shape (rows, cols)
        For each of `psfs`, in order, each patch's margin (positive: the kernel explains the
        patch better than any alternative).
    detail : ndarray of bool, shape (rows, cols)
        Which patches hold detail (`PatchSpectra.detail`).
    """
    side = patch_side(size)
    spectra = patch_spectra(image, side, side // overlap, model)
    other = spectra.likelihood(None)
    return [spectra.likelihood(psf) - other for psf in psfs], spectra.detail()


def misfit(
    image: np.ndarray,
    deblurred: np.ndarray,
    psf: np.ndarray,
    model: NoiseModel,
    clip_level: float | None = None,
) -> np.ndarray:
    """Per patch: the mean square of the luminance of `image` less that of `deblurred` blurred
    again by `psf`, over the noise's variance at the patch's level.

    About 1 where the kernel reproduces the picture (the deblurring fits no more than the
    noise), well above it where it cannot (a sharp edge that no blurred picture holds). The
    patches are those of `kernel_evidence` with its default `OVERLAP` and the size
    ``psf.shape[0]``, unweighted.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    deblurred : ndarray, shape (H, W, C)
        `image` deblurred with `psf`.
    psf : ndarray, shape (kh, kw)
        The kernel.
    model : NoiseModel
        The picture's noise (`estimate_noise_model`).
    clip_level : float or None, optional
        The level at which `image` clipped; its clipped pixels (`data_mask`), which the
        deblurring does not fit, are left out. None: no pixel is left out.

    Returns
    -------
    ndarray, shape (rows, cols)
        Each patch's misfit; 0 for a patch with no pixel left.
    """
    miss = _residual(image, deblurred, psf, clip_level)
    return _patch_misfit(miss, psf.shape[0], model, luminance_noise(image.shape[2]))


def pixel_misfit(
    image: np.ndarray,
    deblurred: np.ndarray,
    psf: np.ndarray,
    model: NoiseModel,
    clip_level: float | None = None,
) -> np.ndarray:
    """`misfit` read around each pixel: over the kernel-sized square centred on it.

    Parameters
    ----------
    image, deblurred, psf, model, clip_level
        As for `misfit`.

    Returns
    -------
    ndarray, shape (H, W)
        Each pixel's misfit, the picture's borders mirrored; infinite where no pixel of the
        square is left (nothing there shows the picture reproduced).
    """
    miss = _residual(image, deblurred, psf, clip_level)
    return _pixel_misfit(miss, psf.shape[0], model, luminance_noise(image.shape[2]))


Residual = tuple[np.ndarray, np.ndarray, np.ndarray]


def _residual(
    image: np.ndarray, deblurred: np.ndarray, psf: np.ndarray, clip_level: float | None
) -> Residual:
    """(the squared miss of the luminance, counted where kept; the luminance; where kept)."""
    grey = luminance(image).astype(np.float64)
    reblurred = blurred_again(luminance(deblurred).astype(np.float64), psf)
    kept = data_mask(image, clip_level)
    return kept * (grey - reblurred) ** 2, grey, kept


def _patch_misfit(miss: Residual, size: int, model: NoiseModel, luma: float) -> np.ndarray:
    """`misfit` from the picture's `_residual`, the kernel's `size` and `luminance_noise`."""
    side = patch_side(size)
    step = side // OVERLAP
    short = [(0, max(side - n, 0)) for n in miss[0].shape]  # as `patch_power` pads
    residual, grey, kept = (np.pad(a, short, mode="symmetric") for a in miss)
    rows, cols = residual.shape[0] // step, residual.shape[1] // step

    def patches(values: np.ndarray) -> np.ndarray:
        blocks = values[: rows * step, : cols * step].reshape(rows, step, cols, step).mean((1, 3))
        return (blocks[:-1, :-1] + blocks[1:, :-1] + blocks[:-1, 1:] + blocks[1:, 1:]) / 4

    return _over_noise(patches(residual), patches(grey), patches(kept), model, luma)


def _pixel_misfit(miss: Residual, size: int, model: NoiseModel, luma: float) -> np.ndarray:
    """`pixel_misfit` from the picture's `_residual`, the kernel's `size` and `luminance_noise`."""
    residual, grey, kept = (ndimage.uniform_filter(a, size, mode="reflect") for a in miss)
    return np.where(kept > 0, _over_noise(residual, grey, kept, model, luma), np.inf)


def _over_noise(
    residual: np.ndarray, grey: np.ndarray, kept: np.ndarray, model: NoiseModel, luma: float
) -> np.ndarray:
    """A mean squared miss over the luminance noise's variance at the mean level `grey`, where a
    share `kept` of the pixels counts (0 where none does); `luma` is `luminance_noise`."""
    noise = luma * (model.gain * np.maximum(grey, 0) + model.read_variance)
    return residual / np.maximum(noise * kept, 1e-12)


def blurred_again(sharp: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """`sharp` blurred by `psf`, the same size, its borders mirrored.

    The valid part of a circular convolution of the mirrored plane (rows and columns a kernel
    from the start are free of wrap-around). By FFT here: scipy.signal would add a third of a
    second to every command's start-up.

    Parameters
    ----------
    sharp : ndarray, shape (h, w)
        The plane to blur.
    psf : ndarray, shape (kh, kw)
        The kernel (convolution convention).

    Returns
    -------
    ndarray of float64, shape (h, w)
        The blurred plane.
    """
    height, width = psf.shape
    padded = np.pad(sharp, [(n // 2, (n - 1) // 2) for n in psf.shape], mode="symmetric")
    spectrum = fft.rfft2(padded, workers=-1) * fft.rfft2(psf, s=padded.shape)
    return fft.irfft2(spectrum, s=padded.shape, workers=-1)[height - 1 :, width - 1 :]


def graph_cut(unary: np.ndarray, smoothness: float) -> np.ndarray:
    """The labelling x that maximises ``sum_i unary_i x_i - smoothness * #{4-neighbours i, j :
    x_i != x_j}``: a minimum s-t cut (Greig, Porteous and Seheult, J. R. Stat. Soc. B 51, 1989;
    Boykov and Jolly, ICCV 2001, doi:10.1109/ICCV.2001.937505), costs in units of `CUT_UNIT`.

    Parameters
    ----------
    unary : ndarray, shape (rows, cols)
        What labelling each cell True gains (negative: loses).
    smoothness : float
        The cost of each pair of 4-neighbours labelled differently.

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        The labelling x, with the costs rounded to whole multiples of `CUT_UNIT`.

    References
    ----------
    .. [1] D. M. Greig, B. T. Porteous and A. H. Seheult, "Exact maximum a posteriori estimation
       for binary images", Journal of the Royal Statistical Society B 51, 1989.
    .. [2] Y. Boykov and M.-P. Jolly, "Interactive graph cuts for optimal boundary & region
       segmentation of objects in N-D images", ICCV 2001. DOI:10.1109/ICCV.2001.937505
    """
    count = unary.size
    source, sink = count, count + 1
    index = np.arange(count).reshape(unary.shape)
    gain = np.round(unary.ravel() / CUT_UNIT).astype(np.int64)
    edge = round(smoothness / CUT_UNIT)
    wins = gain > 0
    tails = [np.full(wins.sum(), source), index.ravel()[~wins]]
    heads = [index.ravel()[wins], np.full((~wins).sum(), sink)]
    capacities = [gain[wins], -gain[~wins]]
    for a, b in ((index[:, :-1], index[:, 1:]), (index[:-1], index[1:])):
        tails += [a.ravel(), b.ravel()]
        heads += [b.ravel(), a.ravel()]
        capacities += [np.full(a.size, edge)] * 2
    capacity = np.concatenate(capacities)
    used = capacity > 0
    graph = sparse.csr_matrix(
        (
            capacity[used].astype(np.int32),
            (np.concatenate(tails)[used], np.concatenate(heads)[used]),
        ),
        shape=(count + 2, count + 2),
    )
    left = graph - csgraph.maximum_flow(graph, source, sink).flow
    left.data = np.maximum(left.data, 0)
    left.eliminate_zeros()
    reached = np.zeros(count + 2, bool)
    reached[csgraph.breadth_first_order(left, source, return_predecessors=False)] = True
    return reached[:count].reshape(unary.shape)


def explained_cells(
    margin: np.ndarray,
    detail: np.ndarray,
    misfits: np.ndarray | None = None,
    floor: float = MARGIN,
) -> np.ndarray:
    """Which patches the kernel explains.

    Each patch with detail weighs in by its margin less `floor`; a flat patch by `-FLAT` (it
    gains nothing from deblurring but amplified noise); a patch whose misfit exceeds `MISFIT` by
    -1, a veto: the kernel cannot reproduce it, so deblurring would ring there. A subject is one
    piece: neighbouring patches are labelled alike unless the evidence pays `SMOOTHNESS` per
    border, so a large subject's interior, whose patches each hardly beat the alternatives, is
    taken whole, and the region stops where the evidence turns (`graph_cut`, a Markov random
    field's most likely labelling).

    Parameters
    ----------
    margin : ndarray, shape (rows, cols)
        Each patch's log-likelihood ratio per frequency: the kernel's evidence over the best
        alternative (`kernel_evidence`).
    detail : ndarray of bool, shape (rows, cols)
        Which patches hold detail (`kernel_evidence`).
    misfits : ndarray, optional
        Each patch's `misfit`; None: no veto.
    floor : float, optional
        The margin a patch with detail must exceed to count for the kernel.

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        True for the patches explained; with `misfits`, cut to the rows and columns both grids
        have.
    """
    unary = np.where(detail, margin - floor, -FLAT)
    if misfits is not None:
        rows, cols = min(unary.shape[0], misfits.shape[0]), min(unary.shape[1], misfits.shape[1])
        unary, misfits = unary[:rows, :cols], misfits[:rows, :cols]
        unary = np.where(misfits > MISFIT, -1.0, unary)
    return graph_cut(unary, SMOOTHNESS)


def explained_region(
    image: np.ndarray, deblurred: np.ndarray, psf: np.ndarray, clip_level: float | None = None
) -> np.ndarray:
    """The region of `image` whose blur `psf` explains, given the picture deblurred with it.

    The patches `explained_cells` takes (with the `misfit` veto) stand each for the square of
    half a patch's side about its centre. The region is those squares pulled in by the patches'
    reach, and the pixels of the squares that `pixel_misfit` finds reproduced (within the
    noise, `REPRODUCED`) joined to it.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    deblurred : ndarray, shape (H, W, C)
        `image` deblurred with `psf`.
    psf : ndarray, shape (kh, kw)
        The kernel.
    clip_level : float or None, optional
        The level at which `image` clipped (see `misfit`); None: not clipped.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True inside the region.
    """
    model = estimate_noise_model(image)
    margins, detail = kernel_evidence(image, [psf], psf.shape[0], model=model)
    miss = _residual(image, deblurred, psf, clip_level)  # (read per patch, then per pixel)
    luma = luminance_noise(image.shape[2])
    cells = explained_cells(margins[0], detail, _patch_misfit(miss, psf.shape[0], model, luma))
    cells = cells.astype(np.float32)
    # Patch (i, j) is centred at ((i + 1) step, (j + 1) step): it stands for the step-wide
    # square about its centre.
    step = patch_side(psf.shape[0]) // 2
    height, width = image.shape[:2]
    squares = np.zeros((height, width), np.float32)
    spread = np.kron(cells, np.ones((step, step), np.float32))
    top = step // 2
    rows = max(min(spread.shape[0], height - top), 0)  # (none in a picture under half a patch)
    cols = max(min(spread.shape[1], width - top), 0)
    squares[top : top + rows, top : top + cols] = spread[:rows, :cols]
    # A patch half on the subject may count: pull the border in by the patch's reach...
    core = ndimage.minimum_filter(squares, size=2 * step + 1, mode="nearest") > 0.5
    if not core.any():
        return core
    # ...but keep the squares' pixels that the deblurred picture reproduces, joined to it.
    reproduced = (squares > 0.5) & (_pixel_misfit(miss, psf.shape[0], model, luma) <= REPRODUCED)
    pieces, _ = ndimage.label(core | reproduced)
    return np.isin(pieces, np.unique(pieces[core]))


def explained_weight(
    image: np.ndarray, deblurred: np.ndarray, psf: np.ndarray, clip_level: float | None = None
) -> np.ndarray:
    """The weight map of local mode: 1 inside the region `psf` explains (`explained_region`),
    falling smoothly near its border, and exactly 0 outside it.

    The region is shrunk by a kernel width and blurred by a Gaussian of half a kernel width, then
    cut to the region: the weight is about a half one kernel width inside the border, 0.03 on it.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    deblurred : ndarray, shape (H, W, C)
        `image` deblurred with `psf`.
    psf : ndarray, shape (kh, kw)
        The kernel; its width is taken as ``kh``.
    clip_level : float or None, optional
        The level at which `image` clipped (see `misfit`); None: not clipped.

    Returns
    -------
    ndarray of float32, shape (H, W)
        The weight, in [0, 1].
    """
    region = explained_region(image, deblurred, psf, clip_level)
    size = psf.shape[0]
    core = ndimage.minimum_filter(region.astype(np.float32), size=2 * size + 1, mode="nearest")
    weight = ndimage.gaussian_filter(core, size / 2, mode="nearest") * region
    return np.clip(weight, 0, 1).astype(np.float32)


def blend_locally(
    image: np.ndarray, deblurred: np.ndarray, psf: np.ndarray, clip_level: float | None = None
) -> np.ndarray | None:
    """``w d + (1 - w) f``, with the `explained_weight` w of the kernel `psf`.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The original linear picture, f.
    deblurred : ndarray, shape (H, W, C)
        `image` deblurred with `psf`, d.
    psf : ndarray, shape (kh, kw)
        The kernel.
    clip_level : float or None, optional
        The level at which `image` clipped (see `misfit`); None: nowhere.

    Returns
    -------
    ndarray of float32, shape (H, W, C), or None
        The blend; where w is 0, the original as is. None where w is 0 everywhere: the kernel
        explains no part of the picture.
    """
    weight = explained_weight(image, deblurred, psf, clip_level)[..., None]
    if not weight.any():
        return None
    return np.where(weight > 0, weight * deblurred + (1 - weight) * image, image).astype(np.float32)


def describe_subject(
    image: np.ndarray, psf: np.ndarray, report: PsfReport, twin: np.ndarray | None
) -> dict[str, Any]:
    """The kind, confidence, reason and kernel error (as in `blind.BlurReport`) of the subject's
    kernel.

    The kernel's error is measured against its twin as `run` measures it against the kernel of
    its second window (`blind.uncertainty`), and raises the deblur's smoothing alike.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture.
    psf : ndarray, shape (k, k)
        The subject's kernel (`subject_kernel`'s).
    report : PsfReport
        What `estimate_psf` did when it learnt the kernel.
    twin : ndarray or None
        The kernel learnt on another view of the subject's blur (`subject_twin`); None: the
        kernel's error is not known, and not counted.

    Returns
    -------
    dict
        ``kernel``: `FREE_FORM`; ``confidence``: `UNCHECKED` (a subject's windows may not be
        two views of it, as `run`'s are of a shaken frame); ``reason``: a sentence naming the
        window, `report.window`; ``blur`` and ``extent``: the kernel's side and extent;
        ``kernel_error`` and ``smoothing``: its error over the noise variance and the smoothing
        that gives (`noise.kernel_smoothing`).
    """
    x, y, width, height = report.window
    reason = (
        f"the blur of the subject, learnt on the {width} x {height} px window at ({x}, {y}), "
        "is removed only where it explains the blur; the rest is left as it is"
    )
    error = 0.0
    if twin is None:
        reason = f"{reason}; no other part of the picture shows this blur to check it against"
    else:
        error, reason = uncertainty(patch_of(image, report.window), *same_size(psf, twin), reason)
    return {
        "kernel": FREE_FORM,
        "confidence": UNCHECKED,
        "reason": reason,
        "blur": int(psf.shape[0]),
        "extent": kernel_extent(psf),
        "kernel_error": round(error, 3),
        "smoothing": round(kernel_smoothing(error), 2),
    }


def subject_kernel(
    image: np.ndarray,
    size: int,
    progress: Progress | None = None,
    clip_level: float | None = None,
    apart: bool = False,
) -> tuple[np.ndarray, PsfReport, np.ndarray | None] | None:
    """The kernel of the blurred subject of `image`, its `PsfReport` and its twin.

    The kernel is estimated (`estimate_psf`) on `CANDIDATES` windows, each the most detailed one
    (`choose_window`) once the ones before and their surroundings are left out, but for windows
    whose edges run one way (coherence `blind.ONE_WAY` or more: `window.orientation`), which
    learn the content's own streak, not the subject's blur. The kernel that explains the largest
    region of the picture (`explained_cells` with the floor `CHOICE`, on patches side by side)
    wins; on a tie, the most detailed window's. The subject's kernel explains the subject; a sharp
    or defocused background's hardly beats no blur or an isotropic blur anywhere. Windows too flat
    to learn from are skipped. A winner that means no blur (`blind.sharp_learnt`: narrower than a
    pixel, or a sharp copy on a soft pedestal) shows no blurred subject: on the blind benchmark's
    unblurred photographs such kernels, learnt from texture, made local mode deblur what they
    explained (4 of the 26 came back up to 5.8 dB worse; docs/MEASUREMENTS.md).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, C in {1, 3}.
    size : int
        The kernel's size, in pixels: odd, at least `settings.MIN_BLUR`.
    progress : Progress, optional
        Called with the share done and `Stage.ESTIMATING` before each window; what it raises
        (cancellation) propagates. None: no report.
    clip_level : float or None, optional
        Where the sensor clipped, so that clipped highlights stay out of the kernel fit; None:
        detected (`estimate_psf`).
    apart : bool, optional
        Pass over a window that shares pixels with one chosen before, so that each kernel, and
        so the twin, is learnt on pixels of its own. Where the picture has room for few windows
        (a window drawn around the subject, `window_kernel`), the next most detailed window is
        otherwise the same one or mostly it, learnt again. False: as measured on the benchmarks
        (on pictures of 1-2 Mpx the candidates may overlap; docs/HARDENING.md).

    Returns
    -------
    tuple of (ndarray, PsfReport, ndarray or None), or None
        The kernel (`estimate_psf`'s), its report and its twin (`subject_twin`; None: no other
        window saw the subject's blur); None when no window gave one, or the winner means no
        blur. Every `ValueError` of `estimate_psf` (its `InputError`: too flat, but also a bad
        size or image) counts as a window that gave none.
    """
    grey = luminance(image)
    left_out = grey.copy()
    flat = float(np.median(grey))
    found: list[tuple[np.ndarray, PsfReport]] = []
    chosen_before: list[Window] = []
    for index in range(CANDIDATES):
        if progress is not None:
            progress(index / (CANDIDATES + 1), Stage.ESTIMATING)
        x, y, width, height = window = choose_window(left_out, size)
        # Leave out the window and half a window around it: the next one is elsewhere.
        top, left = max(y - height // 2, 0), max(x - width // 2, 0)
        left_out[top : y + height + height // 2, left : x + width + width // 2] = flat
        if apart and any(overlap(window, before) for before in chosen_before):
            continue
        chosen_before.append(window)
        if orientation(patch_of(grey, window))[0] >= ONE_WAY:  # streaks: their own "blur"
            continue
        # Too flat (`InputError`), or the estimate broke down (a NaN): the others may not.
        with contextlib.suppress(ValueError):
            found.append(estimate_psf(image, size, window, None, clip_level))
    if not found:
        return None
    margins, detail = kernel_evidence(image, [psf for psf, _ in found], size, overlap=1)
    regions = [explained_cells(margin, detail, floor=CHOICE) for margin in margins]
    chosen = int(np.argmax([region.sum() for region in regions]))
    psf, report = found[chosen]
    if sharp_learnt(psf) is not None:  # what explains most of the picture is no blur: no subject
        return None
    return psf, report, subject_twin(found, chosen, regions[chosen], patch_side(size))


def window_kernel(
    image: np.ndarray,
    size: int | None,
    window: Window,
    progress: Progress | None = None,
    clip_level: float | None = None,
) -> tuple[np.ndarray, PsfReport, np.ndarray | None] | None:
    """The kernel of the blurred subject inside the window the user put around it.

    The subject's kernel is searched for inside that window as `subject_kernel` searches the
    whole picture: its most detailed windows (apart: no two share a pixel), the kernel that
    explains most of it, its twin.
    `run` would check a kernel against a second window elsewhere in the frame, but there the
    frame is what local mode keeps as it is: it shows no such blur, and until engine 0.3.57 it
    made every subject given a window come back as it was. Learnt on the whole window instead,
    the kernel mixes the subject's blur with the background's texture: on the subject benchmark
    (`bench_varying.py`, the window the subject's bounding box) it cost two of eleven static
    backgrounds 0.8 and 2.9 dB (docs/MEASUREMENTS.md).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, C in {1, 3}.
    size : int or None
        The kernel's size, in pixels: odd, at least `settings.MIN_BLUR`; None for "auto": the
        largest the window holds (`window.largest_blur`), at most `settings.AUTO_BLUR`.
    window : Window
        Around the subject: (x, y, width, height) in pixels.
    progress : Progress, optional
        As `subject_kernel` calls it. None: no report.
    clip_level : float or None, optional
        Where the sensor clipped; None: detected (`estimate_psf`).

    Returns
    -------
    tuple of (ndarray, PsfReport, ndarray or None), or None
        As `subject_kernel` returns them, the report's window in the picture's pixels; None
        when no part of the window gave a kernel, or the kernel means no blur.

    Raises
    ------
    InputError
        When the window is not inside the picture, or is under `window.KERNELS_ACROSS`
        kernels wide (`window.check_window`).
    """
    x, y, width, height = window
    if size is None:
        size = max(MIN_BLUR, min(AUTO_BLUR, largest_blur(min(width, height))))
    check_window(window, image.shape[:2], size)
    crop = image[y : y + height, x : x + width]
    found = subject_kernel(crop, size, progress, clip_level, apart=True)
    if found is None:
        return None
    psf, report, twin = found
    inner_x, inner_y, inner_width, inner_height = report.window
    moved = (x + inner_x, y + inner_y, inner_width, inner_height)
    return psf, dataclasses.replace(report, window=moved), twin


def subject_twin(
    found: list[tuple[np.ndarray, PsfReport]], chosen: int, region: np.ndarray, side: int
) -> np.ndarray | None:
    """The kernel learnt on another view of the subject's blur, to measure the subject's
    kernel's error against (`describe_subject`).

    A twin must see the same blur: its window lies mostly (`TWIN_SHARE`) in the region the
    subject's kernel explains. A kernel learnt elsewhere differs from it by another blur, not by
    their errors, which is what the difference of two kernels measures (`kernel_error`). Of those
    windows, the kernel most alike to the subject's.

    Parameters
    ----------
    found : list of (ndarray, PsfReport)
        The candidate kernels and their reports (`subject_kernel`'s).
    chosen : int
        The index of the subject's kernel in `found`.
    region : ndarray of bool, shape (rows, cols)
        The patches, side by side, that the subject's kernel explains (`explained_cells`).
    side : int
        The patches' side, in pixels.

    Returns
    -------
    ndarray or None
        The twin; None where no other window lies in the region.
    """
    psf = found[chosen][0]
    views = []
    for index, (kernel, report) in enumerate(found):
        x, y, width, height = report.window
        rows, cols = np.arange(y, y + height) // side, np.arange(x, x + width) // side
        rows, cols = rows[rows < region.shape[0]], cols[cols < region.shape[1]]  # (past: out)
        inside = region[np.ix_(rows, cols)].sum() / (width * height)
        if index != chosen and inside >= TWIN_SHARE:
            views.append(kernel)
    return max(views, key=lambda kernel: similarity(psf, kernel), default=None)
