#!/usr/bin/env bash
# TLS termination: ringway against nginx and haproxy, measured in the same run. Each proxy runs
# ONE worker pinned alone to CPU_PROXY (like ../shared/bench/peers.sh layout A); an nginx origin
# (100-byte /small) and wrk share CPU_LOAD. Upstream is plain HTTP with keep-alive. All three
# proxies serve the same self-signed ECDSA P-256 certificate (made per run in a scratch dir),
# TLS 1.3 only. Loopback only; every load run is time-bounded; stops only what it started.
#
# Scenarios (SCENARIOS narrows them; proxies are restarted between ticket modes):
#   ka_c64      keep-alive: wrk -t1 -c64 https://…/small (session tickets: each proxy's default)
#   hs_c16      a new TLS connection per request: wrk -t1 -c16 -H 'Connection: close', session
#               tickets at each proxy's default. wrk keeps its SSL object across reconnects
#               (SSL_shutdown + SSL_clear), so it offers the last ticket: these handshakes are
#               RESUMED (PSK + ECDHE, no certificate, no signature). The script measures this
#               (wrk probe against a logging nginx, openssl s_client per proxy) and prints it.
#   hsfull_c16  the same with tickets and session caches off on all three: FULL handshakes
#               (ECDHE + ECDSA P-256 signature), verified per proxy with openssl s_client.
# Each table: req/s (= handshakes/s for hs*), p50/p99, proxy CPU-us per request (utime+stime
# of the proxy process from /proc/PID/stat), and ratios to nginx in the same repeat (medians).
#
#   tools/tls-bench.sh                                   # 2 repeats x 10 s per cell, ~4 min
#   REPEATS=3 DURATION=10 tools/tls-bench.sh
#   SCENARIOS="hsfull_c16" PROXIES="nginx ringway" REPEATS=1 tools/tls-bench.sh
#   SKIP_BUILD=1 RINGWAY_BIN=/path/to/ringway tools/tls-bench.sh
# Waits (up to QUIET_WAIT s) for the 1-min load average to fall below LOAD_MAX before measuring.
# Output: the tables on stdout; raw rows, wrk output, meta and summary.md under
#   $OUT_DIR (default /tmp/ringway-tlsbench/<timestamp>/).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
source tools/lib.sh

REPEATS=${REPEATS:-2}
DURATION=${DURATION:-10}       # seconds per measured wrk run
WARMUP=${WARMUP:-1}            # seconds of unrecorded wrk before each measured run
CPU_PROXY=${CPU_PROXY:-0}
CPU_LOAD=${CPU_LOAD:-1}        # origin and wrk
PROXIES=${PROXIES:-"nginx haproxy ringway"}
SCENARIOS=${SCENARIOS:-"ka_c64 hs_c16 hsfull_c16"}
LOAD_MAX=${LOAD_MAX:-1.5}
QUIET_WAIT=${QUIET_WAIT:-600}
OUT_DIR=${OUT_DIR:-/tmp/ringway-tlsbench/$(date +%Y%m%dT%H%M%S)}
RINGWAY_BIN=${RINGWAY_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/ringway}
# The origin's /small: exactly 100 bytes (same body as the peers.sh origin).
SMALL_BODY='hello from origin: 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz-padded!'

# scenario -> "ticket-mode conns close(0|1)"
declare -A SCEN=(
  [ka_c64]="tickets 64 0"
  [hs_c16]="tickets 16 1"
  [hsfull_c16]="notickets 16 1"
)
for s in $SCENARIOS; do [[ -n "${SCEN[$s]:-}" ]] || { echo "unknown scenario $s (${!SCEN[*]})" >&2; exit 2; }; done

# ---------------------------------------------------------------- tools and binary
declare -A PKG=([nginx]=nginx-light [haproxy]=haproxy [wrk]=wrk)
for t in nginx haproxy wrk; do
  if ! command -v "$t" >/dev/null; then
    echo "installing ${PKG[$t]} (no $t)" >&2
    apt-get install -y "${PKG[$t]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${PKG[$t]}" >/dev/null; }
  fi
done
need nginx haproxy wrk openssl curl taskset python3
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then cargo build --release --bin ringway; fi
[[ -x "$RINGWAY_BIN" ]] || { echo "no ringway binary at $RINGWAY_BIN" >&2; exit 2; }

scratch tlsbench
trap 'exit 130' INT TERM
chmod 755 "$dir"
mkdir -p "$OUT_DIR/wrk"
RAW="$OUT_DIR/raw.tsv"
HZ=$(getconf CLK_TCK)
log() { echo "[$(date +%T)] $*" | tee -a "$OUT_DIR/log.txt" >&2; }

