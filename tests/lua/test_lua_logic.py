"""The darktable plug-in's Lua tests (tests/lua/test_*.lua), run by plain lua5.4."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LUA_TESTS = sorted((ROOT / "tests" / "lua").glob("test_*.lua"))
LUA = shutil.which("lua5.4")


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
@pytest.mark.parametrize("script", LUA_TESTS, ids=[path.stem for path in LUA_TESTS])
def test_lua(script: Path) -> None:
    env = dict(os.environ)
    env["LUA_PATH"] = f"{ROOT / 'lua'}/?.lua;{ROOT / 'tests' / 'lua'}/?.lua;;"
    result = subprocess.run(
        [LUA, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
