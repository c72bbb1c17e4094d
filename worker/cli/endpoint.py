"""Options shared by the commands that talk to the worker or use its cache."""

import argparse
from pathlib import Path

from worker.paths import cache_dir
from worker.service.client import Client
from worker.service.transport import default_curve_dir, default_endpoint


def default_cache_dir() -> Path:
    """The result cache's folder unless `--cache-dir` names another: `results/` in the cache
    folder."""
    return cache_dir() / "results"


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """Add `--endpoint` and `--curve-dir`: where the worker listens, and the keys to reach it
    over tcp."""
    parser.add_argument(
        "--endpoint",
        metavar="E",
        help="the worker's address: ipc:///ABSOLUTE/PATH or tcp://HOST:PORT "
        "(default: a private socket in your runtime folder)",
    )
    parser.add_argument(
        "--curve-dir",
        metavar="D",
        type=Path,
        help="folder of CURVE keys for tcp endpoints (default: curve/ in the cache folder)",
    )


def folder_argument(text: str) -> Path:
    """A folder named on the command line; an empty name (which would mean the current
    folder, whatever it holds) is refused."""
    if not text:
        raise argparse.ArgumentTypeError("an empty name is not a folder")
    return Path(text)


def add_cache_dir_option(parser: argparse.ArgumentParser) -> None:
    """Add `--cache-dir`: the result cache's folder."""
    parser.add_argument(
        "--cache-dir",
        metavar="D",
        type=folder_argument,
        help="the result cache's folder (default: results/ in the cache folder)",
    )


def endpoint_of(args: argparse.Namespace) -> str:
    """The worker's address the command was given, or the default one (`default_endpoint`)."""
    return args.endpoint or default_endpoint()


def client_of(args: argparse.Namespace, timeout: float = 10.0) -> Client:
    """A client of the worker the command names (`timeout` seconds a reply may take); the
    caller closes it."""
    return Client(endpoint_of(args), timeout, args.curve_dir or default_curve_dir())


def cache_dir_of(args: argparse.Namespace) -> Path:
    """The result cache's folder the command names, or the default one, absolute."""
    return (args.cache_dir or default_cache_dir()).absolute()
