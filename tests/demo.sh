#!/usr/bin/env bash
# The Conflux demo (run as root): installs what it needs, builds, starts nats-server and
# Guardian, makes four nodes A, B, C and R in network namespaces (A and C have no direct
# path; R relays), pings and runs iperf3 A → B (direct) and A → C (through R), prints a
# summary, and removes everything it made: on success, on failure and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
    echo "demo: run as root (it creates network namespaces and TUN devices)" >&2
    exit 1
fi

bash tests/setup.sh

echo "== building (cargo build --workspace --bins)"
cargo build --workspace --bins --quiet

export CONFLUX_LAB_TAG=demo
cleanup() {
    # What the demo leaves only if it was interrupted: its namespaces, processes, bridge.
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cfxdemo' || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del cfxbdemo 2>/dev/null || true
    pkill -f "conflux-e2e-.*/nats/nats-server.conf" 2>/dev/null || true
    pkill -f "guardian serve .*conflux-e2e-" 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up"; exit 130' INT TERM
cleanup

target/debug/conflux-demo
