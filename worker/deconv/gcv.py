"""How well a kernel explains the blur of a window: generalised cross-validation (GCV).

Reeves and Mersereau, "Blur identification by the method of generalized cross-validation"
(IEEE TIP 1992, doi:10.1109/83.148605): for a candidate kernel ``k``, restore the window by
Tikhonov-regularised deconvolution with a gradient penalty, whose influence on each frequency is

    h(w) = |K(w)|^2 / (|K(w)|^2 + alpha |D(w)|^2)         (D: the discrete gradient)

and score the restoration by how well it predicts each observed value from the others
(Golub, Heath and Wahba 1979, doi:10.1080/00401706.1979.10489751):

    GCV(k, alpha) = mean((1 - h)^2 |F|^2) / mean(1 - h)^2,     GCV(k) = min over alpha.

The kernel that explains the blur best (and only as much blur as there is) has the lowest GCV; the
delta kernel (no blur, denoising only) is the baseline. Unlike the blind estimate's own objective,
GCV cannot be lowered by fitting noise, and it can be evaluated on a window the kernel was not
estimated on: a cross-check. Each score costs one FFT of the kernel and a few vector operations.
"""

import numpy as np
from scipy import fft

from worker.deconv.periodic import (
    centred_kernel_spectrum,
    fast_shape,
    gradient_spectrum_power,
    smooth_periodic_extension,
)

ALPHAS = np.logspace(-6, 1, 29)  # the regularisation weights searched, in steps of 10^0.25
MAX_SIDE = 384  # larger windows are scored on their central part


class GcvWindow:
    """One grey window's spectrum, ready to score kernels by GCV.

    The window is divided by its mean absolute value (`level`), so the scores do not depend on
    its brightness, and extended into a smooth periodic picture, so the FFT sees no seam.

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The luminance window; one over `MAX_SIDE` on a side is cut to its central `MAX_SIDE`.
    margin : int
        The largest kernel side to score: the window is extended by at least this much
        on each axis.

    Attributes
    ----------
    patch_shape : tuple of int
        The shape of the part of `patch` used.
    level : float
        The mean absolute value of that part (at least 1e-12).
    shape : tuple of int
        The extended grid, fast FFT sizes (`periodic.fast_shape`).
    spectrum : ndarray of complex128, shape (shape[0], shape[1] // 2 + 1)
        The real FFT of the extended window, divided by `level`.
    """

    def __init__(self, patch: np.ndarray, margin: int) -> None:
        height, width = patch.shape
        top, left = max((height - MAX_SIDE) // 2, 0), max((width - MAX_SIDE) // 2, 0)
        patch = patch[top : top + MAX_SIDE, left : left + MAX_SIDE].astype(np.float64)
        self.patch_shape = patch.shape
        self.level = max(float(np.abs(patch).mean()), 1e-12)
        patch = patch / self.level
        self.shape = fast_shape((patch.shape[0] + margin, patch.shape[1] + margin))
        self.spectrum = fft.rfft2(smooth_periodic_extension(patch, self.shape))
        self.weights = np.full(self.spectrum.shape, 2.0)  # the half-spectrum counts twice ...
        self.weights[:, 0] = 1.0  # ... except the columns that have no mirror image
        if self.shape[1] % 2 == 0:
            self.weights[:, -1] = 1.0
        self.power = np.abs(self.spectrum) ** 2
        self.gradient_power = gradient_spectrum_power(self.shape)

    def score(self, psf: np.ndarray) -> float:
        """GCV of `psf` on this window, minimised over alpha.

        Parameters
        ----------
        psf : ndarray, shape (k, k)
            The kernel: odd-sized, summing to one, no larger than the window's margin.

        Returns
        -------
        float
            The least GCV over `ALPHAS` (of the window divided by `level`): the lower, the better
            `psf` explains the window's blur.
        """
        return self.best(psf)[0]

    def best(self, psf: np.ndarray) -> tuple[float, float]:
        """The GCV of `psf` at the alpha of `ALPHAS` where it is lowest, and that alpha.

        Parameters
        ----------
        psf : ndarray, shape (k, k)
            The kernel: odd-sized, summing to one, no larger than the window's margin.

        Returns
        -------
        tuple of float
            (GCV, alpha).
        """
        kernel_power = np.abs(centred_kernel_spectrum(psf, self.shape)) ** 2
        best, chosen = np.inf, float(ALPHAS[0])
        total = self.weights.sum()
        for alpha in ALPHAS:
            leave = alpha * self.gradient_power / (kernel_power + alpha * self.gradient_power)
            residual = (self.weights * leave**2 * self.power).sum() / total
            trace = (self.weights * leave).sum() / total
            value = residual / max(trace**2, 1e-300)
            if value < best:
                best, chosen = value, float(alpha)
        return float(best), chosen

    def restoring_filter(self, psf: np.ndarray) -> np.ndarray:
        """The Tikhonov filter of `psf` at its GCV alpha, ``conj(K) / (|K|^2 + alpha |D|^2)``.

        Parameters
        ----------
        psf : ndarray, shape (k, k)
            The kernel: odd-sized, summing to one, no larger than the window's margin.

        Returns
        -------
        ndarray of complex128, shape (shape[0], shape[1] // 2 + 1)
            The filter's half-spectrum on the extended grid `shape`: times `spectrum`, the window
            (divided by `level`) restored.
        """
        otf = centred_kernel_spectrum(psf, self.shape)
        alpha = self.best(psf)[1]
        return np.conj(otf) / (np.abs(otf) ** 2 + alpha * self.gradient_power)

    def noise_gain(self, response: np.ndarray) -> float:
        """The variance white noise of unit variance has after a filter (Parseval).

        Parameters
        ----------
        response : ndarray, shape (shape[0], shape[1] // 2 + 1)
            The filter's half-spectrum on the grid `shape`.

        Returns
        -------
        float
            The mean of ``|response|^2`` over the full spectrum (the half-spectrum's columns that
            have a mirror image counted twice).
        """
        return float((self.weights * np.abs(response) ** 2).sum() / self.weights.sum())
