//! Serialiser round trip: request and response heads that the strict parser accepts —
//! built from valid parts, or mutated from the state-machine test's samples — go through
//! the encoders ringway forwards with (`pipeline::forward::request_head` / `response_head`),
//! are parsed strictly again and must be the same message: method, target (the normalised
//! path and the query), status and reason, framing, and every end-to-end field in order
//! with its value, plus exactly the fields ringway adds itself. Encoding the re-parsed head
//! again must give the same bytes (with `Via` and the request id off, which by design grow
//! or move on each hop).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::BytesMut;

use ringway::compiled::Compiled;
use ringway::http::canned;
use ringway::http::response::parse_response_at;
use ringway::http::{
    parse_request, BodyFraming, Limits, RequestHead, ResponseFraming, ResponseHead, Version,
};
use ringway::pipeline::forward::{self, OutFraming, RequestCtx, ResponseCtx};

use crate::seeded::{mutate, Rng, Run};

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
via = ""
request_id_header = ""
[[upstreams]]
name = "app"
servers = ["127.0.0.1:1"]
[[routes]]
path_prefix = "/"
upstream = "app"
"#;

const TEST: &str = "serialised_heads_parse_back_to_the_same_message_and_reserialise_identically";

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn upstream_addr() -> SocketAddr {
    SocketAddr::new(PEER, 1)
}

const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"M-SEARCH",
    b"PURGE",
];

/// Field names with a role in forwarding, drawn besides random tokens.
const NAMES: &[&[u8]] = &[
    b"Connection",
    b"Keep-Alive",
    b"Proxy-Connection",
    b"TE",
    b"Trailer",
    b"Upgrade",
    b"Via",
    b"X-Forwarded-For",
    b"X-Forwarded-Proto",
    b"X-Forwarded-Host",
    b"Server",
    b"X-Powered-By",
    b"Accept",
    b"Cookie",
    b"Set-Cookie",
    b"X-Debug",
    b"X-Consumer",
];

/// Fields the generator writes itself, each at most once and with a valid value.
const FRAMING: &[&[u8]] = &[b"host", b"content-length", b"transfer-encoding", b"expect"];

/// tchar without '_' (refused in field names by default).
const TCHARS: &[u8] =
    b"!#$%&'*+-.^`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Path bytes: unreserved, sub-delims, ':' and '@' (pct-encodings are added whole).
const PCHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";

/// Whole pieces of a path: pct-encodings (one of a slash) and a dot-segment's dots.
const PIECES: &[&[u8]] = &[b"%41", b"%2F", b"%7e", b"%20", b".."];

const OPTIONS: &[&[u8]] = &[b"close", b"keep-alive"];

const HOSTS: &[&[u8]] = &[b"a.example", b"b-1.test:8080", b"[::1]:81", b"x"];

fn token(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..=rng.below(max)).map(|_| *rng.pick(TCHARS)).collect()
}

/// A field value: VCHAR and obs-text with SP/HTAB inside, never at either end.
fn value(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(12);
    (0..n)
        .map(|i| match rng.below(12) {
            0 if i > 0 && i + 1 < n => b' ',
            1 if i > 0 && i + 1 < n => b'\t',
            2 => 0x80 + rng.below(0x80) as u8,
            _ => b'!' + rng.below(94) as u8,
        })
        .collect()
}

/// A path ringway accepts: no `.` or `..` segment next to an escaped slash (which a backend
/// that decodes `%2F` would resolve, so ringway refuses it).
fn path(rng: &mut Rng) -> Vec<u8> {
    loop {
        let p = path_draw(rng);
        if !dot_segment_at_escaped_slash(&p) {
            return p;
        }
    }
}

/// Splits the path part of `p` at '/' and "%2F" and says whether a `.` or `..` piece has an
/// escaped slash on either side.
fn dot_segment_at_escaped_slash(p: &[u8]) -> bool {
    let end = p.iter().position(|&b| b == b'?').unwrap_or(p.len());
    let p = &p[..end];
    // (piece, escaped slash before it)
    let mut pieces: Vec<(&[u8], bool)> = Vec::new();
    let (mut start, mut i, mut escaped_before) = (0, 0, false);
    while i <= p.len() {
        let sep = if i == p.len() || p[i] == b'/' {
            Some(1)
        } else if p[i..].starts_with(b"%2F") {
            Some(3)
        } else {
            None
        };
        match sep {
            Some(n) => {
                pieces.push((&p[start..i], escaped_before));
                escaped_before = n == 3;
                let escaped_after = n == 3;
                if let Some(last) = pieces.last() {
                    if matches!(last.0, b"." | b"..") && (last.1 || escaped_after) {
                        return true;
                    }
                }
                i += n;
                start = i;
            }
            None => i += 1,
        }
    }
    false
}

