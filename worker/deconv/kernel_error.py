"""The error of a learnt kernel, counted as noise: how much more the deblur must smooth with it.

A kernel learnt from the picture is never exact: ``k = k_true + dk``. Deblurring with it fits the
data model ``f = k * x + n``, while the data obey ``f = k_true * x + n = k * x - dk * x + n``: the
model's error ``-dk * x`` enters the data term exactly as noise does (the model of Ji and Wang,
"Robust image deblurring with an inaccurate blur kernel", IEEE Transactions on Image Processing
21, 2012, who write the observation as ``(k + dk) * x + n``). That is why a slightly wrong kernel
brings echoes and grain where the noise is low: the weight of the prior, derived from the noise
alone (`noise.regularisation_weight`), is then too small for the data's real error, and the
deconvolution explains the model's error with false detail. With the error as extra noise of
variance ``sigma_k^2``, the data term's variance becomes ``sigma_n^2 + sigma_k^2`` (Gaussian
approximation: ``dk * x`` is a sum of many small terms), so the prior's weight must grow as the
noise model's would for that variance.

``sigma_k^2`` is estimated at run time from the two kernels `worker.deconv.blind` learns on two
separate windows of the picture (``k1`` on the first, ``k2`` on the second). Camera shake blurs
both alike, so their difference (after both are centred on their centroids, as every kernel used
is: a shift is no error) is their errors' difference, ``k1 - k2 = dk1 - dk2``. Each error has a
part of its own, ``d1`` and ``d2`` (the window's noise and texture), and may have a part both
share, ``c`` (the estimator's bias on this kind of content: two windows of grass agree on the
same wrong kernel), which cancels in the difference: ``E ||(k1 - k2) * x||^2 = 2 E ||d * x||^2``
while ``E ||dk1 * x||^2 = E ||c * x||^2 + E ||d * x||^2``. The shared part is counted as
`SHARED_ERROR` times each window's own (1: as large), so

    sigma_k^2 = (1 + SHARED_ERROR) / 2 (mean(((k1 - k2) * x)^2) - sigma_g^2 G),

over the first window, with ``x`` the window restored with ``k1`` (Tikhonov with a gradient
penalty at the weight generalised cross-validation chooses, `gcv.GcvWindow.restoring_filter`;
the blurred window alone would hide the high frequencies where a kernel's error matters most).
The restored window carries noise too, which ``k1 - k2`` passes with the variance ``sigma_g^2
G``: ``sigma_g`` the window's (grey) noise, ``G`` the white-noise gain of ``(k1 - k2)`` times the
restoring filter (`gcv.GcvWindow.noise_gain`); it is taken off, so that the noise is not counted
twice (on the blind benchmark's 24 pictures it lowered ``r`` by 5 % or less where ``r`` was
above 1, by 0.03 at most where below). The noise variance ``sigma_n^2`` is
measured on the same window (`noise.estimate_noise`, the mean of the channels' deviations: the
variance each channel's data term carries). The kernel error is measured on luminance, which
carries the edges of all three channels alike: it stands for each channel's. The ratio

    r = sigma_k^2 / sigma_n^2

is what `noise.regularisation_weight` takes as `kernel_error`: the effective noise variance, so
the noise model's gain, is ``(1 + r)`` times the noise's. A kernel the user gives (`deblur
--psf`) is taken as exact: ``r = 0``.

It is a rough measure. The shared part is not seen, only assumed: where it is larger than each
window's own, ``r`` is too small; a second kernel worse than the first, or a restored window with
more edge contrast than the truth, makes it too large. Against the truth on the blind
benchmark's photographs (24 pictures, the kernel learnt at the true size, ``||(k1 - k_true) *
x_true||^2 / sigma_n^2``), ``r`` counted without a shared part (half the value used here) was
within a factor of 3 of it in 8 cases, 4.8 to 155 times lower in 10 (0 in 3, where
the two kernels were the same), 3.4 to 31 times higher in 6: more often too small than too
large, as a shared part would make it. Counting the shared part as large as each window's own,
the blind benchmark's runs that keep a learnt kernel gain on average on every size guess of its
camera shake (+0.21 to +0.33 dB over the runs concerned), most at ISO 100-800, and lose a little
at ISO 3200 and where the two kernels differ while both are right (docs/MEASUREMENTS.md). So it
raises lambda where the two windows' kernels differ, and leaves alone what it cannot see.

Levin, Weiss, Durand and Freeman, "Efficient marginal likelihood optimization in blind
deconvolution", CVPR 2011, doi:10.1109/CVPR.2011.5995308, argue for weighing the posterior's
spread around a kernel rather than its mode alone; here that spread is measured as the
disagreement of two independent estimates and handed on to the deblur, which a MAP pipeline
otherwise ignores.
"""

