"""`dt-deconvolve submit INPUT -o OUTPUT`: hand a job to the worker (started if none answers).

Without `--wait` it prints the job id. With `--wait` it prints, one line each (for the plug-in):

    JOB <id>
    PROGRESS <fraction 0..1> <stage>        stage: queued | estimating | deblurring | writing
    BLUR <confidence 0..1> <kernel> <reason>  when the blur was estimated (not from the cache)
    DONE <output path>                      the path as one escaped field (`worker.cli.lines`)

and exits 0 when done, 1 when the job failed (the reason on stderr), 3 when it was cancelled.
A client stopped while it follows its job (Ctrl-C, a kill, its terminal or its stdout's reader
gone) cancels the job first, even one stopped as it hands the job over: no result appears
after the command has ended without `DONE`. So does one that cannot print the job's id. A job
that a stopping worker refuses goes to the worker started after it.
"""

import argparse
import contextlib
from pathlib import Path
from typing import Any

from worker.cli.endpoint import (
    add_cache_dir_option,
    add_endpoint_options,
    cache_dir_of,
    client_of,
)
from worker.cli.exit_status import ExitStatus
from worker.cli.lines import blur_line, path_field
from worker.cli.options import add_engine_options, settings_from_args
from worker.cli.psf import add_window_option, blur_size
from worker.cli.streams import warn
from worker.deconv.settings import AUTO
from worker.errors import InputError, RemoteError
from worker.jobspec import JobSpec
from worker.service import protocol
from worker.service.client import ensure_worker, next_worker
from worker.signals import held
from worker.stages import Stage


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how to deblur (shared with `key`, which hashes them)."""
    add_engine_options(parser)
    parser.add_argument(
        "--blur",
        type=blur_size,
        default=AUTO,
        metavar="K|auto",
        help="estimate the blur first, at most K x K (odd), or 'auto' (the default without --psf)",
    )
    add_window_option(parser, None)
    parser.add_argument("--psf", type=Path, metavar="PSF", help="use this kernel (.npy) instead")


def job_spec(args: argparse.Namespace, output: str) -> JobSpec:
    """The job that the options of `add_job_options` (and `--key`, if any) describe."""
    spec = JobSpec(
        input=str(args.input.absolute()),
        output=output,
        key=getattr(args, "key", None),
        psf=str(args.psf.absolute()) if args.psf else None,
        blur=None if args.psf else args.blur,
        window=args.window,
        settings=settings_from_args(args),
    )
    spec.validate()
    return spec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="queue a job on the worker")
    parser.add_argument("input", type=Path, metavar="INPUT", help="the picture to deblur (TIFF)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write it")
    add_job_options(parser)
    parser.add_argument("--key", help="cache the result under this key (from `key`)")
    parser.add_argument(
        "--wait", action="store_true", help="follow the job: JOB, PROGRESS and DONE lines"
    )
    add_endpoint_options(parser)
    add_cache_dir_option(parser)
    parser.set_defaults(func=run)


def say(line: str) -> None:
    print(line, flush=True)


def check_cache(worker: dict[str, Any], asked: Path | None) -> None:
    """Refuse a `--cache-dir` other than the cache of the worker that answered (it owns its
    cache: the job's result would go to the worker's, not to the folder asked for)."""
    kept = worker.get("cache_dir")  # (a worker of engine 0.3.19 or older does not say)
    if asked is None or not isinstance(kept, str) or Path(kept).resolve() == asked.resolve():
        return
    raise InputError(
        f"the worker at {worker['endpoint']} keeps its results in {kept}, not in {asked}: stop "
        "it (dt-deconvolve shutdown) or leave out --cache-dir"
    )


def run(args: argparse.Namespace) -> int:
    spec = job_spec(args, str(args.output.absolute()))
    with client_of(args) as client:
        worker = ensure_worker(client, cache_dir_of(args))
        check_cache(worker, args.cache_dir)
        shown: list[tuple[str, str]] = []

        def show(status: dict[str, Any]) -> None:
            if Stage(status["stage"]).final:
                return
            line = (f"{status['fraction']:.3f}", status["stage"])
            if not shown or shown[-1] != line:
                shown.append(line)
                say(f"PROGRESS {line[0]} {line[1]}")

        job: str | None = None
        try:
            while job is None:
                try:
                    with held():  # a stop comes once the job's id is known, to cancel it
                        job = client.request("submit", **spec.as_fields())["job"]
                except RemoteError as error:
                    if error.code != protocol.STOPPING:
                        raise
                    worker = next_worker(client, worker, cache_dir_of(args))
            say(f"JOB {job}" if args.wait else job)
            if not args.wait:
                return ExitStatus.OK
            final = client.wait(job, show, worker)
        except BaseException:  # Ctrl-C, a kill, a closed terminal or pipe: the job goes too
            if job is not None:
                with contextlib.suppress(Exception):  # (a worker gone cannot be asked)
                    client.request("cancel", job=job, timeout=2.0)
            raise
    if final["stage"] == Stage.DONE:
        if final.get("note") and final["note"] != protocol.FROM_CACHE:
            warn(f"note: {final['note']}")
        blur = blur_line(final.get("report") or {})
        if blur:
            say(blur)
        say(f"DONE {path_field(spec.output)}")
        return ExitStatus.OK
    if final["stage"] == Stage.CANCELLED:
        warn(f"job {final['job']} was cancelled")
        return ExitStatus.CANCELLED
    raise InputError(final["error"] or "the job failed")
