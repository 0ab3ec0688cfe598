# Shared by the measurement scripts in tools/ (source it after `cd` to the repo root):
# tool checks, the release binaries, a scratch dir, bookkeeping of the processes a script
# starts (stopped by PID on exit, nothing else), free loopback ports and readiness.

# need TOOL... : exits 2 naming the first missing tool.
need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install -y wrk nginx-light strace)" >&2; exit 2; }
  done
}

# Builds the release binaries when one is missing.
release_bins() {
  [[ -x target/release/ringway && -x target/release/ringway-origin ]] || cargo build --release --bins
}

# scratch NAME: sets $dir to a new temp dir, removed on exit with every process in $pids.
pids=()
scratch() {
  dir=$(mktemp -d "/tmp/ringway-$1.XXXXXX")
  trap cleanup EXIT
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n "${dir:-}" ]] && rm -rf "$dir"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; return 1
}

# one_route_config FILE LISTEN ORIGIN [WORKERS] [EXTRA]: a ringway config proxying every
# path to ORIGIN with upstream keep-alive; EXTRA is more [server] lines (and may go on with
# other tables). An empty LISTEN means no plain listener (EXTRA then adds [[listeners]]).
one_route_config() {
  local listen="[]"
  [[ -n $2 ]] && listen="[\"$2\"]"
  cat >"$1" <<CONF
[server]
listen = $listen
workers = ${4:-1}
${5:-}
[[upstreams]]
name = "origin"
servers = ["$3"]
keepalive = 256
[[routes]]
path_prefix = "/"
upstream = "origin"
CONF
}

# ticks PID FIELD...: the sum of those fields of /proc/PID/stat, in clock ticks (14 utime,
# 15 stime, 16/17 the reaped children's).
ticks() {
  local pid=$1 f; shift
  f=$(sed 's/^.*) //' "/proc/$pid/stat")
  awk -v f="$f" -v want="$*" 'BEGIN{n=split(f, a, " "); split(want, w, " "); s=0; for(i in w) s+=a[w[i]-2]; print s}'
}
