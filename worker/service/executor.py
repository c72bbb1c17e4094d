"""The executor: a child process of the worker that runs jobs, warm.

`python -m worker.service.executor [FOLDER]` (FOLDER: a private folder for the warm-up's files,
which the worker removes with the process; without it, the system's temporary folder).

It imports the engine and runs a tiny job once (compiling the numba kernels and planning FFTs), says
`ready`, then reads one job per line on stdin and writes JSON events (`jobs.Event`) on stdout:

    {"event": "ready", "seconds": 2.1}
    {"event": "progress", "job": ID, "fraction": 0.42, "stage": "deblurring"}   a `Stage` name
    {"event": "done", "job": ID, "report": {...}, "note": null | "not cached: ..."}
    {"event": "failed", "job": ID, "error": "one line", "detail": "traceback"}
    {"event": "broken", "error": "one line"}           could not start; the process exits

When stdin closes (the worker is gone), the running job stops at its next progress report, its
temporary files are removed, and the process exits.
"""

import contextlib
import io
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cache.store import PSF, PSF_PNG, RESULT, CacheLimits, ResultCache
from worker import __version__
from worker.errors import (
    Abandoned,
    InputError,
    NameTaken,
    NotCached,
    describe_error,
    describe_os_error,
    is_internal,
)
from worker.files.kernels import picture_path
from worker.jobspec import JobSpec
from worker.regular import open_regular
from worker.service.confine import check_inside
from worker.service.executor_process import Event
from worker.stages import Stage

if TYPE_CHECKING:
    from worker.pipeline import KnownKernel

PROGRESS_INTERVAL = 0.1  # seconds between progress events (stage changes are always sent)


Send = Callable[[dict[str, Any]], None]


def make_sender(stream: io.TextIOBase) -> Send:
    """A function that writes one event to `stream` as a JSON line, whole even from several
    threads; a worker gone (a broken pipe) hears nothing.

    Parameters
    ----------
    stream : io.TextIOBase
        Where events go: the executor's original stdout, read by the worker.

    Returns
    -------
    Send
        ``send(event)``: writes `event` (a JSON-ready dict) and a line end, then flushes. A
        `BrokenPipeError` is dropped; other errors (a value JSON cannot hold) propagate.
    """
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        with lock, contextlib.suppress(BrokenPipeError):  # a worker gone hears nothing
            stream.write(json.dumps(event) + "\n")
            stream.flush()

    return send


def kernel_files(scratch_kernel: Path | None) -> dict[str, Path]:
    """The kernel a job used and its picture, to cache: the copy the job saved in its scratch
    folder (an estimate, or the checked copy of a kernel it was given).

    Parameters
    ----------
    scratch_kernel : Path or None
        Where the job saved its kernel (``psf.npy`` in its scratch folder); None: the job had
        no scratch folder.

    Returns
    -------
    dict of str to Path
        Entry file names (`PSF`, `PSF_PNG`) to the files to store; a picture may be missing
        (the caller keeps the files that exist). Empty when the job saved no kernel.
    """
    if scratch_kernel is None or not scratch_kernel.exists():
        return {}
    return {PSF: scratch_kernel, PSF_PNG: picture_path(scratch_kernel)}


def known_kernel(known: dict[str, Any] | None, spec: JobSpec) -> "KnownKernel | None":
    """The cached kernel the worker handed the job `spec` with (`Job.task`), with its estimate.

    Parameters
    ----------
    known : dict or None
        The task's ``known``: ``{"path": the kernel's copy, "report": the report of the job
        that estimated it, "made": that job's parameters}``, or None.
    spec : JobSpec
        The job.

    Returns
    -------
    KnownKernel or None
        The kernel and its estimate (`pipeline.cached_estimate`). None when none was cached,
        it was made with other parameters than `spec`'s (a key chosen by hand; compared as
        JSON), or its report holds no usable estimate: the job then estimates it again.
    """
    from worker.pipeline import KnownKernel, cached_estimate

    if known is None or known.get("made") != json.loads(json.dumps(spec.parameters())):
        return None
    estimate = cached_estimate(known.get("report"))
    return None if estimate is None else KnownKernel(known["path"], estimate)


