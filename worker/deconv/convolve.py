"""Valid 2-D convolution of large planes, tile by tile (overlap-save), on all cores.

A "valid" convolution keeps only the outputs whose kernel footprint lies wholly inside the input:
an input of (h, w) and a kernel of (kh, kw) give (h - kh + 1, w - kw + 1) outputs, with no
wrap-around and no guessed values beyond the edges. Overlap-save computes it exactly with FFTs of
a small fixed size n: each input tile of n x n yields the (n - kh + 1) x (n - kw + 1) outputs that
a circular convolution of that tile gets right; neighbouring tiles overlap by the kernel size.
Tiles of about 512 px stay in the CPU cache and always have a fast FFT size, which makes them
faster per pixel than one whole-frame transform, and the FFT scratch is a few MB instead of several
image-sized arrays. The tile's sides are the even fast sizes, from once to twice that, whose tiles
cover the outputs at the least cost (`tile_shape`): a fixed 512 wasted a fifth column of tiles on
a 2 Mpx frame's 1950 px rows of outputs where four were 2 px short.
"""

import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from worker.deconv.fft import RealFFT2, fast_length, fast_lengths, kernel_spectrum

TILE = 512
TileConsumer = Callable[[int, int, np.ndarray], np.ndarray | None]


RADIX_THREE_COST = 2.2  # a factor 3 of a transform's length costs as much as this many factors 2


def _axis_options(extent: int, kernel: int, tile: int) -> list[tuple[int, int]]:
    """(length, tiles) for one axis: one transform of the whole `extent` up to `base = max(tile,
    4 kernel)` (tiles overlap by at most a quarter), else every even fast length `n` in [base,
    2 base] with the `ceil((extent - kernel + 1) / (n - kernel + 1))` tiles it takes."""
    base = max(tile, 4 * kernel)
    if extent <= base:
        return [(fast_length(extent), 1)]
    outputs = extent - kernel + 1
    return [
        (n, math.ceil(outputs / (n - kernel + 1)))
        for n in fast_lengths(base, 2 * base)
        if n % 2 == 0
    ]


def _per_sample(n: int) -> float:
    """The relative cost per sample of a transform of length `n` = 2^a 3^b: `a + RADIX_THREE_COST
    b` (FFT work grows with log n; FFTW's radix-3 passes cost more than their log 3)."""
    twos = (n & -n).bit_length() - 1
    return twos + RADIX_THREE_COST * math.log(n >> twos, 3)


def tile_shape(
    padded: tuple[int, int], kernel: tuple[int, int], tile: int = TILE
) -> tuple[int, int]:
    """The FFT tile (rows, columns) for a `padded` input and a `kernel`.

    Of the options of each axis (`_axis_options`), the pair whose tiles cost least, `tiles x
    samples x (per-sample cost of the rows + of the columns)` (the smaller tile on a tie: it stays
    in the cache).

    Measured with FFTW_MEASURE plans on the 2-core test machine (docs/MEASUREMENTS.md, speed):
    2.5 ns per sample for 512 x 512, 2.8 for 1024 x 1024 and 768 x 768, 3.1 for 864 x 576 and
    648 x 1024; odd lengths (729 x 729: 8.7) are left out.

    Parameters
    ----------
    padded : tuple of int
        The (rows, columns) of the input, its zero margin included.
    kernel : tuple of int
        The kernel's (rows, columns).
    tile : int, optional
        The base tile side: an axis no longer than ``max(tile, 4 kernel)`` is one transform, a
        longer one is cut into tiles of an even length from that base to twice it.

    Returns
    -------
    tuple of int
        The tile's (rows, columns), each a product of 2s and 3s.
    """
    options = itertools.product(
        _axis_options(padded[0], kernel[0], tile), _axis_options(padded[1], kernel[1], tile)
    )

    def cost(option: tuple[tuple[int, int], tuple[int, int]]) -> tuple[float, int]:
        (rows, down), (cols, across) = option
        return down * across * rows * cols * (_per_sample(rows) + _per_sample(cols)), rows * cols

    (rows, _), (cols, _) = min(options, key=cost)
    return rows, cols


def _split(items: list, parts: int) -> list[list]:
    """`items` cut into at most `parts` contiguous, nearly equal chunks (none empty)."""
    parts = max(1, min(parts, len(items)))
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


