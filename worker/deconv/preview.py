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
    """The image and PSF for a preview at `scale`: both downsized.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture.
    psf : ndarray, shape (kh, kw)
        Its blur.
    scale : float
        The preview's size as a share of the picture's, above 0.

    Returns
    -------
    tuple of ndarray
        `image` and `psf` themselves when `scale` is 1 or more; else the image shrunk by area
        averaging to about ``(H scale, W scale)`` (`resize.shrink_area`) and the PSF resampled
        with it (`psf_tools.resample_psf`: odd, at least 3 x 3).
    """
    if scale >= 1:
        return image, psf
    return shrink_area(image, scale), resample_psf(psf, scale)


def check_preview(image: np.ndarray, psf: np.ndarray, scale: float) -> None:
    """Check that the preview `image` at `scale` holds the kernel `psf` at that scale.

    Parameters
    ----------
    image : ndarray, shape (h, w, C)
        The preview, as `preview_inputs` gives it.
    psf : ndarray, shape (kh, kw)
        The kernel at the preview's scale, as `preview_inputs` gives it.
    scale : float
        The preview's scale, for the message.

    Raises
    ------
    InputError
        When the preview (or the picture itself, at scale 1) is smaller than the kernel, or
        than 2 px, on either side.
    """
    if any(n < max(k, 2) for n, k in zip(image.shape, psf.shape, strict=False)):
        blur = f"the blur ({psf.shape[1]}x{psf.shape[0]} px"
        if scale >= 1:  # (no preview: "scale 1 leaves a preview" named none)
            raise InputError(
                f"the picture, {image.shape[1]}x{image.shape[0]} px, is smaller than {blur})"
            )
        raise InputError(
            f"scale {scale:g} leaves a {image.shape[1]}x{image.shape[0]} preview, too small for "
            f"{blur} at that scale)"
        )
