"""Which kernel deblurs a part of the picture best: cross-validation on held-out pixels.

A candidate kernel ``k`` is judged by its result, not by how its spectrum fits: a sample window
of the part is deblurred with ``k`` (Richardson-Lucy-TV, `rl_tv.richardson_lucy_tv`, a few
iterations, on the luminance) with the data term masked on a random `HELD_OUT` share of its
pixels, and the estimate ``u``, blurred again, predicts them: the error is

    E(k) = mean over held-out p of (f_p - (k * u)_p)^2 / var(f_p),

``var(f_p)`` the picture's Poisson-Gaussian noise at the predicted level (Stone, "Cross-validatory
choice and assessment of statistical predictions", J. R. Stat. Soc. B 36, 1974; for the
regularised deconvolution of pictures, Golub, Heath and Wahba 1979,
doi:10.1080/00401706.1979.10489751, whose closed form `gcv` uses for Tikhonov restorations). A
kernel that does not fit the blur needs ringing or blotches to fit the kept pixels, which the TV
prior holds back, and predicts the held-out ones worse; every kernel sees the same pixels, so
the errors are compared pixel by pixel (a paired test).

The part may also have no blur a candidate explains: in focus, defocused, too flat. Its
*isotropic* explanations are scored on the same held-out pixels: the kept pixels smoothed by
Gaussians (`SMOOTHING` px, a normalised convolution: no blur, only noise) and deblurred with
isotropic Gaussian kernels (`ISOTROPIC` px); the best of them is the baseline a kernel must not
fall clearly behind. The held-out pixels themselves never reach any prediction: they are
replaced by the smoothed kept pixels in the picture the deblurring starts from.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from worker.deconv.boundaries import data_mask
from worker.deconv.local import LUMA_NOISE
from worker.deconv.noise import NoiseModel, regularisation_weight, white_level
from worker.deconv.parametric import gaussian_kernel
from worker.deconv.psf import luminance
from worker.deconv.rl_tv import richardson_lucy_tv
from worker.deconv.stopping import StoppingRule
from worker.deconv.window import Window, choose_window

HELD_OUT = 0.125  # share of the sample window's pixels held out
ITERATIONS = 20  # Richardson-Lucy-TV iterations per candidate
FILL_SIGMA = 1.5  # px: the held-out pixels start as the kept ones smoothed by this Gaussian
SMOOTHING = (0.7, 1.0, 1.5, 2.0, 3.0)  # px: "no blur" predictions, the kept pixels smoothed
ISOTROPIC = (0.7, 1.2, 2.0, 3.0)  # px: isotropic blurs the candidates are compared with
SEED = 0  # the held-out pixels are drawn the same way on every run


def smoothed(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """The normalised convolution of `values` with weights `weights` by a Gaussian of `sigma`."""
    total = ndimage.gaussian_filter(values * weights, sigma)
    return total / np.maximum(ndimage.gaussian_filter(weights, sigma), 1e-6)


@dataclass
class HeldOut:
    """A sample window of a part of the picture with its held-out pixels, ready to score kernels.

    `grey`: the window's luminance; `kept`: the data weight (0 on held-out and clipped pixels);
    `held`: the held-out pixels (at least half a kernel inside the window, so that every
    prediction sees a whole kernel's worth of estimate); `model`: the picture's noise.
    """

    grey: np.ndarray
    kept: np.ndarray
    held: np.ndarray
    model: NoiseModel

    @classmethod
    def sample(
        cls,
        part: np.ndarray,
        size: int,
        model: NoiseModel,
        clip_level: float | None,
        window: Window | None = None,
    ) -> "HeldOut":
        """`window` (x, y, width, height) of `part` ((H, W, C), linear; None: its most detailed
        window, `choose_window`) for kernels up to `size`, with `HELD_OUT` of its inner pixels
        held out at random."""
        grey = luminance(part).astype(np.float32)
        x, y, width, height = window or choose_window(grey, size)
        grey = grey[y : y + height, x : x + width]
        usable = data_mask(part[y : y + height, x : x + width], clip_level) > 0
        inner = np.zeros(grey.shape, bool)
        r = size // 2
        inner[r : grey.shape[0] - r, r : grey.shape[1] - r] = True
        held = (np.random.default_rng(SEED).random(grey.shape) < HELD_OUT) & inner & usable
        return cls(grey, (usable & ~held).astype(np.float32), held, model)

    def squared_errors(self, prediction: np.ndarray) -> np.ndarray:
        """``(f_p - prediction_p)^2 / var(f_p)`` on the held-out pixels (a vector)."""
        variance = LUMA_NOISE * (
            self.model.gain * np.maximum(prediction, 0) + self.model.read_variance
        )
        return (self.grey - prediction)[self.held] ** 2 / np.maximum(variance[self.held], 1e-30)

    def kernel_errors(self, psf: np.ndarray) -> np.ndarray:
        """The held-out errors of `psf` (see `predict`)."""
        return self.squared_errors(self.predict(psf))

    def predict(self, psf: np.ndarray) -> np.ndarray:
        """The window as `psf` predicts it: deblurred on the kept pixels, blurred again."""
        start = np.where(self.held, smoothed(self.grey, self.kept, FILL_SIGMA), self.grey)
        kept = self.grey[self.kept > 0]
        white, level = white_level(kept), float(kept.mean())
        lam = regularisation_weight(self.model, white, level)
        rule = StoppingRule(5.0, ITERATIONS, min_iterations=ITERATIONS)
        run = richardson_lucy_tv(
            start[None].astype(np.float32), self.kept, psf, lam, self.model.sigma,
            self.model.offset(white), rule,
        )  # fmt: skip
        return signal.fftconvolve(run.estimate[0], psf, mode="same")

    def isotropic_error(self) -> float:
        """The mean held-out error of the best isotropic explanation (see the module)."""
        smooth = [self.squared_errors(smoothed(self.grey, self.kept, s)) for s in SMOOTHING]
        blurred = [self.kernel_errors(gaussian_kernel(s).astype(np.float32)) for s in ISOTROPIC]
        return min(float(errors.mean()) for errors in smooth + blurred)


def clearly_lower(errors: np.ndarray, reference: np.ndarray, z: float) -> bool:
    """Whether the paired held-out `errors` are lower than `reference`'s by more than `z`
    standard errors of their mean difference."""
    difference = reference - errors
    spread = float(difference.std()) / np.sqrt(max(difference.size, 1))
    return float(difference.mean()) > z * spread
