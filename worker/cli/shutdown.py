"""`dt-deconvolve shutdown`: stop the worker (its running jobs are cancelled)."""

import argparse

from worker.cli.endpoint import add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shutdown", help="stop the worker, cancelling its jobs")
    add_endpoint_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        if client.ping() is None:
            print(f"no worker at {client.endpoint}")
            return ExitStatus.OK
        client.request("shutdown")
    print("worker stopping")
    return ExitStatus.OK
