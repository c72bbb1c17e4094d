"""The worker: a long-lived ZeroMQ server that queues jobs, runs them warm, and serves the cache.

Socket: a ROUTER. Each client request carries the client's identity, so one loop can answer many
clients in any order while it also watches the executors' pipes (a REP socket would force strict
receive-reply turns and one client at a time). A client that vanishes costs nothing: its reply is
dropped. Clients use a REQ socket per request (a fresh one after a time-out).

The loop never runs a job itself and never blocks on one: jobs run in executor processes
(`worker.service.jobs`), so a crash, a MemoryError or a cancel of a job cannot take the server
down, and every request, however malformed, gets a reply.
"""

import contextlib
import dataclasses
import fcntl
import logging
import logging.handlers
import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from cache.store import CacheLimits, ResultCache
from worker import __version__
from worker.atomic import copy_atomically, temporaries
from worker.errors import InputError, NotCached, ProtocolError, describe_os_error
from worker.jobspec import JobSpec
from worker.paths import runtime_dir, state_dir
from worker.service import protocol
from worker.service.jobs import Executor, Job, JobTable, file_identity
from worker.service.transport import check_endpoint, ipc_path, secure_server
from worker.stages import Stage

POLL_MS = 100
MAX_TRANSPORT_BYTES = 1 << 20  # larger messages are dropped by ZeroMQ before they are read
STARTUP_FAILURES_BEFORE_GIVING_UP = 3
LIST_LIMIT = 50  # jobs in a `list` reply (newest), so that it fits in one message

