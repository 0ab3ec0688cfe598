#!/usr/bin/env python3
"""gRPC calls with grpcio (the C-core implementation), for tests/grpc.rs.

    client.py HOST:PORT /pkg.Service/Method [--timeout S] [--size BYTES]
              [--stream N] [--meta KEY=VALUE ...]

Without --stream: one unary call sending --size bytes (default b"ping"). With --stream N: a
bidirectional call sending N messages of --size bytes, each different, checking that what
comes back is each of them in order. Metadata keys ending in -bin take hex values. No code
generation: bytes in, bytes out, over h2c. Prints one JSON object: {"code": "OK" | a
grpc.StatusCode name, "details", "responses" (count), "echoed" (every response equal to
what was sent, in order), "trailing": [[key, value], ...] (binary values as hex)}.
"""
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
    args = ap.parse_args()
    metadata = []
    for kv in args.meta:
        k, v = kv.split("=", 1)
        metadata.append((k, bytes.fromhex(v) if k.endswith("-bin") else v))
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    out = {"code": "OK", "details": "", "responses": 0, "echoed": False, "trailing": []}
    with grpc.insecure_channel(args.addr, options=options) as channel:
        try:
            if args.stream is None:
                call = channel.unary_unary(args.method)
                sent = [message(0, args.size)]
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
            out["trailing"] = meta(info.trailing_metadata())
        except grpc.RpcError as e:
            out.update(code=e.code().name, details=e.details() or "",
                       trailing=meta(e.trailing_metadata()))
    print(json.dumps(out))


def meta(md):
    return [[k, v.hex() if isinstance(v, bytes) else v] for k, v in (md or [])]


if __name__ == "__main__":
    main()
