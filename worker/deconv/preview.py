"""Previews: the image and its PSF downsized together.

Deblurring a picture shrunk by `scale` with the kernel shrunk by the same factor gives, in a
fraction of the time, what the full run will look like at screen size.
"""

import numpy as np

from worker.deconv.psf_tools import resample_psf
from worker.errors import InputError
from worker.resize import shrink_area


def preview_inputs(
    image: np.ndarray, psf: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The image and PSF for a preview at `scale`: both downsized (the PSF stays odd, >= 3x3)."""
    if scale >= 1:
        return image, psf
    return shrink_area(image, scale), resample_psf(psf, scale)


def check_preview(image: np.ndarray, psf: np.ndarray, scale: float) -> None:
    """Raise `InputError` unless the preview `image` (H, W, C) at `scale` holds the kernel `psf`
    at that scale (both as `preview_inputs` gives them), at least 2 px each way."""
    if any(n < max(k, 2) for n, k in zip(image.shape, psf.shape, strict=False)):
        raise InputError(
            f"scale {scale:g} leaves a {image.shape[0]}x{image.shape[1]} preview, too small for "
            f"the blur ({psf.shape[0]}x{psf.shape[1]} px at that scale)"
        )
