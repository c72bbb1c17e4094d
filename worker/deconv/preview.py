"""Previews: the image and its PSF downsized together.

Deblurring a picture shrunk by `scale` with the kernel shrunk by the same factor gives, in a
fraction of the time, what the full run will look like at screen size.
"""

import numpy as np

from worker.deconv.psf_tools import resample_psf
from worker.resize import shrink_area


def preview_inputs(
    image: np.ndarray, psf: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The image and PSF for a preview at `scale`: both downsized (the PSF stays odd, >= 3x3)."""
    if scale >= 1:
        return image, psf
    return shrink_area(image, scale), resample_psf(psf, scale)
