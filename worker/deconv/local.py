"""Local mode: deblur only where the PSF explains the blur; leave everything else as it was.

A photograph often holds several blurs: a moving subject on a sharp background, a soft static
horizon. Deconvolving everything with the subject's kernel rings on the sharp parts and re-shapes
the soft ones. Local mode blends the deblurred image ``d`` and the original ``f`` with a weight
``w`` that is exactly 0 outside the region the kernel explains, ``out = w d + (1 - w) f``, so the
rest of the picture comes back unchanged (bit for bit) and no ringing crosses the region's border.

**Which region the kernel explains** (`kernel_evidence`). The luminance is cut into patches (a
power of two, at least 4 kernels wide, half overlapping); each patch's power spectrum, binned in
log-spaced rings and orientations, is compared with what a natural picture (power falling as
``1 / |w|^p``, Field, JOSA A 4, 1987, doi:10.1364/JOSAA.4.002379) would give if it were blurred
by the kernel, and if it were not blurred or blurred isotropically (defocus, haze), each with the
picture's own softness, contrast and the noise of the picture's Poisson-Gaussian model. Whittle's
likelihood scores each hypothesis; the kernel must beat every alternative by `MARGIN` per
frequency. Patches so explained, joined across small gaps, in groups large enough to be a subject,
with their flat holes filled, form the region; it is pulled in by the patches' reach, since a
patch half on the subject may count. Patches where the kernel does not win (sharp, defocused,
ambiguous or flat) stay out: when the picture cannot tell, it is left alone.

**Where to learn the kernel** (`subject_kernel`, used in local mode when the window is automatic):
kernels are estimated on a few detailed windows in different places, and the one that explains
the largest region (as above) is the subject's.
"""

import numpy as np
from scipy import fft, ndimage

from worker.deconv.noise import NoiseModel, estimate_noise_model
from worker.deconv.psf import PsfReport, estimate_psf, luminance
from worker.deconv.window import choose_window
from worker.errors import InputError
from worker.stages import Progress, Stage

MIN_PATCH = 64
LOW_CUT = 2.0  # frequencies under this many cycles per patch are left out (shading, leakage)
RINGS, ORIENTATIONS = 8, 12  # frequency bins: log-spaced rings up to Nyquist, x orientations
SOFTNESS = (0.0, 0.7, 1.5, 2.5, 4.0, 6.0, 9.0, 13.0)  # px: isotropic softness, either way
SLOPES = (1.5, 2.0, 2.5)  # natural pictures' power falls as 1 / |w|^p
SCALE_STEPS = 48
MARGIN = 0.02  # log-likelihood per frequency by which the kernel must beat every alternative
CLOSING = 5  # patches: explained patches this close are joined...
MIN_CELLS = 8  # ...and groups of fewer patches than this dropped
NOISE_FLOOR = 3.0  # a patch with less power than this many times the noise's counts as flat
CANDIDATES = 6  # windows tried for the subject's kernel
LUMA_NOISE = 0.2126**2 + 0.7152**2 + 0.0722**2  # luminance noise variance per channel variance


