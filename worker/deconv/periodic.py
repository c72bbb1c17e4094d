"""The periodic (circular) model of the FFT-based steps: a window extended to tile smoothly, fast
grid sizes, a kernel's transfer function centred on the grid, the circular differences and
their spectrum."""

import numpy as np
from scipy import fft

from worker.deconv.fft import fast_length


def smooth_periodic_extension(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Extend `image` to `shape` so that the result is continuous when tiled periodically.

    Along each row the added columns run smoothly (a raised-cosine blend) from the last column back
    to the first, then the same down each column over the full width. Circular convolution of the
    extended image sees no jump at the seam, so the FFT-based steps do not ring, as in Liu and Jia
    [1]_. The image itself occupies the top-left corner unchanged.

    Parameters
    ----------
    image : ndarray, shape (h, w)
        The grey window.
    shape : tuple of int
        The (rows, cols) of the result, at least (h, w).

    Returns
    -------
    ndarray, shape `shape`
        float64, `image` in its top-left h x w.

    References
    ----------
    .. [1] R. Liu and J. Jia, "Reducing boundary artifacts in image deconvolution", IEEE
           International Conference on Image Processing (ICIP), 2008.
    """
    height, width = image.shape
    rows, cols = shape
    out = np.empty(shape, dtype=np.float64)
    out[:height, :width] = image
    for length, axis in ((cols - width, 1), (rows - height, 0)):
        if length == 0:
            continue
        known = out[:height, :width] if axis == 1 else out[:height, :]
        t = (np.arange(1, length + 1) / (length + 1)).reshape((1, -1) if axis == 1 else (-1, 1))
        blend = 0.5 - 0.5 * np.cos(np.pi * t)
        first = known[:, :1] if axis == 1 else known[:1, :]
        last = known[:, -1:] if axis == 1 else known[-1:, :]
        fill = (1 - blend) * last + blend * first
        if axis == 1:
            out[:height, width:] = fill
        else:
            out[height:, :] = fill
    return out


def fast_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The smallest sizes at least `shape` whose FFTs are fast (made of 2s and 3s).

    Parameters
    ----------
    shape : tuple of int
        The sizes needed; only the first two count.

    Returns
    -------
    tuple of int
        (rows, cols), each the smallest ``2^a 3^b`` at least the size asked (`fast_length`).
    """
    return fast_length(int(shape[0])), fast_length(int(shape[1]))


def centred_kernel_spectrum(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The real FFT of `psf` placed with its centre at the origin of a `shape` grid (psf2otf).

    Parameters
    ----------
    psf : ndarray, shape (k, l)
        The kernel; its centre is the tap (k // 2, l // 2).
    shape : tuple of int
        The grid's (rows, cols), at least the kernel's.

    Returns
    -------
    ndarray, shape (rows, cols // 2 + 1)
        complex: the optical transfer function on the real-FFT grid (`scipy.fft.rfft2`).
    """
    padded = np.zeros(shape)
    rows, cols = ((np.arange(k) - k // 2) % n for k, n in zip(psf.shape, shape, strict=True))
    padded[np.ix_(rows, cols)] = psf  # the centre tap at (0, 0), the rest wrapped around
    return fft.rfft2(padded)


def forward_gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Circular forward differences along x and y.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The picture.

    Returns
    -------
    gx : ndarray, shape (H, W)
        ``image[i, j + 1] - image[i, j]``, the last column's taken against the first.
    gy : ndarray, shape (H, W)
        ``image[i + 1, j] - image[i, j]``, the last row's taken against the first.
    """
    return np.roll(image, -1, axis=1) - image, np.roll(image, -1, axis=0) - image


def gradient_adjoint(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """``D^T g`` for the circular forward differences ``D`` of `forward_gradients`.

    Parameters
    ----------
    gx : ndarray, shape (H, W)
        The gradient along x.
    gy : ndarray, shape (H, W)
        The gradient along y.

    Returns
    -------
    ndarray, shape (H, W)
        ``D_x^T gx + D_y^T gy``: minus the (circular, backward) divergence of ``g``.
    """
    return (np.roll(gx, 1, axis=1) - gx) + (np.roll(gy, 1, axis=0) - gy)


def gradient_spectrum_power(shape: tuple[int, int]) -> np.ndarray:
    """``|F(d_x)|^2 + |F(d_y)|^2`` on the real-FFT grid of `shape`.

    Parameters
    ----------
    shape : tuple of int
        The grid's (rows, cols).

    Returns
    -------
    ndarray, shape (rows, cols // 2 + 1)
        float64, from 0 at the zero frequency to at most 8.
    """
    wy = 2 * np.pi * np.fft.fftfreq(shape[0])[:, None]
    wx = 2 * np.pi * np.fft.rfftfreq(shape[1])[None, :]
    return (2 - 2 * np.cos(wx)) + (2 - 2 * np.cos(wy))
