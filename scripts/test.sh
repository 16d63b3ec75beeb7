#!/usr/bin/env bash
# The whole Portcullis test suite. Installs what the build and the tests need when it is
# missing (gcc, g++, cmake and the X11 headers for the launcher's window, Node.js and the
# npm package oidc-provider, PostgreSQL's server binaries, OpenSSH server and client, rsyslog,
# Chromium and its WebDriver, Xvfb, xdotool and ImageMagick for the window's tests,
# HAProxy; iperf3, socat and perf for the tunnel benchmark), then runs every test of the
# workspace and a short smoke run of each fuzz target.
#
#   bash scripts/test.sh            # everything
#   FUZZ_SECONDS=0 bash scripts/test.sh   # skip the fuzz smoke run (local iterations only)
#   bash scripts/test.sh --install-only   # only install what is missing (.ci/run, first)
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory outside the clone, so repeated runs (and CI) do not rebuild the world.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis/target}"

install_package() {
    # install_package DEBIAN-PACKAGE, as root or through sudo.
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"
    fi
}

need() {
    # need COMMAND DEBIAN-PACKAGE: installs the package when the command is missing.
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "==> $1 is missing: installing Debian package $2"
    install_package "$2"
    command -v "$1" >/dev/null 2>&1 || {
        echo "error: $1 is still missing; install the Debian package $2 and run again" >&2
        exit 1
    }
}

need_file() {
    # need_file PATH DEBIAN-PACKAGE: installs the package when the file is missing.
    [ -e "$1" ] && return 0
    echo "==> $1 is missing: installing Debian package $2"
    install_package "$2"
    [ -e "$1" ] || {
        echo "error: $1 is still missing; install the Debian package $2 and run again" >&2
        exit 1
    }
}

need_window_build() {
    # The launcher's window is FLTK 1.4, built from source by the fltk crate: cmake, a C++
    # compiler and, on Linux, the X11, Xft and fontconfig headers.
    need cmake cmake
    need_file /usr/include/X11/Xlib.h libx11-dev
    need_file /usr/include/X11/extensions/Xext.h libxext-dev
    need_file /usr/include/X11/Xft/Xft.h libxft-dev
    need_file /usr/include/X11/extensions/Xinerama.h libxinerama-dev
    need_file /usr/include/X11/Xcursor/Xcursor.h libxcursor-dev
    need_file /usr/include/X11/extensions/Xrender.h libxrender-dev
    need_file /usr/include/X11/extensions/Xfixes.h libxfixes-dev
    need_file /usr/include/fontconfig/fontconfig.h libfontconfig-dev
}

need_postgres() {
    # The broker's storage tests start their own PostgreSQL server (initdb in a temporary
    # directory) from Debian's binaries, which are not on PATH. The package's own cluster
    # service is not needed and not started here.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
    echo "==> PostgreSQL server binaries are missing: installing Debian package postgresql"
    install_package postgresql
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
        echo "error: initdb is still missing; install the Debian package postgresql and run again" >&2
        exit 1
    }
}

need_sshd() {
    # The tunnel tests run a real OpenSSH server on 127.0.0.1 (started by the test itself,
    # with keys it generates; the package's own service is not needed).
    [ -x /usr/sbin/sshd ] && return 0
    echo "==> sshd is missing: installing Debian package openssh-server"
    install_package openssh-server
    [ -x /usr/sbin/sshd ] || {
        echo "error: /usr/sbin/sshd is still missing; install the Debian package openssh-server and run again" >&2
        exit 1
    }
}

need_oidc_provider() {
    # The OpenID Connect tests run a real provider, the npm package oidc-provider, with
    # Node; it is installed outside the repository (the version must match PACKAGE in
    # crates/cli/tests/it/support/oidc_provider.rs).
    local dir="${PORTCULLIS_OIDC_PROVIDER_DIR:-$HOME/.cache/portcullis/oidc-provider}"
    grep -qs '"version": "8.8.1"' "$dir/node_modules/oidc-provider/package.json" && return 0
    echo "==> the npm package oidc-provider is missing: installing it under $dir"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund oidc-provider@8.8.1
}

need cc gcc
need c++ g++
need_window_build
# The window's tests: a headless X server, a user's clicks, screenshots.
need Xvfb xvfb
need xdotool xdotool
need import imagemagick
need chromium chromium
need chromedriver chromium-driver
need node nodejs
need npm npm
need_oidc_provider
need ssh openssh-client
need ssh-keygen openssh-client
need_sshd
need_postgres
# The audit export's test runs its own rsyslogd (loopback UDP and a socket in a temporary
# directory; the package's system service is not needed).
need_file /usr/sbin/rsyslogd rsyslog
# Two tunnel servers behind a real HAProxy (crates/cli/tests/it/balancer.rs); the test
# starts its own instance, the package's service is not needed.
need haproxy haproxy
# The tunnel benchmark's process phases (cargo bench -p portcullis-tunnel --bench tunnel):
# iperf3 and socat are the reference an operator compares with, perf profiles the relays.
need iperf3 iperf3
need socat socat
need perf linux-perf

if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi

echo "==> cargo test (workspace, all targets)"
cargo test --workspace --all-targets --locked
echo "==> cargo test (doc tests)"
cargo test --workspace --doc --locked

if [ "${FUZZ_SECONDS:-10}" != 0 ]; then
    echo "==> fuzz smoke run (${FUZZ_SECONDS:-10} s per target)"
    bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi
