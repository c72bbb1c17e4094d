"""The darktable plug-in's Lua tests (tests/lua/test_*.lua), run by plain lua5.4."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.permissions import obey_permissions
from worker.cli.exit_status import ExitStatus
from worker.stages import PUBLIC_STAGES

ROOT = Path(__file__).resolve().parents[2]
LUA_TESTS = sorted((ROOT / "tests" / "lua").glob("test_*.lua"))
LUA = shutil.which("lua5.4")


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
@pytest.mark.parametrize("script", LUA_TESTS, ids=[path.stem for path in LUA_TESTS])
def test_lua(script: Path) -> None:
    env = dict(os.environ)
    env["LUA_PATH"] = f"{ROOT / 'lua'}/?.lua;{ROOT / 'tests' / 'lua'}/?.lua;;"
    result = subprocess.run(
        [LUA, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        preexec_fn=obey_permissions,  # a read-only folder is one for root too
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" not in result.stdout, result.stdout


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
def test_the_plugin_knows_the_commands_exit_statuses_and_stages() -> None:
    """The plug-in's copies of the exit statuses and stages are the command's own."""
    script = (
        'package.path = "lua/?.lua;" .. package.path '
        'local logic = require("lib/deconvolve/logic") '
        'for name, code in pairs(logic.EXIT) do print("exit " .. name .. " " .. code) end '
        'for _, stage in ipairs(logic.STAGES) do print("stage " .. stage) end'
    )
    result = subprocess.run(
        [LUA, "-e", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stdout.split("\n")
    exits = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("exit ")}
    stages = [line.split()[1] for line in lines if line.startswith("stage ")]
    assert exits == {status.name: status.value for status in ExitStatus}
    assert stages == [str(stage) for stage in PUBLIC_STAGES]
