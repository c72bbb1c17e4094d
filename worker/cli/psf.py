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
    """The --blur argument, checked (`blur_from_text`).

    Parameters
    ----------
    text : str
        The argument as given.

    Returns
    -------
    int or str
        An odd number of pixels from `MIN_BLUR` to `MAX_BLUR`, or `AUTO` for "auto" (case
        and spaces around it aside).

    Raises
    ------
    argparse.ArgumentTypeError
        Anything else.
    """
    try:
        size = blur_from_text(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return AUTO if size is None else size


def window_argument(text: str) -> str:
    """The --window argument, as every command takes it (`psf`, `run`, `submit`, `key`).

    Parameters
    ----------
    text : str
        The argument as given: "auto", "centre" (or "center") or "X,Y,W,H" in pixels
        (`jobspec.WINDOW_PATTERN`), case and spaces around it aside.

    Returns
    -------
    str
        `text` stripped, in lower case, "center" spelled "centre". A rectangle's numbers are
        checked against the picture later (`window_from_text`, the engine).

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is none of these.
    """
    window = text.strip().lower().replace("center", "centre")
    if not WINDOW_PATTERN.fullmatch(window):
        raise argparse.ArgumentTypeError(
            f"the window must be auto, centre or X,Y,WIDTH,HEIGHT in pixels, not {text!r}"
        )
    return window


def add_window_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    """Add `--window`: where to learn the blur (`window_argument`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    default : str or None
        The value when `--window` is not given: "auto" (`psf`, `run`), or None (`submit`,
        `key`: the job's own default, which is "auto" too).
    """
    parser.add_argument(
        "--window",
        type=window_argument,
        default=default,
        metavar="X,Y,W,H|auto|centre",
        help="where to learn the blur: a rectangle in pixels, 'centre', or 'auto' (default: "
        "the part with the strongest, most varied edges)",
    )


def add_estimation_options(parser: argparse.ArgumentParser) -> None:
    """Add --blur (required) and --window (default "auto"), shared by `psf` and `run`.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    """
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
