"""A texture-aware weight for the total-variation prior: less smoothing where there is texture.

Total variation favours piecewise-flat pictures: at the weight that holds noise back on smooth
areas it flattens fine texture (grass, fur, wood grain) into cartoon-like patches. Following
Gilboa, Sochen and Zeevi, "Variational denoising of partly textured images by spatially varying
constraints" (IEEE TIP 15, 2006, doi:10.1109/TIP.2006.875247), the prior's weight varies over
the picture: full where the picture's fine detail is no stronger than its noise, lower where
texture stands out of it. The fine detail is the blurred picture's high-pass `h = g - G_s * g`
(`g` the channels' mean), its local energy `E = G_w * h^2`; white noise of the local variance
`v` (the fitted Poisson-Gaussian model, `noise.NoiseModel`, averaged over the channels) would
leave `E_n = v (1 - 1 / (2 pi s^2))` (`sum (delta - G_s)^2` for a Gaussian of `s` pixels, to
first order). With the texture-to-noise ratio `T = max(E / E_n - 1, 0)`,

    weight = 1 / (1 + T / TEXTURE_SCALE)    in (0, 1],

on the extended grid (the frame's map extended by its nearest pixels).
"""

import numpy as np
from scipy import ndimage

from worker.deconv.noise import NoiseModel

HIGH_PASS = 1.5  # s: the Gaussian (pixels) whose residue is the fine detail
WINDOW = 4.0  # w: the Gaussian (pixels) over which its energy is measured
TEXTURE_SCALE = 4.0  # texture-to-noise ratio at which the prior's weight is halved


def texture_weight(
    f: np.ndarray, mask: np.ndarray, model: NoiseModel, psf_shape: tuple[int, int]
) -> np.ndarray:
    """The prior's weight (H + kh - 1, W + kw - 1) float32 for the blurred picture `f` (C, H, W)
    with data mask `mask` (H, W) and noise `model`, on the extended grid of a `psf_shape` kernel.

    Around clipped highlights (mask 0), within a kernel and a measuring window of them, the
    weight stays 1: the glow of a blown light has strong edges but is no texture, and the full
    prior is what keeps it from ringing.
    """
    channels = f.shape[0]
    g = f.mean(axis=0)
    detail = g - ndimage.gaussian_filter(g, HIGH_PASS, mode="reflect")
    energy = ndimage.gaussian_filter(detail * detail, WINDOW, mode="reflect")
    level = ndimage.gaussian_filter(g, WINDOW, mode="reflect")
    variance = np.maximum(model.gain * level + model.read_variance, 0) / channels
    noise = variance * (1 - 1 / (2 * np.pi * HIGH_PASS**2)) + 1e-20
    ratio = np.maximum(energy / noise - 1, 0)
    weight = (1 / (1 + ratio / TEXTURE_SCALE)).astype(np.float32)
    if not mask.all():
        reach = (psf_shape[0] + int(6 * WINDOW), psf_shape[1] + int(6 * WINDOW))
        weight[ndimage.maximum_filter(mask == 0, reach)] = 1
    cy, cx = psf_shape[0] // 2, psf_shape[1] // 2
    return np.pad(weight, ((cy, cy), (cx, cx)), mode="edge")
