"""Real 2-D FFTs with FFTW (pyfftw): fast sizes and reusable plans.

FFTW picks the fastest of many algorithms for a given size by timing them (planning). Planning with
FFTW_MEASURE costs a fraction of a second for a 512 x 512 tile, and much more for odd sizes; the
plans found ("wisdom") stay in memory for the life of the process, and the callers that own files
keep them on disk (`worker.files.wisdom`), so the cost is paid once per machine. FFTW_PATIENT
finds plans only a few percent faster for an order of magnitude more planning, and every new
picture size needs its own plans: FFTW_MEASURE it is.

Sizes matter more than the library: a transform whose size has only the
factors 2 and 3 is several times faster than one with large prime factors, so every transform is
padded to such a size.
"""

import numpy as np
import pyfftw

PLANNER_EFFORT = "FFTW_MEASURE"


def fast_length(n: int) -> int:
    """The smallest integer >= `n` whose only prime factors are 2 and 3.

    Parameters
    ----------
    n : int
        The least length wanted, at least 1.

    Returns
    -------
    int
        ``2^a 3^b >= n``, the smallest such.

    Raises
    ------
    ValueError
        When `n` is under 1.
    """
    if n < 1:
        raise ValueError("a transform length must be positive")
    return fast_lengths(n, 2 * n)[0]  # [n, 2n] always holds a power of two


def fast_lengths(low: int, high: int) -> list[int]:
    """Every integer in [`low`, `high`] whose only prime factors are 2 and 3, ascending.

    Parameters
    ----------
    low, high : int
        The bounds, both included.

    Returns
    -------
    list of int
        The lengths ``2^a 3^b`` in the range, ascending; empty when there is none.
    """
    found = []
    power_of_three = 1
    while power_of_three <= high:
        length = power_of_three
        while length <= high:
            if length >= low:
                found.append(length)
            length *= 2
        power_of_three *= 3
    return sorted(found)


class RealFFT2:
    """A pair of FFTW plans (forward `rfft2`, backward `irfft2`) bound to their own buffers.

    `forward()` transforms `real` into `spectrum`, `backward()` the reverse, normalised so that a
    round trip gives back the input. Each object owns its buffers: use one per thread. Planning
    (FFTW_MEASURE) may overwrite the buffers: fill `real` after making the object.

    Parameters
    ----------
    shape : tuple of int
        The (H, W) of the real plane.
    threads : int, optional
        The threads FFTW uses for each transform.

    Attributes
    ----------
    real : ndarray of float32, shape (H, W)
        The real plane: the forward transform's input, the backward one's output.
    spectrum : ndarray of complex64, shape (H, W // 2 + 1)
        The half-spectrum: the forward transform's output, the backward one's input.
    """

    def __init__(self, shape: tuple[int, int], threads: int = 1) -> None:
        self.real = pyfftw.empty_aligned(shape, dtype=np.float32)
        self.spectrum = pyfftw.empty_aligned((shape[0], shape[1] // 2 + 1), dtype=np.complex64)
        self._forward = pyfftw.FFTW(
            self.real, self.spectrum, axes=(0, 1), threads=threads, flags=(PLANNER_EFFORT,)
        )
        self._backward = pyfftw.FFTW(
            self.spectrum,
            self.real,
            axes=(0, 1),
            direction="FFTW_BACKWARD",
            threads=threads,
            flags=(PLANNER_EFFORT, "FFTW_DESTROY_INPUT"),
        )

    def forward(self) -> np.ndarray:
        """`spectrum = rfft2(real)`.

        Returns
        -------
        ndarray of complex64, shape (H, W // 2 + 1)
            `spectrum` itself, not a copy.
        """
        self._forward()
        return self.spectrum

    def backward(self) -> np.ndarray:
        """`real = irfft2(spectrum)`, normalised; destroys `spectrum`.

        Returns
        -------
        ndarray of float32, shape (H, W)
            `real` itself, not a copy.
        """
        self._backward()
        return self.real


def kernel_spectrum(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`rfft2` of `kernel` placed at the origin of a zero array of `shape`.

    The kernel's first tap sits at (0, 0), not its centre: a circular convolution with it shifts
    the result by ``(kh - 1, kw - 1)``, which `convolve.ValidConvolution` takes into account.

    Parameters
    ----------
    kernel : ndarray, shape (kh, kw)
        The kernel, no larger than `shape`.
    shape : tuple of int
        The (H, W) of the transform.

    Returns
    -------
    ndarray of complex64, shape (H, W // 2 + 1)
        The half-spectrum, in memory of its own.
    """
    fft = RealFFT2(shape)
    fft.real[:] = 0
    fft.real[: kernel.shape[0], : kernel.shape[1]] = kernel
    return fft.forward().copy()
