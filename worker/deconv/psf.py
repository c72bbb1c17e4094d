"""Blind estimation of the point spread function (PSF) from one window of a blurred picture.

The method is the L0-regularised gradient prior with half-quadratic splitting of Xu, Zheng and Jia,
"Unnatural L0 sparse representation for natural image deblurring" (CVPR 2013), in the form of
Pan, Hu, Su and Yang, "Deblurring text images via L0-regularized intensity and gradient prior"
(CVPR 2014; TPAMI 2017). On luminance, coarse to fine (scale 1/sqrt(2) per level), it alternates

* the latent sharp image, ``u = argmin ||k * u - f||^2 + lambda ||grad u||_0``: half-quadratic
  splitting with auxiliary gradients ``g``; each round hard-thresholds ``g = grad u`` where
  ``|g|^2 < lambda / beta`` and solves the quadratic ``u`` step in closed form by FFT, while
  ``beta`` doubles from ``2 lambda`` to 1e5. The L0 prior keeps only the salient edges, which is
  what makes the kernel step well posed (the sharp image is "unnatural" on purpose);
* the kernel on gradients, ``k = argmin sum_d ||M (k * d u - d f)||^2 + gamma ||k||^2`` over a
  K x K support, by conjugate gradients on the normal equations (FFT operators); then small taps
  are zeroed, components holding little mass are dropped and ``k`` is made non-negative and
  summing to one (negative taps clipped, then divided by its sum; `clean_kernel`).

``lambda`` shrinks by 1.1 per round (coarse levels need a stronger prior). Boundaries: the window
is extended to a smooth periodic image (the edge-to-edge interpolation idea of Liu and Jia,
"Reducing boundary artifacts in image deconvolution", ICIP 2008), so the FFTs see no seam; the
kernel fit counts only the observed window (the mask ``M``: the valid-convolution model), so the
made-up extension never acts as data. Keeping taps down to 2 % of the peak while iterating lets
the long, faint kernels keep their tails; pruning the finest levels' kernels by the fit's own
error (`fit_error`) copes with texture and noise. The README's results section gives the numbers
(`benchmarks/bench_levin.py`, `benchmarks/bench_psf_photos.py`).
"""

import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft, ndimage

from worker.compiled import compiled
from worker.deconv.boundaries import data_mask, detect_clip_level
from worker.deconv.conjugate_gradients import conjugate_gradients
from worker.deconv.luminance import luminance
from worker.deconv.noise import estimate_noise
from worker.deconv.periodic import (
    centred_kernel_spectrum,
    fast_shape,
    forward_gradients,
    gradient_spectrum_power,
    smooth_periodic_extension,
)
from worker.deconv.psf_tools import center_on_centroid, resize_psf
from worker.deconv.settings import MIN_BLUR
from worker.deconv.window import Window, choose_window, learning_patch
from worker.errors import InputError
from worker.resize import shrink_smooth
from worker.stages import Progress, Stage

LEVEL_SCALE = np.sqrt(0.5)
ROUNDS_PER_LEVEL = 5
LAMBDA_START, LAMBDA_FLOOR, LAMBDA_DECAY = 4e-3, 1e-4, 1.1
L0_PENALTY_MAX, L0_PENALTY_GROWTH = 1e5, 2.0  # the L0 step's beta: from 2 lambda, doubling to this
KERNEL_TIKHONOV = 20.0
SMALL_TAP = 0.02  # taps under this fraction of the maximum are zeroed after each kernel step
SMALL_COMPONENT = 0.1  # connected parts of the kernel holding less mass than this are dropped
FINAL_TAP = 0.05  # the cleaning threshold of the returned kernel
NOISE_TAPS = 3.0  # taps under this many times their noise deviation are zeroed
MIN_UNCLIPPED = 0.25  # a window keeps at least this share of its pixels away from clipped ones
ERROR_LEVELS = 3  # on the finest levels, taps under ERROR_TAPS x the fit's error are zeroed
ERROR_TAPS, LAST_ERROR_TAPS = 2.0, 3.0  # (the last round of all, a stricter LAST_ERROR_TAPS)


