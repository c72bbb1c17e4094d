"""Whether a process runs: by its pid alone (another user's too), or by its pid and its start, which
name one process for good where pids are reused."""

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process `pid` runs, another user's too (asked with signal 0, which is not sent).

    Parameters
    ----------
    pid : int
        The process id; one no process can have (too large) counts as running, so that what it
        names is kept.

    Returns
    -------
    bool
        False only when no such process exists.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's; no pid at all
        pass
    return True


def process_start(pid: int | str) -> int | None:
    """When a process started, read from ``/proc/PID/stat``.

    With its pid it names one process for good, as a pid alone does not: pids are reused, and a
    worker reached through a container's port reports a pid of its own namespace, another
    process's here.

    Parameters
    ----------
    pid : int or str
        The process's id in this process's pid namespace, or ``"self"``: this process,
        whatever its pid namespace.

    Returns
    -------
    int or None
        Its start, in clock ticks since the machine's boot (the stat file's 22nd field). None
        when no such process runs (a zombie waiting to be reaped does not) or ``/proc`` cannot
        be read.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return _start_in(stat)


def _start_in(stat: str) -> int | None:
    """The start in a ``/proc/PID/stat`` file's text; None for a zombie."""
    fields = stat.rsplit(")", 1)[1].split()  # after the name, which may hold anything
    return None if fields[0] == "Z" else int(fields[19])


def process_ended(pid: int, started: int) -> bool:
    """Whether a process has ended for sure.

    Unlike `process_start`, a ``/proc`` that cannot be read at this moment (no file descriptor
    left, no memory) says nothing: the process counts as running.

    Parameters
    ----------
    pid : int
        The process's id in this process's pid namespace.
    started : int
        Its start (`process_start`), which tells it from a later process given its pid.

    Returns
    -------
    bool
        True when no process has that pid, when the process is a zombie, or when it is another
        process (another start).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        return False
    return _start_in(stat) != started
