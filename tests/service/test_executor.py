"""The executor's side of a job, run in this process: what it leaves when the worker goes away."""

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from service_support import write_picture

from cache.store import RESULT, CacheLimits, ResultCache
from worker.jobspec import JobSpec
from worker.service.executor import run_job
from worker.service.executor_process import Executor
from worker.stages import Stage


def sender(events: list[dict[str, Any]], gone: threading.Event, stage: str) -> Any:
    """The executor's `send`, keeping the events; the worker dies (`gone`) as `stage` starts."""

    def send(event: dict[str, Any]) -> None:
        events.append(event)
        if event.get("stage") == stage:
            gone.set()

    return send


def swapper(events: list[dict[str, Any]], output: Path | None) -> Any:
    """The executor's `send`, keeping the events; another program's file is renamed onto
    `output` (None: no file) as the job starts caching, its output written."""

    def send(event: dict[str, Any]) -> None:
        events.append(event)
        if output is not None and event.get("stage") == Stage.CACHING:
            output.with_name("other.tif").write_bytes(b"another program's file")
            output.with_name("other.tif").rename(output)

    return send


def test_a_result_written_as_the_worker_went_away_is_removed(tmp_path: Path) -> None:
    """The worker killed while its executor writes: the executor finds out (its stdin closes)
    only after the file is in place, and the client was told that the job failed. Until engine
    0.3.9 the result stayed there, as if the job had succeeded; now it is removed."""
    picture = write_picture(tmp_path / "in.tif")
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32) / 9)
    out = tmp_path / "out.tif"
    spec = JobSpec(str(picture), str(out), psf=str(tmp_path / "k.npy"))
    for dies_at, before in ((Stage.WRITING, None), (Stage.DEBLURRING, b"the user's own file")):
        if before is not None:
            out.write_bytes(before)
        abandoned, events = threading.Event(), []
        send = sender(events, abandoned, dies_at)

        run_job({"job": "j", "spec": spec.as_fields(), "scratch": None}, send, abandoned)
        assert events[-1]["event"] == "failed" and "went away" in events[-1]["error"]
        if before is None:  # written, then removed
            assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "k.npy"]
        else:  # never written: what was there stays
            assert out.read_bytes() == before


def test_a_file_put_at_the_outputs_name_after_the_job_wrote_it_is_not_cached(
    tmp_path: Path,
) -> None:
    """Another program replaces the output between the job's writing it and its caching it.
    Until engine 0.3.57 the cache stored that program's file as the job's result, and served
    it to the next job with the same key; now the job is done, its note says why nothing was
    cached, and the other file is left as it is."""
    picture = write_picture(tmp_path / "in.tif")
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32) / 9)
    out, cache = tmp_path / "out.tif", tmp_path / "cache"
    limits = {"max_bytes": CacheLimits.max_bytes, "min_free_bytes": 0}
    for swapped in (False, True):
        key = "0123456789abcdef" + ("ff" if swapped else "00")
        spec = JobSpec(str(picture), str(out), psf=str(tmp_path / "k.npy"), key=key)
        task = {"job": "j", "spec": spec.as_fields(), "scratch": None}
        events: list[dict[str, Any]] = []
        send = swapper(events, out if swapped else None)
        run_job({**task, "cache_dir": str(cache), "cache_limits": limits}, send, threading.Event())
        assert events[-1]["event"] == "done"
        entry = ResultCache(cache, CacheLimits(**limits)).entry(key)
        if swapped:
            assert events[-1]["note"] == (
                "not cached: another file took the output's name after the job wrote it"
            )
            assert entry is None and out.read_bytes() == b"another program's file"
        else:
            assert events[-1]["note"] is None and entry is not None
            assert entry.path.joinpath(RESULT).read_bytes() == out.read_bytes()


def test_an_executor_killed_as_it_warms_up_leaves_no_files(tmp_path: Path, monkeypatch) -> None:
    """Its warm-up job's picture and kernel go into the folder the worker gives it, which goes
    with the process; until engine 0.3.18 they went into the system's temporary folder, where an
    executor killed while it warmed up (a cancel or a shutdown just after the worker started)
    left them for good."""
    system_temporary = tmp_path / "tmp"
    system_temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_temporary))  # the executor's, which inherits it
    folder = tmp_path / "executor"
    folder.mkdir(mode=0o700)
    with Executor(folder) as executor:
        deadline = time.monotonic() + 60
        while not any(folder.glob("*/psf.npy")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(folder.glob("*/psf.npy")), "the warm-up never wrote its kernel"
        executor.kill()
    assert not folder.exists()
    assert list(system_temporary.iterdir()) == []
