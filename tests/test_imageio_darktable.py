"""darktable itself reads our output like the input: same rendering, same camera data."""

import shutil
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pyexiv2
import pytest

from tests.tiffs import CAMERA_EXIF, darktable_like_tiff, random_samples, write_tiff
from worker import icc
from worker.imageio import read_picture, write_picture

pytestmark = pytest.mark.darktable


def test_darktable_renders_output_like_input(tmp_path: Path) -> None:
    if shutil.which("darktable-cli") is None:
        pytest.skip("darktable-cli is not installed")
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
    subprocess.run(
        ["darktable-cli", str(folder), f"{rendered}/$(FILE_NAME).png", "--core",
         "--configdir", str(tmp_path / "config"), "--cachedir", str(tmp_path / "cache"),
         "--library", ":memory:", "--disable-opencl"],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
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