log = logging.getLogger("dt-deconvolve.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker runs: where it listens, its cache, how many jobs at once."""

    endpoint: str
    cache_dir: Path
    curve_dir: Path
    jobs: int = 1
    cache_limits: CacheLimits = field(default_factory=CacheLimits)
    idle_exit: float | None = None  # stop after this many seconds without requests or jobs


def open_log(verbose: bool) -> Path:
    """Log to a rotating file in the state folder (and to stderr with `verbose`)."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "worker.log"
    handler = logging.handlers.RotatingFileHandler(  # a name that is not UTF-8 logs escaped
        path, maxBytes=1 << 20, backupCount=3, encoding="utf-8", errors="backslashreplace"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if verbose:
        log.addHandler(logging.StreamHandler())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    return path


@contextlib.contextmanager
def endpoint_lock(endpoint: str) -> Iterator[None]:
    """Hold a lock beside an ipc socket for the worker's life, so that two workers never share
    (and steal) one socket. tcp endpoints need none: the second bind fails."""
    path = ipc_path(endpoint)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "?"
            raise InputError(f"a worker (pid {owner}) already serves {endpoint}") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _remove_partial_output(job: Job) -> None:
    """Remove what a stopped job may have left: temporary output files, and the output itself
    when the job created or replaced it (it may have got that far just before the stop)."""
    output = Path(job.output)
    for partial in temporaries(output):
        partial.unlink(missing_ok=True)
    if job.started is not None and file_identity(job.output) != job.output_before:
        output.unlink(missing_ok=True)


class Server:
    """The worker's server loop and its request handlers."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.cache = ResultCache(config.cache_dir, config.cache_limits)
        self.table = JobTable()
        self.executors: list[Executor] = []
        self.scratch_root = runtime_dir() / f"scratch-{os.getpid()}"
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.stopping = False
        self.startup_failures = 0
        self.next_start = 0.0
        self.handlers: dict[str, Callable[[protocol.Request], dict[str, Any]]] = {
            "ping": self.ping,
            "submit": self.submit,
            "status": self.status,
            "cancel": self.cancel,
            "list": self.list_jobs,
            "cache_lookup": self.cache_lookup,
            "cache_stats": self.cache_stats,
            "cache_clean": self.cache_clean,
            "shutdown": self.shutdown,
        }

    # ---- running ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until `shutdown`, SIGTERM or SIGINT; returns the exit status."""
        config = self.config
        check_endpoint(config.endpoint, curve=True)  # the CURVE check comes with the keys
        with contextlib.ExitStack() as stack:
            stack.enter_context(endpoint_lock(config.endpoint))
            context = stack.enter_context(zmq.Context())
            socket = stack.enter_context(context.socket(zmq.ROUTER))
            socket.linger = 0
            socket.maxmsgsize = MAX_TRANSPORT_BYTES
            authenticator = secure_server(context, socket, config.endpoint, config.curve_dir)
            if authenticator is not None:
                stack.callback(authenticator.stop)
            try:
                socket.bind(config.endpoint)
            except zmq.ZMQError as error:
                raise InputError(f"cannot listen on {config.endpoint}: {error}") from None
            stack.callback(self._stop_all)
            self._prepare_folders()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
            log.info(
                "worker %s (pid %d) listening on %s%s, cache %s, %d job(s) at a time",
                __version__,
                os.getpid(),
                config.endpoint,
                " with CURVE" if authenticator else "",
                config.cache_dir,
                config.jobs,
            )
            self._loop(socket)
        log.info("worker stopped")
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        self.stopping = True

    def _prepare_folders(self) -> None:
        """Remove what killed workers left: cache temporaries and scratch folders."""
        removed = self.cache.remove_stale()
        for folder in runtime_dir().glob("scratch-*"):
            pid = folder.name.removeprefix("scratch-")
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d temporary folder(s) left by an earlier worker", removed)
        self.scratch_root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _loop(self, socket: zmq.Socket) -> None:
        while not self.stopping:
            self._keep_executors()
            self._dispatch()
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            for executor in self.executors:
                poller.register(executor.fileno(), zmq.POLLIN)
            ready = dict(poller.poll(POLL_MS))
            if socket in ready:
                self._serve_requests(socket)
                self.last_activity = time.monotonic()
            for executor in list(self.executors):
                if executor.fileno() in ready:
                    self._read_executor(executor)
            if self.table.queue or any(executor.job for executor in self.executors):
                self.last_activity = time.monotonic()
            elif self._idle_too_long():
                log.info("stopping after %.0f s without work", self.config.idle_exit)
                self.stopping = True

    def _idle_too_long(self) -> bool:
        idle = self.config.idle_exit
        return idle is not None and time.monotonic() - self.last_activity > idle

    def _serve_requests(self, socket: zmq.Socket) -> None:
        for _ in range(100):  # then give the executors a turn
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, payload = frames[0], frames[-1]
            if len(frames) == 3 and frames[1] == b"":
                reply = self.answer(payload)
            else:
                reply = protocol.encode_error(
                    protocol.BAD_MESSAGE, "a request is one frame sent from a REQ socket"
                )
            with contextlib.suppress(zmq.ZMQError):
                socket.send_multipart([identity, b"", reply], zmq.NOBLOCK)
            self._dispatch()  # a job just submitted starts at once

    def answer(self, payload: bytes) -> bytes:
        """The reply to one request; never raises."""
        try:
            request = protocol.decode_request(payload)
            log.debug("request %s %s", request.op, dict(request.fields))
            return protocol.encode_reply(**self.handlers[request.op](request))
        except ProtocolError as error:
            log.debug("refused: %s", error)
            return protocol.encode_error(error.code, str(error))
        except InputError as error:
            return protocol.encode_error(protocol.BAD_INPUT, str(error))
        except NotCached as error:
            return protocol.encode_error(protocol.CACHE_ERROR, str(error))
        except OSError as error:
            return protocol.encode_error(protocol.CACHE_ERROR, describe_os_error(error))
        except Exception as error:
            log.error("internal error answering a request:\n%s", traceback.format_exc())
            return protocol.encode_error(
                protocol.INTERNAL, f"internal error: {type(error).__name__}: {error}"
            )

    # ---- executors -------------------------------------------------------------------------

    def _keep_executors(self) -> None:
        """Start executors until there are as many as jobs may run at once (with a pause after
        failed starts)."""
        while len(self.executors) < self.config.jobs and time.monotonic() >= self.next_start:
            executor = Executor()
            log.debug("started executor %d", executor.pid)
            self.executors.append(executor)

    def _dispatch(self) -> None:
        for executor in self.executors:
            if not executor.idle or not self.table.queue:
                continue
            job = self.table.next_queued()
            assert job is not None
            scratch = self.scratch_root / job.id
            scratch.mkdir(mode=0o700, exist_ok=True)
            job.started = time.time()
            job.output_before = file_identity(job.output)
            job.progress(0.0, Stage.READING)
            limits = {
                "max_bytes": self.config.cache_limits.max_bytes,
                "min_free_bytes": self.config.cache_limits.min_free_bytes,
            }
            try:
                executor.start(job, job.task(self.config.cache_dir, scratch, limits))
            except OSError:  # the executor died just now; its closed pipe reports it
                log.warning("executor %d could not take job %s", executor.pid, job.id)
                continue
            log.info("job %s started on executor %d: %s", job.id, executor.pid, job.spec.input)

    def _read_executor(self, executor: Executor) -> None:
        events, closed = executor.read_events()
        for event in events:
            self._on_event(executor, event)
        if closed:
            self._on_executor_exit(executor, executor.reap())

    def _on_event(self, executor: Executor, event: dict[str, Any]) -> None:
        kind = event.get("event")
        job = executor.job
        if kind == "ready":
            executor.ready = True
            self.startup_failures = 0
            log.info("executor %d warm after %.2f s", executor.pid, event.get("seconds", 0))
        elif kind == "broken":
            executor.last_error = str(event.get("error"))
        elif job is None or event.get("job") != job.id:
            return
        elif kind == "progress":
            job.progress(float(event.get("fraction", 0.0)), str(event.get("stage")))
        elif kind == "done":
            job.report, job.note = event.get("report"), event.get("note")
            self._write_copies(job)
            self._finish(executor, job, Stage.DONE)
            if job.note:
                log.warning("job %s: %s", job.id, job.note)
        elif kind == "failed":
            if event.get("detail"):
                log.error("job %s failed:\n%s", job.id, event["detail"])
            self._finish(executor, job, Stage.FAILED, str(event.get("error")))

    def _write_copies(self, job: Job) -> None:
        """Give every same-key submit its own output: the one result, copied atomically."""
        for copy in job.copies:
            try:
                copy_atomically(Path(job.output), Path(copy))
            except OSError as error:
                job.note = f"could not write {copy}: {describe_os_error(error)}"
                log.error("job %s: %s", job.id, job.note)

    def _finish(self, executor: Executor | None, job: Job, stage: Stage, error: str = "") -> None:
        if executor is not None:
            executor.job = None
        if stage != Stage.DONE:
            _remove_partial_output(job)
            for staging in self.cache.root.glob(self.cache.staging_prefix(job.id) + "*"):
                shutil.rmtree(staging, ignore_errors=True)
            entry = self.cache.entry(job.key) if job.key else None
            if entry is not None and entry.record.get("job") == job.id:
                self.cache.remove(entry.key)  # stored just before the cancel landed
        shutil.rmtree(self.scratch_root / job.id, ignore_errors=True)
        self.table.end(job, stage, error or None)
        log.info("job %s %s%s", job.id, stage, f": {error}" if error else "")

    def _on_executor_exit(self, executor: Executor, how: str) -> None:
        self.executors.remove(executor)
        if executor.job is not None:
            self._finish(
                executor,
                executor.job,
                Stage.FAILED,
                f"the job's process ended unexpectedly ({how}); the worker carries on",
            )
        if executor.ready:
            log.warning("executor %d ended (%s)", executor.pid, how)
            return
        self.startup_failures += 1
        reason = executor.last_error or f"the engine's process ended at start-up ({how})"
        log.error("executor %d could not start: %s", executor.pid, reason)
        self.next_start = time.monotonic() + min(2.0**self.startup_failures, 30.0)
        if self.startup_failures >= STARTUP_FAILURES_BEFORE_GIVING_UP:
            while (job := self.table.next_queued()) is not None:
                self._finish(None, job, Stage.FAILED, reason)

    def _stop_all(self) -> None:
        """Kill the executors; jobs still running or waiting are cancelled."""
        for executor in self.executors:
            executor.kill()
            if executor.job is not None:
                self._finish(executor, executor.job, Stage.CANCELLED)
        self.executors.clear()
        while (job := self.table.next_queued()) is not None:
            self._finish(None, job, Stage.CANCELLED)
        shutil.rmtree(self.scratch_root, ignore_errors=True)

    # ---- operations ------------------------------------------------------------------------

    def ping(self, request: protocol.Request) -> dict[str, Any]:
        running = sum(1 for executor in self.executors if executor.job is not None)
        return {
            "version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "endpoint": self.config.endpoint,
            "uptime": round(time.time() - self.started, 3),
            "queued": len(self.table.queue),
            "running": running,
            "warm_executors": sum(1 for executor in self.executors if executor.ready),
            "job_slots": self.config.jobs,
        }

    def _job_reply(self, job: Job, **extra: Any) -> dict[str, Any]:
        return {**job.as_dict(), "position": self.table.position(job), **extra}

    def submit(self, request: protocol.Request) -> dict[str, Any]:
        spec = JobSpec(**request.fields)
        spec.validate()
        _check_paths(spec)
        existing = self.table.active_with_key(spec.key)
        if existing is not None:
            log.info("job %s submitted again (same key)", existing.id)
            if spec.output not in (existing.output, *existing.copies):
                existing.copies.append(spec.output)
            return self._job_reply(existing, duplicate=True)
        job = self.table.new(spec)
        if job.key and self.cache.lookup(job.key, Path(job.output)) is not None:
            entry = self.cache.entry(job.key)
            job.report = dict(entry.record.get("report", {})) if entry else None
            job.note = "from the cache"
            self.table.add(job, queued=False)
            self.table.end(job, Stage.DONE)
            log.info("job %s answered from the cache", job.id)
            return self._job_reply(job, duplicate=False)
        if job.key and spec.estimating:
            kernel = self.cache.kernel(job.key)
            if kernel is not None:
                job.spec = dataclasses.replace(spec, psf=str(kernel))
        self.table.add(job)
        log.info("job %s queued: %s -> %s", job.id, spec.input, spec.output)
        return self._job_reply(job, duplicate=False)

    def status(self, request: protocol.Request) -> dict[str, Any]:
        return self._job_reply(self.table.get(request["job"]))

    def cancel(self, request: protocol.Request) -> dict[str, Any]:
        job = self.table.get(request["job"])
        executor = next((e for e in self.executors if e.job is job), None)
        if executor is not None:
            self._read_executor(executor)  # it may have finished a moment ago
        if job.final:
            raise ProtocolError(
                f"job {job.id} has already ended ({job.stage})", protocol.NOT_FINISHED
            )
        if executor is not None:
            executor.kill()
            self.executors.remove(executor)
            self._keep_executors()  # a fresh one warms up in the background
        self._finish(executor, job, Stage.CANCELLED)
        return self._job_reply(job)

    def list_jobs(self, request: protocol.Request) -> dict[str, Any]:
        jobs = list(self.table.jobs.values())[-LIST_LIMIT:]
        keep = ("job", "stage", "fraction", "seconds_left", "input", "output", "error")
        return {"jobs": [{name: job.as_dict()[name] for name in keep} for job in jobs]}

    def cache_lookup(self, request: protocol.Request) -> dict[str, Any]:
        output = Path(request["output"]) if request["output"] else None
        found = self.cache.lookup(request["key"], output)
        return {"hit": found is not None, "path": str(found) if found else None}

    def cache_stats(self, request: protocol.Request) -> dict[str, Any]:
        return self.cache.stats()

    def cache_clean(self, request: protocol.Request) -> dict[str, Any]:
        return self.cache.clean(request["on_exit"], request["keep_results"])

    def shutdown(self, request: protocol.Request) -> dict[str, Any]:
        log.info("shutdown requested")
        self.stopping = True
        return {"stopping": True}


def _check_paths(spec: JobSpec) -> None:
    """Refuse a job at once when its input is missing or its output cannot be written."""
    source, target = Path(spec.input), Path(spec.output)
    if not source.exists():
        raise InputError(f"no such file: {source}")
    if not source.is_file():
        raise InputError(f"the input {source} is not a file")
    if spec.psf and not Path(spec.psf).is_file():
        raise InputError(f"no such PSF file: {spec.psf}")
    if target.resolve() == source.resolve():
        raise InputError("the output would overwrite the input; choose another output path")
    if target.is_dir():
        raise InputError(f"the output {target} is a folder")
    if not target.parent.is_dir():
        raise InputError(f"the output's folder does not exist: {target.parent}")
    if not os.access(target.parent, os.W_OK):
        raise InputError(f"cannot write in the output's folder: {target.parent}")
