"""The code's own checks, run with the suite: the type checker and the linters must pass."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = TOOLS / name if (TOOLS / name).exists() else shutil.which(name)
    if tool is None:
        pytest.skip(f"{name} is not installed (./install.sh --test installs it)")
    return subprocess.run([str(tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_package_type_checks() -> None:
    """mypy, as configured in pyproject.toml (the `worker` and `cache` packages)."""
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")])
def test_ruff_is_clean(command: tuple[str, ...]) -> None:
    result = run_tool("ruff", *command)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_shell_scripts_pass_shellcheck() -> None:
    result = run_tool("shellcheck", "install.sh", ".ci/run")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
