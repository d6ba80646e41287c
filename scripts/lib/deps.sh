# shellcheck shell=bash
# Installs what scripts/run-tests and scripts/run-local need on a fresh Debian machine:
# Debian packages (ZooKeeper 3.8, openssl, openssh-server (the real sshd of the host-key scan
# test), tmux, qemu-utils, python3-venv, a C toolchain, procps (pgrep: run-tests stops its
# lanes' process trees with it)),
# Rust (rustup, only when cargo is missing) and, for the interop tests, kazoo, the
# OpenStack command-line client and Python Nodepool 11.0.0 (the side-by-side migration
# test) in a venv under target/. Source this file, then call
# deps_debian, deps_rust and (for tests) deps_python ROOT.

deps_log() { printf '\n=== %s\n' "$*" >&2; }

deps_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# deps_debian — installs the missing Debian packages.
deps_debian() {
    local need=() p
    for p in zookeeper openssl openssh-server tmux qemu-utils python3 python3-venv curl ca-certificates procps; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    command -v cc >/dev/null 2>&1 || need+=(build-essential)
    command -v cmake >/dev/null 2>&1 || need+=(cmake)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    if [ ${#need[@]} -gt 0 ]; then
        deps_log "installing Debian packages: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        deps_as_root apt-get update
        deps_as_root apt-get install -y "${need[@]}"
    fi
}

# deps_rust — makes cargo (with clippy and rustfmt) available on PATH.
deps_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH=$HOME/.cargo/bin:$PATH
        else
            deps_log "installing Rust (rustup, stable)"
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
                --component clippy,rustfmt
            export PATH=$HOME/.cargo/bin:$PATH
        fi
    fi
    if command -v rustup >/dev/null 2>&1; then
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    fi
}

# deps_python ROOT — kazoo, python-openstackclient and Python Nodepool 11.0.0 (interop and
# migration tests), in ROOT/target/test-venv unless python3 already has them. Nodepool
# 11.0.0 imports cachetools without declaring it. The venv is reused while it works;
# building it from empty takes about a minute (pip's cache hardly shortens it, see
# docs/migration.md#tested), so CI should cache target/test-venv.
deps_python() {
    local root=$1 venv
    if ! python3 -c 'import kazoo, nodepool, cachetools' >/dev/null 2>&1 \
        || ! command -v openstack >/dev/null 2>&1; then
        venv=$root/target/test-venv
        if [ ! -x "$venv/bin/openstack" ] \
            || ! "$venv/bin/python3" -c 'import kazoo, nodepool, cachetools' 2>/dev/null; then
            deps_log "installing kazoo, python-openstackclient and nodepool 11.0.0 into $venv"
            python3 -m venv "$venv"
            "$venv/bin/pip" install --quiet --upgrade pip
            "$venv/bin/pip" install --quiet kazoo python-openstackclient nodepool==11.0.0 cachetools
        fi
        export PATH=$venv/bin:$PATH
    fi
}
