"""File work beside the worker's loop: every finished piece is handed back, whatever others do."""

import time

import pytest

from worker.service.background import Background


def test_a_hand_back_that_fails_does_not_hold_up_the_others() -> None:
    """Until engine 0.3.23 a `then` that raised left the pieces after it waiting for the next
    piece to end (the pipe emptied), and `pending` above 0 (a stopping worker waits for it)."""
    seen: list[int] = []

    def then_failing(future) -> None:
        raise RuntimeError(f"bug after {future.result()}")

    with Background() as background:
        background.run(lambda: 1, then_failing)
        background.run(lambda: 2, lambda future: seen.append(future.result()))
        deadline = time.monotonic() + 10
        while background._finished.qsize() < 2:  # both pieces have ended
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="bug after 1"):
            background.collect()
        assert seen == [2] and background.pending == 0
