#!/usr/bin/env bash
# Install dt-deconvolve.
#
#   ./install.sh              install the engine into its own virtual environment and put
#                             `dt-deconvolve` on your PATH (~/.local/bin)
#   ./install.sh --test       set up ./.venv for development (editable, with the test tools) and,
#                             as root, the Debian packages the tests need (darktable, xvfb, lua5.4)
#   ./install.sh --uninstall  remove everything a plain install put on this machine
#
# Environment: DT_DECONVOLVE_HOME (default ~/.local/share/dt-deconvolve) holds the virtual
# environment; DT_DECONVOLVE_BIN (default ~/.local/bin) receives the command.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home_dir=${DT_DECONVOLVE_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/dt-deconvolve}
bin_dir=${DT_DECONVOLVE_BIN:-$HOME/.local/bin}
python=${PYTHON:-python3}

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

uninstall() {
    rm -f "$bin_dir/dt-deconvolve"
    rm -rf "$home_dir"
    say "removed $bin_dir/dt-deconvolve and $home_dir"
}

case "${1:-}" in
    "") install_user ;;
    --test) install_test ;;
    --uninstall) uninstall ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown option '$1' (try --help)" ;;
esac
