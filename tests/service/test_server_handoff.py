"""The worker's request handlers in process, with the hand-back of a copy from the cache held
until the test lets it run: what a job's end does to an output while its copy is under way.

The loop is not running here, so each step happens exactly when the test says (with a real
worker these orders are races of a few milliseconds; `test_worker_jobs.py` runs them whole).
"""

import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_support import write_picture, write_psf

from cache.store import RESULT, CacheLimits
from worker.errors import InputError, ProtocolError
from worker.processes import process_ended, process_start
from worker.service import protocol
from worker.service.server import Server, WorkerConfig

KEY = "5a" * 16


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A worker's server (not serving) whose cache holds a result under `KEY`."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    config = WorkerConfig(
        endpoint=f"ipc://{tmp_path}/w.sock",
        cache_dir=tmp_path / "cache",
        curve_dir=tmp_path / "curve",
        cache_limits=CacheLimits(min_free_bytes=0),
    )
    served = Server(config)
    result = write_picture(tmp_path / "result.tif", seed=1)
    served.cache.store(KEY, {RESULT: result}, {"report": {"kernel": "free-form"}})
    try:
        yield served
    finally:
        served.background.close()


def ask(server: Server, op: str, **fields: Any) -> dict[str, Any]:
    """The reply fields of request `op` handled by `server`."""
    return server.handlers[op](protocol.decode_request(protocol.encode_request(op, **fields)))


def hand_back(server: Server) -> None:
    """Let every copy under way end and its hand-back run, as the loop would."""
    while server.background.pending:
        select.select([server.background.fileno()], [], [], 10)
        server.background.collect()


def job_fields(tmp_path: Path, output: Path, **extra: Any) -> dict[str, Any]:
    picture = write_picture(tmp_path / "in.tif")
    psf = write_psf(tmp_path / "psf.npy")
    return {"input": str(picture), "output": str(output), "psf": str(psf), **extra}


def test_a_cancelled_copys_output_stays_its_own_until_the_copy_is_undone(server, tmp_path):
    """A job cancelled while its result is copied from the cache keeps its output until the
    copy is done and removed: until engine 0.3.23 a new job could take that output at once, and
    the old copy then landed on the new job's result and was removed with it."""
    out = tmp_path / "out.tif"
    first = ask(server, "submit", **job_fields(tmp_path, out, key=KEY))
    assert ask(server, "cancel", job=first["job"])["stage"] == "cancelled"
    with pytest.raises(ProtocolError, match=f"job {first['job']} is writing"):
        ask(server, "submit", **job_fields(tmp_path, out))
    hand_back(server)
    assert not out.exists()  # the copy, made or not, is undone
    assert ask(server, "submit", **job_fields(tmp_path, out))["stage"] == "queued"


def test_a_copy_whose_command_has_gone_is_not_left(server, tmp_path):
    """A job answered from the cache whose `submit --wait` command ends before the copy does is
    cancelled and its copy removed, without waiting for the worker's look at its watchers."""
    watcher = subprocess.Popen(["sleep", "60"])
    try:
        started = process_start(watcher.pid)
        out = tmp_path / "out.tif"
        fields = job_fields(tmp_path, out, key=KEY)
        job = ask(server, "submit", **fields, watcher={"pid": watcher.pid, "started": started})
    finally:
        watcher.kill()
        watcher.wait()
    hand_back(server)
    assert ask(server, "status", job=job["job"])["stage"] == "cancelled"
    assert not out.exists()
    kept = tmp_path / "kept.tif"  # and one whose command still runs gets its copy
    done = ask(server, "submit", **job_fields(tmp_path, kept, key=KEY))
    hand_back(server)
    assert ask(server, "status", job=done["job"])["stage"] == "done" and kept.exists()


ENDED_WITHOUT_FILES = """
import os, resource, sys
from worker.processes import process_ended, process_start
pid, started = int(sys.argv[1]), int(sys.argv[2])
used = len(os.listdir("/proc/self/fd")) - 1  # (less the listing's own)
resource.setrlimit(resource.RLIMIT_NOFILE, (used, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print(process_ended(pid, started), process_start(pid))
"""


def test_a_process_counts_as_ended_only_when_proc_says_so() -> None:
    """`process_ended`, the watcher's test: no such process, a zombie or another start is
    ended; a /proc that cannot be read at the moment (no file descriptor left) says nothing
    (until engine 0.3.23 the worker cancelled a job whose command ran, then failed to start a
    new engine process and left the job "deblurring" for good)."""
    alive = subprocess.Popen(["sleep", "60"])
    try:
        started = process_start(alive.pid)
        assert started is not None
        assert not process_ended(alive.pid, started)
        assert process_ended(alive.pid, started + 1)  # another process given its pid
        starved = subprocess.run(
            [sys.executable, "-c", ENDED_WITHOUT_FILES, str(alive.pid), str(started)],
            capture_output=True,
            text=True,
        )
        assert starved.stdout.split() == ["False", "None"], starved.stderr
        alive.kill()
        deadline = time.monotonic() + 10
        while process_start(alive.pid) is not None:  # a zombie: not reaped yet, ended all the same
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert process_ended(alive.pid, started)
    finally:
        alive.kill()
        alive.wait()
    assert process_ended(alive.pid, started)


def test_an_output_spelled_otherwise_is_still_the_output_being_written(server, tmp_path):
    """`/p//x.tif`, `/p/./x.tif` and `/link-to-p/x.tif` name the file `/p/x.tif` names: while a
    job writes it, each is refused as busy (until engine 0.3.52 they were compared as written,
    and two jobs wrote one file, the second's result under the first's name); `/p/x.tif/` is a
    folder's name, not a TIFF file's."""
    out = tmp_path / "out.tif"
    first = ask(server, "submit", **job_fields(tmp_path, out))
    (tmp_path / "link").symlink_to(tmp_path)
    for spelling in (f"{tmp_path}//out.tif", f"{tmp_path}/./out.tif", f"{tmp_path}/link/out.tif"):
        with pytest.raises(ProtocolError, match=f"job {first['job']} is writing"):
            ask(server, "submit", **job_fields(tmp_path, Path(spelling)) | {"output": spelling})
    with pytest.raises(InputError, match=r"must be a \.tif or \.tiff file"):
        ask(server, "submit", **job_fields(tmp_path, out) | {"output": f"{out}/"})
    assert (
        ask(server, "submit", **job_fields(tmp_path, tmp_path / "other.tif"))["stage"] == "queued"
    )
