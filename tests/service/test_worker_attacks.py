"""Attacks on a real worker: hostile names, a removed scratch folder, a full runtime disk,
evictions, same-key clients, huge replies, floods, odd numbers (issue 11: F4-F11 and the
smaller faults). Every loop is bounded in count and time; every socket is a private ipc one."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyexiv2
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_support import (
    Worker,
    paused,
    private_env,
    running_worker,
    short_folder,
    submit,
    tiny_disk,
    wait,
    write_picture,
)
from tiffs import CAMERA_EXIF

from cache.store import PSF, RESULT, ResultCache
from worker.errors import RemoteError
from worker.service import protocol

KEY = "c3" * 16


@pytest.fixture(scope="module")
def worker():
    with running_worker() as handle:
        handle.wait_warm()
        yield handle


def blocker(client: Any, material: dict[str, Path], folder: Path) -> dict[str, Any]:
    """A job that keeps the one executor busy for a while (the blur estimated on a larger
    picture), so that the next jobs wait in the queue."""
    return submit(client, material["medium"], folder / "blocker.tif", blur=15)


def test_names_that_are_not_utf8_through_the_worker(material, tmp_path) -> None:
    """F4: a job on a picture whose folder and name are not UTF-8 succeeds with its EXIF, and
    nothing is written on the worker's stderr (no logging traceback)."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/\xff\xfe folder"))
    folder.mkdir()
    source = folder / os.fsdecode(b"caf\xe9.tif")
    shutil.copyfile(material["small"], tmp_path / "exif.tif")
    with pyexiv2.Image(str(tmp_path / "exif.tif")) as image:  # with camera data
        image.modify_exif(CAMERA_EXIF)
    shutil.copyfile(tmp_path / "exif.tif", source)
    output = folder / os.fsdecode(b"caf\xe9_deconv.tif")
    with running_worker() as handle, handle.client() as client:
        handle.wait_warm()
        done = wait(client, submit(client, source, output, blur=5, key=KEY)["job"])
        assert done["stage"] == "done", done["error"]
        assert handle.process is not None
        handle.process.terminate()
        handle.process.wait(15)
        stderr = handle.stderr()
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    shutil.copyfile(output, tmp_path / "check.tif")
    with pyexiv2.Image(str(tmp_path / "check.tif")) as image:
        assert image.read_exif()["Exif.Image.Model"] == CAMERA_EXIF["Exif.Image.Model"]


def test_a_removed_scratch_folder_costs_no_job(worker, material, tmp_path) -> None:
    """F5: someone removes the worker's scratch folder (a tmp cleaner): the worker goes on and
    the next job, which keeps its estimated kernel there, succeeds and caches it."""
    runtime = Path(worker.env["XDG_RUNTIME_DIR"]) / "dt-deconvolve"
    for scratch in runtime.glob("scratch-*"):
        shutil.rmtree(scratch)
    key = "d4" * 16
    with worker.client() as client:
        final = wait(
            client, submit(client, material["small"], tmp_path / "o.tif", blur=5, key=key)["job"]
        )
        assert final["stage"] == "done", final["error"]
        assert client.ping() is not None
    assert ResultCache(worker.cache_dir).entry(key).file(PSF) is not None


def test_a_full_runtime_disk_loses_no_queued_job(material, tmp_path) -> None:
    """F5: the runtime folder's disk is full (no room for even a folder): queued jobs still run
    (without caching their kernels) and the worker stays up."""
    with short_folder() as folder, tiny_disk(folder / "rt", "size=256k,nr_inodes=64"):
        env = private_env(folder)
        env["XDG_RUNTIME_DIR"] = str(folder / "rt")
        handle = Worker(folder, env, f"ipc://{folder}/w.sock", folder / "results")
        try:
            handle.start()
            handle.wait_warm()
            filler = 0
            with pytest.raises(OSError):  # fill its blocks, then its inodes
                while filler < 1000:
                    (folder / "rt" / f"fill{filler}").write_bytes(b"x" * 8192)
                    filler += 1
            with handle.client() as client:
                jobs = [
                    submit(
                        client,
                        material["small"],
                        tmp_path / f"{n}.tif",
                        blur=5,
                        key=f"{n:02d}" * 16,
                    )
                    for n in range(3)
                ]
                finals = [wait(client, job["job"]) for job in jobs]
                assert [f["stage"] for f in finals] == ["done"] * 3, [f["error"] for f in finals]
                assert client.ping() is not None
        finally:
            handle.stop()


