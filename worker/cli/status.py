"""`dt-deconvolve status [JOB]`: a job's stage, progress and time left (or every job's)."""

import argparse
import json
from typing import Any

from worker.cli.endpoint import add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus
from worker.errors import ProtocolError
from worker.stages import FINAL_STAGES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `status` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser("status", help="show a job's progress, or list the jobs")
    parser.add_argument("job", metavar="JOB", nargs="?", help="a job id (default: every job)")
    add_endpoint_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def describe(job: dict[str, Any]) -> str:
    """One line for a job: id, stage, percent, time left, and why it failed.

    Parameters
    ----------
    job : dict
        A job as the worker's `status` and `list` replies give it: `job`, `stage`, `fraction`
        (0 to 1) and, when known, `seconds_left` and `error`.

    Returns
    -------
    str
        ``ID STAGE PERCENT%``, then `` (N s left)`` while the job has not ended and
        ``: ERROR`` when it has an error.
    """
    line = f"{job['job']} {job['stage']} {100 * job['fraction']:.0f}%"
    if job.get("seconds_left") is not None and job["stage"] not in FINAL_STAGES:
        line += f" ({job['seconds_left']:.0f} s left)"
    if job.get("error"):
        line += f": {job['error']}"
    return line


def run(args: argparse.Namespace) -> int:
    """`status [JOB]`: print one job's line (`describe`), or every job's.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `job` (None: every job, read page by page), the endpoint's
        options (`add_endpoint_options`) and `json` (print the reply as one JSON object; every
        job's: ``{"jobs": [...]}``).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        The endpoint is malformed (`client_of`); `WorkerUnavailable` when no worker answers.
    RemoteError
        The worker refused: no such job.
    ProtocolError
        A reply is malformed, or the list's next page is not after the last.
    """
    with client_of(args) as client:
        if args.job is not None:  # ("" is no job id: the worker says so, as `cancel ""` does)
            reply = client.request("status", job=args.job)
            jobs = [reply]
        else:  # page after page: each reply holds what fits in one message
            jobs, start = [], 0
            while start is not None:
                page = client.request("list", start=start)
                jobs += page["jobs"]
                if page["next"] is not None and page["next"] <= start:  # (it would never end)
                    raise ProtocolError(f"the worker's list of jobs went back to {page['next']}")
                start = page["next"]
            reply = {"jobs": jobs}
    if args.json:
        print(json.dumps(reply))
    else:
        for job in jobs:
            print(describe(job))
    return ExitStatus.OK
