"""The blur operator without wrap-around (Bertero and Boccacci 2005) and the data-term mask.

Bertero and Boccacci, "A simple method for the reduction of boundary effects in the
Richardson-Lucy approach to image deconvolution", Astronomy & Astrophysics 437 (2005): the sharp
image `u` lives on an extended grid of (H + kh - 1) x (W + kw - 1) pixels, because light from a
band of kernel width around the frame reached the sensor; the observation `f` is known only on
the H x W window. The blur is the valid convolution

    (A u)[p] = sum_q k[q] u[p + (kh - 1, kw - 1) - q],     A: extended grid -> window,

and its adjoint A^T is the full correlation with `k` (extended grid <- window). Nothing wraps
around, so no border rings. A weight mask `w` (1 = use the pixel, 0 = ignore it) removes pixels
from the data term: the normalisation `A^T w` replaces the constant 1 of plain Richardson-Lucy.
Saturated pixels are masked out as in Whyte, Sivic and Zisserman, "Deblurring shaken and
partially saturated images" (IJCV 2014): a clipped highlight breaks the linear model and is the
main source of ringing around lights. Only the pixels AT the clip level are censored, though: a
sample below it, however close, was measured (the sensor clips the light and its noise together,
so a bright area just under the white level has some pixels at the clip and the rest below it),
and throwing those away left well-exposed bright areas, a red flower's petals, to the prior
alone: deblurred with the true kernel they came out grainier and darker than the input
(docs/MEASUREMENTS.md, "Blur that varies across the frame": a 98 % threshold masked 21 % of a
photo's pixels).
"""

import functools
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import numpy as np

from worker.deconv.convolve import TILE, TileConsumer, ValidConvolution
from worker.parallel import cpu_count

AT_CLIP = 1e-4  # a value within this fraction of the clip level sits at it (a clipped sample)
_PLATEAU_FRACTION = 1e-4  # share of pixels that must sit at the maximum to call it a clip level
_PLATEAU_MINIMUM = 16


def extended_shape(shape: tuple[int, ...], psf_shape: tuple[int, int]) -> tuple[int, int]:
    """Shape of the extended grid for an observed (H, W, ...) image and a (kh, kw) kernel.

    Parameters
    ----------
    shape : tuple of int
        The observed image's shape, (H, W) or (H, W, C); only the first two are used.
    psf_shape : tuple of int
        The kernel's shape, (kh, kw).

    Returns
    -------
    tuple of int
        ``(H + kh - 1, W + kw - 1)``.
    """
    return shape[0] + psf_shape[0] - 1, shape[1] + psf_shape[1] - 1


def grid_window(shape: tuple[int, ...], psf_shape: tuple[int, int]) -> tuple[slice, slice]:
    """Where an observed (H, W, ...) image lies on its extended grid: half a kernel in from each
    side.

    Parameters
    ----------
    shape, psf_shape : tuple of int
        The observed image's shape and the kernel's, as `extended_shape` takes them.

    Returns
    -------
    tuple of slice
        The window's (rows, columns) on the grid of `extended_shape`.
    """
    top, left = psf_shape[0] // 2, psf_shape[1] // 2
    return slice(top, top + shape[0]), slice(left, left + shape[1])