# ---------------------------------------------------------------- process bookkeeping
# start NAME CPU CMD...: pinned, in the background; PID[NAME] (also in lib.sh's $pids).
declare -A PID=()
start() {
  local name=$1 cpu=$2; shift 2
  taskset -c "$cpu" "$@" >"$dir/$name.out" 2>&1 &
  PID[$name]=$!
  pids+=("$!")
}
alive() {                 # running and not a zombie
  local s; s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ ${s%% *} != Z ]]
}
stop() {                  # NAME: SIGTERM, SIGKILL after 5 s, reap, forget the PID
  local name=$1 p=${PID[$1]:-} q keep=()
  [[ -n "$p" ]] || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
  if alive "$p"; then log "$name pid=$p ignored SIGTERM, SIGKILL"; kill -KILL "$p" 2>/dev/null || true; fi
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do [[ "$q" == "$p" ]] || keep+=("$q"); done
  pids=("${keep[@]}")
  unset "PID[$name]"
}
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }   # utime+stime, all threads
self_child_ticks() { sed 's/^.*) //' "/proc/$$/stat" | awk '{print $14 + $15}'; }  # waited-for children (wrk)
calib_ms() {              # fixed CPU loop on the proxy CPU: host speed / noisy-neighbour indicator
  local a b
  a=$(date +%s%N); taskset -c "$CPU_PROXY" awk 'BEGIN{for(i=0;i<1e7;i++)s+=i}'; b=$(date +%s%N)
  echo $(( (b - a) / 1000000 ))
}

# ---------------------------------------------------------------- certificate (one per run)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local,IP:127.0.0.1 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat "$dir/cert.pem" "$dir/key.pem" > "$dir/bench.pem"      # haproxy wants both in one file

# ---------------------------------------------------------------- origin (plain HTTP, CPU_LOAD)
ORIGIN_PORT=$(free_port)
STATUS_PORT=$(free_port)
# nginx_preamble PIDFILE: what the origin's and the nginx peer's configs share (one
# worker, no logs, long keep-alive, temp paths under the prefix); they add their servers.
nginx_preamble() {
  cat <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $1;
error_log error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; use epoll; }
http {
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
CONF
}

mkdir -p "$dir/origin/tmp"
{ nginx_preamble origin.pid; cat <<CONF
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location = /small { default_type text/plain; return 200 "$SMALL_BODY\n"; }
    }
    # 'accepts' delta per run = new upstream connections (proves upstream keep-alive)
    server {
        listen 127.0.0.1:$STATUS_PORT;
        location = /status { stub_status; }
    }
}
CONF
} > "$dir/origin/nginx.conf"
start origin "$CPU_LOAD" nginx -p "$dir/origin/" -c "$dir/origin/nginx.conf" -e "$dir/origin/error.log"
wait_port "$ORIGIN_PORT" || { cat "$dir/origin.out" >&2; exit 1; }
origin_accepts() {
  curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/status" | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+/{print $1; exit}'
}
curl -s --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/small" > "$dir/ref.body"
[[ $(wc -c < "$dir/ref.body") == 100 ]] || { echo "origin /small is not 100 bytes" >&2; exit 1; }

# ---------------------------------------------------------------- proxy configs
declare -A PORT=()
for p in $PROXIES; do PORT[$p]=$(free_port); done

write_nginx() {           # MODE (tickets|notickets)
  local d="$dir/nginx" extra=""
  [[ $1 == notickets ]] && extra="ssl_session_tickets off; ssl_session_cache off;"
  mkdir -p "$d/tmp"
  { nginx_preamble nginx.pid; cat <<CONF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} ssl backlog=4096;
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        ssl_protocols TLSv1.3;
        $extra
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
  } > "$d/nginx.conf"
}

write_haproxy() {         # MODE
  local d="$dir/haproxy" glob="" bindx=""
  # TLS 1.3 with SSL_OP_NO_TICKET still resumes through stateful tickets if the cache is on
  [[ $1 == notickets ]] && { glob="tune.ssl.cachesize 0"; bindx="no-tls-tickets"; }
  mkdir -p "$d"
  cat > "$d/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
    $glob

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    http-reuse always

frontend fe
    bind 127.0.0.1:${PORT[haproxy]} ssl crt $dir/bench.pem ssl-min-ver TLSv1.3 $bindx
    default_backend be

backend be
    http-reuse always
    server origin 127.0.0.1:$ORIGIN_PORT
CONF
}

