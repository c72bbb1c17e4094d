"""Reading and writing real TIFF files: formats, linear light, ICC, EXIF, alpha, atomicity."""

from pathlib import Path

import numpy as np
import pyexiv2
import pytest
import tifffile

from tests.tiffs import CAMERA_EXIF, darktable_like_tiff, random_samples, write_tiff
from worker.errors import InputError
from worker.files import icc
from worker.files.imageio import read_picture, write_picture

FORMATS = (np.uint8, np.uint16, np.float16, np.float32)
LAYOUTS = {"gray": (), "RGB": (3,), "RGBA": (4,)}


def _profile_for(layout: str) -> bytes:
    if layout == "gray":
        return icc.matrix_profile(icc.ToneCurve.gamma(2.2), "gray 2.2", grayscale=True)
    return icc.matrix_profile()  # sRGB


def _exif_read_back(path: Path) -> dict[str, str]:
    with pyexiv2.Image(str(path)) as image:
        return image.read_exif()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FORMATS, ids=lambda t: np.dtype(t).name)
def test_round_trip_keeps_samples_icc_and_exif(tmp_path: Path, dtype: type, layout: str) -> None:
    rng = np.random.default_rng(1)
    samples = random_samples((24, 32, *LAYOUTS[layout]), dtype, rng)
    source, result = tmp_path / "in.tif", tmp_path / "out.tif"
    profile = _profile_for(layout)
    write_tiff(source, samples, profile, CAMERA_EXIF)

    picture = read_picture(source)
    assert picture.pixels.dtype == np.float32
    assert picture.pixels.shape == (24, 32, 3 if layout != "gray" else 1)
    write_picture(result, picture, picture.pixels)

    with tifffile.TiffFile(result) as tiff:
        page = tiff.pages.first
        written = page.asarray()
        assert page.tags.valueof("InterColorProfile") == profile
        exif = page.tags.valueof("ExifTag")
        assert page.tags.valueof("Make") == "Canon"
        assert page.tags.valueof("Model") == "Canon EOS 5D Mark IV"
    assert written.dtype == samples.dtype
    assert written.shape == samples.shape
    if samples.dtype.kind == "u":
        np.testing.assert_array_equal(written, samples)
    else:
        np.testing.assert_allclose(written, samples, rtol=1e-6 if dtype == np.float32 else 1e-3)
    assert exif["LensModel"] == "EF24-70mm f/2.8L II USM"
    assert exif["ExposureTime"] == (1, 60)
    assert exif["DateTimeOriginal"] == "2024:05:06 07:08:09"
    assert _exif_read_back(result)["Exif.Photo.FNumber"] == "28/10"


def test_pixels_are_linear_light(tmp_path: Path) -> None:
    """sRGB-encoded integers without a profile, a gamma profile, and float with no profile."""
    code = np.array([[0, 64, 128], [188, 230, 255]], dtype=np.uint8)
    write_tiff(tmp_path / "srgb.tif", code)
    write_tiff(
        tmp_path / "gamma.tif", code, icc.matrix_profile(icc.ToneCurve.gamma(1.8), grayscale=True)
    )
    write_tiff(tmp_path / "float.tif", code.astype(np.float32) / 255)
    x = code / 255.0
    srgb = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    gamma = x**1.8
    for name, expected in (("srgb", srgb), ("gamma", gamma), ("float", x)):
        picture = read_picture(tmp_path / f"{name}.tif")
        np.testing.assert_allclose(picture.pixels[..., 0], expected, atol=1e-4, err_msg=name)
    assert read_picture(tmp_path / "srgb.tif").clip_level == pytest.approx(1.0)
    assert read_picture(tmp_path / "float.tif").clip_level is None


