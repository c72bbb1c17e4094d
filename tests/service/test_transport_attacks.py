"""Who may reach the worker, and what a remote client may touch (issue 11: F12, F13, and the
endpoint check). Real workers on private ipc sockets and on the loopback interface only."""

import os
import socket as sockets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from service_support import (
    Worker,
    paused,
    private_env,
    short_folder,
    submit,
    wait,
    write_picture,
    write_psf,
)

from worker.errors import InputError, RemoteError
from worker.service import protocol
from worker.service.client import Client
from worker.service.transport import generate_keys, secure_client, secure_server

NOBODY = 65534
CONNECT = """
import socket, sys
probe = socket.socket(socket.AF_UNIX)
try:
    probe.connect(sys.argv[1])
except PermissionError:
    sys.exit(13)
"""


def free_port(family: int = sockets.AF_INET, host: str = "127.0.0.1") -> int:
    with sockets.socket(family) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start(env: dict[str, str], *args: object, umask: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", *map(str, args)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def answering(client: Client, process: subprocess.Popen[str], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while client.ping(timeout=0.5) is None:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the worker did not answer"


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(15)
    if process.stderr:
        process.stderr.close()


def test_a_socket_folder_others_may_write_in_is_refused() -> None:
    """F12: with umask 000 and an endpoint in a world-writable folder, the worker refuses to
    listen (another user could replace its socket), saying why in one line."""
    with short_folder() as folder:
        shared = folder / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        process = start(private_env(folder), "--endpoint", f"ipc://{shared}/w.sock", umask=0)
        try:
            _, err = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 1
        assert "other users may write in the socket's folder" in err
        assert not (shared / "w.sock").exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
    reason="trying another user needs root and a system Python",
)
def test_another_user_cannot_connect_whatever_the_umask() -> None:
    """F12: a worker started with umask 000 in a folder others may enter: its socket is the
    user's alone; another user's connect is refused (the user's own still works)."""
    with short_folder() as folder:
        folder.chmod(0o755)
        endpoint = f"ipc://{folder}/w.sock"
        process = start(private_env(folder), "--endpoint", endpoint, umask=0)
        try:
            with Client(endpoint) as client:
                answering(client, process)
            assert os.stat(folder / "w.sock").st_mode & 0o077 == 0
            python = "/usr/bin/python3"  # a system Python another user may run
            stranger = subprocess.run(
                [python, "-c", CONNECT, str(folder / "w.sock")],
                preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)),
                timeout=30,
            )
            assert stranger.returncode == 13
            own = subprocess.run([python, "-c", CONNECT, str(folder / "w.sock")], timeout=30)
            assert own.returncode == 0
        finally:
            stop(process)


def test_remote_clients_are_confined_to_the_allowed_folders(tmp_path: Path) -> None:
    """F13: a client holding an authorised CURVE key may name only paths inside --allow-dir:
    it can neither overwrite a file elsewhere (a shell rc file) nor learn whether one exists;
    inside, jobs run as usual."""
    with short_folder() as folder:
        env = private_env(folder)
        keys = folder / "keys"
        subprocess.run(
            [sys.executable, "-m", "worker", "worker", "--generate-keys", "--curve-dir", keys],
            env=env,
            check=True,
            capture_output=True,
        )
        pictures = folder / "pictures"
        pictures.mkdir()
        source = write_picture(pictures / "in.tif", (48, 64))
        psf = write_psf(pictures / "psf.npy")
        home = folder / "home"
        home.mkdir()
        rc = home / ".bashrc"
        rc.write_text("alias ls='ls --color'\n")
        (pictures / "escape").symlink_to(home)
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        process = start(
            env, "--endpoint", endpoint, "--curve-dir", keys, "--allow-dir", pictures,
            "--cache-dir", folder / "cache", "--min-free", "0",
        )  # fmt: skip
        try:
            with Client(endpoint, curve_dir=keys) as client:
                answering(client, process)
                refusals = []
                for source_path, output in (
                    (source, rc),  # overwrite a file elsewhere
                    (source, pictures / "escape" / ".bashrc"),  # through a link
                    (rc, pictures / "out.tif"),  # read a file elsewhere
                    (home / "absent.tif", pictures / "out.tif"),  # probe: absent
                ):
                    with pytest.raises(RemoteError) as refused:
                        submit(client, source_path, output, psf=str(psf))
                    assert refused.value.code == protocol.BAD_INPUT
                    refusals.append(str(refused.value).split(" is outside")[1])
                assert len(set(refusals)) == 1, "the answer tells nothing of what exists"
                with pytest.raises(RemoteError, match="outside"):
                    client.request("cache_lookup", key="ab" * 16, output=str(rc))
                inside = submit(client, source, pictures / "out.tif", psf=str(psf))
                assert wait(client, inside["job"])["stage"] == "done"
        finally:
            stop(process)
        assert rc.read_text() == "alias ls='ls --color'\n"


