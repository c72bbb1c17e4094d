"""The cache key: one hash of everything that changes a deblurred picture, and nothing else.

With a darktable sidecar the key hashes
  - the image's identity: its absolute path, file size, modification time, duplicate index;
  - the sidecar's edit history only: the `darktable:history` and `darktable:masks_history` blocks,
    `history_end` and the module order (`iop_order_version`, `iop_order_list`), so that changing a
    rating, a tag or a colour label keeps the key;
  - the processing parameters, the export settings that change pixels (an opaque text from the
    plug-in) and the algorithm version.
Without a sidecar the identity and history are replaced by a hash of the picture: its pixels and
the tags its result carries (`picture_digest`): two files with the same pixels but another ICC
profile or caption have different results.
"""

import copy
import hashlib
import json
import logging
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.errors import InputError
from worker.regular import open_regular

# 2: without a sidecar, the picture's tags as well as its pixels (engine 0.3.20); 3: blind to the
# export's own path and its profile's date, which each export writes anew (engine 0.3.56)
KEY_FORMAT = 3
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DARKTABLE = "http://darktable.sf.net/"
HISTORY_PROPERTIES = ("history_end", "iop_order_version", "iop_order_list")
HISTORY_BLOCKS = ("history", "masks_history")
MAX_SIDECAR = 32 * 2**20  # bytes: darktable's sidecars hold kilobytes, a long history a few MB
# TIFF tags that say how a file stores its pixels, or when, where and by what it was written (a
# new export of the same picture writes them anew), not what the picture and its result are:
# subfile type, compression, the document's name (darktable's: the export's path, never carried
# to a result), strips and tiles, planar layout, predictor, software, date and time, XMP (never
# carried to a result: darktable would apply a history in it twice).
STORAGE_TAGS = frozenset(
    (254, 259, 269, 273, 278, 279, 284, 305, 306, 317, 322, 323, 324, 325, 700)
)
ICC_PROFILE, ICC_HEADER = 34675, 128  # the TIFF tag holding a profile; its header's bytes
# The header's creation date and profile ID (an MD5 over the date): lcms stamps each export's
# profile with the time, so the key blanks them.
ICC_WRITTEN = ((24, 36), (84, 100))


def _property(description: ET.Element, name: str) -> str | None:
    """A darktable property written as an attribute or as a simple child element."""
    qualified = f"{{{DARKTABLE}}}{name}"
    value = description.get(qualified)
    if value is None:
        child = description.find(qualified)
        if child is not None and len(child) == 0:
            value = (child.text or "").strip()
    return value


