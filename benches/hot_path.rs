//! Micro-benchmarks of the per-request CPU work that does not touch a socket: parsing a
//! request head, routing it, and re-serialising it for the upstream. Figures are for
//! comparing revisions on one machine; end-to-end numbers come from ../shared/bench.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};

use ringway::compiled::Compiled;
use ringway::http::{parse_request, Limits, RequestHead, ResponseHead};
use ringway::proxy::forward::{self, OutFraming, RequestCtx};

const REQUEST: &[u8] = b"GET /v1/users/42?fields=name HTTP/1.1\r\nHost: api.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\
Connection: keep-alive\r\nX-Request-Id: 0123456789abcdef\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Content-Length: 100\r\nDate: Tue, 24 Nov 2026 22:00:00 GMT\r\nConnection: keep-alive\r\n\r\n";

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
[[upstreams]]
name = "app"
servers = ["127.0.0.1:9001"]
[[routes]]
path_prefix = "/admin"
respond = { status = 403 }
[[routes]]
host = "*.internal.example.com"
path_prefix = "/"
upstream = "app"
[[routes]]
host = "api.example.com"
path_prefix = "/v1/"
strip_prefix = true
upstream = "app"
[[routes]]
host = "api.example.com"
path = "/v1/health"
respond = { status = 200 }
[[routes]]
path_prefix = "/"
upstream = "app"
"#;

fn compiled() -> Compiled {
    let cfg = ringway::config::from_str(CONFIG, "bench.toml").expect("bench config parses");
    Compiled::build(&cfg, "bench.toml").expect("bench config builds")
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut head = RequestHead::default();
    let mut buf = BytesMut::with_capacity(4096);
    c.bench_function("parse_request_head", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(REQUEST);
            let done = parse_request(&mut buf, &limits, &mut head);
            black_box(done.is_ok())
        })
    });

    let mut resp = ResponseHead::default();
    c.bench_function("parse_response_head", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(RESPONSE);
            let done = ringway::http::parse_response(&mut buf, &limits, false, &mut resp);
            black_box(done.is_ok())
        })
    });

    let cfg = compiled();
    buf.clear();
    buf.extend_from_slice(REQUEST);
    let parsed = parse_request(&mut buf, &limits, &mut head);
    assert!(matches!(parsed, Ok(true)));
    c.bench_function("route_lookup", |b| {
        b.iter(|| black_box(cfg.route(black_box(&head)).is_some()))
    });

    let route = cfg.route(&head).expect("bench request routes");
    let mut out = BytesMut::with_capacity(4096);
    let mut path = Vec::with_capacity(256);
    let upstream_addr = "127.0.0.1:9001".parse().expect("addr");
    c.bench_function("encode_upstream_head", |b| {
        b.iter(|| {
            out.clear();
            path.clear();
            route.rewrite.apply(&head.path, &mut path);
            let ctx = RequestCtx {
                cfg: &cfg,
                edits: &route.request_edits,
                path: &path,
                peer: std::net::IpAddr::from([127, 0, 0, 1]),
                framing: OutFraming::None,
                upstream_addr,
                request_id: 42,
            };
            forward::request_head(&mut out, &head, &ctx);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
