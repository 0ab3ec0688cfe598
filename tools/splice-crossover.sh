#!/usr/bin/env bash
# Where does splicing a response body start to pay? Runs ringway (one worker, pinned to
# CPU_PROXY) in front of the bundled origin twice, once copying every body
# (splice_threshold = 0) and once splicing every body (splice_threshold = 1), and drives
# both with wrk at each body size, alternating. Prints ringway's CPU-us per request and
# req/s for both, and their ratio. Loopback only; stops only what it started.
# The origin is nginx serving files with sendfile (as in ../shared/bench/peers.sh; Debian's
# nginx-light) or, with ORIGIN=bundled, ringway-origin's /bytes/N (64 KiB writes): how the
# upstream writes decides how much each splice moves, so the crossover depends on it.
#   tools/splice-crossover.sh
#   SIZES="65536 262144 1048576" CONNS=8 DURATION=5 RUNS=3 ORIGIN=bundled tools/splice-crossover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
source tools/lib.sh
SIZES=${SIZES:-"65536 131072 262144 524288 1048576"}
CONNS=${CONNS:-8}
DURATION=${DURATION:-5}
RUNS=${RUNS:-2}
CPU_PROXY=${CPU_PROXY:-0}
CPU_LOAD=${CPU_LOAD:-1}
ORIGIN=${ORIGIN:-nginx}
need wrk taskset python3
release_bins

scratch crossover

# Prints the first line matching "listening on ADDR" of a log file, waiting up to 10 s.
addr_from() {
  local n=100 a
  while (( n-- > 0 )); do
    a=$(grep -o 'listening on [^ ]*' "$1" 2>/dev/null | head -n1 | awk '{print $3}') || true
    [[ -n "$a" ]] && { echo "$a"; return 0; }
    sleep 0.1
  done
  echo "no listening line in $1" >&2
  return 1
}

if [[ $ORIGIN == nginx ]]; then
  command -v nginx >/dev/null || { echo "missing nginx (apt-get install -y nginx-light)" >&2; exit 2; }
  chmod 755 "$dir"
  mkdir -p "$dir/www" "$dir/tmp"
  for size in $SIZES; do head -c "$size" /dev/urandom >"$dir/www/$size.bin"; done
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    server { listen 127.0.0.1:$port; location / { root $dir/www; } }
}
CONF
  taskset -c "$CPU_LOAD" nginx -p "$dir" -c "$dir/nginx.conf" 2>"$dir/origin.log" &
  pids+=($!)
  origin=127.0.0.1:$port
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
  done
  target() { echo "/$1.bin"; }
else
  taskset -c "$CPU_LOAD" target/release/ringway-origin --listen 127.0.0.1:0 --quiet >"$dir/origin.log" 2>&1 &
  pids+=($!)
  origin=$(addr_from "$dir/origin.log")
  target() { echo "/bytes/$1"; }
fi

declare -A GW=()
for mode in copy splice; do
  threshold=0; [[ $mode == splice ]] && threshold=1
  one_route_config "$dir/$mode.toml" 127.0.0.1:0 "$origin" 1 "splice_threshold = $threshold"
  RINGWAY_LOG=info taskset -c "$CPU_PROXY" target/release/ringway run -c "$dir/$mode.toml" 2>"$dir/$mode.log" &
  pids+=($!)
  GW[$mode]="$!:$(addr_from "$dir/$mode.log")"
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run MODE SIZE -> "cpu_us_per_req rps"
run() {
  local pid=${GW[$1]%%:*} addr=${GW[$1]#*:} t0 t1 out req rps url
  url="http://$addr$(target "$2")"
  taskset -c "$CPU_LOAD" wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null
  t0=$(ticks "$pid")
  out=$(taskset -c "$CPU_LOAD" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
  t1=$(ticks "$pid")
  req=$(awk '/requests in/{print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  python3 -c "print(f'{($t1 - $t0) * 1e6 / $hz / max($req, 1):.1f} {float($rps):.0f}')"
}

echo "origin: $ORIGIN; $CONNS connections; median of $RUNS x ${DURATION}s"
printf '| body | copy CPU-us/req | splice CPU-us/req | splice/copy | copy req/s | splice req/s |\n'
printf '|---:|---:|---:|---:|---:|---:|\n'
for size in $SIZES; do
  c=(); s=()
  for ((i = 0; i < RUNS; i++)); do
    c+=("$(run copy "$size")"); s+=("$(run splice "$size")")
  done
  python3 - "$size" "${c[@]}" "${s[@]}" <<'PY'
import statistics, sys
size, rest = int(sys.argv[1]), sys.argv[2:]
n = len(rest) // 2
copy = [tuple(map(float, r.split())) for r in rest[:n]]
splice = [tuple(map(float, r.split())) for r in rest[n:]]
cc = statistics.median(c for c, _ in copy); sc = statistics.median(c for c, _ in splice)
cr = statistics.median(r for _, r in copy); sr = statistics.median(r for _, r in splice)
print(f"| {size // 1024} KiB | {cc:.1f} | {sc:.1f} | {sc / cc:.2f} | {cr:,.0f} | {sr:,.0f} |")
PY
done