def history_fingerprint(sidecar: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The parts of a darktable XMP sidecar that describe the edits, as canonical text: each
    property and block, as every `rdf:Description` holding it has it, in the file's order.

    darktable writes its properties as attributes of `rdf:Description` and the history as child
    elements holding an `rdf:Seq` of `rdf:li` items; XML canonicalisation makes the text
    independent of attribute order, namespace prefixes' placement and whitespace. A sidecar
    over `MAX_SIDECAR` bytes is refused before it is parsed.

    Parameters
    ----------
    sidecar : str or PathLike
        The darktable XMP sidecar.

    Returns
    -------
    dict of str to list of str
        For each of `HISTORY_PROPERTIES` and `HISTORY_BLOCKS` the sidecar holds, its values or
        canonical blocks, one per `rdf:Description` holding it, in the file's order.

    Raises
    ------
    InputError
        Naming the sidecar: it cannot be read (or is not a regular file), is over
        `MAX_SIDECAR` bytes, is not valid XML, or holds no darktable history (neither a
        `history` block nor `history_end`).
    """
    try:
        with open_regular(sidecar) as handle:  # (a FIFO would make the parser wait for ever)
            text = handle.read(MAX_SIDECAR + 1)
    except OSError as error:
        raise InputError(f"cannot read the sidecar {sidecar}: {error.strerror or error}") from None
    if len(text) > MAX_SIDECAR:
        raise InputError(
            f"the sidecar {sidecar} is over {MAX_SIDECAR // 2**20} MiB: not a darktable sidecar"
        )
    found: dict[str, list[str]] = {}
    try:
        for description in ET.fromstring(text).iter(f"{{{RDF}}}Description"):
            for name in HISTORY_PROPERTIES:
                value = _property(description, name)
                if value is not None:
                    found.setdefault(name, []).append(value)
            for name in HISTORY_BLOCKS:
                block = description.find(f"{{{DARKTABLE}}}{name}")
                if block is not None:
                    alone = copy.copy(block)  # without the text that follows it
                    alone.tail = None
                    canonical = ET.canonicalize(ET.tostring(alone), strip_text=True)
                    found.setdefault(name, []).append(canonical)
    except (ET.ParseError, LookupError, ValueError) as error:  # (an unknown encoding too)
        raise InputError(f"the sidecar {sidecar} is not valid XML ({error})") from None
    except RecursionError:  # (a history block nested a thousand deep, written out)
        raise InputError(f"the sidecar {sidecar} nests its history too deep") from None
    if "history" not in found and "history_end" not in found:
        raise InputError(f"the sidecar {sidecar} holds no darktable history")
    return found


def image_identity(image: str | os.PathLike[str], duplicate: int = 0) -> dict[str, Any]:
    """Which file this is, and which version of it.

    Parameters
    ----------
    image : str or PathLike
        The picture.
    duplicate : int, optional
        darktable's duplicate index of the version edited.

    Returns
    -------
    dict
        ``path`` (absolute, links and `..` resolved: the same file however it is named),
        ``size`` (bytes), ``mtime_ns`` (the modification time, in nanoseconds) and ``dup``
        (`duplicate`).

    Raises
    ------
    InputError
        When the file cannot be examined (missing, no permission), or is not a regular file (a
        folder, a FIFO, a device; no name at all).
    """
    if not os.fspath(image):
        raise InputError("the picture has no name")
    path = Path(image).resolve()
    try:
        info = path.stat()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a folder, a FIFO or a device)")
    return {"path": str(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns, "dup": duplicate}


def picture_digest(image: str | os.PathLike[str]) -> str:
    """SHA-256 of what decides a TIFF's deblurred result: its decoded pixels (their shape and
    type) and the tags a result carries or reads them by (ICC profile, alpha kind, EXIF,
    caption, ...), blind to how the file stores them (`STORAGE_TAGS`).

    Parameters
    ----------
    image : str or PathLike
        The TIFF file; the tags are its first page's.

    Returns
    -------
    str
        The digest, 64 lowercase hexadecimal digits.

    Raises
    ------
    InputError
        Naming `image`: it is missing, cannot be read, is not a regular file, is not a TIFF
        file tifffile can read, or holds no pixels.
    """
    import numpy as np  # only here: every other `key` and `cache` call starts without them
    import tifffile

    logging.getLogger("tifffile").addHandler(logging.NullHandler())  # its notes are not ours

    try:
        with open_regular(image) as handle, tifffile.TiffFile(handle) as tiff:
            if not tiff.pages:  # (a header and nothing else)
                raise InputError(f"{image} holds no pixels: it is not a whole TIFF file")
            pixels = np.ascontiguousarray(tiff.asarray())
            tags = sorted(
                (tag.code, _canonical(_undated(tag.code, tag.value)))
                for tag in tiff.pages.first.tags
                if tag.code not in STORAGE_TAGS
            )
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"no such file: {image}") from None
    except OSError as error:
        raise InputError(f"cannot read {image}: {error.strerror or error}") from None
    except Exception as error:  # tifffile raises many types for broken files
        raise InputError(f"cannot read the pixels of {image}: {error}") from None
    if pixels.size == 0:  # (tifffile logs, and returns nothing for, a file it cannot follow)
        raise InputError(f"{image} holds no pixels: it is not a whole TIFF file")
    digest = hashlib.sha256(f"{pixels.dtype.str}{pixels.shape}{tags}".encode())
    digest.update(pixels.data.cast("B"))  # contiguous: no copy
    return digest.hexdigest()


def _undated(code: int, value: Any) -> Any:
    """A tag's value without what the moment of writing put in it (`ICC_WRITTEN`)."""
    if code != ICC_PROFILE or not isinstance(value, bytes) or len(value) < ICC_HEADER:
        return value
    profile = bytearray(value)
    for start, end in ICC_WRITTEN:
        profile[start:end] = bytes(end - start)
    return bytes(profile)


def _canonical(value: Any) -> str:
    """A tag's value as text that holds all of it (a long array's repr leaves out its middle)."""
    if isinstance(value, dict):  # an EXIF or GPS sub-directory
        return repr(sorted((str(name), _canonical(item)) for name, item in value.items()))
    if hasattr(value, "tobytes"):  # a NumPy array
        return f"{value.dtype.str}{value.shape}{hashlib.sha256(value.tobytes()).hexdigest()}"
    return repr(value)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (for a PSF given as a file).

    Parameters
    ----------
    path : str or PathLike
        The file, read whole into memory.

    Returns
    -------
    str
        The digest, 64 lowercase hexadecimal digits.

    Raises
    ------
    InputError
        Naming `path`, when it cannot be opened or read or is not a regular file.
    """
    try:
        with open_regular(path) as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None


def cache_key(
    image: str | os.PathLike[str],
    parameters: Mapping[str, Any],
    algorithm_version: str,
    sidecar: str | os.PathLike[str] | None = None,
    duplicate: int = 0,
    export: str = "",
) -> str:
    """The hexadecimal cache key (SHA-256) of a job on `image` with `parameters`.

    Parameters
    ----------
    image : str or PathLike
        The picture: with `sidecar`, the original (its identity, `image_identity`, is hashed);
        without, the exported TIFF file (its pixels and tags, `picture_digest`).
    parameters : Mapping
        The job's parameters (`JobSpec.parameters`), JSON-ready.
    algorithm_version : str
        The engine's version: a new one makes new keys.
    sidecar : str or PathLike or None, optional
        The darktable XMP sidecar, whose edit history is hashed (`history_fingerprint`).
    duplicate : int, optional
        darktable's duplicate index; only hashed with `sidecar`.
    export : str, optional
        The export settings that change pixels, an opaque text from the plug-in.

    Returns
    -------
    str
        The key, 64 lowercase hexadecimal digits (a valid `worker.paths.CACHE_KEY`).

    Raises
    ------
    InputError
        When the picture or the sidecar cannot be read or used (`image_identity`,
        `history_fingerprint`, `picture_digest`).
    """
    source: dict[str, Any]
    if sidecar is not None:
        source = {
            "identity": image_identity(image, duplicate),
            "history": history_fingerprint(sidecar),
        }
    else:
        source = {"picture": picture_digest(image)}
    material = {
        "key_format": KEY_FORMAT,
        **source,
        "parameters": dict(parameters),
        "export": export,
        "algorithm": algorithm_version,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
