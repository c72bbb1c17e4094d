"""`dt-deconvolve run`: estimate the blur of a picture, then sharpen it with that blur."""

import argparse
from pathlib import Path

from worker.cli.exit_status import ExitStatus
from worker.cli.options import (
    add_engine_options,
    add_estimation_options,
    add_output_options,
    settings_from_args,
)
from worker.cli.progress import progress_bar
from worker.cli.report import print_report
from worker.jobspec import JobSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "run",
        help="estimate the blur of a TIFF picture and sharpen it, in one go",
        description="Estimate the K x K blur (PSF) of a TIFF picture from one window of it, then "
        "sharpen the whole picture with it (the `psf` and `deblur` commands in one).",
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="the blurred picture (TIFF)")
    add_estimation_options(parser)
    add_output_options(parser, "where to write the result (TIFF)")
    parser.add_argument(
        "--psf-out", metavar="PSF.npy", help="also save the estimated PSF (and a .png beside it)"
    )
    add_engine_options(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`run INPUT --blur K -o OUTPUT`: estimate the blur of a picture, then sharpen it.

    Prints the report (`print_report`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `input`, `blur`, `window`, `output`, `psf_out` (where to save
        the kernel, a .png beside it; None: not saved), `json` and the engine's options
        (`add_engine_options`).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        Bad input: the picture, the settings, the names of the output and of the kernel
        (`run_pipeline`).
    OSError
        A file cannot be read or written; the output is written atomically.
    """
    from worker.pipeline import run_pipeline

    spec = JobSpec(
        input=str(args.input.absolute()),
        output=str(Path(args.output).absolute()),  # `..` kept: the file system follows it
        blur=args.blur,
        window=args.window,
        settings=settings_from_args(args),
        replace=not args.no_clobber,
    )
    with progress_bar() as progress:
        kernel = None if args.psf_out is None else str(Path(args.psf_out).absolute())
        report = run_pipeline(spec, progress, kernel)
    print_report(report, args.json)
    return ExitStatus.OK
