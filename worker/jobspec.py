"""One description of a job: which picture, where to, and how (`JobSpec`).

Every layer that handles a job uses this one type: the command line builds it from its options,
the client sends it (`as_fields`), the protocol checks it as it arrives (`FIELD_CHECKS` and
`REQUIRED_FIELDS`, in `protocol.decode_request`), the server validates it (`validate`), the
executor rebuilds it from its task (`from_fields`) and, with the pipeline, runs it, and the cache
key and record hash its `parameters`. A new job option is a new field here (with its check), and
nowhere else.

`from_fields` takes untrusted JSON: each field is checked for presence, type and shape, and raises
`ProtocolError` naming the field; the engine settings' ranges are `DeblurSettings.validate`'s
(`InputError`).
"""

import dataclasses
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.atomic import check_target
from worker.deconv.settings import (
    AUTO,
    MAX_BLUR,
    MIN_BLUR,
    DeblurSettings,
    is_blur_size,
    window_spelling,
)
from worker.errors import InputError, ProtocolError, UsageError
from worker.numbers import is_whole
from worker.paths import CACHE_KEY, CACHE_KEY_TEXT

MAX_PATH = 4096  # bytes: Linux's PATH_MAX
MAX_KERNEL_FILE = 8 * MAX_BLUR**2 + (1 << 16)  # bytes: the largest kernel in float64, its header
TIFF_SUFFIXES = (".tif", ".tiff")  # the results are TIFF files, named as such

Check = Callable[[str, Any], Any]


def type_name(value: Any) -> str:
    """How a JSON value's type reads in a message ("an integer", "null", ...).

    Parameters
    ----------
    value : Any
        A value read from JSON.

    Returns
    -------
    str
        "a boolean", "an integer", "a number" (a float), "a string", "a list", "an object" or
        "null"; for any other type, the type's own name.
    """
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def of_type(kind: type) -> Check:
    """A check that a field's value is of JSON type `kind`.

    Parameters
    ----------
    kind : type
        `str` or `bool`.

    Returns
    -------
    Check
        ``check(name, value)``: `value` itself; `ProtocolError` ("field 'NAME' must be a
        string, not null") when it is of another type.
    """
    what = type_name(kind())

    def check(name: str, value: Any) -> Any:
        if not isinstance(value, kind):
            raise ProtocolError(f"field '{name}' must be {what}, not {type_name(value)}")
        return value

    return check


check_string = of_type(str)
check_flag = of_type(bool)  # (1 and "true" are no booleans)


def check_path(name: str, value: Any) -> str:
    """An absolute path without NUL bytes, at most `MAX_PATH` bytes in the file system's
    encoding (so a reply holding two paths, however escaped, fits in one message).

    Only the text is checked; the file system is not looked at.

    Parameters
    ----------
    name : str
        The field's name, for the error.
    value : Any
        The field's value, as received.

    Returns
    -------
    str
        `value` itself.

    Raises
    ------
    ProtocolError
        When `value` is not a string, does not start with ``/``, holds a NUL, is longer than
        `MAX_PATH` bytes or cannot be encoded (a lone surrogate).
    """
    value = check_string(name, value)
    if not value.startswith("/"):
        raise ProtocolError(f"field '{name}' must be an absolute path, not '{value[:80]}'")
    try:
        size = len(os.fsencode(value))
    except UnicodeEncodeError:  # a lone surrogate that no byte escapes to
        size = MAX_PATH + 1
    if size > MAX_PATH or "\0" in value:
        raise ProtocolError(f"field '{name}' is not a usable path")
    return value


def matching(accepts: Callable[[str], object], what: str) -> Check:
    """A check that a string field is one that `accepts` takes.

    Parameters
    ----------
    accepts : callable
        Given the string, something true when it is acceptable (a match, or True).
    what : str
        What an acceptable string is, in words, for the error ("a window: auto, centre or
        X,Y,W,H").

    Returns
    -------
    Check
        ``check(name, value)``: `value` itself when it is a string that `accepts` takes; else
        it raises `ProtocolError` naming the field `name`.
    """

    def check(name: str, value: Any) -> str:
        value = check_string(name, value)
        if not accepts(value):
            raise ProtocolError(f"field '{name}' must be {what}, not '{value[:80]}'")
        return value

    return check


def check_odd_size(name: str, value: Any) -> int:
    """`value` if it is a blur size a job may ask for (`is_blur_size`).

    Parameters
    ----------
    name : str
        The field's name, for the error.
    value : Any
        The field's value, as received.

    Returns
    -------
    int
        `value` itself: an odd whole number of pixels from `MIN_BLUR` to `MAX_BLUR`.

    Raises
    ------
    ProtocolError
        When `value` is not an integer (a boolean or a float is not one) or not such a size.
    """
    if not is_whole(value):
        raise ProtocolError(f"field '{name}' must be an integer, not {type_name(value)}")
    if not is_blur_size(value):
        raise ProtocolError(
            f"field '{name}' must be an odd size from {MIN_BLUR} to {MAX_BLUR}, not {value}"
        )
    return value


