"""Real jobs through a real worker: results, cache, cancels, crashes, many clients, warm start."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from service_support import (
    FINAL,
    paused,
    process_lives,
    running_worker,
    submit,
    tiny_disk,
    wait,
    write_picture,
)

from cache.store import RESULT, ResultCache
from worker.cli.exit_status import ExitStatus
from worker.errors import ProtocolError, RemoteError
from worker.service import protocol
from worker.service.client import Client


@pytest.fixture(scope="module")
def worker():
    with running_worker() as handle:
        handle.wait_warm()
        yield handle


def wait_for_detail(client: Client, job: str, details: tuple[str, ...]) -> dict[str, Any]:
    """Poll fast until the job reports one of `details` (or ends)."""
    while True:
        status = client.request("status", job=job)
        if status["detail"] in details or status["stage"] in FINAL:
            return status
        time.sleep(0.002)


def leftovers(*folders: Path) -> list[Path]:
    """Temporary files and folders a job may leave behind."""
    found = []
    for folder in folders:
        found += [p for p in folder.iterdir() if p.name.startswith(".")]
    return found


def test_a_job_given_a_kernel_caches_the_checked_kernel_it_used(worker, material, tmp_path):
    # The kernel file is read once, checked (float32, summing to one), and that copy cached: the
    # user's file is not read again after the job (where it may have changed, or be a FIFO).
    given = tmp_path / "given.npy"
    np.save(given, 3 * np.load(material["psf"]).astype(np.float64))
    with worker.client() as client:
        job = submit(client, material["small"], tmp_path / "o.tif", psf=str(given), key="e9" * 16)
        assert wait(client, job["job"])["stage"] == "done"
    cached = np.load(ResultCache(worker.cache_dir).entry("e9" * 16).file("psf.npy"))
    assert cached.dtype == np.float32
    np.testing.assert_allclose(cached, np.load(given) / 3, rtol=1e-6)


def test_a_job_writes_its_result_and_the_cache_answers_it_again(worker, material, tmp_path):
    key = "a1" * 16
    with worker.client() as client:
        out = tmp_path / "out.tif"
        job = submit(client, material["small"], out, psf=str(material["psf"]), key=key)
        final = wait(client, job["job"])
        assert final["stage"] == "done", final["error"]
        assert tifffile.imread(out).shape == (64, 80, 3)
        assert final["report"]["iterations"] >= 1
        entry = ResultCache(worker.cache_dir).entry(key)
        assert entry.file(RESULT).read_bytes() == out.read_bytes()
        assert np.load(entry.file("psf.npy")).shape == (7, 7)
        assert entry.file("psf.png").read_bytes().startswith(b"\x89PNG")
        again = submit(client, material["small"], tmp_path / "again.tif", blur=7, key=key)
        assert again["note"] == "from the cache"  # copied off the worker's loop
        copied = wait(client, again["job"])
        assert copied["stage"] == "done"
        assert (tmp_path / "again.tif").read_bytes() == out.read_bytes()
        # Each job's report is its own: no other caller's output path (the cached record keeps
        # the first job's), as a computed job's report leaves its own output out.
        assert copied["report"]["iterations"] == final["report"]["iterations"]
        assert "output" not in final["report"] and "output" not in copied["report"]
    result = worker.cli("cache", "lookup", key, "--cache-dir", worker.cache_dir)
    assert result.stdout.strip() == f"hit {entry.file(RESULT)}"


def test_bad_input_files_fail_the_job_not_the_worker(worker, material, tmp_path):
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(material["small"].read_bytes()[:400])
    text = tmp_path / "text.tif"
    text.write_text("not a picture")
    even = tmp_path / "even.npy"
    np.save(even, np.ones((4, 4)))
    cases = [(truncated, material["psf"]), (text, material["psf"]), (material["small"], even)]
    with worker.client() as client:
        for source, psf in cases:
            out = tmp_path / f"{source.stem}-{psf.stem}.tif"
            final = wait(client, submit(client, source, out, psf=str(psf))["job"])
            assert final["stage"] == "failed"
            assert final["error"] and "\n" not in final["error"]
            assert "internal error" not in final["error"]
            assert not out.exists()
        psf = str(material["psf"])
        for settings, words in (  # refused by the client's own check, as the worker would
            ({"sharpness": 1}, "unknown engine setting"),
            ({"scale": 7}, "scale"),
            ({"max_iterations": 10**30}, "iteration cap"),
        ):
            with pytest.raises(ProtocolError, match=words):
                submit(client, material["small"], tmp_path / "s.tif", psf=psf, settings=settings)
        assert client.request("list")["jobs"][0]["stage"] == "failed"  # no job was queued
        assert leftovers(tmp_path) == []
        good = submit(client, material["small"], tmp_path / "good.tif", psf=str(material["psf"]))
        assert wait(client, good["job"])["stage"] == "done"


def test_outputs_that_cannot_be_written_are_the_jobs_fault(worker, material, tmp_path):
    """A job writing into the worker's cache, or into a folder that is not there, is refused
    as bad input (until engine 0.3.23 the first, its key cached, stayed at "writing" for good,
    and the second was answered as a cache error)."""
    key = "9e" * 16  # (a key of its own: the module's worker keeps its cache)
    psf = str(material["psf"])
    inside = worker.cache_dir / "stolen.tif"
    with worker.client() as client:
        first = submit(client, material["small"], tmp_path / "first.tif", psf=psf, key=key)
        assert wait(client, first["job"])["stage"] == "done"
        for output, words in (
            (inside, "is inside the cache"),
            (tmp_path / "no-such-folder" / "o.tif", "no-such-folder"),
        ):
            with pytest.raises(RemoteError, match=words) as refused:
                submit(client, material["small"], output, psf=psf, key=key)
            assert refused.value.code == protocol.BAD_INPUT
        assert client.request("ping")["running"] == 0
    assert not inside.exists()


@pytest.mark.parametrize("put", ["folder", "pipe"])
def test_a_job_ends_whatever_was_put_at_its_output(worker, material, tmp_path, put):
    """A folder or a named pipe put at a running job's output stays what it is when the job is
    cancelled, and the job ends: until engine 0.3.23 removing the folder raised, and the job
    stayed "deblurring" for good (its command never returned); the pipe was removed."""
    large = write_picture(tmp_path / "large.tif", (1200, 1600), seed=5)
    out = tmp_path / "out.tif"
    with worker.client() as client:
        job = submit(client, large, out, psf=str(material["psf"]))["job"]
        assert wait_for_detail(client, job, ("deblurring",))["stage"] == "deblurring"
        out.mkdir() if put == "folder" else os.mkfifo(out)
        client.request("cancel", job=job)
        assert wait(client, job, limit=30)["stage"] == "cancelled"
        later = submit(client, material["small"], tmp_path / "later.tif", psf=str(material["psf"]))
        assert wait(client, later["job"])["stage"] == "done"  # and the worker serves on
    assert out.is_dir() if put == "folder" else stat.S_ISFIFO(out.lstat().st_mode)


def test_a_second_job_runs_in_the_executor_that_is_already_warm(worker, material, tmp_path):
    """A job after the first starts no process and loads nothing: it runs in the executor that
    warmed up (the same process, still the only one). Timing is not asserted: the machine is
    shared; the warm start's seconds are in the speed benchmark (`bench_speed_photos.py`)."""
    with worker.client() as client:
        fields = {"psf": str(material["psf"])}
        first = submit(client, material["small"], tmp_path / "1.tif", **fields)
        assert wait(client, first["job"])["stage"] == "done"
        warm = worker.executor_pids()
        assert warm and client.request("ping")["warm_executors"] == len(warm)
        second = submit(client, material["medium"], tmp_path / "2.tif", **fields)
        status = wait_for_detail(client, second["job"], ("deblurring",))
        assert status["detail"] == "deblurring"
        assert worker.executor_pids() == warm
        assert wait(client, second["job"])["stage"] == "done"
        assert worker.executor_pids() == warm


