"""DNG files for the tests and benchmarks: the mosaic, the tags, and darktable's reading of them."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from worker.files.dng import BLACK, RGGB, WHITE, mosaic, write_dng
from worker.files.icc import SRGB


def test_mosaic_keeps_one_colour_per_site_in_rggb_order() -> None:
    picture = np.zeros((4, 6, 3))
    picture[..., 0], picture[..., 1], picture[..., 2] = 1.0, 2.0, 3.0
    cfa = mosaic(picture)
    assert cfa.shape == (4, 6)
    assert (cfa[0::2, 0::2] == 1).all() and (cfa[1::2, 1::2] == 3).all()
    assert (cfa[0::2, 1::2] == 2).all() and (cfa[1::2, 0::2] == 2).all()
    with pytest.raises(ValueError, match="RGB"):
        mosaic(picture[..., 0])


def test_dng_holds_12_bit_levels_and_the_raw_tags(tmp_path: Path) -> None:
    cfa = np.array([[0.0, 0.5], [1.0, 1.7]])  # 1.7: clipped at the white level
    write_dng(tmp_path / "a.dng", cfa, model="unit test")
    with tifffile.TiffFile(tmp_path / "a.dng") as dng:
        page = dng.pages[0]
        tags = {tag.code: tag.value for tag in page.tags.values()}
        levels = page.asarray()
    assert levels.tolist() == [[BLACK, round(BLACK + 0.5 * (WHITE - BLACK))], [WHITE, WHITE]]
    assert tags[262] == 32803  # photometric: CFA
    assert tuple(tags[33422]) == RGGB and tuple(tags[33421]) == (2, 2)
    assert tags[50714] == BLACK and tags[50717] == WHITE
    assert tags[272] == "unit test"
    with pytest.raises(ValueError, match="even"):
        write_dng(tmp_path / "b.dng", np.zeros((3, 4)))


@pytest.mark.darktable
@pytest.mark.skipif(shutil.which("darktable-cli") is None, reason="needs darktable-cli")
def test_darktable_renders_the_dng_as_the_scene(tmp_path: Path) -> None:
    """Without a workflow's tone mapping, darktable's render of the DNG is the drawn scene."""
    rng = np.random.default_rng(3)
    patches = rng.uniform(0.05, 0.8, (3, 4, 3))
    scene = np.kron(patches, np.ones((16, 16, 1)))
    write_dng(tmp_path / "chart.dng", mosaic(scene))
    subprocess.run(
        ["darktable-cli", str(tmp_path / "chart.dng"), str(tmp_path / "chart.tif"), "--core",
         "--configdir", str(tmp_path / "config"), "--library", ":memory:", "--disable-opencl",
         "--conf", "plugins/darkroom/workflow=none",
         "--conf", "plugins/imageio/format/tiff/bpp=16"],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    rendered = tifffile.imread(tmp_path / "chart.tif")[8::16, 8::16, :3] / 65535.0
    assert np.abs(rendered - SRGB.encode(patches)).max() < 0.02
