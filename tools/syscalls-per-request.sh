#!/usr/bin/env bash
# Syscalls per proxied request, ringway against nginx: each runs with one worker pinned to
# CPU_PROXY in front of the bundled origin, and wrk drives it while `strace -c -f` counts
# its syscalls. Prints a table per proxy and concurrency. strace slows the proxy down, so
# read the counts, not the rates. Loopback only; stops only what it started.
#   tools/syscalls-per-request.sh
#   CONNS="64 1" DURATION=4 URL_PATH=/small tools/syscalls-per-request.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
source tools/lib.sh
CONNS=${CONNS:-"64 1"}
DURATION=${DURATION:-4}
URL_PATH=${URL_PATH:-/small}
CPU_PROXY=${CPU_PROXY:-0}
CPU_LOAD=${CPU_LOAD:-1}
need wrk nginx strace taskset python3
release_bins

scratch syscalls
chmod 755 "$dir"

oport=$(free_port)
taskset -c "$CPU_LOAD" target/release/ringway-origin --listen "127.0.0.1:$oport" --quiet >"$dir/origin.log" 2>&1 &
pids+=($!)
wait_port "$oport"

rport=$(free_port)
one_route_config "$dir/ringway.toml" "127.0.0.1:$rport" "127.0.0.1:$oport"
RINGWAY_LOG=warn taskset -c "$CPU_PROXY" target/release/ringway run -c "$dir/ringway.toml" 2>"$dir/ringway.log" &
pids+=($!)
ringway_pid=$!
wait_port "$rport"

nport=$(free_port)
mkdir -p "$dir/nginx/tmp"
cat >"$dir/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 8192; use epoll; }
http {
    access_log off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    client_body_temp_path $dir/nginx/tmp;
    proxy_temp_path $dir/nginx/tmp;
    fastcgi_temp_path $dir/nginx/tmp;
    uwsgi_temp_path $dir/nginx/tmp;
    scgi_temp_path $dir/nginx/tmp;
    upstream origin { server 127.0.0.1:$oport; keepalive 256; }
    server {
        listen 127.0.0.1:$nport;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
        }
    }
}
CONF
taskset -c "$CPU_PROXY" nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" 2>"$dir/nginx.log" &
pids+=($!)
nginx_pid=$!
wait_port "$nport"

# count NAME PID PORT CONNS -> one table row
count() {
  local name=$1 pid=$2 port=$3 c=$4 out
  taskset -c "$CPU_LOAD" wrk -t1 -c"$c" -d1s "http://127.0.0.1:$port$URL_PATH" >/dev/null
  timeout $((DURATION + 3)) strace -c -f -p "$pid" -o "$dir/strace.txt" 2>/dev/null &
  local st=$!
  sleep 0.5
  out=$(taskset -c "$CPU_LOAD" wrk -t1 -c"$c" -d"${DURATION}s" "http://127.0.0.1:$port$URL_PATH")
  kill -INT "$st" 2>/dev/null || true
  wait "$st" 2>/dev/null || true
  python3 - "$name" "$c" "$(awk '/requests in/{print $1}' <<<"$out")" "$dir/strace.txt" <<'PY'
import sys
name, conns, reqs, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
calls = {}
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
total = sum(calls.values())
top = ", ".join(f"{k} {v / reqs:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
print(f"| {name} | c{conns} | {reqs:,} | {total / reqs:.2f} | {top} |")
PY
}

echo "path $URL_PATH; ${DURATION}s per run under strace -c -f"
echo "| proxy | conns | requests | syscalls/request | biggest (per request) |"
echo "|---|---|---:|---:|---|"
for c in $CONNS; do
  count ringway "$ringway_pid" "$rport" "$c"
  count nginx "$nginx_pid" "$nport" "$c"
done