def test_darktable_float_export_is_read_and_written_alike(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    samples = rng.random((40, 56, 3)).astype(np.float32) * 1.5  # highlights above 1 survive
    folder = tmp_path / "Été à Paris"  # exiv2 and tifffile must agree on non-ASCII paths
    folder.mkdir()
    source, result = folder / "export.tif", folder / "sortie.tif"
    darktable_like_tiff(source, samples)
    picture = read_picture(source)
    np.testing.assert_array_equal(picture.pixels, samples)  # linear profile: identical values
    write_picture(result, picture, picture.pixels * 0.5)
    with tifffile.TiffFile(result) as tiff:
        page = tiff.pages.first
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.predictor == tifffile.PREDICTOR.FLOATINGPOINT
        assert not page.is_tiled
        np.testing.assert_array_equal(page.asarray(), samples * 0.5)
        assert page.tags.valueof("ExifTag")["LensModel"] == CAMERA_EXIF["Exif.Photo.LensModel"]


def test_alpha_is_passed_through_and_resized_for_previews(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    samples = random_samples((30, 40, 4), np.uint16, rng)
    write_tiff(tmp_path / "rgba.tif", samples, icc.matrix_profile())
    picture = read_picture(tmp_path / "rgba.tif")
    np.testing.assert_array_equal(picture.alpha, samples[..., 3])
    brighter = picture.pixels * 0.7
    write_picture(tmp_path / "out.tif", picture, brighter)
    written = tifffile.imread(tmp_path / "out.tif")
    np.testing.assert_array_equal(written[..., 3], samples[..., 3])
    assert not np.array_equal(written[..., :3], samples[..., :3])

    write_picture(tmp_path / "preview.tif", picture, picture.pixels[::2, ::2])
    preview = tifffile.imread(tmp_path / "preview.tif")
    assert preview.shape == (15, 20, 4)
    assert preview.dtype == np.uint16


def test_tifffiles_record_of_the_shape_is_not_carried_to_a_preview(tmp_path: Path) -> None:
    # tifffile writes the array's shape as the ImageDescription ({"shape": [30, 40, 3]}); a
    # preview carrying it would be read with a warning. A caption is the picture's: kept.
    samples = random_samples((30, 40, 3), np.uint16, np.random.default_rng(5))
    tifffile.imwrite(tmp_path / "shaped.tif", samples, photometric="rgb")
    write_tiff(tmp_path / "caption.tif", samples, exif={"Exif.Image.ImageDescription": "{dune}"})
    for name, kept in (("shaped", None), ("caption", "{dune}")):
        picture = read_picture(tmp_path / f"{name}.tif")
        write_picture(tmp_path / "preview.tif", picture, picture.pixels[::2, ::2])
        assert _exif_read_back(tmp_path / "preview.tif").get("Exif.Image.ImageDescription") == kept
        assert tifffile.TiffFile(tmp_path / "preview.tif").series[0].shape == (15, 20, 3)


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ({"resolution": (300, 300), "resolutionunit": "INCH"}, ((300, 1), (300, 1), 2)),
        (
            {"resolution": ((11811, 100), (1181, 5)), "resolutionunit": 3},
            ((11811, 100), (1181, 5), 3),
        ),
        ({}, ((1, 1), (1, 1), 1)),  # none given: tifffile's own default, as before
    ],
)
def test_the_print_resolution_is_kept(tmp_path: Path, written: dict, kept: tuple) -> None:
    # The dpi a photographer exported with (darktable's export setting) comes back as it was.
    samples = random_samples((12, 16, 3), np.uint16, np.random.default_rng(6))
    write_tiff(tmp_path / "in.tif", samples, **written)
    picture = read_picture(tmp_path / "in.tif")
    write_picture(tmp_path / "out.tif", picture, picture.pixels)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        tags = tiff.pages.first.tags
        found = (tags.valueof("XResolution"), tags.valueof("YResolution"))
        assert (*found, int(tags.valueof("ResolutionUnit"))) == kept


def test_planar_rgb_is_read(tmp_path: Path) -> None:
    samples = random_samples((3, 20, 30), np.uint8, np.random.default_rng(4))
    tifffile.imwrite(tmp_path / "planar.tif", samples, photometric="rgb", planarconfig="separate")
    picture = read_picture(tmp_path / "planar.tif")
    write_picture(tmp_path / "out.tif", picture, picture.pixels)
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "out.tif"), np.moveaxis(samples, 0, -1)
    )


def test_integers_are_clipped_and_rounded(tmp_path: Path) -> None:
    write_tiff(tmp_path / "in.tif", np.full((4, 4), 100, np.uint8))
    picture = read_picture(tmp_path / "in.tif")
    pixels = np.linspace(-0.5, 1.5, 16, dtype=np.float32).reshape(4, 4, 1)
    write_picture(tmp_path / "out.tif", picture, pixels)
    written = tifffile.imread(tmp_path / "out.tif")
    assert written.min() == 0 and written.max() == 255
    assert written[0, 0] == 0 and written[-1, -1] == 255


@pytest.mark.parametrize(
    ("samples", "options", "message"),
    [
        (
            np.zeros((8, 8, 2), np.uint8),
            {"photometric": "minisblack", "planarconfig": "contig"},
            "2 grayscale samples per pixel",
        ),
        (  # 3 samples stored as grayscale: until engine 0.3.19 "3 ... supported are ... RGB (3)"
            np.zeros((8, 8, 3), np.uint8),
            {"photometric": "minisblack", "planarconfig": "contig"},
            "3 grayscale samples per pixel; supported are grayscale with 1",
        ),
        (np.zeros((8, 8, 4), np.uint8), {"photometric": "separated"}, "CMYK"),
        (np.zeros((8, 8), np.int16), {}, "16-bit INT samples"),
        (np.zeros((8, 8), np.float64), {}, "64-bit IEEEFP samples"),
        (np.zeros((3, 8, 8), np.uint8), {"photometric": "minisblack"}, "3 pictures"),
    ],
)
def test_unsupported_layouts_are_refused(
    tmp_path: Path, samples: np.ndarray, options: dict, message: str
) -> None:
    tifffile.imwrite(tmp_path / "odd.tif", samples, metadata=None, **options)
    with pytest.raises(InputError, match=message):
        read_picture(tmp_path / "odd.tif")


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    write_tiff(tmp_path / "in.tif", np.zeros((8, 8, 3), np.uint8), exif=CAMERA_EXIF)
    picture = read_picture(tmp_path / "in.tif")
    picture.exif["Exif.Photo.NotAnExifTag"] = "1"  # exiv2 refuses it while the file is written
    with pytest.raises(OSError, match="could not write the EXIF data"):
        write_picture(tmp_path / "out.tif", picture, picture.pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_bigtiff_is_read_without_exif(tmp_path: Path) -> None:
    samples = random_samples((8, 8, 3), np.uint8, np.random.default_rng(5))
    write_tiff(tmp_path / "big.tif", samples, bigtiff=True)
    picture = read_picture(tmp_path / "big.tif")
    assert picture.exif == {}
    write_picture(tmp_path / "out.tif", picture, picture.pixels)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), samples)