@dataclass
class PsfReport:
    """What `estimate_psf` did: the window (x, y, width, height), rounds and time it took."""

    window: Window
    iterations: int
    levels: int
    seconds: float

    def as_dict(self) -> dict:
        """The report as a dict of plain values, for JSON.

        Returns
        -------
        dict
            The fields by name, the window as a list [x, y, width, height].
        """
        report = asdict(self)
        report["window"] = list(self.window)
        return report


@compiled(nogil=True)
def gradient_normal(image: np.ndarray) -> np.ndarray:
    """``D^T D image`` for the circular forward differences ``D`` of `forward_gradients`.

    ``gradient_adjoint(*forward_gradients(image))`` in one pass, without the four planes between
    (a quarter of the time on a 648 x 648 window): each sample is the same differences of the
    same numbers, taken in the same order, so the result is the same to the last bit. The
    normal operator of a gradient penalty ``||grad u||^2`` (`holdout`).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The picture, float.

    Returns
    -------
    ndarray, shape (H, W)
        ``(g_x[i, j - 1] - g_x[i, j]) + (g_y[i - 1, j] - g_y[i, j])``, ``g = D image``, the
        indices circular: minus the circular five-point Laplacian of `image`.
    """
    height, width = image.shape
    out = np.empty_like(image)
    for i in range(height):
        above = i - 1 if i > 0 else height - 1
        below = i + 1 if i + 1 < height else 0
        for j in range(width):
            left = j - 1 if j > 0 else width - 1
            right = j + 1 if j + 1 < width else 0
            here = image[i, j]
            across = (here - image[i, left]) - (image[i, right] - here)
            down = (here - image[above, j]) - (image[below, j] - here)
            out[i, j] = across + down
    return out


@compiled(nogil=True)
def strong_gradient_adjoint(image: np.ndarray, threshold: float) -> np.ndarray:
    """``D^T g``, ``g = D image`` where ``|g|^2 >= threshold`` and 0 elsewhere: the L0 step.

    What `l0_restore` did with `forward_gradients`, a mask and `gradient_adjoint`, in two passes
    without the planes between: each gradient, its squared norm and each difference are the same
    numbers taken in the same order, so the result is the same to the last bit.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The picture, float.
    threshold : float
        The least squared gradient norm kept.

    Returns
    -------
    ndarray, shape (H, W)
        ``D^T g`` for the circular forward differences ``D`` (`gradient_adjoint`).
    """
    height, width = image.shape
    gx, gy = np.empty_like(image), np.empty_like(image)
    for i in range(height):
        below = i + 1 if i + 1 < height else 0
        for j in range(width):
            right = j + 1 if j + 1 < width else 0
            across = image[i, right] - image[i, j]
            down = image[below, j] - image[i, j]
            if across * across + down * down < threshold:
                across, down = 0.0, 0.0
            gx[i, j], gy[i, j] = across, down
    out = np.empty_like(image)
    for i in range(height):
        above = i - 1 if i > 0 else height - 1
        for j in range(width):
            left = j - 1 if j > 0 else width - 1
            out[i, j] = (gx[i, left] - gx[i, j]) + (gy[above, j] - gy[i, j])
    return out


