"""The options that several commands share, defined once: the engine's (every command that
deblurs: `deblur`, `run`, `submit`, `key`), the output's (every command that writes a picture,
and `cache lookup`, `cache kernel`), the blur's estimate (`--blur`, `--window`: `psf`, `run`,
`submit`, `key`), and the job they describe together (`submit`, `key`).

One function adds each group to a parser, one turns the parsed arguments into `DeblurSettings`
(or a `JobSpec`), so the options read the same everywhere. Ranges are checked by
`DeblurSettings.validate`, as the options are read: a value out of range is wrong usage (exit
status 2), like an option that is not one.
"""

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from worker.deconv.settings import (
    AUTO,
    AUTO_BLUR,
    DeblurSettings,
    blur_from_text,
    window_spelling,
)
from worker.errors import InputError, UsageError
from worker.jobspec import JobSpec

DEFAULTS = DeblurSettings()


def _digits(text: str, least: int, what: str) -> int:
    """`text`, digits alone, as a whole number of at least `least`; else `what` it is not."""
    if not re.fullmatch("[0-9]+", text) or int(text) < least:
        raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
    return int(text)


def whole_number(text: str) -> int:
    """A whole number from 0 up, in digits alone (an argparse type: an index, a count).

    Parameters
    ----------
    text : str
        The number as given.

    Returns
    -------
    int
        The number.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is not digits alone (a sign, a space, a point).
    """
    return _digits(text, 0, "a whole number, 0 or more")


def positive(text: str) -> int:
    """A whole number from 1 up, in digits alone (an argparse type).

    Parameters
    ----------
    text : str
        The number as given.

    Returns
    -------
    int
        The number.

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is not digits alone (a sign, a space, a point), or is 0.
    """
    return _digits(text, 1, "a positive whole number")


