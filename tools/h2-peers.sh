#!/usr/bin/env bash
# HTTP/2 from clients, ringway against nginx (`listen ... http2`) and HAProxy (`proto h2`),
# h2c with prior knowledge, HTTP/1.1 keep-alive upstreams, all in one run, pinned like
# ../shared/bench/peers.sh's layout A: each proxy alone on cpu0 (one worker), the nginx
# origin and h2load (-t1) on cpu1. Per scenario and proxy: req/s, p50/p99 (from h2load's
# per-request log), the proxy's CPU-µs per request (/proc), and ratios to nginx in the same
# repeat. Needs nginx-light, haproxy and nghttp2-client (h2load); 127.0.0.1 only.
#   tools/h2-peers.sh                               # 3 repeats x 8 s per cell
#   REPEATS=1 DURATION=5 SCENARIOS="small_c64_m10" tools/h2-peers.sh
#   BASE_BIN=/path/to/older/ringway tools/h2-peers.sh   # that build too, as "base"
#     (in the same run, to tell a change of ringway's from the noise of this machine)
#   UPSTREAM=h2c tools/h2-peers.sh   # HTTP/2 on both sides: the bundled origin (h2c, gRPC
#     echo) behind nginx `grpc_pass`, HAProxy `proto h2` and ringway `protocol = "h2c"`;
#     scenarios: gRPC unary calls (h2load POSTing one small gRPC message, 64 streams on 4
#     connections) and small GETs. A scenario's fifth field `grpc` makes it gRPC.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
conf=${CONF_DIR:-$root/../shared/bench/conf}
REPEATS=${REPEATS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-1}
PROXIES=${PROXIES:-"nginx haproxy ringway"}
UPSTREAM=${UPSTREAM:-http1}
# name:path:connections:streams[:grpc]
if [[ $UPSTREAM == h2c ]]; then
  SCENARIOS=${SCENARIOS:-"grpc_unary_c4_m16:/ringway.Echo/Unary:4:16:grpc small_c64_m10:/small:64:10"}
else
  SCENARIOS=${SCENARIOS:-"small_c64_m10:/small:64:10 small_c1_m1:/small:1:1 1m_c8_m1:/1m.bin:8:1"}
