"""install.sh: what it installs, what it refuses, and that --uninstall removes only what it made.

Each test runs the real installer in a private home. The quick ones stop before pip's work (a
refusal comes first) or install only the plug-in; the slow ones make a real virtual environment.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.permissions import obey_permissions
from tests.service_support import private_env, process_lives, short_folder

ROOT = Path(__file__).resolve().parent.parent
UNIT = "dt-deconvolve-worker.service"
REQUIRE = 'require "contrib/deconvolve"'


def environment(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "DT_DECONVOLVE_HOME": str(home / "app"),
        "DT_DECONVOLVE_BIN": str(home / "bin"),
        **extra,
    }


def install(
    home: Path, *args: str, env: dict[str, str] | None = None, shell: str = "bash"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, str(ROOT / "install.sh"), *args],
        env=env or environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def config(home: Path) -> Path:
    return home / ".config" / "darktable"


def installed_venv(home: Path) -> Path:
    """A virtual environment as the installer leaves it (its marker, the command), whose
    command runs this checkout's engine."""
    venv = home / "app" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".dt-deconvolve").touch()
    command = venv / "bin" / "dt-deconvolve"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m worker "$@"\n')
    command.chmod(0o755)
    (home / "bin").mkdir()
    (home / "bin" / "dt-deconvolve").symlink_to(command)
    return venv


def user_systemd_runs() -> bool:
    probe = ["systemctl", "--user", "show-environment"]
    return (
        shutil.which("systemctl") is not None
        and subprocess.run(probe, capture_output=True).returncode == 0
    )


# The systemd user service


@pytest.mark.skipif(user_systemd_runs(), reason="this machine has systemd's user instance")
def test_without_user_systemd_the_installer_says_auto_start_serves(tmp_path: Path) -> None:
    result = install(tmp_path, "--service")
    assert result.returncode == 0
    assert "systemd's user instance is not available" in result.stdout
    assert "starts by itself" in result.stdout
    assert not (tmp_path / ".config" / "systemd").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("folder", ["bin", "my bin", "50%off", "a$HOME"])
def test_the_unit_is_valid_for_systemd(tmp_path: Path, folder: str) -> None:
    command = tmp_path / folder / "dt-deconvolve"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\nexec true\n")
    command.chmod(0o755)
    unit = tmp_path / UNIT
    env = environment(tmp_path, DT_DECONVOLVE_BIN=str(command.parent))
    unit.write_text(install(tmp_path, "--print-unit", env=env).stdout)
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0
    assert verified.stderr.strip() == ""  # systemd reports bad lines (a word split) as warnings


