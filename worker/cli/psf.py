"""`dt-deconvolve psf`: estimate the blur (PSF) of a picture from one window of it."""

import argparse
import json
from pathlib import Path

from worker.atomic import check_target
from worker.cli.exit_status import ExitStatus
from worker.cli.streams import report_on
from worker.deconv.settings import AUTO, AUTO_BLUR, blur_from_text
from worker.errors import InputError, one_line
from worker.jobspec import WINDOW_PATTERN


def blur_size(text: str) -> int | str:
    """The --blur argument, checked (`blur_from_text`): an odd size, or "auto"."""
    try:
        size = blur_from_text(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return AUTO if size is None else size


def window_argument(text: str) -> str:
    """The --window argument, as every command takes it (`psf`, `run`, `submit`, `key`): "auto",
    "centre" or "X,Y,W,H" (`jobspec.WINDOW_PATTERN`), case and spaces around it aside."""
    window = text.strip().lower().replace("center", "centre")
    if not WINDOW_PATTERN.fullmatch(window):
        raise argparse.ArgumentTypeError(
            f"the window must be auto, centre or X,Y,WIDTH,HEIGHT in pixels, not {text!r}"
        )
    return window


def add_window_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--window",
        type=window_argument,
        default=default,
        metavar="X,Y,W,H|auto|centre",
        help="where to learn the blur: a rectangle in pixels, 'centre', or 'auto' (default: "
        "the part with the strongest, most varied edges)",
    )


def add_estimation_options(parser: argparse.ArgumentParser) -> None:
    """--blur and --window, shared by `psf` and `run`."""
    parser.add_argument(
        "--blur",
        type=blur_size,
        required=True,
        metavar="K|auto",
        help="the blur's size in pixels (odd: its longest streak or widest halo; a kernel cut "
        "off there is learnt again 2 px larger on each side), or 'auto' (the tool finds the "
        f"blur's extent itself, up to {AUTO_BLUR} px); the kernel is checked on a second part "
        "of the picture, and a milder one, or none, is used when it does not hold",
    )
    add_window_option(parser, "auto")


def register(subparsers: argparse._SubParsersAction) -> None:
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
