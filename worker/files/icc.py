"""Tone curves of ICC profiles: read them, and go between encoded values and linear light.

A matrix/TRC ("tone reproduction curve") profile describes each channel's encoding by one curve
from encoded value to linear light: `rTRC`, `gTRC`, `bTRC` for RGB, `kTRC` for grayscale. This
module parses those curves by hand from the two tag types the ICC specification allows for them
(ICC.1:2010, "Image technology colour management - Architecture, profile format, and data
structure", version 4.3):

- `curv` (section 10.6): 0 entries is the identity, 1 entry a pure gamma (u8Fixed8Number), n
  entries a table sampled uniformly on [0, 1] and interpolated linearly.
- `para` (section 10.18, table 68): five parametric families with parameters g, a, b, c, d, e, f
  (s15Fixed16Number)::

      0:  Y = X^g
      1:  Y = (aX + b)^g          for X >= -b/a,  else 0
      2:  Y = (aX + b)^g + c      for X >= -b/a,  else c
      3:  Y = (aX + b)^g          for X >= d,     else cX
      4:  Y = (aX + b)^g + e      for X >= d,     else cX + f

`ToneCurve.linearise` applies a curve and `ToneCurve.encode` is its exact inverse (closed form for
the parametric families, interpolation of the monotone table for tables). Outside [0, 1], where
scene-referred float files put highlights and out-of-gamut colours, the curves are extended: odd
symmetry below zero, the formula (or the last table segment) above one.

Profiles whose tone curves live in lookup tables (`A2B0`/`B2A0`, typical of printer and scanner
profiles) have no TRC tags: they raise `InputError`, because a multi-dimensional colour transform
cannot be undone channel by channel. darktable's export profiles (sRGB, Adobe RGB, Rec. 709,
Rec. 2020, ProPhoto, linear variants) are all matrix/TRC profiles.

`matrix_profile` builds a small valid version 4 matrix/TRC profile, used by `dt-deconvolve demo`
(its 16-bit sRGB test picture), the benchmarks and the tests; a picture without a profile is
written back without one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from worker.errors import InputError

# Parameter count of each parametric family, ICC.1:2010 table 68.
_PARA_PARAMETERS = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}
_HEADER_SIZE = 128
_TAG_ENTRY = struct.Struct(">4sII")
_TABLE_STEP = 1e-6


@dataclass(frozen=True)
class ToneCurve:
    """One channel's tone curve: a parametric function or a sampled table.

    `kind` is the parametric family 0-4 with its `params` (g, a, b, c, d, e, f), or -1 for a table
    (`table`: increasing samples of Y on a uniform grid of X over [0, 1]).
    """

    kind: int
    params: tuple[float, ...] = ()
    table: tuple[float, ...] = ()

    @staticmethod
    def gamma(value: float) -> ToneCurve:
        """The pure power law Y = X^value.

        Parameters
        ----------
        value : float
            The exponent (1: linear light).

        Returns
        -------
        ToneCurve
            The parametric curve of family 0.
        """
        return ToneCurve(0, (float(value),))

    @property
    def is_identity(self) -> bool:
        """Whether the curve leaves values as they are (a linear profile)."""
        return self.kind == 0 and self.params[0] == 1.0

    def linearise(self, encoded: np.ndarray) -> np.ndarray:
        """Linear light from encoded values (the curve itself).

        Parameters
        ----------
        encoded : ndarray
            Encoded values, 1 for white; beyond [0, 1] the curve is extended (see the module's
            notes).

        Returns
        -------
        ndarray of float32
            The linear values, in `encoded`'s shape.
        """
        return self._odd(self._forward, encoded)

    def encode(self, linear: np.ndarray) -> np.ndarray:
        """Encoded values from linear light: the exact inverse of `linearise`.

        Parameters
        ----------
        linear : ndarray
            Linear values, 1 for white (beyond [0, 1] as in `linearise`).

        Returns
        -------
        ndarray of float32
            The encoded values, in `linear`'s shape.
        """
        return self._odd(self._inverse, linear)

    def _odd(self, function: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float32)
        if self.is_identity:
            return values.copy()
        result = function(np.abs(values).astype(np.float64))
        return np.copysign(result, values).astype(np.float32)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.kind < 0:
            return _interpolate(x, np.linspace(0.0, 1.0, len(self.table)), np.array(self.table))
        g, a, b, c, d, e, f = self._general_form()
        return np.where(x >= d, np.power(np.maximum(a * x + b, 0.0), g) + e, c * x + f)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        if self.kind < 0:
            return _interpolate(y, np.array(self.table), np.linspace(0.0, 1.0, len(self.table)))
        g, a, b, c, d, e, f = self._general_form()
        start = max(a * d + b, 0.0) ** g + e  # where the power branch begins, Y(d)
        power = (np.power(np.maximum(y - e, 0.0), 1.0 / g) - b) / a
        below = (y - f) / c if c else np.full_like(y, d)
        return np.where(y >= start, power, below)

    def _general_form(self) -> tuple[float, ...]:
        """(g, a, b, c, d, e, f) of family 4, which contains the other four families."""
        params = self.params
        if self.kind == 0:
            return (params[0], 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        g, a, b = params[:3]
        if self.kind in (1, 2):
            offset = params[3] if self.kind == 2 else 0.0
            return (g, a, b, 0.0, -b / a, offset, offset)
        if self.kind == 3:
            return (*params, 0.0, 0.0)
        return params


def _interpolate(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation that continues the last segment beyond the last sample."""
    result = np.interp(x, xp, fp)
    beyond = x > xp[-1]
    if np.any(beyond):
        slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        result[beyond] = fp[-1] + slope * (x[beyond] - xp[-1])
    return result


