"""Shared fixtures: a private home for each test and a way to run the real command line."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from service_support import private_env, run_dt


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a child process with its own cache, state and runtime folders."""
    return private_env(tmp_path / "xdg")


@pytest.fixture
def run_cli(user_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `dt-deconvolve ARGS...` as a real process; returns the completed process.

    Keyword arguments other than `timeout` go to `subprocess.run` (e.g. `preexec_fn`).
    """

    def run(
        *args: str | os.PathLike[str], timeout: float = 300, **options: object
    ) -> subprocess.CompletedProcess[str]:
        return run_dt(user_env, *args, timeout=timeout, **options)

    return run
