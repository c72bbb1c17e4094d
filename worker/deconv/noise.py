"""The noise level of a picture, and the regularisation weight derived from it.

Noise: Immerkaer, "Fast noise variance estimation", Computer Vision and Image Understanding 64
(1996). The 3 x 3 operator

    N = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]

is the difference of two discrete Laplacians: it cancels smooth shading and straight edges
almost entirely and passes white noise with a gain of ||N|| = 6. Immerkaer averages |N * f|;
here the median is used instead (as Donoho's MAD does for wavelet bands), which ignores the
minority of pixels on corners and texture: sigma = median(|N * f|) / (6 * 0.6745).
"""

import numpy as np
from scipy import ndimage

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_MAD_TO_SIGMA = 1 / 0.6744897501960817
_SAMPLE_PIXELS = 4_000_000  # larger pictures are measured on evenly spaced bands of rows
_BAND_ROWS = 64


def _sample_rows(
    image: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Evenly spaced bands of rows holding about `_SAMPLE_PIXELS` pixels (all of a small image).

    The median of a few million values is as good as that of 24 million and far cheaper. Each
    band is followed by one row of zero weight, so no 3 x 3 neighbourhood straddles two bands.
    """
    height, width = image.shape[:2]
    bands = _SAMPLE_PIXELS // (_BAND_ROWS * width)
    if bands * _BAND_ROWS >= height // 2:
        return image, mask
    starts = np.linspace(0, height - _BAND_ROWS, bands).astype(int)
    rows = np.concatenate([np.arange(s, s + _BAND_ROWS + 1) for s in starts])
    rows = np.minimum(rows, height - 1)
    weight = np.ones((len(rows), width), dtype=np.float32) if mask is None else mask[rows]
    weight = weight.copy()
    weight[_BAND_ROWS :: _BAND_ROWS + 1] = 0  # the separator rows
    return image[rows], weight


def estimate_noise(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation of the noise in `image` ((H, W) or (H, W, C)), in image units.

    The channels' estimates are averaged. `mask` ((H, W), nonzero = usable) leaves out pixels,
    such as clipped highlights, where the noise was erased; a pixel counts only when its whole
    3 x 3 neighbourhood is usable. Pictures over 4 Mpx are measured on bands of rows spread over
    the frame. Returns 0.0 for an image too small to measure (under 3 x 3).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    image, mask = _sample_rows(image, mask)
    usable = np.ones(image.shape[:2], dtype=bool) if mask is None else np.asarray(mask) != 0
    usable = ndimage.binary_erosion(usable, np.ones((3, 3), bool), border_value=0)
    if not usable.any():
        return 0.0
    sigmas = [
        np.median(np.abs(ndimage.correlate(image[..., c], _IMMERKAER, mode="reflect"))[usable])
        for c in range(image.shape[2])
    ]
    return float(np.mean(sigmas) * _MAD_TO_SIGMA / 6)


LAMBDA_SCALE = 8.0  # lambda = LAMBDA_SCALE * (sigma / white)^1.5 at priority 0
PRIORITY_RANGE = 4.0  # lambda is divided by this at priority +1 and multiplied at -1


def regularisation_weight(sigma: float, white: float, priority: float = 0.0) -> float:
    """The TV weight `lambda` of Richardson-Lucy-TV for noise `sigma` and priority in [-1, 1].

    `white` is the picture's white level (a high percentile of its values). Richardson-Lucy-TV is
    unchanged when a picture and its noise are scaled together, so lambda depends only on the
    relative noise r = sigma / white. It grows a little faster than r (noisier pictures need
    relatively more smoothing), and the priority moves it on a log scale, monotonically:

        lambda = LAMBDA_SCALE * r^1.5 * PRIORITY_RANGE^(-priority)

    -1 (denoise) regularises PRIORITY_RANGE times more than 0 (balanced), +1 (deblur)
    PRIORITY_RANGE times less. The law was fitted on the quality benchmark
    (benchmarks/bench_deblur.py) at noise of 1 % and 3 % of white: about 0.016 and 0.08.
    """
    if white <= 0 or sigma <= 0:
        return 0.0
    return float(LAMBDA_SCALE * (sigma / white) ** 1.5 * PRIORITY_RANGE ** (-priority))


def white_level(image: np.ndarray) -> float:
    """The picture's white level: the 99.5th percentile of its values (on a subsample of at most
    about a million values, which is plenty for a percentile)."""
    values = np.asarray(image).reshape(-1)
    step = max(1, values.size // 1_000_000)
    return float(np.percentile(values[::step], 99.5))
