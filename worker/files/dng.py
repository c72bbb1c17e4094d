"""Raw files for the tests and benchmarks: a linear picture as a Bayer-mosaic DNG darktable opens.

The sensor is an idealised one whose colour filters are the linear sRGB primaries: the camera's
RGB *is* linear sRGB, so the DNG's colour matrix is the XYZ (D65) to linear sRGB matrix of IEC
61966-2-1, the neutral is (1, 1, 1) and darktable's render of the file is the scene as it was
drawn, through darktable's real raw pipeline (raw preparation, demosaicing, white balance, input
profile, and whatever the default workflow adds: exposure and filmic in darktable 4.2).

The file is a plain uncompressed DNG 1.4 (Adobe, "Digital Negative Specification", version
1.4.0.0, 2012): one 16-bit CFA plane (photometric 32803) with an RGGB pattern, 12-bit values
between `BLACK` and `WHITE`, and the tags a raw decoder needs (CFA layout, black and white
levels, colour matrix, calibration illuminant, as-shot neutral).
"""

from __future__ import annotations

import os

import numpy as np
import tifffile

BLACK, WHITE = 256, 4095  # 12-bit sensor levels
RGGB = (0, 1, 1, 2)  # CFAPattern: colour of each site in a 2 x 2 tile (0 red, 1 green, 2 blue)

# XYZ (D65) -> linear sRGB (IEC 61966-2-1): DNG's ColorMatrix1 maps XYZ to camera RGB.
XYZ_TO_SRGB = (
    (3.2404542, -1.5371385, -0.4985314),
    (-0.9692660, 1.8760108, 0.0415560),
    (0.0556434, -0.2040259, 1.0572252),
)
_D65 = 21  # EXIF LightSource / DNG CalibrationIlluminant code
_RATIONAL_DENOMINATOR = 10000


def mosaic(linear: np.ndarray) -> np.ndarray:
    """The RGGB Bayer mosaic of a linear RGB picture: one colour per pixel.

    Red at even rows and columns, blue at odd rows and columns, green elsewhere.

    Parameters
    ----------
    linear : ndarray, shape (H, W, 3)
        The picture, linear RGB.

    Returns
    -------
    ndarray, shape (H, W)
        The mosaic, in the picture's dtype.

    Raises
    ------
    ValueError
        When `linear` is not an (H, W, 3) picture.
    """
    if linear.ndim != 3 or linear.shape[2] != 3:
        raise ValueError("mosaic needs an RGB picture (H, W, 3)")
    cfa = linear[..., 1].copy()
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0]
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2]
    return cfa


def _rationals(values: np.ndarray) -> list[int]:
    """Signed rationals as the flat numerator, denominator list tifffile writes."""
    return [
        part
        for value in np.ravel(values)
        for part in (round(float(value) * _RATIONAL_DENOMINATOR), _RATIONAL_DENOMINATOR)
    ]


def write_dng(path: str | os.PathLike[str], cfa: np.ndarray, model: str = "linear sRGB") -> None:
    """Write a mosaic `cfa` as a 12-bit DNG at `path`.

    Parameters
    ----------
    path : str or PathLike
        The file to write (written in place, not atomically).
    cfa : ndarray, shape (H, W)
        The RGGB mosaic, as `mosaic` makes it: at each site the fraction of the sensor's range,
        0 at `BLACK` and 1 at `WHITE`; clipped to [0, 1]. Both sides even (whole 2 x 2 CFA
        tiles).
    model : str, optional
        The camera's name in the file (its Model and UniqueCameraModel tags).

    Raises
    ------
    ValueError
        When `cfa` is not 2-D with even sides.
    """
    if cfa.ndim != 2 or cfa.shape[0] % 2 or cfa.shape[1] % 2:
        raise ValueError("a CFA plane is 2-D with even sides")
    raw = np.round(BLACK + np.clip(cfa, 0.0, 1.0) * (WHITE - BLACK)).astype(np.uint16)
    tags = [
        (254, "I", 1, 0, True),  # NewSubfileType: the main image
        (271, "s", 0, "dt-deconvolve", True),  # Make
        (272, "s", 0, model, True),  # Model
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, RGGB, True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"dt-deconvolve {model}", True),  # UniqueCameraModel
        (50714, "H", 1, BLACK, True),  # BlackLevel
        (50717, "H", 1, WHITE, True),  # WhiteLevel
        (50721, "2i", 9, _rationals(np.array(XYZ_TO_SRGB)), True),  # ColorMatrix1
        (50728, "2I", 3, _rationals(np.ones(3)), True),  # AsShotNeutral
        (50778, "H", 1, _D65, True),  # CalibrationIlluminant1
    ]
    tifffile.imwrite(path, raw, photometric=32803, extratags=tags, metadata=None)
