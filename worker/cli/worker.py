"""`dt-deconvolve worker`: run the long-lived worker (usually started for you, or as a service)."""

import argparse
import math
import re
from decimal import Decimal

from cache.store import CacheLimits
from worker import paths
from worker.cli.endpoint import (
    add_cache_dir_option,
    add_endpoint_options,
    cache_dir_of,
    endpoint_of,
    folder_argument,
)
from worker.cli.exit_status import ExitStatus
from worker.cli.options import positive
from worker.service.log import open_log
from worker.service.server import MAX_JOBS, MAX_QUEUED, Server, WorkerConfig
from worker.service.transport import generate_keys

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([KMGT])(?:i?B)?|B)?\s*", re.IGNORECASE)
MAX_SIZE = 2**60  # bytes (an exbibyte, 1048576T): a larger size is a slip of the keyboard


def size(text: str) -> int:
    """A size in bytes from text such as `4G`, `500M` or `1048576` (an argparse type).

    Parameters
    ----------
    text : str
        A number, decimals allowed, then optionally K, M, G or T (powers of 1024, any case,
        followed or not by ``B`` or ``iB``) or ``B``; spaces around aside. At most
        `MAX_SIZE`.

    Returns
    -------
    int
        The bytes, rounded down.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is not such a size.
    """
    match = _SIZE.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size (examples: 4G, 500M, 0)")
    count = int(Decimal(match[1]) * _UNITS[(match[2] or "").upper()])
    if count > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"'{text}' is more than {size_text(MAX_SIZE)}")
    return count


def seconds(text: str) -> float:
    """A positive, finite number of seconds (an argparse type).

    Parameters
    ----------
    text : str
        The number as given.

    Returns
    -------
    float
        The seconds.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is not a number, or is 0, negative, infinite or NaN.
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def size_text(count: int) -> str:
    """A size in bytes as `size` reads it, in the largest unit that divides it (`4G`).

    Parameters
    ----------
    count : int
        The bytes, not negative.

    Returns
    -------
    str
        The number of that unit, then the unit's letter (none for bytes).
    """
    dividing = [unit for unit, bytes_ in _UNITS.items() if count and count % bytes_ == 0]
    unit = max(dividing, key=_UNITS.__getitem__, default="")
    return f"{count // _UNITS[unit]}{unit}"


def job_slots(text: str) -> int:
    """How many jobs may run at once: a whole number from 1 to `MAX_JOBS` (an argparse type).

    Parameters
    ----------
    text : str
        The number as given (`positive`).

    Returns
    -------
    int
        The number.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is not a positive whole number, or is more than `MAX_JOBS`.
    """
    count = positive(text)
    if count > MAX_JOBS:
        raise argparse.ArgumentTypeError(
            f"{count} jobs at once is more than {MAX_JOBS}: each runs in an engine process of "
            "its own, holding its picture"
        )
    return count


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `worker` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "worker", help="run the worker that takes jobs over ZeroMQ and caches results"
    )
    add_endpoint_options(parser)
    add_cache_dir_option(parser)
    parser.add_argument(
        "--jobs",
        type=job_slots,
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
        "say which files it made and exit",
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
    """`worker`: serve jobs until told to stop; or, with --generate-keys, make CURVE keys.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: the endpoint's and the cache's options, `jobs`,
        `cache_size`, `min_free`, `generate_keys`, `idle_exit`, `max_queue`, `allow_dir` and
        `verbose` (log to stderr too).

    Returns
    -------
    int
        `ExitStatus.OK` once the keys are made; else `Server.run`'s status, 0, once the worker
        has stopped.

    Raises
    ------
    InputError
        The worker cannot listen at the endpoint (malformed, or taken).
    """
    curve_dir = args.curve_dir or paths.curve_dir()
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