def _frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Angular frequencies (rows, columns) of a real FFT grid of `shape`."""
    wy = 2 * np.pi * fft.fftfreq(shape[0])[:, None]
    wx = 2 * np.pi * fft.rfftfreq(shape[1])[None, :]
    return wy, wx


def patch_side(size: int) -> int:
    """The side of the analysis patches: a power of two, at least 64 and 4 kernels."""
    return int(2 ** np.ceil(np.log2(max(MIN_PATCH, 4 * size))))


def frequency_bins(side: int) -> tuple[np.ndarray, int]:
    """Each frequency of a side x side real FFT numbered by its (ring, orientation) bin, -1 for
    those left out (below `LOW_CUT` of the band), and the number of bins."""
    wy, wx = _frequencies((side, side))
    radius = np.hypot(wy, wx)
    low = LOW_CUT * 2 * np.pi / side
    ring = np.floor(np.log(np.maximum(radius, 1e-12) / low) / np.log(np.pi / low) * RINGS)
    angle = np.mod(np.arctan2(wy, wx), np.pi)
    orientation = np.minimum((angle / np.pi * ORIENTATIONS).astype(int), ORIENTATIONS - 1)
    bins = np.where((radius >= low) & (ring < RINGS), ring * ORIENTATIONS + orientation, -1)
    used, numbered = np.unique(bins, return_inverse=True)  # drop empty bins; -1 stays first
    numbered = numbered.reshape(bins.shape) - (used[0] < 0)
    return numbered, int((used >= 0).sum())


def bin_means(values: np.ndarray, bins: np.ndarray, count: int) -> np.ndarray:
    """Means of `values` (..., side, side // 2 + 1) over each frequency bin: (..., count)."""
    flat = values.reshape(-1, bins.size)
    inside = bins.reshape(-1) >= 0
    index = bins.reshape(-1)[inside]
    sums = np.zeros((flat.shape[0], count))
    for b in range(count):
        sums[:, b] = flat[:, inside][:, index == b].mean(axis=1)
    return sums.reshape((*values.shape[:-2], count))


def hypothesis_spectra(blur: np.ndarray, side: int, bins: np.ndarray, count: int) -> np.ndarray:
    """Expected power per bin (hypotheses, count) of a natural picture (power ``1 / |w|^p``, p
    in `SLOPES`; Field 1987) blurred by the power transfer `blur` (side x side real FFT grid)
    and by its own softness (isotropic Gaussians of `SOFTNESS` px, 0: none)."""
    wy, wx = _frequencies((side, side))
    radius2 = np.maximum(wy**2 + wx**2, 1e-12)
    powers = [
        blur * np.exp(-radius2 * sigma**2) / radius2 ** (slope / 2)
        for sigma in SOFTNESS
        for slope in SLOPES
    ]
    return bin_means(np.array(powers), bins, count)


def patch_power(grey: np.ndarray, side: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of Hann-windowed side x side patches of `grey` on a `step` grid, scaled so
    that white noise of variance v has power v: (rows, cols, side, side // 2 + 1), and the
    patches' mean levels (rows, cols)."""
    short = [(0, max(side - n, 0)) for n in grey.shape]  # a picture under a patch: mirrored
    grey = np.pad(grey, short, mode="symmetric") if any(b for _, b in short) else grey
    patches = np.lib.stride_tricks.sliding_window_view(grey, (side, side))[::step, ::step]
    hann = np.hanning(side + 2)[1:-1]
    window = np.outer(hann, hann)
    means = patches.mean(axis=(2, 3))
    spectra = fft.rfft2((patches - means[..., None, None]) * window, workers=-1)
    return np.abs(spectra) ** 2 / (window**2).sum(), means


def best_likelihood(
    observed: np.ndarray, weights: np.ndarray, noise: np.ndarray, spectra: np.ndarray
) -> np.ndarray:
    """Whittle's log-likelihood of each patch's binned power `observed` (rows, cols, count),
    maximised over the hypotheses `spectra` (hypotheses, count) and the picture's contrast."""
    best = np.full(observed.shape[:2], -np.inf)
    # s^2 on a log grid about the level at which each hypothesis has the patch's total power
    total = (observed * weights).sum(-1)[..., None, None]
    scale = total / (spectra * weights).sum(-1)[:, None]
    for factor in np.geomspace(1e-3, 1e1, SCALE_STEPS):
        variance = factor * scale * spectra + noise[..., None, None]
        loglik = -(weights * (observed[..., None, :] / variance + np.log(variance))).sum(-1)
        best = np.maximum(best, loglik.max(axis=-1))
    return best


def kernel_evidence(
    image: np.ndarray,
    psfs: list[np.ndarray],
    size: int,
    overlap: int = 2,
    model: NoiseModel | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per patch (side `patch_side(size)`, on a grid of side / `overlap`), for each of `psfs`:
    the log-likelihood margin per frequency of "blurred by this kernel" over the best
    alternative (no blur, isotropic blurs); and whether the patch has detail. `model`: the
    picture's noise (None: fitted on `image`).

    Whittle's likelihood of the binned power ``S_b`` (``m_b`` frequencies each) under a
    hypothesis of expected power ``v_b = s^2 c_b + n`` (``c_b`` from `hypothesis_spectra`, ``n``
    the noise's power at the patch's level, ``s^2`` fitted per patch and hypothesis):
    ``l = -sum_b m_b (S_b / v_b + log v_b)`` (Whittle 1953; as for spatially varying blur in
    Chakrabarti, Zickler and Freeman, CVPR 2010, doi:10.1109/CVPR.2010.5539954).
    """
    grey = luminance(image).astype(np.float64)
    side = patch_side(size)
    bins, count = frequency_bins(side)
    power, levels = patch_power(grey, side, side // overlap)
    observed = bin_means(power, bins, count)
    del power
    weights = np.bincount(bins[bins >= 0], minlength=count).astype(float)
    model = model or estimate_noise_model(image)
    noise = LUMA_NOISE * (model.gain * np.maximum(levels, 0) + model.read_variance)
    flat = np.ones((side, side // 2 + 1))
    other = best_likelihood(observed, weights, noise, hypothesis_spectra(flat, side, bins, count))
    margins = []
    for psf in psfs:
        blur = np.abs(fft.rfft2(psf, s=(side, side))) ** 2
        spectra = hypothesis_spectra(blur, side, bins, count)
        margins.append((best_likelihood(observed, weights, noise, spectra) - other) / weights.sum())
    detail = (observed * weights).sum(-1) > NOISE_FLOOR * noise * weights.sum()
    return margins, detail


def explained_cells(margin: np.ndarray, detail: np.ndarray) -> np.ndarray:
    """Which patches (bool, the grid of `kernel_evidence`) the kernel explains.

    The margin is averaged over 3 x 3 patches (those with detail); patches above `MARGIN` are
    joined across gaps of a few patches (a closing), groups of fewer than `MIN_CELLS` patches
    are dropped (a subject is one piece; scattered hits are chance), and holes are filled.
    """
    weight = detail.astype(np.float64)
    mean = ndimage.uniform_filter(margin * weight, 3, mode="nearest")
    mean /= np.maximum(ndimage.uniform_filter(weight, 3, mode="nearest"), 1e-12)
    cells = (mean > MARGIN) & detail
    cells |= ndimage.binary_closing(cells, np.ones((CLOSING, CLOSING), bool))
    labels, count = ndimage.label(cells)
    sizes = ndimage.sum(cells, labels, np.arange(1, count + 1))
    cells = np.isin(labels, 1 + np.flatnonzero(sizes >= MIN_CELLS))
    return ndimage.binary_fill_holes(cells)


def explained_region(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """The region (H, W, bool) of `image` ((H, W, C), linear) whose blur `psf` explains."""
    margins, detail = kernel_evidence(image, [psf], psf.shape[0])
    cells = explained_cells(margins[0], detail).astype(np.float32)
    # Patch (i, j) is centred at ((i + 1) step, (j + 1) step): it stands for the step-wide
    # square about its centre.
    step = patch_side(psf.shape[0]) // 2
    height, width = image.shape[:2]
    full = np.zeros((height, width), np.float32)
    spread = np.kron(cells, np.ones((step, step), np.float32))
    top = step // 2
    rows, cols = min(spread.shape[0], height - top), min(spread.shape[1], width - top)
    full[top : top + rows, top : top + cols] = spread[:rows, :cols]
    # A patch half on the subject may count: pull the border in by the patch's reach.
    return ndimage.minimum_filter(full, size=2 * step + 1, mode="nearest") > 0.5


def explained_weight(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """The weight map (H, W), float32 in [0, 1]: 1 inside the region `psf` explains, falling to 0
    over its outer kernel width, and exactly 0 outside it (see the module)."""
    region = explained_region(image, psf)
    size = psf.shape[0]
    core = ndimage.minimum_filter(region.astype(np.float32), size=2 * size + 1, mode="nearest")
    weight = ndimage.gaussian_filter(core, size / 2, mode="nearest") * region
    return np.clip(weight, 0, 1).astype(np.float32)


def blend_locally(image: np.ndarray, deblurred: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``w d + (1 - w) f`` for the original `image` f and `deblurred` d ((H, W, C), same shape),
    with `explained_weight` w of the kernel `psf`; where w is 0 the original comes back as is."""
    weight = explained_weight(image, psf)[..., None]
    return np.where(weight > 0, weight * deblurred + (1 - weight) * image, image).astype(np.float32)


def subject_kernel(
    image: np.ndarray,
    size: int,
    progress: Progress | None = None,
    clip_level: float | None = None,
) -> tuple[np.ndarray, PsfReport]:
    """The kernel of the blurred subject of `image` ((H, W, C), linear) and its `PsfReport`.

    The kernel is estimated (`estimate_psf`) on up to `CANDIDATES` windows, each the most
    detailed one (`choose_window`) once the ones before and their surroundings are left out.
    The kernel that explains the largest region of the picture (`explained_cells`, on patches
    side by side) wins; on a tie, the most detailed window's. The subject's kernel explains the
    subject; a sharp or defocused background's hardly beats no blur or an isotropic blur
    anywhere. Windows too flat to learn from are skipped; raises `InputError` when all are.
    """
    grey = luminance(image)
    left_out = grey.copy()
    flat = float(np.median(grey))
    found: list[tuple[np.ndarray, PsfReport]] = []
    failure: InputError | None = None
    for index in range(CANDIDATES):
        if progress is not None:
            progress(index / (CANDIDATES + 1), Stage.ESTIMATING)
        x, y, width, height = window = choose_window(left_out, size)
        # Leave out the window and half a window around it: the next one is elsewhere.
        top, left = max(y - height // 2, 0), max(x - width // 2, 0)
        left_out[top : y + height + height // 2, left : x + width + width // 2] = flat
        try:
            found.append(estimate_psf(image, size, window, None, clip_level))
        except InputError as error:
            failure = failure or error
        except ValueError:  # the estimate broke down (a NaN): the other windows may not
            pass
    if not found:
        raise failure or InputError(
            "the blur could not be learnt from any part of the picture; "
            "choose a window with clear edges (--window X,Y,W,H)"
        )
    margins, detail = kernel_evidence(image, [psf for psf, _ in found], size, overlap=1)
    scores = [int(explained_cells(margin, detail).sum()) for margin in margins]
    return found[int(np.argmax(scores))]
