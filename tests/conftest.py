"""Shared fixtures: a private home for each test and a way to run the real command line."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a child process with its own cache, state and runtime folders."""
    env = dict(os.environ)
    for variable in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        folder = tmp_path / "xdg" / variable.lower()
        folder.mkdir(parents=True, mode=0o700)
        env[variable] = str(folder)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DT_DECONVOLVE_DEBUG", None)
    return env


@pytest.fixture
def run_cli(user_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `dt-deconvolve ARGS...` as a real process; returns the completed process.

    Keyword arguments other than `timeout` go to `subprocess.run` (e.g. `preexec_fn`).
    """

    def run(
        *args: str | os.PathLike[str], timeout: float = 300, **options: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", *map(str, args)],
            env=user_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **options,
        )

    return run