def test_a_status_that_waits_is_answered_as_its_job_ends(worker, material, tmp_path):
    """A client following a job learns of its end as it happens (`Client.wait`): the worker holds
    a `status` that waits until its job ends, or until the wait runs out."""
    worker.wait_warm()
    with worker.client() as client:
        with paused(*worker.executor_pids()):  # the job cannot end while its executor is stopped
            job = submit(client, material["small"], tmp_path / "o.tif", psf=str(material["psf"]))
            asked = time.monotonic()
            status = client.request("status", job=job["job"], wait=0.3)
            assert status["stage"] not in FINAL and time.monotonic() - asked >= 0.3
        status = client.request("status", job=job["job"], wait=protocol.MAX_STATUS_WAIT)
        learnt = time.time()
        assert status["stage"] == "done", status["error"]
        assert learnt - status["finished"] < 1.0  # answered at the end, not when the wait ran out


def test_a_second_job_for_an_output_being_written_is_refused(worker, material, tmp_path):
    """Two jobs writing one file would write, or on a failure remove, each other's result:
    while one is queued or running, another for its output is refused (busy); after it, fine."""
    out = tmp_path / "shared.tif"
    with worker.client() as client:
        first = submit(client, material["medium"], out, psf=str(material["psf"]))
        with pytest.raises(RemoteError, match=r"is writing .*shared\.tif already") as refused:
            submit(client, material["small"], out, psf=str(material["psf"]))
        assert refused.value.code == "busy"
        assert wait(client, first["job"])["stage"] == "done"
        again = submit(client, material["small"], out, psf=str(material["psf"]))
        assert wait(client, again["job"])["stage"] == "done"
        assert tifffile.imread(out).shape == (64, 80, 3)


