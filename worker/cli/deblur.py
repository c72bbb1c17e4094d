"""`dt-deconvolve deblur`: sharpen a picture whose blur (PSF) is known."""

import argparse
import json
from pathlib import Path

from worker.cli.exit_status import ExitStatus
from worker.cli.options import add_engine_options, add_output_options, settings_from_args
from worker.cli.progress import progress_bar
from worker.cli.streams import report_on
from worker.errors import one_line
from worker.jobspec import JobSpec
from worker.stages import StopReason


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


def print_report(report: dict, as_json: bool) -> None:
    """Print the job's report on the picture written: one JSON line, or lines for people.

    For people: a line on the blur found, when it was estimated, then one on the picture
    written (as it was, when no blur was found).

    Parameters
    ----------
    report : dict
        The report of `run_pipeline`: `output`, the engine's fields (`stop_reason`,
        `iterations`...) and, when the blur was estimated, `confidence` and `reason`.
    as_json : bool
        Print `report` as one JSON line.

    Raises
    ------
    OSError
        Stdout cannot take the report; the error says that the picture was written
        (`report_on`).
    """
    with report_on("picture", report["output"]):
        if as_json:
            print(json.dumps(report))
            return
        if "confidence" in report:
            print(f"blur: {report['reason']} (confidence {report['confidence']:.2f})")
        output = one_line(report["output"])  # a line break in a name stays out of the line
        if report["stop_reason"] == StopReason.NO_BLUR:
            print(f"wrote {output}: the picture as it was")
            return
        if report["stop_reason"] == StopReason.UNEXPLAINED:
            print(
                f"wrote {output}: the picture as it was: deblurred with this kernel it would not "
                "keep its light, as a deblur must, so the kernel does not explain it"
            )
            return
        print(
            f"wrote {output}: {report['iterations']} iterations "
            f"(best {report['best_iteration']}, stopped by {report['stop_reason']}), "
            f"noise {report['noise_sigma']:.4g}, lambda {report['lambda']:.3g}, "
            f"{report['seconds']:.1f} s"
        )


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
