"""The luminance of a linear picture, and how much of its channels' noise it holds."""

import numpy as np

LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709 / sRGB primaries
LUMA = np.array(LUMA_WEIGHTS, dtype=np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """The luminance plane of a linear image, as float32.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, C in {1, 3} (Rec. 709 / sRGB primaries); other shapes are not checked.

    Returns
    -------
    ndarray, shape (H, W)
        float32: a copy of the one channel, or ``0.2126 R + 0.7152 G + 0.0722 B``.
    """
    image = np.asarray(image, dtype=np.float32)  # no copy when it is float32 already
    return image[..., 0].copy() if image.shape[2] == 1 else image @ LUMA


def luminance_noise(channels: int) -> float:
    """The variance of `luminance`'s noise per unit of each channel's noise variance.

    With independent noise of variance ``v`` in each channel, ``0.2126 R + 0.7152 G + 0.0722 B``
    has variance ``(0.2126^2 + 0.7152^2 + 0.0722^2) v``, about ``0.54 v``; a one-channel
    picture's luminance is the channel itself, of variance ``v``.

    Parameters
    ----------
    channels : int
        The picture's channels, 1 or 3 (as `luminance` takes them).

    Returns
    -------
    float
        1 for one channel, the sum of the squares of `LUMA_WEIGHTS` for three.
    """
    return 1.0 if channels == 1 else sum(weight**2 for weight in LUMA_WEIGHTS)