def test_a_job_that_never_replaces_keeps_a_file_made_at_its_output(worker, material, tmp_path):
    """A client that chose a free name (the plug-in's `submit --no-clobber`) sends
    ``replace: false``: a file another program makes at the output while the job runs, or
    while its copy is made from the cache or from the job it follows, is kept and the job
    fails saying so; a name taken before is refused at once. Until engine 0.3.54 the worker's
    rename replaced it."""
    psf = str(material["psf"])
    outputs = {name: tmp_path / f"{name}.tif" for name in ("run", "follower", "cached")}
    theirs = b"another program's"
    worker.wait_warm()
    with worker.client() as client:
        with paused(*worker.executor_pids()):  # the jobs cannot end before the files are made
            run = submit(client, material["small"], outputs["run"], psf=psf, replace=False)
            keyed = {"psf": psf, "key": "d4" * 16}
            leader = submit(client, material["medium"], tmp_path / "leader.tif", **keyed)
            follower = submit(
                client, material["medium"], outputs["follower"], replace=False, **keyed
            )
            assert follower["follows"] == leader["job"]
            for name in ("run", "follower"):
                outputs[name].write_bytes(theirs)
        for job in (run, follower):
            status = wait(client, job["job"])
            assert status["stage"] == "failed" and "already" in status["error"], status
            assert status["taken"] is True  # (told from other failures: `submit` exits 4)
        assert wait(client, leader["job"])["stage"] == "done"
        with pytest.raises(RemoteError, match="already") as refused:  # taken before: at once
            submit(client, material["small"], outputs["run"], psf=psf, replace=False)
        assert refused.value.code == protocol.TAKEN
        outputs["cached"].write_bytes(theirs)
        with pytest.raises(RemoteError, match="already"):
            submit(client, material["medium"], outputs["cached"], replace=False, **keyed)
        outputs["cached"].unlink()
        hit = submit(client, material["medium"], outputs["cached"], replace=False, **keyed)
        assert wait(client, hit["job"])["stage"] == "done"  # a free name is written as ever
    refused = worker.cli("submit", material["small"], "-o", outputs["run"], "--psf", psf,
                         "--no-clobber", "--wait")  # fmt: skip
    assert refused.returncode == ExitStatus.TAKEN, refused.stderr
    assert refused.stderr.count("\n") == 1 and "already, kept" in refused.stderr
    for name in ("run", "follower"):
        assert outputs[name].read_bytes() == theirs
    assert tifffile.imread(outputs["cached"]).shape == (192, 256, 3)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_leader_whose_name_was_taken_hands_its_computation_on(worker, material, tmp_path):
    """A leader that fails only because its output's name was taken (a helper's attack, engine
    0.3.54): a follower writing that name fails so too (`taken`), a follower with a name of its
    own gets the computation and its result; and a job that may replace cannot join one that
    must not on the same output (the file there would be replaced, or the wrong job told)."""
    shared, own = tmp_path / "shared.tif", tmp_path / "own.tif"
    keyed = {"psf": str(material["psf"]), "key": "e5" * 16, "replace": False}
    worker.wait_warm()
    with worker.client() as client:
        with paused(*worker.executor_pids()):
            leader = submit(client, material["medium"], shared, **keyed)
            same = submit(client, material["medium"], shared, **keyed)
            other = submit(client, material["medium"], own, **keyed)
            assert same["follows"] == other["follows"] == leader["job"]
            with pytest.raises(RemoteError, match="is writing") as refused:
                submit(client, material["medium"], shared, **{**keyed, "replace": True})
            assert refused.value.code == protocol.BUSY
            shared.write_bytes(b"another program's")
        ends = {name: wait(client, job["job"]) for name, job in
                (("leader", leader), ("same", same), ("other", other))}  # fmt: skip
    assert [ends[n]["stage"] for n in ("leader", "same", "other")] == ["failed"] * 2 + ["done"]
    assert ends["leader"]["taken"] and ends["same"]["taken"] and not ends["other"]["taken"]
    assert shared.read_bytes() == b"another program's"
    assert tifffile.imread(own).shape == (192, 256, 3)


