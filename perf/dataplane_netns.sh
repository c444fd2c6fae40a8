#!/usr/bin/env bash
# First end-to-end figures of the data plane: iperf3 TCP over the overlay A→B and A→R→B,
# beside the bare veth path in the same run (same namespaces, same moment), as ratios.
# Run as root from the repository root:
#   bash perf/dataplane_netns.sh [--webrtc] [seconds] [binary]
# --webrtc: the hops are WebRTC tethers (ICE, DTLS with the peers' fingerprints, SCTP), as
# `conflux` makes them; without it, framing-free UDP (`kind = "plain"`), for comparison.
# WORKERS=N: workers per data plane (default 1; WebRTC tethers open on worker 0 only, so
# use N > 1 with plain tethers).
# PROFILE=DIR: record `perf record -a` over each overlay iperf3 run into DIR/<path>.data
# (then `perf report -i DIR/overlay-ab.data --sort comm,dso,sym --no-children`).
set -euo pipefail
webrtc=0
if [[ ${1:-} == --webrtc ]]; then webrtc=1; shift; fi
secs=${1:-10}
bin=${2:-target/release/conflux-dataplane}
tag=cfxp$$
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for n in a r b; do
        ip netns pids $tag$n 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del $tag$n 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

for n in a r b; do ip netns add $tag$n; ip -n $tag$n link set lo up; done
link() { # link A B net
    ip link add v$tag$1$2 netns $tag$1 type veth peer name v$tag$2$1 netns $tag$2
    ip -n $tag$1 addr add 10.$3.0.1/24 dev v$tag$1$2; ip -n $tag$1 link set v$tag$1$2 up
    ip -n $tag$2 addr add 10.$3.0.2/24 dev v$tag$2$1; ip -n $tag$2 link set v$tag$2$1 up
}
link a b 81   # direct
link a r 82   # via the relay
link r b 83
# Bare path through R for the relayed comparison: plain IP forwarding.
ip netns exec ${tag}r sysctl -qw net.ipv4.ip_forward=1
ip -n ${tag}a route add 10.83.0.0/24 via 10.82.0.2
ip -n ${tag}b route add 10.82.0.0/24 via 10.83.0.1

dp() { # node host
    ip netns exec $tag$1 "$bin" run --tun cfx0 --address 100.64.0.$2/24 --workers ${WORKERS:-1} --no-pin \
        --socket "$dir/$1.sock" >"$dir/dp-$1.log" 2>&1 &
    pids+=($!)
}
dp a 1; dp b 2; dp r 3
sleep 1
# A second overlay address on B, reached through R.
ip -n ${tag}b addr add 100.64.1.2/32 dev cfx0
ip -n ${tag}a route add 100.64.1.0/24 dev cfx0
s="socket = \"$dir/%s.sock\"\n"
fp() { "$bin" snapshot --socket "$dir/$1.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dtls_fingerprint"])'; }
tether() { # id peer-ip controlling peer-node
    if ((webrtc)); then
        printf '[[tether]]\nid = %s\npeer = "%s:51820"\nkind = "webrtc"\ncontrolling = %s\nfingerprint = "%s"\n' \
            "$1" "$2" "$3" "$(fp "$4")"
    else
        printf '[[tether]]\nid = %s\npeer = "%s:51820"\n' "$1" "$2"
    fi
}
st() { printf '[[stream]]\nid = "%s"\ndirection = "%s"\nlabel = %s\npeer = "%s"\nsecret = "%s"\n' "$@"; }
K1=$(printf '1%.0s' {1..64}); K2=$(printf '2%.0s' {1..64}); K3=$(printf '3%.0s' {1..64})
{
    printf "$s" a
    tether 1 10.81.0.2 true b; tether 2 10.82.0.2 true r
    st 000000000000000000000000000000a1 egress 7 100.64.0.2 $K1
    st 000000000000000000000000000000b1 ingress 8 100.64.0.2 $K2
    # B answers the relayed flow directly (its route to A is the direct one).
    printf 'allowed = ["100.64.1.2/32"]\n'
    st 000000000000000000000000000000a2 egress 70 100.64.1.2 $K3
    printf '[[route]]\nprefix = "100.64.0.2/32"\nhops = [{ tether = 1, label = 7 }]\n'
    printf '[[route]]\nprefix = "100.64.1.2/32"\nhops = [{ tether = 2, label = 70 }]\n'
} >"$dir/a.toml"
{
    printf "$s" b
    tether 1 10.81.0.1 false a; tether 2 10.83.0.1 false r
    st 000000000000000000000000000000b1 egress 8 100.64.0.1 $K2
    st 000000000000000000000000000000a1 ingress 7 100.64.0.1 $K1
    st 000000000000000000000000000000a2 ingress 71 100.64.0.1 $K3
    printf '[[route]]\nprefix = "100.64.0.1/32"\nhops = [{ tether = 1, label = 8 }]\n'
} >"$dir/b.toml"
{
    printf "$s" r
    tether 1 10.82.0.1 false a; tether 2 10.83.0.2 true b
    printf '[[relay]]\nin_label = 70\ntether = 2\nout_label = 71\n'
} >"$dir/r.toml"
for n in a b r; do "$bin" static --config "$dir/$n.toml" >"$dir/drv-$n.log" 2>&1 & pids+=($!); done
sleep 1
ip netns exec ${tag}a ping -c 2 -W 2 100.64.0.2 >/dev/null || { echo "overlay A→B does not answer" >&2; cat "$dir"/*.log >&2; exit 1; }
ip netns exec ${tag}a ping -c 2 -W 2 -I 100.64.0.1 100.64.1.2 >/dev/null || { echo "overlay A→R→B does not answer" >&2; exit 1; }

run() { # label server-addr [bind]
    ip netns exec ${tag}b iperf3 -s -1 -p 5301 -D >/dev/null 2>&1; sleep 0.3
    local extra=()
    [[ -n ${3:-} ]] && extra=(-B "$3")
    local rec=()
    if [[ -n ${PROFILE:-} && $1 == overlay-* ]]; then
        mkdir -p "$PROFILE"
        perf record -q -a -F 1999 -o "$PROFILE/$1.data" -- sleep "$((secs - 1))" >/dev/null 2>&1 &
        rec=($!)
    fi
    ip netns exec ${tag}a iperf3 -c "$2" -p 5301 -t "$secs" -J "${extra[@]}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
    ((${#rec[@]})) && wait "${rec[0]}"
    return 0
}
bare_ab=$(run bare-ab 10.81.0.2)
ovl_ab=$(run overlay-ab 100.64.0.2)
bare_arb=$(run bare-arb 10.83.0.2 10.82.0.1)
ovl_arb=$(run overlay-arb 100.64.1.2 100.64.0.1)
python3 - "$bare_ab" "$ovl_ab" "$bare_arb" "$ovl_arb" <<'PY'
import sys
b1, o1, b2, o2 = map(float, sys.argv[1:])
g = lambda x: f"{x/1e9:.2f}"
print("| path | bare veth Gbit/s | Conflux overlay Gbit/s | overlay / bare |")
print("|---|---:|---:|---:|")
print(f"| A→B | {g(b1)} | {g(o1)} | {o1/b1:.2f} |")
print(f"| A→R→B | {g(b2)} | {g(o2)} | {o2/b2:.2f} |")
PY