fi
CPU_PROXY=${CPU_PROXY:-0}
CPU_REST=${CPU_REST:-1}
ORIGIN_PORT=9001; ORIGIN_STATUS_PORT=9002
declare -A PORT=([nginx]=9111 [haproxy]=9121 [ringway]=9131 [base]=9141)
if [[ -n "${BASE_BIN:-}" && " $PROXIES " != *" base "* ]]; then PROXIES="$PROXIES base"; fi
for t in nginx haproxy h2load; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }; done
cargo build --release --bin ringway --bin ringway-origin >/dev/null
run_dir=$(mktemp -d /tmp/ringway-h2peers.XXXXXX); chmod 755 "$run_dir"
out=${OUT:-$root/target/h2-peers/$(date +%Y%m%dT%H%M%S)}
mkdir -p "$out"
declare -A PID
cleanup() { for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$run_dir"; }
trap cleanup EXIT
render() { sed -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@ORIGIN_STATUS_PORT@|$ORIGIN_STATUS_PORT|g" -e "s|@LISTEN_PORT@|${3:-}|g" "$1" > "$2"; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
cpu_ticks() { local total=0 q f; for q in $1 $(pgrep -P "$1" || true); do [[ -r /proc/$q/stat ]] || continue; f=$(sed 's/^.*) //' /proc/$q/stat); set -- $f; total=$((total + ${12} + ${13})); done; echo $total; }
HZ=$(getconf CLK_TCK)

mkdir -p "$run_dir/origin/tmp" "$run_dir/origin/www"
head -c 65536 /dev/zero > "$run_dir/origin/www/64k.bin"; head -c 1048576 /dev/zero > "$run_dir/origin/www/1m.bin"; chmod -R a+rX "$run_dir/origin"
if [[ $UPSTREAM == h2c ]]; then
  taskset -c "$CPU_REST" "$root/target/release/ringway-origin" --listen 127.0.0.1:$ORIGIN_PORT --quiet >"$run_dir/origin.out" 2>&1 &
else
  render "$conf/origin-nginx.conf" "$run_dir/origin/nginx.conf"
  taskset -c "$CPU_REST" nginx -p "$run_dir/origin/" -c "$run_dir/origin/nginx.conf" -e "$run_dir/origin/error.log" >"$run_dir/origin.out" 2>&1 &
fi
PID[origin]=$!; wait_port $ORIGIN_PORT || { echo "origin did not start" >&2; exit 1; }
# One gRPC message of 10 bytes (a 5-byte prefix: not compressed, the length).
printf '\x00\x00\x00\x00\x0a0123456789' > "$run_dir/grpc.msg"
GRPC_ARGS=(-d "$run_dir/grpc.msg" -H "content-type: application/grpc" -H "te: trailers")

for p in $PROXIES; do
  mkdir -p "$run_dir/$p/tmp"
  case $p in
    nginx)
      render "$conf/proxy-nginx.conf" "$run_dir/nginx/nginx.conf" "${PORT[nginx]}"
      sed -i "s|listen 127.0.0.1:${PORT[nginx]} backlog=4096;|listen 127.0.0.1:${PORT[nginx]} http2 backlog=4096;|" "$run_dir/nginx/nginx.conf"
      [[ $UPSTREAM == h2c ]] && sed -i "s|proxy_pass http://origin;|grpc_pass grpc://origin; grpc_buffer_size 64k;|" "$run_dir/nginx/nginx.conf"
      taskset -c "$CPU_PROXY" nginx -p "$run_dir/nginx/" -c "$run_dir/nginx/nginx.conf" -e "$run_dir/nginx/error.log" >"$run_dir/nginx.out" 2>&1 &
      PID[nginx]=$! ;;
    haproxy)
      render "$conf/haproxy.cfg" "$run_dir/haproxy/haproxy.cfg" "${PORT[haproxy]}"
      sed -i "s|bind 127.0.0.1:${PORT[haproxy]}|bind 127.0.0.1:${PORT[haproxy]} proto h2|" "$run_dir/haproxy/haproxy.cfg"
      [[ $UPSTREAM == h2c ]] && sed -i "s|server origin 127.0.0.1:$ORIGIN_PORT|server origin 127.0.0.1:$ORIGIN_PORT proto h2|" "$run_dir/haproxy/haproxy.cfg"
      taskset -c "$CPU_PROXY" haproxy -db -f "$run_dir/haproxy/haproxy.cfg" >"$run_dir/haproxy.out" 2>&1 &
      PID[haproxy]=$! ;;
    ringway|base)
      bin=${RINGWAY_BIN:-$root/target/release/ringway}
      [[ $p == base ]] && bin=${BASE_BIN:?BASE_BIN names the older build}
      LISTEN_ADDR=127.0.0.1:${PORT[$p]} ORIGIN_ADDR=127.0.0.1:$ORIGIN_PORT PEER_DIR="$run_dir/$p" \
        UPSTREAM_PROTOCOL=$([[ $UPSTREAM == h2c ]] && echo h2c || true) \
        RINGWAY_BIN="$bin" \
        taskset -c "$CPU_PROXY" "$root/tools/bench-gateway.sh" >"$run_dir/$p.out" 2>&1 &
      PID[$p]=$! ;;
  esac
  wait_port "${PORT[$p]}" || { echo "$p did not start:"; cat "$run_dir/$p.out"; exit 1; }
done