def cache_result(
    task: dict[str, Any],
    spec: JobSpec,
    report: dict[str, Any],
    scratch_kernel: Path | None,
    written: os.stat_result,
) -> str | None:
    """Store the job's output and kernel under its key.

    The output is stored only while it is still the file the job wrote: one that another
    program put at its name since is not this job's result.

    Parameters
    ----------
    task : dict
        The job's task (`Job.task`): its ``job`` id (the entry's writer tag), ``cache_dir`` and
        ``cache_limits``.
    spec : JobSpec
        The job, which has a key.
    report : dict
        The job's report, kept in the entry's record.
    scratch_kernel : Path or None
        Where the job saved its kernel (`kernel_files`).
    written : os.stat_result
        The output as the job wrote it (`run_pipeline`'s ``on_written``).

    Returns
    -------
    str or None
        Why the entry was not cached, starting "not cached: ": the cache refused it
        (`NotCached`: over the cap, too little free disk), or its folder cannot be used (a
        file or a dead link at its place, a read-only disk...), or the output is no longer the
        job's; the job is done all the same. None once it is stored (or an entry already there
        is kept).
    """
    assert spec.key is not None
    try:
        result = open_regular(spec.output, follow=False)
    except OSError as error:
        return f"not cached: {describe_os_error(error)}"
    with result:
        if not os.path.samestat(os.fstat(result.fileno()), written):
            return "not cached: another file took the output's name after the job wrote it"
        return _store(task, spec, report, {RESULT: result, **kernel_files(scratch_kernel)})


def _store(
    task: dict[str, Any],
    spec: JobSpec,
    report: dict[str, Any],
    files: dict[str, Path | BinaryIO],
) -> str | None:
    """`cache_result`'s entry stored: its files (those that exist) and its record."""
    assert spec.key is not None
    limits = CacheLimits(**task["cache_limits"])
    files = {
        name: source
        for name, source in files.items()
        if not isinstance(source, Path) or source.exists()
    }
    record = {
        "job": task["job"],
        "algorithm": __version__,
        "input": spec.input,
        "parameters": spec.parameters(),
        "report": report,
    }
    try:
        ResultCache(task["cache_dir"], limits).store(spec.key, files, record, tag=task["job"])
    except NotCached as refused:
        return str(refused)
    except InputError as error:  # (something other than a folder at the cache's place)
        return f"not cached: {error}"
    except OSError as error:  # (until engine 0.3.56 the job failed, its output removed)
        return f"not cached: {describe_os_error(error)}"
    return None


