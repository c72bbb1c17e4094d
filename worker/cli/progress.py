"""A progress bar on stderr for long commands, shown only when stderr is a terminal."""

import contextlib
import sys
from collections.abc import Iterator

from tqdm import tqdm

from worker.stages import Progress


@contextlib.contextmanager
def progress_bar() -> Iterator[Progress | None]:
    """A progress bar on stderr, for the length of the block, when stderr is a terminal.

    When it is not (a pipe, a log file, the darktable plug-in, or closed), there is no bar, so
    that scripts get clean output.

    Yields
    ------
    Progress or None
        ``update(fraction, stage)``, which draws the bar at `fraction` (0 to 1) of the work,
        labelled `stage`; None when stderr is not a terminal.
    """
    if sys.stderr is None or not sys.stderr.isatty():
        yield None
        return
    with tqdm(total=100, file=sys.stderr, unit="%", bar_format="{desc:12} {bar} {n:.0f}%") as bar:

        def update(fraction: float, stage: str) -> None:
            bar.set_description_str(stage, refresh=False)
            bar.update(round(100 * fraction, 1) - bar.n)

        yield update
