"""The worker's life with real processes on real sockets: starting, stopping, losing its socket,
an upgrade beside an older worker, a paused worker (a helper's attack on the worker's life)."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import (
    Worker,
    paused,
    private_env,
    process_lives,
    run_dt,
    running_worker,
    short_folder,
    submit,
    wait,
    write_picture,
    write_psf,
)

from worker import __version__
from worker.errors import WorkerUnavailable
from worker.service.client import Client, worker_lives


@pytest.fixture(scope="module")
def worker_for_questions() -> Iterator[Worker]:
    with running_worker() as handle:
        yield handle


def test_a_worker_whose_socket_went_stops_and_spares_the_next_one() -> None:
    """A logout removes the socket's folder while worker A runs; a job starts worker B at the same
    path. A stops by itself (nobody can reach it) and leaves B's socket alone: B still answers.
    (A ran on for its idle hour, then removed B's socket: B was lost for its own idle hour.)"""
    with short_folder() as folder:
        env = private_env(folder)
        endpoint = f"ipc://{folder}/rt/w.sock"
        first = Worker(folder, env, endpoint, folder / "results").start()
        second = Worker(folder, env, endpoint, folder / "results")
        try:
            shutil.rmtree(folder / "rt")
            second.start()
            assert first.process is not None and first.process.wait(20) == 0
            assert (folder / "rt" / "w.sock").exists()
            with second.client() as client:
                reply = client.ping(timeout=5)
            assert second.process is not None
            assert reply is not None and reply["pid"] == second.process.pid
        except subprocess.TimeoutExpired:
            raise AssertionError("the worker that lost its socket ran on") from None
        finally:
            first.stop()
            second.stop()
        assert "the socket" in Path(env["XDG_STATE_HOME"], "dt-deconvolve/worker.log").read_text()


def follow(worker: Worker, source: Path, output: Path, psf: Path) -> subprocess.Popen[str]:
    """`dt-deconvolve submit --wait` as the plug-in runs it, once its `JOB` line came."""
    options = ("-o", output, "--psf", psf, "--wait", "--endpoint", worker.endpoint)
    client = subprocess.Popen(
        [sys.executable, "-m", "worker", "submit", str(source), *map(str, options)],
        env=worker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None and client.stdout.readline().startswith("JOB ")
    return client


@pytest.mark.slow
def test_a_client_waits_for_a_paused_worker(material, tmp_path) -> None:
    """A worker that answers nothing for longer than a request's 10 s (paused here; swapping in
    life) while a client follows its job: the client waits on as long as the worker's process
    lives, and gets its DONE. (It gave up, and the result appeared after it had failed.)"""
    output = tmp_path / "out.tif"
    with running_worker() as worker:
        worker.wait_warm()
        assert worker.process is not None
        with paused(*worker.executor_pids()):  # the job runs, not ending
            client = follow(worker, material["small"], output, material["psf"])
            with paused(worker.process.pid):
                time.sleep(12)
        stdout, stderr = client.communicate(timeout=60)
    assert client.returncode == 0, stderr
    assert stdout.splitlines()[-1] == f"DONE {output}"


SHUTDOWN_THEN_SUBMIT = """
import sys
from worker.errors import RemoteError
from worker.service.client import Client, next_worker
endpoint, source, output, psf = sys.argv[1:]
with Client(endpoint) as client:
    going = client.request("ping")
    client.request("shutdown")
    try:
        print(client.request("submit", input=source, output=output, psf=psf)["job"])
    except RemoteError as error:
        print(error.code)
    print(next_worker(client, going)["pid"])
"""


def test_a_stopping_worker_tells_how_jobs_ended_and_takes_no_new_one(material, tmp_path) -> None:
    """`shutdown` while a client follows its job: the client learns that the job was cancelled
    (exit 3), not "no worker answers" or "no job"; a submit that comes just after the shutdown
    is refused as `stopping` (it was accepted, then dropped) and goes to the next worker."""
    with running_worker() as worker:
        worker.wait_warm()
        with paused(*worker.executor_pids()):
            client = follow(worker, material["small"], tmp_path / "out.tif", material["psf"])
            script = [worker.endpoint, material["small"], tmp_path / "late.tif", material["psf"]]
            late = subprocess.run(
                [sys.executable, "-c", SHUTDOWN_THEN_SUBMIT, *map(str, script)],
                env=worker.env,
                capture_output=True,
                text=True,
                timeout=90,
            )
        _, stderr = client.communicate(timeout=30)
        assert late.returncode == 0, late.stderr
        code, pid = late.stdout.split()
        assert worker.process is not None and worker.process.wait(10) == 0
        try:
            assert code == "stopping"
            assert client.returncode == 3 and "was cancelled" in stderr, stderr
            assert int(pid) != worker.process.pid and process_lives(int(pid))
        finally:
            with Client(worker.endpoint) as next_one:
                next_one.request("shutdown")
        assert not (tmp_path / "out.tif").exists() and not (tmp_path / "late.tif").exists()


OLD_WORKER = """
import sys
import worker
worker.__version__ = "0.1.0"  # a worker of the engine before an upgrade, as far as it says
from worker.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_upgrade_replaces_an_idle_older_worker_and_names_a_busy_one(material, tmp_path):
    """A worker of another version (left running by an upgrade) is stopped when idle and a new
    one takes the job; a busy one is named, with what to do, in one line. (The old worker got
    the job and refused a setting it did not know, or a field: messages about neither.)"""
    with short_folder() as folder:
        env = private_env(folder)
        endpoint = f"ipc://{folder}/w.sock"
        command = [sys.executable, "-c", OLD_WORKER, "worker", "--endpoint", endpoint]
        old = Worker(folder, env, endpoint, folder / "results")
        old.process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        try:
            with Client(endpoint) as client:
                while client.ping(timeout=0.5) is None:
                    assert old.process.poll() is None
                old.wait_warm()
                with paused(*old.executor_pids()):  # busy: it runs a job of the old version's
                    job = submit(
                        client, material["small"], tmp_path / "a.tif", psf=str(material["psf"])
                    )
                    refused = old.cli("submit", material["small"], "-o", tmp_path / "b.tif")
                    assert refused.returncode == 1
                    assert "runs dt-deconvolve 0.1.0, this is" in refused.stderr
                    assert len(refused.stderr.splitlines()) == 1
                assert wait(client, job["job"])["stage"] == "done"
                done = old.cli("submit", material["small"], "-o", tmp_path / "c.tif", "--wait")
                assert done.returncode == 0, done.stderr
                assert old.process.wait(10) == 0
                assert client.request("ping")["version"] == __version__
                client.request("shutdown")
        finally:
            old.stop()


def test_a_job_id_that_cannot_be_printed_is_not_left_running(material, tmp_path) -> None:
    """`submit` without `--wait` whose output cannot take the job id (a full disk): the job is
    cancelled, not left to write a result that nobody can follow or cancel."""
    output = tmp_path / "out.tif"
    with running_worker() as worker:
        worker.wait_warm()
        with paused(*worker.executor_pids()), open("/dev/full", "w") as full:
            command = [sys.executable, "-m", "worker", "submit", material["small"], "-o", output]
            command += ["--psf", material["psf"], "--endpoint", worker.endpoint]
            result = subprocess.run(
                list(map(str, command)), env=worker.env, stdout=full, stderr=subprocess.PIPE
            )
            assert result.returncode == 1 and b"no space left" in result.stderr
            with worker.client() as client:
                [job] = client.request("list")["jobs"]
        assert job["stage"] == "cancelled" and not output.exists()


def test_a_worker_whose_log_cannot_be_written_logs_to_stderr(material, tmp_path) -> None:
    """A broken link where the log goes (or a read-only state folder) does not keep the worker
    from starting, nor the jobs from running: it logs on stderr, saying why."""
    with short_folder() as folder:
        env = private_env(folder)
        state = Path(env["XDG_STATE_HOME"], "dt-deconvolve")
        state.mkdir()
        (state / "worker.log").symlink_to(folder / "missing" / "worker.log")
        output = tmp_path / "out.tif"
        worker = Worker(folder, env, f"ipc://{folder}/w.sock", folder / "results").start()
        try:
            result = worker.cli("submit", material["small"], "-o", output, "--wait")
            assert worker.process is not None
            worker.process.terminate()
            worker.process.wait(15)
            logged = worker.stderr()
        finally:
            worker.stop()
        assert result.returncode == 0, result.stderr
        assert "logging here, not to" in logged and "job" in logged and output.exists()


def test_a_job_the_worker_does_not_know_is_said_to_be_gone(worker_for_questions) -> None:
    """Following a job that the worker does not know (it was restarted meanwhile) says so,
    rather than "no job" as if the id were wrong."""
    with worker_for_questions.client() as client, pytest.raises(WorkerUnavailable, match="gone"):
        client.wait("0123456789ab")


def test_a_worker_lives_while_its_own_process_runs(worker_for_questions) -> None:
    """The client waits on a silent worker only while the process that answered still runs: not
    on the pid alone, which a worker reached through a container's port gives in its own
    namespace (pid 1 here is init), nor when the worker does not say when it started."""
    with worker_for_questions.client() as client:
        reply = client.request("ping")
    assert worker_lives(reply)
    assert not worker_lives({**reply, "pid": 1})
    assert not worker_lives({key: value for key, value in reply.items() if key != "started"})


@pytest.mark.parametrize("left", [None, 0o755], ids=["new", "left-open"])
def test_a_worker_started_on_demand_keeps_its_logs_private(
    material, tmp_path, left: int | None
) -> None:
    """The log names pictures: the state folder a worker started by `submit` makes is 0700,
    whatever the umask, and one an older release left open is closed (until engine 0.3.22 the
    client made it first, 0755 under umask 022)."""
    with short_folder() as folder:
        env = private_env(folder)
        state = Path(env["XDG_STATE_HOME"], "dt-deconvolve")
        if left is not None:
            state.mkdir()
            state.chmod(left)
        try:
            result = run_dt(
                env, "submit", material["small"], "-o", tmp_path / "out.tif", "--wait",
                preexec_fn=lambda: os.umask(0o022),
            )  # fmt: skip
        finally:
            run_dt(env, "shutdown")
        assert result.returncode == 0, result.stderr
        assert (state.stat().st_mode & 0o777, (state / "worker.log").exists()) == (0o700, True)


@pytest.mark.parametrize("lock", ["w.sock.start.lock", "w.sock.lock"])
@pytest.mark.parametrize("planted", ["fifo", "link to a file", "dangling link"])
def test_a_lock_file_that_is_not_one_is_refused_in_one_line(lock: str, planted: str) -> None:
    """The client's start lock and the worker's lock, each replaced by something else. Until
    engine 0.3.57 a FIFO at the start lock kept every command waiting for ever, one at the
    worker's lock failed as "File or stream is not seekable", and a link to a file had that file
    emptied and given the worker's pid."""
    with short_folder() as folder:
        env = private_env(folder)
        sockets, precious = folder / "sockets", folder / "precious.txt"
        sockets.mkdir(mode=0o700)
        precious.write_text("the user's own")
        if planted == "fifo":
            os.mkfifo(sockets / lock)
        else:
            (sockets / lock).symlink_to(precious if planted == "link to a file" else folder / "x")
        worker = Worker(folder, env, f"ipc://{sockets}/w.sock", folder / "cache")
        picture, kernel = write_picture(folder / "in.tif"), write_psf(folder / "k.npy")
        done = worker.cli("submit", picture, "--psf", kernel, "-o", folder / "o.tif", timeout=60)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
        assert f"cannot use the lock file {sockets / lock}" in done.stderr
        assert precious.read_text() == "the user's own"


def test_a_folder_at_the_sockets_place_is_named_as_one() -> None:
    """It was "cannot listen on ...: Address already in use", though no worker was there."""
    with short_folder() as folder:
        (folder / "sockets" / "w.sock").mkdir(parents=True)
        (folder / "sockets").chmod(0o700)
        worker = Worker(folder, private_env(folder), f"ipc://{folder}/sockets/w.sock", folder)
        picture, kernel = write_picture(folder / "in.tif"), write_psf(folder / "k.npy")
        done = worker.cli("submit", picture, "--psf", kernel, "-o", folder / "o.tif", timeout=60)
        assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
        assert "a folder is at the socket's place; remove it" in done.stderr


def test_a_dead_workers_half_written_output_is_removed_by_the_next_worker() -> None:
    """A worker killed with its executors (its process group, as an out-of-memory kill or a
    logout does) mid-write leaves the output's temporary: until engine 0.3.57 nothing removed it
    but the next writer of that name, which the plug-in never is. The next worker removes it,
    from the output's path the job left in its scratch folder; another name's is left."""
    with short_folder() as folder:
        env = private_env(folder)
        gone = subprocess.Popen(["true"])
        gone.wait()  # (a pid that no process holds now)
        job = folder / "runtime" / "dt-deconvolve" / f"scratch-{gone.pid}" / "j1"
        job.mkdir(parents=True)
        output = folder / "out.tif"
        (job / "output").write_bytes(os.fsencode(output))
        partial, other = folder / ".out.tif.ab12cd34.part", folder / ".other.tif.ab12cd34.part"
        for temporary in (partial, other):
            temporary.write_bytes(b"half a picture")
            os.utime(temporary, (time.time() - 5, time.time() - 5))
        worker = Worker(folder, env, f"ipc://{folder}/w.sock", folder / "cache").start()
        try:
            assert not partial.exists() and other.exists()
            assert not job.parent.exists()
            # A job's own record, there while it runs (its executor held still), gone after.
            worker.wait_warm()
            assert worker.process is not None
            scratch = job.parent.with_name(f"scratch-{worker.process.pid}")
            picture, kernel = write_picture(folder / "in.tif"), write_psf(folder / "k.npy")
            with worker.client() as client:
                with paused(*worker.executor_pids()):
                    started = submit(client, picture, output, psf=str(kernel))["job"]
                    record = scratch / started / "output"
                    deadline = time.monotonic() + 10
                    while not record.exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    assert record.read_bytes() == os.fsencode(output)
                assert wait(client, started)["stage"] == "done"
            assert not record.exists()
        finally:
            worker.stop()