def test_clients_stopped_as_their_jobs_are_taken_all_exit(worker, material, tmp_path) -> None:
    """`submit --wait` stopped (SIGTERM) the moment it prints its job's id: it cancels the job and
    exits, every time. Until engine 0.3.18 about 1 in 60 waited for ever as it closed its
    ZeroMQ context: the signal, handed by the kernel to a thread of the maths library, stopped
    the command inside pyzmq's bookkeeping of a request's socket, which the command's
    `held()` (a signal mask, for its own thread only) did not hold, and the socket left open kept
    the context from closing."""
    picture = write_picture(tmp_path / "large.tif", (600, 800), seed=4)
    command = [sys.executable, "-m", "worker", "submit", str(picture), "--psf"]
    command += [str(material["psf"]), "--wait", "--endpoint", worker.endpoint, "-o"]
    for n in range(40):
        client = subprocess.Popen(
            [*command, str(tmp_path / f"out{n}.tif")],
            env=worker.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert client.stdout is not None and client.stdout.readline().startswith(b"JOB")
            client.send_signal(signal.SIGTERM)
            assert client.wait(timeout=20) == 128 + signal.SIGTERM, n
        finally:
            client.kill()
            client.wait()
            client.stdout.close()  # type: ignore[union-attr]


def test_an_executor_killed_as_it_warms_up_leaves_no_files() -> None:
    """An executor's warm-up files lie in a folder of the worker's, removed when the executor
    ends, whatever ends it; until engine 0.3.18 they went into the system's temporary folder,
    where an executor killed as it warmed up left them for good."""
    with short_folder() as folder:
        env = {**private_env(folder), "TMPDIR": str(folder / "tmp")}
        (folder / "tmp").mkdir()
        handle = Worker(folder, env, f"ipc://{folder}/w.sock", folder / "results")
        try:
            handle.start()
            assert handle.process is not None
            runtime = Path(env["XDG_RUNTIME_DIR"]) / "dt-deconvolve"
            scratch = runtime / f"scratch-{handle.process.pid}"
            deadline = time.monotonic() + 60
            while not (warming := list(scratch.glob("executor-*/*/psf.npy"))):
                assert time.monotonic() < deadline, "no executor warmed up in its folder"
                time.sleep(0.01)
            os.kill(handle.executor_pids()[0], signal.SIGKILL)
            killed = warming[0].parent.parent
            while killed.exists():  # the worker finds out, and removes it
                assert time.monotonic() < deadline, "the killed executor's folder stayed"
                time.sleep(0.01)
            handle.wait_warm()  # its successor
            assert len(list(scratch.glob("executor-*"))) == 1
        finally:
            handle.stop()
        assert not scratch.exists()
        assert list((folder / "tmp").iterdir()) == []


def test_a_queued_job_whose_cached_kernel_is_evicted_estimates_it(
    worker, material, tmp_path
) -> None:
    """F6: a job queued while its key's kernel was cached, and evicted before it starts,
    estimates the kernel again instead of failing."""
    cache = ResultCache(worker.cache_dir)
    key = "e5" * 16
    cache.store(key, {PSF: material["psf"]}, {"job": "earlier"})
    worker.wait_warm()
    with worker.client() as client:
        with paused(*worker.executor_pids()):  # the first job runs, not ending
            first = blocker(client, material, tmp_path)
            queued = submit(client, material["small"], tmp_path / "o.tif", blur=7, key=key)
            assert queued["position"] == 0, "the job should wait behind the blocker"
            cache.remove(key)
        final = wait(client, queued["job"])
        assert final["stage"] == "done", final["error"]
        wait(client, first["job"])


def test_copying_a_large_cached_result_leaves_the_worker_answering(worker, tmp_path) -> None:
    """F7: a cache hit whose 192 MB result is copied to another file system: the submit is
    answered before the copy ends (the job is `writing`), pings are answered all the while, and
    the job is done once its copy is."""
    cache = ResultCache(worker.cache_dir)
    key = "f6" * 16
    big = tmp_path / "big.tif"
    with open(big, "wb") as handle:
        for _ in range(24):
            handle.write(np.random.default_rng(0).bytes(8 << 20))
    cache.store(key, {RESULT: big}, {"job": "earlier"})
    pings: list[tuple[float, float]] = []  # (sent, answered)
    stop = threading.Event()

    def ping() -> None:
        with worker.client() as client:
            while not stop.is_set():
                sent = time.monotonic()
                assert client.ping(timeout=10) is not None
                pings.append((sent, time.monotonic()))
                time.sleep(0.02)

    pinger = threading.Thread(target=ping)
    with tiny_disk(tmp_path / "other-disk", "size=400m") as other:  # a copy, not a link
        pinger.start()
        try:
            with worker.client(timeout=30) as client:
                started = time.monotonic()
                job = submit(client, big, other / "copy.tif", blur=5, key=key)
                final = wait(client, job["job"])
                ended = time.monotonic()
        finally:
            stop.set()
            pinger.join(30)
        size = (other / "copy.tif").stat().st_size
    assert final["stage"] == "done" and final["note"] == "from the cache"
    assert size == big.stat().st_size
    assert job["stage"] == "writing", "the reply waited for the copy"
    # A copy made on the worker's loop would hold every ping sent meanwhile until it ended:
    # none would be answered in the first three quarters of the job.
    early = started + 0.75 * (ended - started)
    answered = [sent for sent, back in pings if started < sent and back < early]
    if ended - started > 0.4:  # long enough to tell on a busy machine
        assert len(answered) >= 3, (len(answered), ended - started)


def test_a_same_key_client_whose_output_cannot_be_written_is_told(
    worker, material, tmp_path
) -> None:
    """F8: a second client of the same key whose output folder vanished before the result was
    copied gets exit status 1 and no DONE line, not exit 0 for a file never written."""
    gone = tmp_path / "gone"
    gone.mkdir()
    worker.wait_warm()
    # The leader runs, not ending, until the second client follows it and its folder is gone.
    with worker.client() as client, paused(*worker.executor_pids()):
        leader = submit(
            client, material["small"], tmp_path / "one.tif", psf=str(material["psf"]), key="a7" * 16
        )
        second = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker",
                "submit",
                material["small"],
                "-o",
                gone / "two.tif",
                "--psf",
                material["psf"],
                "--key",
                "a7" * 16,
                "--wait",
                "--endpoint",
                worker.endpoint,
            ],
            env=worker.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert second.stdout is not None
        assert second.stdout.readline().startswith("JOB ")
        shutil.rmtree(gone)
    with worker.client() as client:
        out, err = second.communicate(timeout=120)
        assert wait(client, leader["job"])["stage"] == "done"
    assert second.returncode == 1, (out, err)
    assert "DONE" not in out
    assert "could not write" in err and len(err.strip().splitlines()) == 1


