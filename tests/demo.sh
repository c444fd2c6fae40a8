#!/usr/bin/env bash
# The Conflux demo. For now it runs the shared core's benchmarks in quick mode and prints a
# summary: batched AES-256-GCM, rings across two processes, post-quantum handshakes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== building and running the shared-core benchmarks (quick mode)"
cargo bench -p conflux-benches -- --quick --noplot 2>&1 | tee "$log" | grep -E '^[a-z_/0-9 -]+$|time:|thrpt:' || true

echo
echo "== summary"
awk '
    /^[^ ].*/ && !/time:|thrpt:|Benchmarking|Warning|Found|Compiling|Finished|Running|Gnuplot/ { name = $0 }
    /thrpt:/ { sub(/^ +thrpt: +/, ""); printf "%-60s %s\n", name, $0 }
' "$log"
