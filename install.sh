#!/usr/bin/env bash
# Install dt-deconvolve.
#
#   ./install.sh              install the engine into its own virtual environment and put
#                             `dt-deconvolve` on your PATH (~/.local/bin)
#   ./install.sh --test       set up ./.venv for development (editable, with the test tools) and,
#                             as root, the Debian packages the tests need (darktable, xvfb, lua5.4)
#   ./install.sh --uninstall  remove everything a plain install put on this machine
#   ./install.sh --service    install and start only the worker's systemd user service
#   ./install.sh --print-unit print the systemd user unit the service uses
#   ./install.sh --plugin     install (and enable) only the darktable plug-in
#   --darktable-config DIR    with any of the above: darktable's config folder (default
#                             ~/.config/darktable); the plug-in goes into DIR/lua
#
# Environment: DT_DECONVOLVE_HOME (default ~/.local/share/dt-deconvolve) holds the virtual
# environment; DT_DECONVOLVE_BIN (default ~/.local/bin) receives the command.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home_dir=${DT_DECONVOLVE_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/dt-deconvolve}
bin_dir=${DT_DECONVOLVE_BIN:-$HOME/.local/bin}
python=${PYTHON:-python3}
unit_name=dt-deconvolve-worker.service
unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
dt_config=${XDG_CONFIG_HOME:-$HOME/.config}/darktable
plugin_require='require "contrib/deconvolve"'

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_install() {
    # apt_install PACKAGE...: install the Debian packages that are missing (root only).
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! is_root || ! command -v apt-get >/dev/null; then
        say "please install these Debian packages: ${missing[*]}"
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {
    # make_venv DIR: a virtual environment with a recent pip, made once.
    local dir=$1
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "dt-deconvolve needs Python 3.11 or newer ($python is older)"
        if ! "$python" -m venv "$dir" 2>/dev/null; then
            apt_install python3-venv
            "$python" -m venv "$dir" || die "cannot create a virtual environment in $dir"
        fi
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
}

install_user() {
    make_venv "$home_dir/venv"
    say "installing the engine into $home_dir/venv"
    "$home_dir/venv/bin/python" -m pip install -q --disable-pip-version-check "$here"
    mkdir -p "$bin_dir"
    ln -sf "$home_dir/venv/bin/dt-deconvolve" "$bin_dir/dt-deconvolve"
    say "installed $bin_dir/dt-deconvolve"
    case ":$PATH:" in
        *":$bin_dir:"*) ;;
        *) say "note: $bin_dir is not on your PATH; add it, or call $bin_dir/dt-deconvolve" ;;
    esac
}

install_test() {
    apt_install darktable xvfb xauth lua5.4
    make_venv "$here/.venv"
    say "installing the engine (editable) and the test tools into $here/.venv"
    "$here/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[test]"
}

unit_text() {
    # The systemd user unit that runs the worker (the command's path is absolute).
    cat <<EOF
[Unit]
Description=dt-deconvolve worker: deblurring jobs for darktable

[Service]
Type=simple
ExecStart=$bin_dir/dt-deconvolve worker
Restart=on-failure
RestartSec=2
Nice=5

[Install]
WantedBy=default.target
EOF
}

has_user_systemd() {
    command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1
}

install_service() {
    # A systemd user service keeps the worker warm from login on; without systemd's user
    # instance, the client starts a worker the first time darktable asks for one.
    if ! has_user_systemd; then
        say "systemd's user instance is not available here, so no service was installed:"
        say "the worker starts by itself the first time darktable asks for it"
        return 0
    fi
    mkdir -p "$unit_dir"
    unit_text >"$unit_dir/$unit_name"
    systemctl --user daemon-reload
    systemctl --user enable --now "$unit_name" >/dev/null 2>&1 \
        || die "systemctl could not start $unit_name (see: systemctl --user status $unit_name)"
    say "installed and started the user service $unit_dir/$unit_name"
}

uninstall_service() {
    [ -f "$unit_dir/$unit_name" ] || return 0
    if has_user_systemd; then
        systemctl --user disable --now "$unit_name" >/dev/null 2>&1 || true
    fi
    rm -f "$unit_dir/$unit_name"
    if has_user_systemd; then
        systemctl --user daemon-reload
    fi
    say "removed the user service $unit_dir/$unit_name"
}

drop_lines() {
    # drop_lines FILE GREP-ARGS...: remove the lines grep matches from FILE, when it exists.
    local file=$1
    shift
    [ -f "$file" ] || return 0
    grep -v "$@" "$file" >"$file.new" || true
    mv "$file.new" "$file"
}

set_darktablerc() {
    # set_darktablerc KEY VALUE: one line KEY=VALUE in darktable's darktablerc (quit darktable
    # first: it rewrites the file when it quits).
    drop_lines "$dt_config/darktablerc" -e "^$1="
    printf '%s=%s\n' "$1" "$2" >>"$dt_config/darktablerc"
}

install_plugin() {
    # The darktable plug-in into DIR/lua/contrib (its logic into DIR/lua/lib), enabled through
    # script_manager when lua-scripts is installed, else through a require line in DIR/luarc.
    local lua_dir=$dt_config/lua
    mkdir -p "$lua_dir/contrib" "$lua_dir/lib/deconvolve"
    cp "$here/lua/deconvolve.lua" "$lua_dir/contrib/deconvolve.lua"
    cp "$here"/lua/lib/deconvolve/*.lua "$lua_dir/lib/deconvolve/"
    if [ -f "$lua_dir/tools/script_manager.lua" ]; then
        set_darktablerc lua/script_manager/contrib/deconvolve TRUE
    elif ! grep -qxF "$plugin_require" "$dt_config/luarc" 2>/dev/null; then
        printf '%s\n' "$plugin_require" >>"$dt_config/luarc"
    fi
    say "installed the darktable plug-in into $lua_dir (restart darktable to load it)"
}

uninstall_plugin() {
    rm -f "$dt_config/lua/contrib/deconvolve.lua"
    local module
    for module in "$here"/lua/lib/deconvolve/*.lua; do
        rm -f "$dt_config/lua/lib/deconvolve/${module##*/}"
    done
    rmdir "$dt_config/lua/lib/deconvolve" 2>/dev/null || true
    drop_lines "$dt_config/luarc" -xF "$plugin_require"
    drop_lines "$dt_config/darktablerc" -e "^lua/script_manager/contrib/deconvolve="
    say "removed the darktable plug-in from $dt_config/lua"
}

uninstall() {
    uninstall_service
    rm -f "$bin_dir/dt-deconvolve"
    rm -rf "$home_dir"
    say "removed $bin_dir/dt-deconvolve and $home_dir"
    uninstall_plugin
}

action=""
while [ $# -gt 0 ]; do
    case $1 in
        --darktable-config) [ $# -ge 2 ] || die "--darktable-config needs a folder"
            dt_config=$2; shift 2 ;;
        --darktable-config=*) dt_config=${1#*=}; shift ;;
        *) [ -z "$action" ] || die "one action at a time ('$action' and '$1')"
            action=$1; shift ;;
    esac
done

case "$action" in
    "") install_user && install_service && install_plugin ;;
    --test) install_test ;;
    --plugin) install_plugin ;;
    --uninstall) uninstall ;;
    --service) install_service ;;
    --print-unit) unit_text ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" ;;
    *) die "unknown option '$action' (try --help)" ;;
esac
