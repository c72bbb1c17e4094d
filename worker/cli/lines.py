"""The lines that the darktable plug-in reads (`submit --wait`, `cache lookup`, `cache kernel`):
fields it can parse strictly whatever the file names hold.

A picture's name comes from outside and may hold anything but `/` and NUL: spaces, a newline
followed by `DONE /some/file`, bytes that are not UTF-8. A path is therefore written as one
field of printable ASCII: every byte of its file-system encoding outside `!`..`~`, and `%`
itself, becomes `%XX` (two uppercase hexadecimal digits), so a field never holds a space or a
line break and decodes back to the very same bytes (`logic.unescape` in the plug-in).
"""

import os
from collections.abc import Mapping
from typing import Any

from worker.numbers import is_finite_number

_PLAIN = frozenset(range(0x21, 0x7F)) - {ord("%")}


def path_field(path: str | os.PathLike[str]) -> str:
    """`path` as one field: printable ASCII, no space, `%XX` for every other byte.

    Parameters
    ----------
    path : str or PathLike
        A file's name; its bytes are those of the file-system encoding (`os.fsencode`).

    Returns
    -------
    str
        Each byte from `!` to `~` but `%` as it is, every other one as `%XX`.
    """
    return "".join(chr(b) if b in _PLAIN else f"%{b:02X}" for b in os.fsencode(path))


def _printable(value: object) -> str:
    """`value` as text, each character that a terminal or a line reader would act on (a line
    break, NUL, an escape) a space."""
    return "".join(c if c.isprintable() else " " for c in str(value))


def worker_line(reply: Mapping[str, Any]) -> str | None:
    """The line ``WORKER <pid> <started>`` naming a worker by its ping `reply`: its pid and its
    process's start (clock ticks since boot), which together name one process even once its
    pid is reused.

    Parameters
    ----------
    reply : Mapping
        The worker's ping reply (`Client.ping`).

    Returns
    -------
    str or None
        The line, both numbers as integers; None where the worker could not read its start
        (no /proc): a pid alone would name no process for sure.
    """
    if reply.get("started") is None:
        return None
    return f"WORKER {int(reply['pid'])} {int(reply['started'])}"


def blur_line(report: Mapping[str, Any]) -> str | None:
    """The line ``BLUR <confidence> <kernel> <reason>`` for a report that holds an estimated blur.

    Parameters
    ----------
    report : Mapping
        A job's report (`run_pipeline`), or a cache record's, which may be damaged.

    Returns
    -------
    str or None
        The line: the confidence clipped to [0, 1], with two decimals; the kernel used (none,
        free-form, gaussian, disc or varying) with no space; the reason on one line. Missing
        fields read `-`, and characters a terminal would act on a space. None when `report`
        holds no finite confidence (no blur was estimated).
    """
    confidence = report.get("confidence")
    if not is_finite_number(confidence):
        return None  # none estimated (or a damaged cache record's)
    reason = " ".join(_printable(report.get("reason", "")).split()) or "-"
    kind = "".join(_printable(report.get("kernel", "")).split()) or "-"
    return f"BLUR {min(max(float(confidence), 0.0), 1.0):.2f} {kind} {reason}"
