"""A kernel's picture (`worker.files.kernels.save_kernel_picture`)."""

from pathlib import Path

import numpy as np
from PIL import Image

from worker.files.kernels import PICTURE_TAPS, save_kernel_picture


def test_the_kernel_of_a_picture_left_as_it_is_is_drawn_as_a_dot(tmp_path: Path) -> None:
    """The 1 px kernel `run` keeps for a picture it leaves as it is was drawn as a white field,
    256 px a side (until engine 0.3.58), which reads as a huge blur: a helper found it beside
    the plug-in's results. It is a dot on black now, a tap of the field's `PICTURE_TAPS`."""
    save_kernel_picture(tmp_path / "delta.png", np.ones((1, 1), np.float32))
    pixels = np.asarray(Image.open(tmp_path / "delta.png").convert("L"))
    white = pixels > 128
    assert white.mean() == 1 / PICTURE_TAPS**2
    rows, cols = np.nonzero(white)
    assert rows.mean() == cols.mean() == (pixels.shape[0] - 1) / 2  # centred
    # A kernel wider than the field is drawn as it is: its taps fill the picture's side.
    line = np.zeros((15, 15), np.float32)
    line[7] = 1
    save_kernel_picture(tmp_path / "line.png", line)
    pixels = np.asarray(Image.open(tmp_path / "line.png").convert("L"))
    lit = pixels > 128
    assert lit.any(axis=0).all() and lit.any(axis=1).sum() == pixels.shape[0] // 15
