"""ICC tone curves: parsing curv/para tags, linearising and encoding exactly."""

import io
import struct

import numpy as np
import pytest

from worker.errors import InputError
from worker.files import icc

# Encoded values on a 16-bit grid, plus highlights above 1 as in scene-referred float files.
ENCODED = np.concatenate([np.linspace(0, 1, 65536), [1.5, 3.0, -0.25]]).astype(np.float32)

CURVES = {
    "sRGB": icc.SRGB,
    "linear": icc.LINEAR,
    "gamma 2.2": icc.ToneCurve.gamma(2.2),
    "para type 1": icc.ToneCurve(1, (2.2, 0.95, 0.05)),
    "para type 2": icc.ToneCurve(2, (2.0, 0.9, 0.1, 0.02)),
    "para type 4": icc.ToneCurve(4, (2.4, 0.947, 0.053, 0.0774, 0.04, 0.01, 0.01006)),
    "Rec. 709 table": icc.ToneCurve(
        -1,
        table=tuple(
            np.where(x < 0.081, x / 4.5, ((x + 0.099) / 1.099) ** (1 / 0.45))
            for x in np.linspace(0, 1, 1024)
        ),
    ),
}


@pytest.mark.parametrize("name", CURVES)
def test_encode_undoes_linearise(name: str) -> None:
    curve = CURVES[name]
    linear = curve.linearise(ENCODED)
    assert linear.dtype == np.float32
    assert np.all(np.diff(linear[:65536]) >= 0), "the curve must be monotone"
    assert np.abs(curve.encode(linear) - ENCODED).max() < 0.1 / 65535


@pytest.mark.parametrize("name", CURVES)
def test_curves_survive_a_profile_round_trip(name: str) -> None:
    curve = CURVES[name]
    for grayscale in (False, True):
        profile = icc.matrix_profile(curve, grayscale=grayscale)
        parsed = icc.tone_curves(profile, 1 if grayscale else 3)
        assert len(parsed) == (1 if grayscale else 3)
        # Parameters go through s15Fixed16 and tables through 16 bits: equal to that precision.
        np.testing.assert_allclose(
            parsed[0].linearise(ENCODED[:65536]), curve.linearise(ENCODED[:65536]), atol=2e-4
        )


def test_srgb_matches_the_standard_formula() -> None:
    x = np.linspace(0, 1, 1001)
    expected = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(icc.SRGB.linearise(x), expected, atol=1e-7)


def test_built_srgb_profile_agrees_with_littlecms() -> None:
    image_cms = pytest.importorskip("PIL.ImageCms")
    from PIL import Image

    ours = image_cms.ImageCmsProfile(io.BytesIO(icc.matrix_profile()))
    transform = image_cms.buildTransform(ours, image_cms.createProfile("sRGB"), "RGB", "RGB")
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    converted = np.asarray(image_cms.applyTransform(Image.fromarray(pixels), transform))
    assert np.abs(converted.astype(int) - pixels).max() <= 1


def _with_curve(tag: bytes) -> bytes:
    """An sRGB profile whose three TRC tags are replaced by `tag` (appended at the end)."""
    profile = bytearray(icc.matrix_profile())
    (count,) = struct.unpack_from(">I", profile, 128)
    offset = len(profile)
    for index in range(count):
        name = bytes(profile[132 + 12 * index : 136 + 12 * index])
        if name.endswith(b"TRC"):
            struct.pack_into(">II", profile, 136 + 12 * index, offset, len(tag))
    return bytes(profile) + tag


def test_curv_with_no_entries_is_linear_and_one_entry_is_a_gamma() -> None:
    assert icc.tone_curves(_with_curve(b"curv" + bytes(8)), 3)[0].is_identity
    gamma = icc.tone_curves(_with_curve(b"curv" + struct.pack(">IIH", 0, 1, 0x0233)), 3)[0]
    assert gamma.params == (0x0233 / 256,)  # u8Fixed8Number: 2.19921875


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (b"not a profile" * 20, "damaged"),
        (_with_curve(b"sf32" + bytes(8)), "not curv or para"),
        (_with_curve(b"para" + struct.pack(">IHH", 0, 7, 0) + bytes(4)), "unknown parametric"),
        (_with_curve(b"curv" + struct.pack(">II", 0, 50)), "cut off"),
        (_with_curve(b"curv" + bytes(4)), "damaged \\(curve cut off"),  # (0.3.22: "not curv")
        (_with_curve(b"para" + bytes(2)), "damaged \\(curve cut off"),
        (icc.matrix_profile(grayscale=True), "not RGB"),
    ],
)
def test_bad_profiles_raise_input_error(profile: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        icc.tone_curves(profile, 3)


def test_lookup_table_profile_is_refused_clearly() -> None:
    profile = bytearray(icc.matrix_profile())
    (count,) = struct.unpack_from(">I", profile, 128)
    for index in range(count):
        name = bytes(profile[132 + 12 * index : 136 + 12 * index])
        if name == b"rTRC":
            profile[132 + 12 * index : 136 + 12 * index] = b"A2B0"
    with pytest.raises(InputError, match="lookup-table profile"):
        icc.tone_curves(bytes(profile), 3)
