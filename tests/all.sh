#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, property, corpus, cross-process and
# end-to-end tests. Installs what it needs first (tests/setup.sh). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (binaries the end-to-end tests start)"
cargo build --workspace --bins
echo "== cargo test"
cargo test --workspace --no-fail-fast