@pytest.mark.parametrize("folder", ['it"s', "it's", "back\\slash", "line\nbreak"])
def test_a_path_that_a_unit_cannot_name_is_refused_in_one_line(tmp_path: Path, folder: str) -> None:
    env = environment(tmp_path, DT_DECONVOLVE_BIN=str(tmp_path / folder))
    result = install(tmp_path, "--print-unit", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("install.sh: error: a systemd unit cannot name")


def test_uninstall_removes_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / ".config" / "systemd" / "user" / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text(install(tmp_path, "--print-unit").stdout)
    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0
    assert f"removed the user service {unit}" in result.stdout
    assert not unit.exists()


# The engine and its command


def test_uninstall_removes_only_what_the_installer_made(tmp_path: Path) -> None:
    # DT_DECONVOLVE_HOME may name a folder that holds other things (it was removed whole)
    venv = installed_venv(tmp_path)
    keep = tmp_path / "app" / "notes.txt"
    keep.write_text("mine")
    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert keep.read_text() == "mine"
    assert not venv.exists()
    assert not (tmp_path / "bin" / "dt-deconvolve").is_symlink()
    assert f"removed {venv}" in result.stdout


def test_uninstall_leaves_a_virtual_environment_and_a_command_of_the_user(tmp_path: Path) -> None:
    venv = tmp_path / "app" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    command = tmp_path / "bin" / "dt-deconvolve"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\necho my own wrapper\n")
    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert (venv / "pyvenv.cfg").exists()
    assert command.read_text() == "#!/bin/sh\necho my own wrapper\n"
    assert f"left {command}: it is not the link this installer makes" in result.stdout
    assert f"left {venv}: this installer did not make it" in result.stdout


def test_uninstall_stops_the_worker_that_runs_from_it(tmp_path: Path) -> None:
    with short_folder() as folder:
        env = {**private_env(folder), **environment(tmp_path)}
        installed_venv(tmp_path)
        worker = subprocess.Popen(
            [tmp_path / "bin" / "dt-deconvolve", "worker"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(300):
                ping = [tmp_path / "bin" / "dt-deconvolve", "ping"]
                if subprocess.run(ping, env=env, capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            result = install(tmp_path, "--uninstall", env=env)
            assert result.returncode == 0, result.stderr
            worker.wait(30)  # it stopped (TimeoutExpired otherwise)
            assert not process_lives(worker.pid)
        finally:
            worker.kill()
            worker.wait()


def test_a_file_of_the_user_at_the_command_s_place_stops_the_install_first(tmp_path: Path) -> None:
    for kind in ("file", "folder"):
        command = tmp_path / kind / "dt-deconvolve"
        if kind == "file":
            command.parent.mkdir()
            command.write_text("mine")
        else:
            command.mkdir(parents=True)
        result = install(tmp_path, env=environment(tmp_path, DT_DECONVOLVE_BIN=str(command.parent)))
        assert result.returncode == 1
        assert result.stderr == (
            f"install.sh: error: {command} is already there and is not a link: move it away, "
            "or set DT_DECONVOLVE_BIN\n"
        )
        assert not (tmp_path / "app").exists()  # refused before any work
        assert not config(tmp_path).exists()
    assert (tmp_path / "file" / "dt-deconvolve").read_text() == "mine"


def test_a_folder_of_the_user_at_the_environment_s_place_is_never_taken(tmp_path: Path) -> None:
    """A folder the installer did not make at DT_DECONVOLVE_HOME/venv (a project's `venv`, or a
    virtual environment whose Python is gone) is refused before any work: it was taken over,
    and `--uninstall` then removed it with the user's files."""
    notes = tmp_path / "app" / "venv" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    result = install(tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"install.sh: error: {notes.parent} is already there and this installer did not make "
        "it: set DT_DECONVOLVE_HOME to another folder\n"
    )
    assert install(tmp_path, "--uninstall").returncode == 0
    assert notes.read_text() == "mine"


@pytest.mark.parametrize("name", ["DT_DECONVOLVE_HOME", "DT_DECONVOLVE_BIN"])
def test_a_relative_folder_is_refused_and_a_relative_xdg_folder_ignored(
    tmp_path: Path, name: str
) -> None:
    """The installer's folders are absolute, or the command's link pointed nowhere from another
    folder; a relative XDG_CONFIG_HOME is ignored, as the XDG specification and the engine
    say, and a `~/` that the shell left after `--darktable-config=` is the home folder."""
    relative = subprocess.run(
        ["bash", str(ROOT / "install.sh")], env=environment(tmp_path, **{name: "rel"}),
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert relative.returncode == 1
    assert relative.stderr == f"install.sh: error: {name} must be an absolute path, not 'rel'\n"
    assert not (tmp_path / "rel").exists()
    for option in (["--plugin"], ["--plugin", "--darktable-config=~/.config/darktable"]):
        plugin = subprocess.run(
            ["bash", str(ROOT / "install.sh"), *option],
            env=environment(tmp_path, XDG_CONFIG_HOME="cfg"), cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert plugin.returncode == 0, plugin.stderr
        assert (config(tmp_path) / "lua" / "contrib" / "deconvolve.lua").is_file()
        assert not (tmp_path / "cfg").exists() and not (tmp_path / "~").exists()


def test_a_line_break_in_the_environment_s_folder_is_refused(tmp_path: Path) -> None:
    """A program cannot run from a folder whose name holds a line break (its scripts' first
    line is cut there): refused before any work, where it was installed broken."""
    env = environment(tmp_path, DT_DECONVOLVE_HOME=str(tmp_path / "app\nx"))
    result = install(tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == (
        "install.sh: error: cannot install into a folder whose name holds a line break or "
        "another control character\n"
    )
    assert not (tmp_path / "app\nx").exists()


def test_uninstall_through_another_path_to_the_home_removes_its_link(tmp_path: Path) -> None:
    """Installed through a link to the home folder (or the other way round), the command's link
    is still the installer's: it was left, pointing at the environment just removed."""
    installed_venv(tmp_path)
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    alias.symlink_to(tmp_path)
    result = install(tmp_path, "--uninstall", env=environment(alias))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "bin" / "dt-deconvolve").is_symlink()
    assert not (tmp_path / "app" / "venv").exists()


def test_an_uninstall_cut_short_says_so_and_the_next_one_finishes(tmp_path: Path) -> None:
    """A file that cannot be removed stops `--uninstall` with one line; once it can be, the next
    run removes the rest (the marker goes last). Until engine 0.3.55 rm's own lines came out
    and the half-removed environment no longer counted as the installer's."""
    venv = installed_venv(tmp_path)
    stuck = venv / "lib" / "stuck"
    stuck.mkdir(parents=True)
    (stuck / "file").touch()
    stuck.chmod(0o555)
    try:
        cut = subprocess.run(
            ["bash", str(ROOT / "install.sh"), "--uninstall"], env=environment(tmp_path),
            capture_output=True, text=True, timeout=120, preexec_fn=obey_permissions,
        )  # fmt: skip
    finally:
        stuck.chmod(0o755)
    assert cut.returncode == 1
    assert cut.stderr == (
        f"install.sh: error: cannot remove all of {venv} (fix its permissions, then run "
        "--uninstall again)\n"
    )
    finished = install(tmp_path, "--uninstall")
    assert finished.returncode == 0, finished.stderr
    assert f"removed {venv}" in finished.stdout
    assert not venv.exists()


def test_a_missing_python_is_named(tmp_path: Path) -> None:
    result = install(tmp_path, env=environment(tmp_path, PYTHON="python9"))
    assert result.returncode == 1
    assert result.stderr == (
        "install.sh: error: no Python command 'python9' (set PYTHON to Python 3.11 or newer)\n"
    )


@pytest.mark.slow
def test_a_failing_pip_fails_the_install_and_an_unfinished_environment_is_completed(
    tmp_path: Path,
) -> None:
    # An install interrupted while it made its environment (or Debian's python3 without
    # python3-venv) leaves one without pip, marked as the installer's (it marks the folder
    # first); and with no package index pip cannot install.
    venv = tmp_path / "app" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    (venv / ".dt-deconvolve").touch()
    result = install(tmp_path, env=environment(tmp_path, PIP_NO_INDEX="1"))
    assert f"completing the unfinished virtual environment in {venv}" in result.stdout
    assert subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"]).returncode == 0
    assert result.returncode == 1
    assert "install.sh: error: pip could not install the engine" in result.stderr
    assert "installed" not in result.stdout  # neither the command nor the plug-in
    assert not (tmp_path / "bin" / "dt-deconvolve").is_symlink()
    assert not config(tmp_path).exists()


# The plug-in


def test_the_require_line_goes_on_a_line_of_its_own(tmp_path: Path) -> None:
    luarc = config(tmp_path) / "luarc"
    luarc.parent.mkdir(parents=True)
    luarc.write_text("local debug = 1")  # no final line break
    assert install(tmp_path, "--plugin").returncode == 0
    assert luarc.read_text() == f"local debug = 1\n{REQUIRE}\n"
    assert install(tmp_path, "--plugin").returncode == 0  # twice: one line
    assert luarc.read_text() == f"local debug = 1\n{REQUIRE}\n"


def test_uninstall_keeps_links_modes_and_every_other_line(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    luarc, darktablerc = dotfiles / "luarc", dotfiles / "darktablerc"
    luarc.write_bytes(
        b'require "official/other"\n'
        b"require('contrib/deconvolve');\r\n"
        b'  require ( "contrib/deconvolve" )  \n'
        b'-- require "contrib/deconvolve" (a comment stays)\n'
    )
    darktablerc.write_bytes(
        b"a=1\nui_last/import_last_directory=/media/caf\xe9\n"
        b"lua/script_manager/contrib/deconvolve=TRUE\nz=3\n"
    )
    for file in (luarc, darktablerc):
        file.chmod(0o600)
        (config(tmp_path) / file.name).parent.mkdir(parents=True, exist_ok=True)
        (config(tmp_path) / file.name).symlink_to(file)
    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert luarc.read_bytes() == (
        b'require "official/other"\n-- require "contrib/deconvolve" (a comment stays)\n'
    )
    assert darktablerc.read_bytes() == b"a=1\nui_last/import_last_directory=/media/caf\xe9\nz=3\n"
    for file in (luarc, darktablerc):
        assert (config(tmp_path) / file.name).is_symlink()
        assert file.stat().st_mode & 0o777 == 0o600


def test_the_plug_in_installs_twice_into_a_folder_with_a_space_and_uninstalls(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "dark table"
    folder.mkdir()
    (folder / "luarc").write_text('require "mine"\n')
    for _ in range(2):
        assert install(tmp_path, "--plugin", "--darktable-config", str(folder)).returncode == 0
    assert (folder / "lua/contrib/deconvolve.lua").read_bytes() == (
        ROOT / "lua/deconvolve.lua"
    ).read_bytes()
    assert (folder / "lua/lib/deconvolve/logic.lua").is_file()
    assert (folder / "luarc").read_text() == f'require "mine"\n{REQUIRE}\n'
    result = install(tmp_path, "--uninstall", "--darktable-config", str(folder))
    assert result.returncode == 0, result.stderr
    assert not (folder / "lua/contrib/deconvolve.lua").exists()
    assert not (folder / "lua/lib/deconvolve").exists()
    assert (folder / "luarc").read_text() == 'require "mine"\n'


def test_a_second_install_in_one_home_waits_for_the_first(tmp_path: Path) -> None:
    home = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(home, fcntl.LOCK_EX)  # as a first install.sh holds it
        second = subprocess.Popen(
            ["bash", str(ROOT / "install.sh"), "--plugin"],
            env=environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert second.stdout is not None
        assert "waiting for the other install.sh" in second.stdout.readline()
        time.sleep(0.5)
        assert second.poll() is None
        assert not (config(tmp_path) / "lua").exists()
    finally:
        os.close(home)  # the first one ends
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert (config(tmp_path) / "lua/contrib/deconvolve.lua").is_file()


def test_script_manager_enables_the_plug_in_only_where_it_runs(tmp_path: Path) -> None:
    lua = config(tmp_path) / "lua"
    (lua / "tools").mkdir(parents=True)
    (lua / "tools" / "script_manager.lua").write_text("-- lua-scripts' script_manager\n")
    luarc, darktablerc = config(tmp_path) / "luarc", config(tmp_path) / "darktablerc"
    luarc.write_text('require "official/selection_to_pdf"\n')  # lua-scripts, by require lines
    assert install(tmp_path, "--plugin").returncode == 0
    assert luarc.read_text().splitlines()[-1] == REQUIRE
    assert not darktablerc.exists()
    luarc.write_text('require "tools/script_manager"\n')
    darktablerc.write_text("plugins/lighttable/x=1\nlua/script_manager/contrib/deconvolve=FALSE\n")
    for _ in range(2):
        assert install(tmp_path, "--plugin").returncode == 0
    assert luarc.read_text() == 'require "tools/script_manager"\n'
    assert darktablerc.read_text().splitlines() == [
        "plugins/lighttable/x=1",
        "lua/script_manager/contrib/deconvolve=TRUE",
    ]


def test_one_action_at_a_time(tmp_path: Path) -> None:
    result = install(tmp_path, "--plugin", "--uninstall")
    assert result.returncode == 1
    assert result.stderr == (
        "install.sh: error: one action at a time ('--plugin' and '--uninstall')\n"
    )


@pytest.mark.parametrize("option", [["--darktable-config="], ["--darktable-config", "--plugin"]])
def test_the_config_folder_must_be_given(tmp_path: Path, option: list[str]) -> None:
    result = install(tmp_path, "--plugin", *option)
    assert result.returncode == 1
    assert result.stderr == "install.sh: error: --darktable-config needs a folder\n"


def test_the_installer_runs_under_sh_and_through_a_link(tmp_path: Path) -> None:
    link = tmp_path / "elsewhere" / "install.sh"
    link.parent.mkdir()
    link.symlink_to(ROOT / "install.sh")
    for program in (["sh", str(ROOT / "install.sh")], ["bash", str(link)]):
        result = subprocess.run(
            [*program, "--plugin"], env=environment(tmp_path), capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert (config(tmp_path) / "lua" / "contrib" / "deconvolve.lua").read_bytes() == (
            ROOT / "lua" / "deconvolve.lua"
        ).read_bytes()
        shutil.rmtree(config(tmp_path))
