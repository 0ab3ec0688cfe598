#!/usr/bin/env bash
# What a global rate limit costs per request against the same limit kept locally:
# ../shared/bench/peers.sh (layout A, one pinned worker) with ringway and an ip-keyed limit
# ("local", scope = "local"; "global", scope = "global" through a redis-server started
# here), next to nginx and haproxy in the same run. The limit (RINGWAY_BENCH_RATE, default
# 100000/s) is never reached, so every request is admitted: the steady state, where a
# global limit spends tokens from its worker's lease and asks Redis once per lease.
#   tools/global-limit-cost.sh                                   # small c64 and 1 MiB c8
#   SCENARIOS="small_c64:/small:64" REPEATS=3 tools/global-limit-cost.sh
#   BASE_BIN=/path/to/older/ringway tools/global-limit-cost.sh   # + that build, local limit
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
harness_dir=${HARNESS_DIR:-$root/../shared/bench}
[[ -f "$harness_dir/peers.sh" ]] || { echo "no harness in $harness_dir" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
cargo build --release --bin ringway
scratch=$(mktemp -d /tmp/ringway-global-cost.XXXXXX)
redis_port=${REDIS_PORT:-9190}
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --dir "$scratch" > "$scratch/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
calls() { redis-cli -p "$redis_port" info commandstats | grep -o 'cmdstat_evalsha:calls=[0-9]*' || true; }

export RINGWAY_BIN="$root/target/release/ringway"
export SCENARIOS=${SCENARIOS:-"small_c64:/small:64 1m_c8:/1m.bin:8"} REPEATS=${REPEATS:-2}
peers="local global"
if [[ -n "${BASE_BIN:-}" ]]; then
  peers+=" base"
  export BASE_PORT=${BASE_PORT:-9113}
  export BASE_CMD="env RINGWAY_BIN=$BASE_BIN RINGWAY_BENCH_LIMIT=local $root/tools/bench-gateway.sh"
fi
EXTRA_PEERS="$peers" \
  LOCAL_PORT=${LOCAL_PORT:-9111} GLOBAL_PORT=${GLOBAL_PORT:-9112} \
  LOCAL_CMD="env RINGWAY_BENCH_LIMIT=local $root/tools/bench-gateway.sh" \
  GLOBAL_CMD="env RINGWAY_BENCH_LIMIT=global RINGWAY_BENCH_REDIS=127.0.0.1:$redis_port $root/tools/bench-gateway.sh" \
  bash "$harness_dir/peers.sh"
echo "redis lease calls during the run: $(calls)"
