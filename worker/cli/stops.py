"""How a command stops on a signal: a `kill`, a logout or a closed terminal unwinds like an error.

The stopping signals (`worker.signals.STOPPING_SIGNALS`, and Ctrl-C's SIGINT, as Python's own
`KeyboardInterrupt`) raise in whatever the command is doing, so that what
it was writing is removed (`worker.atomic`) and a job it waits for is cancelled
(`worker.cli.submit`). A step that must not be cut in two, such as a request whose reply names
the job to cancel, runs `worker.signals.held()`: a signal that comes meanwhile is delivered as the
step ends.

A stop may cut a library's bookkeeping in two (numba's compiler, in llvmlite, was seen to leave an
object half released, whose destructor then failed as the process ended): once a command is
stopping, such a destructor's error is not printed (`_after_stop`), so the stop still ends
with one line at most, never a traceback.

Python runs a handler at its next check, which may fall inside a destructor (a pyzmq socket's
`__del__` as a request ends), where an exception is "ignored": the stop itself would be lost
(CI saw `submit --wait` sent SIGTERM go on and end with `DONE`). `_after_stop` knows the stop's own
exception and sends the signal again, from another thread a moment later, so that it lands
outside the destructor.
"""

import contextlib
import signal
import sys
import threading

from worker.cli.exit_status import of_signal
from worker.cli.streams import warn
from worker.signals import STOPPING_SIGNALS, defer

_raised: list[tuple[BaseException, int]] = []  # each stop's exception, and its signal

AGAIN_AFTER = 0.01
"""Seconds after which a stop lost in a destructor is sent again: once the destructor (and
this hook: a signal sent at once interrupted the thread's own start) has ended."""


def _after_stop(unraisable: "sys.UnraisableHookArgs") -> None:  # (a name for mypy only)
    """`sys.unraisablehook` once the command is stopping: a destructor's error is not shown,
    and a stop's own exception, raised inside a destructor, is sent again (the module's note)."""
    for exception, signum in _raised:
        if unraisable.exc_value is exception:
            main = threading.main_thread().ident
            assert main is not None  # (the main thread has started: it runs this)
            again = threading.Timer(AGAIN_AFTER, signal.pthread_kill, (main, signum))
            again.daemon = True
            again.start()


def _stop(signum: int, _frame: object) -> None:
    if defer(signum):  # in a step that must not be cut in two: at its end
        return
    sys.unraisablehook = _after_stop
    if signum == signal.SIGINT:
        exception: BaseException = KeyboardInterrupt()
    else:
        exception = SystemExit(of_signal(signum))
    _raised.append((exception, signum))
    raise exception


def stop_on_signals() -> None:
    """Make each of `STOPPING_SIGNALS` raise `SystemExit(of_signal(signal))`, and SIGINT
    `KeyboardInterrupt` as Python's own handler does, but not inside a held step (`held`; the
    worker installs handlers of its own)."""
    for signum in (*STOPPING_SIGNALS, signal.SIGINT):
        signal.signal(signum, _stop)


STOPPED = {
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGTERM: "stopped (SIGTERM)",
    signal.SIGHUP: "stopped: its terminal closed (SIGHUP)",
    signal.SIGQUIT: "stopped (Ctrl-\\, SIGQUIT)",
}
"""The line a command that a signal stopped ends with, by signal."""


def say_stopped(signum: int) -> None:
    """End a stopped command with its one line (`STOPPED`), where stderr can still take it: a
    closed terminal (SIGHUP) or a reader gone takes none, and that is no further error.

    Parameters
    ----------
    signum : int
        The signal that stopped it: SIGINT or one of `STOPPING_SIGNALS`.
    """
    with contextlib.suppress(OSError):
        warn(STOPPED[signal.Signals(signum)])


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
    return next((signum for _, signum in _raised if signum != signal.SIGINT), None)
