#!/usr/bin/env bash
# tools/soak.sh: ringway under steady load with upstream faults injected, watching that its
# memory and file descriptors stay flat and that every client error is explained by a fault.
#
#   1. starts the bundled origin with random faults (--fault-rate, seeded) and ringway (one
#      worker, upstream keep-alive, upstream_response = 1s) on free loopback ports;
#   2. measures capacity: ringway-loadgen closed loop for CAPACITY_S seconds, with
#      `X-Fault: none` so that no fault is injected into the measurement;
#   3. drives RATE (default: half that capacity) open loop for DURATION seconds, sampling
#      ringway's RSS (/proc/PID/status VmRSS) and open fds (/proc/PID/fd) every SAMPLE s;
#   4. checks: ringway still runs; RSS and fds are flat (after WARMUP s, the last quarter's
#      max is within SLACK % (+1 MiB, + FD_SLACK fds) of the first quarter's max); the
#      client's errors are no more than the faults the origin injected;
#   5. writes into OUT: samples.csv, soak.svg (RSS and fds over time), loadgen.json,
#      origin.txt (its fault counts), ringway.log and summary.txt; prints the summary.
#
# Environment (defaults): DURATION (600), RATE (half of the measured capacity), CONNS (64,
# for the capacity run), SOAK_CONNS (512: faults such as never-answer hold a connection for
# up to 1 s, and the open loop needs spare connections to keep its rate meanwhile),
# FAULT_RATE (0.01), FAULT_MODES (every mode), SEED (1), URL_PATH (/small), SAMPLE (5),
# CAPACITY_S (5), WARMUP (max(10, DURATION/10)), SLACK (10), FD_SLACK (8),
# OUT (target/soak/DATE-TIME), BIN (the release binaries, built when missing).
# Exit status: 0 all checks passed, 1 a check failed, 2 a tool or binary is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/lib.sh
source tools/lib.sh
need python3

DURATION=${DURATION:-600}
CONNS=${CONNS:-64}
SOAK_CONNS=${SOAK_CONNS:-512}
FAULT_RATE=${FAULT_RATE:-0.01}
FAULT_MODES=${FAULT_MODES:-}
SEED=${SEED:-1}
URL_PATH=${URL_PATH:-/small}
SAMPLE=${SAMPLE:-5}
CAPACITY_S=${CAPACITY_S:-5}
WARMUP=${WARMUP:-$(( DURATION / 10 > 10 ? DURATION / 10 : 10 ))}
SLACK=${SLACK:-10}
FD_SLACK=${FD_SLACK:-8}
OUT=${OUT:-target/soak/$(date +%Y%m%d-%H%M%S)}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}

if [[ ! -x $BIN/ringway || ! -x $BIN/ringway-origin || ! -x $BIN/ringway-loadgen ]]; then
  [[ $BIN == "${CARGO_TARGET_DIR:-target}/release" ]] || { echo "no binaries in $BIN" >&2; exit 2; }
  cargo build --release --bins
fi
mkdir -p "$OUT"
scratch soak

oport=$(free_port)
modes=()
[[ -n $FAULT_MODES ]] && modes=(--fault-modes "$FAULT_MODES")
"$BIN/ringway-origin" --listen "127.0.0.1:$oport" --quiet --fault-rate "$FAULT_RATE" \
  --fault-seed "$SEED" "${modes[@]}" >"$OUT/origin.txt" 2>&1 &
origin=$!
pids+=("$origin")
wait_port "$oport"

port=$(free_port)
one_route_config "$dir/ringway.toml" "127.0.0.1:$port" "127.0.0.1:$oport" 1 \
  "$(printf '[timeouts]\nupstream_response = "1s"')"
RINGWAY_LOG=warn "$BIN/ringway" run -c "$dir/ringway.toml" >"$OUT/ringway.log" 2>&1 &
gw=$!
pids+=("$gw")
wait_port "$port"
url="http://127.0.0.1:$port$URL_PATH"

if [[ -z ${RATE:-} ]]; then
  "$BIN/ringway-loadgen" "$url" -c "$CONNS" -d "${CAPACITY_S}s" -H 'X-Fault: none' --json \
    --quiet >"$OUT/capacity.json"
  capacity=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["rate"]))' \
    "$OUT/capacity.json")
  RATE=$(( capacity / 2 ))
  echo "capacity ${capacity} req/s closed loop at c${CONNS}; soaking at ${RATE} req/s" >&2
fi