def setting(name: str, kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type for the setting `name`.

    Parameters
    ----------
    name : str
        The field of `DeblurSettings` (`lam`, `max_iterations`...).
    kind : type
        `int` or `float`: what the text is read as.

    Returns
    -------
    callable
        ``check(text)``: `text` read as `kind` and checked as `DeblurSettings.validate` checks
        that setting (-0.0 is returned as 0.0); a value that is not a number, or is out of
        range, raises `argparse.ArgumentTypeError`.
    """

    def check(text: str) -> int | float:
        try:
            value = kind(text)
            DeblurSettings(**{name: value}).validate()  # type: ignore[arg-type]
        except InputError as error:  # (a ValueError too: first)
            raise argparse.ArgumentTypeError(str(error)) from None
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        return value + 0  # (-0.0 + 0 is 0.0: `-0` hashes into the same cache key as `0`)

    return check


def add_output_options(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    """Add ``-o/--output`` (a `Path`) and ``--no-clobber`` (`args.no_clobber`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    what : str
        The help of ``-o``: what is written there.
    required : bool, optional
        Whether ``-o`` must be given.
    """
    parser.add_argument("-o", "--output", type=Path, required=required, metavar="OUTPUT", help=what)
    parser.add_argument(
        "--no-clobber",
        action="store_true",
        help="never replace a file at OUTPUT: fail and keep it when the name is taken, even "
        "while the work runs (for a program that chose a free name)",
    )


def add_engine_options(parser: argparse.ArgumentParser, varying: bool = True) -> None:
    """Add --tolerance, --priority, --scale, --local, --varying, --lambda and --iterations.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser; the numbers are checked as they are read (`setting`).
    varying : bool, optional
        Whether the command's help lists --varying. A command that never takes it (`deblur`,
        whose blur is given) still reads it, to refuse it in one line that says where it
        belongs, instead of argparse's "unrecognized arguments".
    """
    group = parser.add_argument_group("how hard to sharpen")
    group.add_argument(
        "--tolerance",
        type=setting("tolerance", float),
        default=DEFAULTS.tolerance,
        metavar="PCT",
        help="how much noise may start to show before sharpening stops, in percent "
        f"(default {DEFAULTS.tolerance:g}); lower gives a cleaner, softer picture, higher "
        "a crisper, grainier one",
    )
    group.add_argument(
        "--priority",
        type=setting("priority", float),
        default=DEFAULTS.priority,
        metavar="P",
        help="from -1 (keep the picture clean: smooth noise away, sharpen gently) through 0 "
        f"(balanced; default {DEFAULTS.priority:g}) to +1 (recover all the detail you can, "
        "accept more grain)",
    )
    group.add_argument(
        "--scale",
        type=setting("scale", float),
        default=DEFAULTS.scale,
        metavar="S",
        help="quick preview: work on the picture shrunk to this fraction of its size, e.g. 0.25 "
        f"(default {DEFAULTS.scale:g}: full size); the output is that small too",
    )
    group.add_argument(
        "--local",
        action="store_true",
        help="sharpen only where the picture shows this blur (a shaken subject on a sharp "
        "background, say), blending smoothly into the untouched rest",
    )
    group.add_argument(
        "--varying",
        action="store_true",
        help="the blur differs across the frame (a shaken camera that also turned): learn a "
        "blur in each part of a grid and sharpen each part with its own (with a blur size; "
        "slower)"
        if varying
        else argparse.SUPPRESS,
    )
    expert = parser.add_argument_group("expert settings (normally derived from the picture)")
    expert.add_argument(
        "--lambda",
        dest="lam",
        type=setting("lam", float),
        default=DEFAULTS.lam,
        metavar="L",
        help="strength of the smoothing that holds noise and ringing back (the total-variation "
        "weight, around 0.001); replaces the value --priority would choose",
    )
    expert.add_argument(
        "--iterations",
        type=setting("max_iterations", int),
        default=DEFAULTS.max_iterations,
        metavar="N",
        help="the most sharpening passes to make (default "
        f"{DEFAULTS.max_iterations}); the run usually stops earlier on its own",
    )


def settings_from_args(args: argparse.Namespace) -> DeblurSettings:
    """The engine's settings the command was given.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line, with the options that `add_engine_options` added.

    Returns
    -------
    DeblurSettings
        Those options' values; the other settings keep their defaults.
    """
    return DeblurSettings(
        tolerance=args.tolerance,
        priority=args.priority,
        lam=args.lam,
        max_iterations=args.iterations,
        scale=args.scale,
        local=args.local,
        varying=args.varying,
    )


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
        The argument as given: "auto", "centre" (or "center") or "X,Y,W,H" in pixels.

    Returns
    -------
    str
        Its one spelling (`settings.window_spelling`). A rectangle's numbers are checked
        against the picture later (`window.check_window`, the engine).

    Raises
    ------
    argparse.ArgumentTypeError
        `text` is none of these.
    """
    try:
        return window_spelling(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that say how to deblur (shared with `key`, which hashes them).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser: it gets the engine's options (`add_engine_options`), `--blur`
        (default None: `AUTO` unless `--psf` is given, `job_spec`), `--window` (default None)
        and `--psf`.
    """
    add_engine_options(parser)
    parser.add_argument(
        "--blur",
        type=blur_size,
        metavar="K|auto",
        help="estimate the blur first, at most K x K (odd), or 'auto', the default; not with --psf",
    )
    add_window_option(parser, None)
    parser.add_argument("--psf", type=Path, metavar="PSF", help="use this kernel (.npy) instead")


def job_spec(args: argparse.Namespace, output: str) -> JobSpec:
    """The job that the options of `add_job_options` (and `--key`, if any) describe.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `input`, the options of `add_job_options`, and `key` where
        the command has it. The input and the kernel are made absolute (links not resolved);
        without `--psf` or `--blur`, the blur is estimated at `AUTO`.
    output : str
        The job's output, as the spec holds it: an absolute path (`submit`), or "" (`key`,
        whose key does not depend on it).

    Returns
    -------
    JobSpec
        The job, checked (`JobSpec.validate`); its files are not looked at.

    Raises
    ------
    InputError
        When the options do not make a job that can run (`JobSpec.validate`: settings out of
        range or that do not go together; `UsageError` for `--psf` with `--blur`).
    """
    if args.psf and args.blur is not None:
        raise UsageError(
            "--psf and --blur do not go together: the kernel file says what the blur is, --blur "
            "asks for it to be estimated"
        )
    spec = JobSpec(
        input=str(args.input.absolute()),
        output=output,
        key=getattr(args, "key", None),
        psf=str(args.psf.absolute()) if args.psf else None,
        blur=None if args.psf else AUTO if args.blur is None else args.blur,
        window=args.window,
        settings=settings_from_args(args),
        replace=not getattr(args, "no_clobber", False),
    )
    spec.validate()
    return spec
