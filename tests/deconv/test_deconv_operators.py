"""The building blocks of the engine: FFT sizes and wisdom, the blur operator, TV, noise."""

import itertools
import math
from pathlib import Path

import numpy as np
import pyfftw
import pytest
from reference import blur_forward, tv_divergence, tv_energy
from scipy import ndimage, signal

from worker.deconv.boundaries import BlurOperator, data_mask, detect_clip_level, hold_edges
from worker.deconv.convolve import tile_shape
from worker.deconv.fft import fast_length, fast_lengths, kernel_spectrum
from worker.deconv.noise import (
    IMMERKAER,
    NoiseModel,
    estimate_noise,
    estimate_noise_model,
    noise_response,
    regularisation_weight,
    wholly_usable,
)
from worker.deconv.rl_tv import UNOBSERVED, WELL_OBSERVED, _rl_tv_step
from worker.deconv.stopping import StoppingRule
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves
from worker.deconv.tv import gradient_weights, split_gradient_at
from worker.files.wisdom import fftw_wisdom
from worker.resize import _area_weights, shrink_area


def test_fast_length_has_only_factors_two_and_three() -> None:
    for n in (1, 2, 5, 7, 97, 500, 513, 4014, 6014):
        m = fast_length(n)
        assert m >= n
        rest = m
        for p in (2, 3):
            while rest % p == 0:
                rest //= p
        assert rest == 1
        assert not any(fast_length(k) == k for k in range(n, m) if k != m)
    assert fast_length(4014) == 4096 and fast_length(500) == 512


def test_fast_lengths_are_every_fast_length_in_the_range() -> None:
    assert fast_lengths(500, 1100) == [n for n in range(500, 1101) if fast_length(n) == n]


