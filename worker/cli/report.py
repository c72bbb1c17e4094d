"""What a command that wrote a picture prints about it: one JSON line, or lines for people."""

import json

from worker.cli.streams import report_on
from worker.errors import one_line
from worker.stages import StopReason


def print_report(report: dict, as_json: bool) -> None:
    """Print the job's report on the picture written: one JSON line, or lines for people.

    For people: a line on the blur found, when it was estimated, then one on the picture
    written (as it was, when no blur was found).

    Parameters
    ----------
    report : dict
        The report of `run_pipeline`: `output`, the engine's fields (`stop_reason`,
        `iterations`...) and, when the blur was estimated, `confidence` and `reason`.
    as_json : bool
        Print `report` as one JSON line.

    Raises
    ------
    OSError
        Stdout cannot take the report; the error says that the picture was written
        (`report_on`).
    """
    with report_on("picture", report["output"]):
        if as_json:
            print(json.dumps(report))
            return
        if "confidence" in report:
            print(f"blur: {report['reason']} (confidence {report['confidence']:.2f})")
        output = one_line(report["output"])  # a line break in a name stays out of the line
        if report["stop_reason"] == StopReason.NO_BLUR:
            print(f"wrote {output}: the picture as it was")
            return
        if report["stop_reason"] == StopReason.UNEXPLAINED:
            print(
                f"wrote {output}: the picture as it was: deblurred with this kernel it would not "
                "keep its light, as a deblur must, so the kernel does not explain it"
            )
            return
        print(
            f"wrote {output}: {report['iterations']} iterations "
            f"(best {report['best_iteration']}, stopped by {report['stop_reason']}), "
            f"noise {report['noise_sigma']:.4g}, lambda {report['lambda']:.3g}, "
            f"{report['seconds']:.1f} s"
        )
