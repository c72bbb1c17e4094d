#!/usr/bin/env bash
# Install dt-deconvolve.
#
#   ./install.sh              install the engine into its own virtual environment and put
#                             `dt-deconvolve` on your PATH (~/.local/bin)
#   ./install.sh --test       set up ./.venv for development (editable, with the test tools) and,
#                             as root, the Debian packages the tests need (darktable, xvfb,
#                             xauth, lua5.4, shellcheck, and dosfstools and fusefat for
#                             a FAT disk)
#   ./install.sh --uninstall  remove everything a plain install put on this machine
#   ./install.sh --service    install and start only the worker's systemd user service
#   ./install.sh --print-unit print the systemd user unit the service uses
#   ./install.sh --plugin     install (and enable) only the darktable plug-in
#   --darktable-config DIR    with any of the above: darktable's config folder (default
#                             ~/.config/darktable); the plug-in goes into DIR/lua
#
# Environment: DT_DECONVOLVE_HOME (default $XDG_DATA_HOME/dt-deconvolve, else
# ~/.local/share/dt-deconvolve) holds the virtual environment; DT_DECONVOLVE_BIN (default
# ~/.local/bin) receives the command, a link into it; PYTHON (default python3) makes it.
# --uninstall removes only what the installer made.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # `sh install.sh`: bash runs it
set -euo pipefail

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

xdg() {
    # xdg VALUE FALLBACK: an XDG base folder, VALUE unless it is unset, empty or relative (which
    # the XDG specification says to ignore, as the engine does).
    case $1 in
        /*) printf '%s' "$1" ;;
        *) printf '%s' "$2" ;;
    esac
}

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
[[ ${HOME:-} == /* ]] || die "HOME must name your home folder (an absolute path), not '${HOME:-}'"
home_dir=${DT_DECONVOLVE_HOME:-$(xdg "${XDG_DATA_HOME:-}" "$HOME/.local/share")/dt-deconvolve}
venv=$home_dir/venv
bin_dir=${DT_DECONVOLVE_BIN:-$HOME/.local/bin}
while [[ $bin_dir == */ && $bin_dir != / ]]; do bin_dir=${bin_dir%/}; done
command_link=$bin_dir/dt-deconvolve
python=${PYTHON:-python3}
unit_name=dt-deconvolve-worker.service
unit_dir=$(xdg "${XDG_CONFIG_HOME:-}" "$HOME/.config")/systemd/user
dt_config=$(xdg "${XDG_CONFIG_HOME:-}" "$HOME/.config")/darktable
plugin_require='require "contrib/deconvolve"'
# The lines of a luarc that load a script, as a user may type them: require "x", require("x"),
# with single quotes, spaces, a semicolon or a carriage return.
lua_require() { printf '^[[:space:]]*require[[:space:]]*[(]?[[:space:]]*["'"'"']%s["'"'"'][[:space:]]*[)]?[[:space:]]*;?[[:space:]]*$' "$1"; }
venv_marker=.dt-deconvolve  # in a virtual environment this installer made

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

check_python() {
    command -v "$python" >/dev/null || die "no Python command '$python' (set PYTHON to Python 3.11 or newer)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "dt-deconvolve needs Python 3.11 or newer ($python is older)"
}

make_venv() {
    # make_venv DIR: a virtual environment with a working, recent pip in DIR. One left half made
    # (an install interrupted, or Debian's python3 without python3-venv) is completed.
    local dir=$1
    if ! "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
        check_python
        [ -e "$dir/bin/python" ] && say "completing the unfinished virtual environment in $dir"
        mkdir -p "$dir" 2>/dev/null || die "cannot create $dir"
        { : >"$dir/$venv_marker"; } 2>/dev/null || die "cannot write in $dir"
        if ! "$python" -m venv "$dir" 2>/dev/null; then
            apt_install python3-venv
            "$python" -m venv "$dir" || die "cannot create a virtual environment in $dir"
        fi
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
        || die "pip could not update itself in $dir (is PyPI reachable?)"
}

