"""The command's own streams: messages on stderr, a reader of stdout that went away, and a
stdout that cannot take the report.

A command may be started with stderr closed (a daemon, a careless script): Python then has no
`sys.stderr`, and `print(file=None)` would write the message to stdout, into the report a
script parses. And a command whose stdout is piped into `head` finds the pipe closed before it
has said everything: that is the reader's choice, not a failure worth a message. A stdout on a
full disk (`>/dev/full`) is a failure, but of the report alone: the file the report is about was
written (`report_on`).
"""

import contextlib
import os
import select
import sys
from collections.abc import Iterator

from worker.cli.exit_status import ExitStatus
from worker.paths import APP

PROG = APP


def warn(message: str) -> None:
    """Print ``dt-deconvolve: MESSAGE`` on stderr, if the command has one.

    Parameters
    ----------
    message : str
        One line, printed as it is.
    """
    if sys.stderr is not None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def reader_left() -> bool:
    """Whether stdout is a pipe whose reader has closed it, found without writing to it.

    A command that prints only now and then (`submit --wait` while a result is written) would
    learn it only at its next line: darktable killed, its command ran on until the job was
    done, and the result stayed beside the picture. Linux reports an error on a pipe's writing
    end once no reader is left (a file, a terminal or /dev/null never does).

    Returns
    -------
    bool
        True when stdout is such a pipe; False for any other stdout, or none.
    """
    if sys.stdout is None:
        return False
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # (a stdout replaced by an object without a file)
        return False
    poller = select.poll()
    poller.register(descriptor, 0)  # errors are reported whatever is asked for
    return any(events & select.POLLERR for _, events in poller.poll(0))


def reader_gone() -> int:
    """Stdout's reader closed the pipe: point stdout at /dev/null.

    That way the interpreter's last flush at exit does not complain again.

    Returns
    -------
    int
        `ExitStatus.READER_GONE`: 128 + SIGPIPE, the command's exit status.
    """
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), sys.stdout.fileno())
    return ExitStatus.READER_GONE


@contextlib.contextmanager
def report_on(what: str, path: str) -> Iterator[None]:
    """Print, inside, the report on a file written before it.

    A stdout that cannot take the report raises an `OSError` naming the report and the file
    that was written (the error read "no space left on the device" alone, as if the file were
    lost). A reader that left (`BrokenPipeError`) goes through to `reader_gone`.

    Parameters
    ----------
    what : str
        What the file is: "picture", "kernel".
    path : str
        The file written.

    Yields
    ------
    None
        Once, for the block that prints; stdout is flushed as it ends.

    Raises
    ------
    OSError
        Stdout (its flush, or a print inside) failed: the original errno and message, the
        filename saying that the file itself was written. `BrokenPipeError` as it came.
    """
    try:
        yield
        if sys.stdout is not None:  # (started with stdout closed: nothing was printed)
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        where = f"the report on stdout (the {what} itself was written: {path})"
        raise OSError(error.errno, error.strerror, where) from error
