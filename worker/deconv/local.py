"""Local mode: keep the deblurred picture only where the PSF explains the blur.

A photograph often holds several blurs (a shaken subject on a sharp background, a focused
foreground). Deconvolving everything with one kernel over-sharpens and rings where the real blur is
smaller. Local mode blends the deblurred image ``d`` and the original ``f`` with a smooth weight
``w`` in [0, 1]:  ``out = w d + (1 - w) f``.

The criterion, a local "null-space" test of the kernel: a region blurred by ``k`` holds no detail
at the frequencies that ``k`` removes, so re-applying the filter ``P = 1 - |K|^2`` (what ``k``
followed by its adjoint leaves out) to its gradients removes almost all of their energy; a sharper
region keeps much of it. With local energies (Gaussian windows ``G`` about two kernel widths wide)

    r(x) = G * |grad(f - k~ * k * f)|^2  /  G * |grad f|^2      (k~: the flipped kernel)

is compared with its two reference values for a picture whose gradients have a flat spectrum
(the statistics of natural images): ``r_sharp = mean((1 - |K|^2)^2)`` for a sharp region and
``r_blurred = mean((1 - |K|^2)^2 |K|^2) / mean(|K|^2)`` for a region blurred by ``k``. Then
``w = clip((r_sharp - r) / (r_sharp - r_blurred), 0, 1)``, smoothed by the same window. Regions
without detail (energy near the noise floor) get ``w = 0``: there is nothing to gain there.
"""

import numpy as np
from scipy import fft, ndimage, signal

from worker.deconv.noise import estimate_noise
from worker.deconv.psf import luminance

SHARP_SIDE = 0.4  # w falls from 1 to 0 over this share of the way from r_blurred to r_sharp
NOISE_FLOOR = 4.0  # detail under this many times the noise's gradient energy counts as flat


def reference_ratios(psf: np.ndarray, grid: int = 256) -> tuple[float, float]:
    """(r_sharp, r_blurred) of the null-space ratio for a flat gradient spectrum."""
    power = np.abs(fft.rfft2(psf, s=(grid, grid))) ** 2
    null = (1 - power) ** 2
    return float(null.mean()), float((null * power).mean() / power.mean())


def explained_weight(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """The weight map (H, W), float32 in [0, 1]: about 1 where `psf` explains the blur of `image`
    ((H, W, C), linear), about 0 where the picture is sharper than that (or flat)."""
    grey = luminance(image).astype(np.float64)
    pad = psf.shape[0]
    padded = np.pad(grey, pad, mode="reflect")
    reblurred = signal.fftconvolve(
        signal.fftconvolve(padded, psf, mode="same"), psf[::-1, ::-1], mode="same"
    )[pad:-pad, pad:-pad]
    window = max(float(psf.shape[0]), 5.0)
    total = local_gradient_energy(grey, window)
    null = local_gradient_energy(grey - reblurred, window)
    r_sharp, r_blurred = reference_ratios(psf)
    ratio = null / np.maximum(total, 1e-30)
    span = SHARP_SIDE * max(r_sharp - r_blurred, 1e-6)
    weight = np.clip((r_blurred + span - ratio) / span, 0, 1)
    sigma = estimate_noise(grey)
    weight[total < NOISE_FLOOR * 4 * sigma**2] = 0
    # Shrink the regions to deblur by a window, then soften: the blend fades out inside them.
    weight = ndimage.minimum_filter(weight, size=2 * int(window) + 1, mode="nearest")
    return ndimage.gaussian_filter(weight, window / 2, mode="nearest").astype(np.float32)


def local_gradient_energy(plane: np.ndarray, window: float) -> np.ndarray:
    """``G * |grad plane|^2`` (central differences, Gaussian of standard deviation `window`)."""
    gy, gx = np.gradient(plane)
    return ndimage.gaussian_filter(gx * gx + gy * gy, window, mode="nearest")


def blend_locally(image: np.ndarray, deblurred: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``w d + (1 - w) f`` for the original `image` f and `deblurred` d ((H, W, C), same shape),
    with `explained_weight` w of the kernel `psf`."""
    weight = explained_weight(image, psf)[..., None]
    return (weight * deblurred + (1 - weight) * image).astype(np.float32)
