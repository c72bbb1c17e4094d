"""`dt-deconvolve ping`: is a worker there, and how busy is it?"""

import argparse
import json

from worker.cli.endpoint import ANSWER_TIMEOUT, add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus
from worker.errors import WorkerUnavailable


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ping` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser("ping", help="check that a worker answers (exit 1 if none)")
    add_endpoint_options(parser)
    parser.add_argument("--json", action="store_true", help="print the reply as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`ping`: print the worker's version, pid, endpoint, jobs and warm executors.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: the endpoint's options (`add_endpoint_options`) and `json`
        (print the reply as one JSON object).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    WorkerUnavailable
        No worker answers within `ANSWER_TIMEOUT` (3 seconds; exit status 1).
    InputError
        The endpoint is malformed (`client_of`).
    """
    with client_of(args) as client:
        reply = client.ping(timeout=ANSWER_TIMEOUT)
    if reply is None:
        raise WorkerUnavailable(client.unanswered())
    if args.json:
        print(json.dumps(reply))
    else:
        print(
            f"worker {reply['version']} (pid {reply['pid']}) at {reply['endpoint']}: "
            f"{reply['running']} running, {reply['queued']} queued, "
            f"{reply['warm_executors']}/{reply['job_slots']} warm"
        )
    return ExitStatus.OK
