"""Parametric blur kernels (Gaussian softness, defocus disc) and the extent of any kernel.

A lens's defocus is close to a uniform disc (its aperture's image; Hopkins 1955,
doi:10.1098/rspa.1955.0081), and the softness of a lens, an anti-aliasing filter or a slightly
missed focus close to a Gaussian. Both have one parameter, so they can be fitted safely where a
free-form kernel would over-fit (`worker.deconv.gcv`).
"""

import numpy as np

EXTENT_TAP = 0.05  # taps above this fraction of the peak count towards a kernel's extent


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised, isotropic Gaussian of deviation `sigma` px, sampled on +-3 sigma (odd side).

    Parameters
    ----------
    sigma : float
        The deviation in pixels, above 0.

    Returns
    -------
    ndarray of float64, shape (2 n + 1, 2 n + 1)
        The kernel, summing to one, with ``n = max(ceil(3 sigma), 1)``.
    """
    half = max(int(np.ceil(3 * sigma)), 1)
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    return np.outer(taps, taps) / taps.sum() ** 2


def disc_kernel(radius: float) -> np.ndarray:
    """A normalised uniform disc of `radius` px, anti-aliased at its edge.

    Edge pixels are weighted by how much the disc covers them (``clip(radius + 1/2 - distance,
    0, 1)``, the usual anti-aliased approximation).

    Parameters
    ----------
    radius : float
        The disc's radius in pixels, at least 0 (0: a delta).

    Returns
    -------
    ndarray of float64, shape (2 n + 1, 2 n + 1)
        The kernel, summing to one, with ``n = ceil(radius)``.
    """
    half = int(np.ceil(radius))
    axis = np.arange(-half, half + 1)
    distance = np.hypot(axis[:, None], axis[None, :])
    disc = np.clip(radius + 0.5 - distance, 0, 1)
    return disc / disc.sum()


def kernel_extent(psf: np.ndarray) -> int:
    """The blur's extent in pixels.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel, with a positive peak.

    Returns
    -------
    int
        The longer side of the box holding the taps above `EXTENT_TAP` (5 %) of the peak; 1 for
        a delta.
    """
    rows, cols = np.nonzero(psf > EXTENT_TAP * psf.max())
    return int(max(np.ptp(rows), np.ptp(cols)) + 1)


def kernel_spread(psf: np.ndarray) -> float:
    """The kernel's root-mean-square radius about its centroid, in pixels.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel, non-negative with a positive sum (it need not sum to one).

    Returns
    -------
    float
        The radius: 0 for a delta, ``sigma sqrt(2)`` for an isotropic Gaussian of deviation
        ``sigma``.
    """
    psf = np.asarray(psf, dtype=np.float64) / np.sum(psf)
    rows, cols = np.indices(psf.shape)
    row, col = (rows * psf).sum(), (cols * psf).sum()
    return float(np.sqrt((((rows - row) ** 2 + (cols - col) ** 2) * psf).sum()))


def border_mass(psf: np.ndarray) -> float:
    """The share of the kernel's mass on its outermost ring of taps.

    A kernel cut off by its support (a blur larger than the size it was learnt at) keeps mass
    there, one that fits inside has next to none.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel, non-negative with a positive sum.

    Returns
    -------
    float
        The share, in [0, 1] (1 for a kernel under 3 taps on a side: all of it is border).
    """
    psf = np.asarray(psf, dtype=np.float64)
    return float(1 - psf[1:-1, 1:-1].sum() / psf.sum())


def frequency_floor(psf: np.ndarray) -> float:
    """The least share of any frequency that the kernel lets through: ``min |F(psf)|``.

    A blur wipes some detail out: a motion of 2 px or more and a defocus disc of a pixel or more
    have zeros in their transfer function, and a Gaussian of sigma 1 px keeps 0.7 % of the
    finest detail along the rows (the corner 0.005 %). A kernel that lets a good share of every
    frequency through is a sharp copy of the picture on a pedestal. The transfer function is
    sampled at least four times finer than the kernel's taps, on a grid of at least 64 x 64.

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The kernel in either convention (the magnitude does not tell them apart), its taps
        non-negative and not all 0.

    Returns
    -------
    float
        ``min |K(omega)| / K(0)`` over the sampled frequencies, in [0, 1]: 1 for a delta.
    """
    psf = np.asarray(psf, dtype=np.float64)
    side = max(64, 4 * max(psf.shape))
    return float(np.abs(np.fft.rfft2(psf / psf.sum(), s=(side, side))).min())
