"""The server's handle on an executor: a child process that runs the worker's jobs.

A job runs in an executor: a child process (`python -m worker.service.executor`) that has imported
the engine and warmed it up once, then runs jobs one after another, so a second job starts computing
at once. The server talks to it over its stdin and stdout, one JSON object per line (`Event`).
Cancelling a job kills its executor (SIGKILL: immediate, whatever the engine is doing) and starts a
fresh one; a crash or a MemoryError in a job ends that job, never the server.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from worker.service.jobs import Job, short_text


class Event(StrEnum):
    """What an executor tells the server, one JSON line each (`worker.service.executor`)."""

    READY = "ready"  # warmed up: it takes jobs
    BROKEN = "broken"  # could not start; the process exits
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"


class Executor:
    """A warm child process that runs one job at a time, driven by JSON lines on its pipes.

    The process (`python -m worker.service.executor`) starts now and warms up meanwhile; it
    says `Event.READY` when it takes jobs. The object owns the process, its
    pipes and its private `folder` until `close()` (or the end of a `with` block), which kills
    the process if it still runs, reaps it and removes the folder (`reap`). Not thread-safe: the
    server's loop alone drives it.

    Parameters
    ----------
    folder : Path or None, optional
        A private folder for the warm-up's files, removed with the process; None: the system's
        temporary folder.

    Raises
    ------
    OSError
        When the process cannot be started.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        where = [] if folder is None else [folder]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.service.executor", *where],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # read by the server into its rotated log, never a file
            close_fds=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        os.set_blocking(self.process.stderr.fileno(), False)
        self.ready = False
        self.job: Job | None = None
        self.last_error: str | None = None
        self._buffer = b""
        self._errors = b""

    @property
    def pid(self) -> int:
        """The executor process's id."""
        return self.process.pid

    def fileno(self) -> int:
        """The executor's events pipe (its stdout), for the server's poller.

        Returns
        -------
        int
            The pipe's file descriptor, non-blocking.

        Raises
        ------
        ValueError
            Once the pipe is closed (`reap`).
        """
        assert self.process.stdout is not None
        return self.process.stdout.fileno()

    def error_fileno(self) -> int:
        """The executor's stderr pipe, for the server's poller: as `fileno`, of stderr.

        Returns
        -------
        int
            The pipe's file descriptor.
        """
        assert self.process.stderr is not None
        return self.process.stderr.fileno()

    def read_errors(self) -> list[str]:
        """The lines the executor has written on its stderr since the last call.

        Returns
        -------
        list of str
            Each whole line, without its end, decoded as UTF-8 (other bytes escaped) and kept
            to `MAX_TEXT` characters (`short_text`). A line not yet ended waits for the next
            call, unless it has grown past 64 KiB: it is then returned as it is. Empty once the
            pipe is closed.
        """
        while True:
            try:
                chunk = os.read(self.error_fileno(), 65536)
            except (BlockingIOError, ValueError):
                break
            if not chunk:
                break
            self._errors += chunk
        *lines, self._errors = self._errors.split(b"\n")
        if len(self._errors) > 65536:
            lines.append(self._errors)
            self._errors = b""
        return [short_text(line.decode(errors="backslashreplace")) or "" for line in lines]

    @property
    def idle(self) -> bool:
        """Warm, alive and without a job: it can take one."""
        return self.ready and self.job is None and self.process.poll() is None

    def read_events(self) -> tuple[list[dict[str, Any]], bool]:
        """The events the executor has written since the last call, and whether its pipe has
        closed.

        Returns
        -------
        events : list of dict
            Each whole line that holds a JSON object (`Event`), in order; other lines are
            skipped, and a line not yet ended waits for the next call.
        closed : bool
            Whether the pipe has closed: the process has ended (reap it: `reap`).
        """
        closed = False
        while True:
            try:
                chunk = os.read(self.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                closed = True
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events, closed

    def start(self, job: Job, task: dict[str, Any]) -> None:
        """Hand `job` over; the executor answers with progress events.

        Parameters
        ----------
        job : Job
            The job; it becomes `self.job` even when the write fails.
        task : dict
            Its message (`Job.task`), written as one JSON line on the executor's stdin.

        Raises
        ------
        OSError
            When the process has ended (a broken pipe): its closed events pipe reports it.
        """
        assert self.process.stdin is not None
        self.job = job
        self.process.stdin.write(json.dumps(task).encode() + b"\n")
        self.process.stdin.flush()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the process if it still runs, reap it, close its pipes and remove its folder
        (`kill`; idempotent: a process already reaped is not signalled again)."""
        self.kill()

    def kill(self) -> str:
        """Stop the process at once (SIGKILL), then `reap` it.

        Returns
        -------
        str
            How it ended, as `reap` says it: ``signal SIGKILL``, or the exit status or signal
            it had ended with already.
        """
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        return self.reap()

    def reap(self) -> str:
        """Wait for the process to end, close its pipes and remove its folder.

        Returns
        -------
        str
            How it ended, for messages: ``exit status N``, or ``signal NAME`` when a signal
            ended it (``signal N`` for a real-time signal, which has no name).
        """
        code = self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self.folder is not None:  # what a process killed as it warmed up left there
            shutil.rmtree(self.folder, ignore_errors=True)
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:  # (it wedged the worker: its pipes closed, it stayed on the list)
                return f"signal {-code}"
        return f"exit status {code}"
