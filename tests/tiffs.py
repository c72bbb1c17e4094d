"""Making real TIFF files for the tests: samples, ICC profile, EXIF, darktable's compression."""

import os

import numpy as np
import pyexiv2
import tifffile

from worker.files import icc

CAMERA_EXIF = {
    "Exif.Image.Make": "Canon",
    "Exif.Image.Model": "Canon EOS 5D Mark IV",
    "Exif.Photo.LensModel": "EF24-70mm f/2.8L II USM",
    "Exif.Photo.ExposureTime": "1/60",
    "Exif.Photo.FNumber": "28/10",
    "Exif.Photo.ISOSpeedRatings": "800",
    "Exif.Photo.FocalLength": "50/1",
    "Exif.Photo.DateTimeOriginal": "2024:05:06 07:08:09",
}


def random_samples(
    shape: tuple[int, ...], dtype: np.dtype | type, rng: np.random.Generator
) -> np.ndarray:
    """Samples spanning the format's range (integers) or [0, 1.2] (floats: some highlights)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return (rng.random(shape) * 1.2).astype(dtype)


def write_tiff(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    profile: bytes | None = None,
    exif: dict[str, str] | None = None,
    **options: object,
) -> None:
    """Write `samples` (H, W), (H, W, 3) or (H, W, 4) as a TIFF with an ICC profile and EXIF.

    `options` go to tifffile (compression, predictor, ...).
    """
    rgb = samples.ndim == 3 and samples.shape[2] >= 3
    tifffile.imwrite(
        path,
        samples,
        photometric="rgb" if rgb else "minisblack",
        extrasamples=["unassalpha"] if rgb and samples.shape[2] == 4 else None,
        iccprofile=profile,
        metadata=None,
        **options,
    )
    if exif:
        with pyexiv2.Image(str(path)) as image:
            image.modify_exif(exif)


def darktable_like_tiff(path: str | os.PathLike[str], samples: np.ndarray) -> None:
    """A float32 RGB TIFF as darktable exports it: deflate with the floating-point predictor,
    an sRGB-primaries profile with a linear curve (darktable's "linear Rec709"-like), camera EXIF.
    """
    write_tiff(
        path,
        samples.astype(np.float32),
        profile=icc.matrix_profile(icc.LINEAR, "linear sRGB primaries"),
        exif=CAMERA_EXIF,
        compression="zlib",
        predictor=3,
        rowsperstrip=8,
    )
