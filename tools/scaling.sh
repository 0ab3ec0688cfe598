#!/usr/bin/env bash
# Scaling: ringway with 1 worker against 2 workers on this machine, with the bundled origin
# and the load generator (wrk) on the same cores, nothing pinned but ringway's own workers.
# Alternates the two configurations RUNS times and prints req/s, p99 and total box CPU per
# request for each. Loopback only; stops only what it started.
#   tools/scaling.sh
#   RUNS=3 DURATION=8 CONNS=64 URL_PATH=/small ORIGIN_THREADS=1 tools/scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
source tools/lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
URL_PATH=${URL_PATH:-/small}
ORIGIN_THREADS=${ORIGIN_THREADS:-1}
WRK_THREADS=${WRK_THREADS:-1}
need wrk python3
release_bins

scratch scaling

oport=$(free_port)
target/release/ringway-origin --listen "127.0.0.1:$oport" --threads "$ORIGIN_THREADS" --quiet >"$dir/origin.log" 2>&1 &
pids+=($!)
wait_port "$oport"

declare -A PORT=()
for w in 1 2; do
  PORT[$w]=$(free_port)
  one_route_config "$dir/w$w.toml" "127.0.0.1:${PORT[$w]}" "127.0.0.1:$oport" "$w"
  RINGWAY_LOG=warn target/release/ringway run -c "$dir/w$w.toml" 2>"$dir/w$w.log" &
  pids+=($!)
  wait_port "${PORT[$w]}"
done

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }

echo "| workers | run | req/s | p99 | box CPU-us/req |"
echo "|---:|---:|---:|---:|---:|"
for ((i = 1; i <= RUNS; i++)); do
  for w in 1 2; do
    url="http://127.0.0.1:${PORT[$w]}$URL_PATH"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d1s "$url" >/dev/null
    read -r b0 _ < <(busy)
    out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url")
    read -r b1 _ < <(busy)
    python3 - "$w" "$i" "$b0" "$b1" "$(getconf CLK_TCK)" <<PY
import re, sys
w, i, b0, b1, hz = sys.argv[1:]
out = """$out"""
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = re.search(r"99%\s+(\S+)", out).group(1)
print(f"| {w} | {i} | {rps:,.0f} | {p99} | {(int(b1) - int(b0)) * 1e6 / int(hz) / reqs:.1f} |")
PY
  done
done