write_ringway() {         # MODE; relative cert paths resolve against the config's directory
  local tickets=true
  [[ $1 == notickets ]] && tickets=false
  # No plain listener: the TLS one comes with the extra lines.
  one_route_config "$dir/ringway.toml" "" "127.0.0.1:$ORIGIN_PORT" 1 "pin_workers = false           # taskset pins the process to CPU_PROXY

[[listeners]]
address = \"127.0.0.1:${PORT[ringway]}\"
tls = { certificates = [{ cert_file = \"cert.pem\", key_file = \"key.pem\" }], min_version = \"1.3\", session_tickets = $tickets }

[limits]
max_body_bytes = 0"
}

start_proxy() {           # NAME MODE
  local name=$1 mode=$2
  case "$name" in
    nginx)   write_nginx "$mode"
             start nginx "$CPU_PROXY" nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" ;;
    haproxy) write_haproxy "$mode"
             start haproxy "$CPU_PROXY" haproxy -db -f "$dir/haproxy/haproxy.cfg" ;;
    ringway) write_ringway "$mode"
             start ringway "$CPU_PROXY" env RINGWAY_LOG=warn "$RINGWAY_BIN" run -c "$dir/ringway.toml" ;;
    *) echo "unknown proxy $name" >&2; exit 2 ;;
  esac
  if ! wait_port "${PORT[$name]}"; then
    echo "$name did not listen on ${PORT[$name]}; its output:" >&2
    tail -20 "$dir/$name.out" "$dir/$name/error.log" 2>/dev/null >&2 || true
    exit 1
  fi
  # must answer over TLS with the origin's exact body
  if ! curl -sk --max-time 5 "https://127.0.0.1:${PORT[$name]}/small" > "$dir/$name.body" \
     || ! cmp -s "$dir/ref.body" "$dir/$name.body"; then
    echo "ABORT: $name (https://127.0.0.1:${PORT[$name]}/small, mode $mode) did not return the origin's" \
         "100-byte body; got $(wc -c < "$dir/$name.body") bytes. Output:" >&2
    tail -20 "$dir/$name.out" >&2 || true
    exit 1
  fi
}

# resumption NAME: "resumed" if the proxy resumes a session from a ticket it issued, else "full".
resumption() {
  local port=${PORT[$1]} req=$'GET /small HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n'
  rm -f "$dir/sess.pem"
  printf '%s' "$req" | timeout 5 openssl s_client -connect "127.0.0.1:$port" -servername bench.local \
    -sess_out "$dir/sess.pem" -ign_eof > "$dir/sc1.txt" 2>&1 || true
  grep -m1 -E '^New, ' "$dir/sc1.txt" | sed "s/^/  $1: /" >> "$OUT_DIR/meta.txt" || true
  grep -m1 'Server Temp Key' "$dir/sc1.txt" | sed "s/^/  $1: /" >> "$OUT_DIR/meta.txt" || true
  [[ -s "$dir/sess.pem" ]] || { echo full; return; }
  printf '%s' "$req" | timeout 5 openssl s_client -connect "127.0.0.1:$port" -servername bench.local \
    -sess_in "$dir/sess.pem" -ign_eof > "$dir/sc2.txt" 2>&1 || true
  if grep -q '^Reused, ' "$dir/sc2.txt"; then echo resumed; else echo full; fi
}

# Does wrk resume across its reconnects? A throwaway nginx that logs $ssl_session_reused
# (tickets on), 1 s of Connection: close load; prints "resumed/total".
wrk_resume_probe() {
  local d="$dir/probe" port; port=$(free_port)
  mkdir -p "$d/tmp"
  cat > "$d/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid probe.pid; error_log error.log warn;
events { worker_connections 1024; }
http {
    log_format reuse '\$ssl_session_reused';
    access_log access.log reuse;
    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem; ssl_protocols TLSv1.3;
        location / { return 200 "ok\n"; }
    }
}
CONF
  start probe "$CPU_PROXY" nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log"
  wait_port "$port" >/dev/null || { stop probe; echo "?"; return; }
  timeout 10 taskset -c "$CPU_LOAD" wrk -t1 -c4 -d1s -H 'Connection: close' "https://127.0.0.1:$port/" >/dev/null 2>&1 || true
  stop probe
  awk '$1=="r"{r++} END{printf "%d/%d", r, NR}' "$d/access.log"
}

# ---------------------------------------------------------------- measurement
cat > "$dir/report.lua" <<'LUA'
-- only done(): wrk keeps its fast path; one machine-readable line, latencies in us
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d errors=%d p50=%.0f p99=%.0f\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
LUA
printf 'rep\tscenario\tproxy\tresumption\trps\tp50_us\tp99_us\trequests\terrors\tproxy_us_req\tproxy_cpu_pct\twrk_us_req\tnew_origin_conns\tcalib_ms\n' > "$RAW"
declare -A RESUME=()

