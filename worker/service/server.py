"""The worker: a long-lived ZeroMQ server that queues jobs, runs them warm, and serves the cache.

Socket: a ROUTER. Each client request carries the client's identity, so one loop can answer many
clients in any order while it also watches the executors' pipes (a REP socket would force strict
receive-reply turns and one client at a time). A client that vanishes costs nothing: its reply is
dropped. Clients use a REQ socket per request (a fresh one after a time-out). So a reply may also
wait: a `status` that asks to is held until its job ends (`Held`), and a client following a job
learns of its end as it happens.

The loop never runs a job itself and never blocks on one: jobs run in executor processes
(`worker.service.jobs`), so a crash, a MemoryError or a cancel of a job cannot take the server
down, and every request up to `MAX_TRANSPORT_BYTES`, however malformed, gets a reply
(ZeroMQ drops a larger one and disconnects its sender).
"""

import contextlib
import math
import os
import shutil
import signal
import stat
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from cache.store import PSF, CacheLimits, ResultCache
from worker import __version__
from worker.atomic import copy_atomically, put_back, remove_dead, set_aside, temporaries
from worker.errors import (
    InputError,
    NameTaken,
    NotCached,
    ProtocolError,
    describe_error,
    describe_os_error,
)
from worker.jobspec import MAX_KERNEL_FILE, MAX_PATH, JobSpec, check_tiff_name
from worker.paths import runtime_dir
from worker.processes import process_alive, process_ended, process_start
from worker.regular import open_regular
from worker.service import protocol
from worker.service.background import Background
from worker.service.confine import check_inside
from worker.service.executor_process import Event, Executor
from worker.service.ipc_socket import SocketFile, endpoint_lock
from worker.service.jobs import Job, JobTable, file_identity
from worker.service.log import log
from worker.service.transport import (
    check_endpoint,
    ipc_path,
    private_files,
    secure_server,
    use_ipv6,
)
from worker.signals import STOPPING_SIGNALS
from worker.stages import Stage

POLL_MS = 100
MAX_TRANSPORT_BYTES = 1 << 20  # larger messages are dropped by ZeroMQ before they are read
STARTUP_FAILURES_BEFORE_GIVING_UP = 3
LIST_LIMIT = 50  # the most jobs in one page of a `list` reply (newest first)
MAX_QUEUED = 1000  # jobs that may wait or run at once; more submits are refused as `busy`
MAX_JOBS = 64  # jobs that may run at once (`--jobs`), each in an engine process of its own
CACHED_KERNEL = "cached-psf.npy"  # a job's own copy of its key's cached kernel, in its scratch
OUTPUT_NAME = "output"  # in a job's scratch folder: its output's path, for the next worker's sweep
DEAD_SETTLED = 1.0  # s: how old a dead worker's job's temporary must be to go (`remove_dead`)
STOP_GRACE = 3.0  # seconds a stopping worker still tells clients how their jobs ended
ANSWERED_WHILE_STOPPING = frozenset({"ping", "status", "list", "cancel", "shutdown"})
SOCKET_CHECK = 2.0  # seconds between checks that the ipc socket file is still the worker's
WATCH_CHECK = 0.25  # seconds between checks that the clients following jobs still run
MAX_HELD = 1000  # `status` replies that may be held for their jobs' ends at once; more answer now
SCRATCH_ROOM = 16 << 20  # free bytes a scratch folder needs: the largest kernel and its picture


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker runs: where it listens, its cache, how many jobs at once."""

    endpoint: str
    cache_dir: Path
    curve_dir: Path
    jobs: int = 1
    cache_limits: CacheLimits = field(default_factory=CacheLimits)
    idle_exit: float | None = None  # stop after this many seconds without requests or jobs
    max_queued: int = MAX_QUEUED
    # the only folders remote (CURVE) clients may name: inputs, outputs, kernels
    allowed_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Deferred:
    """A reply that needs slow file work: `work` runs off the loop (`Background`) and returns
    the reply's fields, which are sent when it ends."""

    work: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Held:
    """A `status` reply held until `job` ends or `deadline` (`time.monotonic`) passes, so that a
    client waiting for the job learns of its end at once instead of at its next request."""

    job: Job
    deadline: float


Handler = Callable[[protocol.Request], dict[str, Any] | Deferred | Held]


def own_report(report: object) -> dict[str, Any] | None:
    """A run's report as a job gives it: without the `output` it was written to, which is the
    job's own field (and, for a result copied from the cache, another caller's path).

    Parameters
    ----------
    report : object
        The report an executor or a cache record holds; anything but a dict is none.

    Returns
    -------
    dict or None
        The report less `output`; None when there is none.
    """
    if not isinstance(report, dict):
        return None
    return {name: value for name, value in report.items() if name != "output"}


