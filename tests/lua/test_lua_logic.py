"""The darktable plug-in's Lua tests (tests/lua/test_*.lua), run by plain lua5.4."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.permissions import obey_permissions
from worker.atomic import NAME_MAX, atomic_file
from worker.cli.cache import PRIVATE_FOLDER
from worker.cli.exit_status import ExitStatus
from worker.cli.lines import blur_line
from worker.deconv.blind import DISC, FREE_FORM, GAUSSIAN, NO_BLUR
from worker.deconv.settings import (
    AUTO,
    MAX_BLUR,
    MAX_PRIORITY,
    MIN_BLUR,
    MIN_PRIORITY,
    DeblurSettings,
    is_blur_size,
    window_spelling,
)
from worker.deconv.varying import VARYING

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


def logic_prints(body: str) -> str:
    """What the Lua statements `body` print, run with the plug-in's `logic` module loaded."""
    script = (
        'package.path = "lua/?.lua;" .. package.path local logic = require("lib/deconvolve/logic") '
    )
    result = subprocess.run(
        [LUA, "-e", script + body], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )  # fmt: skip
    return result.stdout


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
def test_the_plugin_knows_the_commands_exit_statuses() -> None:
    """The plug-in's copy of the exit statuses is the command's own."""
    lines = logic_prints(
        'for name, code in pairs(logic.EXIT) do print("exit " .. name .. " " .. code) end'
    ).split("\n")
    exits = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("exit ")}
    assert exits == {status.name: status.value for status in ExitStatus}


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
def test_the_plugins_ranges_and_names_are_the_commands(tmp_path: Path) -> None:
    """What the plug-in offers the command accepts, and the names it makes or expects are the
    ones the command makes or looks for."""
    printed = logic_prints(
        "print(logic.BLUR.min, logic.BLUR.max, logic.BLUR.default) "
        "print(logic.PRIORITY.min, logic.PRIORITY.max, logic.TOLERANCE.min) "
        "print(logic.TOLERANCE.default, logic.PRIORITY.default) "
        'print(table.concat(logic.WINDOWS, " ")) '
        'print(logic.MAX_NAME - logic.LONGEST_EXTRA, logic.kernel_path("a.tif")) '
        "print(string.format(logic.PRIVATE_FOLDER, 4242)) "
        "print(logic.blur_arg({ blur_mode = logic.BLUR_MODES[1], blur = 15 }))"
    )
    blur, priority, defaults, windows, longest, folder, automatic = printed.splitlines()
    low, high, default = (int(n) for n in blur.split())
    assert (low, all(map(is_blur_size, (low, high, default)))) == (MIN_BLUR, True)
    assert high <= MAX_BLUR
    assert automatic == AUTO  # the panel's default blur size: the engine finds it
    least, most, tolerance = (float(n) for n in priority.split())
    assert (least, most) == (MIN_PRIORITY, MAX_PRIORITY) and tolerance > 0
    # the sliders start where the command does (the plug-in always passes them)
    engine = DeblurSettings()
    assert tuple(float(n) for n in defaults.split()) == (engine.tolerance, engine.priority)
    assert all(window_spelling(window) == window for window in windows.split())
    stem, kernel_picture = longest.split()
    endings = (kernel_picture.removeprefix("a"), ".tif", ".tif.xmp")  # its names' endings
    for ending in endings:  # the names of the longest stem it makes: the command writes them
        final = tmp_path / ("a" * int(stem) + ending)
        with atomic_file(final) as handle:
            handle.write(b"written")
        assert final.read_bytes() == b"written"
    assert max(int(stem) + len(ending) for ending in endings) == NAME_MAX
    assert PRIVATE_FOLDER.fullmatch(folder.replace("XXXXXXXX", "Ab3dE6g8"))


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
def test_the_plugin_reads_the_reason_of_a_real_failed_command(tmp_path: Path) -> None:
    """What the plug-in shows of a failed command is the command's own message, read from what
    it wrote on stderr, without the program's name."""
    missing = tmp_path / "missing.tif"
    failed = subprocess.run(
        [sys.executable, "-m", "worker", "deblur", str(missing), "--psf", str(tmp_path / "k.npy"),
         "-o", str(tmp_path / "out.tif")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert failed.returncode == ExitStatus.FAILED
    shown = logic_prints(f"print(logic.error_reason({lua_string(failed.stderr)}, 'none'))")
    assert shown == f"no such file or folder: {missing}\n"


def lua_string(text: str) -> str:
    """`text` as a Lua long-bracket string literal (no escapes are read inside one)."""
    level = "=" * (max((len(run) for run in text.split("]")), default=0) + 1)
    return f"[{level}[{text}]{level}]"


def test_every_reason_the_plugin_shows_is_marked_for_translation() -> None:
    """A reason a plug-in function returns reaches the screen: it is written `_("...")` (or
    `N_("...")` where the plug-in translates it as it shows it), never a bare literal, which
    gettext's catalogue would not hold (engine 0.3.55: nine of them in the round trip)."""
    bare = re.compile(r'return nil,\s*(string\.format\()?"')
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "lua").rglob("*.lua"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert found == []


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
def test_the_plugin_reads_every_kind_of_kernel_the_command_reports() -> None:
    """The plug-in reads the command's BLUR line for each kind of kernel the engine uses: a
    kind it could not read would lose the message and the tag that tell a photographer how
    sure the estimate is."""
    kinds = (NO_BLUR, FREE_FORM, GAUSSIAN, DISC, VARYING)
    lines = [blur_line({"confidence": 0.5, "kernel": kind, "reason": "why"}) for kind in kinds]
    parsed = logic_prints(
        "for _, line in ipairs({"
        + ", ".join(lua_string(line or "") for line in lines)
        + "}) do local b = logic.parse_blur_line(line) print(b and b.kernel) end"
    )
    assert parsed.split() == list(kinds)


@pytest.mark.skipif(LUA is None, reason="lua5.4 is not installed (./install.sh --test installs it)")
def test_the_plugin_looks_for_the_command_where_the_installer_puts_it() -> None:
    installer = (ROOT / "install.sh").read_text()
    folder = re.search(r"bin_dir=\$\{DT_DECONVOLVE_BIN:-\$HOME/([^}]*)\}", installer)
    assert folder is not None
    assert logic_prints("print(logic.INSTALLED_COMMAND)") == f"{folder[1]}/dt-deconvolve\n"
