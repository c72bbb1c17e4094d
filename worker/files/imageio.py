"""Reading and writing pictures as TIFF files, in linear light, keeping what darktable needs.

`read_picture` turns a TIFF file (8 or 16-bit integer, 16 or 32-bit float samples; grayscale,
RGB or RGBA; any compression tifffile and imagecodecs decode, including darktable's deflate with the
floating-point predictor) into float32 linear light. The tone curves come from the embedded ICC
profile (`worker.files.icc`); without a profile, integer samples are taken as sRGB-encoded and float
samples as linear, which is how darktable itself reads such files. Alpha is set aside untouched.

`write_picture` writes deblurred pixels back the way the input was stored: the same sample
format, tone curves, ICC profile, alpha and EXIF (camera, lens, exposure, date), so darktable
shows the result like the original. Writing goes to a temporary name that is renamed at the end:
readers see the whole new file or none.

Output compression, measured with `benchmarks/io_write.py` on a 24 Mpx RGB float32 picture on the
busy two-core development machine: none 0.1 s / 288 MB; deflate level 1 with the predictor
2.9-3.7 s / 219 MB; deflate level 6 5.3-6.0 s / 210 MB; zstd level 1 0.7-1.6 s / 220 MB. Deflate
is what darktable writes and what every TIFF reader decodes (zstd is not), and level 1 keeps most
of level 6's gain at 60 % of its time. So: deflate level 1 with the horizontal (integer) or
floating-point predictor, in strips of 16 rows (the layout every reader handles; tiles of 256
were no faster), compressed on all cores.
"""

import itertools
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import imagecodecs
import numpy as np
import pyexiv2
import tifffile

from worker.atomic import atomic_file, descriptor_path
from worker.errors import InputError
from worker.files.icc import LINEAR, SRGB, ToneCurve, tone_curves
from worker.files.quantise import quantise
from worker.parallel import cpu_count, in_threads
from worker.paths import APP
from worker.regular import open_regular
from worker.resize import zoom_to

# tifffile reports oddities of files through logging; without a handler, Python would print
# them on stderr. The application (the worker's log) decides where they go.
logging.getLogger("tifffile").addHandler(logging.NullHandler())
# exiv2's warnings about odd metadata (an unknown tag type, a bad charset) go to stdout from its
# C++ side, where they would mix with `--json` and the report. Its errors still become
# RuntimeError (pyexiv2 checks its error log after each call), which the readers turn into one line.
pyexiv2.set_log_level(3)  # pyexiv2's levels: 2 warn, 3 error

SAMPLE_FORMATS = (
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.float16),
    np.dtype(np.float32),
)
MIN_SIZE = 2  # pixels in each direction
# The brightest linear value read from a float file, in times white: far above what a
# scene-referred export holds (a few thousand, the sun), far below where the engine's float32
# squares and sums overflow (values of 1e16 raised overflow warnings, 1e30 crashed it).
MAX_LEVEL = 1e6
ROWS_PER_STRIP = 16
ROW_BLOCK = 256  # rows converted at a time, to bound the float64 temporaries of the curves

