"""The stages of a job, how its deblurring stage ends, and the progress callback that reports
them: one list for every layer.

A job goes `queued` -> `estimating` (only when the blur is to be found) -> `deblurring` ->
`writing` -> `done`, or ends `failed` or `cancelled` at any point. Inside the running stages the
pipeline reports finer steps (`reading`, `caching`) that the job's public stage absorbs: reading
belongs to the first computing stage, caching to writing. The engine, the pipeline, the worker,
the command line and the plug-in (`lua/lib/deconvolve/logic.lua`, checked by a test) all use these
names.
"""

from collections.abc import Callable
from enum import StrEnum


class Stage(StrEnum):
    """Where a job stands. The values are the names the protocol and the `PROGRESS` lines carry."""

    QUEUED = "queued"
    READING = "reading"
    ESTIMATING = "estimating"
    DEBLURRING = "deblurring"
    WRITING = "writing"
    CACHING = "caching"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """The job has ended: done, failed or cancelled."""
        return self in FINAL_STAGES

    def public(self, estimating: bool) -> "Stage":
        """The job's stage while the pipeline is at this step.

        Parameters
        ----------
        estimating : bool
            Whether the job finds its blur first (it then starts by estimating).

        Returns
        -------
        Stage
            `READING` becomes `ESTIMATING` when `estimating`, else `DEBLURRING`; `CACHING`
            becomes `WRITING`; any other stage is itself.
        """
        if self is Stage.READING:
            return Stage.ESTIMATING if estimating else Stage.DEBLURRING
        if self is Stage.CACHING:
            return Stage.WRITING
        return self


class StopReason(StrEnum):
    """Why the deblurring stage ended: the report's `stop_reason` (see `worker.deconv.stopping`)."""

    WHITENESS = "whiteness"  # the residual's structure came back: the iterate before is returned
    STAGNATION = "stagnation"  # the estimate stopped changing
    CAP = "cap"  # the iteration cap
    NO_BLUR = "no_blur"  # no blur found (or a black picture): the picture is handed back as it was
    # The result would not keep the picture's light (`rl_tv.LIGHT_KEPT`): the kernel does not
    # explain the picture, which is handed back as it was.
    UNEXPLAINED = "unexplained"


FINAL_STAGES = frozenset({Stage.DONE, Stage.FAILED, Stage.CANCELLED})
PUBLIC_STAGES = tuple(stage for stage in Stage if stage not in (Stage.READING, Stage.CACHING))

Progress = Callable[[float, str], None]
"""A progress listener: `progress(fraction, stage)`, the fraction 0..1 of the whole job (or of the
engine's step, for the engine's own callbacks) and the stage's name. It may raise to cancel."""
