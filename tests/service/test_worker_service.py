"""The worker as a service: real processes on real ZeroMQ sockets, and whatever clients send."""

import io
import json
import logging
import os
import signal
import socket as sockets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from service_support import (
    private_env,
    process_lives,
    run_dt,
    running_worker,
    short_folder,
    tiny_disk,
    wait,
    write_picture,
    write_psf,
)

from worker.errors import RemoteError
from worker.service.client import STARTED_HERE, Client, ensure_worker
from worker.service.log import LogFile, OneLineFormatter, log
from worker.service.protocol import MAX_MESSAGE_BYTES
from worker.signals import STOPPING_SIGNALS


@pytest.fixture(scope="module")
def worker():
    with running_worker() as handle:
        yield handle


def raw_request(
    endpoint: str, *frames: bytes, kind: int = zmq.REQ, limit: float = 10
) -> bytes | None:
    """Send raw frames; the reply's last frame, or None when nothing comes back in `limit` s."""
    with zmq.Context() as context, context.socket(kind) as socket:
        socket.linger = 0
        socket.connect(endpoint)
        socket.send_multipart(list(frames))
        if not socket.poll(int(1000 * limit)):
            return None
        return socket.recv_multipart()[-1]


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"hello", "bad_message", "not JSON"),
        (b'{"v": 1, "op": "status", "job": 7}', "bad_message", "'job' must be a string"),
        (b'{"v": 1, "op": "format_disk"}', "unknown_operation", "format_disk"),
        (b'{"v": 9, "op": "ping"}', "unsupported_version", "version"),
        (b"[" * 100_000, "bad_message", "limit"),
        (b'{"v": 1, "op": "status", "job": "0123456789ab"}', "unknown_job", "no job"),
        (b'{"v": 1, "op": "cancel", "job": "ffff"}', "unknown_job", "no job"),
        (b'{"v": 1, "op": "ping", "op": "shutdown"}', "bad_message", "'op' is given twice"),
    ],
)
def test_malformed_requests_get_a_clear_error_reply(
    worker, payload: bytes, error: str, words: str
) -> None:
    reply = json.loads(raw_request(worker.endpoint, payload))
    assert reply["ok"] is False
    assert reply["error"] == error
    assert words in reply["message"]


def test_the_worker_survives_what_it_cannot_parse(worker) -> None:
    # bigger than the transport's limit: ZeroMQ drops the connection, no reply
    assert raw_request(worker.endpoint, b"x" * (2 * 2**20), limit=2) is None
    # frames a REQ socket never sends
    reply = raw_request(worker.endpoint, b"a", b"b", kind=zmq.DEALER)
    assert json.loads(reply)["error"] == "bad_message"
    assert len(json.dumps({"x": "y" * MAX_MESSAGE_BYTES})) > MAX_MESSAGE_BYTES
    with worker.client() as client:
        assert client.request("ping")["pid"] == worker.process.pid
    log = Path(worker.env["XDG_STATE_HOME"]) / "dt-deconvolve" / "worker.log"
    assert f"listening on {worker.endpoint}" in log.read_text()


def test_submit_refuses_missing_input_and_bad_output_at_once(worker, tmp_path: Path) -> None:
    picture = write_picture(tmp_path / "in.tif")
    (tmp_path / "folder.tif").mkdir()
    with worker.client() as client:
        cases = [
            (tmp_path / "missing.tif", tmp_path / "o.tif", "no such file"),
            (picture, tmp_path / "nowhere" / "o.tif", r"no such file or folder: .*nowhere/o\.tif"),
            (picture, tmp_path / "nowhere" / ".." / "o.tif", r"folder: .*nowhere/\.\./o\.tif"),
            (picture, picture, "would replace the input"),
            (tmp_path, tmp_path / "o.tif", "is not a file"),
            (picture, tmp_path / "folder.tif", "a folder is in the way"),
            (picture, tmp_path / "k.npy", "must be a .tif or .tiff file"),
        ]
        for source, target, words in cases:
            with pytest.raises(RemoteError, match=words):
                client.request("submit", input=str(source), output=str(target), blur=9)
        with (
            tiny_disk(tmp_path / "ro", "ro,size=1m") as folder,
            pytest.raises(RemoteError, match=r"permission denied: .*o\.tif"),
        ):
            client.request("submit", input=str(picture), output=str(folder / "o.tif"), blur=9)


