//! Micro-benchmarks of the per-request head work that does not touch a socket: parsing a
//! request head (a small one and a realistic 30-field one), parsing a response head,
//! re-serialising the request for the upstream and the response for the client, and the
//! whole head pipeline (parse -> route -> rewrite -> encode -> parse response -> encode) as
//! one benchmark. Routing tables and chunked bodies have their own files (`routing.rs`,
//! `chunked.rs`). All inputs and buffers are built before the timed loops; each iteration
//! releases the previous head's bytes first so the input buffer is reused, not reallocated.
//! Figures are for comparing revisions on one machine; end-to-end numbers come from
//! ../shared/bench and tools/loadgen.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};

use ringway::compiled::Compiled;
use ringway::http::{
    parse_request, parse_response, Limits, RequestHead, ResponseFraming, ResponseHead, Version,
};
use ringway::pipeline::forward::{self, OutFraming, RequestCtx, ResponseCtx};

const REQUEST: &[u8] = b"GET /v1/users/42?fields=name HTTP/1.1\r\nHost: api.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\
Connection: keep-alive\r\nX-Request-Id: 0123456789abcdef\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Content-Length: 100\r\nDate: Tue, 24 Nov 2026 22:00:00 GMT\r\nConnection: keep-alive\r\n\r\n";

/// The header fields of a browser-originated API call as it reaches a gateway behind a CDN.
const FIELDS_30: [(&str, &str); 30] = [
    ("Host", "api.example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
    ("Accept", "application/json, text/plain, */*"),
    ("Accept-Language", "en-GB,en;q=0.9,de;q=0.8"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Referer", "https://app.example.com/dashboard/orders?page=3"),
    ("Origin", "https://app.example.com"),
    ("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
    ("Cookie", "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark; _ga=GA1.2.1234567890.1700000000; csrftoken=Zm9vYmFyYmF6cXV4"),
    ("Connection", "keep-alive"),
    ("Cache-Control", "no-cache"),
    ("Pragma", "no-cache"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "cors"),
    ("Sec-Fetch-Site", "same-site"),
    ("Sec-Ch-Ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\""),
    ("Sec-Ch-Ua-Mobile", "?0"),
    ("Sec-Ch-Ua-Platform", "\"Linux\""),
    ("DNT", "1"),
    ("Upgrade-Insecure-Requests", "1"),
    ("X-Request-Id", "7f3c9a2e-5b1d-4c8e-9f0a-1b2c3d4e5f60"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Client-Version", "web-4.12.0"),
    ("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("Tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ("Baggage", "userId=alice,serverNode=DF%2028,isProduction=false"),
    ("If-None-Match", "W/\"5e8f-1a2b3c4d\""),
    ("Priority", "u=1, i"),
    ("Via", "1.1 cdn-edge-17"),
];

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
response_headers = { set = { "Cache-Control" = "no-store" }, remove = ["Server"] }
[[routes]]
host = "api.example.com"
path = "/v1/health"
respond = { status = 200 }
[[routes]]
path_prefix = "/"
upstream = "app"
"#;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn compiled() -> Compiled {
    let cfg = ringway::config::from_str(CONFIG, "bench.toml").expect("bench config parses");
    Compiled::build(&cfg, "bench.toml").expect("bench config builds")
}

/// `GET /v1/users/42/orders?... HTTP/1.1` with the 30 fields of `FIELDS_30`.
fn request_30() -> Vec<u8> {
    let mut r = b"GET /v1/users/42/orders?limit=20&cursor=eyJpZCI6MTIzNH0 HTTP/1.1\r\n".to_vec();
    for (name, value) in FIELDS_30 {
        r.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// Parses `raw` into `head` once, outside any timed loop, and checks it worked.
fn parsed_request(raw: &[u8], fields: usize) -> RequestHead {
    let mut head = RequestHead::default();
    let mut buf = BytesMut::from(raw);
    let done = parse_request(&mut buf, &Limits::default(), &mut head);
    assert!(matches!(done, Ok(true)), "bench request parses: {done:?}");
    assert_eq!(head.headers.len(), fields);
    head
}

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let big = request_30();
    parsed_request(&big, 30);
    let mut head = RequestHead::default();
    let mut buf = BytesMut::with_capacity(4096);
    let mut g = c.benchmark_group("parse_request_head");
    for (name, raw) in [("small", REQUEST), ("30_headers", big.as_slice())] {
        g.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(raw);
                let done = parse_request(&mut buf, &limits, &mut head);
                black_box(done.is_ok())
            })
        });
    }
    g.finish();

    let mut resp = ResponseHead::default();
    c.bench_function("parse_response_head", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(RESPONSE);
            let done = parse_response(&mut buf, &limits, false, &mut resp);
            black_box(done.is_ok())
        })
    });
}