SRGB = ToneCurve(3, (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
"""The sRGB curve (IEC 61966-2-1) as ICC parametric type 3."""

LINEAR = ToneCurve.gamma(1.0)


# --- Reading ---------------------------------------------------------------------------------


def tone_curves(profile: bytes, channels: int) -> tuple[ToneCurve, ...]:
    """The tone curves of an ICC `profile` for an image with `channels` colour channels.

    Parameters
    ----------
    profile : bytes
        The ICC profile, as embedded in the file.
    channels : int
        The image's colour channels: 3 (RGB) or 1 (grayscale).

    Returns
    -------
    tuple of ToneCurve
        One curve per channel: rTRC, gTRC, bTRC, or kTRC.

    Raises
    ------
    InputError
        When the profile is damaged, is not for the image's colour space (RGB or grayscale),
        has no tone curves (a lookup-table profile), or holds a curve of an unknown type or one
        that cannot be inverted; or when `channels` is neither 1 nor 3.
    """
    colour_space = _header(profile)
    tags = _tag_table(profile)
    names: tuple[bytes, ...]
    if channels == 3:
        names = (b"rTRC", b"gTRC", b"bTRC")
        if colour_space != b"RGB ":
            raise InputError(f"the ICC profile is for {_text(colour_space)} images, not RGB")
    elif channels == 1:
        names = (b"kTRC",)
        if colour_space != b"GRAY":
            raise InputError(f"the ICC profile is for {_text(colour_space)} images, not grayscale")
    else:
        raise InputError(f"images with {channels} colour channels are not supported")
    missing = [name for name in names if name not in tags]
    if missing:
        kind = "lookup-table" if b"A2B0" in tags else "incomplete"
        raise InputError(
            f"the embedded ICC profile is a {kind} profile without tone curves "
            f"({_text(missing[0])}); export with a matrix profile such as sRGB or linear Rec. 2020"
        )
    return tuple(_curve(profile, *tags[name]) for name in names)


def _header(profile: bytes) -> bytes:
    if len(profile) < _HEADER_SIZE + 4 or profile[36:40] != b"acsp":
        raise InputError("the embedded ICC profile is damaged (no ICC header)")
    return profile[16:20]


def _tag_table(profile: bytes) -> dict[bytes, tuple[int, int]]:
    (count,) = struct.unpack_from(">I", profile, _HEADER_SIZE)
    if _HEADER_SIZE + 4 + count * _TAG_ENTRY.size > len(profile):
        raise InputError("the embedded ICC profile is damaged (tag table past its end)")
    tags = {}
    for index in range(count):
        signature, offset, size = _TAG_ENTRY.unpack_from(profile, _HEADER_SIZE + 4 + 12 * index)
        if offset + size > len(profile):
            raise InputError(f"the embedded ICC profile is damaged ({_text(signature)} cut off)")
        tags[signature] = (offset, size)
    return tags


def _curve(profile: bytes, offset: int, size: int) -> ToneCurve:
    data = profile[offset : offset + size]
    kind = data[:4]
    if kind in (b"curv", b"para") and size < 12:
        raise InputError("the embedded ICC profile is damaged (curve cut off)")
    if kind == b"curv":
        (count,) = struct.unpack_from(">I", data, 8)
        if size < 12 + 2 * count:
            raise InputError("the embedded ICC profile is damaged (curve cut off)")
        if count == 0:
            return LINEAR
        if count == 1:
            return _invertible(ToneCurve.gamma(struct.unpack_from(">H", data, 12)[0] / 256.0))
        table = np.frombuffer(data, dtype=">u2", count=count, offset=12) / 65535.0
        return _table_curve(table)
    if kind == b"para":
        (family,) = struct.unpack_from(">H", data, 8)
        if family not in _PARA_PARAMETERS:
            raise InputError(f"the ICC profile uses an unknown parametric curve (type {family})")
        count = _PARA_PARAMETERS[family]
        if size < 12 + 4 * count:
            raise InputError("the embedded ICC profile is damaged (curve cut off)")
        raw = struct.unpack_from(f">{count}i", data, 12)
        params = tuple(value / 65536.0 for value in raw)
        return _invertible(ToneCurve(family, params))
    raise InputError(f"the ICC profile stores a tone curve as {_text(kind)!r}, not curv or para")


def _invertible(curve: ToneCurve) -> ToneCurve:
    """`curve` when it can carry pictures both ways: a positive exponent and slope, white (1)
    to a positive light level, and every encoded level back from its light (a curve whose
    gamma is 0 or whose parts run downwards would otherwise fail, or darken the picture, when
    the result is written)."""
    params = curve.params
    if params[0] <= 0 or (curve.kind > 0 and params[1] <= 0):
        raise InputError("the ICC profile has a tone curve that cannot be inverted")
    levels = np.linspace(0.0, 1.0, 257)
    with np.errstate(all="ignore"):
        light = curve.linearise(levels)
        back = curve.encode(light)
    if not (np.all(np.isfinite(back)) and light[-1] > 0 and np.allclose(back, levels, atol=1e-3)):
        raise InputError("the ICC profile has a tone curve that cannot be inverted")
    return curve


def _table_curve(table: np.ndarray) -> ToneCurve:
    """A table curve, made strictly increasing so that `encode` undoes `linearise` exactly.

    Tables in the wild carry rounding dips and flat runs (several encoded values with one linear
    value). Each sample is raised to at least its predecessor plus `_TABLE_STEP` (1e-6 of full
    scale, far below the table's own 16-bit precision), which keeps distinct encoded values
    distinct. A decreasing (inverted) table is refused.
    """
    if table[-1] < table[0]:
        raise InputError("the ICC profile has a decreasing (inverted) tone curve")
    ramp = np.arange(len(table)) * _TABLE_STEP
    table = np.maximum.accumulate(table - ramp) + ramp
    return ToneCurve(-1, table=tuple(float(value) for value in table))


def _text(signature: bytes) -> str:
    return signature.decode("latin-1").strip()


# --- Writing ---------------------------------------------------------------------------------

# sRGB primaries and white adapted to the D50 connection space (Bradford), as in IEC 61966-2-1's
# reference profiles, and the Bradford matrix from D65 to D50 (`chad`, ICC.1:2010 annex G).
SRGB_PRIMARIES_D50 = (
    (0.4360747, 0.2225045, 0.0139322),
    (0.3850649, 0.7168786, 0.0971045),
    (0.1430804, 0.0606169, 0.7141733),
)
D50 = (0.9642, 1.0, 0.8249)
BRADFORD_D65_TO_D50 = (
    (1.0478112, 0.0228866, -0.0501270),
    (0.0295424, 0.9904844, -0.0170491),
    (-0.0092345, 0.0150436, 0.7521316),
)


def matrix_profile(
    curve: ToneCurve = SRGB, description: str = "sRGB (dt-deconvolve)", grayscale: bool = False
) -> bytes:
    """A version 4.3 display profile with the sRGB primaries (or grayscale) and a tone curve.

    With the default curve this is an sRGB profile. Tags written: desc, cprt, wtpt, chad, and
    either rXYZ/gXYZ/bXYZ and rTRC/gTRC/bTRC, or kTRC.

    Parameters
    ----------
    curve : ToneCurve, optional
        The tone curve of every channel.
    description : str, optional
        The profile's name (its desc tag).
    grayscale : bool, optional
        Whether to write a grayscale profile (kTRC) instead of an RGB one.

    Returns
    -------
    bytes
        The profile.
    """
    curve_tag = _curve_tag(curve)
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", _mluc(description)),
        (b"cprt", _mluc("No copyright, use freely")),
        (b"wtpt", _xyz(D50)),
        (
            b"chad",
            b"sf32" + bytes(4) + b"".join(_s15(v) for row in BRADFORD_D65_TO_D50 for v in row),
        ),
    ]
    if grayscale:
        tags.append((b"kTRC", curve_tag))
    else:
        for name, primary in zip((b"rXYZ", b"gXYZ", b"bXYZ"), SRGB_PRIMARIES_D50, strict=True):
            tags.append((name, _xyz(primary)))
        tags += [(b"rTRC", curve_tag), (b"gTRC", curve_tag), (b"bTRC", curve_tag)]
    table_size = 4 + _TAG_ENTRY.size * len(tags)
    offset = _HEADER_SIZE + table_size
    entries, blobs = [], []
    for name, blob in tags:
        blob += bytes(-len(blob) % 4)  # tag data starts on 4-byte boundaries
        entries.append(_TAG_ENTRY.pack(name, offset, len(blob)))
        blobs.append(blob)
        offset += len(blob)
    header = struct.pack(
        ">I4sI4s4s4s12s4s4sI4s4s8sI12s4s16s28s",
        offset,  # profile size
        b"",  # preferred CMM
        0x04300000,  # version 4.3
        b"mntr",
        b"GRAY" if grayscale else b"RGB ",
        b"XYZ ",
        struct.pack(">6H", 2024, 1, 1, 0, 0, 0),
        b"acsp",
        b"",  # platform
        0,  # flags
        b"",  # manufacturer
        b"",  # model
        bytes(8),  # attributes
        0,  # perceptual intent
        b"".join(_s15(v) for v in D50),
        b"dtdc",  # creator
        bytes(16),  # profile ID (optional MD5)
        bytes(28),
    )
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + b"".join(blobs)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(v) for v in values)


def _mluc(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return b"mluc" + struct.pack(">III2s2sII", 0, 1, 12, b"en", b"US", len(encoded), 28) + encoded


def _curve_tag(curve: ToneCurve) -> bytes:
    if curve.kind < 0:
        samples = np.round(np.array(curve.table) * 65535).astype(">u2")
        return b"curv" + struct.pack(">II", 0, len(samples)) + samples.tobytes()
    params = curve.params[: _PARA_PARAMETERS[curve.kind]]
    return b"para" + struct.pack(">IHH", 0, curve.kind, 0) + b"".join(_s15(p) for p in params)
