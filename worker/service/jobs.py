"""The worker's jobs: their records, the FIFO queue, and the executor processes that run them.

A job runs in an executor: a child process (`python -m worker.service.executor`) that has imported
the engine and warmed it up once, then runs jobs one after another, so a second job starts computing
at once. The server talks to it over its stdin and stdout, one JSON object per line. Cancelling a
job kills its executor (SIGKILL: immediate, whatever the engine is doing) and starts a fresh one; a
crash or a MemoryError in a job ends that job, never the server.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.service import protocol

RECENT_JOBS = 500  # finished jobs remembered for `status` and `list`


@dataclass
class Job:
    """One job: what to do (the submit request's fields) and how far it got."""

    id: str
    input: str
    output: str
    key: str | None = None
    psf: str | None = None
    blur: int | str | None = None  # an odd size, or "auto"
    window: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    stage: str = protocol.QUEUED
    detail: str = protocol.QUEUED  # the engine's own stage name ("reading", "caching", ...)
    fraction: float = 0.0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    note: str | None = None  # e.g. why the result was not cached
    report: dict[str, Any] | None = None
    kernel_from_cache: bool = False
    copies: list[str] = field(default_factory=list)  # outputs of later same-key submits
    output_before: tuple[int, int] | None = None  # the output file's identity when started

    @property
    def final(self) -> bool:
        return self.stage in protocol.FINAL_STAGES

    def seconds_left(self) -> float | None:
        """Estimated time left: the time spent so far scaled by the fraction still to do."""
        if self.started is None or self.final or self.fraction < 0.02:
            return 0.0 if self.stage == protocol.DONE else None
        spent = time.time() - self.started
        return round(spent * (1 - self.fraction) / self.fraction, 1)

    def progress(self, fraction: float, detail: str) -> None:
        """Record the engine's progress (`detail` is the pipeline's stage name)."""
        self.fraction = min(max(float(fraction), self.fraction), 1.0)
        self.detail = detail
        if detail in protocol.RUNNING_STAGES:
            self.stage = detail
        elif detail == "reading":  # reading belongs to the first computing stage
            self.stage = protocol.DEBLURRING if self.psf else protocol.ESTIMATING
        elif detail == "caching":
            self.stage = protocol.WRITING

    def end(self, stage: str, error: str | None = None) -> None:
        self.stage = self.detail = stage
        self.error = error
        self.finished = time.time()
        if stage == protocol.DONE:
            self.fraction = 1.0

    def as_dict(self) -> dict[str, Any]:
        """The job as the protocol's `status` reply shows it."""
        return {
            "job": self.id,
            "stage": self.stage,
            "detail": self.detail,
            "fraction": round(self.fraction, 4),
            "seconds_left": self.seconds_left(),
            "input": self.input,
            "output": self.output,
            "key": self.key,
            "submitted": self.submitted,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "note": self.note,
            "report": self.report,
        }

    def task(self, cache_dir: Path, scratch: Path, limits: dict[str, int]) -> dict[str, Any]:
        """The message that hands this job to an executor."""
        return {
            "job": self.id,
            "input": self.input,
            "output": self.output,
            "key": self.key,
            "psf": self.psf,
            "blur": self.blur,
            "window": self.window,
            "settings": self.settings,
            "cache_dir": str(cache_dir),
            "cache_limits": limits,
            "scratch": str(scratch),
        }


def file_identity(path: str) -> tuple[int, int] | None:
    """Inode and modification time of a file (None if absent): a new or replaced file differs."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


class JobTable:
    """Every job the worker knows, the FIFO queue of those waiting, and the active job per key."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.active_by_key: dict[str, str] = {}

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise protocol.ProtocolError(f"no job '{job_id}' on this worker", protocol.UNKNOWN_JOB)
        return job

    def active_with_key(self, key: str | None) -> Job | None:
        """The queued or running job with this cache key, if any."""
        job_id = self.active_by_key.get(key) if key else None
        return self.jobs[job_id] if job_id else None

    def add(self, job: Job, queued: bool = True) -> Job:
        self.jobs[job.id] = job
        if queued:
            self.queue.append(job.id)
            if job.key:
                self.active_by_key[job.key] = job.id
        self._forget_old()
        return job

    def new(self, fields: dict[str, Any]) -> Job:
        return Job(id=uuid.uuid4().hex[:12], **fields)

    def next_queued(self) -> Job | None:
        return self.jobs[self.queue.popleft()] if self.queue else None

    def position(self, job: Job) -> int | None:
        return self.queue.index(job.id) if job.id in self.queue else None

    def end(self, job: Job, stage: str, error: str | None = None) -> None:
        """Mark `job` finished (done, failed or cancelled) and take it off the queue."""
        job.end(stage, error)
        with contextlib.suppress(ValueError):
            self.queue.remove(job.id)
        if job.key and self.active_by_key.get(job.key) == job.id:
            del self.active_by_key[job.key]

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self.jobs.items() if job.final]
        for job_id in finished[: max(0, len(finished) - RECENT_JOBS)]:
            del self.jobs[job_id]


class Executor:
    """A warm child process that runs one job at a time, driven by JSON lines on its pipes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.service.executor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self.started = time.monotonic()
        self.ready = False
        self.job: Job | None = None
        self.last_error: str | None = None
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def fileno(self) -> int:
        assert self.process.stdout is not None
        return self.process.stdout.fileno()

    @property
    def idle(self) -> bool:
        return self.ready and self.job is None and self.process.poll() is None

    def read_events(self) -> tuple[list[dict[str, Any]], bool]:
        """The events the executor has written so far, and whether its pipe has closed."""
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
        """Hand `job` over; the executor answers with progress events."""
        assert self.process.stdin is not None
        self.job = job
        self.process.stdin.write(json.dumps(task).encode() + b"\n")
        self.process.stdin.flush()

    def kill(self) -> str:
        """Stop the process at once; returns how it ended (for messages)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        return self.reap()

    def reap(self) -> str:
        code = self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        if code < 0:
            return f"signal {signal.Signals(-code).name}"
        return f"exit status {code}"
