"""The engine's options, shared by every command that deblurs (`deblur`, `run`, `submit`, `key`),
and the output's, shared by every command that writes a picture (and `cache lookup`, `cache
kernel`).

One function adds the engine's to a parser, one turns the parsed arguments into
`DeblurSettings`, so the options read the same everywhere. Ranges are checked by
`DeblurSettings.validate`, as the options are read: a value out of range is wrong usage (exit
status 2), like an option that is not one.
"""

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from worker.deconv.settings import DeblurSettings
from worker.errors import InputError

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
