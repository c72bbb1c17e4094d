"""Options shared by the commands that talk to the worker or use its cache."""

import argparse
from pathlib import Path

from worker.errors import InputError
from worker.paths import results_dir
from worker.service.client import Client
from worker.service.transport import check_endpoint, default_endpoint

# seconds a worker may take to answer before it is taken for none (`ping`, `shutdown`, the
# cancel on a command's way out): a worker on a busy machine may be slow, and a socket file
# left by a killed one (or a tcp port without one) costs this
ANSWER_TIMEOUT = 3.0


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """Add `--endpoint` and `--curve-dir`: where the worker listens, and the keys to reach it
    over tcp.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    """
    parser.add_argument(
        "--endpoint",
        metavar="E",
        type=endpoint_argument,
        help="the worker's address: ipc:///ABSOLUTE/PATH or tcp://HOST:PORT "
        "(default: a private socket in your runtime folder)",
    )
    parser.add_argument(
        "--curve-dir",
        metavar="D",
        type=Path,
        help="folder of CURVE keys for tcp endpoints (default: curve/ in the cache folder)",
    )


def endpoint_argument(text: str) -> str:
    """An address named on the command line (an argparse type), checked for its shape.

    Parameters
    ----------
    text : str
        The address as given.

    Returns
    -------
    str
        `text`, unchanged.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is empty, or not an address a worker could listen on (`check_endpoint`, CURVE
        assumed: whether a tcp address beyond the loopback may be listened on depends on the
        worker's keys, which the worker checks when it starts).
    """
    if not text:
        raise argparse.ArgumentTypeError(
            "an empty address: give ipc:///PATH or tcp://HOST:PORT, or leave the option out"
        )
    try:
        check_endpoint(text, curve=True)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def folder_argument(text: str) -> Path:
    """A folder named on the command line (an argparse type).

    Parameters
    ----------
    text : str
        The name as given.

    Returns
    -------
    Path
        `text` as a path, not checked further.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is empty (which would mean the current folder, whatever it holds).
    """
    if not text:
        raise argparse.ArgumentTypeError("an empty name is not a folder")
    return Path(text)


def add_cache_dir_option(parser: argparse.ArgumentParser) -> None:
    """Add `--cache-dir`: the result cache's folder.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    """
    parser.add_argument(
        "--cache-dir",
        metavar="D",
        type=folder_argument,
        help="the result cache's folder (default: results/ in the cache folder)",
    )


def endpoint_of(args: argparse.Namespace) -> str:
    """The worker's address the command was given, or the default one.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line, with the options of `add_endpoint_options`.

    Returns
    -------
    str
        `--endpoint` (its shape checked: `endpoint_argument`), or when none was given
        `default_endpoint`: an ipc socket in the user's runtime folder.
    """
    return args.endpoint or default_endpoint()


def client_of(args: argparse.Namespace) -> Client:
    """A client of the worker the command names, with `Client`'s time-out; the caller closes it.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line, with the options of `add_endpoint_options` (`--curve-dir`
        unset: `paths.curve_dir`).

    Returns
    -------
    Client
        A client of the address `endpoint_of` gives.

    Raises
    ------
    InputError
        The endpoint is malformed (`check_endpoint`).
    """
    return Client(endpoint_of(args), curve_dir=args.curve_dir)


def cache_dir_of(args: argparse.Namespace) -> Path:
    """The result cache's folder the command names, or the default one.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line, with the option of `add_cache_dir_option`.

    Returns
    -------
    Path
        `--cache-dir`, or `paths.results_dir`, made absolute (links not resolved).
    """
    return (args.cache_dir or results_dir()).absolute()
