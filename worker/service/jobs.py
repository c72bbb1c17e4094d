"""The worker's jobs: their records and the FIFO queue (`JobTable`).

A job runs in an executor (`worker.service.executor_process`); the table says which job is
queued, running, followed by which, and done.
"""

import contextlib
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.atomic import placed
from worker.errors import ProtocolError
from worker.jobspec import JobSpec
from worker.service import protocol
from worker.stages import Stage

RECENT_JOBS = 500  # finished jobs remembered for `status` and `list`
MAX_TEXT = 300  # characters of a job's error or note


def written_at(output: str) -> str:
    """Where writing `output` leads: its folder's real path and its name (`atomic.placed`); as
    written when its folder cannot be found.

    Parameters
    ----------
    output : str
        An absolute output path.

    Returns
    -------
    str
        The path that one name of the file has whatever the spelling of `output`.
    """
    try:
        return str(placed(output))
    except OSError:
        return output


@dataclass
class Job:
    """One job: what to do and how far it got."""

    id: str
    spec: JobSpec
    stage: Stage = Stage.QUEUED
    detail: str = Stage.QUEUED  # the pipeline's own step ("reading", "caching", ...)
    fraction: float = 0.0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    taken: bool = False  # it failed on its output's name, taken where it must not replace
    note: str | None = None  # e.g. why the result was not cached
    report: dict[str, Any] | None = None
    output_before: tuple[int, int] | None = None  # the output file's identity when started
    # Same-key submits share one computation: the first job (the leader) runs it, each later one
    # (a follower, with its own id and output) is done when its own copy of the result is.
    leader: str | None = None
    followers: list[str] = field(default_factory=list)
    withdrawn: bool = False  # the leader's own client cancelled; the run goes on for followers
    kept: Path | None = None  # a withdrawn leader's output as it was (`atomic.set_aside`)
    # The process that follows the job (`submit --wait`: the plug-in's command), as its pid and
    # start (`processes.process_start`); when it has gone, so has the job's only reader.
    watcher: tuple[int, int] | None = None
    # A copy of the result to `output` is under way off the loop: the output stays the job's,
    # even once the job has ended (cancelled), until the copy is done and undone.
    copying: bool = False
    # Where `output` leads, as it led when the job was made (`written_at`).
    target: str = ""

    @property
    def final(self) -> bool:
        """The job has ended: done, failed or cancelled."""
        return self.stage.final

    @property
    def key(self) -> str | None:
        """The job's cache key (`JobSpec.key`); None: its result is not cached."""
        return self.spec.key

    @property
    def output(self) -> str:
        """The absolute path of the job's result (`JobSpec.output`)."""
        return self.spec.output

    def seconds_left(self) -> float | None:
        """Estimated time left: the time spent so far scaled by the fraction still to do.

        Returns
        -------
        float or None
            Seconds, rounded to 0.1 s; 0.0 for a done job. None before the job has started
            running, once it has failed or been cancelled, and while less than 2 % is done
            (too early to tell).
        """
        if self.started is None or self.final or self.fraction < 0.02:
            return 0.0 if self.stage == Stage.DONE else None
        spent = time.time() - self.started
        return round(spent * (1 - self.fraction) / self.fraction, 1)

    def progress(self, fraction: float, detail: str) -> None:
        """Record the pipeline's progress.

        Parameters
        ----------
        fraction : float
            How much of the job is done, from 0 to 1; kept within that range, and never lower
            than the fraction already recorded.
        detail : str
            The pipeline's step, a `Stage` name: it becomes `detail`, and the job's stage
            becomes that step's public stage (`Stage.public`), unless it is `QUEUED` or a final
            stage. Another name changes only `detail`.
        """
        self.fraction = min(max(float(fraction), self.fraction), 1.0)
        with contextlib.suppress(ValueError):  # an unknown name changes only the detail
            step = Stage(detail)
            if not step.final and step is not Stage.QUEUED:
                self.stage = step.public(self.spec.estimating)
        self.detail = detail

    def end(self, stage: Stage, error: str | None = None) -> None:
        """Record how the job ended, and when; a done job's fraction becomes 1.

        Parameters
        ----------
        stage : Stage
            `DONE`, `FAILED` or `CANCELLED`; also its `detail`.
        error : str or None, optional
            Why it failed, kept to `MAX_TEXT` characters (`short_text`); None: no error.
        """
        self.stage = stage
        self.detail = stage
        self.error = short_text(error)
        self.finished = time.time()
        if stage == Stage.DONE:
            self.fraction = 1.0

    def as_dict(self) -> dict[str, Any]:
        """The job as the protocol's `status` reply shows it.

        Returns
        -------
        dict
            ``job``, ``stage`` and ``detail``, ``fraction`` (rounded to 4 decimals),
            ``seconds_left``, ``input``, ``output``, ``key``, the times ``submitted``,
            ``started`` and ``finished`` (seconds since the epoch; None until they happen, and
            ``started`` stays None for a job that no executor ran: a follower, a copy from the
            cache), ``error``, ``taken`` (it failed because a file is at the name of an output it
            must not replace: `worker.errors.NameTaken`), ``note`` (cut to `MAX_TEXT`
            characters), ``report`` and ``follows`` (the leader's id, for a follower; else
            None). A withdrawn leader shows
            as cancelled, as its client asked, though it still runs. Its size is bounded: two
            paths (`worker.jobspec.MAX_PATH` bytes each), two short texts and a report without
            paths of the client's, well under `protocol.MAX_MESSAGE_BYTES`.
        """
        stage = Stage.CANCELLED if self.withdrawn else self.stage
        return {
            "job": self.id,
            "stage": stage,
            "detail": stage if self.withdrawn else self.detail,
            "fraction": round(self.fraction, 4),
            "seconds_left": self.seconds_left(),
            "input": self.spec.input,
            "output": self.spec.output,
            "key": self.spec.key,
            "submitted": self.submitted,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "taken": self.taken,
            "note": short_text(self.note),
            "report": self.report,
            "follows": self.leader,
        }

    def task(
        self,
        cache_dir: Path,
        scratch: Path | None,
        limits: dict[str, int],
        known: dict[str, Any] | None = None,
        allowed: list[str] | None = None,
    ) -> dict[str, Any]:
        """The message that hands this job to an executor (`Executor.start`).

        Parameters
        ----------
        cache_dir : Path
            The worker's result cache, where the executor stores the job's result.
        scratch : Path or None
            The job's private folder, where an estimated kernel is kept for the cache; None
            when the runtime disk has no room for one.
        limits : dict of str to int
            The cache's ``max_bytes`` and ``min_free_bytes`` (`CacheLimits`' fields).
        known : dict or None, optional
            The kernel its key has in the cache: ``{"path": its copy, "report": the report of
            the job that estimated it, "made": that job's parameters}``. None: none.
        allowed : list of str or None, optional
            The folders a remote client's job is confined to (`confine.check_inside`, checked
            again as the job starts); None: a local client's job.

        Returns
        -------
        dict
            JSON-ready: ``job`` (the id), ``spec`` (`JobSpec.as_fields`), ``cache_dir``,
            ``cache_limits``, ``scratch`` (str or None), ``known`` and ``allowed``.
        """
        return {
            "job": self.id,
            "spec": self.spec.as_fields(),
            "cache_dir": str(cache_dir),
            "cache_limits": limits,
            "scratch": None if scratch is None else str(scratch),
            "known": known,
            "allowed": allowed,
        }