# EXIF keys not copied: the image structure (the output has its own), pointers to other IFDs, the
# software (dt-deconvolve wrote the output), the ICC profile (tifffile writes it) and XMP
# (darktable would apply a develop history stored there a second time). An ImageDescription that
# is tifffile's own record of the array's shape is structure too (`_describes_layout`).
# fmt: off
_NOT_COPIED = frozenset((
    "NewSubfileType", "SubfileType", "ImageWidth", "ImageLength", "BitsPerSample", "Compression",
    "PhotometricInterpretation", "FillOrder", "StripOffsets", "SamplesPerPixel", "RowsPerStrip",
    "StripByteCounts", "PlanarConfiguration", "Predictor", "ColorMap", "TileWidth", "TileLength",
    "TileOffsets", "TileByteCounts", "SubIFDs", "ExtraSamples", "SampleFormat", "SMinSampleValue",
    "SMaxSampleValue", "JPEGTables", "JPEGProc", "JPEGInterchangeFormat",
    "JPEGInterchangeFormatLength", "YCbCrCoefficients", "YCbCrSubSampling", "YCbCrPositioning",
    "ReferenceBlackWhite", "XMLPacket", "InterColorProfile", "ExifTag", "GPSTag",
    "PixelXDimension", "PixelYDimension", "InteroperabilityTag", "MakerNote", "Software",
    "DocumentName",  # darktable's: the name of the export, a temporary file, not the result's
))
# fmt: on
# DNG's tags (Adobe's numbers, `tifffile.TIFF.TAGS`) describe the raw data (black and white
# levels, the white balance as shot, colour matrices, opcodes), not a developed picture: a
# darktable export of a raw carries some, and a result holding them would misinform a reader.
# These few name the camera and lens, and are kept.
_DNG_TAGS = (range(50706, 51200), range(52525, 52600))
_DNG_KEPT = ("UniqueCameraModel", "LocalizedCameraModel", "CameraSerialNumber", "LensInfo")
_RAW_TAGS = frozenset(
    name
    for code, name in tifffile.TIFF.TAGS.items()
    if any(code in numbers for numbers in _DNG_TAGS) and name not in _DNG_KEPT
)
_COLOUR_NAMES = {
    tifffile.PHOTOMETRIC.SEPARATED: "CMYK",
    tifffile.PHOTOMETRIC.PALETTE: "indexed (palette)",
    tifffile.PHOTOMETRIC.MINISWHITE: "inverted grayscale",
    tifffile.PHOTOMETRIC.CIELAB: "CIE Lab",
}
_EXIF_GROUPS = ("Image", "Photo", "GPSInfo", "Iop")
# pyexiv2 turns EXIF bytes into text and back with one encoding; latin-1 maps every byte to one
# character, so any value (UTF-8 or not) comes back byte for byte.
_EXIF_ENCODING = "latin-1"
Rational = tuple[int, int]  # a TIFF RATIONAL: numerator, denominator


@dataclass
class Picture:
    """A picture in linear light, with what is needed to write a result like the original.

    `pixels` is float32 (H, W, C), C = 1 (grayscale) or 3 (RGB), linear light; `alpha` holds the
    file's alpha samples untouched (H, W) in their own dtype, or None. `clip_level` is the linear
    value of the largest integer sample (1.0 for the usual curves), None for float files.
    """

    pixels: np.ndarray
    sample_format: np.dtype  # of the file: uint8, uint16, float16 or float32
    curves: tuple[ToneCurve, ...]  # one tone curve per colour channel
    alpha: np.ndarray | None = None
    clip_level: float | None = None
    icc_profile: bytes | None = None
    exif: dict[str, str] = field(default_factory=dict)
    alpha_kind: int = 2  # TIFF ExtraSamples: 1 premultiplied, 2 straight, 0 unspecified


def read_picture(path: str | os.PathLike[str]) -> Picture:
    """Read the TIFF file at `path` into linear light.

    Parameters
    ----------
    path : str or PathLike
        The file to read.

    Returns
    -------
    Picture
        The pixels in linear light, with what is needed to write a result like the original.

    Raises
    ------
    InputError
        One line, naming the file, for anything that is not a readable, supported picture: not a
        TIFF, truncated or damaged, no pixels or too small, several pages, an unsupported colour
        layout or sample format, NaN or infinite values or values beyond `MAX_LEVEL` in linear
        light, an unusable ICC profile, damaged EXIF metadata.
    OSError
        When the path is missing or cannot be read, or is not a regular file.
    """
    path = Path(path)
    with open_regular(path) as handle:  # once: every reader below uses this very file
        samples, alpha, alpha_kind, profile = _read_samples(path, handle)
        exif = _read_exif(path, handle)
    dtype = samples.dtype
    if dtype.kind == "f" and not np.all(np.isfinite(samples)):
        raise InputError(f"{path} holds NaN or infinite pixel values")
    channels = samples.shape[2]
    if profile is not None:
        try:
            curves = tone_curves(profile, channels)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None
    else:
        curves = ((SRGB if dtype.kind == "u" else LINEAR),) * channels
    if dtype.kind == "u":
        pixels = _integers_to_linear(samples, curves)
        clip_level = min(float(curve.linearise(np.ones(1))[0]) for curve in curves)
    else:
        pixels = _convert_rows(samples, curves, ToneCurve.linearise, np.float32)
        clip_level = None
        brightest = max(float(pixels.max()), -float(pixels.min()))  # (no |pixels| copy)
        if brightest > MAX_LEVEL:
            raise InputError(
                f"{path} holds pixel values of {brightest:.3g} times white, beyond the "
                f"{MAX_LEVEL:g} a picture's light can reach"
            )
    return Picture(
        pixels=pixels,
        alpha=alpha,
        clip_level=clip_level,
        sample_format=dtype,
        curves=curves,
        icc_profile=profile,
        exif=exif,
        alpha_kind=alpha_kind,
    )


