"""Slow file work (copying results) done beside the worker's loop, never in it.

Copying a cached 1 GB result to another disk takes seconds; done in the loop it would leave every
client (a `ping`, a `status`) unanswered meanwhile. `Background.run(work, then)` runs `work` in a
thread and `then(future)` back in the loop's thread, when the loop calls `collect` (a pipe
registered in the loop's poller, `fileno`, wakes it up as soon as a piece of work ends).
"""

import contextlib
import os
import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

THREADS = 2

Then = Callable[["Future[Any]"], None]


class Background:
    """A few threads for file copies, and the hand-back of their results to the loop.

    Owns its threads and a pipe until `close()` (or the end of a `with` block), which waits for
    the work under way. `run`, `collect` and `close` belong to the loop's thread.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="dt-deconvolve-copy")
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._finished: queue.SimpleQueue[tuple[Future[Any], Then]] = queue.SimpleQueue()
        self.pending = 0

    def fileno(self) -> int:
        """The pipe end that wakes the loop.

        Returns
        -------
        int
            The read end of the pipe: readable when some work has ended (poll it with the
            loop's sockets, then call `collect`). -1 after `close`.
        """
        return self._wake_read

    def run(self, work: Callable[[], Any], then: Then) -> None:
        """Run `work()` in a thread; `then(future)` runs in the loop by `collect` afterwards.

        Parameters
        ----------
        work : callable
            Called with no arguments in one of the `THREADS` threads.
        then : callable
            Called with `work`'s `Future`, which is done, in the thread that calls `collect`;
            it runs whether `work` returned or raised (``future.result()`` raises it again).
        """
        self.pending += 1

        def finished(future: Future[Any]) -> None:
            self._finished.put((future, then))
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b".")

        self._pool.submit(work).add_done_callback(finished)

    def collect(self) -> None:
        """Run the `then` of every piece of work that has ended, in the order they ended.

        `pending` counts the pieces whose `then` has not run yet. A `then` that raises does not
        keep the others from running (the pipe is emptied: they would wait for the next piece
        to end); the first such exception propagates once all have run.

        Raises
        ------
        Exception
            The first exception a `then` raised (a bug: the loop logs it).
        """
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass
        failures: list[Exception] = []
        while True:
            try:
                future, then = self._finished.get_nowait()
            except queue.Empty:
                break
            self.pending -= 1
            try:
                then(future)
            except Exception as error:
                failures.append(error)
        if failures:
            raise failures[0]

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for the work under way, then release the threads and the pipe (idempotent)."""
        if self._wake_read < 0:
            return
        self._pool.shutdown(wait=True)
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._wake_read = self._wake_write = -1
