"""What counts as a number in a message, a record or a setting: one test for every reader.

JSON and Python both make `true` an integer (`isinstance(True, int)`), and JSON's integers have
no bound (`1` followed by 400 zeros is an `int` that no float holds); neither is a number a
setting, a size or a date may be.
"""

import math
from typing import TypeGuard


def is_number(value: object) -> TypeGuard[int | float]:
    """An integer or a float, not a boolean.

    Parameters
    ----------
    value : object
        Anything, as read from a message, a record or a setting.

    Returns
    -------
    bool
        True for an `int` or a `float` (infinities and NaN included) that is not a `bool`.
    """
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """A number (`is_number`) that a float holds, neither infinite nor NaN.

    Parameters
    ----------
    value : object
        Anything, as read from a message, a record or a setting.

    Returns
    -------
    bool
        True for a number that is finite; False for an integer too large for a float.
    """
    try:
        return is_number(value) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def is_whole(value: object) -> TypeGuard[int]:
    """An integer, not a boolean.

    Parameters
    ----------
    value : object
        Anything, as read from a message, a record or a setting.

    Returns
    -------
    bool
        True for an `int` (of any size) that is not a `bool`; False for a float, even ``2.0``.
    """
    return isinstance(value, int) and not isinstance(value, bool)