def test_a_folder_swapped_for_a_link_out_while_a_job_waits_fails_the_job() -> None:
    """A remote client's job, submitted inside --allow-dir, whose folder becomes a link out of
    it before the job starts: the executor checks its paths again as it starts, and the job
    fails (until engine 0.3.52 only the submit checked them, and the job read and wrote outside)."""
    with short_folder() as folder:
        env = private_env(folder)
        keys = folder / "keys"
        subprocess.run(
            [sys.executable, "-m", "worker", "worker", "--generate-keys", "--curve-dir", keys],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        pictures, outside = folder / "pictures", folder / "outside"
        (pictures / "sub").mkdir(parents=True)
        outside.mkdir()
        for place in (pictures / "sub", outside):
            write_picture(place / "in.tif", (48, 64))
        psf = write_psf(pictures / "psf.npy")
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        process = start(
            env, "--endpoint", endpoint, "--curve-dir", keys, "--allow-dir", pictures,
            "--cache-dir", folder / "cache", "--min-free", "0",
        )  # fmt: skip
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        try:
            with Client(endpoint, curve_dir=keys) as client:
                answering(client, process)
                warm = submit(
                    client, pictures / "sub" / "in.tif", pictures / "warm.tif", psf=str(psf)
                )
                assert wait(client, warm["job"])["stage"] == "done"  # an executor waits, idle
                with paused(*map(int, children.read_text().split())):
                    job = submit(client, pictures / "sub" / "in.tif", pictures / "sub" / "out.tif",
                                 psf=str(psf))  # fmt: skip
                    (pictures / "sub").rename(pictures / "was-sub")
                    (pictures / "sub").symlink_to(outside)
                ended = wait(client, job["job"])
                assert ended["stage"] == "failed" and "is outside the folders" in ended["error"]
        finally:
            stop(process)
        assert sorted(p.name for p in outside.iterdir()) == ["in.tif"]


def test_tcp_endpoints_need_a_port_and_ipv6_loopback_works() -> None:
    """`tcp://[::1]` (no port) is refused by the check with a clear line, not at bind time;
    `tcp://[::1]:PORT` listens and answers."""
    with short_folder() as folder:
        env = private_env(folder)
        for endpoint in ("tcp://[::1]", "tcp://127.0.0.1", "tcp://[::1]:99999", "tcp://::1:5555",
                         "ipc://"):  # fmt: skip
            process = start(env, "--endpoint", endpoint)
            _, err = process.communicate(timeout=60)
            assert process.returncode == 2  # a malformed option: wrong usage
            assert "unsupported endpoint" in err and len(err.strip().splitlines()) == 1, err
        endpoint = f"tcp://[::1]:{free_port(sockets.AF_INET6, '::1')}"
        process = start(env, "--endpoint", endpoint, "--curve-dir", folder / "no-keys")
        try:
            with Client(endpoint, curve_dir=folder / "no-keys") as client:
                answering(client, process)
        finally:
            stop(process)


def test_the_command_line_checks_the_endpoint_too() -> None:
    """ "ipc://" was an internal error; a relative "ipc://w.sock" meant one socket for the client
    (its own folder) and another for the worker it started (in /): a minute's wait, then a
    failure, and as root a worker left behind at /w.sock."""
    with short_folder() as folder:
        for endpoint, words in (
            ("tcp://[::1]", "unsupported endpoint"),
            ("ipc://", "unsupported endpoint"),
            ("ipc://w.sock", "must be absolute"),
            ("ipc:///", "names a folder"),  # (an internal error, after making /.start.lock)
        ):
            worker = Worker(folder, private_env(folder), endpoint, folder / "cache")
            result = worker.cli("submit", folder / "in.tif", "-o", folder / "o.tif", timeout=60)
            assert result.returncode == 2  # a malformed option: wrong usage
            assert words in result.stderr and len(result.stderr.splitlines()) == 1
        assert not any(Path(name).exists() for name in ("/w.sock", "/w.sock.lock", "/.start.lock"))


def test_an_address_that_is_not_utf8_is_refused_in_one_line() -> None:
    """ZeroMQ's addresses are text: a socket in a folder whose name is not UTF-8 (given, or the
    runtime folder under such a cache folder) was an internal UnicodeEncodeError."""
    with short_folder() as folder:
        env = private_env(folder)
        bad = os.fsdecode(bytes(folder) + b"/caf\xe9")
        given = Worker(folder, env, f"ipc://{bad}/w.sock", folder / "cache")
        for command in ("ping", "status"):
            result = given.cli(command, timeout=60)
            assert result.returncode == 2, result.stderr
            assert "is not UTF-8" in result.stderr and len(result.stderr.splitlines()) == 1
        env = {**env, "XDG_CACHE_HOME": bad}
        env.pop("XDG_RUNTIME_DIR", None)
        for command in (("ping",), ("status",), ("worker", "--idle-exit", "1")):
            result = subprocess.run(
                [sys.executable, "-m", "worker", *command],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 1, result.stderr
            assert result.stderr.splitlines() == [
                f"dt-deconvolve: error: the address ipc://{bad}/dt-deconvolve/run/worker.sock is "
                "not UTF-8, as ZeroMQ's must be: give another (--endpoint), or a runtime folder "
                "whose name is (XDG_RUNTIME_DIR, else XDG_CACHE_HOME)".replace("\udce9", "\\xe9")
            ]


def put_in_place(path: Path, damage: str) -> None:
    """Replace the key file `path` by something damaged: text, a folder or a named pipe."""
    path.unlink()
    if damage == "folder":
        path.mkdir()
    elif damage == "pipe":
        os.mkfifo(path)
    else:
        path.write_text("not a certificate\n")


@pytest.mark.parametrize("damage", ["text", "folder", "pipe"])
def test_a_damaged_server_key_is_said_in_one_line(tmp_path: Path, damage: str) -> None:
    """A client's copy of the worker's public key that is damaged or unreadable (a folder in
    its place) is an `InputError` naming it, as a damaged key pair of its own is (until engine
    0.3.23 pyzmq's ValueError, or an OSError, came through as an internal error; a named pipe
    kept the client waiting for ever)."""
    generate_keys(tmp_path)
    put_in_place(tmp_path / "server.key", damage)
    refused = pytest.raises(InputError, match=r"cannot read the CURVE key .*server\.key")
    with zmq.Context() as context, context.socket(zmq.REQ) as socket, refused:
        secure_client(socket, "tcp://127.0.0.1:5555", tmp_path)


def test_a_client_key_that_is_a_pipe_keeps_the_worker_from_starting_in_words(
    tmp_path: Path,
) -> None:
    """A named pipe among the worker's `authorized/` keys stops its start with one line naming
    it (it kept the worker from starting, silently, for ever). (pyzmq itself logs and skips a
    damaged key there: that client is not let in.)"""
    generate_keys(tmp_path)
    put_in_place(tmp_path / "authorized" / "client.key", "pipe")
    refused = pytest.raises(InputError, match=r"cannot read the CURVE key.* .*authorized")
    with zmq.Context() as context, context.socket(zmq.ROUTER) as socket, refused:
        secure_server(context, socket, "tcp://127.0.0.1:5555", tmp_path)