def test_the_command_line_shows_worker_errors_in_one_line(worker) -> None:
    result = worker.cli("cancel", "abcdef")
    assert result.returncode == 1
    assert result.stderr == "dt-deconvolve: error: no job 'abcdef' on this worker\n"
    assert worker.cli("ping").stdout.startswith("worker ")


def test_a_second_worker_on_the_same_socket_is_refused(worker) -> None:
    result = worker.cli("worker", timeout=30)
    assert result.returncode == 1
    assert f"already serves {worker.endpoint}" in result.stderr
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tcp_listens_on_loopback_only_unless_curve_keys_exist() -> None:
    with short_folder() as folder:
        env = private_env(folder)
        result = subprocess.run(
            [sys.executable, "-m", "worker", "worker", "--endpoint", "tcp://0.0.0.0:5599"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert "set up CURVE keys" in result.stderr


@pytest.mark.slow
def test_curve_lets_in_only_clients_with_keys() -> None:
    with short_folder() as folder:
        keys = folder / "keys"
        env = private_env(folder)
        made = subprocess.run(
            [sys.executable, "-m", "worker", "worker", "--generate-keys", "--curve-dir", keys],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "server.key" in made.stdout
        assert (keys / "authorized" / "client.key").exists()
        endpoint = f"tcp://0.0.0.0:{free_port()}"  # any address: CURVE guards it
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "worker", "--endpoint", endpoint, "--curve-dir", keys],
            env=env,
            stderr=subprocess.PIPE,
        )
        try:
            local = endpoint.replace("0.0.0.0", "127.0.0.1")
            with Client(local, curve_dir=keys) as client:
                deadline = time.monotonic() + 30
                while client.ping(timeout=0.5) is None:
                    assert process.poll() is None, process.stderr.read().decode()
                    assert time.monotonic() < deadline
            with Client(local, curve_dir=folder / "nothing") as stranger:
                assert stranger.ping(timeout=1.0) is None  # refused by the authenticator
            # Said so: until engine 0.3.58 only "no worker answers", as if none ran.
            pinged = subprocess.run(
                [sys.executable, "-m", "worker", "ping", "--endpoint", local, "--curve-dir",
                 folder / "nothing"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert pinged.returncode == 1 and len(pinged.stderr.splitlines()) == 1, pinged.stderr
            assert f"takes CURVE keys only: {folder / 'nothing'} holds no" in pinged.stderr
            os.remove(keys / "client.key_secret")
            with Client(local, curve_dir=keys) as keyless:
                assert keyless.ping(timeout=1.0) is None
        finally:
            process.terminate()
            process.wait(15)
            process.stderr.close()


STARTER = """
import sys
from worker.service.client import STARTED_HERE, Client, ensure_worker
with Client(sys.argv[1]) as client:
    reply = ensure_worker(client)
    print(reply["pid"], reply[STARTED_HERE])
"""


@pytest.mark.slow
def test_clients_finding_no_worker_start_exactly_one() -> None:
    with short_folder() as folder:
        env = private_env(folder)
        endpoint = f"ipc://{folder}/auto.sock"
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, endpoint],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                cwd=folder,
            )
            for _ in range(4)
        ]
        said = [starter.communicate(timeout=90)[0].split() for starter in starters]
        pids = {int(pid) for pid, _ in said}
        assert len(pids) == 1
        pid = pids.pop()
        # one of them started it, and says so (the plug-in stops only the worker it started)
        assert sorted(started for _, started in said) == ["False", "False", "False", "True"]
        try:
            # not in the clients' folder, which it would keep busy (a card not unmountable)
            assert os.readlink(f"/proc/{pid}/cwd") == "/"
            with Client(endpoint) as client:
                assert ensure_worker(client)["pid"] == pid
                assert ensure_worker(client)[STARTED_HERE] is False
                client.request("shutdown")
            deadline = time.monotonic() + 15
            while process_lives(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not process_lives(pid)
        finally:
            if process_lives(pid):
                os.kill(pid, 9)


@pytest.mark.slow
def test_submit_says_which_worker_it_started(material, tmp_path: Path) -> None:
    """`submit --wait` that starts the worker names it first (`WORKER <pid> <started>`, as
    `ping` gives them): the plug-in stops at darktable's quit only the worker its submit
    started. One that found the worker running says nothing of it. (Until engine 0.3.59 the
    plug-in guessed from a `ping` before the submit, and a helper found the guess wrong: a
    user's worker too slow to answer taken for absent, then stopped at the quit.)"""
    with short_folder() as folder:
        env = private_env(folder)
        first, second = (
            run_dt(env, "submit", material["small"], "-o", tmp_path / f"{name}.tif", "--psf",
                   material["psf"], "--wait")
            for name in ("first", "second")
        )  # fmt: skip
        try:
            assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
            pinged = json.loads(run_dt(env, "ping", "--json").stdout)
            assert first.stdout.splitlines()[0] == f"WORKER {pinged['pid']} {pinged['started']}"
            assert second.stdout.splitlines()[0].startswith("JOB ")
            assert "WORKER" not in second.stdout
        finally:
            run_dt(env, "shutdown")


@pytest.mark.parametrize("stop", [*STOPPING_SIGNALS, signal.SIGINT])
def test_a_worker_stops_cleanly_on_a_signal(stop: signal.Signals) -> None:
    """A kill, its terminal closing, Ctrl-\\ or Ctrl-C stop the worker as `shutdown` does (on
    SIGHUP it died at once, without its clean stop, and on SIGQUIT with a core dump)."""
    with running_worker() as worker:
        worker.wait_warm()
        worker.process.send_signal(stop)
        assert worker.process.wait(30) == 0
        log = Path(worker.env["XDG_STATE_HOME"]) / "dt-deconvolve" / "worker.log"
        assert f"stopping on {stop.name}" in log.read_text()


def test_an_idle_worker_stops_when_asked_to() -> None:
    with running_worker("--idle-exit", "3") as worker:
        assert worker.process.wait(30) == 0
        log = Path(worker.env["XDG_STATE_HOME"]) / "dt-deconvolve" / "worker.log"
        assert "stopping after 3 s without work" in log.read_text()


def test_an_internal_error_is_logged_on_one_line_and_its_traceback_on_its_own_lines() -> None:
    """As the worker logs a bug (`log.exception`): until engine 0.3.56 the traceback was the
    record's own text, escaped into one line of a few thousand characters."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError("a bug")
        except RuntimeError:
            log.exception("internal error in the worker's loop")
    finally:
        log.removeHandler(handler)
    lines = written.getvalue().splitlines()
    assert lines[0] == "ERROR internal error in the worker's loop"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: a bug"


def test_a_record_the_log_file_cannot_take_goes_to_stderr_on_one_line(tmp_path: Path, capsys):
    """The log full and its rotation refused (here an older log that is a folder): logging's
    own handler dropped each record and printed a traceback of a dozen lines (found by a helper
    with a read-only state folder, engine 0.3.56)."""
    path = tmp_path / "worker.log"
    path.write_bytes(b"x" * (1 << 20))
    (tmp_path / "worker.log.2").write_text("older")
    (tmp_path / "worker.log.3").mkdir()
    (tmp_path / "worker.log.3" / "kept").write_text("")
    handler = LogFile(str(path))
    handler.setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        log.warning("job %s: done", "j1")
    finally:
        log.removeHandler(handler)
        handler.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING job j1: done (not in the log file: ")


def test_a_line_break_in_a_path_cannot_forge_a_line_of_the_log(worker, tmp_path: Path) -> None:
    """A job's input logged as queued, its name holding a line break and a fake traceback,
    stays on its line: until engine 0.3.52 the log then showed an "ERROR ... Traceback" line
    that no error had written."""
    forged = "\n2026-01-01 00:00:00,000 ERROR internal error\nTraceback (most recent call last):\n"
    folder = tmp_path / f"in{forged}"
    folder.mkdir()
    picture = write_picture(folder / "in.tif")
    psf = write_psf(tmp_path / "psf.npy")
    with worker.client() as client:
        job = client.request("submit", input=str(picture), output=str(tmp_path / "o.tif"),
                             psf=str(psf))  # fmt: skip
        assert wait(client, job["job"])["stage"] == "done"
    log = (Path(worker.env["XDG_STATE_HOME"]) / "dt-deconvolve" / "worker.log").read_text()
    assert "Traceback" in log  # written, escaped, on the job's own line
    for line in log.splitlines():
        assert not line.startswith(("Traceback", "2026-01-01")), line
    assert "in\\x0a2026-01-01 00:00:00,000 ERROR internal error\\x0aTraceback" in log