def l0_restore(blurred: np.ndarray, psf: np.ndarray, weight: float) -> np.ndarray:
    """``argmin_u ||psf * u - blurred||^2 + weight ||grad u||_0`` by half-quadratic splitting.

    Xu, Zheng and Jia [1]_, Pan et al. [2]_: with auxiliary gradients ``g`` and a penalty
    ``beta ||g - grad u||^2`` growing by `L0_PENALTY_GROWTH` from ``2 weight`` while under
    `L0_PENALTY_MAX`, the ``g`` step is a hard threshold (keep
    ``grad u`` where ``|grad u|^2 >= weight / beta``) and the ``u`` step is
    ``F(u) = (conj(K) F(f) + beta F(D^T g)) / (|K|^2 + beta |F(D)|^2)``.

    Parameters
    ----------
    blurred : ndarray, shape (H, W)
        The blurred grey picture ``f``, periodic (already extended: `smooth_periodic_extension`).
    psf : ndarray, shape (k, k)
        The kernel ``K``, convolution convention, its centre at the middle tap.
    weight : float
        The L0 weight lambda.

    Returns
    -------
    ndarray, shape (H, W)
        The latent sharp picture ``u``; `blurred` itself when ``2 weight >= L0_PENALTY_MAX`` (no
        round).

    References
    ----------
    .. [1] L. Xu, S. Zheng and J. Jia, "Unnatural L0 sparse representation for natural image
           deblurring", IEEE Conference on Computer Vision and Pattern Recognition (CVPR), 2013.
    .. [2] J. Pan, Z. Hu, Z. Su and M.-H. Yang, "Deblurring text images via L0-regularized
           intensity and gradient prior", IEEE Conference on Computer Vision and Pattern
           Recognition (CVPR), 2014. DOI:10.1109/CVPR.2014.371
    """
    shape = blurred.shape
    otf = centred_kernel_spectrum(psf, shape)
    numerator_data = np.conj(otf) * fft.rfft2(blurred)
    otf_power = np.abs(otf) ** 2
    grad_power = gradient_spectrum_power(shape)
    latent = blurred
    beta = 2 * weight
    while beta < L0_PENALTY_MAX:
        strong = strong_gradient_adjoint(latent, weight / beta)
        spectrum = (numerator_data + beta * fft.rfft2(strong)) / (otf_power + beta * grad_power)
        latent = fft.irfft2(spectrum, s=shape)
        beta *= L0_PENALTY_GROWTH
    return latent


def estimate_kernel(
    latent: np.ndarray, blurred: np.ndarray, size: int, tikhonov: float, usable: np.ndarray
) -> np.ndarray:
    """``argmin_k sum_d ||M (k * d latent - d blurred)||^2 + tikhonov ||k||^2``, k size x size.

    ``d`` runs over the forward differences along x and y, and the mask ``M`` keeps the observed
    window only (the top-left h x w of the periodic grid; `usable` says which of its pixels
    count): the smooth extension around it is no data, so the fit follows the valid-convolution
    model. Conjugate gradients on the normal equations (`conjugate_gradients`' default steps, from
    a uniform kernel), each operator application a few FFTs.

    Parameters
    ----------
    latent : ndarray, shape (H, W)
        The latent sharp picture on the periodic grid (`l0_restore`).
    blurred : ndarray, shape (H, W)
        The blurred picture on the same grid, the observed window in its top-left corner.
    size : int
        The kernel's side K, odd.
    tikhonov : float
        The weight of ``||k||^2``.
    usable : ndarray of bool, shape (h, w)
        Which pixels of the observed window the fit counts. Its last row and column never count:
        their forward differences reach into the extension.

    Returns
    -------
    ndarray, shape (size, size)
        The kernel, convolution convention, centred on the middle tap. It is not yet projected: it
        may hold small negative taps and need not sum to one.
    """
    shape = latent.shape
    mask = np.zeros(shape)
    height, width = usable.shape
    mask[: height - 1, : width - 1] = usable[:-1, :-1]
    latent_spectra = [fft.rfft2(g) for g in forward_gradients(latent)]
    data = [mask * g for g in forward_gradients(blurred)]
    half = size // 2
    lags = np.arange(-half, half + 1)
    index = np.ix_(lags % shape[0], lags % shape[1])

    def adjoint(residuals: list[np.ndarray]) -> np.ndarray:
        total = sum(
            np.conj(g) * fft.rfft2(r) for g, r in zip(latent_spectra, residuals, strict=True)
        )
        return fft.irfft2(total, s=shape)[index]

    def normal_operator(k: np.ndarray) -> np.ndarray:
        otf = centred_kernel_spectrum(k, shape)
        return adjoint([mask * fft.irfft2(g * otf, s=shape) for g in latent_spectra]) + tikhonov * k

    return conjugate_gradients(normal_operator, adjoint(data), np.full((size, size), 1.0 / size**2))


