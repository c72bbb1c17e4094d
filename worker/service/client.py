"""The client side of the worker: requests over ZeroMQ, waiting for jobs, starting a worker.

It reaches the worker only through its socket and shares only `protocol.py` (and the endpoint and
key conventions of `transport.py`) with it.
"""

import contextlib
import fcntl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import zmq

from worker import __version__
from worker.errors import InputError, RemoteError, WorkerUnavailable
from worker.paths import curve_dir as default_curve_dir
from worker.paths import made_state_dir, runtime_dir, start_log_file
from worker.processes import process_start
from worker.service import protocol
from worker.service.transport import (
    check_endpoint,
    ipc_path,
    is_loopback,
    lock_file,
    missing_client_keys,
    private_folder,
    secure_client,
    tcp_host,
)
from worker.signals import held
from worker.stages import Stage

POLL_INTERVAL = 0.15  # seconds between status requests while waiting for a job
START_TIMEOUT = 60.0  # seconds a freshly started worker may take to answer
STOP_TIMEOUT = 60.0  # seconds a stopping worker may take to go (its last copies made)
MISUNDERSTOOD = (protocol.BAD_MESSAGE, protocol.UNKNOWN_OPERATION)  # maybe another version's
AUTO_STARTED_IDLE_EXIT = 3600  # seconds
STARTED_HERE = "started_here"  # set in `ensure_worker`'s reply: this process started the worker