fn encode(c: &mut Criterion) {
    let cfg = compiled();
    let upstream_addr: SocketAddr = "127.0.0.1:9001".parse().expect("addr");
    let mut out = BytesMut::with_capacity(8192);
    let mut path = Vec::with_capacity(256);
    let mut g = c.benchmark_group("encode");
    let big = request_30();
    for (name, raw, fields) in [("small", REQUEST, 6), ("30_headers", big.as_slice(), 30)] {
        let head = parsed_request(raw, fields);
        let route = cfg.route(&head).expect("bench request routes");
        g.bench_function(format!("upstream_request_head/{name}"), |b| {
            b.iter(|| {
                out.clear();
                path.clear();
                route.rewrite.apply(&head.path, &mut path);
                let ctx = RequestCtx {
                    cfg: &cfg,
                    edits: &route.request_edits,
                    path: &path,
                    peer: PEER,
                    framing: OutFraming::None,
                    upstream_addr,
                    request_id: 42,
                    grant: None,
                    tls: false,
                    client_cert: None,
                    upgrade: None,
                    traceparent: None,
                    grpc_timeout: None,
                };
                forward::request_head(&mut out, black_box(&head), &ctx);
                black_box(out.len())
            })
        });
    }

    let head = parsed_request(REQUEST, 6);
    let route = cfg.route(&head).expect("bench request routes");
    let mut resp = ResponseHead::default();
    let mut rbuf = BytesMut::from(RESPONSE);
    let done = parse_response(&mut rbuf, &Limits::default(), false, &mut resp);
    assert!(matches!(done, Ok(true)), "bench response parses: {done:?}");
    g.bench_function("client_response_head", |b| {
        b.iter(|| {
            out.clear();
            let ctx = ResponseCtx {
                cfg: &cfg,
                edits: &route.response_edits,
                framing: OutFraming::Length(100),
                close: false,
                client_version: Version::Http11,
                hsts: None,
                upgrade: None,
            };
            forward::response_head(&mut out, black_box(&resp), &ctx);
            black_box(out.len())
        })
    });
    g.finish();
}

/// Reused state of the head pipeline: one connection's buffers, warm after the first run.
struct Pipeline {
    cfg: Compiled,
    upstream_addr: SocketAddr,
    head: RequestHead,
    resp: ResponseHead,
    cin: BytesMut,
    ubuf: BytesMut,
    up_out: BytesMut,
    client_out: BytesMut,
    path: Vec<u8>,
}

impl Pipeline {
    fn new() -> Pipeline {
        Pipeline {
            cfg: compiled(),
            upstream_addr: "127.0.0.1:9001".parse().expect("addr"),
            head: RequestHead::default(),
            resp: ResponseHead::default(),
            cin: BytesMut::with_capacity(8192),
            ubuf: BytesMut::with_capacity(8192),
            up_out: BytesMut::with_capacity(8192),
            client_out: BytesMut::with_capacity(8192),
            path: Vec::with_capacity(256),
        }
    }

    /// Parse request -> route -> rewrite -> upstream head -> parse response -> client head.
    /// Returns the bytes written to both sides, 0 if any step refused the input.
    fn run(&mut self, request: &[u8], response: &[u8]) -> usize {
        let limits = self.cfg.limits;
        self.cin.clear();
        self.cin.extend_from_slice(request);
        if !matches!(
            parse_request(&mut self.cin, &limits, &mut self.head),
            Ok(true)
        ) {
            return 0;
        }
        let Some(route) = self.cfg.route(&self.head) else {
            return 0;
        };
        self.path.clear();
        route.rewrite.apply(&self.head.path, &mut self.path);
        self.up_out.clear();
        let req_ctx = RequestCtx {
            cfg: &self.cfg,
            edits: &route.request_edits,
            path: &self.path,
            peer: PEER,
            framing: OutFraming::None,
            upstream_addr: self.upstream_addr,
            request_id: 42,
            grant: None,
            tls: false,
            client_cert: None,
            upgrade: None,
            traceparent: None,
            grpc_timeout: None,
        };
        forward::request_head(&mut self.up_out, &self.head, &req_ctx);
        self.ubuf.clear();
        self.ubuf.extend_from_slice(response);
        let was_head = self.head.is_head();
        if !matches!(
            parse_response(&mut self.ubuf, &limits, was_head, &mut self.resp),
            Ok(true)
        ) {
            return 0;
        }
        let framing = match self.resp.framing {
            ResponseFraming::Length(n) => OutFraming::Length(n),
            _ => OutFraming::Chunked,
        };
        self.client_out.clear();
        let resp_ctx = ResponseCtx {
            cfg: &self.cfg,
            edits: &route.response_edits,
            framing,
            close: !self.head.keep_alive,
            client_version: self.head.version,
            hsts: None,
            upgrade: None,
        };
        forward::response_head(&mut self.client_out, &self.resp, &resp_ctx);
        self.up_out.len() + self.client_out.len()
    }
}

/// Everything the gateway does to heads for one proxied exchange, minus the syscalls.
fn pipeline(c: &mut Criterion) {
    let raw = request_30();
    let mut p = Pipeline::new();
    assert!(p.run(&raw, RESPONSE) > 0, "bench pipeline runs");
    assert_eq!(
        p.path, b"/users/42/orders",
        "bench request takes the strip_prefix route"
    );
    c.bench_function("pipeline/heads_30_header_request", |b| {
        b.iter(|| black_box(p.run(black_box(&raw), RESPONSE)))
    });
}

criterion_group!(benches, parse, encode, pipeline);
criterion_main!(benches);