def test_cancelling_one_same_key_client_leaves_the_others(worker, material, tmp_path) -> None:
    """F9: clients A and B submit one key; A cancels (Ctrl-C): B still gets its result, A's
    output is not left behind. Then B' cancels while A' waits: A' gets its result."""
    fields = {"psf": str(material["psf"])}
    with worker.client() as client:
        for n, cancelled in ((0, "first"), (1, "second")):
            key = f"b{n}" * 16
            first = blocker(client, material, tmp_path)
            a = submit(client, material["small"], tmp_path / f"a{n}.tif", key=key, **fields)
            b = submit(client, material["small"], tmp_path / f"b{n}.tif", key=key, **fields)
            gone, kept = (a, b) if cancelled == "first" else (b, a)
            assert client.request("cancel", job=gone["job"])["stage"] == "cancelled"
            assert wait(client, gone["job"])["stage"] == "cancelled"
            final = wait(client, kept["job"])
            assert final["stage"] == "done", final["error"]
            assert Path(kept["output"]).stat().st_size > 1000
            wait(client, first["job"])
            time.sleep(0.3)  # a late copy would land now
            assert not Path(gone["output"]).exists()


LONG = "\x01" * 200  # 200 bytes, 1200 once escaped in JSON


def long_folder(root: Path) -> Path:
    """A folder whose path is about 3,800 bytes of control characters (the most escaping)."""
    folder = root
    while len(os.fsencode(folder)) < 3600:
        folder = folder / LONG
    folder.mkdir(parents=True)
    return folder