import numpy as np
from scipy import fft

from worker.deconv.gcv import GcvWindow
from worker.deconv.luminance import luminance
from worker.deconv.noise import estimate_noise
from worker.deconv.periodic import centred_kernel_spectrum
from worker.deconv.psf_tools import centre_subpixel

SHARED_ERROR = 1.0  # the part of a kernel's error both windows share, times each one's own


def kernel_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``k1 - k2`` of two kernels, both centred on their centroids first.

    Each is centred to the sub-pixel (`psf_tools.centre_subpixel`) and summed to one: what is
    left is their difference of shape.

    Parameters
    ----------
    first, second : ndarray, shape (k, k)
        The two kernels, of one odd size; non-negative, with positive sums.

    Returns
    -------
    ndarray of float64, shape (k, k)
        The centred `first` less the centred `second`.
    """
    return centre_subpixel(first).astype(np.float64) - centre_subpixel(second).astype(np.float64)


def kernel_error_variance(patch: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """``sigma_k^2`` of kernel `first` on a grey window, from its difference with `second`.

    See the module's notes: the difference of the two kernels applied to the window restored with
    `first` (`gcv.GcvWindow.restoring_filter`), its mean square away from the border, less the
    noise the restoration carries through the difference, times ``(1 + SHARED_ERROR) / 2``.

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The grey (luminance) window `first` was learnt on, in linear light. A window larger than
        `gcv.MAX_SIDE` is measured on its central part (`gcv.GcvWindow`).
    first : ndarray, shape (k, k)
        The kernel whose error is measured, odd-sized.
    second : ndarray, shape (k, k)
        Its twin, learnt on another part of the picture.

    Returns
    -------
    float
        ``sigma_k^2`` in the patch's units squared; 0.0 when the noise explains the whole
        difference.
    """
    size = first.shape[0]
    window = GcvWindow(patch, size)
    restoring = window.restoring_filter(first.astype(np.float64))
    difference = centred_kernel_spectrum(kernel_difference(first, second), window.shape)
    error = fft.irfft2(difference * restoring * window.spectrum, s=window.shape)
    height, width = window.patch_shape
    half = size // 2
    total = np.mean(error[half : height - half, half : width - half] ** 2)
    noise = (estimate_noise(patch) / window.level) ** 2 * window.noise_gain(difference * restoring)
    return float(max(total - noise, 0.0) * window.level**2 * (1 + SHARED_ERROR) / 2)


def kernel_error_ratio(patch: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """``r = sigma_k^2 / sigma_n^2`` of kernel `first` (see the module's notes).

    Parameters
    ----------
    patch : ndarray, shape (h, w, C)
        The pixels of the linear colour window `first` was learnt on. The noise is measured on
        them; the error on their luminance.
    first : ndarray, shape (k, k)
        The kernel whose error is measured, odd-sized.
    second : ndarray, shape (k, k)
        Its twin, learnt on another part of the picture.

    Returns
    -------
    float
        The ratio, at least 0. 0.0 where the window has no measurable noise: there is no noise to
        count the error as a share of, and the deblur's weight, set from the noise, is 0 as well.
    """
    noise = estimate_noise(patch) ** 2
    if noise <= 0:
        return 0.0
    return kernel_error_variance(luminance(patch), first, second) / noise