def clean_kernel(
    psf: np.ndarray, small_tap: float, small_component: float, floor: float = 0.0
) -> np.ndarray:
    """Zero the small taps and the light parts of a kernel, and renormalise it.

    Negatives are clipped to 0; then taps under `small_tap` x the maximum or under `floor` are
    zeroed, and 8-connected parts holding less mass than `small_component`; the rest is
    renormalised to sum one (a delta if nothing is left).

    Parameters
    ----------
    psf : ndarray, shape (K, K)
        The kernel as fitted (`estimate_kernel`: it may hold negative taps).
    small_tap : float
        Taps under this share of the largest are zeroed.
    small_component : float
        Parts holding less than this share of the mass left are zeroed; only where there are two
        parts or more, and not when every part is that light.
    floor : float, optional
        Taps under this are zeroed too (in tap units: a noise or error floor).

    Returns
    -------
    ndarray, shape (K, K)
        Non-negative, summing to one; a centred delta when no tap is left.
    """
    psf = np.clip(psf, 0, None)
    if psf.max() <= 0:
        return delta_kernel(psf.shape[0])
    psf = np.where(psf < max(small_tap * psf.max(), floor), 0.0, psf)
    if psf.sum() <= 0:  # every tap under the noise floor: nothing learnt
        return delta_kernel(psf.shape[0])
    psf /= psf.sum()
    labels, count = ndimage.label(psf > 0, structure=np.ones((3, 3)))
    if count > 1:
        mass = ndimage.sum(psf, labels, index=np.arange(1, count + 1))
        keep = np.concatenate(([False], mass >= small_component))
        if keep.any():
            psf = np.where(keep[labels], psf, 0.0)
    return psf / psf.sum()


def kernel_noise(latent: np.ndarray, usable: np.ndarray, sigma: float, tikhonov: float) -> float:
    """The standard deviation that image noise `sigma` leaves on each tap of the kernel fit.

    White noise of deviation sigma has forward differences of variance ``2 sigma^2``; the least
    squares fit divides their effect by the latent gradients' energy E (plus the Tikhonov term),
    which gives about ``sqrt(2) sigma / sqrt(E + tikhonov)`` per tap.

    Parameters
    ----------
    latent : ndarray, shape (H, W)
        The latent sharp picture on the periodic grid (`l0_restore`).
    usable : ndarray of bool, shape (h, w)
        Which pixels of the observed window (the grid's top-left h x w) count towards E.
    sigma : float
        The noise's standard deviation (`estimate_noise`), in the picture's units.
    tikhonov : float
        The Tikhonov weight of the kernel fit (`estimate_kernel`).

    Returns
    -------
    float
        ``sqrt(2) sigma / sqrt(E + tikhonov)``, in tap units.
    """
    gx, gy = forward_gradients(latent)
    height, width = usable.shape
    energy = float(((gx * gx + gy * gy)[:height, :width] * usable).sum())
    return float(np.sqrt(2) * sigma / np.sqrt(energy + tikhonov))


def fit_error(raw: np.ndarray) -> float:
    """The root mean square of the negative taps of an unconstrained kernel fit.

    A blur has no negative taps, so they are the fit's error (image noise, and texture that the
    L0 sharp image cannot represent); by symmetry the positive taps carry as much. Measured on
    textured photographs (a cat's fur, a night scene), this, not the image noise, is what leaves
    a spray of specks around the kernel.

    Parameters
    ----------
    raw : ndarray
        The kernel as fitted, before it is cleaned (`estimate_kernel`).

    Returns
    -------
    float
        The root mean square, in tap units; 0.0 when no tap is negative.
    """
    negative = raw[raw < 0]
    return float(np.sqrt(np.mean(negative**2))) if negative.size else 0.0


