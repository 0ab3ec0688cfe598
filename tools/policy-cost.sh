#!/usr/bin/env bash
# What the policy costs per request: ../shared/bench/peers.sh (layout A, one pinned worker)
# with plain ringway ("gateway") and ringway with JWT auth + a per-consumer rate limit
# ("policy") next to nginx and haproxy in the same run. Every target gets the same
# `Authorization: Bearer <HS256 token>` field (nginx and haproxy just forward it), so the
# bytes on the wire are equal. The harness is copied to a scratch dir and only its wrk
# reporter and readiness probe gain that field.
#   tools/policy-cost.sh                                   # small c64, 2 repeats
#   SCENARIOS="small_c64:/small:64 1m_c8:/1m.bin:8" REPEATS=3 tools/policy-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
harness_dir=${HARNESS_DIR:-$root/../shared/bench}
[[ -f "$harness_dir/peers.sh" ]] || { echo "no harness in $harness_dir" >&2; exit 2; }
cargo build --release --bin ringway
scratch=$(mktemp -d /tmp/ringway-policy-cost.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cp -r "$harness_dir/peers.sh" "$harness_dir/conf" "$scratch/"
[[ -f "$harness_dir/summarize.py" ]] && cp "$harness_dir/summarize.py" "$scratch/"

secret="bench-only-secret-$(date +%s%N)"
token=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
sig = hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
PY
)
# wrk: a static header keeps its fast path (no per-request Lua).
{ echo "wrk.headers[\"Authorization\"] = \"Bearer $token\""; cat "$scratch/conf/wrk-report.lua"; } \
  > "$scratch/conf/wrk-report.lua.new"
mv "$scratch/conf/wrk-report.lua.new" "$scratch/conf/wrk-report.lua"
sed -i "s|curl -s --max-time 5|curl -s -H 'Authorization: Bearer $token' --max-time 5|g" "$scratch/peers.sh"

export RINGWAY_BIN="$root/target/release/ringway" RINGWAY_BENCH_JWT_SECRET="$secret"
export SCENARIOS=${SCENARIOS:-"small_c64:/small:64"} REPEATS=${REPEATS:-2}
GATEWAY_CMD="$root/tools/bench-gateway.sh" \
  EXTRA_PEERS="policy" POLICY_PORT=${POLICY_PORT:-9110} \
  POLICY_CMD="env RINGWAY_BENCH_POLICY=1 $root/tools/bench-gateway.sh" \
  bash "$scratch/peers.sh"
