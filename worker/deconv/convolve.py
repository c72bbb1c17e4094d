"""Valid 2-D convolution of large planes, tile by tile (overlap-save), on all cores.

A "valid" convolution keeps only the outputs whose kernel footprint lies wholly inside the input:
an input of (h, w) and a kernel of (kh, kw) give (h - kh + 1, w - kw + 1) outputs, with no
wrap-around and no guessed values beyond the edges. Overlap-save computes it exactly with FFTs of
a small fixed size n: each input tile of n x n yields the (n - kh + 1) x (n - kw + 1) outputs that
a circular convolution of that tile gets right; neighbouring tiles overlap by the kernel size.
Tiles of about 512 px stay in the CPU cache and always have a fast FFT size, which makes them
faster per pixel than one whole-frame transform, and the FFT scratch is a few MB instead of several
image-sized arrays. Along each axis the tile's length is the fast size, from once to twice that,
whose tiles cover the outputs with the fewest transformed samples: a fixed 512 wasted a fifth
tile on a 1920 px row of outputs where four were 2 px short (`tile_length`).
"""

import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from worker.deconv.fft import RealFFT2, fast_length, fast_lengths, kernel_spectrum

TILE = 512
TileConsumer = Callable[[int, int, np.ndarray], np.ndarray | None]


def tile_length(extent: int, kernel: int, tile: int = TILE) -> int:
    """FFT length along one axis of an `extent` long input and a `kernel` long kernel.

    With `base = max(tile, 4 kernel)` (tiles overlap by at most a quarter), one transform covers
    an extent up to `base`; a longer one is cut into `m = ceil((extent - kernel + 1) / (n -
    kernel + 1))` tiles of the fast length `n` in [base, 2 base] with the fewest samples `m
    n` (the shorter `n` on a tie: it stays in the cache).
    """
    base = max(tile, 4 * kernel)
    if extent <= base:
        return fast_length(extent)
    outputs = extent - kernel + 1
    candidates = fast_lengths(base, 2 * base)
    return min(candidates, key=lambda n: (math.ceil(outputs / (n - kernel + 1)) * n, n))


def _split(items: list, parts: int) -> list[list]:
    """`items` cut into at most `parts` contiguous, nearly equal chunks (none empty)."""
    parts = max(1, min(parts, len(items)))
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


class ValidConvolution:
    """`out = valid(pad(src, margin), kernel)`: convolution with zero margin, in FFT tiles.

    `src` has `source_shape`; it is read as if surrounded by `margin = (my, mx)` rows and columns
    of zeros, so the result has shape `(h + 2 my - kh + 1, w + 2 mx - kw + 1)`. With no margin this
    is the blur of an extended-grid image seen through the observed window; with a margin of the
    kernel size minus one and the kernel flipped, its adjoint (a "full" correlation).

    The work is split over `workers` threads of `pool`, each with its own FFT buffers and plans
    (FFTW and numpy release the GIL).
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
        self.fft_shape = (tile_length(padded[0], kh, tile), tile_length(padded[1], kw, tile))
        self.step = (self.fft_shape[0] - kh + 1, self.fft_shape[1] - kw + 1)
        self._spectrum = kernel_spectrum(kernel, self.fft_shape)
        self._pool = pool
        origins = [
            (r, c) for r in range(0, self.shape[0], self.step[0])
            for c in range(0, self.shape[1], self.step[1])
        ]  # fmt: skip
        self._chunks = _split(origins, workers)
        self._ffts = [RealFFT2(self.fft_shape) for _ in self._chunks]

    def __call__(self, src: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Convolve the 2-D float32 plane `src` into `out` (shape `self.shape`); returns `out`."""
        if out.shape != self.shape:
            raise ValueError("the output plane does not match the convolution")

        def store(top: int, left: int, tile: np.ndarray) -> None:
            out[top : top + tile.shape[0], left : left + tile.shape[1]] = tile

        self.each_tile(src, store)
        return out

    def each_tile(self, src: np.ndarray, consume: TileConsumer) -> np.ndarray | None:
        """Convolve `src` and hand each output tile to `consume(top, left, tile)` instead of
        storing it; returns the sum of what `consume` returned (None if it returned nothing).

        `tile` is the result for rows top .. top + h and columns left .. left + w of the output;
        it is scratch, valid only during the call. `consume` runs on the pool's threads, several
        at once on different tiles, so it must only write to its own tile's region.
        """
        if src.shape != self.source_shape:
            raise ValueError("the input plane does not match the convolution")
        jobs = [
            self._pool.submit(self._run, chunk, fft, src, consume)
            for chunk, fft in zip(self._chunks, self._ffts, strict=True)
        ]
        totals = [total for job in jobs if (total := job.result()) is not None]
        return sum(totals[1:], totals[0]) if totals else None

    def _run(
        self,
        origins: Sequence[tuple[int, int]],
        fft: RealFFT2,
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
            part = consume(r, c, result[kh - 1 : kh - 1 + th, kw - 1 : kw - 1 + tw])
            if part is not None:
                total = part if total is None else total + part
        return total
