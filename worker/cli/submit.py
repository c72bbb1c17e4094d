"""`dt-deconvolve submit INPUT -o OUTPUT`: hand a job to the worker (started if none answers).

Without `--wait` it prints the job id. With `--wait` it prints, one line each (for the plug-in):

    WORKER <pid> <started>                  when this command started the worker (its pid and
                                            start, as `ping` gives them; `lines.worker_line`)
    JOB <id>
    PROGRESS <fraction 0..1> <stage>        stage: queued | estimating | deblurring | writing
    BLUR <confidence 0..1> <kernel> <reason>  when the blur was estimated (by this job, or by
                                            the one whose cached result it copies)
    DONE <output path>                      the path as one escaped field (`worker.cli.lines`)

and ends with its `ExitStatus`: `OK` when done, `FAILED` when the job failed (the reason on
stderr), `CANCELLED` when it was cancelled, `TAKEN` when `--no-clobber` found a file at the
output's name, `USAGE` for options that do not go together.
A client stopped while it follows its job (Ctrl-C, a kill, its terminal or its stdout's reader
gone) cancels the job first, even one stopped as it hands the job over: no result appears
after the command has ended without `DONE`. So does one that cannot print the job's id. One
killed outright (SIGKILL) cannot: the worker, told who follows the job, cancels it when this
process has gone. A job that a stopping worker refuses goes to the worker started after it.
"""

import argparse
import contextlib
import errno
import os
from pathlib import Path
from typing import Any

from worker.cli.endpoint import (
    ANSWER_TIMEOUT,
    add_cache_dir_option,
    add_endpoint_options,
    cache_dir_of,
    client_of,
)
from worker.cli.exit_status import ExitStatus
from worker.cli.lines import blur_line, path_field, worker_line
from worker.cli.options import add_job_options, add_output_options, job_spec
from worker.cli.streams import reader_left, warn
from worker.errors import InputError, NameTaken, RemoteError
from worker.processes import process_start
from worker.service import protocol
from worker.service.client import STARTED_HERE, ensure_worker, next_worker
from worker.signals import held
from worker.stages import Stage


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `submit` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser("submit", help="queue a job on the worker")
    parser.add_argument("input", type=Path, metavar="INPUT", help="the picture to deblur (TIFF)")
    add_output_options(parser, "where to write it")
    add_job_options(parser)
    parser.add_argument("--key", help="cache the result under this key (from `key`)")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the job: WORKER (a worker it started), JOB, PROGRESS, BLUR and DONE lines",
    )
    add_endpoint_options(parser)
    add_cache_dir_option(parser)
    parser.set_defaults(func=run)


def say(line: str) -> None:
    """Print one line for the plug-in on stdout, at once (flushed).

    Parameters
    ----------
    line : str
        The line, without its end.

    Raises
    ------
    BrokenPipeError
        When stdout's reader has gone.
    """
    print(line, flush=True)


def say_started(worker: dict[str, Any], wait: bool) -> None:
    """With `wait`, the `worker_line` of a worker this command started (`ensure_worker`).

    Parameters
    ----------
    worker : dict
        Its ping reply, with `STARTED_HERE`.
    wait : bool
        Whether the command follows its job (`--wait`): the lines are the plug-in's then.
    """
    line = worker_line(worker) if wait and worker[STARTED_HERE] else None
    if line is not None:
        say(line)


def check_cache(worker: dict[str, Any], asked: Path | None) -> None:
    """Refuse a `--cache-dir` other than the cache of the worker that answered (it owns its
    cache: the job's result would go to the worker's, not to the folder asked for).

    Parameters
    ----------
    worker : dict
        The worker's ping reply: its ``cache_dir`` and ``endpoint``. (The protocol keeps
        ``cache_dir`` optional, so that an older worker's ping still decodes and its version can
        be read; a reply without one is not checked.)
    asked : Path or None
        The `--cache-dir` given; None: any cache will do. Compared with the worker's once both
        are resolved (links followed).

    Raises
    ------
    InputError
        When the worker keeps its results in another folder.
    """
    kept = worker.get("cache_dir")
    if asked is None or not isinstance(kept, str) or Path(kept).resolve() == asked.resolve():
        return
    raise InputError(
        f"the worker at {worker['endpoint']} keeps its results in {kept}, not in {asked}: stop "
        "it (dt-deconvolve shutdown) or leave out --cache-dir"
    )


