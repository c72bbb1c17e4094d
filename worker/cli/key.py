"""`dt-deconvolve key INPUT`: print the cache key of a job, so the plug-in never hashes."""

import argparse
from pathlib import Path

from cache.key import cache_key, file_digest
from worker import __version__
from worker.cli.exit_status import ExitStatus
from worker.cli.options import add_job_options, job_spec, whole_number


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `key` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "key", help="print the cache key of a picture, its edit history and the settings"
    )
    parser.add_argument(
        "input",
        type=Path,
        metavar="INPUT",
        help="the original picture (with --xmp), else the exported one (its pixels are hashed)",
    )
    parser.add_argument("--xmp", type=Path, metavar="SIDECAR", help="its darktable sidecar")
    parser.add_argument(
        "--duplicate", type=whole_number, default=0, metavar="N", help="darktable's duplicate index"
    )
    parser.add_argument(
        "--export", default="", metavar="TEXT", help="the export settings that change pixels"
    )
    add_job_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`key INPUT [--xmp SIDECAR]`: print the cache key of the job the options describe.

    The key hashes the picture (with `--xmp`, its path, size, time, duplicate index and edit
    history; else its pixels and tags), the job's parameters (a kernel given with `--psf` by its
    bytes' digest, not its name), the export settings and the engine's version (`cache_key`);
    not where the result would go.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `input`, `xmp`, `duplicate`, `export` and the job's options
        (`add_job_options`).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        The options do not make a valid job (`job_spec`), or the picture, the sidecar or the
        kernel cannot be read.
    """
    parameters = job_spec(args, output="").parameters()  # where the result goes is no part of it
    if parameters["psf"]:
        parameters["psf"] = file_digest(parameters["psf"])
    print(
        cache_key(
            args.input,
            parameters,
            __version__,
            sidecar=args.xmp,
            duplicate=args.duplicate,
            export=args.export,
        )
    )
    return ExitStatus.OK
