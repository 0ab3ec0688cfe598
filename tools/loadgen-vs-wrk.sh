#!/usr/bin/env bash
# loadgen-vs-wrk.sh - is ringway-loadgen at least as fast as wrk on this machine?
#
# Runs the bundled origin directly (no proxy; one thread, pinned to CPU_ORIGIN) and drives it
# alternately with `wrk -t1 -cCONNS` and `ringway-loadgen -t 1 -c CONNS` (closed loop), both
# pinned to CPU_GEN, RUNS times each. Prints per run req/s and the CPU time per request of the
# generator and of the origin (from /proc), then the medians and the ratios loadgen/wrk.
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
# shellcheck source=tools/lib.sh
. "$root/tools/lib.sh"   # ticks
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
: >"$tmp/origin.out"
taskset -c "$CPU_ORIGIN" "$bin_dir/ringway-origin" --listen "127.0.0.1:$ORIGIN_PORT" \
  --threads 1 --quiet >"$tmp/origin.out" 2>&1 &
origin_pid=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on //p' "$tmp/origin.out" | head -1 || true)
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
hz=$(getconf CLK_TCK)
# One run: prints "req/s gen_cpu_us_per_req origin_cpu_us_per_req". The generator's CPU is
# this subshell's reaped-children time (cutime+cstime), the origin's its utime+stime.
measure() {          # wrk|loadgen
  local me=$BASHPID g0 o0 g1 o1 rate
  g0=$(ticks "$me" 16 17); o0=$(ticks "$origin_pid" 14 15)
  # Parse the output only after reading the CPU counters: the parser's CPU is not counted.
  if [[ $1 == wrk ]]; then
    timeout "$bound" taskset -c "$CPU_GEN" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" >"$tmp/gen.out"
  else
    timeout "$bound" taskset -c "$CPU_GEN" "$bin_dir/ringway-loadgen" "$url" -c "$CONNS" -t 1 \
      -d "${DURATION}s" --json --quiet >"$tmp/gen.out"
  fi
  g1=$(ticks "$me" 16 17); o1=$(ticks "$origin_pid" 14 15)
  if [[ $1 == wrk ]]; then
    rate=$(awk '/^Requests\/sec:/{print $2}' "$tmp/gen.out")
  else
    rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); e=sum(r["errors"].values()); print("%.2f" % r["rate"] if e == 0 else "errors:%d" % e)' "$tmp/gen.out")
  fi
  awk -v r="$rate" -v g=$((g1 - g0)) -v o=$((o1 - o0)) -v d="$DURATION" -v hz="$hz" \
    'BEGIN{if (r+0 <= 0) {print r, "-", "-"; exit} n=r*d; printf "%s %.2f %.2f\n", r, g*1e6/hz/n, o*1e6/hz/n}'
}

declare -A rps gen org
printf '%-4s %-8s %12s %16s %19s\n' run tool 'req/s' 'gen CPU-us/req' 'origin CPU-us/req'
for i in $(seq "$RUNS"); do
  for tool in wrk loadgen; do
    read -r rps[$tool.$i] gen[$tool.$i] org[$tool.$i] < <(measure "$tool")
    printf '%-4s %-8s %12s %16s %19s\n' "$i" "$tool" "${rps[$tool.$i]}" "${gen[$tool.$i]}" "${org[$tool.$i]}"
  done
done

col() { local t=$1 i out=(); for i in $(seq "$RUNS"); do out+=("${rps[$t.$i]} ${gen[$t.$i]}"); done; IFS=,; echo "${out[*]}"; }
python3 - "$(col wrk)" "$(col loadgen)" <<'PY'
import statistics, sys
def med(arg, k):
    vals = [float(run.split()[k]) for run in arg.split(",") if run.split()[k] not in ("-",) and not run.startswith("errors")]
    return statistics.median(vals) if vals else float("nan")
w, l = sys.argv[1], sys.argv[2]
print(f"median   wrk {med(w, 0):.0f} req/s ({med(w, 1):.2f} CPU-us/req)   "
      f"loadgen {med(l, 0):.0f} req/s ({med(l, 1):.2f} CPU-us/req)   "
      f"loadgen/wrk: rate {med(l, 0) / med(w, 0):.3f}, CPU per request {med(l, 1) / med(w, 1):.3f}")
PY
