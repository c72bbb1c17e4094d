"""Open a file from outside for reading only when it is a regular file.

A path a user or a client gives may name a FIFO (opening it for reading waits for a writer, for
ever), a device (reading `/dev/zero` never ends) or a folder. `open_regular` opens the path
without blocking, checks the open file itself (not the name, which could be swapped in between)
and only then hands it over, blocking as usual.
"""

import errno
import fcntl
import os
import stat
from typing import BinaryIO


def open_regular(path: str | os.PathLike[str], follow: bool = True) -> BinaryIO:
    """`path` opened for reading, in binary, when it names a regular file.

    Parameters
    ----------
    path : str or PathLike
        The file to read, as a user or a client gave it.
    follow : bool, optional
        Whether a link at `path` is followed (False: a link is refused, ``ELOOP``).

    Returns
    -------
    BinaryIO
        The open file, blocking as usual; its ``raw.name`` is `path`, decoded.

    Raises
    ------
    OSError
        When `path` cannot be opened, or is not a regular file (a folder, a FIFO or a device:
        ``EINVAL``); the error names `path`.
    """
    no_link = 0 if follow else os.O_NOFOLLOW
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | no_link)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(
                errno.EINVAL, "not a regular file (a folder, a FIFO or a device)", os.fsdecode(path)
            )
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    handle = os.fdopen(fd, "rb")
    handle.raw.name = os.fsdecode(path)  # type: ignore[attr-defined]  # readers want a name
    return handle