printf 'rep\tscenario\tproxy\trps\tp50_us\tp99_us\tcpu_us_req\tok\tfailed\n' > "$out/raw.tsv"
for rep in $(seq "$REPEATS"); do
  for s in $SCENARIOS; do
    IFS=: read -r name path conns streams kind <<<"$s"
    extra=()
    [[ ${kind:-} == grpc ]] && extra=("${GRPC_ARGS[@]}")
    for p in $PROXIES; do
      url="http://127.0.0.1:${PORT[$p]}$path"
      taskset -c "$CPU_REST" h2load -t1 -c "$conns" -m "$streams" -D "$WARMUP" "${extra[@]}" "$url" >/dev/null 2>&1 || true
      log="$run_dir/req.log"; rm -f "$log"
      a=$(cpu_ticks "${PID[$p]}")
      taskset -c "$CPU_REST" h2load -t1 -c "$conns" -m "$streams" -D "$DURATION" --log-file="$log" "${extra[@]}" "$url" > "$out/$name.$p.r$rep.txt" 2>&1 || true
      b=$(cpu_ticks "${PID[$p]}")
      ok=$(grep -oP 'requests: .* \K[0-9]+(?= succeeded)' "$out/$name.$p.r$rep.txt" || echo 0)
      failed=$(grep -oP 'succeeded, \K[0-9]+(?= failed)' "$out/$name.$p.r$rep.txt" || echo 0)
      rps=$(grep -oP 'finished in [0-9.]+s, \K[0-9.]+(?= req/s)' "$out/$name.$p.r$rep.txt" || echo 0)
      read -r p50 p99 < <(awk -F'\t' '{print $3}' "$log" | sort -n | awk '{v[NR]=$1} END {if (NR==0) {print 0, 0} else {print v[int(NR*0.5)+1], v[int(NR*0.99)+1]}}')
      cpu=$(awk -v d=$((b - a)) -v hz="$HZ" -v n="$ok" 'BEGIN { if (n>0) printf "%.2f", d*1e6/hz/n; else print 0 }')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$name" "$p" "$rps" "$p50" "$p99" "$cpu" "$ok" "$failed" >> "$out/raw.tsv"
      printf '  rep %s %-14s %-8s rps=%-9s p50=%sus p99=%sus proxy=%sus/req ok=%s failed=%s\n' "$rep" "$name" "$p" "$rps" "$p50" "$p99" "$cpu" "$ok" "$failed" >&2
    done
  done
done

# Medians per scenario and proxy, with ratios to nginx taken per repeat.
awk -F'\t' 'NR>1 { k=$2 SUBSEP $3; rps[k]=rps[k] " " $4; p50[k]=p50[k] " " $5; p99[k]=p99[k] " " $6; cpu[k]=cpu[k] " " $7
                  R[$1 SUBSEP $2 SUBSEP $3]=$4; C[$1 SUBSEP $2 SUBSEP $3]=$7; reps[$1]=1; sc[$2]=1; px[$3]=1 }
  function med(s,   a, n, i, j, t) { n=split(s, a, " "); for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (a[j]+0 < a[i]+0) { t=a[i]; a[i]=a[j]; a[j]=t }; return n ? a[int((n+1)/2)] : 0 }
  END {
    print "| scenario | proxy | req/s | rps vs nginx | p50 µs | p99 µs | proxy CPU-µs/req | CPU vs nginx |"
    print "|---|---|---:|---:|---:|---:|---:|---:|"
    for (s in sc) for (p in px) { k=s SUBSEP p; rr=""; cr=""
      for (r in reps) { n=R[r SUBSEP s SUBSEP "nginx"]; c=C[r SUBSEP s SUBSEP "nginx"]; if (n>0) rr=rr " " R[r SUBSEP s SUBSEP p]/n; if (c>0) cr=cr " " C[r SUBSEP s SUBSEP p]/c }
      printf "| %s | %s | %.0f | %.2f | %d | %d | %.1f | %.2f |\n", s, p, med(rps[k]), med(rr), med(p50[k]), med(p99[k]), med(cpu[k]), med(cr) }
  }' "$out/raw.tsv" | tee "$out/table.md"
echo "results: $out" >&2
