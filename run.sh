#!/usr/bin/env bash
# Builds kiln and opens its window with the default recipe (recipes/debian-12.json).
# Extra arguments go to kiln, e.g. ./run.sh validate -var bucket=my-images recipes/debian-12.json
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null; then
  echo "run.sh: cargo not found; install Rust 1.95 with rustup (https://rustup.rs) first" >&2
  exit 1
fi
cargo build --release --quiet
exec target/release/kiln "$@"
