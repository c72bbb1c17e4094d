"""How a command stops on a signal: a `kill`, a logout or a closed terminal unwinds like an error.

The stopping signals (`worker.signals.STOPPING_SIGNALS`, and Ctrl-C's SIGINT, as Python's own
`KeyboardInterrupt`) raise in whatever the command is doing, so that what
it was writing is removed (`worker.atomic`) and a job it waits for is cancelled
(`worker.cli.submit`). A step that must not be cut in two, such as a request whose reply names
the job to cancel, runs `worker.signals.held()`: a signal that comes meanwhile is delivered as the
step ends.

A stop may cut a library's bookkeeping in two (numba's compiler, in llvmlite, was seen to leave an
object half released, whose destructor then failed as the process ended): once a command is
stopping, such a destructor's error is not printed (`_quiet_after_stop`), so the stop still ends
with one line at most, never a traceback.
"""

import signal
import sys

from worker.cli.exit_status import of_signal
from worker.signals import STOPPING_SIGNALS, defer

_stopped_by: list[int] = []  # the signal that is stopping the command, once one is


def _quiet_after_stop(_unraisable: object) -> None:
    """`sys.unraisablehook` once the command is stopping: a destructor's error is not shown."""


def _stop(signum: int, _frame: object) -> None:
    if defer(signum):  # in a step that must not be cut in two: at its end
        return
    sys.unraisablehook = _quiet_after_stop
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    _stopped_by.append(signum)
    raise SystemExit(of_signal(signum))


def stop_on_signals() -> None:
    """Make each of `STOPPING_SIGNALS` raise `SystemExit(of_signal(signal))`, and SIGINT
    `KeyboardInterrupt` as Python's own handler does, but not inside a held step (`held`; the
    worker installs handlers of its own)."""
    for signum in (*STOPPING_SIGNALS, signal.SIGINT):
        signal.signal(signum, _stop)


def stopped_by() -> int | None:
    """The signal stopping the command, if one is.

    Raised in compiled code, the exit arrives wrapped in another exception: the caller knows it
    by this.

    Returns
    -------
    int or None
        The first stopping signal that came (not SIGINT, which raises `KeyboardInterrupt`);
        None when none did.
    """
    return _stopped_by[0] if _stopped_by else None