check_folders() {
    # The folders the installer writes to must be absolute, and names a program can run from.
    local name value
    for name in DT_DECONVOLVE_HOME DT_DECONVOLVE_BIN; do
        value=${!name:-/}
        [[ $value == /* ]] || die "$name must be an absolute path, not '$value'"
    done
    for value in "$venv" "$bin_dir"; do
        [[ $value != *[[:cntrl:]]* ]] || die "cannot install into a folder whose name holds a line break or another control character"
    done
}

is_our_venv() {
    # Whether DIR is a virtual environment this installer made (or one holding the command).
    [ -e "$1/$venv_marker" ] || [ -e "$1/bin/dt-deconvolve" ]
}

check_command_link() {
    # The command's place must be free or hold a link (ours, or an older install's).
    if [ -e "$command_link" ] && [ ! -L "$command_link" ]; then
        die "$command_link is already there and is not a link: move it away, or set DT_DECONVOLVE_BIN"
    fi
}

worker_state() {
    # "idle", "busy" or "current" for the worker that answers, if one runs another engine than
    # the one installed; nothing when none answers.
    timeout 20 "$venv/bin/dt-deconvolve" ping --json 2>/dev/null | "$venv/bin/python" -c '
import json, sys
from worker import __version__
reply = json.load(sys.stdin)
busy = reply["running"] or reply["queued"]
print("current" if reply["version"] == __version__ else "busy" if busy else "idle")' 2>/dev/null \
        || true
}

stop_previous_worker() {
    # After an upgrade, a worker still running the previous engine stops when it is idle, so
    # that the next picture starts the new one.
    case $(worker_state) in
        idle) timeout 20 "$venv/bin/dt-deconvolve" shutdown >/dev/null 2>&1 \
                && say "stopped the worker of the previous version: the next picture starts the new one" ;;
        busy) say "note: a worker of the previous version is busy: once its jobs end, stop it ($command_link shutdown); the next picture starts the new one" ;;
    esac
}

source_copy() {
    # A copy of the package's sources in a new temporary folder, which the caller removes: pip
    # builds there, so no build folder left in this one (an older release's files) gets in, and
    # a folder the user may not write can be installed from.
    local copy
    copy=$(mktemp -d) || die "cannot make a temporary folder"
    if ! tar -C "$here" --exclude=__pycache__ -cf - pyproject.toml README.md LICENSE worker cache \
            | tar -C "$copy" -xf -; then
        rm -rf "$copy"
        die "cannot copy the sources from $here"
    fi
    printf '%s' "$copy"
}

install_user() {
    check_command_link
    [ ! -e "$bin_dir" ] || [ -d "$bin_dir" ] || die "$bin_dir is there and is not a folder"
    if [ -e "$venv" ] && ! is_our_venv "$venv" && [ -n "$(ls -A "$venv" 2>/dev/null || echo x)" ]; then
        die "$venv is already there and this installer did not make it: set DT_DECONVOLVE_HOME to another folder"
    fi
    make_venv "$venv"
    say "installing the engine into $venv"
    local sources
    sources=$(source_copy) || exit 1
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$sources"; then
        rm -rf "$sources"
        die "pip could not install the engine into $venv (see above)"
    fi
    rm -rf "$sources"
    mkdir -p "$bin_dir" 2>/dev/null || die "cannot create $bin_dir"
    ln -sfn "$venv/bin/dt-deconvolve" "$command_link" 2>/dev/null || die "cannot write $command_link"
    say "installed $command_link"
    local where="add it, or call $command_link"
    # (the plug-in looks there itself: lua/lib/deconvolve/logic.lua's INSTALLED_COMMAND)
    [ "$command_link" = "$HOME/.local/bin/dt-deconvolve" ] \
        || where+=" and set the plug-in's 'dt-deconvolve command' preference to it"
    case ":$PATH:" in
        *":$bin_dir:"*) ;;
        *) say "note: $bin_dir is not on your PATH; $where" ;;
    esac
    stop_previous_worker
}

install_test() {
    apt_install darktable xvfb xauth lua5.4 shellcheck dosfstools fusefat
    make_venv "$here/.venv"
    say "installing the engine (editable) and the test tools into $here/.venv"
    "$here/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "${here}[test]" \
        || die "pip could not install the engine into $here/.venv (see above)"
}

systemd_word() {
    # A command's path as the first word of a systemd unit's command line: quoted, its % doubled
    # (systemd takes the path's $ as it is, and refuses quotes, backslashes and control
    # characters in it: `unit_can_name`).
    printf '"%s"' "${1//%/%%}"
}

unit_text() {
    # The systemd user unit that runs the worker (the command's path is absolute).
    cat <<EOF
[Unit]
Description=dt-deconvolve worker: deblurring jobs for darktable

[Service]
Type=exec
ExecStart=$(systemd_word "$command_link") worker
Restart=on-failure
RestartSec=2
Nice=5

[Install]
WantedBy=default.target
EOF
}

unit_can_name() {
    # Whether a systemd unit can name the command: UTF-8 text without quotes, backslashes or
    # control characters (systemd's "special characters").
    [[ $command_link != *[[:cntrl:]\"\'\\]* ]] \
        && printf '%s' "$command_link" | iconv -f UTF-8 -t UTF-8 >/dev/null 2>&1
}

has_user_systemd() {
    command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1
}

install_service() {
    # A systemd user service keeps the worker warm from login on; without systemd's user
    # instance, the client starts a worker the first time darktable asks for one.
    if ! has_user_systemd; then
        say "no service installed (systemd's user instance is not available here): the worker starts by itself the first time darktable asks for it"
        return 0
    fi
    if ! unit_can_name; then
        say "no service installed (a systemd unit cannot name $command_link: quotes, backslashes, control characters or bytes that are not UTF-8): the worker starts by itself the first time darktable asks for it"
        return 0
    fi
    [ -x "$command_link" ] || die "$command_link is not installed: run ./install.sh first"
    mkdir -p "$unit_dir" 2>/dev/null || die "cannot create $unit_dir"
    { unit_text >"$unit_dir/$unit_name"; } 2>/dev/null || die "cannot write $unit_dir/$unit_name"
    systemctl --user daemon-reload >/dev/null 2>&1 \
        || die "systemctl could not reload the user units (systemctl --user daemon-reload)"
    systemctl --user enable --now "$unit_name" >/dev/null 2>&1 \
        || die "systemctl could not start $unit_name (see: systemctl --user status $unit_name)"
    say "installed and started the user service $unit_dir/$unit_name"
}

uninstall_service() {
    [ -f "$unit_dir/$unit_name" ] || return 0
    if has_user_systemd; then
        systemctl --user disable --now "$unit_name" >/dev/null 2>&1 || true
    fi
    rm -f "$unit_dir/$unit_name" 2>/dev/null || die "cannot remove $unit_dir/$unit_name"
    if has_user_systemd; then
        systemctl --user daemon-reload >/dev/null 2>&1 || true
    fi
    say "removed the user service $unit_dir/$unit_name"
}

drop_lines() {
    # drop_lines FILE PATTERN: remove the lines that match the extended regular expression
    # PATTERN from FILE, if any; a link stays a link (its target is changed) and the file keeps
    # its mode. Lines are bytes: one that is not UTF-8 is kept like any other.
    local target status=0 new
    [ -e "$1" ] || return 0
    target=$(readlink -f "$1")
    LC_ALL=C grep -qaE -- "$2" "$target" || status=$?
    [ "$status" -eq 2 ] && die "cannot read $target"
    [ "$status" -eq 1 ] && return 0
    [ -w "$target" ] || die "cannot change $target (it is read-only)"
    new=$(mktemp "$target.XXXXXX") || die "cannot write beside $target"
    status=0
    LC_ALL=C grep -avE -- "$2" "$target" >"$new" || status=$?
    if [ "$status" -eq 2 ] || ! chmod --reference="$target" "$new" || ! mv -f "$new" "$target"; then
        rm -f "$new"
        die "cannot rewrite $target"
    fi
}

append_line() {
    # append_line FILE LINE: LINE at the end of FILE, on a line of its own.
    [ ! -e "$1" ] || [ -w "$1" ] || die "cannot change $1 (it is read-only)"
    if [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ]; then
        { printf '\n' >>"$1"; } 2>/dev/null || die "cannot write $1"
    fi
    { printf '%s\n' "$2" >>"$1"; } 2>/dev/null || die "cannot write $1"
}

set_darktablerc() {
    # set_darktablerc KEY VALUE: one line KEY=VALUE in darktable's darktablerc (darktable
    # rewrites the file when it quits, so it must not run meanwhile).
    if command -v pgrep >/dev/null && pgrep -x darktable >/dev/null; then
        say "note: darktable is running: quit it, then run this again (it rewrites darktablerc as it quits)"
    fi
    drop_lines "$dt_config/darktablerc" "^$1="
    append_line "$dt_config/darktablerc" "$1=$2"
}

uses_script_manager() {
    # Whether darktable's lua-scripts' script_manager runs (luarc loads it): then it enables
    # scripts, otherwise a require line in luarc does.
    [ -f "$dt_config/lua/tools/script_manager.lua" ] \
        && LC_ALL=C grep -qaE -- "$(lua_require tools/script_manager)" "$dt_config/luarc" 2>/dev/null
}

install_plugin() {
    # The darktable plug-in into DIR/lua/contrib (its logic into DIR/lua/lib), enabled through
    # script_manager when lua-scripts' script_manager runs, else through a require line in
    # DIR/luarc.
    local lua_dir=$dt_config/lua
    mkdir -p "$lua_dir/contrib" "$lua_dir/lib/deconvolve" 2>/dev/null || die "cannot create folders in $lua_dir"
    cp "$here/lua/deconvolve.lua" "$lua_dir/contrib/deconvolve.lua" 2>/dev/null || die "cannot write into $lua_dir"
    cp "$here"/lua/lib/deconvolve/*.lua "$lua_dir/lib/deconvolve/" 2>/dev/null || die "cannot write into $lua_dir"
    if uses_script_manager; then
        set_darktablerc lua/script_manager/contrib/deconvolve TRUE
    elif ! LC_ALL=C grep -qaE -- "$(lua_require contrib/deconvolve)" "$dt_config/luarc" 2>/dev/null; then
        append_line "$dt_config/luarc" "$plugin_require"
    fi
    say "installed the darktable plug-in into $lua_dir (restart darktable to load it)"
}

uninstall_plugin() {
    local module removed=""
    [ -e "$dt_config/lua/contrib/deconvolve.lua" ] && removed=yes
    rm -f "$dt_config/lua/contrib/deconvolve.lua"
    for module in "$here"/lua/lib/deconvolve/*.lua; do
        rm -f "$dt_config/lua/lib/deconvolve/${module##*/}"
    done
    rmdir "$dt_config/lua/lib/deconvolve" "$dt_config/lua/lib" "$dt_config/lua/contrib" 2>/dev/null || true
    drop_lines "$dt_config/luarc" "$(lua_require contrib/deconvolve)"
    drop_lines "$dt_config/darktablerc" "^lua/script_manager/contrib/deconvolve="
    [ -n "$removed" ] && say "removed the darktable plug-in from $dt_config/lua"
    return 0
}

uninstall_user() {
    # The command's link and the virtual environment, if this installer made them; the worker
    # that runs from it stops first.
    if [ -L "$command_link" ] \
        && [ "$(readlink -m "$command_link")" = "$(readlink -m "$venv/bin/dt-deconvolve")" ]; then
        rm -f "$command_link" 2>/dev/null || die "cannot remove $command_link"
        say "removed $command_link"
    elif [ -e "$command_link" ] || [ -L "$command_link" ]; then
        say "left $command_link: it is not the link this installer makes"
    fi
    if [ -d "$venv" ] && is_our_venv "$venv"; then
        if [ -x "$venv/bin/dt-deconvolve" ]; then
            timeout 20 "$venv/bin/dt-deconvolve" shutdown >/dev/null 2>&1 || true
            # it answers for a few seconds more (the clients of its jobs learn how they ended)
            # shellcheck disable=SC2016 # ($1 is the inner shell's)
            timeout 20 sh -c 'while "$1" ping >/dev/null 2>&1; do sleep 0.5; done' sh \
                "$venv/bin/dt-deconvolve" || true
        fi
        # The marker goes last, so that a removal cut short is finished by the next one.
        { : >>"$venv/$venv_marker"; } 2>/dev/null || true
        find "$venv" -mindepth 1 -maxdepth 1 ! -name "$venv_marker" -exec rm -rf {} + 2>/dev/null \
            || die "cannot remove all of $venv (fix its permissions, then run --uninstall again)"
        rm -f "$venv/$venv_marker"
        rmdir "$venv" 2>/dev/null || die "cannot remove $venv"
        rmdir "$home_dir" 2>/dev/null || true
        say "removed $venv"
    elif [ -e "$venv" ]; then
        say "left $venv: this installer did not make it"
    fi
}

uninstall() {
    uninstall_service
    uninstall_user
    uninstall_plugin
    local kept folder
    kept=()
    for folder in "$(xdg "${XDG_CACHE_HOME:-}" "$HOME/.cache")/dt-deconvolve" \
        "$(xdg "${XDG_STATE_HOME:-}" "$HOME/.local/state")/dt-deconvolve"; do
        [ -e "$folder" ] && kept+=("$folder")
    done
    [ ${#kept[@]} -eq 0 ] || say "left the cache and logs of dt-deconvolve (${kept[*]}): remove them if you no longer want them"
}

config_folder() {
    # The value of --darktable-config: a folder's path.
    if [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
        die "--darktable-config needs a folder"
    fi
    # shellcheck disable=SC2088 # (a ~ the shell left as it is, after `=`)
    case $1 in
        "~/"*) dt_config=$HOME/${1#"~/"} ;;
        /*) dt_config=$1 ;;
        *) dt_config=$PWD/$1 ;;
    esac
}

one_at_a_time() {
    # Installs in one home change the same command, unit and plug-in: the second waits for the
    # first (a lock on the home folder, released when this script exits).
    command -v flock >/dev/null 2>&1 || return 0
    { exec 9<"$HOME"; } 2>/dev/null || return 0  # a home not made yet: nothing to share
    if ! flock -n 9; then
        say "waiting for the other install.sh in $HOME to end"
        flock 9 || die "cannot wait for the other install.sh in $HOME"
    fi
}

action=""
while [ $# -gt 0 ]; do
    case $1 in
        --darktable-config) [ $# -ge 2 ] || die "--darktable-config needs a folder"
            config_folder "$2"; shift 2 ;;
        --darktable-config=*) config_folder "${1#*=}"; shift ;;
        *) [ -z "$action" ] || die "one action at a time ('$action' and '$1')"
            action=$1; shift ;;
    esac
done

case "$action" in
    ""|--service|--plugin|--uninstall) one_at_a_time ;;
esac
case "$action" in
    ""|--service) check_folders ;;
esac
case "$action" in
    "") install_user; install_service; install_plugin ;;
    --test) install_test ;;
    --plugin) install_plugin ;;
    --uninstall) uninstall ;;
    --service) install_service ;;
    --print-unit) unit_can_name || die "a systemd unit cannot name $command_link"; unit_text ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$here/install.sh" ;;
    *) die "unknown option '$action' (try --help)" ;;
esac