def write_picture(
    path: str | os.PathLike[str], like: Picture, pixels: np.ndarray, replace: bool = True
) -> os.stat_result:
    """Write linear `pixels` to `path` as a TIFF file stored like the picture `like`.

    Same sample format (integers clipped and rounded), tone curves, ICC profile, EXIF and alpha.
    Atomic: on any error nothing is left at `path` or beside it.

    Parameters
    ----------
    path : str or PathLike
        The file to write; one already there is replaced.
    like : Picture
        The picture read (`read_picture`) whose storage the output copies.
    pixels : ndarray, shape (H, W, C)
        The linear pixels, with `like`'s channel count; they may be smaller than `like` (a
        preview), the alpha is then resized to match.
    replace : bool, optional
        Whether a file at `path` is replaced (`atomic_file`); when not, it is kept and
        `NameTaken` raised.

    Returns
    -------
    os.stat_result
        The file written, as it was when it took the name: a file at `path` that is not this
        one (`os.path.samestat`) was put there by someone else afterwards.

    Raises
    ------
    ValueError
        When `pixels` is not (H, W, C) with `like`'s C.
    OSError
        When the file cannot be written.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    channels = like.pixels.shape[2]
    if pixels.ndim != 3 or pixels.shape[2] != channels:
        raise ValueError(f"expected (H, W, {channels}) pixels, got {pixels.shape}")
    samples = _encode(pixels, like)
    extrasamples = None
    if like.alpha is not None:
        alpha = resize_alpha(like.alpha, pixels.shape[:2])
        samples = np.concatenate([samples, alpha[..., None]], axis=2)
        extrasamples = [like.alpha_kind]
    resolution, unit = _resolution(like.exif)
    with atomic_file(path, replace=replace) as temporary:
        tifffile.imwrite(
            temporary,
            samples if samples.shape[2] > 1 else samples[..., 0],
            photometric="rgb" if channels == 3 else "minisblack",
            extrasamples=extrasamples,
            iccprofile=like.icc_profile,
            compression="zlib",
            compressionargs={"level": 1},
            predictor=True,
            rowsperstrip=ROWS_PER_STRIP,
            maxworkers=cpu_count(),
            metadata=None,
            software=APP,
            resolution=resolution,
            resolutionunit=unit,
        )
        if like.exif:
            _write_exif(temporary, like.exif, path)
        temporary.flush()
        written = os.fstat(temporary.fileno())
    return written


def write_png(path: str | os.PathLike[str], pixels: np.ndarray, replace: bool = True) -> None:
    """Write linear `pixels` as an 8-bit sRGB PNG, atomically.

    For looking at results (demo pictures, PSF previews), not for further editing.

    Parameters
    ----------
    path : str or PathLike
        The file to write; one already there is replaced, unless `replace` is False.
    pixels : ndarray, shape (H, W) or (H, W, C)
        The linear pixels, C = 1 or 3; values outside [0, 1] are clipped after encoding.
    replace : bool, optional
        Whether a file at `path` is replaced (`atomic_file`; else `NameTaken`).

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    planes = pixels.reshape(*pixels.shape[:2], -1)  # (H, W, C), C = 1 for a grey picture
    encoded = np.empty(planes.shape, dtype=np.uint8)
    for channel in range(planes.shape[-1]):
        quantise(SRGB, planes[..., channel], encoded[..., channel])
    grey = planes.shape[-1] == 1
    with atomic_file(path, replace=replace) as temporary:
        temporary.write(imagecodecs.png_encode(encoded[..., 0] if grey else encoded))