def check_blur(name: str, value: Any) -> int | str:
    """A blur size to estimate: an odd size (`check_odd_size`), or "auto" (the engine finds the
    blur's extent itself).

    Parameters
    ----------
    name : str
        The field's name, for the error.
    value : Any
        The field's value, as received.

    Returns
    -------
    int or str
        The blur size, or `AUTO` (in any letter case, spaces around it aside).

    Raises
    ------
    ProtocolError
        When `value` is neither.
    """
    if not isinstance(value, str):
        return check_odd_size(name, value)
    if value.strip().lower() != AUTO:  # ("AUTO" as a command line reads it: `blur_from_text`)
        raise ProtocolError(
            f"field '{name}' must be {AUTO} or an odd size from {MIN_BLUR} to {MAX_BLUR}, "
            f"not '{value[:80]}'"
        )
    return AUTO


def check_settings(name: str, value: Any) -> DeblurSettings:
    """Engine settings: an object whose entries are `DeblurSettings` fields, each a finite
    number, a boolean or null; the ranges are then checked by `DeblurSettings.validate`.

    Parameters
    ----------
    name : str
        The field's name, for the error.
    value : Any
        The field's value, as received: a dict, or None. A setting that is null or absent
        takes its default; None takes them all.

    Returns
    -------
    DeblurSettings
        The settings, checked.

    Raises
    ------
    ProtocolError
        When `value` is neither a dict nor None, names an unknown setting, holds a value that
        is not a finite number, a boolean or null, or holds one out of range (the message of
        `DeblurSettings.validate`'s `InputError`, after the field's name).
    """
    if value is None:
        return DeblurSettings()
    if not isinstance(value, dict):
        raise ProtocolError(f"field '{name}' must be an object, not {type_name(value)}")
    known = [f.name for f in dataclasses.fields(DeblurSettings)]
    for setting, number in value.items():
        if setting not in known:
            raise ProtocolError(
                f"unknown engine setting '{str(setting)[:40]}' (known: {', '.join(known)})"
            )
        if number is not None and not isinstance(number, bool | int | float):
            raise ProtocolError(
                f"setting '{setting}' must be a number, a boolean or null, not {type_name(number)}"
            )
        if isinstance(number, float) and not math.isfinite(number):
            raise ProtocolError(f"setting '{setting}' must be finite")
    settings = DeblurSettings(**{k: v for k, v in value.items() if v is not None})  # null: default
    try:
        settings.validate()
    except InputError as error:
        raise ProtocolError(f"field '{name}': {error}") from None
    return settings


def optional(check: Check) -> Check:
    """`check`, letting null (None) through.

    Parameters
    ----------
    check : Check
        The check of a value that is present.

    Returns
    -------
    Check
        ``check_optional(name, value)``: None when `value` is None, else ``check(name, value)``.
    """

    def check_optional(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return check_optional


def _is_window(text: str) -> bool:
    """Whether `text` names a window (`window_spelling`); `JobSpec` spells it in one way."""
    try:
        window_spelling(text)
    except InputError:
        return False
    return True


check_key = matching(CACHE_KEY.fullmatch, CACHE_KEY_TEXT)
check_window = matching(_is_window, "a window: auto, centre or X,Y,W,H")


def _check_readable(path: Path, what: str) -> None:
    """`InputError` unless `path` leads to a regular file (a link loop is not "missing")."""
    try:
        is_file = stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        raise InputError(f"no such file or folder: {path}") from None
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if not is_file:
        raise InputError(f"{what} {path} is not a file")


def check_tiff_name(output: str | os.PathLike[str]) -> None:
    """`InputError` unless a result is to be written under a TIFF file's name.

    Parameters
    ----------
    output : str or PathLike
        Where the result is to go; only its suffix is looked at.

    Raises
    ------
    InputError
        When the suffix is not ``.tif`` or ``.tiff`` (in upper or lower case), or the name ends
        in ``/`` (a folder's name: `Path` drops the slash).
    """
    if os.fspath(output).endswith("/") or Path(output).suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"the output must be a .tif or .tiff file, not {output}")


def canonical_window(window: str | None) -> str | None:
    """One spelling for each window, so that one job has one cache key.

    Parameters
    ----------
    window : str or None
        A window as a user or a client wrote it (`window_spelling`), or None.

    Returns
    -------
    str or None
        None for the default ("auto", said or not), else the window's one spelling.

    Raises
    ------
    InputError
        `window` is not a window.
    """
    spelling = AUTO if window is None else window_spelling(window)
    return None if spelling == AUTO else spelling


