#!/usr/bin/env bash
# Gateway command for ../shared/bench/peers.sh: writes a one-route config for the harness's
# LISTEN_ADDR / ORIGIN_ADDR into PEER_DIR and execs ringway with one worker.
# UPSTREAM_PROTOCOL=h2c speaks HTTP/2 to the origin (tools/h2-peers.sh UPSTREAM=h2c).
# RINGWAY_BENCH_POLICY=1 adds JWT auth (HS256, secret $RINGWAY_BENCH_JWT_SECRET) and a
# rate limit per consumer to the route (see tools/policy-cost.sh).
# RINGWAY_BENCH_LIMIT=local|global adds an ip-keyed rate limit (RINGWAY_BENCH_RATE, default
# 100000/s, never reached) to the route, global ones through the Redis server at
# RINGWAY_BENCH_REDIS (see tools/global-limit-cost.sh).
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
${UPSTREAM_PROTOCOL:+protocol = \"$UPSTREAM_PROTOCOL\"}

[[routes]]
path_prefix = "/"
upstream = "origin"
CONF
if [[ "${RINGWAY_BENCH_POLICY:-0}" == 1 ]]; then
  cat >> "$PEER_DIR/bench.toml" <<CONF
access = {}
rules = { rate_limits = [{ key = "consumer", rate = "1000000/s", burst = 1000000 }] }

[auth.jwt]
keys = [{ alg = "HS256", secret = "${RINGWAY_BENCH_JWT_SECRET:?}" }]
CONF
fi
if [[ -n "${RINGWAY_BENCH_LIMIT:-}" ]]; then
  rate=${RINGWAY_BENCH_RATE:-100000/s}
  # A local limit is written as before global ones existed, so older builds run it too.
  global=""
  [[ "$RINGWAY_BENCH_LIMIT" == global ]] && global=', name = "bench", scope = "global"'
  cat >> "$PEER_DIR/bench.toml" <<CONF
rules = { rate_limits = [{ key = "ip", rate = "$rate", burst = ${rate%/s}$global }] }
CONF
  if [[ -n "$global" ]]; then
    printf '\n[redis]\naddress = "%s"\n' "${RINGWAY_BENCH_REDIS:?}" >> "$PEER_DIR/bench.toml"
  fi
fi
RINGWAY_LOG=${RINGWAY_LOG:-warn} exec "$bin" run -c "$PEER_DIR/bench.toml"
