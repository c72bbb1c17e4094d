"""A texture-aware weight for the total-variation prior: less smoothing where there is texture.

Total variation favours piecewise-flat pictures: at the weight that holds noise back on smooth areas
it flattens fine texture (grass, fur, wood grain) into cartoon-like patches. Following Gilboa,
Sochen and Zeevi, "Variational denoising of partly textured images by spatially varying constraints"
(IEEE TIP 15, 2006, doi:10.1109/TIP.2006.875247), the prior's weight varies over the picture: full
where the picture's fine detail is no stronger than its noise, lower where texture stands out of it.
The fine detail is the blurred picture's high-pass `h = g - G_s * g` (`g` the channels' mean), its
local energy `E = G_w * h^2`; white noise of the local variance `v` per channel (the fitted
Poisson-Gaussian model, `noise.NoiseModel`) leaves in the mean of `C` channels about `E_n = v / C (1
- 1 / (2 pi s^2))`. (The white-noise gain of `delta - G_s`, `sum (delta - G_s)^2`, is exactly `1 - 3
/ (4 pi s^2)` for a Gaussian of `s` pixels: 0.894 against this 0.929 at s = 1.5 px; `TEXTURE_SCALE`
was measured with the approximation.) With the texture-to-noise ratio `T = max(E / E_n - 1, 0)`,

    weight = 1 / (1 + T / TEXTURE_SCALE)    in (0, 1],

on the extended grid (the frame's map extended by its nearest pixels).
"""

import numpy as np
from scipy import ndimage

from worker.deconv.boundaries import extended_shape, grid_window, hold_edges
from worker.deconv.gaussian_blur import gaussian_blur, reach
from worker.deconv.noise import NoiseModel
from worker.parallel import in_bands

HIGH_PASS = 1.5  # s: the Gaussian (pixels) whose residue is the fine detail
WINDOW = 4.0  # w: the Gaussian (pixels) over which its energy is measured
TEXTURE_SCALE = 16.0  # texture-to-noise ratio at which the prior's weight is halved


def texture_weight(
    f: np.ndarray, mask: np.ndarray, model: NoiseModel, psf_shape: tuple[int, int]
) -> np.ndarray:
    """The TV prior's weight per pixel: full on smooth areas, lower on texture (module's notes).

    Around clipped highlights (mask 0), within a kernel and a measuring window of them, the
    weight stays 1: the glow of a blown light has strong edges but is no texture, and the full
    prior is what keeps it from ringing. Computed in bands of rows on all cores
    (`worker.parallel.in_bands`).

    Parameters
    ----------
    f : ndarray, shape (C, H, W)
        The blurred picture, channels first.
    mask : ndarray, shape (H, W)
        The data mask: 0 on clipped pixels, 1 elsewhere.
    model : NoiseModel
        The picture's noise.
    psf_shape : tuple of int
        The kernel's (kh, kw): the extended grid, and the neighbourhood of a clipped pixel where
        the weight stays 1.

    Returns
    -------
    ndarray, shape (H + kh - 1, W + kw - 1)
        The weight, in (0, 1], float32 for a float32 `f`; the frame's map extended by its nearest
        pixels.
    """
    highlights = psf_shape[0] + int(6 * WINDOW), psf_shape[1] + int(6 * WINDOW)
    context = max(
        reach(WINDOW) + reach(HIGH_PASS),  # the energy of the fine detail
        0 if mask.all() else highlights[0] // 2,
    )
    weight = in_bands(
        lambda rows: _weight(f[:, rows], mask[rows], model, highlights), f.shape[1], context
    )
    extended = np.empty(extended_shape(weight.shape, psf_shape), weight.dtype)
    window = grid_window(weight.shape, psf_shape)
    extended[window] = weight
    return hold_edges(extended, window)


def _weight(
    f: np.ndarray, mask: np.ndarray, model: NoiseModel, highlights: tuple[int, int]
) -> np.ndarray:
    """`texture_weight` on the frame (H, W), without the extension; `highlights` is the size of
    the neighbourhood of a clipped pixel where the weight stays 1."""
    channels = f.shape[0]
    g = f.mean(axis=0)
    level = gaussian_blur(g, WINDOW)
    g -= gaussian_blur(g, HIGH_PASS)  # the fine detail
    g *= g
    energy = gaussian_blur(g, WINDOW)
    del g
    # What the noise alone would leave, E_n, from the local level (in `level`'s memory).
    share = (1 - 1 / (2 * np.pi * HIGH_PASS**2)) / channels
    noise = level
    noise *= model.gain * share
    noise += model.read_variance * share
    np.maximum(noise, 1e-20, out=noise)
    weight = energy  # 1 / (1 + max(E / E_n - 1, 0) / TEXTURE_SCALE), in place
    weight /= noise
    del noise
    weight -= 1
    np.maximum(weight, 0, out=weight)
    weight *= 1 / TEXTURE_SCALE
    weight += 1
    np.reciprocal(weight, out=weight)
    if not mask.all():
        weight[ndimage.maximum_filter(mask == 0, highlights)] = 1
    return weight
