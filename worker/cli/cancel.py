"""`dt-deconvolve cancel JOB`: stop a job; it leaves no file behind."""

import argparse

from worker.cli.endpoint import add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cancel", help="cancel a job (within a second)")
    parser.add_argument("job", metavar="JOB", help="the job id that submit printed")
    add_endpoint_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        reply = client.request("cancel", job=args.job)
    print(f"{reply['job']} {reply['stage']}")
    return ExitStatus.OK
