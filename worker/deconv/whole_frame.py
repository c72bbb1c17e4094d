"""Whether a kernel can be the blur of the whole frame: no part of the picture sharper than it.

Camera shake blurs every part of the frame, and so does a lens's softness; a photograph's own
depth of field, or a subject that moved, leaves other parts sharp. The kernel `run` learns on two
windows describes those windows: on the blind benchmark's sharp photographs, their windows on
out-of-focus grass or a soft scan agreed on a blob of 6-14 px, which made the pictures 5-26 dB
worse (dark and white outlines along every edge that was sharp), and no test on the windows
themselves told those blobs from right kernels (docs/MEASUREMENTS.md). The rest of the frame
can: a patch that holds detail no picture blurred by the kernel can hold shows that the kernel is
not the frame's blur.

Per patch (`worker.deconv.patch_spectra`: Whittle's likelihood of its power spectrum), the
hypothesis "sharp" (a natural picture, not blurred, with at most `SHARP_SOFTNESS` px of
softness) is scored against "blurred by the kernel" (with any softness of its own on top). Where
a tenth of the detailed patches (`SHARPER_SHARE`) find the picture sharper than the kernel by
`SHARPER_MARGIN` nats per frequency or more, the kernel is not the frame's blur (`sharper_parts`).
The noise is counted at the level the deblur counts it (`for_correlated_noise`): a raw file's
noise is added after the blur and correlated by demosaicing, and counted as white noise at the
level a 3 x 3 operator reads (under half the true one) it made darktable's exports of shaken DNGs
look sharper than their true kernels (0.09-0.71; -0.05 to +0.06 counted as the deblur does).
Measured on the blind benchmark (docs/MEASUREMENTS.md): the kernels `run` used on pictures blurred
alike all over, right or wrong, reach 0.06 at most, their true kernels 0.09; the kernels learnt
on the sharp photographs -0.24 to +0.60, 7 of their 19 runs 0.1 or more (a photograph whose
content is as soft as its blob everywhere, as a soft scan is, shows nothing sharper and is not
caught). Local mode, which deblurs only the part a kernel explains, does not ask; `--varying`
asks it of each tile's kernel on its tile (`varying.best_kernel`).
"""

import math

import numpy as np

from worker.deconv.noise import NoiseModel, estimate_noise_model
from worker.deconv.noise_correlation import for_correlated_noise
from worker.deconv.patch_spectra import patch_side, patch_spectra

SHARP_SOFTNESS = (0.0, 0.7)  # px: how soft a part in focus may be
SHARPER_SHARE = 0.1  # the share of the detailed patches...
SHARPER_MARGIN = 0.1  # ...that must find the picture sharper than the kernel by this, per frequency
MAX_PATCHES = 256  # patches read, spread evenly over the frame (a sample is enough for a share)


def sharper_margin(image: np.ndarray, psf: np.ndarray, model: NoiseModel | None = None) -> float:
    """The margin by which a tenth of `image`'s detailed patches are sharper than `psf` allows.

    The quantile ``1 - SHARPER_SHARE`` of the margin (log-likelihood per frequency) of "sharp"
    over "blurred by `psf`", over the detailed patches among at most `MAX_PATCHES` spread over
    the frame (`worker.deconv.patch_spectra`).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture, linear.
    psf : ndarray, shape (kh, kw)
        The kernel judged; its height sets the patches' side (`patch_spectra.patch_side`).
    model : NoiseModel or None, optional
        The picture's noise; None: fitted on `image` and raised to its level where demosaicing
        correlated it, as the deblur counts it (`for_correlated_noise`).

    Returns
    -------
    float
        The margin in nats per frequency; -inf when no patch holds detail.
    """
    side = patch_side(psf.shape[0])
    height, width = image.shape[:2]
    step = max(side // 2, math.ceil(math.sqrt(height * width / MAX_PATCHES)))
    model = model or for_correlated_noise(estimate_noise_model(image), image)
    spectra = patch_spectra(image, side, step, model)
    margin = spectra.likelihood(None, SHARP_SOFTNESS) - spectra.likelihood(psf)
    detailed = margin[spectra.detail()]
    return float(np.quantile(detailed, 1 - SHARPER_SHARE)) if detailed.size else -math.inf


def sharper_parts(image: np.ndarray, psf: np.ndarray, model: NoiseModel | None = None) -> bool:
    """Whether a tenth of the picture is clearly sharper than `psf` allows.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture, linear.
    psf : ndarray, shape (kh, kw)
        The kernel judged.
    model : NoiseModel or None, optional
        The picture's noise, as in `sharper_margin`.

    Returns
    -------
    bool
        True when `sharper_margin` is `SHARPER_MARGIN` or more: then `psf` is not the blur of the
        whole frame.
    """
    return sharper_margin(image, psf, model) >= SHARPER_MARGIN
