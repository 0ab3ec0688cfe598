#!/usr/bin/env python3
"""Measures ringway's resident memory with many idle keep-alive client connections.

Starts the bundled origin and ringway (one worker, from target/release), opens N client
connections to ringway, sends one request on each and keeps them all open and idle, then
reads ringway's VmRSS from /proc. Loopback only; everything started here is stopped here.

    cargo build --release --bins && tools/idle-rss.py --conns 10000
"""
import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+)", f.read())
    return int(m.group(1)) if m else 0


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before a response")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        body += s.recv(4096)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:60])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before measuring")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--limit-mib", type=float, default=64.0,
                    help="exit 1 if the RSS with all connections idle is above this")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.conns + 1000
    if hard < want:
        sys.exit(f"open-file limit {hard} is below {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    procs = []
    try:
        origin = subprocess.Popen(
            [os.path.join(args.bin_dir, "ringway-origin"), "--listen", "127.0.0.1:0", "--quiet"],
            stdout=subprocess.PIPE, text=True)
        procs.append(origin)
        origin_addr = origin.stdout.readline().split()[-1]
        cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        cfg.write(f"""[server]
listen = ["127.0.0.1:0"]
workers = 1
[timeouts]
idle = "300s"
[limits]
max_connections = {args.conns + 100}
[[upstreams]]
name = "origin"
servers = ["{origin_addr}"]
[[routes]]
path_prefix = "/"
upstream = "origin"
""")
        cfg.close()
        gw = subprocess.Popen([os.path.join(args.bin_dir, "ringway"), "run", "-c", cfg.name],
                              stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, RINGWAY_LOG="info"))
        procs.append(gw)
        addr = None
        while addr is None:
            line = gw.stderr.readline()
            if not line:
                sys.exit("ringway exited")
            m = re.search(r"listening on (\S+)", line)
            if m:
                addr = m.group(1)
        host, port = addr.rsplit(":", 1)
        base = rss_kib(gw.pid)
        socks = []
        started = time.time()
        for i in range(args.conns):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"GET /bytes/2 HTTP/1.1\r\nHost: bench\r\n\r\n")
            read_response(s)
            socks.append(s)
        opened = time.time() - started
        time.sleep(args.settle)  # connections idle longer than 1 s give their buffers back
        loaded = rss_kib(gw.pid)
        print(f"ringway RSS: {base} KiB at start, {loaded} KiB with {args.conns} idle "
              f"keep-alive connections ({(loaded - base) / args.conns:.2f} KiB each; "
              f"{args.conns} connections opened in {opened:.1f}s)")
        # The idle connections still work: every 100th one asks again.
        woken = socks[::100]
        for s in woken:
            s.sendall(b"GET /bytes/2 HTTP/1.1\r\nHost: bench\r\n\r\n")
            read_response(s)
        print(f"{len(woken)} of the idle connections answered a second request")
        for s in socks:
            s.close()
        os.unlink(cfg.name)
        if loaded > args.limit_mib * 1024:
            print(f"FAIL: {loaded / 1024:.1f} MiB is above {args.limit_mib} MiB")
            sys.exit(1)
        print(f"ok: {loaded / 1024:.1f} MiB <= {args.limit_mib} MiB")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
