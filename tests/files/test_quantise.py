"""Integer samples by thresholds: the same samples as the curve's own encoding, every one."""

import numpy as np
import pytest

from tests.files.test_icc import CURVES
from worker.files import icc, quantise

# The tables with plain floats, as `icc` reads them (a cached curve must be hashable).
HASHABLE = {
    name: icc.ToneCurve(curve.kind, curve.params, tuple(float(v) for v in curve.table))
    for name, curve in CURVES.items()
}
RISING_FROM_ZERO = ["sRGB", "linear", "gamma 2.2", "Rec. 709 table"]


def _hard_values(curve: icc.ToneCurve, top: int) -> np.ndarray:
    """Values where a quantiser can slip: the thresholds and their float32 neighbours, the
    decoded samples, random values over [-0.1, 1.2] and log-spread dark ones, and odd ones."""
    tables = quantise.thresholds(curve, top)
    limits = tables[0] if tables else np.zeros(0, np.float32)
    rng = np.random.default_rng(3)
    return np.concatenate(
        [
            limits,
            np.nextafter(limits, np.float32(-1)),
            np.nextafter(limits, np.float32(2)),
            curve.linearise(np.arange(top + 1, dtype=np.float64) / top),
            rng.uniform(-0.1, 1.2, 200_000),
            10.0 ** rng.uniform(-9, 0, 200_000),
            [0.0, -0.0, 1.0, 1e-45, 3.0, np.inf, -np.inf, -1e-30],
        ]
    ).astype(np.float32)[None, :]


@pytest.mark.parametrize("top", [255, 65535])
@pytest.mark.parametrize("name", HASHABLE)
def test_the_samples_are_the_curves_own(name: str, top: int) -> None:
    curve = HASHABLE[name]
    values = _hard_values(curve, top)
    samples = np.empty(values.shape, np.uint8 if top == 255 else np.uint16)
    quantise.quantise(curve, values, samples)
    np.testing.assert_array_equal(samples, quantise.reference_samples(curve, values, top))


@pytest.mark.parametrize("name", HASHABLE)
def test_thresholds_serve_the_curves_that_rise_from_zero(name: str) -> None:
    assert (quantise.thresholds(HASHABLE[name], 65535) is not None) == (name in RISING_FROM_ZERO)


def test_each_threshold_is_the_first_number_of_its_sample() -> None:
    curve = HASHABLE["sRGB"]
    tables = quantise.thresholds(curve, 65535)
    assert tables is not None
    limits, wanted = tables[0][1:], np.arange(1, 65536)
    assert np.all(quantise.reference_samples(curve, limits, 65535) >= wanted)
    below = np.nextafter(limits, np.float32(-1))
    assert np.all(quantise.reference_samples(curve, below, 65535) < wanted)


def test_nan_and_strided_planes() -> None:
    curve = HASHABLE["sRGB"]
    picture = np.random.default_rng(4).uniform(-0.05, 1.05, (40, 30, 3)).astype(np.float32)
    picture[5, 7, 1] = np.nan
    samples = np.empty(picture.shape, np.uint16)
    for channel in range(3):
        quantise.quantise(curve, picture[:, :, channel], samples[:, :, channel])
    assert samples[5, 7, 1] == 0
    picture[5, 7, 1] = 0
    np.testing.assert_array_equal(samples, quantise.reference_samples(curve, picture, 65535))


def test_a_curve_that_reaches_white_above_1_is_encoded_directly() -> None:
    curve = icc.ToneCurve(-1, table=tuple(float(v) for v in np.linspace(0, 1.5, 256)))
    assert quantise.thresholds(curve, 65535) is None
    values = np.linspace(-0.1, 2.0, 10_001, dtype=np.float32)[None, :]
    samples = np.empty(values.shape, np.uint16)
    quantise.quantise(curve, values, samples)
    np.testing.assert_array_equal(samples, quantise.reference_samples(curve, values, 65535))
