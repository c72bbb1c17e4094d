"""The deconvolution engine: pure numerics on arrays (no files, sockets or cache).

Arrays are float32, linear light, shaped (H, W, C) with C = 1 or 3. A PSF is a 2-D array in
convolution convention (`blurred = psf * sharp`), odd-sized, non-negative, summing to one.

The names below load on first use (PEP 562), as in scikit-image: importing
`worker.deconv.settings` for the command line's options does not load numba or FFTW.
"""

import importlib
from typing import Any

_WHERE = {
    "deblur": "worker.deconv.rl_tv",
    "DeblurSettings": "worker.deconv.settings",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return __all__
