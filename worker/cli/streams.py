"""The command's own streams: messages on stderr, and a reader of stdout that went away.

A command may be started with stderr closed (a daemon, a careless script): Python then has no
`sys.stderr`, and `print(file=None)` would write the message to stdout, into the report a
script parses. And a command whose stdout is piped into `head` finds the pipe closed before it
has said everything: that is the reader's choice, not a failure worth a message.
"""

import os
import signal
import sys

PROG = "dt-deconvolve"
READER_GONE = 128 + signal.SIGPIPE  # the exit status of a command whose stdout reader left


def warn(message: str) -> None:
    """Print `dt-deconvolve: MESSAGE` on stderr, if the command has one."""
    if sys.stderr is not None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def reader_gone() -> int:
    """Stdout's reader closed the pipe: point stdout at /dev/null, so that the interpreter's
    last flush at exit does not complain again, and return `READER_GONE`."""
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), sys.stdout.fileno())
    return READER_GONE