def _remove_partial_output(job: Job) -> None:
    """Remove what a stopped job may have left: temporary output files, and the output itself
    when the job created or replaced it (it may have got that far just before the stop) and it
    is a file as the writer leaves one (not a folder, a pipe or a link put there meanwhile).
    A job that never replaces removes it only once caching (its executor reports that after
    writing the output): before, a new file there may be another program's, made while the job
    ran. Never raises: a failure is logged, and the job ends all the same."""
    output = Path(job.output)
    try:
        for partial in temporaries(output):
            partial.unlink(missing_ok=True)
        if not job.spec.replace and job.detail != Stage.CACHING:
            return
        if job.started is None or file_identity(job.output) == job.output_before:
            return
        if stat.S_ISREG(output.lstat().st_mode):  # what a writer renames into place, no more
            output.unlink()
    except OSError as error:  # the job ends all the same
        log.warning("job %s: could not remove %s: %s", job.id, output, describe_os_error(error))


class Server:
    """The worker's server loop and its request handlers.

    Each handler takes a checked request (`protocol.decode_request`) and returns the reply's
    fields, or raises; `answer` turns either into the reply's bytes.

    Parameters
    ----------
    config : WorkerConfig
        How the worker runs. Its cache folder is made now (`ResultCache`), and so is the
        `Background` for copies of results (a pipe now, up to two threads when needed), which
        `run` closes as it stops serving.

    Raises
    ------
    InputError
        When something other than a folder is at the cache's place.
    OSError
        When the cache folder or the runtime folder cannot be made.
    """

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
        self.background = Background()
        self.socket: zmq.Socket | None = None
        self.socket_file: SocketFile | None = None  # an ipc endpoint's, once bound
        self.next_socket_check = 0.0
        self.next_watch_check = 0.0
        self.held: list[tuple[bytes, Held]] = []  # each with the identity of the client it answers
        self.remote = False  # clients come from other machines (CURVE): confined to allowed_dirs
        self.handlers: dict[str, Handler] = {
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
        """Serve until `shutdown`, SIGINT or one of `STOPPING_SIGNALS`.

        It also stops after `WorkerConfig.idle_exit` seconds without requests or jobs, and
        when its ipc socket file was removed or replaced. On the way out, the executors are
        killed, the jobs that run or wait are cancelled, clients are still answered while
        copies of results are under way and for `STOP_GRACE` seconds after jobs that ended just
        now, and the scratch folders and the socket file (while still its own) are removed.

        Returns
        -------
        int
            The exit status: 0.

        Raises
        ------
        InputError
            When the worker cannot listen at the endpoint: malformed, taken by another worker,
            beyond the loopback interface without CURVE keys (`secure_server`), or refused by
            ZeroMQ (a tcp port in use).
        """
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
            use_ipv6(socket, config.endpoint)
            try:
                with private_files():  # an ipc socket only its user may connect to
                    socket.bind(config.endpoint)
            except zmq.ZMQError as error:
                there = ipc_path(config.endpoint)
                folder = there is not None and there.is_dir() and not there.is_symlink()
                why = "a folder is at the socket's place; remove it" if folder else error
                raise InputError(f"cannot listen on {config.endpoint}: {why}") from None
            socket_file = ipc_path(config.endpoint)
            if socket_file is not None:
                socket_file.chmod(0o600)
                self.socket_file = SocketFile(socket_file)
                stack.callback(self.socket_file.remove)
            self.remote = authenticator is not None
            stack.callback(self.background.close)
            stack.callback(self._stop_all)
            self.socket = socket
            self._prepare_folders()
            for signum in (*STOPPING_SIGNALS, signal.SIGINT):
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
            self._stop_all()
            self._answer_held()  # (every job has ended)
            self._answer_the_last_questions(socket)
        log.info("worker stopped")
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        self.stopping = True

    def _prepare_folders(self) -> None:
        """Remove what killed workers left: cache temporaries, scratch folders, and the
        temporaries their jobs' outputs were being written to (a worker killed with its
        executors, as its process group is, leaves them beside the outputs)."""
        removed = self.cache.remove_stale()
        for folder in runtime_dir().glob("scratch-*"):
            pid = folder.name.removeprefix("scratch-")
            if pid.isdigit() and not process_alive(int(pid)):
                for record in folder.glob(f"*/{OUTPUT_NAME}"):
                    with contextlib.suppress(OSError), open_regular(record, follow=False) as held:
                        remove_dead(os.fsdecode(held.read(MAX_PATH)), DEAD_SETTLED)
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        if removed:
            log.info("removed %d temporary folder(s) left by an earlier worker", removed)
        self.scratch_root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _loop(self, socket: zmq.Socket) -> None:
        while not self.stopping:
            try:
                self._turn(socket)
            except Exception:  # a bug or a failing disk: the queue and the clients stay served
                log.exception("internal error in the worker's loop")
                time.sleep(POLL_MS / 1000)

    def _turn(self, socket: zmq.Socket) -> None:
        """One turn of the loop: start jobs, wait for a request or an event, handle it."""
        self._keep_executors()
        self._cancel_unfollowed()
        self._dispatch()
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self.background.fileno(), zmq.POLLIN)
        for executor in self.executors:
            poller.register(executor.fileno(), zmq.POLLIN)
            poller.register(executor.error_fileno(), zmq.POLLIN)
        ready = dict(poller.poll(self._poll_ms()))
        if socket in ready:
            self._serve_requests(socket)
            self.last_activity = time.monotonic()
        if self.background.fileno() in ready:
            self.background.collect()
        for executor in list(self.executors):
            if executor.error_fileno() in ready:
                self._log_errors(executor)
            if executor.fileno() in ready:
                self._read_executor(executor)
        self._answer_held()
        busy = self.background.pending or any(executor.job for executor in self.executors)
        if self.table.queue or busy:
            self.last_activity = time.monotonic()
        elif self._idle_too_long():
            log.info("stopping after %.0f s without work", self.config.idle_exit)
            self.stopping = True
        if not self._reachable():
            self.stopping = True

    def _reachable(self) -> bool:
        """Whether clients can still reach this worker, looked at every `SOCKET_CHECK` seconds:
        a worker whose socket file was removed or replaced can never be reached again; it stops
        (cancelling its jobs, whose clients have lost them) rather than hold its memory."""
        now = time.monotonic()
        if self.socket_file is None or now < self.next_socket_check:
            return True
        self.next_socket_check = now + SOCKET_CHECK
        if self.socket_file.is_ours():
            return True
        log.warning("stopping: the socket %s was removed or replaced", self.socket_file.path)
        return False

    def _answer_the_last_questions(self, socket: zmq.Socket) -> None:
        """Go on answering while copies of results are under way (beside the loop: a cache
        hit's, a finished job's for the jobs that share it), and for `STOP_GRACE` seconds after
        the last job ended, when clients may be following jobs: each learns how its job ended
        (done when its copy was made; a job stopped here: cancelled), instead of finding no
        worker and no job. Requests that would start work are refused (`protocol.STOPPING`):
        their clients start the next worker.
        """
        recent = time.time() - 2 * STOP_GRACE
        jobs = self.table.jobs.values()
        if not self.background.pending and all(
            job.finished is not None and job.finished < recent for job in jobs
        ):
            return
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self.background.fileno(), zmq.POLLIN)
        deadline = time.monotonic() + STOP_GRACE
        while self.background.pending or time.monotonic() < deadline:
            ready = dict(poller.poll(self._poll_ms()))
            if socket in ready:
                self._serve_requests(socket)
            if self.background.fileno() in ready:
                self.background.collect()
                deadline = time.monotonic() + STOP_GRACE  # for the jobs that just ended
            self._answer_held()

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
            if isinstance(reply, Deferred):
                self._answer_later(identity, reply)
            elif isinstance(reply, Held):
                self.held.append((identity, reply))
            else:
                self._send(identity, reply)
            self._dispatch()  # a job just submitted starts at once

    def _send(self, identity: bytes, reply: bytes) -> None:
        if self.socket is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.socket.send_multipart([identity, b"", reply], zmq.NOBLOCK)

    def _answer_later(self, identity: bytes, deferred: Deferred) -> None:
        def then(future: "Future[dict[str, Any]]") -> None:
            reply = self._reply(future.result)
            assert isinstance(reply, bytes)  # the work returned the reply's fields
            self._send(identity, reply)

        self.background.run(deferred.work, then)

    def _answer_held(self) -> None:
        """Answer each held `status` whose job has ended or whose wait has run out."""
        now, still = time.monotonic(), []
        for identity, held in self.held:
            if held.job.final or now >= held.deadline:
                self._send(identity, protocol.encode_reply(**self._job_reply(held.job)))
            else:
                still.append((identity, held))
        self.held = still

    def _poll_ms(self) -> int:
        """How long the loop may wait for a request or an event: `POLL_MS`, or less when a held
        reply's wait runs out sooner."""
        if not self.held:
            return POLL_MS
        soonest = min(held.deadline for _, held in self.held) - time.monotonic()
        return min(POLL_MS, max(0, math.ceil(soonest * 1000)))

    def answer(self, payload: bytes) -> bytes | Deferred | Held:
        """The reply to one request, or the work that will make it; never raises.

        Parameters
        ----------
        payload : bytes
            The request's frame, as received: any bytes.

        Returns
        -------
        bytes or Deferred or Held
            The reply (`protocol.encode_reply`), or a failed one (`protocol.encode_error`)
            whose code says why: the request's own (`ProtocolError`: malformed, unknown job,
            busy, `protocol.STOPPING` for one that would start work on a stopping worker...),
            `protocol.BAD_INPUT` for another `InputError`, `protocol.CACHE_ERROR` for
            `NotCached` and any `OSError`, `protocol.INTERNAL` for anything else (a bug, logged
            with its traceback). A `Deferred` for a reply that needs slow file work, a `Held`
            one for a `status` that waits for its job's end.
        """

        def handle() -> dict[str, Any] | Deferred | Held:
            request = protocol.decode_request(payload)
            log.debug("request %s %s", request.op, dict(request.fields))
            if self.stopping and request.op not in ANSWERED_WHILE_STOPPING:
                raise ProtocolError(
                    "the worker is stopping: ask again in a moment (a new worker starts)",
                    protocol.STOPPING,
                )
            return self.handlers[request.op](request)

        return self._reply(handle)

    def _reply(
        self, handle: Callable[[], dict[str, Any] | Deferred | Held]
    ) -> bytes | Deferred | Held:
        """The reply for what `handle()` returns or raises (every error one line)."""
        try:
            fields = handle()
            if isinstance(fields, Deferred | Held):
                return fields
            return protocol.encode_reply(**fields)
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
            log.exception("internal error answering a request")
            return protocol.encode_error(
                protocol.INTERNAL, f"internal error: {type(error).__name__}: {error}"
            )

    # ---- executors -------------------------------------------------------------------------

    def _keep_executors(self) -> None:
        """Start executors until there are as many as jobs may run at once (with a pause after
        failed starts)."""
        while len(self.executors) < self.config.jobs and time.monotonic() >= self.next_start:
            executor = Executor(self._executor_folder())
            log.debug("started executor %d", executor.pid)
            self.executors.append(executor)

    def _dispatch(self) -> None:
        for executor in self.executors:
            if not executor.idle or not self.table.queue:
                continue
            job = self.table.next_queued()
            assert job is not None
            scratch = self._scratch(job)
            if scratch is not None:  # for the next worker, should this one die mid-write
                with contextlib.suppress(OSError):
                    (scratch / OUTPUT_NAME).write_bytes(os.fsencode(job.output))
            known = self._cached_kernel(job, scratch)
            job.started = time.time()
            job.output_before = file_identity(job.output)
            job.progress(0.0, Stage.READING)
            limits = {
                "max_bytes": self.config.cache_limits.max_bytes,
                "min_free_bytes": self.config.cache_limits.min_free_bytes,
            }
            try:
                task = job.task(self.config.cache_dir, scratch, limits, known, self._allowed())
                executor.start(job, task)
            except OSError:  # the executor died just now; its closed pipe reports it
                log.warning("executor %d could not take job %s", executor.pid, job.id)
                continue
            log.info("job %s started on executor %d: %s", job.id, executor.pid, job.spec.input)

    def _executor_folder(self) -> Path | None:
        """A private folder for a new executor's warm-up files, removed with the executor (and
        with the scratch folders if the worker is killed); None when the runtime disk cannot
        hold one: the executor then warms up in the system's temporary folder."""
        return self._scratch_folder(f"executor-{uuid.uuid4().hex[:12]}", "an executor warms up")

    def _scratch(self, job: Job) -> Path | None:
        """A private folder for the job's kernel; None when the runtime disk cannot hold one
        (full): the job then runs without caching its kernel."""
        return self._scratch_folder(job.id, f"job {job.id} runs")

    def _scratch_folder(self, name: str, what: str) -> Path | None:
        """The folder `name` in the worker's scratch folder, both made again (private) if someone
        removed them; None, with a warning that `what` goes without it, when the runtime disk
        cannot hold it (`SCRATCH_ROOM`)."""
        folder = self.scratch_root / name
        try:
            runtime_dir()  # made again, private, if it went
            self.scratch_root.mkdir(exist_ok=True, mode=0o700)
            folder.mkdir(exist_ok=True, mode=0o700)
            free = shutil.disk_usage(folder).free
        except OSError as error:
            log.warning("%s without a scratch folder: %s", what, describe_error(error))
            return None
        if free < SCRATCH_ROOM:
            log.warning("%s without a scratch folder: its disk is full", what)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return folder

    def _cached_kernel(self, job: Job, scratch: Path | None) -> dict[str, Any] | None:
        """The kernel the job's key has in the cache, for a job that would estimate it
        (`pipeline.KnownKernel`): its copy in the job's scratch folder, made now (so evicting
        the entry later cannot fail the job), and the report of the job that estimated it. None
        when the job finds no such kernel (any more), or is `--varying` (a kernel per part):
        the kernel is then estimated."""
        if not (job.key and job.spec.estimating and scratch is not None):
            return None
        entry = self.cache.entry(job.key)
        kernel = entry.file(PSF) if entry is not None else None
        if entry is None or kernel is None or job.spec.settings.varying:
            return None
        if entry.record["files"][PSF] > MAX_KERNEL_FILE:  # (no kernel: not copied whole first)
            return None
        copy = scratch / CACHED_KERNEL
        try:
            copy_atomically(kernel, copy)
        except OSError:  # evicted a moment ago, or no room: estimate it again
            return None
        record = entry.record
        return {"path": str(copy), "report": record.get("report"), "made": record.get("parameters")}

    def _read_executor(self, executor: Executor) -> None:
        events, closed = executor.read_events()
        for event in events:
            self._on_event(executor, event)
        if closed:  # (off the list first: whatever happens next, its pipes are not polled again)
            self.executors.remove(executor)
            self._log_errors(executor)
            self._on_executor_exit(executor, executor.reap())

    def _log_errors(self, executor: Executor) -> None:
        """What the executor wrote on its stderr (native libraries' warnings, a crash's
        traceback) goes into the rotated log, a line at a time."""
        for line in executor.read_errors():
            log.warning("executor %d: %s", executor.pid, line)

    def _on_event(self, executor: Executor, event: dict[str, Any]) -> None:
        kind = event.get("event")
        job = executor.job
        if kind == Event.READY:
            executor.ready = True
            self.startup_failures = 0
            log.info("executor %d warm after %.2f s", executor.pid, event.get("seconds", 0))
        elif kind == Event.BROKEN:
            executor.last_error = str(event.get("error"))
        elif job is None or event.get("job") != job.id:
            return
        elif kind == Event.PROGRESS:
            for each in (job, *self.table.followers(job)):
                each.progress(float(event.get("fraction", 0.0)), str(event.get("stage")))
        elif kind == Event.DONE:
            job.report, job.note = own_report(event.get("report")), event.get("note")
            alone = not job.withdrawn and not self.table.followers(job)
            self._finish(
                executor, job, Stage.CANCELLED if alone and self._unfollowed(job) else Stage.DONE
            )
            if job.note:
                log.warning("job %s: %s", job.id, job.note)
        elif kind == Event.FAILED:
            if event.get("detail"):  # a traceback: a record a line (`log.OneLineFormatter`)
                for line in str(event["detail"]).splitlines():
                    log.error("job %s failed: %s", job.id, line)
            job.taken = event.get("taken") is True
            self._finish(executor, job, Stage.FAILED, str(event.get("error")))

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
        followers = self.table.followers(job)
        if stage == Stage.DONE and (followers or job.withdrawn):
            self._hand_out(job, followers)
            return
        for follower in followers:
            # Only the leader's output's name failed when it was taken: a follower writing that
            # name fails so too, the others get the computation (`hand_over`).
            if not job.taken or follower.output == job.output:
                follower.taken = job.taken
                self.table.end(follower, stage, error or None)
        self.table.hand_over(job)  # (none left unless it was taken)
        if job.kept is not None:
            put_back(job.kept, job.output)
        self._end(job, Stage.CANCELLED if job.withdrawn else stage, error)

    def _end(self, job: Job, stage: Stage, error: str = "") -> None:
        self.table.end(job, stage, error or None)
        log.info("job %s %s%s", job.id, stage, f": {error}" if error else "")

    def _hand_out(self, job: Job, followers: list[Job]) -> None:
        """Give each follower of a finished job its own copy of the result, off the loop: a
        follower is done when its copy is written, failed (saying why) when it cannot be. The
        leader's own output goes afterwards when its client withdrew."""
        self.table.release_key(job)  # later submits of the key find the cache, not this job
        if not job.withdrawn:
            self._end(job, Stage.DONE)
        source = Path(job.output)
        others = [f for f in followers if f.output != job.output]
        # each output once, replaced only when no follower writing it forbids that
        targets = {
            f.output: all(o.spec.replace for o in others if o.output == f.output) for f in others
        }
        for follower in followers:
            follower.copying = True

        allowed = self._allowed()

        def copy_all() -> dict[str, OSError | InputError | None]:
            return {
                target: _copy_or_failure(source, Path(target), replace, allowed)
                for target, replace in targets.items()
            }

        def then(future: "Future[dict[str, OSError | InputError | None]]") -> None:
            for follower in followers:
                follower.copying = False
            failures = future.result()
            shared = any(f.output == job.output for f in self.table.followers(job))
            for follower in followers:
                self._follower_done(job, follower, failures.get(follower.output))
            if job.withdrawn:  # its output as it was before: the file it replaced, or none
                if shared and job.kept is not None:
                    job.kept.unlink(missing_ok=True)
                elif job.kept is not None:
                    put_back(job.kept, source)
                elif not shared:
                    source.unlink(missing_ok=True)
                self._end(job, Stage.CANCELLED)

        self.background.run(copy_all, then)

    def _follower_done(
        self, leader: Job, follower: Job, failure: OSError | InputError | None
    ) -> None:
        unwanted = follower.final or self._unfollowed(follower)
        if unwanted and failure is None and follower.output != leader.output:
            Path(follower.output).unlink(missing_ok=True)  # (kept for the copy: see `copying`)
        if follower.final:  # cancelled while its copy was made
            return
        if unwanted:  # its command has gone
            self._end(follower, Stage.CANCELLED)
            return
        if failure is not None:
            follower.taken = isinstance(failure, NameTaken)
            reason = describe_error(failure)
            self._end(follower, Stage.FAILED, f"could not write {follower.output}: {reason}")
            return
        follower.report, follower.note = leader.report, leader.note
        self._end(follower, Stage.DONE)

    def _on_executor_exit(self, executor: Executor, how: str) -> None:
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
        """Who answers (version, process and its start, endpoint, cache) and how busy it is.

        Parameters
        ----------
        request : protocol.Request
            The ``ping`` request (no fields).

        Returns
        -------
        dict
            ``version``, ``protocol``, ``pid``, ``started`` (`process_start`; None without
            ``/proc``), ``endpoint``, ``cache_dir``, ``uptime`` (seconds), ``queued`` (jobs in
            the queue), ``running`` (executors running a job, plus copies of results under
            way), ``warm_executors`` and ``job_slots`` (`WorkerConfig.jobs`).
        """
        running = sum(1 for executor in self.executors if executor.job is not None)
        return {
            "version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "started": process_start("self"),
            "endpoint": self.config.endpoint,
            "cache_dir": str(self.config.cache_dir),
            "uptime": round(time.time() - self.started, 3),
            "queued": len(self.table.queue),
            "running": running + self.background.pending,  # (copies of results: jobs writing)
            "warm_executors": sum(1 for executor in self.executors if executor.ready),
            "job_slots": self.config.jobs,
        }

    def _job_reply(self, job: Job, **extra: Any) -> dict[str, Any]:
        return {**job.as_dict(), "position": self.table.position(job), **extra}

    def submit(self, request: protocol.Request) -> dict[str, Any]:
        """Take a job: answered from the cache, following the job of its key that waits or
        runs, or queued.

        Parameters
        ----------
        request : protocol.Request
            The ``submit`` request: a `JobSpec`'s fields, and ``watcher`` (the process that
            follows the job, or None), which the job keeps when this worker sees that process
            run (`_watchable`).

        Returns
        -------
        dict
            The job (`Job.as_dict`), its ``position`` in the queue (None unless queued) and
            ``duplicate``: True when it follows a job of the same key.

        Raises
        ------
        ProtocolError
            Code `protocol.BUSY`: `WorkerConfig.max_queued` jobs wait or run already, or
            another job writes the same output (unless both have the same key). Neither a blur
            to find nor a kernel given: `protocol.BAD_MESSAGE`. A file at the output of a job
            that must not replace it (``replace: false``): `protocol.TAKEN`.
        InputError
            When the job cannot run as described (`JobSpec.validate`), names a path outside
            the allowed folders (remote clients), or its input or kernel is not a readable
            file, or its output is not a TIFF name or cannot be written (`JobSpec.check_files`,
            whose `OSError` becomes this), or lies inside the cache (`check_outside`).
        """
        fields = dict(request.fields)
        watcher = self._watchable(fields.pop("watcher"))
        spec = JobSpec(**fields)
        spec.validate()
        self._confine(spec.input, spec.output, spec.psf)
        try:
            spec.check_files()
        except NameTaken as error:  # (a client that chose a free name tells it from a failure)
            raise ProtocolError(describe_error(error), protocol.TAKEN) from None
        except OSError as error:  # an output that cannot be written: the job's, not the cache's
            raise InputError(describe_os_error(error)) from None
        self.cache.check_outside(spec.output)
        if self.table.active_count() >= self.config.max_queued:
            raise ProtocolError(
                f"the worker is busy: {self.config.max_queued} jobs wait or run already; "
                "try again when some have finished",
                protocol.BUSY,
            )
        writing = self.table.active_with_output(spec.output)
        # Two jobs for one output would write, or remove, each other's result: unless they are
        # one computation (the same key), whose copies are the same file. Checked before a job
        # joins its key's: a follower writes its output too.
        # Nor may a job that must not replace share an output with one that may: the name's
        # file would be replaced, or the second told its name was taken by the first.
        if writing is not None and (
            spec.key is None or writing.key != spec.key or writing.spec.replace != spec.replace
        ):
            raise ProtocolError(
                f"job {writing.id} is writing {spec.output} already: wait for it to finish, "
                "or choose another output",
                protocol.BUSY,
            )
        existing = self.table.active_with_key(spec.key)
        if existing is not None:
            follower = self.table.follow(existing, spec)
            follower.watcher = watcher
            log.info("job %s follows job %s (same key)", follower.id, existing.id)
            return self._job_reply(follower, duplicate=True)
        job = self.table.new(spec)
        job.watcher = watcher
        if job.key and self.cache.has_result(job.key):
            self._copy_from_cache(job)
        else:
            self.table.add(job)
            log.info("job %s queued: %s -> %s", job.id, spec.input, spec.output)
        return self._job_reply(job, duplicate=False)

    def _copy_from_cache(self, job: Job) -> None:
        """Answer `job` from the cache: its result copied to the output off the loop (a large
        file to another disk takes seconds); queued after all when the entry went meanwhile."""
        assert job.key is not None
        key = job.key
        job.note = protocol.FROM_CACHE
        self.table.add(job, queued=False)
        job.progress(0.0, Stage.WRITING)
        job.copying = True

        def copy() -> tuple[Path | None, dict[str, Any] | None]:
            if job.final:  # cancelled before its turn came
                return None, None
            entry = self.cache.entry(key)
            report = entry.record.get("report") if entry is not None else None
            return self.cache.lookup(key, Path(job.output), replace=job.spec.replace), report

        def then(future: "Future[tuple[Path | None, dict[str, Any] | None]]") -> None:
            job.copying = False
            try:
                found, report = future.result()
            except Exception as error:  # the job ends whatever went wrong (a bug: logged too)
                if not job.final:
                    job.taken = isinstance(error, NameTaken)
                    self._end(job, Stage.FAILED, describe_error(error))
                if not isinstance(error, OSError | NotCached | InputError):
                    raise
                return
            gone = self._unfollowed(job)
            if found is not None and (job.final or gone):  # nobody wants it
                Path(job.output).unlink(missing_ok=True)  # (the output was kept for the copy)
            if job.final:
                return
            if found is None:  # evicted meanwhile: compute it after all
                job.note = None
                self.table.enqueue(job)
            else:
                job.report = own_report(report)  # (the record's names the computing job's output)
                self._end(job, Stage.CANCELLED if gone else Stage.DONE)

        self.background.run(copy, then)

    def status(self, request: protocol.Request) -> dict[str, Any] | Held:
        """Where one job stands: now, or once it ends if it ends within the request's wait.

        A client following a job asks with a wait (`Client.wait`): the reply is held until the
        job ends or the wait runs out (`_answer_held`), so the client learns of the end as it
        happens, where asking again and again would learn it up to an interval late.

        Parameters
        ----------
        request : protocol.Request
            The ``status`` request: ``job``, its id, and ``wait``, the seconds the reply may be
            held (up to `protocol.MAX_STATUS_WAIT`; None or 0: answered now).

        Returns
        -------
        dict or Held
            The job (`Job.as_dict`) and its ``position`` in the queue (None unless queued); a
            `Held` reply for a job that has not ended, when the request waits and fewer than
            `MAX_HELD` replies are held already.

        Raises
        ------
        ProtocolError
            Code `protocol.UNKNOWN_JOB`: no such job (`JobTable.get`).
        """
        job = self.table.get(request["job"])
        wait = request["wait"]
        if wait and not job.final and len(self.held) < MAX_HELD:
            return Held(job, time.monotonic() + wait)
        return self._job_reply(job)

    def cancel(self, request: protocol.Request) -> dict[str, Any]:
        """Cancel one client's job (`_cancel`).

        Parameters
        ----------
        request : protocol.Request
            The ``cancel`` request: ``job``, its id.

        Returns
        -------
        dict
            The job after the cancel (`Job.as_dict`): cancelled (a withdrawn leader shows so
            while it waits or runs on for its followers), and its ``position`` in the queue.

        Raises
        ------
        ProtocolError
            Code `protocol.UNKNOWN_JOB`: no such job; `protocol.NOT_FINISHED`: it has already
            ended (or was withdrawn).
        """
        job = self.table.get(request["job"])
        if not self._cancel(job):
            raise ProtocolError(
                f"job {job.id} has already ended ({job.as_dict()['stage']})", protocol.NOT_FINISHED
            )
        return self._job_reply(job)

    def _cancel(self, job: Job) -> bool:
        """Cancel `job`; False when it had ended already. Same-key jobs share a computation: it
        stops only when no job wants its result any more."""
        executor = next((e for e in self.executors if e.job is job), None)
        if executor is not None:
            self._read_executor(executor)  # it may have finished a moment ago
        if job.final or job.withdrawn:
            return False
        leader = self.table.jobs.get(job.leader) if job.leader else None
        if leader is not None:  # a follower: only this client's share goes
            self._end(job, Stage.CANCELLED)
            if leader.withdrawn and not self.table.followers(leader):
                self._stop(leader)
        elif self.table.followers(job):
            job.withdrawn = True
            job.kept = set_aside(job.output)  # put back when the run ends: it was cancelled
            log.info("job %s withdrawn; it runs on for the jobs that follow it", job.id)
        else:
            self._stop(job)
        return True

    def _cancel_unfollowed(self) -> None:
        """Cancel the jobs whose watcher (`submit --wait`) has gone, looked at every
        `WATCH_CHECK` seconds. A client stopped by a signal it can catch cancels its job itself;
        one killed outright (SIGKILL, as when darktable's whole process group is killed) cannot,
        and its job's result would land beside the picture with nobody to import it. A paused
        client, or one waiting for a paused worker, still runs: its job goes on."""
        now = time.monotonic()
        if now < self.next_watch_check:
            return
        self.next_watch_check = now + WATCH_CHECK
        for job in list(self.table.jobs.values()):
            if job.watcher is None or job.final or job.withdrawn:
                continue
            if self._unfollowed(job) and self._cancel(job):
                log.info("job %s cancelled: the process that followed it ended", job.id)

    @staticmethod
    def _unfollowed(job: Job) -> bool:
        """Whether the process that followed `job` has ended (`process_ended`; False for a job
        nobody follows, and where ``/proc`` cannot be read at the moment)."""
        return job.watcher is not None and process_ended(*job.watcher)

    def _watchable(self, watcher: tuple[int, int] | None) -> tuple[int, int] | None:
        """`watcher` when this worker sees that process run (a client on this machine, in this
        worker's pid namespace); else None, and the job runs to its end."""
        if watcher is None or self.remote or process_start(watcher[0]) != watcher[1]:
            return None
        return watcher

    def _stop(self, job: Job) -> None:
        """Stop a job's computation now (its executor is killed) and cancel it."""
        executor = next((e for e in self.executors if e.job is job), None)
        if executor is not None:
            executor.kill()
            self.executors.remove(executor)
        self._finish(executor, job, Stage.CANCELLED)
        self._keep_executors()  # a fresh one warms up in the background

    def _allowed(self) -> list[str] | None:
        """The folders remote clients are confined to; None when clients are local."""
        return [str(folder) for folder in self.config.allowed_dirs] if self.remote else None

    def _confine(self, *paths: str | None) -> None:
        """For remote clients, refuse any path outside the allowed folders, before anything
        looks at it (`confine.check_inside`)."""
        check_inside(paths, self._allowed())

    def list_jobs(self, request: protocol.Request) -> dict[str, Any]:
        """One page of jobs, newest first, as many as fit in one message.

        Parameters
        ----------
        request : protocol.Request
            The ``list`` request: ``start``, how many of the newest jobs to skip (None: 0).

        Returns
        -------
        dict
            ``jobs``: at most `LIST_LIMIT` jobs, each with ``job``, ``stage``, ``fraction``,
            ``seconds_left``, ``input``, ``output`` and ``error`` (`Job.as_dict`), at least one
            when any is left; ``next``: where the following page starts (None: no more).
        """
        keep = ("job", "stage", "fraction", "seconds_left", "input", "output", "error")
        jobs = list(reversed(self.table.jobs.values()))
        start = request["start"] or 0
        page: list[dict[str, Any]] = []
        room = protocol.MAX_MESSAGE_BYTES - 1024  # the reply's other fields
        for job in jobs[start : start + LIST_LIMIT]:
            shown = job.as_dict()
            entry = {name: shown[name] for name in keep}
            room -= protocol.encoded_size(entry) + 1
            if room < 0 and page:
                break
            page.append(entry)
        following = start + len(page)
        return {"jobs": page, "next": following if following < len(jobs) else None}

    def cache_lookup(self, request: protocol.Request) -> dict[str, Any] | Deferred:
        """Whether the cache holds a result for the key, copied to `output` when one is named
        (off the loop: a large result to another disk takes seconds).

        Parameters
        ----------
        request : protocol.Request
            The ``cache_lookup`` request: ``key``, ``output`` (an absolute path, or None) and
            ``replace`` (whether the copy replaces a file at `output`).

        Returns
        -------
        dict or Deferred
            ``hit`` (bool) and ``path``: the result's path in the cache (without `output`), or
            `output` (None on a miss). With `output`, the `Deferred` that makes that reply once
            the copy is made (`ResultCache.lookup`); a copy that fails is answered as an error.

        Raises
        ------
        InputError
            When `output` is outside the allowed folders (remote clients), or is not a TIFF
            name.
        """
        key = request["key"]
        self._confine(request["output"])
        if not request["output"]:
            found = self.cache.lookup(key)
            return {"hit": found is not None, "path": str(found) if found else None}
        check_tiff_name(request["output"])
        output = Path(request["output"])

        def copy() -> dict[str, Any]:  # a large result to another disk: seconds
            found = self.cache.lookup(key, output, replace=request["replace"])
            return {"hit": found is not None, "path": str(found) if found else None}

        return Deferred(copy)

    def cache_stats(self, request: protocol.Request) -> dict[str, Any]:
        """What the cache holds and its limits (`ResultCache.stats`).

        Parameters
        ----------
        request : protocol.Request
            The ``cache_stats`` request (no fields).

        Returns
        -------
        dict
            ``root``, ``exists``, ``entries``, ``results``, ``kernels``, ``bytes``, ``max_bytes``,
            ``min_free_bytes`` and ``free_bytes``.
        """
        return self.cache.stats()

    def cache_clean(self, request: protocol.Request) -> dict[str, Any]:
        """Empty the cache, or on darktable's exit drop its large results (`ResultCache.clean`).

        Parameters
        ----------
        request : protocol.Request
            The ``cache_clean`` request: ``on_exit`` and ``keep_results`` (booleans, False
            unless given).

        Returns
        -------
        dict
            ``entries_removed``, ``results_removed`` and ``bytes_freed``.

        Raises
        ------
        OSError
            When an entry cannot be removed: answered as `protocol.CACHE_ERROR`.
        """
        return self.cache.clean(request["on_exit"], request["keep_results"])

    def shutdown(self, request: protocol.Request) -> dict[str, Any]:
        """Stop: running jobs are cancelled, copies finished, clients told (`STOP_GRACE`).

        The loop ends after this turn (`run`); until then, and while it stops, requests that
        would start work are refused (`protocol.STOPPING`).

        Parameters
        ----------
        request : protocol.Request
            The ``shutdown`` request (no fields).

        Returns
        -------
        dict
            ``{"stopping": True}``.
        """
        log.info("shutdown requested")
        self.stopping = True
        return {"stopping": True}


def _copy_or_failure(
    source: Path, target: Path, replace: bool, allowed: list[str] | None
) -> OSError | InputError | None:
    """Copy `source` to `target` atomically (over a file there only if `replace`); None when
    done, else what failed. A remote client's `target` must still lie inside the `allowed`
    folders (`confine.check_inside`)."""
    try:
        check_inside([str(target)], allowed)
        copy_atomically(source, target, replace)
    except (InputError, OSError) as error:
        return error
    return None
