"""Remote clients' paths kept inside the folders the worker serves (`--allow-dir`).

A client that comes over CURVE may name only paths inside the allowed folders; links count
where they lead. The worker checks a job's paths when it is submitted, and the executor checks
them again as the job starts, since a folder on them may have been swapped for a link out while
the job waited in the queue.
"""

import os
from collections.abc import Iterable, Sequence

from worker.errors import InputError


def check_inside(paths: Iterable[str | None], allowed: Sequence[str] | None) -> None:
    """Raise `InputError` for the first of `paths` that leads outside the `allowed` folders.

    The answer is the same whether the path exists or not, so that nothing can be probed.

    Parameters
    ----------
    paths : iterable of str or None
        The paths a job names (None for one it does not have).
    allowed : sequence of str or None
        The folders a remote client may use; None: a local client's job, which may use any path
        its user may.

    Raises
    ------
    InputError
        Naming the path (its first 200 characters) and the allowed folders.
    """
    if allowed is None:
        return
    tops = [os.path.realpath(folder) for folder in allowed]
    for path in filter(None, paths):
        real = os.path.realpath(path)
        if not any(real == top or real.startswith(top.rstrip("/") + "/") for top in tops):
            raise InputError(
                f"{path[:200]} is outside the folders this worker serves to other machines "
                f"({', '.join(tops) or 'none: start it with --allow-dir'})"
            )
