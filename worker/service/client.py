"""The client side of the worker: requests over ZeroMQ, waiting for jobs, starting a worker.

It reaches the worker only through its socket and shares only `protocol.py` (and the endpoint and
key conventions of `transport.py`) with it.
"""

import contextlib
import fcntl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq

from worker.errors import WorkerUnavailable
from worker.paths import runtime_dir, state_dir
from worker.service import protocol
from worker.service.transport import (
    check_endpoint,
    default_curve_dir,
    ipc_path,
    is_loopback,
    secure_client,
    tcp_host,
)
from worker.signals import held
from worker.stages import Stage

POLL_INTERVAL = 0.15  # seconds between status requests while waiting for a job
START_TIMEOUT = 60.0  # seconds a freshly started worker may take to answer
AUTO_STARTED_IDLE_EXIT = 3600  # seconds


class Client:
    """Requests to the worker at `endpoint`, each answered within `timeout` seconds.

    The client owns a ZeroMQ context until `close()` (or the end of a `with` block); each request
    uses a socket of its own, closed before `request` returns. Use one client per thread.
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

        Raises `WorkerUnavailable` when nobody answers in time, `RemoteError` when the
        worker refuses the request.
        """
        data = protocol.encode_request(op, **fields)
        # Made and closed whole: a stop that came inside pyzmq's bookkeeping of the socket left
        # one open that `close` (`Context.destroy`) did not know of, and the exit waited for it.
        with held():
            socket = self.context.socket(zmq.REQ)
            socket.linger = 0
        try:
            secure_client(socket, self.endpoint, self.curve_dir)
            socket.connect(self.endpoint)
            socket.send(data)
            if not socket.poll(int(1000 * (timeout or self.timeout)), zmq.POLLIN):
                raise WorkerUnavailable(f"no worker answers at {self.endpoint}")
            return protocol.decode_reply(socket.recv())
        finally:
            with held():
                socket.close()

    def ping(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The worker's ping reply, or None when none answers within `timeout`."""
        try:
            return self.request("ping", timeout=timeout)
        except WorkerUnavailable:
            return None

    def wait(
        self, job_id: str, on_update: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll job `job_id` until it ends; `on_update` sees each status; returns the last."""
        while True:
            status = self.request("status", job=job_id)
            if on_update is not None:
                on_update(status)
            if Stage(status["stage"]).final:
                return status
            time.sleep(POLL_INTERVAL)


def can_start_locally(endpoint: str) -> bool:
    """Whether this machine may start the worker for `endpoint` (its own socket or loopback)."""
    host = tcp_host(endpoint)
    return ipc_path(endpoint) is not None or (host is not None and is_loopback(host))


@contextlib.contextmanager
def start_lock(endpoint: str) -> Iterator[None]:
    """An exclusive lock held while one client starts the worker for `endpoint`."""
    socket_file = ipc_path(endpoint)
    folder = socket_file.parent if socket_file else runtime_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = (socket_file.name if socket_file else "tcp") + ".start.lock"
    with open(folder / name, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def worker_command(endpoint: str, cache_dir: Path | None) -> list[str]:
    """The command that starts a worker on demand; it stops by itself after an idle hour, so
    that one left behind (darktable crashed) does not hold its memory for ever."""
    command = [sys.executable, "-m", "worker", "worker", "--endpoint", endpoint]
    command += ["--idle-exit", str(AUTO_STARTED_IDLE_EXIT)]
    return command + (["--cache-dir", str(cache_dir.absolute())] if cache_dir else [])


def ensure_worker(client: Client, cache_dir: Path | None = None) -> dict[str, Any]:
    """Return the worker's ping reply, starting a detached worker first if none answers.

    A lock makes clients that find no worker at the same moment start only one. The worker it
    starts is meant to outlive this process: it runs in a session of its own, and this function
    lets go of it once it answers (its parent's exit hands it to init, which reaps it).
    """
    reply = client.ping()
    if reply is not None:
        return reply
    if not can_start_locally(client.endpoint):
        raise WorkerUnavailable(f"no worker answers at {client.endpoint}")
    with start_lock(client.endpoint):
        reply = client.ping()  # another client may have started it while we waited
        if reply is not None:
            return reply
        log_path = state_dir() / "worker-start.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
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
            if reply is not None:
                return reply
            if process.poll() is not None:
                lines = log_path.read_text(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit status {process.returncode}"
                reason = reason.partition(": error: ")[2] or reason  # its own "dt-deconvolve: "
                raise WorkerUnavailable(f"could not start a worker: {reason}")
        raise WorkerUnavailable(f"a worker was started but does not answer at {client.endpoint}")