class Client:
    """Requests to the worker at `endpoint`, each answered within `timeout` seconds.

    The client owns a ZeroMQ context until `close()` (or the end of a `with` block); each request
    uses a socket of its own, closed before `request` returns. Use one client per thread.

    Parameters
    ----------
    endpoint : str
        The worker's address, ``ipc:///PATH`` or ``tcp://HOST:PORT``; only its shape is
        checked (`check_endpoint`), not whether a worker may listen there.
    timeout : float, optional
        Seconds a request waits for its reply unless it says otherwise.
    curve_dir : Path or None, optional
        The CURVE folder, for a tcp endpoint (`secure_client`); None: `paths.curve_dir`.

    Raises
    ------
    InputError
        When `endpoint` is malformed.
    """

    def __init__(self, endpoint: str, timeout: float = 10.0, curve_dir: Path | None = None) -> None:
        check_endpoint(endpoint, curve=True)  # its shape (where a worker may listen: its own)
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve_dir = curve_dir or default_curve_dir()
        self.context = zmq.Context()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the ZeroMQ context (idempotent), closing any socket still open: a signal
        that stops the command (`worker.cli`) can interrupt a request before its socket is
        closed, and `term` would then wait for that socket for ever."""
        self.context.destroy(linger=0)

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply's fields.

        Parameters
        ----------
        op : str
            The operation (`protocol.OPERATIONS`).
        timeout : float or None, optional
            Seconds to wait for the reply; None (or 0): the client's `timeout`.
        **fields : Any
            The request's fields, JSON-ready.

        Returns
        -------
        dict
            The reply (`protocol.decode_reply`): the whole object, ``v`` and ``ok`` included,
            the fields a client reads of `op`'s reply checked.

        Raises
        ------
        WorkerUnavailable
            When nobody answers in time, or at once when an ipc endpoint's socket file is not
            there.
        RemoteError
            When the worker refuses the request (its code says why).
        InputError
            When the worker refused it as malformed or unknown (`protocol.BAD_MESSAGE`,
            `protocol.UNKNOWN_OPERATION`) and a ping shows it is of another version than this
            client.
        ProtocolError
            When the request itself is malformed (checked before it is sent), or the reply is.
        """
        reply = self._exchange(protocol.encode_request(op, **fields), timeout)
        try:
            return protocol.decode_reply(reply, op)
        except RemoteError as error:
            if error.code in MISUNDERSTOOD and op != "ping":
                self._check_version()
            raise

    def _check_version(self) -> None:
        """Raise `InputError` when the worker is of another version than this client (a request
        it did not understand, after an upgrade that left the old worker running)."""
        reply = self.ping()
        if reply is not None and reply["version"] != __version__:
            raise InputError(another_version(self.endpoint, reply["version"]))

    def _exchange(self, data: bytes, timeout: float | None) -> bytes:
        """Send a request's bytes and return the reply's. An ipc socket that is not there has
        no worker behind it: that is said at once, not after the time-out."""
        socket_file = ipc_path(self.endpoint)
        if socket_file is not None and not socket_file.exists():
            raise WorkerUnavailable(self.unanswered())
        # Made and closed whole: a stop that came inside pyzmq's bookkeeping of the socket left
        # one open that `close` (`Context.destroy`) did not know of, and the exit waited for it.
        with held():
            socket = self.context.socket(zmq.REQ)
            socket.linger = 0
        wait = int(1000 * (timeout or self.timeout))
        try:
            secure_client(socket, self.endpoint, self.curve_dir)
            # A send waits for a connection; one the worker refuses (CURVE keys it does not
            # take) may leave none, and without a limit the send waited for ever (CI saw it).
            socket.sndtimeo = wait
            socket.connect(self.endpoint)
            socket.send(data)
            if not socket.poll(wait, zmq.POLLIN):
                raise WorkerUnavailable(self.unanswered())
            return socket.recv()
        except zmq.Again:  # the send's limit
            raise WorkerUnavailable(self.unanswered()) from None
        finally:
            with held():
                socket.close()

    def unanswered(self) -> str:
        """What to say when no worker answers: where, and for a tcp endpoint without CURVE keys
        here, that a worker using CURVE answers no client without them.

        Returns
        -------
        str
            One line.
        """
        said = f"no worker answers at {self.endpoint}"
        missing = missing_client_keys(self.curve_dir) if tcp_host(self.endpoint) else []
        if not missing:
            return said
        return (
            f"{said} (or one that takes CURVE keys only: {self.curve_dir} holds no "
            f"{' and no '.join(missing)} for this client)"
        )

    def ping(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The worker's ping reply, or None when none answers within `timeout`.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for the reply.

        Returns
        -------
        dict or None
            The reply (`Server.ping`): ``version``, ``pid``, ``started`` and the rest; None when
            no worker answers.

        Raises
        ------
        RemoteError
            When the worker refuses the ping.
        ProtocolError
            When the reply is malformed, or lacks a field this client reads (a much older
            worker).
        """
        try:
            return self.request("ping", timeout=timeout)
        except WorkerUnavailable:
            return None

    def wait(
        self,
        job_id: str,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        worker: dict[str, Any] | None = None,
        interval: float = POLL_INTERVAL,
    ) -> dict[str, Any]:
        """Follow job `job_id` until it ends: its status every `interval` seconds, and at once
        when it ends (the worker holds each reply until then, for one interval at most).

        A worker that does not answer in time is waited for as long as its process lives
        (`worker_lives`): paused, or swapping, it runs the job on, whose result would otherwise
        appear after this client gave up.

        Parameters
        ----------
        job_id : str
            The job's id (`submit`'s reply).
        on_update : callable or None, optional
            Called with each status reply, the last (final) one included. None: not called.
        worker : dict or None, optional
            The ping reply of the worker that runs the job, to tell whether its process still
            lives. None: a worker that does not answer in time counts as gone.
        interval : float, optional
            Seconds between status replies while the job runs, at most
            `protocol.MAX_STATUS_WAIT` (each costs the worker and this process some CPU).

        Returns
        -------
        dict
            The last status reply (`protocol.REPLIES`' ``status``), whose stage is final:
            done, failed or cancelled.

        Raises
        ------
        WorkerUnavailable
            When the worker stopped answering and its process is gone (or cannot be seen), or
            it no longer knows the job (it stopped, or was restarted, before the job ended).
        RemoteError
            When it refuses the status request for another reason.
        ProtocolError
            When a reply is malformed.
        """
        while True:
            asked = time.monotonic()
            try:
                # Held by the worker until the job ends, or for one interval (`Server.status`).
                status = self.request("status", job=job_id, wait=interval)
            except WorkerUnavailable:
                if worker is not None and worker_lives(worker):
                    time.sleep(interval)
                    continue
                raise WorkerUnavailable(
                    f"the worker at {self.endpoint} stopped answering while job {job_id} ran"
                ) from None
            except RemoteError as error:
                if error.code != protocol.UNKNOWN_JOB:
                    raise
                raise WorkerUnavailable(
                    f"job {job_id} is gone: its worker stopped, or was restarted, before it ended"
                ) from None
            if on_update is not None:
                on_update(status)
            if Stage(status["stage"]).final:
                return status
            time.sleep(max(0.0, asked + interval - time.monotonic()))  # (answered early)


def worker_lives(reply: dict[str, Any]) -> bool:
    """Whether the worker that sent ping `reply` still runs on this machine.

    Parameters
    ----------
    reply : dict
        A worker's ping reply: its ``pid`` and ``started`` (`process_start`).

    Returns
    -------
    bool
        True when its pid names a process here that started when it says (not one of another
        machine or container, nor a later process given its pid). A worker that does not say
        when it started (engine 0.3.20 or older, or one without ``/proc``) counts as gone.
    """
    started = reply.get("started")
    return started is not None and process_start(reply["pid"]) == started


def can_start_locally(endpoint: str) -> bool:
    """Whether this machine may start the worker for `endpoint`.

    Parameters
    ----------
    endpoint : str
        The worker's address.

    Returns
    -------
    bool
        True for an ipc endpoint (a socket of this machine's) and a tcp one on a loopback
        address (`is_loopback`).
    """
    host = tcp_host(endpoint)
    return ipc_path(endpoint) is not None or (host is not None and is_loopback(host))


@contextlib.contextmanager
def start_lock(endpoint: str) -> Iterator[None]:
    """An exclusive lock held while one client starts the worker for `endpoint`.

    The lock is a file, ``NAME.start.lock`` beside an ipc endpoint's socket file NAME (its
    folder is made if missing), or ``tcp.start.lock`` in the runtime folder for every tcp
    endpoint.

    Parameters
    ----------
    endpoint : str
        The worker's address.

    Yields
    ------
    None
        Once the lock is held (waiting as long as another client holds it); it is released
        when the block ends.

    Raises
    ------
    InputError
        When the lock's folder cannot be made or is refused (`private_folder`: not a private
        folder of this user's, as the worker refuses it), or the lock file cannot be used
        (`lock_file`).
    OSError
        When the runtime folder (a tcp endpoint's lock's) cannot be made (`paths.runtime_dir`).
    """
    socket_file = ipc_path(endpoint)
    folder = socket_file.parent if socket_file else runtime_dir()
    private_folder(folder)
    name = (socket_file.name if socket_file else "tcp") + ".start.lock"
    with lock_file(folder / name) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start_log() -> IO[bytes]:
    """Where a worker started here writes its own output, which tells why a start failed.

    Returns
    -------
    IO[bytes]
        `worker-start.log` in the state folder, emptied and opened for reading and writing;
        an unnamed temporary file where that cannot be written (a read-only state folder must
        not keep the worker from starting). The caller closes it.
    """
    try:
        made_state_dir()
        return open(start_log_file(), "w+b")
    except OSError:
        return tempfile.TemporaryFile()


def worker_command(endpoint: str, cache_dir: Path | None) -> list[str]:
    """The command that starts a worker on demand; it stops by itself after an idle hour, so
    that one left behind (darktable crashed) does not hold its memory for ever.

    Parameters
    ----------
    endpoint : str
        Where the worker listens.
    cache_dir : Path or None
        Its result cache, made absolute; None: the worker's default.

    Returns
    -------
    list of str
        ``python -m worker worker --endpoint ENDPOINT --idle-exit 3600 [--cache-dir DIR]``,
        run by this Python (`sys.executable`).
    """
    command = [sys.executable, "-m", "worker", "worker", "--endpoint", endpoint]
    command += ["--idle-exit", str(AUTO_STARTED_IDLE_EXIT)]
    return command + (["--cache-dir", str(cache_dir.absolute())] if cache_dir else [])


def another_version(endpoint: str, version: str) -> str:
    """Why a worker of `version` cannot serve this client.

    Parameters
    ----------
    endpoint : str
        The worker's address.
    version : str
        The worker's version, from its ping reply.

    Returns
    -------
    str
        One line for the user, saying how to replace the worker.
    """
    return (
        f"the worker at {endpoint} runs dt-deconvolve {version}, this is {__version__}: let its "
        "jobs end, then stop it (dt-deconvolve shutdown); the next job starts a new one"
    )


def stop_old_worker(client: Client, reply: dict[str, Any]) -> None:
    """Stop the worker that sent ping `reply`, of another version than this client (left
    running by an upgrade), when it is idle and on this machine, and wait until it has gone.

    Parameters
    ----------
    client : Client
        A client of that worker.
    reply : dict
        Its ping reply: ``version``, ``running`` and ``queued`` tell whether it may be stopped.

    Raises
    ------
    InputError
        When it may not be stopped: it runs or queues jobs, or its endpoint is not this
        machine's (`can_start_locally`).
    WorkerUnavailable
        When it does not answer the shutdown request, or has not gone within `STOP_TIMEOUT`
        seconds (`wait_until_gone`).
    RemoteError
        When it refuses the shutdown request.
    """
    if not can_start_locally(client.endpoint) or reply["running"] or reply["queued"]:
        raise InputError(another_version(client.endpoint, reply["version"]))
    client.request("shutdown")
    wait_until_gone(client, reply)


def wait_until_gone(client: Client, going: dict[str, Any]) -> None:
    """Wait until the worker that sent ping reply `going` has gone: it no longer answers (or
    another answers) and its process has ended (it may still finish copies of results, or hold
    its socket, without answering).

    Parameters
    ----------
    client : Client
        A client of its endpoint.
    going : dict
        Its ping reply: ``pid`` and ``started`` (`worker_lives`).

    Raises
    ------
    WorkerUnavailable
        When it has not gone after `STOP_TIMEOUT` seconds.
    """
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        reply = client.ping(timeout=0.5)
        if (reply is None or reply["pid"] != going["pid"]) and not worker_lives(going):
            return
        if time.monotonic() > deadline:
            raise WorkerUnavailable(
                f"the worker at {client.endpoint} is stopping, but has not stopped after "
                f"{STOP_TIMEOUT:.0f} s"
            )
        time.sleep(POLL_INTERVAL)


def next_worker(
    client: Client, going: dict[str, Any], cache_dir: Path | None = None
) -> dict[str, Any]:
    """The worker that follows a stopping one (which refused a job as `protocol.STOPPING`):
    started once that one has gone, unless another client did.

    Parameters
    ----------
    client : Client
        A client of their endpoint.
    going : dict
        The stopping worker's ping reply.
    cache_dir : Path or None, optional
        The result cache for a worker started here (`worker_command`); None: its default.

    Returns
    -------
    dict
        The new worker's ping reply, of this client's version (`ensure_worker`).

    Raises
    ------
    WorkerUnavailable
        When the stopping worker has not gone within `STOP_TIMEOUT` seconds, or no new one
        answers (`ensure_worker`).
    InputError
        When a worker of another version answers (`ensure_worker`).
    """
    wait_until_gone(client, going)
    return ensure_worker(client, cache_dir)


def current(client: Client, reply: dict[str, Any]) -> dict[str, Any]:
    """Ping `reply`, of a worker of this version.

    Parameters
    ----------
    client : Client
        A client of that worker (for its endpoint, in the message).
    reply : dict
        The worker's ping reply.

    Returns
    -------
    dict
        `reply` itself.

    Raises
    ------
    InputError
        When the worker is of another version (one that something restarts at once, faster
        than this client's).
    """
    if reply["version"] != __version__:
        raise InputError(another_version(client.endpoint, reply["version"]))
    return reply


def answered(reply: dict[str, Any], started_here: bool) -> dict[str, Any]:
    """A copy of a ping `reply` that says whether this process started the worker.

    Parameters
    ----------
    reply : dict
        The worker's ping reply.
    started_here : bool
        Whether this process started it.

    Returns
    -------
    dict
        `reply` with `STARTED_HERE` set.
    """
    return {**reply, STARTED_HERE: started_here}


def ensure_worker(client: Client, cache_dir: Path | None = None) -> dict[str, Any]:
    """Return the ping reply of a worker of this version, starting a detached worker first if
    none answers; an idle one of another version is stopped first (`stop_old_worker`). The reply
    holds `STARTED_HERE`: True where this call started the worker that answers.

    A lock (`start_lock`) makes clients that find no worker (or an old one) at the same moment
    start only one, and stop only the old one. The worker it starts is meant to outlive this
    process: it runs in a session of its own, in the folder ``/``, writing to `start_log`, and
    this function lets go of it once it answers (its parent's exit hands it to init, which reaps
    it).

    Parameters
    ----------
    client : Client
        A client of the worker's endpoint.
    cache_dir : Path or None, optional
        The result cache of a worker started here (`worker_command`); None: its default. A
        worker that already answers keeps its own.

    Returns
    -------
    dict
        The worker's ping reply (`Client.ping`), with `STARTED_HERE`.

    Raises
    ------
    WorkerUnavailable
        When no worker answers at an endpoint this machine may not start one for
        (`can_start_locally`); the worker started here ended (the last line of its output
        says why) or did not answer within `START_TIMEOUT` seconds; or an old one did not go
        (`stop_old_worker`).
    InputError
        When the worker that answers is of another version and cannot be stopped (busy, or not
        on this machine), or one of another version answers again once it was stopped (or in
        place of the one started here).
    """
    reply = client.ping()
    if reply is not None and reply["version"] == __version__:
        return answered(reply, False)
    if not can_start_locally(client.endpoint):
        if reply is not None:
            return answered(current(client, reply), False)
        raise WorkerUnavailable(client.unanswered())
    with start_lock(client.endpoint):
        reply = client.ping()  # another client may have started it (or stopped the old one)
        if reply is not None and reply["version"] != __version__:
            stop_old_worker(client, reply)
            reply = client.ping()
        if reply is not None:
            return answered(current(client, reply), False)
        with start_log() as log:
            process = subprocess.Popen(
                worker_command(client.endpoint, cache_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd="/",  # not the caller's folder, which it would keep busy for its idle hour
            )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                reply = client.ping(timeout=0.5)
                if reply is not None:  # (ours, unless another started in its place)
                    return answered(current(client, reply), reply["pid"] == process.pid)
                if process.poll() is not None:
                    log.seek(0)
                    lines = log.read().decode(errors="replace").strip().splitlines()
                    reason = lines[-1] if lines else f"exit status {process.returncode}"
                    reason = reason.partition(": error: ")[2] or reason  # its "dt-deconvolve: "
                    raise WorkerUnavailable(f"could not start a worker: {reason}")
                time.sleep(POLL_INTERVAL / 3)  # (no socket yet: the ping came back at once)
        raise WorkerUnavailable(f"a worker was started but does not answer at {client.endpoint}")