# --- Reading ---------------------------------------------------------------------------------


def _read_samples(
    path: Path, handle: BinaryIO
) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """The colour samples (H, W, C), the alpha samples or None, the alpha kind, the ICC profile
    of the file open as `handle` (`path` names it in messages).

    tifffile and its codecs report damaged files with many exception types (TiffFileError,
    ValueError for short reads, codec errors, ...): at this boundary all of them except OSError
    and MemoryError mean "this file cannot be decoded" and become one `InputError`.
    """
    try:
        with tifffile.TiffFile(handle, name=path.name) as tiff:
            page = tiff.pages.first
            _check_layout(path, tiff, page)
            samples = _decoded(path, page)
            extrasamples = tuple(page.extrasamples)
            profile = page.tags.valueof("InterColorProfile")
            planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    except (OSError, MemoryError, InputError):
        raise
    except tifffile.TiffFileError as error:
        if "not a TIFF" in str(error):
            raise InputError(f"{path} is not a TIFF file") from error
        raise InputError(f"{path} is a damaged TIFF file ({error})") from error
    except Exception as error:
        raise InputError(f"{path} is truncated or damaged ({error})") from error
    if samples.ndim == 2:
        samples = samples[..., None]
    elif planar:
        samples = np.moveaxis(samples, 0, -1)
    alpha = None
    alpha_kind = 2
    if samples.shape[2] == 4:
        alpha, samples = samples[..., 3].copy(), samples[..., :3]
        # Unspecified (0) when the tag is missing or holds a value TIFF does not define.
        alpha_kind = int(extrasamples[0]) if extrasamples and extrasamples[0] in (0, 1, 2) else 0
    return samples, alpha, alpha_kind, bytes(profile) if profile else None


def _decoded(path: Path, page: tifffile.TiffPage) -> np.ndarray:
    """The samples of `page`; an `InputError` where their memory cannot be had. A smaller scale
    (what "not enough memory" advises) is no help there, since a preview reads the whole picture
    first; and a damaged compressed file may claim a size it does not hold (a header of 60000 x
    60000 pixels in 321 bytes), which only decoding can tell (`_check_uncompressed_size`)."""
    try:
        return page.asarray()
    except MemoryError:
        raise InputError(
            f"{path} is {page.imagewidth}x{page.imagelength} pixels: there is not enough memory "
            "to read it (or its header is damaged and claims more than the file holds)"
        ) from None


def _check_layout(path: Path, tiff: tifffile.TiffFile, page: tifffile.TiffPage) -> None:
    """Refuse what this program cannot deblur and write back faithfully."""
    pages = len(tiff.pages)
    if pages > 1:
        raise InputError(f"{path} holds {pages} pictures (pages); only one is supported")
    photometric = tifffile.PHOTOMETRIC(page.photometric)
    samples = page.samplesperpixel
    expected = {tifffile.PHOTOMETRIC.MINISBLACK: (1,), tifffile.PHOTOMETRIC.RGB: (3, 4)}
    if photometric not in expected:
        name = _COLOUR_NAMES.get(photometric, photometric.name)
        raise InputError(f"{path} stores {name} colour; export it as RGB or grayscale")
    if samples not in expected[photometric]:
        kind = "grayscale" if photometric == tifffile.PHOTOMETRIC.MINISBLACK else "RGB"
        raise InputError(
            f"{path} has {samples} {kind} samples per pixel; supported are grayscale with 1, "
            "RGB with 3, and RGB with alpha with 4"
        )
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype not in SAMPLE_FORMATS or page.bitspersample != dtype.itemsize * 8:
        raise InputError(
            f"{path} has {page.bitspersample}-bit {tifffile.SAMPLEFORMAT(page.sampleformat).name} "
            "samples; supported are 8 or 16-bit integers and 16 or 32-bit floats"
        )
    if page.imagewidth < MIN_SIZE or page.imagelength < MIN_SIZE:
        raise InputError(
            f"{path} is {page.imagewidth}x{page.imagelength} pixels: too small to deblur "
            f"(at least {MIN_SIZE}x{MIN_SIZE})"
        )
    if len(page.shape) > 3 or (samples == 1 and len(page.shape) != 2):
        raise InputError(f"{path} has an unsupported layout {page.shape} ({page.axes})")
    _check_uncompressed_size(path, page)


