#!/usr/bin/env bash
# The Conflux demo. For now it runs the shared core's benchmarks in quick mode and prints a
# summary: batched AES-256-GCM, rings across two processes, post-quantum handshakes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== building and running the shared-core benchmarks (quick mode)"
cargo bench -p conflux-benches --bench aead --bench ring --bench handshake -- \
    --quick --noplot --discard-baseline 2>&1 | tee "$log" | grep -vE '^(Benchmarking|Warning)' || true

echo
echo "== summary: throughput per benchmark (median)"
awk '
    /^[a-z]/ && !/^(Benchmarking|Warning|Found|Running|Gnuplot)/ { name = $1; for (i = 2; i <= NF && $i != "time:"; i++) name = name " " $i }
    /thrpt:/ && name != "" { gsub(/[][]/, ""); printf "  %-58s %s %s\n", name, $4, $5; name = "" }
' "$log"
