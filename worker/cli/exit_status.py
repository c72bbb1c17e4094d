"""The exit statuses of `dt-deconvolve`, for people, scripts and the darktable plug-in.

The plug-in's copy (`lua/lib/deconvolve/logic.lua`) is checked against this table by a test.
"""

import signal
from enum import IntEnum


def of_signal(signum: int) -> int:
    """The exit status of a command stopped by a signal, as shells report it.

    Parameters
    ----------
    signum : int
        The signal's number.

    Returns
    -------
    int
        128 + `signum`.
    """
    return 128 + signum


class ExitStatus(IntEnum):
    """How a `dt-deconvolve` command ended."""

    OK = 0  # done
    FAILED = 1  # the work failed: bad input, unreadable file, full disk... (one line on stderr)
    USAGE = 2  # wrong usage (a bad option)
    CANCELLED = 3  # the job was cancelled
    TAKEN = 4  # --no-clobber: a file is at the output's name, kept; nothing written there
    INTERRUPTED = of_signal(signal.SIGINT)  # 130: Ctrl-C
    READER_GONE = of_signal(signal.SIGPIPE)  # 141: the reader of stdout left (`| head`)