def hold_edges(x: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    """Fill the rim of the extended grid with the observed window's nearest pixels, in place.

    Every pixel outside ``x[..., rows, columns]`` takes the value of the window's pixel nearest
    to it, as `np.pad`'s "edge" mode would (corners the window's corners), without a second plane
    of the grid's size.

    Parameters
    ----------
    x : ndarray, shape (..., Hx, Wx)
        The planes on the extended grid, the window filled in already.
    window : tuple of slice
        The window's (rows, columns) on the grid, with explicit starts and stops
        (`BlurOperator.window`), at least 1 x 1.

    Returns
    -------
    ndarray
        `x` itself.
    """
    rows, (left, right) = window[0], (window[1].start, window[1].stop)
    top, bottom = rows.start, rows.stop
    x[..., rows, :left] = x[..., rows, left : left + 1]
    x[..., rows, right:] = x[..., rows, right - 1 : right]
    x[..., :top, :] = x[..., top : top + 1, :]
    x[..., bottom:, :] = x[..., bottom - 1 : bottom, :]
    return x


class BlurOperator:
    """`A` (valid convolution with the PSF) and `A^T`, on 2-D float32 planes, in FFT tiles.

    Use as a context manager: it owns a thread pool (one thread a core), stopped by `close`.
    `forward_tiles(u, consume)` maps an extended-grid plane to the observed window, tile by tile;
    `adjoint(r, out)` (or `adjoint_tiles`) the reverse. They satisfy <A u, r> = <u, A^T r>
    (tested).

    Parameters
    ----------
    psf : ndarray, shape (kh, kw)
        The blur kernel; converted to float32.
    observed_shape : tuple of int
        The observed window, (H, W). The extended grid (`extended_shape`) is
        (H + kh - 1, W + kw - 1).
    tile : int, optional
        The base FFT tile size: tiles are once to twice it (`convolve.tile_shape`). The result
        does not depend on it beyond rounding.

    Attributes
    ----------
    window : tuple of slice
        Where the observed window lies on the extended grid, (rows, columns): half a kernel in
        from each side.
    """

    def __init__(
        self,
        psf: np.ndarray,
        observed_shape: tuple[int, int],
        tile: int = TILE,
    ) -> None:
        psf = np.asarray(psf, dtype=np.float32)
        kh, kw = psf.shape
        self.observed_shape = (observed_shape[0], observed_shape[1])
        self.extended_shape = extended_shape(self.observed_shape, psf.shape)
        self.window = grid_window(self.observed_shape, psf.shape)
        self.workers = cpu_count()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="deconv")
        self._forward = ValidConvolution(
            psf, self.extended_shape, (0, 0), self._pool, self.workers, tile
        )
        self._adjoint = ValidConvolution(
            psf[::-1, ::-1].copy(),
            self.observed_shape,
            (kh - 1, kw - 1),
            self._pool,
            self.workers,
            tile,
        )

    def __enter__(self) -> "BlurOperator":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True)

    def forward_tiles(self, u: np.ndarray, consume: TileConsumer) -> np.ndarray | None:
        """`A u`, handed tile by tile to `consume` (see `ValidConvolution.each_tile`).

        Parameters
        ----------
        u : ndarray, shape (H + kh - 1, W + kw - 1)
            A float32 plane on the extended grid.
        consume : callable
            Called as ``consume(top, left, tile)`` with each C-contiguous output tile of the
            (H, W) window, on the pool's threads, several at once; `tile` is scratch, valid only
            during the call.

        Returns
        -------
        ndarray or None
            The sum of what `consume` returned, or None if it returned nothing.

        Raises
        ------
        ValueError
            If `u` does not have the extended grid's shape.
        """
        return self._forward.each_tile(u, consume)

    def adjoint_tiles(self, r: np.ndarray, consume: TileConsumer) -> np.ndarray | None:
        """`A^T r`, handed tile by tile to `consume` (see `ValidConvolution.each_tile`).

        Parameters
        ----------
        r : ndarray, shape (H, W)
            A float32 plane on the observed window.
        consume : callable
            Called as ``consume(top, left, tile)`` with each C-contiguous output tile of the
            extended grid, on the pool's threads, several at once; `tile` is scratch, valid only
            during the call.

        Returns
        -------
        ndarray or None
            The sum of what `consume` returned, or None if it returned nothing.

        Raises
        ------
        ValueError
            If `r` does not have the observed window's shape.
        """
        return self._adjoint.each_tile(r, consume)

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        """`A^T r`: correlate the observed-window plane `r` with the PSF onto the extended grid.

        Parameters
        ----------
        r : ndarray, shape (H, W)
            A float32 plane on the observed window.

        Returns
        -------
        ndarray, shape (H + kh - 1, W + kw - 1)
            A new float32 plane holding ``A^T r``.

        Raises
        ------
        ValueError
            If `r` does not have the observed window's shape.
        """
        return self._adjoint(r, np.empty(self.extended_shape, dtype=np.float32))


def detect_clip_level(image: np.ndarray) -> float | None:
    """The value at which the picture clipped, if a plateau of pixels sits at its maximum.

    A clipped highlight is a patch of pixels at exactly the largest value (in some channel).
    An unclipped picture has a lone brightest pixel, not a plateau.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture.

    Returns
    -------
    float or None
        The picture's largest value when at least a small share of the pixels (1e-4 of them, and
        at least 16) have a channel within `AT_CLIP` of it (`clipped`); None otherwise, or when
        the largest value is not positive.
    """
    peak = float(image.max())
    if peak <= 0:
        return None
    at_peak = np.count_nonzero(clipped(image, peak))
    needed = max(_PLATEAU_MINIMUM, _PLATEAU_FRACTION * image.shape[0] * image.shape[1])
    return peak if at_peak >= needed else None


def clipped(image: np.ndarray, clip_level: float) -> np.ndarray:
    """Whether each pixel of `image` has a channel at `clip_level` (within `AT_CLIP` of it, or
    above).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture.
    clip_level : float
        The value at which the picture clipped (`detect_clip_level`).

    Returns
    -------
    ndarray of bool, shape (H, W)
        True where some channel is at least ``clip_level * (1 - AT_CLIP)``.
    """
    level = clip_level * (1 - AT_CLIP)
    # Channel by channel: NumPy's `any` along a last axis of three is five times slower.
    return functools.reduce(np.logical_or, [image[..., c] >= level for c in range(image.shape[-1])])


def data_mask(image: np.ndarray, clip_level: float | None) -> np.ndarray:
    """The weight `w` of the data term: 0 where any channel is clipped.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The picture.
    clip_level : float or None
        The value at which the picture clipped (`detect_clip_level`); None: every pixel counts.

    Returns
    -------
    ndarray of float32, shape (H, W)
        0 where any channel sits at `clip_level` (`clipped`), 1 elsewhere.
    """
    if clip_level is None:
        return np.ones(image.shape[:2], dtype=np.float32)
    return (~clipped(image, clip_level)).astype(np.float32)
