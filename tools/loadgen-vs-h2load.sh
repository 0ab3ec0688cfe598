#!/usr/bin/env bash
# loadgen-vs-h2load.sh - is `ringway-loadgen --h2` at least as fast as h2load here?
#
# The HTTP/2 counterpart of tools/loadgen-vs-wrk.sh. nginx (../shared/bench's origin config,
# its listener switched to h2c) serves /small on CPU_SERVER, one worker; `h2load -t1` and
# `ringway-loadgen --h2 -t 1` (closed loop, CONNS connections of STREAMS streams each)
# take turns against it on CPU_GEN, RUNS times each. Prints per run req/s and the CPU time
# per request of the generator and of nginx (from /proc), then the medians and the ratios
# loadgen/h2load. 127.0.0.1 only; every run is bounded by `timeout`; only the processes
# this script started are stopped (by PID, on exit).
#
#   tools/loadgen-vs-h2load.sh
#   RUNS=3 DURATION=5 CONNS=64 STREAMS=10 CPU_SERVER=0 CPU_GEN=1 tools/loadgen-vs-h2load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
CPU_SERVER=${CPU_SERVER:-0}
CPU_GEN=${CPU_GEN:-1}
conf=${CONF_DIR:-../shared/bench/conf}
need nginx h2load taskset
[[ -x target/release/ringway-loadgen ]] || cargo build --release --bin ringway-loadgen
scratch loadgen-h2load
port=$(free_port)
mkdir -p "$dir/www" "$dir/tmp"; chmod -R a+rwX "$dir"
sed -e "s|@ORIGIN_PORT@|$port|g" -e "s|@ORIGIN_STATUS_PORT@|$(free_port)|g" \
    -e "s|listen 127.0.0.1:$port backlog=4096;|listen 127.0.0.1:$port http2 backlog=4096;|" \
    "$conf/origin-nginx.conf" >"$dir/nginx.conf"
grep -q "listen 127.0.0.1:$port http2" "$dir/nginx.conf" || { echo "could not switch $conf/origin-nginx.conf to h2c" >&2; exit 1; }
taskset -c "$CPU_SERVER" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/nginx.out" 2>&1 &
pids+=($!); server_pid=$!
wait_port "$port"
url="http://127.0.0.1:$port/small"
echo "nginx (h2c) pid $server_pid on cpu $CPU_SERVER; generators on cpu $CPU_GEN;" \
  "$RUNS x ${DURATION}s each, c$CONNS m$STREAMS t1, $url" >&2

bound=$((DURATION + 15))
hz=$(getconf CLK_TCK)
server_ticks() {     # nginx master and its worker
  local total=0 q
  for q in $server_pid $(pgrep -P "$server_pid" || true); do total=$((total + $(ticks "$q" 14 15))); done
  echo $total
}
# One run: "req/s gen_cpu_us_per_req server_cpu_us_per_req". The generator's CPU is this
# subshell's reaped-children time; the output is parsed after the counters are read.
measure() {          # h2load|loadgen
  local me=$BASHPID g0 s0 g1 s1 rate n
  g0=$(ticks "$me" 16 17); s0=$(server_ticks)
  if [[ $1 == h2load ]]; then
    timeout "$bound" taskset -c "$CPU_GEN" h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" "$url" >"$dir/gen.out"
  else
    timeout "$bound" taskset -c "$CPU_GEN" target/release/ringway-loadgen --h2 "$url" -c "$CONNS" \
      --streams "$STREAMS" -t 1 -d "${DURATION}s" --json --quiet >"$dir/gen.out"
  fi
  g1=$(ticks "$me" 16 17); s1=$(server_ticks)
  if [[ $1 == h2load ]]; then
    # "finished in 5.00s, 123456.78 req/s, ..." and "requests: N total, N started, N done, N succeeded, 0 failed, 0 errored"
    rate=$(awk '/^finished in/{gsub(",", "", $4); print $4}' "$dir/gen.out")
    grep -q ' 0 failed, 0 errored' "$dir/gen.out" || rate="errors"
  else
    rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); e=sum(r["errors"].values()); print("%.2f" % r["rate"] if e == 0 else "errors:%d" % e)' "$dir/gen.out")
  fi
  n=$(awk -v r="$rate" -v d="$DURATION" 'BEGIN{print r*d}')
  awk -v r="$rate" -v n="$n" -v g=$((g1 - g0)) -v s=$((s1 - s0)) -v hz="$hz" \
    'BEGIN{if (r+0 <= 0) {print r, "-", "-"; exit} printf "%s %.2f %.2f\n", r, g*1e6/hz/n, s*1e6/hz/n}'
}

declare -A rps gen srv
printf '%-4s %-8s %12s %16s %18s\n' run tool 'req/s' 'gen CPU-us/req' 'nginx CPU-us/req'
for i in $(seq "$RUNS"); do
  for tool in h2load loadgen; do
    read -r rps[$tool.$i] gen[$tool.$i] srv[$tool.$i] < <(measure "$tool")
    printf '%-4s %-8s %12s %16s %18s\n' "$i" "$tool" "${rps[$tool.$i]}" "${gen[$tool.$i]}" "${srv[$tool.$i]}"
  done
done
col() { local t=$1 i out=(); for i in $(seq "$RUNS"); do out+=("${rps[$t.$i]} ${gen[$t.$i]}"); done; IFS=,; echo "${out[*]}"; }
python3 - "$(col h2load)" "$(col loadgen)" <<'PY'
import statistics, sys
def med(arg, k):
    vals = [float(run.split()[k]) for run in arg.split(",") if run.split()[k] != "-" and not run.startswith("errors")]
    return statistics.median(vals) if vals else float("nan")
h, l = sys.argv[1], sys.argv[2]
print(f"median   h2load {med(h, 0):.0f} req/s ({med(h, 1):.2f} CPU-us/req)   "
      f"loadgen {med(l, 0):.0f} req/s ({med(l, 1):.2f} CPU-us/req)   "
      f"loadgen/h2load: rate {med(l, 0) / med(h, 0):.3f}, CPU per request {med(l, 1) / med(h, 1):.3f}")
PY
