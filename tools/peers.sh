#!/usr/bin/env bash
# Runs ../shared/bench/peers.sh with ringway as the gateway under test (one worker, as the
# harness expects), next to nginx and haproxy. Extra env vars (SCENARIOS, REPEATS, LAYOUT,
# DURATION, PEERS) pass through; see ../shared/BENCH.md.
#   tools/peers.sh                                            # full run, layout A
#   SCENARIOS="small_c64:/small:64 1m_c8:/1m.bin:8" REPEATS=1 tools/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
harness=${HARNESS:-$root/../shared/bench/peers.sh}
[[ -x "$harness" || -f "$harness" ]] || { echo "no harness at $harness" >&2; exit 2; }
cargo build --release --bin ringway
export RINGWAY_BIN="$root/target/release/ringway"
GATEWAY_CMD="$root/tools/bench-gateway.sh" exec bash "$harness"