def _check_uncompressed_size(path: Path, page: tifffile.TiffPage) -> None:
    """Refuse an uncompressed picture whose strips or tiles hold fewer bytes than its size
    needs: a damaged header (100000 x 100000 pixels declared in a file of 656 bytes) would
    otherwise be refused only when the memory for its pixels cannot be had, as "not enough
    memory", which no smaller scale mends. Compressed data cannot be sized before decoding."""
    if page.compression != tifffile.COMPRESSION.NONE:
        return
    needed = math.prod(page.shape) * page.bitspersample // 8
    held = sum(page.databytecounts)
    if held < needed:
        raise InputError(
            f"{path} is damaged: its {page.imagewidth}x{page.imagelength} pixels need "
            f"{needed} bytes, it holds {held}"
        )


def _integers_to_linear(samples: np.ndarray, curves: tuple[ToneCurve, ...]) -> np.ndarray:
    """Linear float32 from integer samples, through one lookup table per channel."""
    top = np.iinfo(samples.dtype).max
    grid = np.arange(top + 1, dtype=np.float64) / top
    tables = [curve.linearise(grid) for curve in curves]
    pixels = np.empty(samples.shape, dtype=np.float32)

    def convert(channel: int, rows: slice) -> None:
        pixels[rows, :, channel] = tables[channel][samples[rows, :, channel]]

    _by_blocks(convert, len(samples), len(curves))
    return pixels


def _read_exif(path: Path, handle: BinaryIO) -> dict[str, str]:
    """The EXIF tags worth carrying to the output of the file open as `handle`, as pyexiv2 text
    (empty if none). exiv2 reads it through the descriptor, so any file name (not UTF-8,
    say) works.

    exiv2 does not read BigTIFF (the 64-bit variant, for files over 4 GB): such files are read
    without their EXIF, and the output (classic TIFF) has none.
    """
    handle.seek(0)
    if handle.read(4)[2:] in (b"+\x00", b"\x00+"):  # version 43: BigTIFF
        return {}
    try:
        with pyexiv2.Image(descriptor_path(handle)) as image:
            exif = image.read_exif(encoding=_EXIF_ENCODING)
    except RuntimeError as error:  # exiv2 cannot parse the metadata; tifffile could the pixels
        raise InputError(f"{path} has damaged EXIF metadata ({error})") from error
    kept = {}
    for key, value in exif.items():
        _, group, name = key.split(".", 2)
        if group in _EXIF_GROUPS and _carried(name, value):
            kept[key] = value
    return kept


def _carried(name: str, value: str) -> bool:
    """Whether the tag `name`, holding `value` (pyexiv2 text), goes to the output: not the file's
    structure (`_NOT_COPIED`, `_describes_layout`), not the raw data's (`_RAW_TAGS`), and not
    empty (exiv2 would write it with no value, which TIFF does not allow: darktable said "Null
    count" for the raw tags a DNG's export carried empty)."""
    if not value or name in _NOT_COPIED or name in _RAW_TAGS:
        return False
    return not _describes_layout(name, value)


def _describes_layout(name: str, value: str) -> bool:
    """Whether the tag `name` holding `value` is tifffile's "shaped" ImageDescription, JSON
    holding the array's shape (``{"shape": [300, 400, 3]}``): it describes the file it is in,
    and a preview's output, smaller, would carry a shape its pixels do not have (tifffile then
    warns on reading it). A caption or any other text is the picture's, and is copied."""
    if name != "ImageDescription" or not value.startswith("{"):
        return False
    try:
        record = json.loads(value)
    except ValueError:
        return False
    return isinstance(record, dict) and "shape" in record


# --- Writing ---------------------------------------------------------------------------------


