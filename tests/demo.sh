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
CONFLUX_DEMO_DIR_FILE=$(mktemp)
export CONFLUX_DEMO_DIR_FILE
cleanup() {
    # What the demo leaves only if it was interrupted: its namespaces, processes, bridge,
    # and nats-server and Guardian (found by the directory the demo wrote down).
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cfxdemo' || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del cfxbdemo 2>/dev/null || true
    local dir
    dir=$(cat "$CONFLUX_DEMO_DIR_FILE" 2>/dev/null || true)
    if [[ -n $dir && -d $dir ]]; then
        pkill -f -- "$dir" 2>/dev/null || true
        rm -rf -- "$dir"
    fi
    : >"$CONFLUX_DEMO_DIR_FILE"
}
trap 'cleanup; rm -f "$CONFLUX_DEMO_DIR_FILE"' EXIT
trap 'echo; echo "demo: interrupted, cleaning up"; exit 130' INT TERM
cleanup

target/debug/conflux-demo