def delta_kernel(size: int) -> np.ndarray:
    """A size x size kernel with all its mass at the centre.

    Parameters
    ----------
    size : int
        The kernel's side, odd.

    Returns
    -------
    ndarray, shape (size, size)
        float64: 1 at (size // 2, size // 2), 0 elsewhere.
    """
    psf = np.zeros((size, size))
    psf[size // 2, size // 2] = 1.0
    return psf


def pyramid_sizes(size: int) -> list[int]:
    """Odd kernel sizes from coarse to fine: `size` shrunk by 1/sqrt(2) per level, down to ~5.

    Parameters
    ----------
    size : int
        The finest kernel size, odd, in pixels.

    Returns
    -------
    list of int
        Odd sizes, coarse to fine: the first 5 to 9 px, the last `size`; only [`size`] for a size
        of 7 or less.
    """
    levels = max(int(np.floor(np.log(5 / size) / np.log(LEVEL_SCALE))), 0) + 1
    sizes = [int(np.ceil(size * LEVEL_SCALE**i)) | 1 for i in range(levels)]
    sizes[0] = size
    return sizes[::-1]


def blind_kernel(
    blurred: np.ndarray, size: int, usable: np.ndarray, progress: Progress | None = None
) -> tuple[np.ndarray, int]:
    """The K x K kernel (convolution convention) of the grey window `blurred`, and rounds run.

    Coarse to fine over `pyramid_sizes`: on each level the window is shrunk and extended to a
    smooth periodic grid, and `ROUNDS_PER_LEVEL` rounds (one more on the finest level) each
    restore the sharp picture (`l0_restore`), fit the kernel (`estimate_kernel`) and clean it
    (`clean_kernel`) down to a floor set by the noise (`kernel_noise`) and, on the last
    `ERROR_LEVELS` levels, by the fit's error (`fit_error`).

    Parameters
    ----------
    blurred : ndarray, shape (h, w)
        The grey window (`estimate_psf` passes it scaled so that its 99.9th percentile is 1).
    size : int
        The kernel's side K, odd, in pixels.
    usable : ndarray of bool, shape (h, w)
        The pixels that the kernel fit may use.
    progress : Progress or None, optional
        Called with (share done, `Stage.ESTIMATING`) after each level.

    Returns
    -------
    psf : ndarray, shape (K, K)
        float64, non-negative, summing to one, centred on its centroid (to the whole pixel).
    rounds : int
        The rounds run, all levels together.
    """
    sizes = pyramid_sizes(size)
    weight = LAMBDA_START
    psf = delta_kernel(sizes[0])
    rounds = 0
    for level, level_size in enumerate(sizes):
        scale = LEVEL_SCALE ** (len(sizes) - 1 - level)
        small = shrink_smooth(blurred, scale)
        small_usable = shrink_smooth(usable.astype(np.float64), scale) > 0.99
        psf = resize_psf(psf, (level_size, level_size)).astype(np.float64)
        shape = fast_shape((small.shape[0] + level_size - 1, small.shape[1] + level_size - 1))
        extended = smooth_periodic_extension(small, shape)
        sigma = estimate_noise(small)
        finest = level == len(sizes) - 1
        # The finest level adds a last round, which prunes harder by the fit's error.
        for round_ in range(ROUNDS_PER_LEVEL + finest):
            latent = l0_restore(extended, psf, weight)
            raw = estimate_kernel(latent, extended, level_size, KERNEL_TIKHONOV, small_usable)
            floor = NOISE_TAPS * kernel_noise(latent, small_usable, sigma, KERNEL_TIKHONOV)
            if level >= len(sizes) - ERROR_LEVELS:
                last = round_ == ROUNDS_PER_LEVEL
                floor = max(floor, (LAST_ERROR_TAPS if last else ERROR_TAPS) * fit_error(raw))
            psf = clean_kernel(raw, SMALL_TAP, SMALL_COMPONENT, floor)
            weight = max(weight / LAMBDA_DECAY, LAMBDA_FLOOR)
            rounds += 1
        psf = center_on_centroid(psf).astype(np.float64)
        if progress is not None:
            progress((level + 1) / len(sizes), Stage.ESTIMATING)
    return psf, rounds


def unclipped(
    image: np.ndarray, window: Window, size: int, clip_level: float | None = None
) -> np.ndarray:
    """Which pixels of `window` are at least half a kernel away from any clipped highlight in it.

    Clipped pixels break the linear blur model (Whyte, Sivic and Zisserman [1]_), and their
    blurred surroundings with them. Only the window is looked at: a highlight just outside it
    takes none of its pixels out.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, whole.
    window : Window
        (x, y, width, height) in pixels.
    size : int
        The blur size, in pixels: each clipped pixel takes the size x size square around it out.
    clip_level : float or None, optional
        The clip level: the file's (1.0 for integer files) or one detected already (`math.inf`:
        nothing clipped). None: unknown, so detected on the whole image (`detect_clip_level`), as
        `deblur` does; where there is no clipped plateau, every pixel counts.

    Returns
    -------
    ndarray of bool, shape (height, width)
        True where the kernel fit may use the pixel.

    Raises
    ------
    InputError
        When fewer than a quarter of the window's pixels are left.

    References
    ----------
    .. [1] O. Whyte, J. Sivic and A. Zisserman, "Deblurring shaken and partially saturated
           images", International Journal of Computer Vision, 2014.
           DOI:10.1007/s11263-014-0727-3
    """
    x, y, width, height = window
    pixels = image[y : y + height, x : x + width]
    if clip_level is None:
        clip_level = detect_clip_level(image)
    usable = data_mask(pixels, clip_level) > 0
    for line in ((size, 1), (1, size)):  # the square's erosion, as a column's then a row's
        usable = ndimage.binary_erosion(usable, np.ones(line, bool), border_value=1)
    if usable.mean() < MIN_UNCLIPPED:
        raise InputError(
            "the window is mostly blown-out highlights; choose one with unclipped detail"
        )
    return usable


def estimate_psf(
    image: np.ndarray,
    size: int,
    window: Window | None = None,
    progress: Progress | None = None,
    clip_level: float | None = None,
) -> tuple[np.ndarray, PsfReport]:
    """Estimate the `size` x `size` PSF of a blurred linear image from one window.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The linear picture, C in {1, 3}.
    size : int
        The kernel's side in pixels: odd, at least `MIN_BLUR`.
    window : Window or None, optional
        (x, y, width, height) in pixels; None chooses one automatically
        (`worker.deconv.window.choose_window`).
    progress : Progress or None, optional
        Called with (share done, `Stage.ESTIMATING`) after each pyramid level.
    clip_level : float or None, optional
        Where the sensor clipped (1.0 for integer files; None: detected), so that clipped
        highlights stay out of the kernel fit.

    Returns
    -------
    psf : ndarray, shape (size, size)
        float32, convolution convention, non-negative, summing to one, centred on its centroid.
    report : PsfReport
        The window used, the rounds and pyramid levels run, the seconds taken.

    Raises
    ------
    InputError
        For an image not (H, W, 1 or 3), a bad size, NaN or infinite values, a window outside the
        image or under `KERNELS_ACROSS` kernels wide, a window without edges to learn from, or one
        whose pixels are mostly near clipped highlights.
    """
    started = time.perf_counter()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InputError(f"the image must be (height, width, 1 or 3 channels), not {image.shape}")
    if isinstance(size, bool) or int(size) != size or size < MIN_BLUR or size % 2 == 0:
        raise InputError(
            f"the blur size must be an odd number of pixels, at least {MIN_BLUR}, not {size}"
        )
    grey = luminance(image)
    if not np.all(np.isfinite(grey)):
        raise InputError("the image holds NaN or infinite values")
    if window is None:
        window = choose_window(grey, size)
    patch = learning_patch(grey, window, size)
    patch = patch / max(float(np.percentile(patch, 99.9)), 1e-12)
    usable = unclipped(image, window, size, clip_level)
    psf, rounds = blind_kernel(patch, size, usable, progress)
    psf = center_on_centroid(clean_kernel(psf, FINAL_TAP, SMALL_COMPONENT))
    report = PsfReport(
        window=tuple(int(v) for v in window),  # type: ignore[arg-type]
        iterations=rounds,
        levels=len(pyramid_sizes(size)),
        seconds=time.perf_counter() - started,
    )
    return psf.astype(np.float32), report
