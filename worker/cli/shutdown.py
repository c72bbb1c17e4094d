"""`dt-deconvolve shutdown`: stop the worker (its running jobs are cancelled)."""

import argparse

from worker.cli.endpoint import ANSWER_TIMEOUT, add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `shutdown` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser("shutdown", help="stop the worker, cancelling its jobs")
    add_endpoint_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`shutdown`: ask the worker to stop; no worker is not an error.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: the endpoint's options (`add_endpoint_options`).

    Returns
    -------
    int
        `ExitStatus.OK`, also when no worker answers (within `ANSWER_TIMEOUT`) to be stopped.

    Raises
    ------
    InputError
        The endpoint is malformed (`client_of`); `WorkerUnavailable` when the worker that
        answered does not reply to the request to stop.
    """
    with client_of(args) as client:
        if client.ping(timeout=ANSWER_TIMEOUT) is None:
            print(f"no worker at {client.endpoint}")
            return ExitStatus.OK
        client.request("shutdown")
    print("worker stopping")
    return ExitStatus.OK
