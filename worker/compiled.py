"""Compiled per-pixel kernels (numba), their machine code kept on disk where a folder allows.

numba keeps compiled code beside the module (`__pycache__`) or, where the installation cannot
be written (a system-wide install), in the user's cache folder (`~/.cache/numba`). Where neither
can be written (a read-only or missing home as well), `cache=True` makes the decorator itself
fail, at import, and with it every command that deblurs. The kernels are then compiled without
a cache: each process pays the compilation (seconds, once) instead of failing.
"""

from collections.abc import Callable
from typing import Any

import numba


def compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`numba.njit(cache=True, **options)`, or without the cache where none can be kept.

    Parameters
    ----------
    **options : Any
        numba's options, passed to `numba.njit` as they are (``parallel=True``,
        ``fastmath=True``, ``nogil=True``...).

    Returns
    -------
    callable
        A decorator: it compiles the function it is given with the cache, or without one where
        numba cannot keep one (numba raises `RuntimeError` then), and returns numba's dispatcher.
    """

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(**options)(function)

    return decorate
