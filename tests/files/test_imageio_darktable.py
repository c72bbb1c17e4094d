"""darktable and dt-deconvolve read each other's TIFF files alike: pixels, colour, camera data."""

import shutil
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pyexiv2
import pytest

from tests.tiffs import CAMERA_EXIF, darktable_like_tiff, random_samples, write_tiff
from worker.files import icc
from worker.files.imageio import read_picture, write_picture

pytestmark = [
    pytest.mark.darktable,
    pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="needs darktable-cli"),
]


def darktable_export(source: Path, target: str, home: Path, *conf: str) -> None:
    """Export `source` (a file or folder) with darktable-cli to `target` (may use $(FILE_NAME))."""
    settings = [item for setting in conf for item in ("--conf", setting)]
    subprocess.run(
        ["darktable-cli", str(source), target, "--core", "--configdir", str(home / "config"),
         "--cachedir", str(home / "cache"), "--library", ":memory:", "--disable-opencl",
         *settings],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip


def test_darktable_renders_our_output_like_the_input(tmp_path: Path) -> None:
    folder, rendered = tmp_path / "tiff", tmp_path / "png"
    folder.mkdir()
    rng = np.random.default_rng(0)
    darktable_like_tiff(folder / "float_in.tif", rng.random((48, 64, 3)) * 1.2)
    gamma = icc.matrix_profile(icc.ToneCurve.gamma(1.8), "gamma 1.8")
    write_tiff(
        folder / "int_in.tif", random_samples((48, 64, 3), np.uint16, rng), gamma, CAMERA_EXIF
    )
    for name in ("float", "int"):
        picture = read_picture(folder / f"{name}_in.tif")
        write_picture(folder / f"{name}_out.tif", picture, picture.pixels)
    darktable_export(folder, f"{rendered}/$(FILE_NAME).png", tmp_path)
    for name in ("float", "int"):
        before, after = (
            imagecodecs.png_decode((rendered / f"{name}_{end}.png").read_bytes()).astype(int)
            for end in ("in", "out")
        )
        assert before.std() > 10  # a real picture came out
        assert np.abs(before - after).max() <= 1, name
        with pyexiv2.Image(str(rendered / f"{name}_out.png")) as image:
            exif = image.read_exif()
        assert exif["Exif.Photo.LensModel"] == CAMERA_EXIF["Exif.Photo.LensModel"]
        assert exif["Exif.Photo.ExposureTime"] == "1/60"


@pytest.mark.parametrize("bpp", [32, 16])
def test_we_read_darktable_exports_in_the_same_linear_light(tmp_path: Path, bpp: int) -> None:
    """darktable linearises a gamma-1.8 file, exports it in its own sRGB profile (a 4096-entry
    table curve; float32 with deflate and the floating-point predictor, or 16-bit integers): we
    must find the linear values we read from the original."""
    source = tmp_path / "gamma.tif"
    gamma = icc.matrix_profile(icc.ToneCurve.gamma(1.8), "gamma 1.8")
    write_tiff(source, random_samples((48, 64, 3), np.uint16, np.random.default_rng(1)), gamma)
    export = tmp_path / "export.tif"
    darktable_export(source, str(export), tmp_path, f"plugins/imageio/format/tiff/bpp={bpp}")
    ours, theirs = read_picture(source), read_picture(export)
    assert theirs.sample_format == (np.float32 if bpp == 32 else np.uint16)
    assert theirs.curves[0].kind == -1  # a table curve
    np.testing.assert_allclose(theirs.pixels, ours.pixels, atol=2e-3)
