"""Fixtures of the service tests: the pictures and kernel real jobs run on."""

from pathlib import Path

import pytest
from service_support import write_picture, write_psf


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("material")
    return {
        "small": write_picture(folder / "small.tif", (64, 80)),
        "medium": write_picture(folder / "medium.tif", (192, 256), seed=1),
        "psf": write_psf(folder / "psf.npy", 7),
        "folder": folder,
    }