def run_job(task: dict[str, Any], send: Send, abandoned: threading.Event) -> None:
    """Run one job, reporting progress: it ends with one `done` or one `failed` event.

    An `Exception` (`Abandoned` included) is reported and goes no further; the `failed` event
    says whether the output's name was taken (``taken``: a `NameTaken`, under ``replace:
    false``). A job abandoned just after its output was written removes that output: its
    client was told it failed. A job that does not replace removes only an output it wrote
    itself: a file made at the name before that may be another program's.

    Parameters
    ----------
    task : dict
        The job's task (`Job.task`).
    send : Send
        Writes one event to the worker (`make_sender`).
    abandoned : threading.Event
        Set when the worker has gone (`read_tasks`): the job stops at its next progress
        report (`Abandoned`).

    Raises
    ------
    MemoryError
        After its `failed` event: the process may be in a poor state, and should end.
    """
    from worker.pipeline import run_pipeline

    job = task["job"]
    last_stage, last_time = "", 0.0

    def progress(fraction: float, stage: str) -> None:
        nonlocal last_stage, last_time
        if abandoned.is_set():
            raise Abandoned("the worker went away")
        now = time.monotonic()
        if stage != last_stage or now - last_time >= PROGRESS_INTERVAL:
            last_stage, last_time = stage, now
            send({"event": Event.PROGRESS, "job": job, "fraction": fraction, "stage": stage})

    # where the job's PSF is kept for the cache (nowhere when the runtime disk is full)
    kernel = Path(task["scratch"]) / PSF if task.get("scratch") else None
    output = str(task["spec"].get("output", ""))
    written: list[os.stat_result] = []  # the output, once the job has written it
    try:
        progress(0.0, Stage.READING)
        spec = JobSpec.from_fields(task["spec"])
        # A remote client's paths again, as the job starts: a folder on them may have become a
        # link out of the allowed folders while the job waited.
        check_inside((spec.input, spec.output, spec.psf), task.get("allowed"))
        scratch_kernel = kernel if spec.key else None
        known = known_kernel(task.get("known"), spec)
        report = run_pipeline(spec, progress, scratch_kernel, known, written.append)
        # (its `psf_out` names the scratch copy, gone after the job: the kernel is the cache's)
        report.pop("psf_out", None)
        note = None
        if spec.key:
            progress(1.0, Stage.CACHING)
            note = cache_result(task, spec, report, kernel, written[0])
        send({"event": Event.DONE, "job": job, "report": report, "note": note})
    except MemoryError as error:
        send({"event": Event.FAILED, "job": job, "error": describe_error(error), "detail": ""})
        raise  # the process may be in a poor state: let the worker start a fresh one
    except Exception as error:
        if isinstance(error, Abandoned) and written:
            # The worker went away just after the result was written: its client was told the
            # job failed, so no result may appear afterwards (a file another program put at
            # its name since is left).
            with contextlib.suppress(OSError):
                if os.path.samestat(written[0], os.lstat(output)):
                    os.unlink(output)
        detail = traceback.format_exc() if is_internal(error) else ""
        error_text, taken = describe_error(error), isinstance(error, NameTaken)
        send(
            {
                "event": Event.FAILED,
                "job": job,
                "error": error_text,
                "detail": detail,
                "taken": taken,
            }
        )


def read_tasks(tasks: "queue.Queue[dict[str, Any] | None]", abandoned: threading.Event) -> None:
    """Read job lines from stdin until it closes (the worker is gone).

    Parameters
    ----------
    tasks : queue.Queue
        Where each task read goes (a line that is not JSON is skipped), then None at the end.
    abandoned : threading.Event
        Set when stdin closes, before the None is queued.
    """
    for line in sys.stdin:
        try:
            tasks.put(json.loads(line))
        except ValueError:
            continue
    abandoned.set()
    tasks.put(None)


def main() -> int:
    """Warm up, say `ready`, then run the jobs read on stdin until it closes.

    The warm-up's files go to the folder named by the first command-line argument, if any
    (`pipeline.warm_up`). Events go to the original stdout; anything else printed to stdout
    lands on stderr.

    Returns
    -------
    int
        The exit status: 0 once stdin has closed; 1 when the engine cannot start (after a
        `broken` event) or a job ran out of memory.
    """
    # Events go to the original stdout; anything else printed lands on stderr.
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    send = make_sender(events)
    started = time.monotonic()
    try:
        from worker.pipeline import warm_up

        warm_up(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    except Exception as error:
        send({"event": Event.BROKEN, "error": f"cannot start the engine: {describe_error(error)}"})
        return 1
    send({"event": Event.READY, "seconds": round(time.monotonic() - started, 3)})
    tasks: queue.Queue[dict[str, Any] | None] = queue.Queue()
    abandoned = threading.Event()
    threading.Thread(target=read_tasks, args=(tasks, abandoned), daemon=True).start()
    while (task := tasks.get()) is not None:
        try:
            run_job(task, send, abandoned)
        except MemoryError:
            return 1
        if abandoned.is_set():
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
