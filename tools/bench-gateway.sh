#!/usr/bin/env bash
# Gateway command for ../shared/bench/peers.sh: writes a one-route config for the harness's
# LISTEN_ADDR / ORIGIN_ADDR into PEER_DIR and execs ringway with one worker.
set -euo pipefail
: "${LISTEN_ADDR:?}" "${ORIGIN_ADDR:?}" "${PEER_DIR:?}"
bin=${RINGWAY_BIN:-$(dirname "$0")/../target/release/ringway}
cat > "$PEER_DIR/bench.toml" <<CONF
[server]
listen = ["$LISTEN_ADDR"]
workers = 1

[limits]
max_body_bytes = 0

[[upstreams]]
name = "origin"
servers = ["$ORIGIN_ADDR"]
keepalive = 256             # same idle-pool size as the nginx peer

[[routes]]
path_prefix = "/"
upstream = "origin"
CONF
RINGWAY_LOG=${RINGWAY_LOG:-warn} exec "$bin" run -c "$PEER_DIR/bench.toml"
