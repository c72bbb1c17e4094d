"""The darktable plug-in: its installation, and end to end in a real darktable under Xvfb."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_LINE = 'require "contrib/deconvolve"'


def install_plugin(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run install.sh for the darktable config folder `config`, away from the user's files."""
    home = config.parent / "install-home"
    env = dict(os.environ, DT_DECONVOLVE_HOME=str(home / "share"), DT_DECONVOLVE_BIN=str(home))
    return subprocess.run(
        [str(ROOT / "install.sh"), *options, "--darktable-config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_install_plugin_is_idempotent_and_uninstalls(tmp_path: Path) -> None:
    config = tmp_path / "dark table"  # a space in the path
    (config).mkdir()
    (config / "luarc").write_text('require "mine"\n')
    for _ in range(2):
        assert install_plugin(config, "--plugin").returncode == 0
    assert (config / "lua/contrib/deconvolve.lua").read_bytes() == (
        ROOT / "lua/deconvolve.lua"
    ).read_bytes()
    assert (config / "lua/lib/deconvolve/logic.lua").is_file()
    assert (config / "luarc").read_text() == f'require "mine"\n{REQUIRE_LINE}\n'

    result = install_plugin(config, "--uninstall")
    assert result.returncode == 0, result.stderr
    assert not (config / "lua/contrib/deconvolve.lua").exists()
    assert not (config / "lua/lib/deconvolve").exists()
    assert (config / "luarc").read_text() == 'require "mine"\n'


def test_install_plugin_enables_it_in_script_manager(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "lua/tools").mkdir(parents=True)
    (config / "lua/tools/script_manager.lua").write_text("-- lua-scripts\n")
    (config / "darktablerc").write_text(
        "plugins/lighttable/x=1\nlua/script_manager/contrib/deconvolve=FALSE\n"
    )
    for _ in range(2):
        assert install_plugin(config, "--plugin").returncode == 0
    assert (config / "darktablerc").read_text().splitlines() == [
        "plugins/lighttable/x=1",
        "lua/script_manager/contrib/deconvolve=TRUE",
    ]
    assert not (config / "luarc").exists(), "script_manager starts it, not luarc"
    assert (config / "lua/contrib/deconvolve.lua").is_file()


def test_install_rejects_two_actions(tmp_path: Path) -> None:
    result = install_plugin(tmp_path, "--plugin", "--uninstall")
    assert result.returncode == 1
    assert "one action at a time" in result.stderr
