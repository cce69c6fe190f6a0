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

marketplace_setup