def watcher() -> dict[str, int] | None:
    """This process as a job's watcher (`protocol.WATCHER_FIELDS`): the worker cancels the job
    once this process has gone.

    Returns
    -------
    dict of str to int or None
        ``{"pid": its pid, "started": its start}`` (`process_start`); None where it cannot
        tell when it started (no ``/proc``).
    """
    started = process_start("self")
    if started is None:
        return None
    return dict(zip(protocol.WATCHER_FIELDS, (os.getpid(), started), strict=True))


def run(args: argparse.Namespace) -> int:
    """`submit INPUT -o OUTPUT`: hand the job to a worker of this version (started if none
    answers), then print its id, or with `--wait` follow it to its end (the lines above).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `input`, `output` (made absolute), the options of
        `add_job_options`, `key`, `wait`, and the endpoint's and the cache's options.

    Returns
    -------
    int
        `ExitStatus.OK` once the job is handed over (without `--wait`) or done;
        `ExitStatus.CANCELLED` when it was cancelled (a line on stderr says so).

    Raises
    ------
    InputError
        When the options make no job (`job_spec`), the endpoint is malformed, the worker keeps
        its results elsewhere than `--cache-dir` (`check_cache`), no worker of this version
        can be had (`ensure_worker`, `WorkerUnavailable`), the worker went away while the job
        ran, or the job failed (its reason).
    RemoteError
        When the worker refuses the job (a missing input, a busy worker...).
    NameTaken
        With ``--no-clobber``, when a file is at OUTPUT, there before the job or made while
        it ran: the job is refused, or fails, and the file is kept.
    """
    spec = job_spec(args, str(args.output.absolute()))
    with client_of(args) as client:
        worker = ensure_worker(client, cache_dir_of(args))
        say_started(worker, args.wait)
        check_cache(worker, args.cache_dir)
        shown: list[tuple[str, str]] = []

        def show(status: dict[str, Any]) -> None:
            if reader_left():  # (the job is cancelled on the way out, as for a failed print)
                raise BrokenPipeError(errno.EPIPE, "the reader of the command's output left")
            if Stage(status["stage"]).final:
                return
            line = (f"{status['fraction']:.3f}", status["stage"])
            if not shown or shown[-1] != line:
                shown.append(line)
                say(f"PROGRESS {line[0]} {line[1]}")

        fields = spec.as_fields()
        if args.wait:  # the worker cancels the job if this process ends before it does
            fields["watcher"] = watcher()
        job: str | None = None
        try:
            while job is None:
                try:
                    with held():  # a stop comes once the job's id is known, to cancel it
                        submitted = client.request("submit", **fields)
                        job = submitted["job"]
                except RemoteError as error:
                    if error.code == protocol.TAKEN:
                        raise NameTaken(spec.output) from None
                    if error.code != protocol.STOPPING:
                        raise
                    worker = next_worker(client, worker, cache_dir_of(args))
                    say_started(worker, args.wait)
            say(f"JOB {job}" if args.wait else job)
            if not args.wait:
                return ExitStatus.OK
            show(submitted)  # (where the job starts: one that ends at once has a PROGRESS line)
            final = client.wait(job, show, worker)
        except BaseException:  # Ctrl-C, a kill, a closed terminal or pipe: the job goes too
            if job is not None:
                with contextlib.suppress(Exception):  # (a worker gone cannot be asked)
                    client.request("cancel", job=job, timeout=ANSWER_TIMEOUT)
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
    if final.get("taken"):
        raise NameTaken(spec.output)
    raise InputError(final["error"] or "the job failed")