def test_status_and_list_fit_however_long_the_paths(worker, material, tmp_path) -> None:
    """F10: jobs whose paths are as long and as escaped as allowed: `status` answers, and
    `dt-deconvolve status` lists every job (the `list` replies are paged)."""
    folder = long_folder(tmp_path)
    source = folder / "in.tif"
    shutil.copyfile(material["small"], source)
    with worker.client() as client:
        jobs = [
            submit(client, source, folder / f"{n}.tif", psf=str(material["psf"])) for n in range(12)
        ]
        finals = [wait(client, job["job"]) for job in jobs]
    assert all(final["stage"] == "done" for final in finals)
    listed = worker.cli("status", timeout=60)
    assert listed.returncode == 0, listed.stderr
    shown = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {job["job"] for job in jobs} <= shown
    # an empty job id is no job, as for `cancel ""` (until engine 0.3.19 it listed every job)
    empty = worker.cli("status", "", timeout=60)
    assert empty.returncode == 1 and empty.stderr.count("\n") == 1, empty.stderr


def test_the_queue_has_a_limit_and_says_busy(material, tmp_path) -> None:
    """F11: a worker holding its limit of jobs refuses more with `busy` (one line for the
    command line), and takes jobs again once they have ended."""
    # A blocker that outlasts a command's start (a second or two): with the usual one the queue
    # had a free place again, now and then, by the time the command asked (a CI run).
    large = write_picture(tmp_path / "large.tif", (1200, 1600), seed=7)
    with running_worker("--max-queue", "3") as handle, handle.client() as client:
        handle.wait_warm()
        jobs = [submit(client, large, tmp_path / "blocker.tif", blur=15)]
        jobs += [submit(client, material["small"], tmp_path / f"{n}.tif", blur=5) for n in range(2)]
        with pytest.raises(RemoteError) as refused:
            submit(client, material["small"], tmp_path / "x.tif", blur=5)
        assert refused.value.code == protocol.BUSY
        command = handle.cli("submit", material["small"], "-o", tmp_path / "y.tif", "--blur", "5")
        assert command.returncode == 1 and "busy" in command.stderr
        assert len(command.stderr.strip().splitlines()) == 1
        for job in jobs:
            wait(client, job["job"], limit=180)
        again = submit(client, material["small"], tmp_path / "z.tif", blur=5)
        assert wait(client, again["job"])["stage"] == "done"


def raw_request(worker: Worker, message: dict[str, Any]) -> dict[str, Any]:
    context = zmq.Context.instance()
    with context.socket(zmq.REQ) as socket:
        socket.linger = 0
        socket.connect(worker.endpoint)
        socket.send(json.dumps(message).encode())
        assert socket.poll(10_000), "no reply"
        return json.loads(socket.recv())


@pytest.mark.parametrize("version", [True, 1.0, "1", [1]])
def test_only_the_integer_1_is_protocol_version_1(worker, version: Any) -> None:
    reply = raw_request(worker, {"v": version, "op": "ping"})
    assert reply["ok"] is False and reply["error"] == protocol.UNSUPPORTED_VERSION


HUGE = st.one_of(
    st.integers(min_value=10**300, max_value=10**1000),
    st.integers(max_value=-(10**300), min_value=-(10**1000)),
    st.floats(allow_nan=False, allow_infinity=False, min_value=1e300),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    setting=st.sampled_from(
        ["tolerance", "priority", "lam", "max_iterations", "scale", "clip_level", "local"]
    ),
    number=HUGE,
)
def test_huge_numbers_in_settings_are_refused_clearly(
    worker, material, tmp_path, setting, number
) -> None:
    """Huge numbers in settings get a clear one-line refusal, never `internal`."""
    message = {
        "v": 1,
        "op": "submit",
        "input": str(material["small"]),
        "output": str(tmp_path / "h.tif"),
        "blur": 5,
        "settings": {setting: number},
    }
    reply = raw_request(worker, message)
    if reply["ok"]:  # a huge tolerance or clip level is a valid, if odd, choice
        with worker.client() as client, contextlib.suppress(RemoteError):
            client.request("cancel", job=reply["job"])
        return
    assert reply["error"] in (protocol.BAD_MESSAGE, protocol.BAD_INPUT), reply
    assert "internal" not in reply["message"] and "\n" not in reply["message"]
