#!/usr/bin/env bash
# Runs ringway with config/ringway.toml (127.0.0.1:8080) in front of the bundled origin
# (ringway-origin on 127.0.0.1:9001 and :9002). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins
target/release/ringway-origin --listen 127.0.0.1:9001 --listen 127.0.0.1:9002 --quiet >/dev/null &
origin=$!
stop_origin() { kill "$origin" 2>/dev/null || true; }
trap stop_origin EXIT
trap 'stop_origin; exit 130' INT TERM
cat <<'MSG'

ringway is starting on http://127.0.0.1:8080 in front of the bundled origin. Try:
  curl -i http://127.0.0.1:8080/bytes/100                          # proxied, round-robin 9001/9002
  curl -i -H 'Host: api.example.com' http://127.0.0.1:8080/v1/echo/headers   # prefix /v1/ stripped
  curl -i http://127.0.0.1:8080/admin                              # 403 from ringway itself
  curl -i http://127.0.0.1:8080/public/../admin                    # normalised: still 403
Ctrl-C stops ringway (it drains in-flight requests first) and the origin.

MSG
target/release/ringway run -c config/ringway.toml
