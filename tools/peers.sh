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
# The harness exports LISTEN_ADDR, ORIGIN_ADDR and PEER_DIR to the gateway command.
GATEWAY_CMD='printf "[server]\nlisten = [\"%s\"]\nworkers = 1\n[limits]\nmax_body_bytes = 0\n[[upstreams]]\nname = \"origin\"\nservers = [\"%s\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"origin\"\n" "$LISTEN_ADDR" "$ORIGIN_ADDR" > "$PEER_DIR/bench.toml" && RINGWAY_LOG=warn exec "$RINGWAY_BIN" run -c "$PEER_DIR/bench.toml"' \
  exec bash "$harness"
