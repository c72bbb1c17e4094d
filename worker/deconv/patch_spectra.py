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

from worker.deconv.luminance import luminance, luminance_noise
from worker.deconv.noise import NoiseModel, estimate_noise_model

MIN_PATCH = 64
LOW_CUT = 2.0  # frequencies under this many cycles per patch are left out (shading, leakage)
RINGS, ORIENTATIONS = 8, 12  # frequency bins: log-spaced rings up to Nyquist, x orientations
SOFTNESS = (0.0, 0.7, 1.5, 2.5, 4.0, 6.0, 9.0, 13.0)  # px: isotropic softness, either way
SLOPES = (1.5, 2.0, 2.5)  # natural pictures' power falls as 1 / |w|^p
SCALE_STEPS = 48
NOISE_FLOOR = 3.0  # a patch with less power than this many times the noise's counts as flat
QUIET = 1e-12  # the least noise power a patch is taken to hold, over its mean power a frequency


def _frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Angular frequencies (rows, columns) of a real FFT grid of `shape`."""
    wy = 2 * np.pi * fft.fftfreq(shape[0])[:, None]
    wx = 2 * np.pi * fft.rfftfreq(shape[1])[None, :]
    return wy, wx


def patch_side(size: int) -> int:
    """The side of the analysis patches: a power of two, at least 64 and 4 kernels.

    Parameters
    ----------
    size : int
        The kernel's size, in pixels.

    Returns
    -------
    int
        The least power of two that is at least ``max(MIN_PATCH, 4 * size)``.
    """
    return int(2 ** np.ceil(np.log2(max(MIN_PATCH, 4 * size))))


def frequency_bins(side: int) -> tuple[np.ndarray, int]:
    """Each frequency of a side x side real FFT numbered by its (ring, orientation) bin.

    The rings are log-spaced from `LOW_CUT` cycles per patch up to Nyquist, `RINGS` of them,
    each cut into `ORIENTATIONS` orientations; bins no frequency falls in are dropped and the
    rest numbered 0 .. count - 1.

    Parameters
    ----------
    side : int
        The patches' side, in pixels.

    Returns
    -------
    bins : ndarray of int, shape (side, side // 2 + 1)
        Each frequency's bin, -1 for those left out: below `LOW_CUT` cycles per patch, or
        beyond Nyquist (the grid's corners).
    count : int
        The number of bins.
    """
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
    """Means of `values` over each frequency bin.

    Parameters
    ----------
    values : ndarray, shape (..., side, side // 2 + 1)
        Values on a side x side real FFT grid, such as power spectra.
    bins : ndarray of int, shape (side, side // 2 + 1)
        Each frequency's bin, -1 for those left out (`frequency_bins`).
    count : int
        The number of bins.

    Returns
    -------
    ndarray of float64, shape (..., count)
        The mean of `values` over each bin's frequencies.
    """
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
    """Expected power per bin of a natural picture (power ``1 / |w|^p``, p in `SLOPES`; Field
    1987) blurred by a kernel and by its own softness.

    Parameters
    ----------
    blur : ndarray, shape (side, side // 2 + 1)
        The kernel's power transfer ``|K|^2`` on a side x side real FFT grid (ones: no blur).
    side : int
        The patches' side, in pixels.
    bins : ndarray of int, shape (side, side // 2 + 1)
        Each frequency's bin, -1 for those left out (`frequency_bins`).
    count : int
        The number of bins.
    softness : tuple of float, optional
        The picture's own softness: the standard deviations, in pixels, of isotropic Gaussian
        blurs (0: none).

    Returns
    -------
    ndarray of float64, shape (len(softness) * len(SLOPES), count)
        One row a hypothesis, each softness with each slope (the slopes vary fastest), up to
        a scale.
    """
    wy, wx = _frequencies((side, side))
    radius2 = np.maximum(wy**2 + wx**2, 1e-12)
    powers = [
        blur * np.exp(-radius2 * sigma**2) / radius2 ** (slope / 2)
        for sigma in softness
        for slope in SLOPES
    ]
    return bin_means(np.array(powers), bins, count)


def patch_power(grey: np.ndarray, side: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Power spectra of Hann-windowed side x side patches of `grey` on a `step` grid.

    Each patch's mean is taken off before the window. A picture smaller than a patch is
    extended by mirroring at its bottom and right edges.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The luminance.
    side : int
        The patches' side, in pixels.
    step : int
        The distance between neighbouring patches' corners, in pixels.

    Returns
    -------
    power : ndarray, shape (rows, cols, side, side // 2 + 1)
        Each patch's power spectrum on a real FFT grid, scaled so that white noise of variance
        v has power v.
    means : ndarray, shape (rows, cols)
        The patches' mean levels.
    """
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
    """Whittle's log-likelihood of each patch's binned power, maximised over the hypotheses and
    the picture's contrast.

    A hypothesis's power is scaled by `SCALE_STEPS` factors from 1e-3 to 10 times the level at
    which it holds the patch's total power, and the patch's noise power is added.

    Parameters
    ----------
    observed : ndarray, shape (rows, cols, count)
        Each patch's binned power (`bin_means`).
    weights : ndarray, shape (count,)
        The number of frequencies in each bin.
    noise : ndarray, shape (rows, cols)
        The noise's power at each patch's level.
    spectra : ndarray, shape (hypotheses, count)
        The hypotheses' binned power (`hypothesis_spectra`).

    Returns
    -------
    ndarray, shape (rows, cols)
        Each patch's best log-likelihood, summed over the frequencies (each bin weighted by
        its number of frequencies).
    """
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

    Attributes
    ----------
    observed : ndarray, shape (rows, cols, count)
        Each patch's binned power.
    weights : ndarray, shape (count,)
        The number of frequencies in each bin.
    noise : ndarray, shape (rows, cols)
        The noise's power at each patch's level.
    side : int
        The patches' side, in pixels.
    bins : ndarray of int, shape (side, side // 2 + 1)
        Each frequency's bin (`frequency_bins`).
    count : int
        The number of bins.
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
        """Each patch's log-likelihood per frequency as a natural picture blurred by `psf` and
        by a softness of its own (`hypothesis_spectra`), at the best contrast and hypothesis.

        Parameters
        ----------
        psf : ndarray, shape (kh, kw), or None
            The kernel, no larger than a patch; None: not blurred.
        softness : tuple of float, optional
            The picture's own softnesses tried, in pixels (0: none).

        Returns
        -------
        ndarray, shape (rows, cols)
            `best_likelihood` divided by the number of frequencies used.
        """
        if psf is None:
            blur = np.ones((self.side, self.side // 2 + 1))
        else:
            blur = np.abs(fft.rfft2(psf, s=(self.side, self.side))) ** 2
        spectra = hypothesis_spectra(blur, self.side, self.bins, self.count, softness)
        best = best_likelihood(self.observed, self.weights, self.noise, spectra)
        return best / self.weights.sum()

    def detail(self) -> np.ndarray:
        """Which patches hold detail: power above `NOISE_FLOOR` times the noise's.

        Returns
        -------
        ndarray of bool, shape (rows, cols)
            True where a patch's binned power, summed over its frequencies, exceeds
            `NOISE_FLOOR` times the noise's.
        """
        total = (self.observed * self.weights).sum(-1)
        return total > NOISE_FLOOR * self.noise * self.weights.sum()


def patch_spectra(
    image: np.ndarray, side: int, step: int, model: NoiseModel | None = None
) -> PatchSpectra:
    """The `PatchSpectra` of the luminance of `image`, in side x side patches on a `step` grid.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, C in {1, 3}.
    side : int
        The patches' side, in pixels (`patch_side`).
    step : int
        The distance between neighbouring patches' corners, in pixels.
    model : NoiseModel, optional
        The picture's noise; None: fitted on `image` (`estimate_noise_model`).

    Returns
    -------
    PatchSpectra
        The patches' binned power, with the luminance noise's power at each patch's level (kept
        above `QUIET` times the patch's mean power per frequency).
    """
    grey = luminance(image).astype(np.float64)
    bins, count = frequency_bins(side)
    power, levels = patch_power(grey, side, step)
    observed = bin_means(power, bins, count)
    del power
    weights = np.bincount(bins[bins >= 0], minlength=count).astype(float)
    model = model or estimate_noise_model(image)
    noise = luminance_noise(image.shape[2]) * (
        model.gain * np.maximum(levels, 0) + model.read_variance
    )
    # A noiseless patch (a synthetic picture, a blown-out one) would make Whittle's terms 0 / 0
    # and log 0 where a hypothesis has no power (a kernel's spectral zeros), or overflow beside
    # them: the noise's power is kept above `QUIET` times the patch's mean power per frequency
    # (and the smallest positive number, for a flat one).
    mean_power = (observed * weights).sum(-1) / weights.sum()
    np.maximum(noise, np.maximum(QUIET * mean_power, np.finfo(np.float64).tiny), out=noise)
    return PatchSpectra(observed, weights, noise, side, bins, count)
