#!/usr/bin/env python3
"""gRPC calls with grpcio (the C-core implementation), for tests/grpc.rs.

    client.py HOST:PORT /pkg.Service/Method [--timeout S] [--size BYTES]
              [--stream N] [--meta KEY=VALUE ...] [--kind KIND] [--cancel-after S]
              [--concurrent N] [--request TEXT]

Without --stream: one unary call sending --size bytes (default b"ping", or --request). With
--stream N: a bidirectional call sending N messages of --size bytes, each different, checking
that what comes back is each of them in order. --kind:
- "interleave": bidirectional, each message sent only once the reply to the one before came
  (so replies must flow before the client half-closes);
- "server": unary request (--request), streamed responses;
- "client": --stream N messages of --size bytes, one response.
--cancel-after S cancels a unary call after S seconds; --concurrent N makes N unary calls at
once on one channel; --gzip compresses the messages (grpc-encoding: gzip). Metadata keys ending in -bin take hex values. No code generation: bytes
in, bytes out, over h2c. Prints one JSON object: {"code": "OK" | a grpc.StatusCode name,
"details", "responses" (count), "echoed" (every response equal to what was sent, in order),
"sizes" (each response's length), "reply" (the first response as text, if it is),
"trailing": [[key, value], ...] (binary values as hex)}.
"""
import queue
import time
import argparse
import json

import grpc


def message(i, size):
    if size is None:
        return b"ping"
    return bytes([97 + (i % 26)]) * size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("method")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--size", type=int)
    ap.add_argument("--stream", type=int)
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--kind")
    ap.add_argument("--cancel-after", type=float)
    ap.add_argument("--concurrent", type=int)
    ap.add_argument("--request")
    ap.add_argument("--gzip", action="store_true", help="compress messages (grpc-encoding)")
    args = ap.parse_args()
    metadata = []
    for kv in args.meta:
        k, v = kv.split("=", 1)
        metadata.append((k, bytes.fromhex(v) if k.endswith("-bin") else v))
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    out = {"code": "OK", "details": "", "responses": 0, "echoed": False, "trailing": []}
    compression = grpc.Compression.Gzip if args.gzip else None
    with grpc.insecure_channel(args.addr, options=options, compression=compression) as channel:
        try:
            first = args.request.encode() if args.request is not None else message(0, args.size)
            if args.concurrent:
                call = channel.unary_unary(args.method)
                sent = [message(i, args.size or 10) for i in range(args.concurrent)]
                fs = [call.future(m, timeout=args.timeout, metadata=metadata) for m in sent]
                got = [f.result() for f in fs]
                info = fs[-1]
            elif args.cancel_after is not None:
                call = channel.unary_unary(args.method)
                sent = [first]
                f = call.future(first, timeout=args.timeout, metadata=metadata)
                time.sleep(args.cancel_after)
                f.cancel()
                got = [f.result()]
                info = f
            elif args.kind == "server":
                call = channel.unary_stream(args.method)
                it = call(first, timeout=args.timeout, metadata=metadata)
                got = list(it)
                sent = []
                info = it
            elif args.kind == "client":
                call = channel.stream_unary(args.method)
                sent = [message(i, args.size) for i in range(args.stream)]
                response, info = call.with_call(iter(sent), timeout=args.timeout,
                                                metadata=metadata)
                got = [response]
            elif args.kind == "interleave":
                call = channel.stream_stream(args.method)
                sent = [message(i, args.size) for i in range(args.stream)]
                replies = queue.Queue()

                def requests():
                    for i, m in enumerate(sent):
                        if i > 0:
                            # The reply to the message before came first.
                            replies.get(timeout=args.timeout)
                        yield m

                it = call(requests(), timeout=args.timeout, metadata=metadata)
                got = []
                for r in it:
                    got.append(r)
                    replies.put(r)
                info = it
            elif args.stream is None:
                call = channel.unary_unary(args.method)
                sent = [first]
                response, info = call.with_call(sent[0], timeout=args.timeout, metadata=metadata)
                got = [response]
            else:
                call = channel.stream_stream(args.method)
                sent = [message(i, args.size) for i in range(args.stream)]
                it = call(iter(sent), timeout=args.timeout, metadata=metadata)
                got = list(it)
                info = it
            out["responses"] = len(got)
            out["echoed"] = got == sent
            out["sizes"] = [len(g) for g in got]
            try:
                out["reply"] = got[0].decode() if got else ""
            except UnicodeDecodeError:
                pass
            out["trailing"] = meta(info.trailing_metadata())
        except grpc.FutureCancelledError:
            out.update(code="CANCELLED", details="cancelled by the client")
        except grpc.RpcError as e:
            out.update(code=e.code().name, details=e.details() or "",
                       trailing=meta(e.trailing_metadata()))
    print(json.dumps(out))


def meta(md):
    return [[k, v.hex() if isinstance(v, bytes) else v] for k, v in (md or [])]


if __name__ == "__main__":
    main()
