"""The lines the plug-in parses: one field per path whatever its bytes, a BLUR line only for a
blur that was estimated and is described by a number."""

import os

import pytest

from worker.cli.lines import blur_line, path_field, worker_line


def test_a_path_is_one_printable_field_that_decodes_to_its_bytes() -> None:
    hostile = os.fsdecode(b"/p/a b\nDONE /x%\xff.tif")
    field = path_field(hostile)
    assert field == "/p/a%20b%0ADONE%20/x%25%FF.tif"
    assert field.isprintable() and " " not in field


def test_the_blur_line_holds_the_confidence_the_kernel_and_the_reason_on_one_line() -> None:
    report = {"confidence": 0.834, "kernel": "varying", "reason": "the blur varies\nacross"}
    assert blur_line(report) == "BLUR 0.83 varying the blur varies across"
    assert blur_line({"confidence": 3, "kernel": "none", "reason": ""}) == "BLUR 1.00 none -"
    # (a terminal's escape or a NUL, from a damaged cache record, reaches neither the plug-in
    # nor a terminal: until engine 0.3.22 only line breaks and spaces were folded)
    damaged = {"confidence": 0.9, "kernel": "free\x00form", "reason": "a\x00b\x1b[31mred"}
    assert blur_line(damaged) == "BLUR 0.90 freeform a b [31mred"


@pytest.mark.parametrize(
    "confidence",
    [None, "high", [1], True, float("nan"), float("inf"), pytest.param(10**400, id="1e400")],
)
def test_no_blur_line_without_a_confidence_that_is_a_number(confidence: object) -> None:
    """A kernel given, not estimated, has none; a damaged cache record may hold anything."""
    assert blur_line({"confidence": confidence, "kernel": "free-form", "reason": "r"}) is None
    assert blur_line({}) is None


def test_the_worker_line_names_a_process_by_its_pid_and_its_start() -> None:
    assert worker_line({"pid": 4242, "started": 7485481, "version": "x"}) == "WORKER 4242 7485481"
    # a worker that could not read its start (no /proc): a pid alone names no process for sure
    assert worker_line({"pid": 4242, "started": None}) is None