@pytest.mark.parametrize("patch", ["value 99", "no tag"])
def test_an_alpha_whose_kind_is_missing_or_undefined_is_kept_as_unspecified(
    tmp_path: Path, patch: str
) -> None:
    """A fourth sample with a missing or undefined ExtraSamples tag was an internal error (on
    reading, or on writing after the work, until engine 0.3.9): now an unspecified alpha."""
    path = tmp_path / "rgba.tif"
    rgba = random_samples((24, 32, 4), np.uint8, np.random.default_rng(1))
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=[2])
    with tifffile.TiffFile(path) as tiff:
        tag = tiff.pages.first.tags["ExtraSamples"]
        where, code, value = (tag.valueoffset, "<H", 99) if patch == "value 99" else (
            tag.offset, "<H", 65000)  # fmt: skip
    with path.open("r+b") as handle:  # the tag's value, or its code (then an unknown tag)
        handle.seek(where)
        handle.write(np.array([value], code).tobytes())
    picture = read_picture(path)
    assert picture.alpha_kind == 0 and np.array_equal(picture.alpha, rgba[..., 3])
    write_picture(tmp_path / "out.tif", picture, picture.pixels)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        assert tiff.pages.first.extrasamples == (0,)
        assert np.array_equal(tiff.asarray()[..., 3], rgba[..., 3])


@pytest.mark.parametrize(
    "curve", [icc.ToneCurve.gamma(0.0), icc.ToneCurve(3, (2.4, 1.0, 0.0, -1.0, 0.5))]
)
def test_a_tone_curve_that_cannot_be_inverted_is_refused_when_read(tmp_path: Path, curve) -> None:
    """A gamma of 0, or a curve that runs downwards, failed when the result was written after
    all the work, or darkened it (until engine 0.3.9); now refused at once, naming the file."""
    path = tmp_path / "odd curve.tif"
    write_tiff(path, random_samples((16, 16, 3), np.uint16, np.random.default_rng(2)),
               icc.matrix_profile(curve))  # fmt: skip
    with pytest.raises(InputError, match=r"odd curve\.tif: .*cannot be inverted"):
        read_picture(path)


RAW_EXPORT_EXIF = {  # what darktable's export of a raw carries, besides the camera's
    "Exif.Image.DNGVersion": "1 4 0 0",
    "Exif.Image.BlackLevel": "256",
    "Exif.Image.WhiteLevel": "4095",
    "Exif.Image.AsShotNeutral": "1/2 1/1 2/3",
    "Exif.Image.LensInfo": "24/1 70/1 28/10 28/10",
    "Exif.Image.DocumentName": "/tmp/dt-deconvolve-1-AbCd1234/export-1-1.tif",
    "Exif.Image.Copyright": "",
}


def test_a_raws_export_gives_the_result_its_camera_not_its_raw_data(tmp_path: Path) -> None:
    """DNG's tags of the raw data (levels, white balance as shot, version), the name of the
    temporary export and empty tags stay behind; the camera and lens go with the result. Until
    engine 0.3.23 they were copied, the empty ones with no value (darktable: "Null count for
    BlackLevel") and the export's temporary path as the result's document name."""
    samples = random_samples((8, 8, 3), np.uint16, np.random.default_rng(6))
    write_tiff(tmp_path / "in.tif", samples, exif={**CAMERA_EXIF, **RAW_EXPORT_EXIF})
    picture = read_picture(tmp_path / "in.tif")
    write_picture(tmp_path / "out.tif", picture, picture.pixels)
    written = _exif_read_back(tmp_path / "out.tif")
    assert written["Exif.Image.Make"] == "Canon" and "Exif.Image.LensInfo" in written
    for name in ("DNGVersion", "BlackLevel", "WhiteLevel", "AsShotNeutral", "DocumentName"):
        assert f"Exif.Image.{name}" not in written, name
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        empty = [tag.name for tag in tiff.pages[0].tags.values() if tag.count == 0]
    assert empty == []