fn path_draw(rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    for _ in 0..=rng.below(4) {
        p.extend_from_slice(b"/");
        for _ in 0..rng.below(6) {
            match rng.below(10) {
                0 => {
                    let piece = *rng.pick(PIECES);
                    p.extend_from_slice(piece);
                }
                _ => p.push(*rng.pick(PCHARS)),
            }
        }
    }
    if rng.one_in(3) {
        p.push(b'?');
        for _ in 0..rng.below(8) {
            p.push(*rng.pick(b"abc=&/?41-_.~"));
        }
    }
    p
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Random fields, some with a forwarding role; a `Connection` may name any of them.
fn fields(rng: &mut Rng, out: &mut Vec<u8>) {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for _ in 0..rng.below(8) {
        let mut name = if rng.one_in(2) {
            rng.pick(NAMES).to_vec()
        } else {
            token(rng, 10)
        };
        if FRAMING.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
            // A random token that happens to spell one (seen: "HOsT") would make the head
            // invalid or change its framing: those fields are added on purpose only.
            name.insert(0, b'x');
        }
        if name.eq_ignore_ascii_case(b"connection") {
            let mut list = Vec::new();
            for _ in 0..=rng.below(2) {
                if !list.is_empty() {
                    list.extend_from_slice(b", ");
                }
                match (rng.below(3), names.len()) {
                    (0, n) if n > 0 => list.extend_from_slice(&names[rng.below(n)]),
                    (1, _) => {
                        let option = *rng.pick(OPTIONS);
                        list.extend_from_slice(option);
                    }
                    _ => list.extend_from_slice(&token(rng, 6)),
                }
            }
            push_field(out, &name, &list);
        } else {
            let v = value(rng);
            push_field(out, &name, &v);
        }
        names.push(name);
    }
}

/// The framing field of a generated head: none, `Content-Length: n` or chunked (1.1 only).
fn framing(rng: &mut Rng, out: &mut Vec<u8>, http11: bool) {
    match rng.below(3) {
        0 => push_field(
            out,
            b"Content-Length",
            rng.below(100_000).to_string().as_bytes(),
        ),
        1 if http11 => push_field(out, b"Transfer-Encoding", b"chunked"),
        _ => {}
    }
}

/// A valid request head built from parts.
fn request_from_parts(rng: &mut Rng) -> Vec<u8> {
    let http11 = !rng.one_in(4);
    let mut out = rng.pick(METHODS).to_vec();
    out.push(b' ');
    out.extend_from_slice(&path(rng));
    out.extend_from_slice(if http11 {
        b" HTTP/1.1\r\n"
    } else {
        b" HTTP/1.0\r\n"
    });
    let host = *rng.pick(HOSTS);
    let host_at = rng.below(3);
    let mut rest = Vec::new();
    fields(rng, &mut rest);
    if http11 || rng.one_in(2) {
        // Host first, or after the others.
        if host_at == 0 {
            push_field(&mut out, b"Host", host);
        } else {
            push_field(&mut rest, b"Host", host);
        }
    }
    out.extend_from_slice(&rest);
    if rng.one_in(8) {
        push_field(&mut out, b"Expect", b"100-continue");
    }
    framing(rng, &mut out, http11);
    out.extend_from_slice(b"\r\n");
    out
}

/// A valid final response head built from parts.
fn response_from_parts(rng: &mut Rng) -> Vec<u8> {
    let http11 = !rng.one_in(4);
    let mut out: Vec<u8> = if http11 {
        b"HTTP/1.1 ".to_vec()
    } else {
        b"HTTP/1.0 ".to_vec()
    };
    let status = *rng.pick(&[
        200u16, 201, 204, 206, 301, 304, 400, 404, 418, 500, 502, 599,
    ]);
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    if !rng.one_in(5) {
        out.extend_from_slice(&value(rng));
    }
    out.extend_from_slice(b"\r\n");
    fields(rng, &mut out);
    framing(rng, &mut out, http11);
    out.extend_from_slice(b"\r\n");
    out
}

