"""`dt-deconvolve`: the command line. It parses arguments and hands on; nothing else.

Each subcommand lives in `worker/cli/<name>.py` with two functions: `register(subparsers)`
adds its parser (with `func` set to its runner) and the runner takes the parsed arguments and
returns an exit status. Commands that compute import the engine inside their runner, so that the
light ones the darktable plug-in calls often (`key`, `cache`, `submit`, `ping`) start at once.
Errors reach the user as one line on stderr, never as a traceback; the exit statuses are
`worker.cli.exit_status.ExitStatus`, and 128 + the signal for a command stopped by a signal
(`worker.signals`, `worker.cli.stops`), or whose stdout reader went away (`worker.cli.streams`).
"""

import argparse
import os
import re
import signal
from collections.abc import Sequence
from typing import Any

from worker import __version__
from worker.cli.exit_status import ExitStatus, of_signal
from worker.cli.stops import say_stopped, stop_on_signals, stopped_by
from worker.cli.streams import PROG, reader_gone, warn
from worker.errors import NameTaken, UsageError, describe_error, is_internal, one_line

# A value that starts with "-" is a negative number, not an option, when it reads as one, in
# exponent form too: argparse's own pattern leaves out "-1e-3", which `--priority -1e-3` needs,
# and "-inf" (refused as out of range, not as a missing value); and so is a list of numbers that
# starts with one (`--window -5,0,50,50`: refused as a window).
NUMBER = r"((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|(?i:inf(inity)?|nan))"
NEGATIVE_NUMBER = re.compile(rf"^-{NUMBER}(,-?{NUMBER})*$")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are a single line.

    It also reads negative numbers in exponent form, and lists of numbers that start with one,
    as values, not as options (`NEGATIVE_NUMBER`). An option is never read from a shortened
    name: `run --psf K` would have been `--psf-out K`, overwriting the kernel the user meant to
    give (`run` takes none).

    Parameters
    ----------
    *args, **kwargs
        Passed on to `argparse.ArgumentParser`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})
        self._negative_number_matcher = NEGATIVE_NUMBER  # the pattern argparse (3.11) reads

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``PROG: error: MESSAGE (see --help)`` on stderr, one line, and exit.

        Parameters
        ----------
        message : str
            What argparse found wrong; its control characters are escaped (`one_line`).

        Raises
        ------
        SystemExit
            Always, with `ExitStatus.USAGE` (2).
        """
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `dt-deconvolve`, with every command of `COMMANDS` registered.

    A command registered without a description gets its help line, capitalised and ended with
    a full stop, as the description that `COMMAND --help` shows.

    Returns
    -------
    argparse.ArgumentParser
        A `OneLineParser` whose parsed arguments hold `func`, the chosen command's runner.
    """
    from worker.cli.commands import COMMANDS

    parser = OneLineParser(
        prog=PROG,
        description="Sharpen shaken, soft or slightly misfocused photographs by deconvolution.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=OneLineParser
    )
    for command in COMMANDS:
        command.register(subparsers)
    for listed in subparsers._choices_actions:  # `COMMAND --help` says what it does, as the list
        described = subparsers.choices[listed.dest]
        if described.description is None and listed.help:
            described.description = f"{listed.help[0].upper()}{listed.help[1:]}."
    return parser


def _debugging() -> bool:
    """Whether DT_DECONVOLVE_DEBUG asks for tracebacks (set, and not 0 or empty)."""
    return os.environ.get("DT_DECONVOLVE_DEBUG", "0") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command that `argv` names: the entry point of `dt-deconvolve`.

    Any error is one line on stderr, never a traceback; an internal error (a bug: `is_internal`)
    says that ``DT_DECONVOLVE_DEBUG=1`` shows more, and with that set it is raised as it is. A
    command that a signal stops (Ctrl-C among them) ends with one line saying so
    (`worker.cli.stops.STOPPED`).

    Parameters
    ----------
    argv : sequence of str or None
        The arguments after the program's name; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The command's exit status (`ExitStatus`): `ExitStatus.FAILED` after an error
        (`ExitStatus.USAGE` after a `UsageError`: options that do not go together;
        `ExitStatus.TAKEN` after a `NameTaken`: an output's name taken under ``--no-clobber``),
        `ExitStatus.INTERRUPTED` on Ctrl-C, 128 + the signal for a command that a stopping
        signal ended inside compiled code (`stopped_by`), 128 + SIGPIPE when stdout's reader
        closed the pipe (`reader_gone`).

    Raises
    ------
    SystemExit
        For ``--help`` and ``--version`` (status 0), a usage error (`ExitStatus.USAGE`), and a
        stopping signal (`stop_on_signals`: 128 + the signal).
    """
    stop_on_signals()
    try:  # parsing imports every command: a Ctrl-C may come that early
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        say_stopped(signal.SIGINT)
        return ExitStatus.INTERRUPTED
    except SystemExit:
        signum = stopped_by()
        if signum is not None:  # a stopping signal's exit (`stop_on_signals`)
            say_stopped(signum)
        raise
    except BrokenPipeError:  # `dt-deconvolve ... | head`: the reader has what it wanted
        return reader_gone()
    except UsageError as error:  # options that do not go together: as a usage error
        warn(f"error: {describe_error(error)} (see --help)")
        return ExitStatus.USAGE
    except NameTaken as error:  # (--no-clobber) the caller knows the file there is not ours
        warn(f"error: {describe_error(error)}")
        return ExitStatus.TAKEN
    except Exception as error:
        signum = stopped_by()
        if signum is not None:  # the exit, wrapped on its way out of compiled code
            say_stopped(signum)
            return of_signal(signum)
        message = describe_error(error)
        if is_internal(error):  # a bug: still one line, with a way to see the details
            if _debugging():
                raise
            message += " (DT_DECONVOLVE_DEBUG=1 shows more)"
    warn(f"error: {message}")
    return ExitStatus.FAILED
