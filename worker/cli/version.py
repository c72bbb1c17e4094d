"""`dt-deconvolve version`: the versions of the engine and of the libraries it computes with."""

import argparse
import json
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from worker import __version__
from worker.cli.exit_status import ExitStatus

LIBRARIES = ("numpy", "scipy", "pyfftw", "numba", "tifffile", "imagecodecs", "pyzmq")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `version` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "version", help="show the versions of dt-deconvolve and its libraries"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`version`: print the versions of dt-deconvolve, Python and `LIBRARIES`.

    A library that is not installed reads "missing".

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `json` (print one JSON object, name to version).

    Returns
    -------
    int
        `ExitStatus.OK`.
    """
    versions = {"dt-deconvolve": __version__, "python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = package_version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    if args.json:
        print(json.dumps(versions))
    else:
        for name, value in versions.items():
            print(f"{name:14} {value}")
    return ExitStatus.OK