def _write_exif(temporary: BinaryIO, exif: dict[str, str], final: str | os.PathLike[str]) -> None:
    """Add `exif` to the TIFF open as `temporary` (through its descriptor, whatever its name);
    exiv2's failures (a full disk while it rewrites the file, among others) become an `OSError`
    naming the file being written."""
    temporary.flush()
    try:
        with pyexiv2.Image(descriptor_path(temporary)) as image:
            image.modify_exif(exif, encoding=_EXIF_ENCODING)
    except RuntimeError as error:
        raise OSError(f"could not write the EXIF data of {final} ({error})") from error


def _resolution(exif: dict[str, str]) -> tuple[tuple[Rational, Rational] | None, int | None]:
    """tifffile's `resolution` and `resolutionunit` from the input's EXIF, or Nones (tifffile's
    default) when it had none that makes sense. The TIFF's own resolution tags are structure
    that tifffile writes (exiv2 does not replace them), so the picture's print size is carried
    here."""
    x, y = (_rational(exif.get(f"Exif.Image.{axis}Resolution", "")) for axis in ("X", "Y"))
    unit = exif.get("Exif.Image.ResolutionUnit", "2")
    if x is None or y is None or unit not in ("1", "2", "3"):
        return None, None
    return (x, y), int(unit)


def _rational(text: str) -> Rational | None:
    """The positive TIFF rational (numerator, denominator) exiv2 writes as "n/d", or None."""
    parts = text.split("/")
    if len(parts) != 2 or not all(
        part.isascii() and part.isdigit() and len(part) <= 10 for part in parts
    ):
        return None
    numerator, denominator = int(parts[0]), int(parts[1])
    return (numerator, denominator) if 0 < numerator < 2**32 and 0 < denominator < 2**32 else None


def _encode(pixels: np.ndarray, like: Picture) -> np.ndarray:
    """Samples in `like`'s format from linear pixels: tone curves, then clip and round integers."""
    dtype = like.sample_format
    if dtype.kind == "f":
        limit = float(np.finfo(dtype).max)
        encoded = _convert_rows(pixels, like.curves, ToneCurve.encode, np.float32)
        return np.clip(encoded, -limit, limit, out=encoded).astype(dtype, copy=False)
    samples = np.empty(pixels.shape, dtype=dtype)
    for channel, curve in enumerate(like.curves):
        quantise(curve, pixels[:, :, channel], samples[:, :, channel])
    return samples


def _convert_rows(
    values: np.ndarray,
    curves: tuple[ToneCurve, ...],
    method: Callable[[ToneCurve, np.ndarray], np.ndarray],
    dtype: type | np.dtype,
) -> np.ndarray:
    """Apply `method` (linearise or encode) of each channel's curve, a block of rows at a time."""
    result = np.empty(values.shape, dtype=dtype)

    def convert(channel: int, rows: slice) -> None:
        result[rows, :, channel] = method(curves[channel], values[rows, :, channel])

    _by_blocks(convert, len(values), len(curves))
    return result


def _by_blocks(convert: Callable[[int, slice], None], height: int, channels: int) -> None:
    """`convert(channel, rows)` for each channel and block of `ROW_BLOCK` rows of a picture
    `height` rows high, on all cores (`worker.parallel.in_threads`)."""
    blocks = itertools.product(range(channels), range(0, height, ROW_BLOCK))
    in_threads(lambda block: convert(block[0], slice(block[1], block[1] + ROW_BLOCK)), blocks)


def resize_alpha(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`alpha` resized to `shape` (bilinear) in its own dtype.

    Parameters
    ----------
    alpha : ndarray, shape (H, W)
        The alpha samples, as the file holds them.
    shape : tuple of int
        The new (rows, columns).

    Returns
    -------
    ndarray, shape `shape`
        `alpha` itself when the size matches; else the resized samples, integers rounded and
        clipped to their dtype's range.
    """
    if alpha.shape == shape:
        return alpha
    resized = zoom_to(alpha.astype(np.float32), shape)
    if alpha.dtype.kind == "u":
        resized = np.clip(np.rint(resized), 0, np.iinfo(alpha.dtype).max)
    return resized.astype(alpha.dtype)