run_one() {               # REP SCENARIO PROXY
  local rep=$1 scen=$2 px=$3 mode conns close hdr=() url out ca cb pa pb wa wb ta tb line cal
  read -r mode conns close <<<"${SCEN[$scen]}"
  [[ $close == 1 ]] && hdr=(-H 'Connection: close')
  url="https://127.0.0.1:${PORT[$px]}/small"
  timeout $((WARMUP + 10)) taskset -c "$CPU_LOAD" wrk -t1 -c"$conns" -d"${WARMUP}s" "${hdr[@]}" "$url" >/dev/null 2>&1 || true
  out="$OUT_DIR/wrk/$scen.$px.r$rep.txt"
  cal=$(calib_ms)
  ca=$(origin_accepts); pa=$(cpu_ticks "${PID[$px]}"); wa=$(self_child_ticks); ta=$(date +%s%N)
  timeout $((DURATION + 15)) taskset -c "$CPU_LOAD" wrk -t1 -c"$conns" -d"${DURATION}s" "${hdr[@]}" \
    --latency -s "$dir/report.lua" "$url" > "$out" 2>&1 || log "wrk exited non-zero: $scen $px rep $rep"
  tb=$(date +%s%N); wb=$(self_child_ticks); pb=$(cpu_ticks "${PID[$px]}"); cb=$(origin_accepts)
  line=$(grep '^WRK ' "$out" || true)
  [[ -n "$line" ]] || { log "no wrk result for $scen $px rep $rep"; return 0; }
  awk -v line="$line" -v rep="$rep" -v sc="$scen" -v px="$px" -v res="${RESUME[$px.$mode]}" -v hz="$HZ" \
      -v ticks=$((pb - pa)) -v wticks=$((wb - wa)) -v wall_ns=$((tb - ta)) -v acc=$(( ${cb:-0} - ${ca:-0} - 1 )) -v cal="$cal" 'BEGIN{
    n = split(line, kv, " "); for (i = 2; i <= n; i++) { split(kv[i], a, "="); W[a[1]] = a[2] }
    req = W["requests"]; rps = req / (W["duration_us"] / 1e6); cpu_us = ticks * 1e6 / hz
    printf "%d\t%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%.2f\t%.0f\t%.2f\t%d\t%d\n", rep, sc, px, res, rps,
      W["p50"], W["p99"], req, W["errors"], cpu_us / req, cpu_us / (wall_ns / 1e3) * 100,
      wticks * 1e6 / hz / req, acc, cal
  }' >> "$RAW"
  tail -1 "$RAW" | awk -F'\t' '{printf "  rep %s %-10s %-8s %-7s rps=%-7s p50=%sus p99=%sus proxy=%sus/req (%s%% cpu) wrk=%sus/req new_origin_conns=%s err=%s\n",$1,$2,$3,$4,$5,$6,$7,$10,$11,$12,$13,$9}' \
    | tee -a "$OUT_DIR/log.txt" >&2
}

wait_quiet() {            # 1-min load average below LOAD_MAX, waiting up to QUIET_WAIT s
  local waited=0 l
  while l=$(cut -d' ' -f1 /proc/loadavg); awk -v l="$l" -v m="$LOAD_MAX" 'BEGIN{exit !(l >= m)}'; do
    if (( waited >= QUIET_WAIT )); then
      echo "machine still busy after ${QUIET_WAIT}s (load $l >= $LOAD_MAX); not measuring" >&2; exit 4
    fi
    log "load $l >= $LOAD_MAX, waiting (${waited}s so far)"
    sleep 15; waited=$((waited + 15))
  done
  log "load $l < $LOAD_MAX"
}

{
  echo "date: $(date -Is)"
  echo "host: $(uname -r), $(nproc) cpus, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "cpus: proxy=$CPU_PROXY origin+wrk=$CPU_LOAD; duration=${DURATION}s warmup=${WARMUP}s repeats=$REPEATS"
  echo "versions: $(nginx -v 2>&1) | $(haproxy -v | head -1) | $(wrk -v 2>&1 | head -1 | cut -c1-40) | $(openssl version)"
  echo "ringway: $RINGWAY_BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "certificate: self-signed ECDSA P-256 (CN=bench.local), TLS 1.3 only, same file for all proxies"
} > "$OUT_DIR/meta.txt"

