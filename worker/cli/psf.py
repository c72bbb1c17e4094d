"""`dt-deconvolve psf`: estimate the blur (PSF) of a picture from one window of it."""

import argparse
import json
from pathlib import Path

from worker.atomic import check_target
from worker.cli.exit_status import ExitStatus
from worker.cli.options import add_estimation_options
from worker.cli.streams import report_on
from worker.deconv.settings import AUTO
from worker.errors import one_line


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `psf` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "psf",
        help="estimate the blur kernel (PSF) of a picture",
        description="Estimate the K x K blur kernel (PSF) of a picture from one window of it.",
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help="the blurred picture (TIFF)")
    add_estimation_options(parser)
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="PSF.npy", help="where to save it"
    )
    parser.add_argument("--png", type=Path, metavar="PSF.png", help="also save a picture of it")
    parser.add_argument("--json", action="store_true", help="print one JSON object (last line)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`psf INPUT --blur K -o PSF.npy`: estimate the blur of a picture and save its kernel.

    The targets are checked before the work. Prints what was learnt: a sentence, or one JSON
    object (the kernel's paths and the estimate's `BlurReport`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `input`, `blur`, `window`, `output`, `png` (Path or None) and
        `json`.

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        The kernel is not named NAME.npy, or its picture NAME.png (`check_names`); the picture
        cannot be read, is too small, or the window does not fit it (`estimate_blur`).
    OSError
        A target would replace the input or cannot be written (`check_target`); stdout cannot
        take the report (`report_on`: the kernel was written).
    """
    from worker.deconv.blind import estimate_blur
    from worker.deconv.level import brighten
    from worker.deconv.window import window_from_text
    from worker.files.imageio import read_picture
    from worker.files.kernels import check_names, save_kernel, save_kernel_picture

    for target in (args.output, args.png):  # before the work, not after it
        if target is not None:
            check_target(target, args.input)
    check_names(args.output, args.png)
    picture = read_picture(args.input)
    size = None if args.blur == AUTO else args.blur  # (`blur_size` checked it)
    window = window_from_text(args.window, picture.pixels.shape[:2], size)
    # (the gain is 1, the pixels untouched, but for a picture far darker than any file holds)
    _, clip_level = brighten(picture.pixels, picture.clip_level)
    psf, report = estimate_blur(picture.pixels, size, window, clip_level=clip_level)
    save_kernel(args.output, psf)
    if args.png:
        save_kernel_picture(args.png, psf)
    summary = {
        "psf": str(args.output.absolute()),
        "png": str(args.png.absolute()) if args.png else None,
    }
    summary.update(report.as_dict())
    with report_on("kernel", str(args.output)):
        if args.json:
            print(json.dumps(summary))
        else:
            x, y, width, height = report.window
            print(
                f"{one_line(str(args.output))}: {report.blur}x{report.blur} kernel learnt from "
                f"the window {x},{y},{width},{height} in {report.seconds:.1f} s; confidence "
                f"{report.confidence:.2f}: {report.reason}"
            )
    return ExitStatus.OK
