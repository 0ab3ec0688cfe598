#!/usr/bin/env python3
"""Measures ringway's resident memory with many idle keep-alive client connections.

Starts the bundled origin and ringway (one worker, from target/release), opens N client
connections to ringway, sends one request on each and keeps them all open and idle, then
reads ringway's VmRSS from /proc. Loopback only; everything started here is stopped here.

    cargo build --release --bins && tools/idle-rss.py --conns 10000
    tools/idle-rss.py --conns 10000 --h2 --limit-mib 128    # HTTP/2 (h2c) connections
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


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(t, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([t, flags]) + stream.to_bytes(4, "big") + payload


def h2_get(s, stream):
    """Sends GET /bytes/2 on `stream` (HPACK literals, no Huffman) and reads frames until
    that stream's response ends."""
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"bench"),
              (b":path", b"/bytes/2")]
    block = b"".join(b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v for n, v in fields)
    s.sendall(frame(0x1, 0x5, stream, block))
    buf = b""
    while True:
        while len(buf) < 9:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed before a response")
            buf += chunk
        n = int.from_bytes(buf[:3], "big")
        while len(buf) < 9 + n:
            buf += s.recv(4096)
        t, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + n:]
        if t == 0x4 and not flags & 0x1:
            s.sendall(frame(0x4, 0x1, 0))
        if sid == stream and t in (0x0, 0x1) and flags & 0x1:
            return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before measuring")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--limit-mib", type=float, default=64.0,
                    help="exit 1 if the RSS with all connections idle is above this")
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2 connections (prior knowledge) instead of HTTP/1.1")
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
            if args.h2:
                s.sendall(PREFACE + frame(0x4, 0, 0))
                h2_get(s, 1)
            else:
                s.sendall(b"GET /bytes/2 HTTP/1.1\r\nHost: bench\r\n\r\n")
                read_response(s)
            socks.append(s)
        opened = time.time() - started
        time.sleep(args.settle)  # connections idle longer than 1 s give their buffers back
        loaded = rss_kib(gw.pid)
        kind = "HTTP/2" if args.h2 else "keep-alive"
        print(f"ringway RSS: {base} KiB at start, {loaded} KiB with {args.conns} idle "
              f"{kind} connections ({(loaded - base) / args.conns:.2f} KiB each; "
              f"{args.conns} connections opened in {opened:.1f}s)")
        # The idle connections still work: every 100th one asks again.
        woken = socks[::100]
        for s in woken:
            if args.h2:
                h2_get(s, 3)
            else:
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
