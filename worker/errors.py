"""Every exception type of dt-deconvolve, and the one line a user sees for any failure.

Who raises what:

- `InputError`: bad input the user can fix (a picture, a kernel, a setting, a path); its message
  is one line, shown as is. `ProtocolError` (a malformed request or reply) and `WorkerUnavailable`
  (no worker answers) are kinds of it.
- `RemoteError`: the worker refused a request; it carries the reply's error code. Only the
  worker's own bugs (code `internal`) count as internal.
- `NotCached`: the cache refused to store an entry (over the cap, too little free disk).
- `Abandoned`: an executor's worker went away; the running job stops and cleans up.
- `NameTaken`: a file is at an output's name that is not to be replaced (`--no-clobber`).
"""

import errno
import os


class InputError(ValueError):
    """Bad input that the user can fix: the message is one clear line, shown as is.

    Raised by image I/O, parameter checks and the engine's validation; the command line and the
    worker turn it into a one-line error instead of a traceback.
    """


class UsageError(InputError):
    """Options that do not go together (`--local` with `--varying`...): wrong usage, which the
    command line ends with `ExitStatus.USAGE` as it does an unknown option; the worker answers
    it as any bad input."""


class ProtocolError(InputError):
    """A message that breaks the protocol (not JSON, a missing or malformed field...).

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    code : str or None, optional
        The error code the worker answers with (`worker.service.protocol`); None: the
        protocol's `bad_message`. Kept as the attribute ``code``.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class WorkerUnavailable(InputError):
    """No worker answered at the endpoint."""


class RemoteError(Exception):
    """The worker answered a request with an error.

    Parameters
    ----------
    code : str
        One of the protocol's error codes, as the reply gave it. Kept as the attribute ``code``.
    message : str
        The reply's one-line message.
    internal : bool, optional
        The worker failed on its own bug, not on the input (the code `internal`). Kept as the
        attribute ``internal``.
    """

    def __init__(self, code: str, message: str, internal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.internal = internal


class NotCached(Exception):
    """The cache refused to store an entry (full disk, over the cap); the message says why."""


class Abandoned(Exception):
    """The worker went away: the executor stops the job, cleaning up as any exception does."""


class NameTaken(FileExistsError):
    """A file is at the name of an output that is not to replace one (`--no-clobber`, a job's
    ``replace: false``), there before the work or made while it ran: it is kept as it is and
    nothing is written there. The command line ends with `ExitStatus.TAKEN`.

    Parameters
    ----------
    path : str or PathLike
        The output's name, kept as the error's ``filename``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(errno.EEXIST, "a file is at this name already, kept as it is", str(path))


def describe_os_error(error: OSError) -> str:
    """One line for a failed file operation, naming the file when the error knows it.

    Parameters
    ----------
    error : OSError
        The failure.

    Returns
    -------
    str
        A plain phrase for a full disk, a refused permission (with the error's own reason when
        it is not the system's wording), a missing file or a file where a folder should be, else
        the error's text; followed by ``: <file name>`` when `error.filename` is set. Control
        characters are left as they are (`describe_error` makes the line safe).
    """
    where = f": {error.filename}" if error.filename else ""
    system = os.strerror(error.errno) if error.errno else None
    own = error.strerror not in (None, system)  # a reason of ours
    if error.errno == errno.ENOSPC:
        return f"no space left on the device{where}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{f' ({error.strerror})' if own else ''}{where}"
    if error.errno == errno.ENOENT:
        return f"no such file or folder{where}"
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and not own:  # (EEXIST: `mkdir` on a file)
        return f"a file is in the way where a folder should be{where}"
    return f"{error.strerror or error}{where}"


def is_internal(error: BaseException) -> bool:
    """A bug rather than bad input or a failing disk: the user cannot fix it.

    Parameters
    ----------
    error : BaseException
        The failure.

    Returns
    -------
    bool
        A `RemoteError`'s own `internal`; else False for an `InputError`, `OSError`,
        `MemoryError` or `NotCached`, and True for anything else.
    """
    if isinstance(error, RemoteError):
        return error.internal
    return not isinstance(error, InputError | OSError | MemoryError | NotCached)


def describe_error(error: BaseException) -> str:
    """The one line a user sees for any failure, in the command line and in the worker alike.

    Parameters
    ----------
    error : BaseException
        The failure.

    Returns
    -------
    str
        The message of an `InputError`, `RemoteError` or `NotCached`; `describe_os_error`'s line
        for an `OSError`; advice to try a smaller scale for a `MemoryError`; else ``internal
        error: <type>: <message>``. Always one line: `one_line` escapes the control characters (a
        file name may hold a line break).
    """
    if isinstance(error, InputError | RemoteError | NotCached):
        return one_line(str(error))
    if isinstance(error, OSError):
        return one_line(describe_os_error(error))
    if isinstance(error, MemoryError):
        return "not enough memory for this image; try a preview (a smaller scale)"
    return one_line(f"internal error: {type(error).__name__}: {error}")


def _escaped(character: str) -> str:
    """`character` as `one_line` writes it."""
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a name that is not UTF-8, as `os.fsdecode` holds it
        return f"\\x{code - 0xDC00:02x}"  # (as the byte: no terminal shows that code point)
    if character.isprintable():
        return character
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(message: str) -> str:
    """`message` with every character that a terminal or a reader acts on written as an escape,
    so that it stays one line, shown as it is, whatever the names it quotes hold.

    Those are the characters Python does not call printable: the control characters (line
    breaks, tabs, escapes, and the C1 controls such as U+009B, a terminal's CSI), the line and
    paragraph separators, and the format characters, among them the bidirectional overrides
    (U+202E would show the rest of a name backwards: ``photo<U+202E>fit.exe`` reads
    ``photoexe.tif``).

    Parameters
    ----------
    message : str
        Any text.

    Returns
    -------
    str
        `message`, each such character under U+0100 written ``\\xNN`` (lower-case
        hexadecimal), each other one ``\\uNNNN`` (``\\UNNNNNNNN`` beyond U+FFFF), and each byte
        of a name that is not UTF-8 (U+DC80 to U+DCFF, `os.fsdecode`'s stand-ins) ``\\xNN``, the
        byte. Letters, marks and symbols of every script are kept.
    """
    return message if message.isprintable() else "".join(map(_escaped, message))
