"""The error ratio of Levin, Weiss, Durand and Freeman, "Understanding and evaluating blind
deconvolution algorithms" (CVPR 2009), with the fixed non-blind step of the shared peer table.

For a blurred image ``y``, its sharp original ``x``, the true kernel and an estimated one: deblur
``y`` with each kernel by the same TV-L2 method (lambda 2e-3), compare each result to ``x`` on the
central 225 x 225 crop, minimising the sum of squared differences (SSD) over sub-pixel shifts of up
to +-5 px in 0.25 px steps (bilinear), and divide: ratio = SSD(estimated) / SSD(true).
Kernels here are in the benchmark's orientation: ``y = correlate(x, f)``.
"""

import numpy as np
from scipy import fft

from worker.deconv.periodic import (
    centred_kernel_spectrum,
    fast_shape,
    forward_gradients,
    gradient_adjoint,
    gradient_spectrum_power,
    smooth_periodic_extension,
)
from worker.deconv.psf_tools import center_on_centroid

TV_WEIGHT = 2e-3
BORDER = 15
MAX_SHIFT, SHIFT_STEP = 5.0, 0.25


def tv_l2_deconvolve(blurred: np.ndarray, psf: np.ndarray, weight: float = TV_WEIGHT) -> np.ndarray:
    """``argmin_u 1/2 ||psf * u - blurred||^2 + weight TV(u)`` (isotropic TV, convolution
    convention) by half-quadratic splitting with continuation (Wang, Yang, Yin and Zhang, "A new
    alternating minimization algorithm for total variation image reconstruction", SIAM J. Imaging
    Sci. 2008). The image is extended to a smooth periodic one so the FFTs see no seam."""
    height, width = blurred.shape
    shape = fast_shape((height + psf.shape[0] - 1 + 16, width + psf.shape[1] - 1 + 16))
    extended = smooth_periodic_extension(blurred, shape)
    otf = centred_kernel_spectrum(psf, shape)
    numerator_data = np.conj(otf) * fft.rfft2(extended)
    otf_power = np.abs(otf) ** 2
    grad_power = gradient_spectrum_power(shape)
    latent = extended
    for beta in weight * 2.0 ** np.arange(2, 16):
        for _ in range(2):
            gx, gy = forward_gradients(latent)
            divergence = gradient_adjoint(soft(gx, weight / beta), soft(gy, weight / beta))
            latent = fft.irfft2(
                (numerator_data + beta * fft.rfft2(divergence)) / (otf_power + beta * grad_power),
                s=shape,
            )
    return latent[:height, :width]


def soft(values: np.ndarray, threshold: float) -> np.ndarray:
    """Soft thresholding, the proximal map of ``threshold |.|``."""
    return np.sign(values) * np.maximum(np.abs(values) - threshold, 0)


def best_shift_ssd(result: np.ndarray, sharp: np.ndarray) -> float:
    """Smallest SSD between the central crop of `sharp` and `result` shifted by up to +-5 px in
    0.25 px steps (bilinear interpolation)."""
    height, width = sharp.shape
    target = sharp[BORDER : height - BORDER, BORDER : width - BORDER]
    crop_h, crop_w = target.shape
    offsets = np.arange(-MAX_SHIFT, MAX_SHIFT + SHIFT_STEP / 2, SHIFT_STEP)
    best = np.inf
    for dy in offsets:
        base_y, frac_y = int(np.floor(dy)), dy - np.floor(dy)
        y0 = BORDER + base_y
        rows = (1 - frac_y) * result[y0 : y0 + crop_h] + frac_y * result[y0 + 1 : y0 + 1 + crop_h]
        for dx in offsets:
            base_x, frac_x = int(np.floor(dx)), dx - np.floor(dx)
            x0 = BORDER + base_x
            shifted = (1 - frac_x) * rows[:, x0 : x0 + crop_w] + frac_x * rows[
                :, x0 + 1 : x0 + 1 + crop_w
            ]
            best = min(best, float(((shifted - target) ** 2).sum()))
    return best


def error_ratio(
    blurred: np.ndarray, sharp: np.ndarray, true_kernel: np.ndarray, kernel: np.ndarray
) -> float:
    """SSD(deblurred with `kernel`) / SSD(deblurred with `true_kernel`), both in correlation
    orientation (``blurred = correlate(sharp, kernel)``), each centred on its centroid first."""
    ssd = []
    for f in (kernel, true_kernel):
        psf = center_on_centroid(np.asarray(f, dtype=np.float64))[::-1, ::-1].astype(np.float64)
        ssd.append(best_shift_ssd(tv_l2_deconvolve(blurred, psf), sharp))
    return ssd[0] / ssd[1]
