"""`dt-deconvolve worker`: run the long-lived worker (usually started for you, or as a service)."""

import argparse
import math
import re

from cache.store import CacheLimits
from worker.cli.endpoint import (
    add_cache_dir_option,
    add_endpoint_options,
    cache_dir_of,
    endpoint_of,
    folder_argument,
)
from worker.cli.exit_status import ExitStatus
from worker.service.server import MAX_QUEUED, Server, WorkerConfig, open_log
from worker.service.transport import default_curve_dir, generate_keys

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def size(text: str) -> int:
    """A size in bytes from text such as `4G`, `500M` or `1048576`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size (examples: 4G, 500M, 0)")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def size_text(count: int) -> str:
    """A size in bytes as `size` reads it, in the largest unit that divides it (`4G`)."""
    unit = max((u for u, bytes_ in _UNITS.items() if count % bytes_ == 0), key=_UNITS.__getitem__)
    return f"{count // _UNITS[unit]}{unit}"


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number")
    return int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker", help="run the worker that takes jobs over ZeroMQ and caches results"
    )
    add_endpoint_options(parser)
    add_cache_dir_option(parser)
    parser.add_argument(
        "--jobs",
        type=positive,
        default=WorkerConfig.jobs,
        metavar="N",
        help=f"jobs run at once (default {WorkerConfig.jobs})",
    )
    parser.add_argument(
        "--cache-size",
        type=size,
        default=CacheLimits.max_bytes,
        metavar="SIZE",
        help="the cache's cap; least recently used entries go first "
        f"(default {size_text(CacheLimits.max_bytes)})",
    )
    parser.add_argument(
        "--min-free",
        type=size,
        default=CacheLimits.min_free_bytes,
        metavar="SIZE",
        help="free disk space the cache never eats into (default "
        f"{size_text(CacheLimits.min_free_bytes)})",
    )
    parser.add_argument(
        "--generate-keys",
        action="store_true",
        help="make CURVE keys in the CURVE folder (for tcp endpoints other machines reach), "
        "print them and exit",
    )
    parser.add_argument(
        "--idle-exit",
        type=seconds,
        metavar="SECONDS",
        help="stop after this long without requests or jobs (default: never)",
    )
    parser.add_argument(
        "--max-queue",
        type=positive,
        default=MAX_QUEUED,
        metavar="N",
        help=f"jobs that may wait or run at once; more are refused as busy (default {MAX_QUEUED})",
    )
    parser.add_argument(
        "--allow-dir",
        action="append",
        type=folder_argument,
        default=[],
        metavar="DIR",
        help="with CURVE keys (clients on other machines): a folder whose pictures they may "
        "deblur and write into (repeat for more); they may name no other path",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request and event")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    curve_dir = args.curve_dir or default_curve_dir()
    if args.generate_keys:
        for path in generate_keys(curve_dir):
            print(f"made {path}")
        print(f"CURVE keys are in {curve_dir}: give a client server.key and client.key*")
        return ExitStatus.OK
    config = WorkerConfig(
        endpoint=endpoint_of(args),
        cache_dir=cache_dir_of(args),
        curve_dir=curve_dir,
        jobs=args.jobs,
        cache_limits=CacheLimits(max_bytes=args.cache_size, min_free_bytes=args.min_free),
        idle_exit=args.idle_exit,
        max_queued=args.max_queue,
        allowed_dirs=tuple(folder.absolute() for folder in args.allow_dir),
    )
    open_log(args.verbose)
    return Server(config).run()
