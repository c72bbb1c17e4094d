"""Patches' power spectra, and how likely a blur makes them.

The luminance is cut into patches (a power of two, at least 4 kernels wide); each patch's power
spectrum, binned in log-spaced rings and orientations, is compared with what a natural picture
(power falling as ``1 / |w|^p``, Field, JOSA A 4, 1987, doi:10.1364/JOSAA.4.002379) would give
if it were blurred by a kernel, with the picture's own softness, contrast and the noise of its
Poisson-Gaussian model. Whittle's likelihood scores each hypothesis (Whittle 1953; as for
spatially varying blur in Chakrabarti, Zickler and Freeman, CVPR 2010,
doi:10.1109/CVPR.2010.5539954). Local mode (`worker.deconv.local`), `--varying`'s choice of a
tile's kernel and the whole-frame check of `run` (`worker.deconv.whole_frame`) read these scores.
"""

from dataclasses import dataclass

import numpy as np
from scipy import fft

from worker.deconv.noise import NoiseModel, estimate_noise_model
from worker.deconv.psf import luminance

MIN_PATCH = 64
LOW_CUT = 2.0  # frequencies under this many cycles per patch are left out (shading, leakage)
RINGS, ORIENTATIONS = 8, 12  # frequency bins: log-spaced rings up to Nyquist, x orientations
SOFTNESS = (0.0, 0.7, 1.5, 2.5, 4.0, 6.0, 9.0, 13.0)  # px: isotropic softness, either way
SLOPES = (1.5, 2.0, 2.5)  # natural pictures' power falls as 1 / |w|^p
SCALE_STEPS = 48
NOISE_FLOOR = 3.0  # a patch with less power than this many times the noise's counts as flat
LUMA_NOISE = 0.2126**2 + 0.7152**2 + 0.0722**2  # luminance noise variance per channel variance
QUIET = 1e-12  # the least noise power a patch is taken to hold, over its mean power a frequency


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
    index = bins.reshape(-1)
    sums = np.zeros((flat.shape[0], count))
    for b in range(count):  # each bin's columns gathered alone: no copy of the whole spectrum
        sums[:, b] = flat[:, np.flatnonzero(index == b)].mean(axis=1)
    return sums.reshape((*values.shape[:-2], count))


def hypothesis_spectra(
    blur: np.ndarray,
    side: int,
    bins: np.ndarray,
    count: int,
    softness: tuple[float, ...] = SOFTNESS,
) -> np.ndarray:
    """Expected power per bin (hypotheses, count) of a natural picture (power ``1 / |w|^p``, p
    in `SLOPES`; Field 1987) blurred by the power transfer `blur` (side x side real FFT grid)
    and by its own softness (isotropic Gaussians of `softness` px, 0: none)."""
    wy, wx = _frequencies((side, side))
    radius2 = np.maximum(wy**2 + wx**2, 1e-12)
    powers = [
        blur * np.exp(-radius2 * sigma**2) / radius2 ** (slope / 2)
        for sigma in softness
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


@dataclass
class PatchSpectra:
    """The binned power spectra of a picture's patches, and what each hypothesis makes of them.

    observed: binned power (rows, cols, count); weights: frequencies per bin (count);
    noise: the noise's power at each patch's level (rows, cols); side, bins, count: the
    patches' side and `frequency_bins`.
    """

    observed: np.ndarray
    weights: np.ndarray
    noise: np.ndarray
    side: int
    bins: np.ndarray
    count: int

    def likelihood(
        self, psf: np.ndarray | None, softness: tuple[float, ...] = SOFTNESS
    ) -> np.ndarray:
        """Each patch's log-likelihood per frequency (rows, cols) as a natural picture blurred
        by `psf` (None: not blurred) and by a softness of its own among `softness` px
        (`hypothesis_spectra`), the best contrast and hypothesis."""
        if psf is None:
            blur = np.ones((self.side, self.side // 2 + 1))
        else:
            blur = np.abs(fft.rfft2(psf, s=(self.side, self.side))) ** 2
        spectra = hypothesis_spectra(blur, self.side, self.bins, self.count, softness)
        best = best_likelihood(self.observed, self.weights, self.noise, spectra)
        return best / self.weights.sum()

    def detail(self) -> np.ndarray:
        """Which patches hold detail: power above `NOISE_FLOOR` times the noise's (rows, cols)."""
        total = (self.observed * self.weights).sum(-1)
        return total > NOISE_FLOOR * self.noise * self.weights.sum()


def patch_spectra(
    image: np.ndarray, side: int, step: int, model: NoiseModel | None = None
) -> PatchSpectra:
    """The `PatchSpectra` of the luminance of `image` (H, W, C), side x side patches on a `step`
    grid; `model`: the picture's noise (None: fitted on `image`)."""
    grey = luminance(image).astype(np.float64)
    bins, count = frequency_bins(side)
    power, levels = patch_power(grey, side, step)
    observed = bin_means(power, bins, count)
    del power
    weights = np.bincount(bins[bins >= 0], minlength=count).astype(float)
    model = model or estimate_noise_model(image)
    noise = LUMA_NOISE * (model.gain * np.maximum(levels, 0) + model.read_variance)
    # A noiseless patch (a synthetic picture, a blown-out one) would make Whittle's terms 0 / 0
    # and log 0 where a hypothesis has no power (a kernel's spectral zeros), or overflow beside
    # them: the noise's power is kept above `QUIET` times the patch's mean power per frequency
    # (and the smallest positive number, for a flat one).
    mean_power = (observed * weights).sum(-1) / weights.sum()
    np.maximum(noise, np.maximum(QUIET * mean_power, np.finfo(np.float64).tiny), out=noise)
    return PatchSpectra(observed, weights, noise, side, bins, count)
