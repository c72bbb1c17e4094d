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
