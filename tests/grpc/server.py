#!/usr/bin/env python3
"""A gRPC server with grpcio (the C-core implementation), for tests/grpc.rs.

    server.py [--tls CERT KEY]

Listens on 127.0.0.1, a free port, and prints "listening PORT" once it serves. Bytes in,
bytes out, no code generation (generic handlers). Methods of /test.Echo/:

- Unary: the request back. Metadata "x-status: N" (with "x-message") ends the call with that
  status instead; "x-meta-*" request metadata comes back as trailing metadata.
- ServerStream: the request is "COUNT SIZE"; COUNT messages of SIZE bytes come back.
- ClientStream: every request message is read; the reply is "COUNT BYTES".
- Bidi: each request message back as it arrives (replies flow before the client half-closes).
- Sleep: the request is seconds as text; replies "slept" after them, unless the call is
  cancelled first, which prints "cancelled PEER-ID" (the "x-id" metadata) on stdout.
- Who: the reply is "server=NAME" (--name), then the request's metadata as "key=value"
  lines (what reached the server).

--fail-with N makes Unary end every call with status N (printing "failed SIZE");
--max-streams N announces SETTINGS_MAX_CONCURRENT_STREAMS N.

grpc.health.v1.Health/Check answers SERVING, or NOT_SERVING while the file given by
--unhealthy exists. SIGTERM stops the server gracefully (GOAWAY, calls in flight finish
within 10 s), printing "stopping" then "stopped". Every line on stdout is flushed at once.
"""
import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc


ARGS = None


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def trailing(context):
    return [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-meta-")]


def meta(context, key):
    for k, v in context.invocation_metadata():
        if k == key:
            return v
    return None


def unary(request, context):
    context.set_trailing_metadata(trailing(context))
    if ARGS.fail_with is not None:
        say(f"failed {len(request)}")
        code = next(c for c in grpc.StatusCode if c.value[0] == ARGS.fail_with)
        context.abort(code, "failing on purpose")
    status = meta(context, "x-status")
    if status is not None:
        code = next(c for c in grpc.StatusCode if c.value[0] == int(status))
        context.abort(code, meta(context, "x-message") or "")
    return request


def server_stream(request, context):
    count, size = (int(x) for x in request.decode().split())
    for i in range(count):
        yield bytes([97 + i % 26]) * size
    context.set_trailing_metadata(trailing(context))


def client_stream(request_iterator, context):
    count = 0
    total = 0
    for m in request_iterator:
        count += 1
        total += len(m)
    context.set_trailing_metadata(trailing(context))
    return f"{count} {total}".encode()


def bidi(request_iterator, context):
    for m in request_iterator:
        yield m
    context.set_trailing_metadata(trailing(context))


def sleep(request, context):
    ident = meta(context, "x-id") or "?"
    done = threading.Event()

    def on_end():
        if not done.is_set():
            say(f"cancelled {ident}")

    context.add_callback(on_end)
    end = time.monotonic() + float(request.decode())
    while time.monotonic() < end:
        if not context.is_active():
            return b""
        time.sleep(0.01)
    done.set()
    return b"slept"


def who(request, context):
    lines = [f"server={ARGS.name}"]
    for k, v in context.invocation_metadata():
        if isinstance(v, bytes):
            v = v.hex()
        lines.append(f"{k}={v}")
    return "\n".join(lines).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--unhealthy", help="health says NOT_SERVING while this file exists")
    ap.add_argument("--name", default="server", help="Who's first line: server=NAME")
    ap.add_argument("--fail-with", type=int, help="Unary always ends with this status")
    ap.add_argument("--max-streams", type=int, help="SETTINGS_MAX_CONCURRENT_STREAMS")
    global ARGS
    args = ARGS = ap.parse_args()

    ident = lambda b: b  # noqa: E731
    echo = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep, ident, ident),
            "Who": grpc.unary_unary_rpc_method_handler(who, ident, ident),
        },
    )

    def check(request, context):
        # HealthCheckResponse { status = 1 (SERVING) | 2 (NOT_SERVING) }: field 1, varint.
        sick = args.unhealthy and os.path.exists(args.unhealthy)
        return b"\x08\x02" if sick else b"\x08\x01"

    health = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(check, ident, ident)},
    )
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    if args.max_streams:
        options.append(("grpc.max_concurrent_streams", args.max_streams))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=options,
                         maximum_concurrent_rpcs=None)
    server.add_generic_rpc_handlers((echo, health))
    if args.tls:
        with open(args.tls[0], "rb") as f:
            cert = f.read()
        with open(args.tls[1], "rb") as f:
            key = f.read()
        creds = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def stop(*_):
        say("stopping")
        threading.Thread(target=lambda: (server.stop(10).wait(), say("stopped"))).start()

    signal.signal(signal.SIGTERM, stop)
    say(f"listening {port}")
    server.wait_for_termination()


if __name__ == "__main__":
    main()