WRK_RESUMES=$(wrk_resume_probe)
echo "wrk resumption probe (nginx, tickets on, Connection: close): $WRK_RESUMES handshakes resumed" >> "$OUT_DIR/meta.txt"
log "wrk resumed $WRK_RESUMES handshakes against a ticket-issuing nginx"

wait_quiet
echo "loadavg at start: $(cat /proc/loadavg)" >> "$OUT_DIR/meta.txt"
t0=$(date +%s)
for mode in tickets notickets; do
  scens=()
  for s in $SCENARIOS; do [[ ${SCEN[$s]%% *} == "$mode" ]] && scens+=("$s"); done
  (( ${#scens[@]} )) || continue
  echo "session tickets: $mode" >> "$OUT_DIR/meta.txt"
  for p in $PROXIES; do
    start_proxy "$p" "$mode"
    RESUME[$p.$mode]=$(resumption "$p")
    log "$p ($mode) pid=${PID[$p]} port=${PORT[$p]} answers /small; openssl s_client: ${RESUME[$p.$mode]}"
  done
  for rep in $(seq "$REPEATS"); do
    for s in "${scens[@]}"; do
      for p in $PROXIES; do run_one "$rep" "$s" "$p"; sleep 0.5; done
    done
  done
  for p in $PROXIES; do stop "$p"; done
done
log "measurement took $(( $(date +%s) - t0 ))s"
echo "loadavg at end: $(cat /proc/loadavg)" >> "$OUT_DIR/meta.txt"

# ---------------------------------------------------------------- tables (medians over repeats)
python3 - "$RAW" "$DURATION" "$WRK_RESUMES" > "$OUT_DIR/summary.md" <<'PY'
import csv, statistics as st, sys
raw, duration, probe = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
titles = {
    "ka_c64": "keep-alive, /small, wrk -t1 -c64 (session tickets: defaults)",
    "hs_c16": "new TLS connection per request (Connection: close), wrk -t1 -c16, session tickets "
              "at defaults: wrk resumes them, so these are RESUMED handshakes (PSK + ECDHE, no "
              f"certificate or signature; wrk probe: {probe} resumed)",
    "hsfull_c16": "new TLS connection per request (Connection: close), wrk -t1 -c16, tickets and "
                  "session caches off: FULL handshakes (ECDHE X25519 + ECDSA P-256 signature)",
}
scen, px, g = [], [], {}
for r in rows:
    scen += [r["scenario"]] if r["scenario"] not in scen else []
    px += [r["proxy"]] if r["proxy"] not in px else []
    g.setdefault((r["scenario"], r["proxy"]), []).append(r)
med = lambda rs, k: st.median(float(r[k]) for r in rs)
def ratio(s, p, k):
    ref = {r["rep"]: float(r[k]) for r in g.get((s, "nginx"), [])}
    v = [float(r[k]) / ref[r["rep"]] for r in g[(s, p)] if ref.get(r["rep"])]
    return f"{st.median(v):.2f}" if v else "-"
reps = max(int(r["rep"]) for r in rows)
print(f"Median of {reps} repeats x {duration} s. Proxy: 1 worker alone on its core; origin + wrk on "
      "the other. CPU-us/req = proxy utime+stime / requests. Ratios: per repeat against nginx "
      "in the same repeat, then the median. Proxy CPU % well below 100 means the proxy was not "
      "the bottleneck (wrk + origin share one core): then compare CPU-us/req, not req/s.\n")
for s in scen:
    unit = "handshakes/s" if s.startswith("hs") else "req/s"
    print(f"### {s}: {titles.get(s, s)}\n")
    print(f"| proxy | {unit} | rps/nginx | p50 us | p99 us | proxy CPU-us/req | cpu/nginx "
          "| proxy CPU % | wrk CPU-us/req | resumption (s_client) | new origin conns | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for p in px:
        rs = g.get((s, p))
        if not rs:
            continue
        print(f"| {p} | {med(rs, 'rps'):,.0f} | {ratio(s, p, 'rps')} | {med(rs, 'p50_us'):,.0f} | "
              f"{med(rs, 'p99_us'):,.0f} | {med(rs, 'proxy_us_req'):.1f} | {ratio(s, p, 'proxy_us_req')} | "
              f"{med(rs, 'proxy_cpu_pct'):.0f} | {med(rs, 'wrk_us_req'):.1f} | {rs[0]['resumption']} | {med(rs, 'new_origin_conns'):,.0f} | "
              f"{sum(int(r['errors']) for r in rs)} |")
    print()
PY
cat "$OUT_DIR/meta.txt"
echo
cat "$OUT_DIR/summary.md"
log "results: $OUT_DIR"