def short_text(text: str | None) -> str | None:
    """A message kept to `MAX_TEXT` characters (a reply must stay under the message limit).

    Parameters
    ----------
    text : str or None
        The message.

    Returns
    -------
    str or None
        `text` itself when it is None or short enough; else its start, ending in ``...``,
        `MAX_TEXT` characters in all.
    """
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 3] + "..."


def file_identity(path: str) -> tuple[int, int] | None:
    """Inode and modification time of a file: a new or replaced file differs.

    Parameters
    ----------
    path : str
        The file; a link is followed.

    Returns
    -------
    tuple of int or None
        ``(st_ino, st_mtime_ns)``; None when it cannot be examined (absent, or a folder on the
        way that cannot be searched).
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


class JobTable:
    """Every job the worker knows, the FIFO queue of those waiting, and the active job per key."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.active_by_key: dict[str, str] = {}

    def get(self, job_id: str) -> Job:
        """The job `job_id`.

        Parameters
        ----------
        job_id : str
            The job's id.

        Returns
        -------
        Job
            The job: not yet ended, or ended and not yet forgotten (`add` keeps the
            `RECENT_JOBS` last submitted of the finished jobs).

        Raises
        ------
        ProtocolError
            Code `UNKNOWN_JOB`: the worker knows no such job (never had it, or has forgotten
            it).
        """
        job = self.jobs.get(job_id)
        if job is None:
            raise ProtocolError(f"no job '{job_id}' on this worker", protocol.UNKNOWN_JOB)
        return job

    def active_with_key(self, key: str | None) -> Job | None:
        """The job that runs, or waits to run, the computation of this cache key.

        Parameters
        ----------
        key : str or None
            The cache key; None: no job.

        Returns
        -------
        Job or None
            The job whose result later submits of `key` share (`enqueue`): queued or running
            (a withdrawn one too) until it ends or its result is handed out (`release_key`);
            None when there is none. Followers are never returned.
        """
        job_id = self.active_by_key.get(key) if key else None
        return self.jobs[job_id] if job_id else None

    def active_with_output(self, output: str) -> Job | None:
        """The job that writes `output`, if any: one not yet ended, or one whose copy to it is
        still under way (`Job.copying`: ended while its result was copied there).

        Parameters
        ----------
        output : str
            An absolute output path, compared by where it leads (`written_at`): `/p//x.tif`,
            `/p/./x.tif` and a link to `/p` name the file `/p/x.tif` names.

        Returns
        -------
        Job or None
            The first such job (queued, running, copying a result, or a follower); None when
            there is none.
        """
        target = written_at(output)
        busy = (job for job in self.jobs.values() if not job.final or job.copying)
        return next((job for job in busy if job.target == target), None)

    def add(self, job: Job, queued: bool = True) -> Job:
        """Keep `job`, forgetting the oldest finished jobs beyond `RECENT_JOBS`.

        Parameters
        ----------
        job : Job
            The job, with a fresh id (`new`).
        queued : bool, optional
            Put it at the end of the queue (`enqueue`). False: it is only kept (a follower, or
            a job answered from the cache).

        Returns
        -------
        Job
            `job` itself.
        """
        self.jobs[job.id] = job
        if queued:
            self.enqueue(job)
        self._forget_old()
        return job

    def enqueue(self, job: Job) -> None:
        """Put `job` at the end of the queue; later submits of its key follow it.

        Parameters
        ----------
        job : Job
            A job already kept (`add`). Its key, if any, now names it (`active_with_key`).
        """
        self.queue.append(job.id)
        if job.key:
            self.active_by_key[job.key] = job.id

    def new(self, spec: JobSpec) -> Job:
        """A job for `spec` with a fresh id, not yet added.

        Parameters
        ----------
        spec : JobSpec
            What the job does.

        Returns
        -------
        Job
            A queued job, not yet in the table (`add`), whose id is 12 random hexadecimal
            digits.
        """
        return Job(id=uuid.uuid4().hex[:12], spec=spec, target=written_at(spec.output))

    def follow(self, leader: Job, spec: JobSpec) -> Job:
        """A job of its own for a later submit of `leader`'s key, sharing its computation.

        Parameters
        ----------
        leader : Job
            The job that runs the key's computation (`active_with_key`); the new job is added
            to its followers.
        spec : JobSpec
            The later submit's job: same key, maybe another output.

        Returns
        -------
        Job
            The follower, kept but not queued, at the leader's stage, detail and fraction.
        """
        job = self.new(spec)
        job.leader = leader.id
        job.stage, job.detail, job.fraction = leader.stage, leader.detail, leader.fraction
        leader.followers.append(job.id)
        return self.add(job, queued=False)

    def followers(self, leader: Job) -> list[Job]:
        """The followers of `leader` that still wait for its result.

        Parameters
        ----------
        leader : Job
            A job that others may follow.

        Returns
        -------
        list of Job
            Its followers that have not ended and are still kept, in the order they came.
        """
        found = (self.jobs.get(job_id) for job_id in leader.followers)
        return [job for job in found if job is not None and not job.final]

    def hand_over(self, leader: Job) -> None:
        """Give `leader`'s computation, which ended without a result they can copy (its own
        output's name was taken), to its first follower: queued first, the others follow it.

        Parameters
        ----------
        leader : Job
            A job that ended, or is ending; its followers still waiting are taken from it.
        """
        waiting = self.followers(leader)
        leader.followers = []
        if not waiting:
            return
        first, others = waiting[0], waiting[1:]
        first.followers = [job.id for job in others]
        for job in waiting:
            job.stage = job.detail = Stage.QUEUED
            job.fraction = 0.0
            job.leader = None if job is first else first.id
        self.queue.appendleft(first.id)  # (it waited already: its turn is next)
        if first.key:
            self.active_by_key[first.key] = first.id

    def release_key(self, job: Job) -> None:
        """Later submits of `job`'s key no longer follow it (its result is being handed out).

        Parameters
        ----------
        job : Job
            A job; nothing changes unless it is the one its key names.
        """
        if job.key and self.active_by_key.get(job.key) == job.id:
            del self.active_by_key[job.key]

    def active_count(self) -> int:
        """How many jobs have not ended.

        Returns
        -------
        int
            The jobs that wait, run or copy a result (followers and withdrawn leaders
            included).
        """
        return sum(1 for job in self.jobs.values() if not job.final)

    def next_queued(self) -> Job | None:
        """The job first in the queue, taken off it; None when none waits.

        Returns
        -------
        Job or None
            The job, still kept, and still named by its key (`release_key` is not called).
        """
        return self.jobs[self.queue.popleft()] if self.queue else None

    def position(self, job: Job) -> int | None:
        """How many jobs wait before `job` in the queue.

        Parameters
        ----------
        job : Job
            Any job.

        Returns
        -------
        int or None
            0 for the first one; None when it is not queued (running, ended, a follower).
        """
        return self.queue.index(job.id) if job.id in self.queue else None

    def end(self, job: Job, stage: Stage, error: str | None = None) -> None:
        """Mark `job` finished and take it off the queue; its key no longer names it.

        Parameters
        ----------
        job : Job
            The job; its followers are left as they are.
        stage : Stage
            `DONE`, `FAILED` or `CANCELLED` (`Job.end`).
        error : str or None, optional
            Why it failed; None: no error.
        """
        job.end(stage, error)
        with contextlib.suppress(ValueError):
            self.queue.remove(job.id)
        self.release_key(job)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self.jobs.items() if job.final]
        for job_id in finished[: max(0, len(finished) - RECENT_JOBS)]:
            del self.jobs[job_id]
