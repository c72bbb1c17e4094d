"""How well a kernel predicts pixels it was not shown: hold-out cross-validation of a blur.

Two windows of a picture can agree on the same wrong kernel (texture that both share, a blur the
edges cannot tell), and the cross-check of `worker.deconv.blind` then trusts it. Here a kernel is
judged by prediction instead (Stone, "Cross-validatory choice and assessment of statistical
predictions", J. R. Stat. Soc. B 1974, doi:10.1111/j.2517-6161.1974.tb00994.x): the pixels of a
window ``f`` are split at random into a training half ``T`` and a held-out half ``H``; the sharp
picture is restored from the training half alone,

    u = argmin_u  sum_{x in T} ((k * u)(x) - f(x))^2 + alpha ||grad u||^2,

(conjugate gradients on the normal equations, FFT operators; the window sits in a larger periodic
grid whose extra pixels are unobserved, so the model is the valid convolution and the FFT adds no
seam), and the kernel is scored by how well the re-blurred picture predicts the held-out half,
with the weight that predicts best (cross-validation chooses it too, which adapts it to the
noise):

    E(k) = min_alpha mean_{x in H'} ((k * u_alpha)(x) - f(x))^2,
    H': the held-out pixels at least a kernel from the border.

A right kernel predicts a held-out pixel from the sharp picture its neighbours imply; a wrong one
from a sharp picture with false edges, and no blur (the delta kernel) by smooth interpolation.
Unlike GCV (`worker.deconv.gcv`), where the restoration sees every pixel, the held-out pixels
take no part in the fit.
"""

from functools import partial

import numpy as np
from scipy import fft

from worker.deconv.conjugate_gradients import conjugate_gradients
from worker.deconv.periodic import centred_kernel_spectrum, fast_shape
from worker.deconv.psf import gradient_normal
from worker.parallel import in_threads

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1)  # the gradient penalties tried, for a window of mean 1
ITERATIONS = 40  # conjugate-gradient steps of each restoration
SEED = 9  # the split is drawn from a fixed seed, so a check gives the same answer every time


class HeldOutWindow:
    """One grey window (h, w), split into training and held-out pixels, ready to score kernels.

    The window is divided by its mean absolute value and placed in the top-left corner of a
    larger periodic grid; the split is drawn from the fixed `SEED`.

    Parameters
    ----------
    patch : ndarray, shape (h, w)
        The grey window.
    margin : int
        The largest kernel to score: the grid is larger by it, and held-out pixels closer than it
        to the window's border are not scored (their blur reaches outside the window).
    """

    def __init__(self, patch: np.ndarray, margin: int) -> None:
        height, width = patch.shape
        self.shape = fast_shape((height + margin, width + margin))
        split = np.random.default_rng(SEED).random((height, width)) < 0.5
        self.observed = np.zeros(self.shape)
        self.observed[:height, :width] = patch / max(float(np.abs(patch).mean()), 1e-12)
        self.train = np.zeros(self.shape)
        self.train[:height, :width] = split
        self.held = np.zeros(self.shape, dtype=bool)
        self.held[margin : height - margin, margin : width - margin] = ~split[
            margin : height - margin, margin : width - margin
        ]

    @property
    def can_score(self) -> bool:
        """Whether any held-out pixel lies a margin from the border: a window narrower than two
        margins (a strip of a picture a few pixels wide) holds none, and scores nothing."""
        return bool(self.held.any())

    def errors(self, psfs: list[np.ndarray]) -> list[float]:
        """`error` of each of `psfs`, side by side (`worker.parallel.in_threads`).

        The window is only read, so each error is the one `error` gives alone, to the last bit;
        the blind step decides between two kernels this way, both on the two cores.

        Parameters
        ----------
        psfs : list of ndarray
            The kernels, as `error` takes them.

        Returns
        -------
        list of float
            Their errors, in their order.
        """
        return in_threads(self.error, psfs)

    def error(self, psf: np.ndarray) -> float:
        """E(`psf`): the least mean squared error on the held-out pixels over `ALPHAS`.

        Ask `can_score` first: without held-out pixels there is no error to measure.

        Parameters
        ----------
        psf : ndarray, shape (k, k)
            The kernel: odd-sized, summing to one, no larger than the margin; a 1 x 1 one is no
            blur.

        Returns
        -------
        float
            The least, over `ALPHAS`, mean squared error of the re-blurred restoration on the scored
            held-out pixels, in the units of the window divided by its mean absolute value.

        Raises
        ------
        ValueError
            When no held-out pixel is scored (`can_score` is False).
        """
        if not self.can_score:
            raise ValueError("no held-out pixel to score a kernel on")
        otf = centred_kernel_spectrum(np.asarray(psf, dtype=np.float64), self.shape)

        def blur(image: np.ndarray) -> np.ndarray:
            return fft.irfft2(otf * fft.rfft2(image), s=self.shape)

        def blur_adjoint(image: np.ndarray) -> np.ndarray:
            return fft.irfft2(np.conj(otf) * fft.rfft2(image), s=self.shape)

        def normal(image: np.ndarray, alpha: float) -> np.ndarray:
            return blur_adjoint(self.train * blur(image)) + alpha * gradient_normal(image)

        rhs = blur_adjoint(self.train * self.observed)
        sharp, best = self.observed, np.inf
        for alpha in ALPHAS:  # each restoration starts from the last one
            operator = partial(normal, alpha=alpha)
            sharp = conjugate_gradients(operator, rhs, sharp, ITERATIONS, tolerance=1e-8)
            residual = blur(sharp) - self.observed
            best = min(best, float(np.mean(residual[self.held] ** 2)))
        return best