class ValidConvolution:
    """`out = valid(pad(src, margin), kernel)`: convolution with zero margin, in FFT tiles.

    `src` is read as if surrounded by `margin` rows and columns of zeros. With no margin this is
    the blur of an extended-grid image seen through the observed window; with a margin of the
    kernel size minus one and the kernel flipped, its adjoint (a "full" correlation). The work is
    split over `workers` threads of `pool`, each with its own FFT buffers and plans (FFTW and
    numpy release the GIL).

    Parameters
    ----------
    kernel : ndarray, shape (kh, kw)
        The kernel, in convolution convention.
    source_shape : tuple of int
        The (h, w) of the planes to convolve.
    margin : tuple of int
        The (my, mx) rows and columns of zeros read around the source on each side.
    pool : ThreadPoolExecutor
        The threads the tiles run on.
    workers : int
        How many parts the tiles are split into (no more than there are tiles), each with its
        own FFT buffers and plans: the most threads busy at once.
    tile : int, optional
        The base tile side (`tile_shape`).

    Attributes
    ----------
    shape : tuple of int
        The output's shape, ``(h + 2 my - kh + 1, w + 2 mx - kw + 1)``.
    fft_shape : tuple of int
        The FFT tile's shape (`tile_shape`).
    step : tuple of int
        The outputs each tile yields, ``(rows - kh + 1, columns - kw + 1)`` of `fft_shape`.
    """

    def __init__(
        self,
        kernel: np.ndarray,
        source_shape: tuple[int, int],
        margin: tuple[int, int],
        pool: ThreadPoolExecutor,
        workers: int,
        tile: int = TILE,
    ) -> None:
        kh, kw = kernel.shape
        padded = (source_shape[0] + 2 * margin[0], source_shape[1] + 2 * margin[1])
        self.source_shape = source_shape
        self.margin = margin
        self.kernel_shape = (kh, kw)
        self.shape = (padded[0] - kh + 1, padded[1] - kw + 1)
        self.fft_shape = tile_shape(padded, (kh, kw), tile)
        self.step = (self.fft_shape[0] - kh + 1, self.fft_shape[1] - kw + 1)
        self._spectrum = kernel_spectrum(kernel, self.fft_shape)
        self._pool = pool
        origins = [
            (r, c) for r in range(0, self.shape[0], self.step[0])
            for c in range(0, self.shape[1], self.step[1])
        ]  # fmt: skip
        self._chunks = _split(origins, workers)
        self._ffts = [RealFFT2(self.fft_shape) for _ in self._chunks]
        # Each thread's output tile, contiguous (see `each_tile`), flat for the smaller last ones.
        self._tiles = [np.empty(self.step[0] * self.step[1], np.float32) for _ in self._chunks]

    def __call__(self, src: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Convolve the 2-D float32 plane `src` into `out` (shape `self.shape`); returns `out`."""
        if out.shape != self.shape:
            raise ValueError("the output plane does not match the convolution")

        def store(top: int, left: int, tile: np.ndarray) -> None:
            out[top : top + tile.shape[0], left : left + tile.shape[1]] = tile

        self.each_tile(src, store)
        return out

    def each_tile(self, src: np.ndarray, consume: TileConsumer) -> np.ndarray | None:
        """Convolve `src` and hand each output tile to `consume` instead of storing it.

        `consume(top, left, tile)` gets the result for rows top .. top + h and columns left .. left
        + w of the output, `tile` C-contiguous (compiled consumers vectorise only over unit strides:
        a strided view of the FFT buffer made the RL-TV update three times slower); it is scratch,
        valid only during the call. `consume` runs on the pool's threads, several at once on
        different tiles, so it must only write to its own tile's region.

        Parameters
        ----------
        src : ndarray, shape `source_shape`
            The plane to convolve (copied into the float32 FFT buffers).
        consume : callable
            ``consume(top, left, tile)``, called once per output tile; it may return an array (or
            number) to be summed, or None.

        Returns
        -------
        ndarray or None
            The sum of what `consume` returned; None if it returned None for every tile.

        Raises
        ------
        ValueError
            When `src` does not have `source_shape`.
        """
        if src.shape != self.source_shape:
            raise ValueError("the input plane does not match the convolution")
        jobs = [
            self._pool.submit(self._run, chunk, fft, tile, src, consume)
            for chunk, fft, tile in zip(self._chunks, self._ffts, self._tiles, strict=True)
        ]
        totals = [total for job in jobs if (total := job.result()) is not None]
        return sum(totals[1:], totals[0]) if totals else None

    def _run(
        self,
        origins: Sequence[tuple[int, int]],
        fft: RealFFT2,
        flat: np.ndarray,
        src: np.ndarray,
        consume: TileConsumer,
    ) -> np.ndarray | None:
        (nh, nw), (kh, kw), (my, mx) = self.fft_shape, self.kernel_shape, self.margin
        height, width = self.source_shape
        total = None
        for r, c in origins:
            # Input rows r .. r + nh of the zero-margined source, clipped to the real source.
            y0, y1 = max(r - my, 0), min(r + nh - my, height)
            x0, x1 = max(c - mx, 0), min(c + nw - mx, width)
            ty, tx = y0 - (r - my), x0 - (c - mx)
            if ty or tx or y1 - y0 < nh or x1 - x0 < nw:
                fft.real[:] = 0
            fft.real[ty : ty + y1 - y0, tx : tx + x1 - x0] = src[y0:y1, x0:x1]
            np.multiply(fft.forward(), self._spectrum, out=fft.spectrum)
            result = fft.backward()
            th, tw = min(self.step[0], self.shape[0] - r), min(self.step[1], self.shape[1] - c)
            tile = flat[: th * tw].reshape(th, tw)
            np.copyto(tile, result[kh - 1 : kh - 1 + th, kw - 1 : kw - 1 + tw])
            part = consume(r, c, tile)
            if part is not None:
                total = part if total is None else total + part
        return total
