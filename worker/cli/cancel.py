"""`dt-deconvolve cancel JOB`: stop a job; it leaves no file behind."""

import argparse

from worker.cli.endpoint import add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cancel` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser("cancel", help="cancel a job (within a second)")
    parser.add_argument("job", metavar="JOB", help="the job id that submit printed")
    add_endpoint_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`cancel JOB`: ask the worker to cancel the job; print its id and stage from the reply.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `job`, and the endpoint's options (`add_endpoint_options`).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        The endpoint is malformed (`client_of`); `WorkerUnavailable` when no worker answers.
    RemoteError
        The worker refused: no such job, or one that has already ended.
    """
    with client_of(args) as client:
        reply = client.request("cancel", job=args.job)
    print(f"{reply['job']} {reply['stage']}")
    return ExitStatus.OK