def test_tiles_are_fast_even_and_cover_a_2_mpx_frame_with_fewer_samples() -> None:
    # The adjoint of a 1920 x 1080 frame under a 31 px kernel: a 1140 x 1980 input, 1110 x 1950
    # outputs. Fixed 512 px tiles took 3 x 5 of them (3.9 M samples), the fifth column for 2 px.
    def samples(shape: tuple[int, int]) -> int:
        return math.prod(
            -(-(e - 30) // (n - 30)) * n for e, n in zip((1140, 1980), shape, strict=True)
        )

    shape = tile_shape((1140, 1980), (31, 31))
    assert all(512 <= n <= 1024 and n % 2 == 0 and fast_length(n) == n for n in shape)
    assert samples(shape) < 0.7 * samples((512, 512))
    assert tile_shape((40, 50), (5, 5)) == (fast_length(40), fast_length(50))  # one tile
    assert tile_shape((4030, 6030), (31, 31)) == (512, 512)  # 24 Mpx: none cheaper


def test_wisdom_is_saved_and_reloaded(tmp_path: Path) -> None:
    wisdom = tmp_path / "sub" / "fftw-wisdom"
    pyfftw.forget_wisdom()
    with fftw_wisdom(wisdom):
        kernel_spectrum(np.ones((3, 3), np.float32), (54, 96))
    assert wisdom.is_file() and b"fftwf_wisdom" in wisdom.read_bytes()
    pyfftw.forget_wisdom()
    empty = len(pyfftw.export_wisdom()[1])
    with fftw_wisdom(wisdom):
        assert len(pyfftw.export_wisdom()[1]) > empty  # the single-precision plans came back
    assert not list(wisdom.parent.glob("*.part"))


@pytest.mark.parametrize("shape", [(40, 50), (700, 1100)])  # one tile; several tiles
def test_blur_operator_is_the_valid_convolution_and_its_adjoint(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    psf = np.asarray(camera_shake_kernel(21, rng), dtype=np.float64)[:, 2:19]  # not square
    psf /= psf.sum()
    with BlurOperator(psf, shape) as blur:
        u = rng.random(blur.extended_shape).astype(np.float32)
        r = rng.random(shape).astype(np.float32)
        au, atr = blur_forward(blur, u), blur.adjoint(r)
    exact = signal.fftconvolve(u.astype(np.float64), psf, mode="valid")
    assert au.shape == shape
    np.testing.assert_allclose(au, exact, atol=1e-5)  # tiles equal the whole frame
    np.testing.assert_allclose(atr, signal.correlate(r.astype(np.float64), psf, "full"), atol=1e-5)
    # Dot-product test: <A u, r> = <u, A^T r>.
    lhs, rhs = np.vdot(au.astype(np.float64), r), np.vdot(u.astype(np.float64), atr)
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_the_rim_holds_the_windows_nearest_pixels_as_edge_padding_does() -> None:
    window = np.random.default_rng(13).random((2, 5, 7), dtype=np.float32)
    grid = np.full((2, 11, 15), np.nan, np.float32)
    grid[:, 2:7, 4:11] = window
    hold_edges(grid, (slice(2, 7), slice(4, 11)))
    np.testing.assert_array_equal(grid, np.pad(window, ((0, 0), (2, 4), (4, 4)), mode="edge"))


def test_tiles_reach_their_consumer_contiguous() -> None:
    # The compiled consumers (the ratio, the update) vectorise only over unit strides: handed
    # strided views of the FFT buffer, the update ran three times slower
    # (docs/MEASUREMENTS.md, speed).
    psf = camera_shake_kernel(21, np.random.default_rng(0))
    contiguous: list[bool] = []

    def look(top: int, left: int, tile: np.ndarray) -> None:
        contiguous.append(tile.flags.c_contiguous)

    with BlurOperator(psf, (700, 1100)) as blur:
        blur.forward_tiles(np.ones(blur.extended_shape, np.float32), look)
        blur.adjoint_tiles(np.ones((700, 1100), np.float32), look)
    assert len(contiguous) > 2 and all(contiguous)


def test_blur_does_not_wrap_around() -> None:
    psf = np.zeros((9, 9), np.float32)
    psf[4, :] = 1 / 9  # horizontal motion
    with BlurOperator(psf, (64, 64)) as blur:
        u = np.zeros(blur.extended_shape, np.float32)
        u[:, :4] = 100.0  # bright light just left of the frame
        au = blur_forward(blur, u)
    assert au[:, 0].min() > 0  # it reaches the left edge...
    assert np.abs(au[:, 8:]).max() < 1e-4  # ...and nothing else, least of all the right edge


def test_tv_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    u = rng.random((3, 12, 14))
    eps = 0.05
    weights = gradient_weights(u, eps, np.empty(u.shape[1:]))
    analytic = -np.stack([tv_divergence(u[c], weights, np.empty(u.shape[1:])) for c in range(3)])
    h = 1e-6
    for c, i, j in [(0, 0, 0), (1, 5, 7), (2, 11, 13), (0, 11, 3), (2, 4, 13)]:
        plus, minus = u.copy(), u.copy()
        plus[c, i, j] += h
        minus[c, i, j] -= h
        numeric = (tv_energy(plus, eps) - tv_energy(minus, eps)) / (2 * h)
        assert analytic[c, i, j] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_split_gradient_parts_are_positive_and_match_the_difference_formula() -> None:
    rng = np.random.default_rng(6)
    plane = rng.random((9, 11))
    tv_weights = gradient_weights(plane[None], 0.1, np.empty((9, 11)))
    # div(p) with p = grad(plane) / |grad| by forward differences, backward for the divergence.
    px = np.zeros((9, 11))
    py = np.zeros((9, 11))
    px[:, :-1] = np.diff(plane, axis=1) * tv_weights[:, :-1]
    py[:-1] = np.diff(plane, axis=0) * tv_weights[:-1]
    divergence = px - np.pad(px, ((0, 0), (1, 0)))[:, :-1] + py - np.pad(py, ((1, 0), (0, 0)))[:-1]
    for i, j in [(0, 0), (4, 5), (8, 10), (0, 7), (6, 0)]:
        total, neighbours = split_gradient_at(plane, tv_weights, i, j)
        assert total > 0 and neighbours > 0
        assert plane[i, j] * total - neighbours == pytest.approx(-divergence[i, j], rel=1e-9)


def test_the_update_step_is_the_split_gradient_formula_on_every_tile() -> None:
    """`_rl_tv_step` works a row's inner pixels in one branch-free loop and the plane's first and
    last rows and columns apart: on tiles at the corners, edges and middle of a plane it must
    give the plain per-pixel formula everywhere, poorly observed pixels and the sums included."""
    rng = np.random.default_rng(9)
    shape = (9, 13)
    y = (rng.random(shape) + 0.1).astype(np.float32)
    x = (rng.random(shape) + 0.1).astype(np.float32)
    tv_weights = gradient_weights(y[None], 0.05, np.empty(shape, np.float32))
    normalisation = rng.choice([0.0, 0.3, 1.0], shape).astype(np.float32)  # unobserved, rim, frame
    prior = rng.random(shape).astype(np.float32)
    correction = rng.random(shape).astype(np.float32)
    previous = rng.normal(size=shape).astype(np.float32)
    lam, offset, floor = 0.3, 0.01, 1e-4
    expected = y.astype(np.float64).copy()
    for i, j in itertools.product(range(shape[0]), range(shape[1])):
        total, neighbours = split_gradient_at(y, tv_weights, i, j)
        weight = lam * prior[i, j]
        denominator = normalisation[i, j] + weight * total * (y[i, j] + offset)
        if denominator > UNOBSERVED:
            gain = (correction[i, j] + weight * (neighbours + offset * total)) / denominator
            expected[i, j] = max((y[i, j] + offset) * gain - offset, floor)
    g = expected - y
    counted = normalisation > WELL_OBSERVED
    sums = [(g * previous)[counted].sum(), (previous**2)[counted].sum()]
    sums += [((expected - x) ** 2)[counted].sum(), (x.astype(np.float64) ** 2)[counted].sum()]
    x_new, step, found = np.zeros(shape, np.float32), previous.copy(), np.zeros(4)
    for top, left, rows, cols in [(0, 0, 4, 1), (0, 1, 4, 11), (0, 12, 4, 1), (4, 0, 5, 13)]:
        tile = correction[top : top + rows, left : left + cols]
        found += _rl_tv_step(y, tv_weights, normalisation, prior, lam, offset, floor, x, x_new,
                             step, top, left, tile)  # fmt: skip
    np.testing.assert_allclose(x_new, expected, rtol=1e-6)
    np.testing.assert_allclose(step, g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found, sums, rtol=1e-5)


def test_tv_divergence_is_minus_the_adjoint_of_the_gradient() -> None:
    rng = np.random.default_rng(2)
    u, p = rng.random((1, 20, 30)), rng.random((20, 30))
    # With norm = 1 the divergence is linear in u: <div u, p> = <u, div p> (it is self-adjoint).
    ones = np.ones((20, 30))
    div_u = tv_divergence(u[0], ones, np.empty((20, 30)))
    div_p = tv_divergence(p, ones, np.empty((20, 30)))
    assert np.vdot(div_u, p) == pytest.approx(np.vdot(u[0], div_p), rel=1e-10)


@pytest.mark.parametrize("sigma", [0.005, 0.02])
def test_noise_estimate_is_within_20_percent(sigma: float) -> None:
    rng = np.random.default_rng(3)
    scene = ndimage.gaussian_filter(dead_leaves((400, 500), rng), (1.0, 1.0, 0))
    noisy = scene + rng.normal(0, sigma, scene.shape).astype(np.float32)
    assert estimate_noise(noisy) == pytest.approx(sigma, rel=0.2)


@pytest.mark.parametrize("shape", [(1, 7), (2, 2), (3, 3), (57, 83), (400, 301, 3)])
def test_noise_response_and_usable_pixels_are_scipys_bit_for_bit(shape: tuple[int, ...]) -> None:
    """The compiled 3 x 3 operators give what scipy's `correlate` (mirrored border) and binary
    erosion (nothing usable beyond the border) give, bit for bit, on planes alone and on the
    channels of a colour picture (strided views)."""
    rng = np.random.default_rng(11)
    picture = rng.random(shape, dtype=np.float32)
    usable = rng.random(shape[:2]) > 0.1
    expected_usable = ndimage.binary_erosion(usable, np.ones((3, 3), bool), border_value=0)
    assert np.array_equal(wholly_usable(usable), expected_usable)
    for plane in np.moveaxis(picture, 2, 0) if picture.ndim == 3 else [picture]:
        expected = ndimage.correlate(plane, IMMERKAER, mode="reflect")
        assert np.array_equal(noise_response(plane), expected)


def test_noise_estimate_ignores_masked_pixels_and_tiny_images() -> None:
    rng = np.random.default_rng(4)
    noisy = rng.normal(0.5, 0.01, (100, 100, 1)).astype(np.float32)
    noisy[:70] = 1.0  # a clipped plateau over most of the frame
    mask = data_mask(noisy, 1.0)
    assert estimate_noise(noisy) < 0.005  # the plateau fools the unmasked estimate
    assert estimate_noise(noisy, mask) == pytest.approx(0.01, rel=0.2)
    assert estimate_noise(np.zeros((2, 5, 3))) == 0.0


def test_lambda_falls_monotonically_with_priority() -> None:
    model = NoiseModel(gain=1e-3, read_variance=1e-4, sigma=0.01)
    weights = [regularisation_weight(model, 0.8, 0.2, p) for p in np.linspace(-1, 1, 9)]
    assert all(a > b for a, b in itertools.pairwise(weights))
    assert regularisation_weight(NoiseModel(2e-3, 1e-4, 0.01), 0.8, 0.2) > regularisation_weight(
        model, 0.8, 0.2
    )
    # Exposure-invariant: scaling the picture by t scales the gain by t, the variance by t^2.
    scaled = NoiseModel(gain=5e-3, read_variance=25e-4, sigma=0.05)
    assert regularisation_weight(model, 0.8, 0.2) == pytest.approx(
        regularisation_weight(scaled, 4.0, 1.0)
    )


def test_lambda_follows_the_mean_level_when_highlights_set_the_white() -> None:
    """A dark scene with a few lamps: the lamps raise the white level, not the prior's scale;
    the weight follows the mean level there, and the white level on an ordinary picture."""
    model = NoiseModel(gain=1e-4, read_variance=1e-6, sigma=0.002)
    street = regularisation_weight(model, 0.4, 0.15)
    assert regularisation_weight(model, 0.4, 0.3) == street  # ordinary: the white level
    assert regularisation_weight(model, 0.3, 0.15) == pytest.approx(street * (4 / 3) ** 0.75)
    night = regularisation_weight(model, 0.4, 0.15 / 16)
    assert night == pytest.approx(street * (0.4 / (3.85 * 0.15 / 16)) ** 0.75)
    assert regularisation_weight(model, 0.4, 0.0) == 0.0


@pytest.mark.parametrize(("gain", "read_variance"), [(5e-4, 1e-4), (2e-3, 0.0), (0.0, 4e-4)])
def test_noise_model_is_fitted_from_the_picture(gain: float, read_variance: float) -> None:
    """Shot noise (Poisson) plus read noise (Gaussian) on a shaded scene: both parameters are
    recovered, and pure shot or pure read noise is recognised as such."""
    rng = np.random.default_rng(8)
    scene = ndimage.gaussian_filter(dead_leaves((400, 500), rng), (1.0, 1.0, 0))
    shot = rng.poisson(scene / gain) * gain if gain else scene
    noisy = (shot + rng.normal(0, np.sqrt(read_variance), scene.shape)).astype(np.float32)
    model = estimate_noise_model(noisy)
    assert model.gain == pytest.approx(gain, rel=0.15, abs=5e-5)
    assert model.read_variance == pytest.approx(read_variance, rel=0.15, abs=2e-5)
    assert model.offset(1.0) == pytest.approx(min(read_variance / gain, 1.0) if gain else 1.0,
                                              rel=0.3, abs=0.02)  # fmt: skip


def test_noise_cut_off_at_black_does_not_bend_the_fitted_line() -> None:
    """A third of the scene in deep shadow, its noise clipped at 0 as an integer export clips
    it: the read variance and the gain are still found (fitted through the clipped bins, the
    read variance came out at a quarter and the gain 1.7 times too large)."""
    rng = np.random.default_rng(12)
    gain, read_variance = 0.01**2 / 0.18, 0.01**2
    scene = ndimage.gaussian_filter(dead_leaves((400, 500), rng), (1.0, 1.0, 0))
    scene[:, :170] *= 0.02  # shadows, mostly under 1 % of white
    noisy = rng.poisson(scene / gain) * gain + rng.normal(0, np.sqrt(read_variance), scene.shape)
    model = estimate_noise_model(np.clip(noisy, 0, 1).astype(np.float32))
    assert model.gain == pytest.approx(gain, rel=0.15)
    assert model.read_variance == pytest.approx(read_variance, rel=0.15)


def test_noise_model_of_a_flat_or_tiny_picture_is_gaussian() -> None:
    flat = np.random.default_rng(9).normal(0.3, 0.01, (60, 60, 1)).astype(np.float32)
    model = estimate_noise_model(flat)
    assert model.gain == 0.0 and model.read_variance == pytest.approx(1e-4, rel=0.2)
    assert model.sigma == estimate_noise(flat)
    assert estimate_noise_model(np.zeros((2, 5, 3))) == NoiseModel(0.0, 0.0, 0.0)
    assert regularisation_weight(NoiseModel(0.0, 0.0, 0.0), 1.0, 0.5) == 0.0


def test_clip_level_is_detected_only_on_a_plateau() -> None:
    rng = np.random.default_rng(5)
    image = rng.random((100, 100, 3)).astype(np.float32) * 0.9
    assert detect_clip_level(image) is None
    image[10:20, 10:20, 1] = 0.95
    assert detect_clip_level(image) == pytest.approx(0.95)
    image[50, 50] = 0.949  # just under the clip level: measured, so it counts
    mask = data_mask(image, 0.95)
    assert mask[15, 15] == 0 and mask[50, 50] == 1


def test_downsize_averages_areas() -> None:
    image = np.arange(36, dtype=np.float32).reshape(6, 6, 1)
    small = shrink_area(image, 0.5)
    assert small.shape == (3, 3, 1)
    assert small[0, 0, 0] == pytest.approx(image[:2, :2].mean())
    odd = shrink_area(image, 0.4)  # 6 -> 2: cells of 3 pixels
    assert odd.shape == (2, 2, 1) and odd.mean() == pytest.approx(image.mean(), rel=1e-6)


@pytest.mark.parametrize(
    ("shape", "scale", "dtype"),
    [
        ((37, 53, 3), 0.5, np.float32),
        ((40, 61, 1), 0.37, np.float32),
        ((9, 14, 3), 0.6, np.float64),
    ],
)
def test_downsize_gives_the_sparse_products_figures_bit_for_bit(
    shape: tuple[int, int, int], scale: float, dtype: type
) -> None:
    """The compiled shrink sums as scipy's product of the weights' sparse matrices did (the
    engine's results did not move when it replaced them), in the picture's precision."""
    image = np.random.default_rng(3).random(shape).astype(dtype)
    height, width, channels = shape
    rows = _area_weights(height, round(height * scale))
    cols = _area_weights(width, round(width * scale))
    planes = [(cols @ (rows @ image[..., c]).T).T for c in range(channels)]
    expected = np.stack(planes, axis=2).astype(np.float32)
    assert np.array_equal(shrink_area(image, scale), expected)
    mirrored = image[:, ::-1]  # a view: not contiguous
    assert np.array_equal(shrink_area(mirrored, scale), shrink_area(mirrored.copy(), scale))


def test_noise_of_a_large_picture_is_measured_on_bands_of_rows() -> None:
    rng = np.random.default_rng(7)
    shading = np.linspace(0.1, 0.9, 2500, dtype=np.float32)[None, :, None]
    noisy = shading + rng.normal(0, 0.01, (4000, 2500, 1)).astype(np.float32)  # 10 Mpx
    noisy[:2000] = np.minimum(noisy[:2000], 0.5)  # clipped in the top half: masked out below
    assert estimate_noise(noisy, data_mask(noisy, 0.5)) == pytest.approx(0.01, rel=0.1)


def test_stopping_rule_reasons() -> None:
    rule = StoppingRule(tolerance=10, max_iterations=20, min_iterations=3)
    # W falls from 1.0 to 0.1, then rises: allowed rise is 10 % of 0.9.
    assert [rule.update(i, w, 0.1) for i, w in enumerate([1.0, 0.5, 0.1, 0.15], 1)] == [
        None, None, None, None,
    ]  # fmt: skip
    assert rule.update(5, 0.2, 0.1) == "whiteness"
    still = StoppingRule(tolerance=10, max_iterations=20, min_iterations=3)
    assert [still.update(i, 0.5, 1e-4) for i in (1, 2, 3)] == [None, None, "stagnation"]
    started_white = StoppingRule(tolerance=10, max_iterations=20, min_iterations=1, reference=1.0)
    # A good start is nearly white: a small rise is allowed against what the blur left (1.0).
    assert [started_white.update(i, w, 0.1) for i, w in enumerate([0.1, 0.15, 0.19], 1)] == [
        None, None, None,
    ]  # fmt: skip
    assert started_white.update(4, 0.25, 0.1) == "whiteness"
    capped = StoppingRule(tolerance=10, max_iterations=2)
    assert [capped.update(i, 0.5, 0.1) for i in (1, 2)] == [None, "cap"]
