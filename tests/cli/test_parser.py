"""The command line's parsing: values that look like options."""

import pytest

from worker.cli import build_parser

PICTURE = ["deblur", "in.tif", "--psf", "k.npy", "-o", "out.tif"]


@pytest.mark.parametrize(
    ("written", "value"), [("-1e-3", -0.001), ("-.5", -0.5), ("-2E+0", -2.0), ("-1", -1.0)]
)
def test_a_negative_number_is_a_value_in_any_form(written: str, value: float) -> None:
    """argparse alone reads "-1e-3" as an option and fails ("expected one argument")."""
    assert build_parser().parse_args([*PICTURE, "--priority", written]).priority == value


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
