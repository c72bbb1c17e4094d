"""Synthetic test material: photo-like scenes and camera-shake kernels.

Used by the `demo` command, the tests and the benchmarks, so that none of them needs a file from
outside the project.
"""

import numpy as np
from scipy import ndimage, signal

from worker.deconv.psf_tools import center_on_centroid

SHAKE_STEPS = 400  # points on a synthetic camera-shake path


def dead_leaves(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A colour "dead leaves" scene in linear light.

    Occluding discs with a power-law radius distribution (density ~ r^-3) have the scale
    invariance and edge statistics of natural photographs (Lee, Mumford and Huang [1]_), which
    makes them a standard target for measuring sharpness. A soft illumination gradient, fine
    texture and a few thin lines complete the look.

    Parameters
    ----------
    shape : tuple of int
        The scene's (height, width) in pixels.
    rng : numpy.random.Generator
        Where the discs, colours, lines and texture are drawn from: one seed, one scene.

    Returns
    -------
    ndarray of float32, shape (H, W, 3)
        The scene, values in [0.01, 0.95].

    References
    ----------
    .. [1] A. B. Lee, D. Mumford and J. Huang, "Occlusion models for natural images: a
       statistical study of a scale-invariant dead leaves model", International Journal of
       Computer Vision 41, 35-59, 2001.
    """
    height, width = shape
    scene = np.full((height, width, 3), 0.18, dtype=np.float32)
    r_min, r_max = 2.5, max(5.0, min(shape) / 5)
    # Enough discs to cover the frame about three times over: E[r^2] = c ln(r_max / r_min).
    mean_area = np.pi * 2 * np.log(r_max / r_min) / (r_min**-2 - r_max**-2)
    discs = int(3 * height * width / mean_area)
    # Inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max].
    u = rng.random(discs)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    centres = rng.random((discs, 2)) * (height, width)
    grey = rng.gamma(1.5, 0.15, (discs, 1))
    colours = grey * rng.uniform(0.6, 1.4, (discs, 3))  # muted, photo-like colours
    for (cy, cx), r, colour in zip(centres, radii, colours, strict=True):
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, height)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, width)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        scene[y0:y1, x0:x1][inside] = colour
    for _ in range(6):  # thin straight lines: wires, branches, window frames
        y, x = rng.random(2) * (height, width)
        angle = rng.uniform(0, np.pi)
        t = np.linspace(-max(shape), max(shape), 4 * max(shape))
        ys = np.round(y + t * np.sin(angle)).astype(int)
        xs = np.round(x + t * np.cos(angle)).astype(int)
        keep = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        scene[ys[keep], xs[keep]] = rng.uniform(0.0, 0.9, 3)
    yy, xx = np.mgrid[0:height, 0:width] / max(shape)
    light = 0.6 + 0.5 * (0.7 * yy + 0.3 * xx)
    texture = 1.0 + 0.08 * ndimage.gaussian_filter(rng.standard_normal(shape), 0.7)
    scene *= (light * texture)[..., None].astype(np.float32)
    return np.clip(scene, 0.01, 0.95).astype(np.float32)


def camera_shake_kernel(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random camera-shake PSF, centred on its centroid.

    The camera's path is a random walk with inertia (as in Boracchi and Foi [1]_): a velocity
    that keeps its direction and takes random kicks, over `SHAKE_STEPS` points. The path is
    scaled to span 40-90 % of the kernel, drawn with bilinear weights (time spent at a place is
    light received there) and softened slightly.

    Parameters
    ----------
    size : int
        The kernel's side in pixels: odd, at least 3.
    rng : numpy.random.Generator
        Where the path is drawn from: one seed, one kernel.

    Returns
    -------
    ndarray of float32, shape (size, size)
        The kernel, non-negative, summing to one, its centroid on the central pixel (to the
        whole pixel, `psf_tools.center_on_centroid`).

    Raises
    ------
    ValueError
        When `size` is even or under 3.

    References
    ----------
    .. [1] G. Boracchi and A. Foi, "Modeling the performance of image restoration from motion
       blur", IEEE Transactions on Image Processing 21, 2012, doi:10.1109/TIP.2012.2192126.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError("the kernel size must be odd and at least 3")
    velocity = rng.standard_normal(2)
    path = np.zeros((SHAKE_STEPS, 2))
    for t in range(1, SHAKE_STEPS):
        velocity = 0.96 * velocity + 0.35 * rng.standard_normal(2)
        path[t] = path[t - 1] + velocity
    path -= path.mean(axis=0)
    extent = np.ptp(path, axis=0).max()
    path *= rng.uniform(0.4, 0.9) * (size - 3) / max(extent, 1e-9)
    path += size // 2
    psf = np.zeros((size, size))
    base = np.floor(path).astype(int)
    frac = path - base
    for dy in (0, 1):
        for dx in (0, 1):
            weight = np.abs(1 - dy - frac[:, 0]) * np.abs(1 - dx - frac[:, 1])
            np.add.at(
                psf,
                (np.clip(base[:, 0] + dy, 0, size - 1), np.clip(base[:, 1] + dx, 0, size - 1)),
                weight,
            )
    psf = ndimage.gaussian_filter(psf, 0.4)
    return center_on_centroid(psf / psf.sum())


def shake(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """`image` blurred by `psf` (convolution), same size, float32.

    The borders are mirrored before blurring, so nothing wraps around and no dark frame creeps in.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        The sharp picture.
    psf : ndarray, shape (kh, kw)
        The blur, in convolution convention; each border is mirrored by `kh` pixels.

    Returns
    -------
    ndarray of float32, shape (H, W, C)
        The blurred picture.
    """
    pad = psf.shape[0]
    planes = [
        signal.fftconvolve(np.pad(image[..., c], pad, mode="reflect"), psf, mode="same")
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1)[pad:-pad, pad:-pad].astype(np.float32)


def blur_valid(scene: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """`psf * scene` per channel, kept where the kernel lies wholly inside the scene, float32.

    A camera frames a wider world, so the borders of a blurred photo hold light from beyond them,
    not a wrapped-around or dark edge.

    Parameters
    ----------
    scene : ndarray, shape (H, W, C)
        The sharp scene, wider than the photo by the kernel.
    psf : ndarray, shape (kh, kw)
        The blur, in convolution convention.

    Returns
    -------
    ndarray of float32, shape (H - kh + 1, W - kw + 1, C)
        The blurred photo: the scene less `kh - 1` rows and `kw - 1` columns.
    """
    planes = [signal.oaconvolve(scene[..., c], psf, mode="valid") for c in range(scene.shape[2])]
    return np.stack(planes, axis=-1).astype(np.float32)


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(1 / mean squared error), white at 1.

    Parameters
    ----------
    estimate : ndarray
        The picture measured (taken in float64).
    truth : ndarray
        The reference, of the same shape (or one that broadcasts to it).

    Returns
    -------
    float
        The ratio in dB; inf when the two are equal (numpy then warns of a division by zero).
    """
    error = np.mean((np.asarray(estimate, np.float64) - truth) ** 2)
    return float(10 * np.log10(1 / error))
