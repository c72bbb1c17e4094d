"""The working level: only a picture darker than a 16-bit file's step is brightened."""

import numpy as np
import pytest

from worker.deconv.level import DARK_LEVEL, WORKING_LEVEL, working_gain


@pytest.mark.parametrize("mean", [0.0, DARK_LEVEL, 0.18, 3.0, 1e5])
def test_a_picture_a_file_can_hold_is_worked_on_as_it_is(mean: float) -> None:
    assert working_gain(np.full((4, 4, 3), mean, np.float32)) == 1.0


@pytest.mark.parametrize("mean", [DARK_LEVEL / 2, 1e-9, 1e-30, 1e-44])
def test_a_darker_one_is_brought_near_the_working_level_by_a_power_of_two(mean: float) -> None:
    pixels = np.full((4, 4, 3), mean, np.float32)
    gain = working_gain(pixels)
    assert np.log2(gain) == int(np.log2(gain))
    assert WORKING_LEVEL / 2 < float(pixels.mean(dtype=np.float64)) * gain <= WORKING_LEVEL
