"""The command line's parsing: values that look like options."""

import argparse

import pytest

from worker.cli import build_parser
from worker.cli.options import whole_number
from worker.cli.worker import MAX_SIZE, job_slots, positive, size, size_text
from worker.service.server import MAX_JOBS

PICTURE = ["deblur", "in.tif", "--psf", "k.npy", "-o", "out.tif"]


@pytest.mark.parametrize(
    ("written", "value"), [("-1e-3", -0.001), ("-.5", -0.5), ("-5E-1", -0.5), ("-1", -1.0)]
)
def test_a_negative_number_is_a_value_in_any_form(written: str, value: float) -> None:
    """argparse alone reads "-1e-3" as an option and fails ("expected one argument")."""
    assert build_parser().parse_args([*PICTURE, "--priority", written]).priority == value


@pytest.mark.parametrize("written", ["-inf", "-Infinity", "-nan"])
def test_a_number_that_is_not_finite_is_refused_as_a_value(
    written: str, capsys: pytest.CaptureFixture
) -> None:
    """argparse alone read "-inf" as an option: "--priority: expected one argument"."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*PICTURE, "--priority", written])
    error = capsys.readouterr().err
    assert "argument --priority:" in error and "expected one argument" not in error


def test_a_value_that_is_not_a_number_is_still_an_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*PICTURE, "--priority", "-e3"])
    assert "--priority: expected one argument" in capsys.readouterr().err


def test_a_window_that_starts_with_a_negative_number_is_a_value() -> None:
    """A window left of the picture is refused as a window ("not inside the image"), not as a
    missing argument of --window (until engine 0.3.18)."""
    run = ["run", "in.tif", "--blur", "5", "-o", "out.tif", "--window", "-5,0,50,50"]
    assert build_parser().parse_args(run).window == "-5,0,50,50"


@pytest.mark.parametrize("command", ["run", "psf", "submit", "key"])
def test_every_command_reads_a_window_alike(command: str, capsys: pytest.CaptureFixture) -> None:
    """`run` and `psf` took "CENTRE" and " 1,2,100,100", which `submit` refused in the
    protocol's words; `run` took "" for auto, `key` hashed "garbage" (until engine 0.3.20)."""
    rest = {"run": ["-o", "o.tif", "--blur", "5"], "psf": ["-o", "k.npy", "--blur", "5"],
            "submit": ["-o", "o.tif"], "key": []}[command]  # fmt: skip

    def window(text: str) -> str:
        return build_parser().parse_args([command, "in.tif", *rest, "--window", text]).window

    assert window(" CENTER ") == window("centre") == "centre"
    assert window(" 1,2,100,100") == "1,2,100,100"
    for bad in ("", "garbage", "1,2,3"):
        with pytest.raises(SystemExit):
            window(bad)
        assert "the window must be auto, centre or X,Y,WIDTH,HEIGHT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--priority", "2", "priority must be a number in [-1, 1]"),
        ("--tolerance", "0", "the tolerance must be a number above 0 %"),
        ("--iterations", "0", "the iteration cap must be a whole number"),
        ("--iterations", "1.5", "'1.5' is not a whole number"),
        ("--scale", "1.5", "scale must be a number in (0, 1]"),
        ("--lambda", "1e9", "lambda must be 0 or a number from"),
        ("--priority", "nan", "priority must be a number in"),
    ],
)
def test_a_setting_out_of_range_is_wrong_usage(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture
) -> None:
    """Exit status 2, as for a bad blur size (until engine 0.3.22 these failed as work, 1)."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*PICTURE, option, value])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_every_command_says_what_it_does_in_its_help() -> None:
    """`COMMAND --help` opens with a sentence (seven commands had none until engine 0.3.22)."""
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    undescribed = [name for name, command in commands.choices.items() if not command.description]
    assert undescribed == [] and "submit" in commands.choices


def test_sizes_and_counts_read_as_written() -> None:
    """`--cache-size`, `--min-free` and `--jobs`: a 400-digit size was an internal error
    (OverflowError) until engine 0.3.23, `4iB` read as 4 bytes and a superscript digit got
    through as a count."""
    assert [size(text) for text in ("4G", " 500 mib ", "1.5K", "0", "7B", "3KB")] == [
        4 << 30, 500 << 20, 1536, 0, 7, 3072,
    ]  # fmt: skip
    for bad in ("9" * 400, "2000000T", "4iB", "-1G", "4 GG", "1e3"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"size|more than"):
            size(bad)
    assert [size_text(count) for count in (0, 7, 4 << 30, 1536)] == ["0", "7", "4G", "1536"]
    assert size(size_text(MAX_SIZE)) == MAX_SIZE
    assert positive("3") == 3
    assert job_slots(str(MAX_JOBS)) == MAX_JOBS
    with pytest.raises(argparse.ArgumentTypeError, match=f"more than {MAX_JOBS}"):
        job_slots("99999999999999999999")  # (until 0.3.23 the worker tried to start them all)
    with pytest.raises(argparse.ArgumentTypeError, match="size"):
        size("\u0664G")  # a digit of another script
    for bad in ("0", "²", "+3", " 3"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive whole number"):
            positive(bad)
    assert [whole_number(text) for text in ("0", "7")] == [0, 7]
    for bad in ("-1", "²", "1.0", ""):  # (`key --duplicate -1` was taken until engine 0.3.39)
        with pytest.raises(argparse.ArgumentTypeError, match="whole number, 0 or more"):
            whole_number(bad)


@pytest.mark.parametrize("command", ["deblur", "run", "submit", "key"])
def test_only_the_commands_that_take_varying_list_it(
    command: str, capsys: pytest.CaptureFixture
) -> None:
    """`deblur`, whose blur is given, never takes --varying: its help does not list it (it did
    until engine 0.3.53), and the option is still read, to be refused in one line that says
    where it belongs (`test_options_that_do_not_go_together_are_wrong_usage`)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert ("--varying" in capsys.readouterr().out) == (command != "deblur")
    assert build_parser().parse_args([*PICTURE, "--varying"]).varying
