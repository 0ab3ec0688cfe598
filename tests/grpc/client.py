#!/usr/bin/env python3
"""One unary gRPC call with grpcio (the C-core implementation), for tests/grpc.rs.

    client.py HOST:PORT /pkg.Service/Method [TIMEOUT_S]

Sends b"ping" (no code generation: bytes in, bytes out) over h2c and prints one JSON
object: {"code": "OK" | a grpc.StatusCode name, "details": ..., "response": ...,
"trailing": [[key, value], ...]} (binary values as hex).
"""
import json
import sys

import grpc


def main():
    addr, method = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    with grpc.insecure_channel(addr) as channel:
        call = channel.unary_unary(method)
        try:
            response, info = call.with_call(b"ping", timeout=timeout)
            out = {"code": "OK", "details": "", "response": response.decode("latin-1"),
                   "trailing": meta(info.trailing_metadata())}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details() or "", "response": None,
                   "trailing": meta(e.trailing_metadata())}
    print(json.dumps(out))


def meta(md):
    return [[k, v.hex() if isinstance(v, bytes) else v] for k, v in (md or [])]


if __name__ == "__main__":
    main()
