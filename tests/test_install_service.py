"""install.sh's user service: installed where systemd's user instance runs, explained otherwise."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = "dt-deconvolve-worker.service"


def install(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "DT_DECONVOLVE_HOME": str(home / "app"),
        "DT_DECONVOLVE_BIN": str(home / "bin"),
    }
    return subprocess.run(
        [str(ROOT / "install.sh"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def user_systemd_runs() -> bool:
    probe = ["systemctl", "--user", "show-environment"]
    return (
        shutil.which("systemctl") is not None
        and subprocess.run(probe, capture_output=True).returncode == 0
    )


@pytest.mark.skipif(user_systemd_runs(), reason="this machine has systemd's user instance")
def test_without_user_systemd_the_installer_says_auto_start_serves(tmp_path: Path) -> None:
    result = install(tmp_path, "--service")
    assert result.returncode == 0
    assert "systemd's user instance is not available" in result.stdout
    assert "starts by itself" in result.stdout
    assert not (tmp_path / ".config" / "systemd").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_is_valid_for_systemd(tmp_path: Path) -> None:
    command = tmp_path / "bin" / "dt-deconvolve"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\nexec true\n")
    command.chmod(0o755)
    unit = tmp_path / UNIT
    unit.write_text(install(tmp_path, "--print-unit").stdout)
    assert f"ExecStart={command} worker" in unit.read_text()
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0
    assert verified.stderr.strip() == ""  # systemd reports bad lines as warnings


def test_uninstall_removes_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / ".config" / "systemd" / "user" / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text(install(tmp_path, "--print-unit").stdout)
    result = install(tmp_path, "--uninstall")
    assert result.returncode == 0
    assert f"removed the user service {unit}" in result.stdout
    assert not unit.exists()
