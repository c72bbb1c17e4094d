"""The exception type that carries a message meant for the user, and one-line descriptions."""

import errno


class InputError(ValueError):
    """Bad input that the user can fix: the message is one clear line, shown as is.

    Raised by image I/O, parameter checks and the engine's validation; the command line and the
    worker turn it into a one-line error instead of a traceback.
    """


def describe_os_error(error: OSError) -> str:
    """One line for a failed file operation, naming the file when the error knows it."""
    where = f": {error.filename}" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"no space left on the device{where}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}"
    if error.errno == errno.ENOENT:
        return f"no such file or folder{where}"
    return f"{error.strerror or error}{where}"


def is_internal(error: BaseException) -> bool:
    """A bug rather than bad input or a failing disk: the user cannot fix it."""
    return not isinstance(error, InputError | OSError | MemoryError)


def describe_error(error: BaseException) -> str:
    """The one line a user sees for any failure, in the command line and in the worker alike."""
    if isinstance(error, InputError):
        return str(error)
    if isinstance(error, OSError):
        return describe_os_error(error)
    if isinstance(error, MemoryError):
        return "not enough memory for this image; try a preview (a smaller scale)"
    return f"internal error: {type(error).__name__}: {error}"