echo "t_s,rss_kib,fds" >"$OUT/samples.csv"
sample() {
  local rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$gw/status" 2>/dev/null || echo 0)
  fds=$(find "/proc/$gw/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  echo "$1,${rss:-0},$fds" >>"$OUT/samples.csv"
}

"$BIN/ringway-loadgen" "$url" -c "$SOAK_CONNS" -d "${DURATION}s" --rate "$RATE" --timeout 5s \
  --json --quiet --label soak >"$OUT/loadgen.json" &
load=$!
pids+=("$load")
start=$(date +%s)
sample 0
while kill -0 "$load" 2>/dev/null; do
  sleep "$SAMPLE"
  sample $(( $(date +%s) - start ))
done
wait "$load"
alive=1
kill -0 "$gw" 2>/dev/null || alive=0
kill -TERM "$origin"
wait "$origin" 2>/dev/null || true

status=0
python3 - "$OUT" "$alive" "$WARMUP" "$SLACK" "$FD_SLACK" "$RATE" "$FAULT_RATE" <<'PY' || status=$?
import csv, json, sys
out, alive, warmup, slack, fd_slack, rate, fault_rate = sys.argv[1:8]
alive, warmup, slack, fd_slack = alive == "1", int(warmup), float(slack), int(fd_slack)
rows = [(int(r["t_s"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(f"{out}/samples.csv"))]
load = json.load(open(f"{out}/loadgen.json"))
stats = next((l.split("stats: ", 1)[1].strip() for l in open(f"{out}/origin.txt") if l.startswith("stats: ")), "")
counts = dict(kv.split("=", 1) for kv in stats.split() if "=" in kv)
faults = int(counts.get("faults", 0))
errors = sum(load["errors"].values())
steady = [r for r in rows if r[0] >= warmup] or rows
q = max(1, len(steady) // 4)
first, last = steady[:q], steady[-q:]
rss_first, rss_last = max(r[1] for r in first), max(r[1] for r in last)
fd_first, fd_last = max(r[2] for r in first), max(r[2] for r in last)
checks = [
    ("ringway still runs", alive),
    (f"RSS flat: last quarter max {rss_last} KiB <= first quarter max {rss_first} KiB + {slack:g}% + 1 MiB",
     rss_last <= rss_first * (1 + slack / 100) + 1024),
    (f"fds flat: last quarter max {fd_last} <= first quarter max {fd_first} + {slack:g}% + {fd_slack}",
     fd_last <= fd_first * (1 + slack / 100) + fd_slack),
    (f"client errors {errors} <= faults injected {faults}", errors <= faults),
    (f"rate held: {load['rate']:.0f} req/s achieved >= 90% of {float(rate):.0f}",
     load["rate"] >= 0.9 * float(rate)),
]
lines = [
    f"soak: {load['duration_s']:.0f} s open loop at {float(rate):.0f} req/s target, {load['rate']:.0f} achieved, "
    f"{load['connections']} connections, fault rate {fault_rate}",
    f"requests ok {load['requests']}, client errors {errors} {load['errors']}",
    f"origin: {stats}",
    "latency " + ", ".join(f"{p} {load['latency_us'][p]} us" for p in ("p50", "p99", "p99.9", "p100")),
    f"ringway RSS {rows[0][1]} KiB at start, {min(r[1] for r in steady)}-{max(r[1] for r in steady)} KiB after {warmup} s warm-up; "
    f"fds {rows[0][2]} at start, {min(r[2] for r in steady)}-{max(r[2] for r in steady)} after",
] + [("PASS " if ok else "FAIL ") + name for name, ok in checks]
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# soak.svg: two panels over time, ringway's RSS (MiB) above and its open fds below.
W, PH, L, R, T, GAP = 760, 170, 70, 20, 40, 40
H = T + 2 * PH + GAP + 40
tmax = max(r[0] for r in rows) or 1
x = lambda t: L + (W - L - R) * t / tmax
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">ringway soak: {load["rate"]:.0f} req/s, fault rate {fault_rate}</text>']
for i, (label, color, values) in enumerate((("RSS (MiB)", "#1f5fbf", [r[1] / 1024 for r in rows]),
                                             ("open fds", "#bf1f1f", [r[2] for r in rows]))):
    top = T + i * (PH + GAP)
    vmax = max(values) * 1.25 or 1
    y = lambda v: top + PH - PH * v / vmax
    svg.append(f'<line x1="{L}" y1="{top + PH}" x2="{W-R}" y2="{top + PH}" stroke="black"/>')
    svg.append(f'<line x1="{L}" y1="{top}" x2="{L}" y2="{top + PH}" stroke="black"/>')
    for k in range(5):
        v = vmax * k / 4
        svg.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W-R}" y2="{y(v):.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{L-6}" y="{y(v)+4:.1f}" text-anchor="end">{v:.0f}</text>')
    for k in range(6):
        t = tmax * k / 5
        svg.append(f'<text x="{x(t):.1f}" y="{top + PH + 15}" text-anchor="middle">{t:.0f} s</text>')
    svg.append(f'<text x="{L+8}" y="{top + 14}" fill="{color}">{label}</text>')
    pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for (t, _, _), v in zip(rows, values))
    svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
svg.append("</svg>")
open(f"{out}/soak.svg", "w").write("\n".join(svg) + "\n")
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY
echo "results in $OUT" >&2
exit $status
