"""`dt-deconvolve ping`: is a worker there, and how busy is it?"""

import argparse
import json

from worker.cli.endpoint import add_endpoint_options, client_of
from worker.cli.exit_status import ExitStatus
from worker.errors import WorkerUnavailable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ping", help="check that a worker answers (exit 1 if none)")
    add_endpoint_options(parser)
    parser.add_argument("--json", action="store_true", help="print the reply as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        reply = client.ping(timeout=2.0)
    if reply is None:
        raise WorkerUnavailable(f"no worker answers at {client.endpoint}")
    if args.json:
        print(json.dumps(reply))
    else:
        print(
            f"worker {reply['version']} (pid {reply['pid']}) at {reply['endpoint']}: "
            f"{reply['running']} running, {reply['queued']} queued, "
            f"{reply['warm_executors']}/{reply['job_slots']} warm"
        )
    return ExitStatus.OK