@dataclass(frozen=True)
class JobSpec:
    """One picture to deblur, and how.

    Parameters
    ----------
    input : str
        The picture (an absolute path to a TIFF file).
    output : str
        Where the result goes (absolute path; written atomically).
    key : str or None, optional
        The cache key to store the result under (`dt-deconvolve key`); None: not cached.
    psf : str or None, optional
        A known blur kernel (.npy, absolute path); None: estimate it from the picture.
    blur : int or str or None, optional
        The largest blur to estimate (odd, pixels), or "auto"; needed when `psf` is None.
    window : str or None, optional
        Where to estimate it: "centre" or "X,Y,W,H"; None: "auto" (kept as None, as is
        "center" as "centre", and the window of a job given its kernel, which learns nothing).
    settings : DeblurSettings, optional
        The engine's settings (by default, the defaults).
    replace : bool, optional
        Whether the result replaces a file at `output` (the default, as ``cp`` does); when not,
        a job whose output's name is taken, before it starts or while it runs, fails and
        leaves that file as it is: for a client that chose a free name (the plug-in).
    """

    input: str
    output: str
    key: str | None = None
    psf: str | None = None
    blur: int | str | None = None
    window: str | None = None
    settings: DeblurSettings = field(default_factory=DeblurSettings)
    replace: bool = True

    def __post_init__(self) -> None:
        # One job, one cache key (`canonical_window`); no window where no blur is learnt.
        window = None if self.psf is not None else canonical_window(self.window)
        object.__setattr__(self, "window", window)

    @property
    def estimating(self) -> bool:
        """The job finds its blur kernel itself (no kernel given)."""
        return self.psf is None

    def parameters(self) -> dict[str, Any]:
        """What decides the result besides the picture: hashed into the cache key, kept in the
        cache's record.

        Returns
        -------
        dict
            ``psf``, ``blur``, ``window`` and ``settings`` (the settings as a dict of their
            fields); the input, output, `replace` and key are no part of it.
        """
        return {
            "psf": self.psf,
            "blur": self.blur,
            "window": self.window,
            "settings": dataclasses.asdict(self.settings),
        }

    def as_fields(self) -> dict[str, Any]:
        """The job as JSON-ready fields (the `submit` request's), the inverse of `from_fields`.

        Returns
        -------
        dict
            ``input``, ``output``, ``replace``, ``key`` and the `parameters`, every field
            present (None where unset).
        """
        return {
            "input": self.input,
            "output": self.output,
            "replace": self.replace,
            "key": self.key,
            **self.parameters(),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "JobSpec":
        """The job described by untrusted fields.

        Parameters
        ----------
        fields : Mapping
            The job's fields, as received (`as_fields`' form): ``input`` and ``output`` are
            required, the others may be missing or null (``replace``: missing only).

        Returns
        -------
        JobSpec
            The job, checked (`validate`).

        Raises
        ------
        ProtocolError
            For a missing, unknown or malformed field, a setting out of range, or neither a
            kernel nor a blur size.
        InputError
            For settings that do not go together (`validate`).
        """
        unknown = sorted(set(fields) - set(FIELD_CHECKS))
        if unknown:
            raise ProtocolError(f"a job has no field '{str(unknown[0])[:40]}'")
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise ProtocolError(f"a job needs the field '{missing[0]}'")
        values = {name: FIELD_CHECKS[name](name, value) for name, value in fields.items()}
        spec = cls(**values)
        spec.validate()
        return spec

    def check_files(self, *written: str | os.PathLike[str]) -> None:
        """Refuse the job at once, before any work, when its files would make it fail.

        Parameters
        ----------
        *written : str or PathLike
            The other files the job writes besides its output (a kernel saved beside the
            result, its picture).

        Raises
        ------
        InputError
            When the output is not named as a TIFF file, or the input or the kernel file is
            missing, cannot be examined or is not a regular file (a FIFO would make the reader
            wait for ever).
        OSError
            Naming the file: the name of the output or of one of `written` is taken and the
            job does not `replace` (`NameTaken`); the output or one of `written` is the input
            or the kernel file itself, or is not writable as `atomic.check_target` finds (a
            folder or a device in the way, a missing or read-only folder, a name too long).
        """
        check_tiff_name(self.output)
        source = Path(self.input)
        _check_readable(source, "the input")
        if self.psf:
            _check_readable(Path(self.psf), "the PSF")
        sources: list[str | os.PathLike[str]] = [source, *([self.psf] if self.psf else [])]
        for target in (self.output, *written):
            check_target(target, *sources, replace=self.replace)

    def validate(self) -> None:
        """Raise `InputError` when the job cannot be run as described (`UsageError` for options
        that do not go together)."""
        if self.psf is None and self.blur is None:
            raise ProtocolError(  # (the command line always says one: a client that did not)
                "say how to find the blur: a kernel file ('psf') or the size of the blur to "
                "estimate ('blur': K, or auto)"
            )
        if self.settings.varying and (self.psf is not None or self.blur == AUTO):
            raise UsageError(
                "--varying estimates a blur for each part of the picture: give it with a blur "
                "size to `run` or `submit` (--blur K), neither with a kernel file nor with auto"
            )
        if self.settings.varying and self.settings.local:
            raise UsageError(
                "--local and --varying do not go together: local mode sharpens the part of the "
                "picture that one blur explains, --varying each part with its own blur"
            )
        self.settings.validate()


REQUIRED_FIELDS = ("input", "output")
FIELD_CHECKS: Mapping[str, Check] = {
    "input": check_path,
    "output": check_path,
    "replace": check_flag,
    "key": optional(check_key),
    "psf": optional(check_path),
    "blur": optional(check_blur),
    "window": optional(check_window),
    "settings": check_settings,
}
