"""The signals that stop a command or the worker cleanly, as an error would: what was being
written is removed and a followed job is cancelled (`worker.cli.stops`), the worker's jobs are
cancelled and its temporary files removed (`worker.service.server`). Ctrl-C's SIGINT is handled
beside them (Python turns it into `KeyboardInterrupt`). A step that must not be cut in two runs
`held()`."""

import contextlib
import signal
import threading
from collections.abc import Iterator

STOPPING_SIGNALS = (
    signal.SIGTERM,  # a `kill`, a session ending
    signal.SIGHUP,  # its terminal closed
    signal.SIGQUIT,  # Ctrl-\ (whose default, a core dump, would leave temporary files)
)


_holding = 0  # steps held now (`held`), nested
_deferred: list[int] = []  # the stopping signals that came meanwhile


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold the stopping signals until the block ends, then deliver the first that came.

    A flag that the command's handlers read (`defer`), not a signal mask: a mask holds a signal
    for this thread only, and the kernel then hands a process's signal to any other thread that
    does not block it (a maths library's), whose Python handler still runs here, mid-step.
    Python runs signal handlers in the main thread only: a step in another thread is never cut,
    and is not counted.

    Yields
    ------
    None
        Once, for the block; when the outermost held block ends (however it ends), the first
        stopping signal that came meanwhile is raised again (`signal.raise_signal`) and the
        others are dropped.
    """
    global _holding
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if not _holding and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            signal.raise_signal(signum)


def defer(signum: int) -> bool:
    """Whether a step is held (`held`): then `signum` is kept for its end, and the handler that
    asks returns without stopping.

    Parameters
    ----------
    signum : int
        The stopping signal the handler was called for.

    Returns
    -------
    bool
        True when a step is held (`signum` is then kept, to be raised when the step ends); False
        when the handler is to stop now.
    """
    if _holding:
        _deferred.append(signum)
    return bool(_holding)
