#!/usr/bin/env bash
# loadgen-vs-wrk.sh - is ringway-loadgen at least as fast as wrk on this machine?
#
# Runs the bundled origin directly (no proxy; one thread, pinned to CPU_ORIGIN) and drives it
# alternately with `wrk -t1 -cCONNS` and `ringway-loadgen -t 1 -c CONNS` (closed loop), both
# pinned to CPU_GEN, RUNS times each. Prints req/s per run, the medians and loadgen/wrk.
# Only 127.0.0.1 is used; every run is bounded by `timeout`; only processes this script
# started are stopped (by PID, on exit).
#
# Usage: tools/loadgen-vs-wrk.sh
#   RUNS=3 DURATION=5 CONNS=64 URL_PATH=/small CPU_ORIGIN=0 CPU_GEN=1 ORIGIN_PORT=0 \
#     tools/loadgen-vs-wrk.sh
# ORIGIN_PORT=0 (default) picks a free port. Binaries: $CARGO_TARGET_DIR (or ./target)/release,
# built with `cargo build --release --bins` when missing.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
URL_PATH=${URL_PATH:-/small}
CPU_ORIGIN=${CPU_ORIGIN:-0}
CPU_GEN=${CPU_GEN:-1}
ORIGIN_PORT=${ORIGIN_PORT:-0}

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${CARGO_TARGET_DIR:-$root/target}/release
for b in ringway-origin ringway-loadgen; do
  if [[ ! -x "$bin_dir/$b" ]]; then
    (cd "$root" && cargo build --release --bins) >&2
    break
  fi
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

tmp=$(mktemp -d)
origin_pid=
cleanup() {
  local rc=$? n
  trap - EXIT INT TERM
  if [[ -n "$origin_pid" ]] && kill -0 "$origin_pid" 2>/dev/null; then
    kill -TERM "$origin_pid" 2>/dev/null || true
    for n in $(seq 50); do kill -0 "$origin_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$origin_pid" 2>/dev/null || true
    wait "$origin_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The origin prints `listening on ADDR` once bound: poll for that line, then for the port.
taskset -c "$CPU_ORIGIN" "$bin_dir/ringway-origin" --listen "127.0.0.1:$ORIGIN_PORT" \
  --threads 1 --quiet >"$tmp/origin.out" 2>&1 &
origin_pid=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on //p' "$tmp/origin.out" | head -1)
  [[ -n "$addr" ]] && ss -Hltn "sport = :${addr##*:}" | grep -q . && break
  kill -0 "$origin_pid" 2>/dev/null || { cat "$tmp/origin.out" >&2; exit 1; }
  addr=
  sleep 0.1
done
[[ -n "$addr" ]] || { echo "origin did not start" >&2; cat "$tmp/origin.out" >&2; exit 1; }
url="http://$addr$URL_PATH"
echo "origin pid $origin_pid on $addr (cpu $CPU_ORIGIN); generators on cpu $CPU_GEN;" \
  "$RUNS x ${DURATION}s each, c$CONNS t1, $url" >&2

bound=$((DURATION + 15))
wrk_rps() {
  timeout "$bound" taskset -c "$CPU_GEN" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" \
    | awk '/^Requests\/sec:/{print $2}'
}
loadgen_rps() {
  timeout "$bound" taskset -c "$CPU_GEN" "$bin_dir/ringway-loadgen" "$url" -c "$CONNS" -t 1 \
    -d "${DURATION}s" --json --quiet \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); e=sum(r["errors"].values()); print("%.2f" % r["rate"] if e == 0 else "errors:%d" % e)'
}

w=() l=()
for i in $(seq "$RUNS"); do
  w+=("$(wrk_rps)")
  printf 'run %d  wrk      %12s req/s\n' "$i" "${w[-1]}"
  l+=("$(loadgen_rps)")
  printf 'run %d  loadgen  %12s req/s\n' "$i" "${l[-1]}"
done

python3 - "${w[*]}" "${l[*]}" <<'PY'
import statistics, sys
w = [float(x) for x in sys.argv[1].split()]
l = [float(x) for x in sys.argv[2].split()]
mw, ml = statistics.median(w), statistics.median(l)
print(f"median   wrk {mw:.0f} req/s   loadgen {ml:.0f} req/s   loadgen/wrk = {ml / mw:.3f}")
PY