def test_a_job_joining_its_keys_cannot_take_another_jobs_output(worker, material, tmp_path):
    """A job with a key already queued joins that computation, but not an output another job
    is writing: until engine 0.3.19 the join came first, and the follower's copy replaced the
    other job's result (a 64 x 80 picture where a 192 x 256 one belonged)."""
    taken = tmp_path / "taken.tif"
    with worker.client() as client:
        other = submit(client, material["medium"], taken, psf=str(material["psf"]))
        fields = {"psf": str(material["psf"]), "key": "c3" * 16}
        first = submit(client, material["small"], tmp_path / "first.tif", **fields)
        with pytest.raises(RemoteError, match=r"is writing .*taken\.tif already") as refused:
            submit(client, material["small"], taken, **fields)
        assert refused.value.code == "busy"
        same = submit(client, material["small"], tmp_path / "first.tif", **fields)
        assert same["follows"] == first["job"]  # its own computation's output: one file
        for job in (other, first, same):
            assert wait(client, job["job"])["stage"] == "done"
    assert tifffile.imread(taken).shape == tifffile.imread(material["medium"]).shape


def test_results_get_the_users_file_mode_as_on_the_command_line(worker, material, tmp_path):
    """The worker keeps its socket's lock private (umask 077) but not its results: they are
    readable as any file the user makes (until engine 0.3.9 they were 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    with worker.client() as client:
        job = submit(client, material["small"], tmp_path / "o.tif", psf=str(material["psf"]))
        assert wait(client, job["job"])["stage"] == "done"
    assert (tmp_path / "o.tif").stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_same_key_submitted_twice_is_one_job_with_both_outputs(worker, material, tmp_path):
    worker.wait_warm()  # the blocker runs at once, not queued before the two
    with worker.client() as client:
        blocker = submit(client, material["medium"], tmp_path / "b.tif", psf=str(material["psf"]))
        fields = {"psf": str(material["psf"]), "key": "b2" * 16}
        one = submit(client, material["small"], tmp_path / "1.tif", **fields)
        two = submit(client, material["small"], tmp_path / "2.tif", **fields)
        assert two["follows"] == one["job"] and two["duplicate"] is True
        assert one["stage"] == "queued" and one["position"] == 0
        assert wait(client, one["job"])["stage"] == "done"
        assert wait(client, blocker["job"])["stage"] == "done"
        # (the follower's copy is made off the loop, after the leader is done: wait for it too)
        assert wait(client, two["job"])["stage"] == "done"
        # one computation, but each caller gets the output it asked for
        assert (tmp_path / "2.tif").read_bytes() == (tmp_path / "1.tif").read_bytes()


def test_a_cancelled_job_whose_run_goes_on_for_another_keeps_the_file_it_would_replace(
    worker, material, tmp_path
):
    # Two jobs of one key share one run; the first is cancelled while it runs, the run goes on
    # for the second. The file that was at the first one's output comes back as it was: until
    # engine 0.3.20 the run replaced it, then removed its own result, and the file was lost.
    precious, other = tmp_path / "1.tif", tmp_path / "2.tif"
    precious.write_bytes(b"the user's own picture")
    with worker.client() as client:
        fields = {"psf": str(material["psf"]), "key": "c4" * 16}
        one = submit(client, material["medium"], precious, **fields)
        two = submit(client, material["medium"], other, **fields)
        assert two["follows"] == one["job"]
        wait_for_detail(client, one["job"], ("deblurring",))
        assert client.request("cancel", job=one["job"])["stage"] == "cancelled"
        assert wait(client, two["job"])["stage"] == "done"
        assert wait(client, one["job"])["stage"] == "cancelled"
    assert precious.read_bytes() == b"the user's own picture"
    assert tifffile.imread(other).shape[:2] == tifffile.imread(material["medium"]).shape[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.tif", "2.tif"]


def cancel_at(
    client: Client, job: str, details: tuple[str, ...], limit: float = 1.0
) -> dict[str, Any] | None:
    """Cancel `job` the moment it reports one of `details`; its status then (None if it ended
    first). Checks that the cancel was answered within `limit` seconds."""
    status = wait_for_detail(client, job, details)
    if status["stage"] in FINAL:
        return None
    started = time.perf_counter()
    try:
        reply = client.request("cancel", job=job)
    except Exception as error:  # ended between the status and the cancel
        assert "already ended" in str(error)
        return None
    assert time.perf_counter() - started < limit  # 0.02-0.2 s measured
    assert reply["stage"] == "cancelled"
    return status


@pytest.mark.slow
@pytest.mark.parametrize(
    ("details", "fields"),
    [
        (("queued",), {"psf": True}),
        (("estimating",), {"blur": 9}),
        (("deblurring",), {"psf": True}),
        (("writing", "caching"), {"psf": True}),
    ],
)
def test_a_cancel_in_any_stage_stops_the_job_and_leaves_nothing(
    worker, material, tmp_path, details, fields
):
    fields = {**fields, "key": os.urandom(16).hex()}
    if fields.pop("psf", None):
        fields["psf"] = str(material["psf"])
    with worker.client() as client:
        for attempt in range(8):  # the writing stage is short: try until the cancel lands in it
            blocker = None
            if details == ("queued",):
                blocker = submit(
                    client,
                    material["medium"],
                    tmp_path / "blocker.tif",
                    **{"psf": str(material["psf"])},
                )
            out = tmp_path / f"out{attempt}.tif"
            job = submit(client, material["medium"], out, **fields)
            # (a job killed while it writes ends once its `fsync` returns: a slow disk's time)
            limit = 5.0 if "writing" in details else 1.0
            seen = cancel_at(client, job["job"], details, limit)
            if blocker:
                assert wait(client, blocker["job"])["stage"] == "done"
            if seen is not None:
                break
            fields["key"] = os.urandom(16).hex()
        else:
            pytest.skip(f"the job never stayed long enough in {details} to be cancelled")
        assert client.request("status", job=job["job"])["stage"] == "cancelled"
        assert not out.exists()
        assert leftovers(tmp_path, worker.cache_dir) == []
        assert ResultCache(worker.cache_dir).entry(fields["key"]) is None
        after = submit(client, material["small"], tmp_path / "after.tif", psf=str(material["psf"]))
        assert wait(client, after["job"])["stage"] == "done"


@pytest.mark.parametrize(
    ("number", "name"),
    [(signal.SIGKILL, "SIGKILL"), (signal.SIGRTMIN + 6, str(signal.SIGRTMIN + 6))],
    ids=["killed", "real-time signal"],  # (one without a name: until 0.3.56 the worker hung)
)
def test_a_crashed_job_fails_alone_and_the_worker_carries_on(
    worker, material, tmp_path, number, name
):
    with worker.client() as client:
        job = submit(client, material["medium"], tmp_path / "x.tif", psf=str(material["psf"]))
        wait_for_detail(client, job["job"], ("deblurring",))
        for pid in worker.executor_pids():
            os.kill(pid, number)  # SIGKILL as the kernel's OOM killer would
        final = wait(client, job["job"])
        assert final["stage"] == "failed"
        assert f"ended unexpectedly (signal {name})" in final["error"]
        after = submit(client, material["small"], tmp_path / "y.tif", psf=str(material["psf"]))
        assert wait(client, after["job"])["stage"] == "done"
        assert leftovers(tmp_path) == []


def test_twenty_clients_submitting_at_once(worker, material, tmp_path):
    replies: dict[int, dict[str, Any]] = {}

    def client_thread(n: int) -> None:
        with Client(worker.endpoint) as client:
            key = f"{n % 5:02d}" * 16  # clients n, n + 5, n + 10, n + 15 ask for one result
            out = tmp_path / f"out{n}.tif"
            replies[n] = submit(client, material["small"], out, psf=str(material["psf"]), key=key)

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(20)]
    worker.wait_warm()
    with paused(*worker.executor_pids()):  # no run ends before the last client has submitted
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(replies) == 20
    assert len({reply["job"] for reply in replies.values()}) == 20  # a job for each client
    assert len({reply["follows"] or reply["job"] for reply in replies.values()}) == 5  # 5 runs
    with worker.client() as client:
        finals = [wait(client, reply["job"]) for reply in replies.values()]
    assert all(final["stage"] == "done" for final in finals)
    for final in finals:
        assert Path(final["output"]).exists()


def follow(worker, source: Path, output: Path, psf: Path, *extra: str) -> subprocess.Popen:
    """`dt-deconvolve submit SOURCE -o OUTPUT --psf PSF EXTRA... --wait` as a real process."""
    command = [sys.executable, "-m", "worker", "submit", source, "-o", output, "--psf", psf]
    command += [*extra, "--wait", "--endpoint", worker.endpoint]
    return subprocess.Popen(
        list(map(str, command)), env=worker.env, stdout=subprocess.PIPE, text=True
    )


def test_a_client_killed_outright_mid_job_has_its_job_cancelled(worker, material, tmp_path):
    """A client that cannot react (SIGKILL: darktable's whole process group killed) leaves no
    result behind: the worker sees its process gone and cancels the job (until engine 0.3.22
    the job ran on and its result landed beside the picture, imported by no one)."""
    large = write_picture(tmp_path / "large.tif", (1600, 2400), seed=4)
    out = tmp_path / "out.tif"
    client = follow(worker, large, out, material["psf"])
    first = client.stdout.readline().split()
    client.kill()
    client.wait()
    client.stdout.close()
    assert first[0] == "JOB"
    with worker.client() as talk:
        assert wait(talk, first[1])["stage"] == "cancelled"
    assert not out.exists()


def test_a_paused_client_keeps_its_job(worker, material, tmp_path):
    """A client stopped for a while (SIGSTOP, a suspended laptop's darktable) still runs: its
    job is done, and the client reports it when it goes on."""
    out = tmp_path / "out.tif"
    client = follow(worker, material["small"], out, material["psf"])
    first = client.stdout.readline().split()
    client.send_signal(signal.SIGSTOP)
    try:
        with worker.client() as talk:
            assert wait(talk, first[1])["stage"] == "done"
            time.sleep(1.5)  # the worker's look at its clients (every second) has come
    finally:
        client.send_signal(signal.SIGCONT)
    lines = client.communicate(timeout=60)[0].splitlines()
    assert client.returncode == 0 and lines[-1] == f"DONE {out}"
    assert out.exists()


def test_a_job_whose_client_does_not_follow_it_runs_on(worker, material, tmp_path):
    """`submit` without --wait hands the job over and ends; a watcher that runs nowhere this
    worker can see (another machine's or pid namespace's process) is not watched."""
    plain, watched = tmp_path / "plain.tif", tmp_path / "watched.tif"
    handed = worker.cli("submit", material["small"], "-o", plain, "--psf", material["psf"])
    assert handed.returncode == 0, handed.stderr
    elsewhere = {"pid": 2**22 + 1, "started": 1}  # above Linux's largest pid
    with worker.client() as talk:
        job = submit(talk, material["small"], watched, psf=str(material["psf"]), watcher=elsewhere)
        assert wait(talk, job["job"])["stage"] == "done"
        assert wait(talk, handed.stdout.strip())["stage"] == "done"
    assert plain.exists() and watched.exists()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, "pipe"])
def test_a_client_stopped_while_it_waits_cancels_its_job(worker, material, tmp_path, stop):
    """A client stopped by a kill, a closed terminal or the reader of its output gone (`| head
    -1`) cancels its job: no result appears after it has ended without `DONE` (until engine
    0.3.9 only Ctrl-C did; the job ran on and its file came later)."""
    large = write_picture(tmp_path / "large.tif", (1200, 1600), seed=3)
    out = tmp_path / "out.tif"
    command = [sys.executable, "-m", "worker", "submit", large, "-o", out, "--psf"]
    command += [material["psf"], "--wait", "--endpoint", worker.endpoint]
    client = subprocess.Popen(
        list(map(str, command)), env=worker.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = client.stdout.readline().split()
    assert first[0] == b"JOB"
    if stop == "pipe":
        client.stdout.close()  # the next PROGRESS line finds no reader
    else:
        client.send_signal(stop)
    client.wait(timeout=60)
    errors = client.stderr.read()
    for stream in (client.stdout, client.stderr):
        stream.close()
    expected = 128 + (signal.SIGPIPE if stop == "pipe" else stop)
    assert client.returncode == expected, errors
    assert b"Traceback" not in errors
    with worker.client() as talk:
        assert wait(talk, first[1].decode())["stage"] == "cancelled"
    assert not out.exists()


def test_submit_wait_prints_progress_and_exit_codes(worker, material, tmp_path):
    out = tmp_path / "out.tif"
    done = worker.cli("submit", material["small"], "-o", out, "--psf", material["psf"], "--wait")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[0].startswith("JOB ") and lines[-1] == f"DONE {out}"
    progress = [line.split() for line in lines[1:-1]]
    assert progress and all(word == "PROGRESS" for word, _, _ in progress)
    assert all(stage in ("queued", "estimating", "deblurring", "writing") for *_, stage in progress)
    fractions = [float(fraction) for _, fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] <= 1
    bad = tmp_path / "bad.tif"
    bad.write_text("no")
    failed = worker.cli(
        "submit", bad, "-o", tmp_path / "o2.tif", "--psf", material["psf"], "--wait"
    )
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("dt-deconvolve: error:")


def test_submit_refuses_a_cache_other_than_the_running_workers(worker, material, tmp_path):
    # The worker owns its cache: a job asking for another would store its result elsewhere.
    out, other = tmp_path / "out.tif", tmp_path / "other-cache"
    asked = worker.cli("submit", material["small"], "-o", out, "--psf", material["psf"],
                       "--cache-dir", other, "--wait")  # fmt: skip
    assert asked.returncode == 1 and not out.exists() and not other.exists()
    assert asked.stderr == (
        f"dt-deconvolve: error: the worker at {worker.endpoint} keeps its results in "
        f"{worker.cache_dir}, not in {other}: stop it (dt-deconvolve shutdown) or leave out "
        "--cache-dir\n"
    )
    same = worker.cli("submit", material["small"], "-o", out, "--psf", material["psf"],
                      "--cache-dir", worker.cache_dir, "--wait")  # fmt: skip
    assert same.returncode == 0, same.stderr


def test_a_cache_folder_turned_into_a_file_leaves_the_job_done_and_uncached(material, tmp_path):
    """Until engine 0.3.56 such a job ran to its end, then failed and its output was removed,
    and so did every keyed job after it."""
    with running_worker(cache_dir=tmp_path / "cache") as worker, worker.client() as client:
        worker.wait_warm()
        shutil.rmtree(worker.cache_dir)
        worker.cache_dir.write_text("a file of the user's")
        out = tmp_path / "out.tif"
        job = submit(client, material["small"], out, psf=str(material["psf"]), key="c4" * 16)
        final = wait(client, job["job"])
        assert final["stage"] == "done", final["error"]
        assert final["note"].startswith("not cached: ")
        assert out.exists()
        assert worker.cache_dir.read_text() == "a file of the user's"


@pytest.mark.slow
def test_a_full_cache_disk_is_refused_but_the_job_succeeds(material, tmp_path):
    with (
        tiny_disk(tmp_path / "tiny", "size=256k") as tiny,
        running_worker(cache_dir=tiny) as worker,
        worker.client() as client,
    ):
        worker.wait_warm()
        out = tmp_path / "out.tif"
        job = submit(client, material["medium"], out, psf=str(material["psf"]), key="c3" * 16)
        final = wait(client, job["job"])
        assert final["stage"] == "done", final["error"]
        assert final["note"].startswith("not cached:")
        assert out.exists()
        assert list(tiny.iterdir()) == []


@pytest.mark.slow
def test_a_worker_killed_mid_write_leaves_no_partial_entry(material, tmp_path):
    key = "d4" * 16
    with running_worker() as worker, worker.client() as client:
        worker.wait_warm()
        job = submit(
            client, material["small"], tmp_path / "o.tif", psf=str(material["psf"]), key=key
        )
        executors = worker.executor_pids()
        wait_for_detail(client, job["job"], ("writing", "caching"))
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        deadline = time.monotonic() + 10  # the executors notice and stop
        while any(process_lives(pid) for pid in executors):
            assert time.monotonic() < deadline, "an executor outlived its worker"
            time.sleep(0.05)
        cache = ResultCache(worker.cache_dir)
        entry = cache.entry(key)
        if entry is not None:  # whole, or nothing
            assert entry.file(RESULT).stat().st_size == entry.record["files"][RESULT]
        worker.start()
        assert not [p for p in worker.cache_dir.iterdir() if p.name.startswith(".")]
        again = submit(
            client, material["small"], tmp_path / "o2.tif", psf=str(material["psf"]), key=key
        )
        assert wait(client, again["job"])["stage"] == "done"


@pytest.mark.slow
def test_jobs_two_runs_two_jobs_at_once(material, tmp_path):
    with running_worker("--jobs", "2") as worker, worker.client() as client:
        worker.wait_warm(2)
        jobs = [
            submit(client, material["medium"], tmp_path / f"{n}.tif", psf=str(material["psf"]))
            for n in range(3)
        ]
        assert client.request("ping")["running"] == 2  # the third waits
        assert client.request("status", job=jobs[2]["job"])["stage"] == "queued"
        assert all(wait(client, job["job"])["stage"] == "done" for job in jobs)


def test_submit_wait_tells_how_sure_the_blur_is(worker, material, tmp_path):
    out = tmp_path / "out.tif"
    done = worker.cli("submit", material["small"], "-o", out, "--blur", "auto", "--wait")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"DONE {out}" and lines[-2].startswith("BLUR ")
    assert 0 <= float(lines[-2].split()[1]) <= 1 and len(lines[-2].split()) > 3
