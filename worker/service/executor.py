"""The executor: a child process of the worker that runs jobs, warm.

`python -m worker.service.executor`.

It imports the engine and runs a tiny job once (compiling the numba kernels and planning FFTs), says
`ready`, then reads one job per line on stdin and writes JSON events on stdout:

    {"event": "ready", "seconds": 2.1}
    {"event": "progress", "job": ID, "fraction": 0.42, "stage": "deblurring"}
    {"event": "done", "job": ID, "report": {...}, "note": null | "not cached: ..."}
    {"event": "failed", "job": ID, "error": "one line", "detail": "traceback"}
    {"event": "broken", "error": "one line"}           could not start; the process exits

When stdin closes (the worker is gone), the running job stops at its next progress report, its
temporary files are removed, and the process exits.
"""

import contextlib
import dataclasses
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
from typing import Any

import numpy as np

from cache.store import PSF, PSF_PNG, RESULT, CacheLimits, NotCached, ResultCache
from worker import __version__
from worker.errors import InputError, describe_error, is_internal
from worker.files.kernels import picture_path, save_kernel_picture

PROGRESS_INTERVAL = 0.1  # seconds between progress events (stage changes are always sent)


class Abandoned(Exception):
    """The worker went away: stop the job, cleaning up as any exception does."""


Send = Callable[[dict[str, Any]], None]


def make_sender(stream: io.TextIOBase) -> Send:
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        with lock, contextlib.suppress(BrokenPipeError):  # a worker gone hears nothing
            stream.write(json.dumps(event) + "\n")
            stream.flush()

    return send


def job_options(task: dict[str, Any], psf_out: Path | None) -> Any:
    """The pipeline's `JobOptions` for a task; unknown engine settings are an `InputError`."""
    from worker.deconv.settings import DeblurSettings
    from worker.pipeline import JobOptions

    known = {f.name for f in dataclasses.fields(DeblurSettings)}
    unknown = sorted(set(task["settings"]) - known)
    if unknown:
        raise InputError(f"unknown engine setting '{unknown[0]}' (known: {', '.join(known)})")
    return JobOptions(
        psf_path=task["psf"],
        blur=task["blur"],
        window=task["window"],
        psf_out=str(psf_out) if psf_out else None,
        settings=DeblurSettings(**task["settings"]),
    )


def kernel_files(task: dict[str, Any], psf_out: Path) -> dict[str, Path]:
    """The kernel of a job and its picture, to cache: the estimated ones, or the PSF it was
    given (with a picture drawn now)."""
    if psf_out.exists():
        return {PSF: psf_out, PSF_PNG: picture_path(psf_out)}
    if not task["psf"]:
        return {}
    picture = picture_path(psf_out)
    with contextlib.suppress(OSError, ValueError):  # no picture is no reason to fail the job
        save_kernel_picture(picture, np.load(task["psf"], allow_pickle=False))
    return {PSF: Path(task["psf"]), PSF_PNG: picture}


def cache_result(task: dict[str, Any], report: dict[str, Any], psf_out: Path) -> str | None:
    """Store the job's output and kernel under its key; returns why not, or None."""
    limits = CacheLimits(**task["cache_limits"])
    files = {RESULT: Path(task["output"]), **kernel_files(task, psf_out)}
    files = {name: path for name, path in files.items() if path.exists()}
    record = {
        "job": task["job"],
        "algorithm": __version__,
        "input": task["input"],
        "parameters": {name: task[name] for name in ("psf", "blur", "window", "settings")},
        "report": report,
    }
    try:
        ResultCache(task["cache_dir"], limits).store(task["key"], files, record, tag=task["job"])
    except NotCached as refused:
        return str(refused)
    return None


def run_job(task: dict[str, Any], send: Send, abandoned: threading.Event) -> None:
    """Run one job, reporting progress; every failure becomes one `failed` event."""
    from worker.pipeline import run_pipeline

    job = task["job"]
    last = {"stage": "", "time": 0.0}

    def progress(fraction: float, stage: str) -> None:
        if abandoned.is_set():
            raise Abandoned("the worker went away")
        now = time.monotonic()
        if stage != last["stage"] or now - last["time"] >= PROGRESS_INTERVAL:
            last.update(stage=stage, time=now)
            send({"event": "progress", "job": job, "fraction": fraction, "stage": stage})

    kernel = Path(task["scratch"]) / "psf.npy"  # where an estimated PSF is kept for the cache
    try:
        progress(0.0, "reading")
        options = job_options(task, kernel if task["key"] and not task["psf"] else None)
        report = run_pipeline(task["input"], task["output"], options, progress)
        note = None
        if task["key"]:
            progress(1.0, "caching")
            note = cache_result(task, report, kernel)
        send({"event": "done", "job": job, "report": report, "note": note})
    except MemoryError as error:
        send({"event": "failed", "job": job, "error": describe_error(error), "detail": ""})
        raise  # the process may be in a poor state: let the worker start a fresh one
    except Exception as error:
        detail = traceback.format_exc() if is_internal(error) else ""
        send({"event": "failed", "job": job, "error": describe_error(error), "detail": detail})


def read_tasks(tasks: "queue.Queue[dict[str, Any] | None]", abandoned: threading.Event) -> None:
    """Read job lines from stdin until it closes (the worker is gone)."""
    for line in sys.stdin:
        try:
            tasks.put(json.loads(line))
        except ValueError:
            continue
    abandoned.set()
    tasks.put(None)


def main() -> int:
    # Events go to the original stdout; anything else printed lands on stderr.
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    send = make_sender(events)
    started = time.monotonic()
    try:
        from worker.pipeline import warm_up

        warm_up()
    except Exception as error:
        send({"event": "broken", "error": f"cannot start the engine: {describe_error(error)}"})
        return 1
    send({"event": "ready", "seconds": round(time.monotonic() - started, 3)})
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
