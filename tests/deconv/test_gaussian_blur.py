"""The compiled Gaussian blur: scipy's figures bit for bit, on every shape and sigma it meets."""

import numpy as np
import pytest
from scipy import ndimage

from worker.deconv.gaussian_blur import gaussian_blur, gaussian_weights, reach


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.5, 4.0, 7.3])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (3, 40), (17, 9), (64, 65), (120, 301)])
def test_the_blur_is_scipys_bit_for_bit(shape: tuple[int, int], sigma: float, dtype: type) -> None:
    """Planes shorter than the kernel (mirrored more than once) included."""
    rng = np.random.default_rng(sum(shape))
    plane = (rng.random(shape) * 100).astype(dtype)
    expected = ndimage.gaussian_filter(plane, sigma, mode="reflect")
    blurred = gaussian_blur(plane, sigma)
    assert blurred.dtype == dtype and np.array_equal(blurred, expected)


def test_a_view_is_blurred_as_its_copy() -> None:
    plane = np.random.default_rng(1).random((40, 60)).astype(np.float32)
    view = plane[::2, ::-1]
    assert np.array_equal(gaussian_blur(view, 2.0), gaussian_blur(view.copy(), 2.0))
    assert np.array_equal(
        gaussian_blur(view, 2.0), ndimage.gaussian_filter(view, 2.0, mode="reflect")
    )


def test_the_weights_are_a_normalised_symmetric_gaussian() -> None:
    weights = gaussian_weights(1.5)
    assert reach(1.5) == 6 and weights.shape == (13,)
    assert weights.sum() == pytest.approx(1.0) and np.array_equal(weights, weights[::-1])
    assert weights[7] / weights[6] == pytest.approx(np.exp(-1 / (2 * 1.5**2)))


@pytest.mark.parametrize(
    ("plane", "sigma"),
    [
        (np.zeros((4, 4, 3), np.float32), 1.0),
        (np.zeros((4, 4), np.int32), 1.0),
        (np.zeros((4, 4)), 0.0),
    ],
)
def test_a_bad_plane_or_sigma_is_refused(plane: np.ndarray, sigma: float) -> None:
    with pytest.raises(ValueError, match="Gaussian blur"):
        gaussian_blur(plane, sigma)
