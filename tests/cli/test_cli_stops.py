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
    took the job still finds its id to cancel it: CI once saw a job run on after a SIGHUP). The
    signal comes from another thread, as the kernel may hand a process's signal to any thread
    that does not block it: a signal mask in the step's thread (engine 0.3.17) did not hold it."""
    script = textwrap.dedent(f"""
        import os, sys, threading, time
        from worker.cli.stops import stop_on_signals
        from worker.signals import held
        stop_on_signals()
        go = threading.Event()
        def send():
            go.wait()
            os.kill(os.getpid(), {int(signum)})
        sender = threading.Thread(target=send)
        sender.start()  # before the step, as a maths library starts its threads at import
        try:
            with held():
                go.set()
                sender.join()
                time.sleep(0.05)
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


@pytest.mark.parametrize("signum", [*STOPPING_SIGNALS, signal.SIGINT])
def test_a_destructor_that_fails_after_a_stop_prints_no_traceback(signum: int) -> None:
    """A stop that cuts a library's bookkeeping in two may leave an object whose destructor
    fails as the process ends: CI saw numba's compiler (llvmlite) print "Exception ignored ...
    Traceback" after a Ctrl-\\ sent during the first compilation. The command ends with its exit
    status and no traceback."""
    script = textwrap.dedent(f"""
        import os, sys
        from worker.cli.stops import stop_on_signals
        class HalfReleased:
            def __del__(self):
                raise AttributeError("half released")
        stop_on_signals()
        kept = HalfReleased()
        try:
            os.kill(os.getpid(), {int(signum)})
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == (130 if signum == signal.SIGINT else 128 + signum)
    assert done.stderr == ""


@pytest.mark.parametrize("signum", [*STOPPING_SIGNALS, signal.SIGINT])
def test_a_stop_that_lands_in_a_destructor_still_stops_the_command(signum: int) -> None:
    """Python runs a signal's handler at its next check, which may fall inside a destructor
    (a pyzmq socket's `__del__` as a request ends): the handler's exception there is "ignored",
    and the stop was lost. CI once saw `submit --wait` sent SIGTERM go on, print `DONE` and
    exit 0. The stop is delivered again outside the destructor."""
    script = textwrap.dedent(f"""
        import signal, sys, time
        from worker.cli.stops import stop_on_signals
        class Dropped:
            def __del__(self):
                signal.raise_signal({int(signum)})  # its handler runs here, in the destructor
        stop_on_signals()
        try:
            Dropped()
            time.sleep(5)
            print("went on", flush=True)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == ""
    assert done.returncode == (130 if signum == signal.SIGINT else 128 + signum)
    assert done.stderr == ""
