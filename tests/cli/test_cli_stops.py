"""How a command stops on a signal (`worker.cli.stops`), in a real process sent real signals."""

import signal
import subprocess
import sys
import textwrap

import pytest

from worker.signals import STOPPING_SIGNALS


@pytest.mark.parametrize("signum", [*STOPPING_SIGNALS, signal.SIGINT])
def test_a_signal_held_arrives_as_the_held_step_ends(signum: int) -> None:
    """A stop sent during `held()` lets the step finish, then stops the command before the
    next line (`submit --wait` holds its request, so that a stop sent the moment the worker
    took the job still finds its id to cancel it: CI once saw a job run on after a SIGHUP)."""
    script = textwrap.dedent(f"""
        import os, sys
        from worker.cli.stops import held, stop_on_signals
        stop_on_signals()
        try:
            with held():
                os.kill(os.getpid(), {int(signum)})
                print("the step ended", flush=True)
            print("not reached", flush=True)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "the step ended\n", done.stderr
    assert done.returncode == 128 + signum
    assert "Traceback" not in done.stderr
