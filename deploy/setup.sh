#!/usr/bin/env bash
# Installs what building, testing and running the marketplace needs on a fresh
# Debian/Ubuntu machine, skipping what is already there: a C toolchain, Rust (via
# rustup) and the PostgreSQL server binaries. Sourced by deploy/test.sh and
# deploy/up.sh so that a freshly installed cargo is on PATH for them.

marketplace_setup() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    local packages=()
    command -v cc >/dev/null 2>&1 || packages+=(build-essential)
    command -v curl >/dev/null 2>&1 || packages+=(curl ca-certificates)
    # The CLI tests drive a real terminal for what a pseudo-terminal alone
    # cannot show (Tab's list of choices).
    command -v tmux >/dev/null 2>&1 || packages+=(tmux)
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
        packages+=(postgresql)
    fi
    if [ "${#packages[@]}" -gt 0 ]; then
        echo "setup: installing ${packages[*]}" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
            echo "setup: installing Rust with rustup" >&2
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt >&2
        fi
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# promtool, for the tests of the metrics and alert rules: taken out of Debian's
# prometheus package into a cache (installing the package would also start a
# Prometheus server on this machine). Exports PROMTOOL.
marketplace_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        PROMTOOL=$(command -v promtool)
        export PROMTOOL
        return
    fi
    local tools="${XDG_CACHE_HOME:-$HOME/.cache}/marketplace/tools"
    PROMTOOL="$tools/promtool"
    export PROMTOOL
    [ -x "$PROMTOOL" ] && return
    local sudo="" work
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    work=$(mktemp -d)
    echo "setup: fetching promtool from Debian's prometheus package" >&2
    if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
        $sudo apt-get update -qq
        (cd "$work" && apt-get download prometheus >/dev/null)
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    mkdir -p "$tools"
    # Moved into place whole: a second copy of the tests may be doing the same.
    cp "$work/root/usr/bin/promtool" "$tools/promtool.$$"
    mv -f "$tools/promtool.$$" "$PROMTOOL"
    rm -rf "$work"
}

marketplace_setup

# tshark, for the container test that captures the TLS port
# (deploy/tests/scale.rs); only where the container tests run.
marketplace_tshark() {
    command -v tshark >/dev/null 2>&1 && return
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing tshark" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends tshark >&2
}