/// Names ringway owns on a forwarded request: never copied, written from what it saw (the
/// policy's identity fields among them).
fn owned_by_ringway_request(cfg: &Compiled, name: &[u8]) -> bool {
    [
        &b"content-length"[..],
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"via",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
        || cfg
            .policy
            .reserved_fields()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// The fields of `h` split into end-to-end ones (passed on in order) and the rest.
fn split_request_fields(cfg: &Compiled, h: &RequestHead) -> (Fields, Fields) {
    let (mut e2e, mut other) = (Vec::new(), Vec::new());
    for i in 0..h.headers.len() {
        let (n, v) = h.header_at(i);
        let keep = n.eq_ignore_ascii_case(b"host")
            || !(h.is_hop_by_hop(n) || owned_by_ringway_request(cfg, n));
        let to = if keep { &mut e2e } else { &mut other };
        to.push((n.to_vec(), v.to_vec()));
    }
    (e2e, other)
}

fn field(name: &str, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.to_vec())
}

fn encode_request(cfg: &Compiled, h: &RequestHead) -> Vec<u8> {
    let framing = match h.framing {
        BodyFraming::None => OutFraming::None,
        BodyFraming::Length(n) => OutFraming::Length(n),
        BodyFraming::Chunked => OutFraming::Chunked,
    };
    let ctx = RequestCtx {
        cfg,
        edits: &cfg.routes[0].request_edits,
        path: &h.path,
        peer: PEER,
        framing,
        upstream_addr: upstream_addr(),
        request_id: 7,
        grant: None,
        tls: false,
        client_cert: None,
        upgrade: None,
        traceparent: None,
        grpc_timeout: None,
    };
    let mut out = BytesMut::new();
    forward::request_head(&mut out, h, &ctx);
    out.to_vec()
}

/// Encodes `h`, parses the result, checks it is the same request and that encoding it
/// again gives the same bytes.
fn request_round_trip(cfg: &Compiled, h: &RequestHead) -> Result<(), String> {
    let wire = encode_request(cfg, h);
    let shown = || String::from_utf8_lossy(&wire).into_owned();
    let mut buf = BytesMut::from(&wire[..]);
    let mut h2 = RequestHead::default();
    match parse_request(&mut buf, &cfg.limits, &mut h2) {
        Ok(true) if buf.is_empty() => {}
        other => {
            return Err(format!(
                "encoded head does not parse whole: {other:?}: {:?}",
                shown()
            ))
        }
    }
    let mut target = h.path.clone();
    target.extend_from_slice(h.query());
    let same_line = h2.method() == h.method()
        && h2.target() == &target[..]
        && h2.version == Version::Http11
        && h2.framing == h.framing;
    if !same_line {
        return Err(format!("request line or framing changed: {:?}", shown()));
    }
    let (mut want, _) = split_request_fields(cfg, h);
    let (got, own) = split_request_fields(cfg, &h2);
    let host = h.header(b"host");
    if host.is_none() {
        want.push(field("Host", upstream_addr().to_string().as_bytes()));
    }
    if got != want {
        return Err(format!("end-to-end fields changed: {:?}", shown()));
    }
    let mut want_own = Vec::new();
    match h.framing {
        BodyFraming::None => {}
        BodyFraming::Length(n) => want_own.push(field("Content-Length", n.to_string().as_bytes())),
        BodyFraming::Chunked => want_own.push(field("Transfer-Encoding", b"chunked")),
    }
    want_own.push(field("X-Forwarded-For", b"127.0.0.1"));
    want_own.push(field("X-Forwarded-Proto", b"http"));
    if let Some(host) = host {
        want_own.push(field("X-Forwarded-Host", host));
    }
    if own != want_own {
        return Err(format!(
            "ringway's own fields are not as expected: {:?}",
            shown()
        ));
    }
    // A Host-less HTTP/1.0 request gains a Host on its first hop (and so an
    // X-Forwarded-Host on the next): from there on, encoding must be idempotent.
    let (once, h_once) = if host.is_some() {
        (wire.clone(), h2)
    } else {
        let once = encode_request(cfg, &h2);
        let mut h3 = RequestHead::default();
        match parse_request(&mut BytesMut::from(&once[..]), &cfg.limits, &mut h3) {
            Ok(true) => {}
            other => return Err(format!("second encoding does not parse: {other:?}")),
        }
        (once, h3)
    };
    let again = encode_request(cfg, &h_once);
    if again != once {
        return Err(format!(
            "encoding is not idempotent:\n{:?}\n{:?}",
            String::from_utf8_lossy(&once),
            String::from_utf8_lossy(&again)
        ));
    }
    Ok(())
}

/// How the client side of a response is set up.
#[derive(Clone, Copy, Debug)]
struct Side {
    is_head: bool,
    client: Version,
    close: bool,
}

/// The framing ringway sends a response with, as the HTTP/1.1 sink (`front::http1`) decides it.
fn out_framing(r: &ResponseHead, side: Side) -> (OutFraming, bool) {
    let mut close = side.close;
    let out = match r.framing {
        ResponseFraming::None if side.is_head || r.status == 304 => OutFraming::HeadersOnly,
        ResponseFraming::None if r.status == 204 => OutFraming::None,
        ResponseFraming::None => OutFraming::Length(0),
        ResponseFraming::Length(n) => OutFraming::Length(n),
        ResponseFraming::Chunked | ResponseFraming::CloseDelimited => {
            if side.client == Version::Http11 {
                OutFraming::Chunked
            } else {
                close = true;
                OutFraming::Close
            }
        }
    };
    (out, close)
}

fn encode_response(cfg: &Compiled, r: &ResponseHead, side: Side) -> Vec<u8> {
    let (framing, close) = out_framing(r, side);
    let ctx = ResponseCtx {
        cfg,
        edits: &cfg.routes[0].response_edits,
        framing,
        close,
        client_version: side.client,
        hsts: None,
        upgrade: None,
    };
    let mut out = BytesMut::new();
    forward::response_head(&mut out, r, &ctx);
    out.to_vec()
}

fn is_framing_field(n: &[u8]) -> bool {
    n.eq_ignore_ascii_case(b"content-length") || n.eq_ignore_ascii_case(b"transfer-encoding")
}

/// The fields of `r` a client gets from the upstream (end-to-end, not hidden), in order.
fn relayed_fields(cfg: &Compiled, r: &ResponseHead) -> Fields {
    (0..r.headers.len())
        .map(|i| r.header_at(i))
        .filter(|(n, _)| {
            !(r.is_hop_by_hop(n)
                || is_framing_field(n)
                || n.eq_ignore_ascii_case(b"via")
                || cfg.protect.hides(n))
        })
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

fn fields_named(r: &ResponseHead, pred: impl Fn(&[u8]) -> bool) -> Fields {
    (0..r.headers.len())
        .map(|i| r.header_at(i))
        .filter(|(n, _)| pred(n))
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

/// Encodes `r` for a client, parses the result, checks it is the same response and that
/// encoding it again gives the same bytes.
fn response_round_trip(cfg: &Compiled, r: &ResponseHead, side: Side) -> Result<(), String> {
    let wire = encode_response(cfg, r, side);
    let shown = || String::from_utf8_lossy(&wire).into_owned();
    let mut r2 = ResponseHead::default();
    match parse_response_at(&wire, &Limits::default(), side.is_head, &mut r2) {
        Ok(Some(n)) if n == wire.len() => {}
        other => {
            return Err(format!(
                "encoded head does not parse whole: {other:?}: {:?}",
                shown()
            ))
        }
    }
    let reason = if r.reason().is_empty() {
        canned::reason(r.status).as_bytes()
    } else {
        r.reason()
    };
    let (framing, close) = out_framing(r, side);
    let want_framing = match framing {
        OutFraming::None | OutFraming::Length(0) | OutFraming::HeadersOnly => ResponseFraming::None,
        OutFraming::Length(n) => ResponseFraming::Length(n),
        OutFraming::Chunked => ResponseFraming::Chunked,
        OutFraming::Close => ResponseFraming::CloseDelimited,
    };
    if r2.status != r.status
        || r2.reason() != reason
        || r2.version != Version::Http11
        || r2.framing != want_framing
    {
        return Err(format!("status line or framing changed: {:?}", shown()));
    }
    if relayed_fields(cfg, &r2) != relayed_fields(cfg, r) {
        return Err(format!("end-to-end fields changed: {:?}", shown()));
    }
    let want_framing_fields = match framing {
        // A response to HEAD or a 304 keeps the upstream's framing fields (TE for 1.1 only).
        OutFraming::HeadersOnly => fields_named(r, |n| {
            (n.eq_ignore_ascii_case(b"content-length") && !r.is_hop_by_hop(n))
                || (side.client == Version::Http11 && n.eq_ignore_ascii_case(b"transfer-encoding"))
        }),
        OutFraming::Length(n) => vec![field("Content-Length", n.to_string().as_bytes())],
        OutFraming::Chunked => vec![field("Transfer-Encoding", b"chunked")],
        OutFraming::None | OutFraming::Close => Vec::new(),
    };
    if fields_named(&r2, is_framing_field) != want_framing_fields {
        return Err(format!("framing fields are not as expected: {:?}", shown()));
    }
    let connection = r2.header(b"connection");
    let want_connection: Option<&[u8]> = match (close, side.client) {
        (true, _) => Some(&b"close"[..]),
        (false, Version::Http10) => Some(&b"keep-alive"[..]),
        (false, Version::Http11 | Version::Http2) => None,
    };
    let server = r2.headers.first().map(|_| r2.header_at(0));
    let want_server = cfg.protect.server.as_deref().map(|s| (&b"Server"[..], s));
    if connection != want_connection || server != want_server {
        return Err(format!(
            "Server or Connection is not as expected: {:?}",
            shown()
        ));
    }
    let again = encode_response(cfg, &r2, side);
    if again != wire {
        return Err(format!(
            "encoding is not idempotent:\n{:?}\n{:?}",
            shown(),
            String::from_utf8_lossy(&again)
        ));
    }
    Ok(())
}

/// What one case checked.
#[derive(Default)]
struct Counts {
    requests: usize,
    responses: usize,
    mutated_accepted: usize,
}

/// One case: a request head and a response head, each built from parts or mutated from a
/// sample; those the strict parser accepts go round.
fn run_case(cfg: &Compiled, rng: &mut Rng, counts: &mut Counts) -> Result<(), String> {
    let mutated = rng.one_in(2);
    let req = if mutated {
        let mut b = rng.pick(crate::REQUESTS).to_vec();
        mutate(rng, &mut b);
        b
    } else {
        request_from_parts(rng)
    };
    let mut h = RequestHead::default();
    match parse_request(&mut BytesMut::from(&req[..]), &cfg.limits, &mut h) {
        Ok(true) => {
            request_round_trip(cfg, &h)
                .map_err(|e| format!("{e}\nrequest: {:?}", String::from_utf8_lossy(&req)))?;
            counts.requests += 1;
            counts.mutated_accepted += usize::from(mutated);
        }
        _ if mutated => {}
        other => {
            return Err(format!(
                "a request built from valid parts does not parse: {other:?}: {:?}",
                String::from_utf8_lossy(&req)
            ))
        }
    }
    let resp = if mutated {
        let mut b = rng.pick(crate::RESPONSES).to_vec();
        mutate(rng, &mut b);
        b
    } else {
        response_from_parts(rng)
    };
    let side = Side {
        is_head: rng.one_in(4),
        client: if rng.one_in(4) {
            Version::Http10
        } else {
            Version::Http11
        },
        close: rng.one_in(3),
    };
    // The final head: ringway skips interim ones and never re-encodes them.
    let mut r = ResponseHead::default();
    let mut at = 0;
    let parsed = loop {
        match parse_response_at(&resp[at..], &Limits::default(), side.is_head, &mut r) {
            Ok(Some(n)) if r.is_informational() => at += n,
            other => break other,
        }
    };
    match parsed {
        Ok(Some(_)) => {
            response_round_trip(cfg, &r, side).map_err(|e| {
                format!(
                    "{e}\nresponse ({side:?}): {:?}",
                    String::from_utf8_lossy(&resp)
                )
            })?;
            counts.responses += 1;
            counts.mutated_accepted += usize::from(mutated);
        }
        _ if mutated => {}
        other => {
            return Err(format!(
                "a response built from valid parts does not parse: {other:?}: {:?}",
                String::from_utf8_lossy(&resp)
            ))
        }
    }
    Ok(())
}

#[test]
fn serialised_heads_parse_back_to_the_same_message_and_reserialise_identically() {
    let cfg = ringway::config::from_str(CONFIG, "roundtrip.toml").expect("test config parses");
    let cfg = Compiled::build(&cfg, "roundtrip.toml").expect("test config builds");
    let run = Run::from_env();
    let total = run.cases();
    let started = std::time::Instant::now();
    let mut counts = Counts::default();
    for i in 0..total {
        let mut rng = Rng::new(run.case_seed(i));
        if let Err(e) = run_case(&cfg, &mut rng, &mut counts) {
            panic!("{}\n{e}", run.describe(TEST, i));
        }
    }
    eprintln!(
        "{total} round-trip cases (run seed {:#018x}): {} request heads and {} response heads \
         ({} of them mutated) round-tripped in {:?}",
        run.seed,
        counts.requests,
        counts.responses,
        counts.mutated_accepted,
        started.elapsed()
    );
    if run.replay.is_none() {
        assert!(
            counts.mutated_accepted > (total / 20) as usize,
            "only {} mutated heads parsed in {total} cases (run seed {:#018x})",
            counts.mutated_accepted,
            run.seed
        );
    }
}
