"""`dt-deconvolve deblur`: sharpen a picture whose blur (PSF) is known."""

import argparse
from pathlib import Path

from worker.cli.exit_status import ExitStatus
from worker.cli.options import add_engine_options, add_output_options, settings_from_args
from worker.cli.progress import progress_bar
from worker.cli.report import print_report
from worker.jobspec import JobSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `deblur` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "deblur",
        help="sharpen a TIFF picture with a known blur (PSF)",
        description="Sharpen a TIFF picture whose blur is known: the PSF is the picture of one "
        "point of light as the camera smeared it, a 2-D .npy array (for example from "
        "`dt-deconvolve psf`). The result keeps the picture's bit depth, colour profile and "
        "camera data.",
    )
    parser.add_argument("input", metavar="INPUT", help="the blurred picture (TIFF)")
    parser.add_argument("--psf", required=True, metavar="PSF.npy", help="the blur, a .npy file")
    add_output_options(parser, "where to write the result (TIFF)")
    add_engine_options(parser, varying=False)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`deblur INPUT --psf PSF -o OUTPUT`: sharpen a picture whose blur is known.

    Prints the report (`print_report`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `input`, `psf`, `output` (names, made absolute here), `json`
        and the engine's options (`add_engine_options`).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        Bad input: the picture, the kernel, the settings, the output's name (`run_pipeline`).
    OSError
        A file cannot be read or written; the output is written atomically.
    """
    from worker.pipeline import run_pipeline

    spec = JobSpec(
        input=str(Path(args.input).absolute()),  # `..` kept: the file system follows it
        output=str(Path(args.output).absolute()),
        psf=str(Path(args.psf).absolute()),
        settings=settings_from_args(args),
        replace=not args.no_clobber,
    )
    with progress_bar() as progress:
        report = run_pipeline(spec, progress)
    print_report(report, args.json)
    return ExitStatus.OK
