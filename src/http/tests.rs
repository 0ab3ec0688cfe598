//! Unit tests of the sans-IO HTTP layer: one rule per test, plus a seeded random-mutation
//! round trip over the request parser and the chunked decoder.

use bytes::BytesMut;

use super::canned::Canned;
use super::chunked::{put_chunk_header, ChunkEvent, ChunkedDecoder};
use super::{
    parse_request, parse_response, BodyFraming, Limits, ParseError, RequestHead, ResponseFraming,
    ResponseHead, Version,
};

fn req(bytes: &[u8]) -> Result<(RequestHead, BytesMut), ParseError> {
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    match parse_request(&mut buf, &Limits::default(), &mut head)? {
        true => Ok((head, buf)),
        false => Err(ParseError::Bad("incomplete")),
    }
}

fn status(bytes: &[u8]) -> u16 {
    req(bytes).err().map(|e| e.status()).unwrap_or(0)
}

fn resp(bytes: &[u8], head_req: bool) -> Result<ResponseHead, ParseError> {
    let mut buf = BytesMut::from(bytes);
    let mut head = ResponseHead::default();
    match parse_response(&mut buf, &Limits::default(), head_req, &mut head)? {
        true => Ok(head),
        false => Err(ParseError::Bad("incomplete")),
    }
}

#[test]
fn a_simple_get_parses_with_spans_into_the_head() {
    let (h, rest) = req(b"GET /a/../b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-A:  v  \r\n\r\n")
        .expect("valid");
    assert_eq!(h.method(), b"GET");
    assert_eq!(h.target(), b"/a/../b?x=1");
    assert_eq!(h.path, b"/b");
    assert_eq!(h.query(), b"?x=1");
    assert_eq!(h.host_lower, b"example.com");
    assert_eq!(h.header(b"x-a"), Some(&b"v"[..]));
    assert_eq!(h.version, Version::Http11);
    assert_eq!(h.framing, BodyFraming::None);
    assert!(h.keep_alive);
    assert!(rest.is_empty());
}

#[test]
fn an_incomplete_head_consumes_nothing() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n"[..]);
    let mut h = RequestHead::default();
    assert_eq!(
        parse_request(&mut buf, &Limits::default(), &mut h),
        Ok(false)
    );
    assert_eq!(buf.len(), 25);
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let mut buf = BytesMut::from(
        &b"\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"[..],
    );
    let mut h = RequestHead::default();
    assert_eq!(
        parse_request(&mut buf, &Limits::default(), &mut h),
        Ok(true)
    );
    assert_eq!(h.target(), b"/1");
    assert_eq!(
        parse_request(&mut buf, &Limits::default(), &mut h),
        Ok(true)
    );
    assert_eq!(h.target(), b"/2");
    assert_eq!(h.framing, BodyFraming::Length(2));
    assert_eq!(&buf[..], b"hi");
}

#[test]
fn framing_rules_are_strict() {
    let h = |extra: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
    assert_eq!(
        status(h("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n").as_bytes()),
        400
    );
    assert_eq!(
        status(h("Content-Length: 1\r\nContent-Length: 1\r\n").as_bytes()),
        400
    );
    assert_eq!(status(h("Content-Length: 1, 1\r\n").as_bytes()), 400);
    assert_eq!(status(h("Content-Length: +1\r\n").as_bytes()), 400);
    assert_eq!(
        status(h("Content-Length: 18446744073709551616\r\n").as_bytes()),
        400
    );
    assert_eq!(
        status(h("Transfer-Encoding: gzip, chunked\r\n").as_bytes()),
        501
    );
    assert_eq!(
        status(h("Transfer-Encoding: chunked, gzip\r\n").as_bytes()),
        400
    );
    assert_eq!(status(h("Transfer-Encoding: gzip\r\n").as_bytes()), 400);
    assert_eq!(
        status(h("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n").as_bytes()),
        400
    );
    assert_eq!(status(h("Transfer-Encoding: \r\n").as_bytes()), 400);
    assert_eq!(
        status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    let (ok, _) = req(h("Transfer-Encoding: Chunked\r\n").as_bytes()).expect("chunked");
    assert_eq!(ok.framing, BodyFraming::Chunked);
    let (ok, _) = req(h("Content-Length: 0\r\n").as_bytes()).expect("empty");
    assert_eq!(ok.framing, BodyFraming::None);
    let (ok, _) = req(h("Content-Length: 18446744073709551615\r\n").as_bytes()).expect("max");
    assert_eq!(ok.framing, BodyFraming::Length(u64::MAX));
}

#[test]
fn syntax_rules_are_strict() {
    for bad in [
        &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX(y: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /#f HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://b/ HTTP/1.1\r\n\r\n",
        b"GET http://b/ HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /x/..%2fadmin HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n",
    ] {
        assert_eq!(status(bad), 400, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn connect_is_not_implemented_whatever_its_target() {
    assert_eq!(
        status(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
        501
    );
    assert_eq!(status(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 501);
}

#[test]
fn the_switches_let_underscores_and_options_asterisk_in() {
    let limits = Limits {
        allow_underscores: true,
        allow_options_asterisk: true,
        ..Limits::default()
    };
    let parse = |b: &[u8]| {
        let mut head = RequestHead::default();
        parse_request(&mut BytesMut::from(b), &limits, &mut head).map(|_| head)
    };
    let h = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\n\r\n").expect("underscore");
    assert_eq!(h.header(b"x_y"), Some(&b"1"[..]));
    assert!(!h.asterisk);
    let h = parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").expect("asterisk");
    assert!(h.asterisk);
    assert_eq!(h.path, b"/");
    assert_eq!(h.query(), b"");
    assert!(parse(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n").is_err());
    assert!(parse(b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n").is_err());
}

#[test]
fn absolute_form_authority_replaces_host() {
    let (h, _) = req(b"GET http://A:80/x HTTP/1.1\r\nHost: a\r\n\r\n").expect("valid");
    assert_eq!(h.path, b"/x");
    assert_eq!(h.host_lower, b"a");
    let (h, _) = req(b"GET http://Good.example:8080/x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        .expect("another Host is ignored");
    assert_eq!(h.host_lower, b"good.example");
    assert_eq!(h.header(b"host"), Some(&b"Good.example:8080"[..]));
    assert_eq!(
        h.authority.map(|a| a.get(&h.buf)),
        Some(&b"Good.example:8080"[..])
    );
    let (h, _) = req(b"GET http://a.example/x HTTP/1.0\r\n\r\n").expect("1.0 without Host");
    assert_eq!(h.host_lower, b"a.example");
    assert_eq!(h.header(b"host"), None);
    let (h, _) = req(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").expect("ipv6 host");
    assert_eq!(h.host_lower, b"[::1]");
}

#[test]
fn keep_alive_follows_version_and_connection() {
    let ka = |b: &[u8]| req(b).expect("valid").0.keep_alive;
    assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    let (h, _) = req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-hop, close\r\nX-Hop: 1\r\n\r\n")
        .expect("valid");
    assert!(h.is_hop_by_hop(b"X-HOP"));
    assert!(h.is_hop_by_hop(b"te"));
    assert!(!h.is_hop_by_hop(b"host"));
}

#[test]
fn limits_map_to_431_and_414() {
    let limits = Limits {
        max_header_bytes: 1024,
        max_headers: 3,
        max_uri_bytes: 64,
        ..Limits::default()
    };
    let run = |b: &[u8]| {
        let mut buf = BytesMut::from(b);
        parse_request(&mut buf, &limits, &mut RequestHead::default())
    };
    let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(run(many), Err(ParseError::TooManyHeaders));
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(100));
    assert_eq!(run(long_uri.as_bytes()), Err(ParseError::UriTooLong));
    let partial_uri = format!("GET /{}", "u".repeat(100));
    assert_eq!(run(partial_uri.as_bytes()), Err(ParseError::UriTooLong));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(2000)
    );
    assert_eq!(run(big.as_bytes()), Err(ParseError::HeadTooLarge));
    let endless = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "v".repeat(2000));
    assert_eq!(run(endless.as_bytes()), Err(ParseError::HeadTooLarge));
}

#[test]
fn response_framing_follows_status_method_and_fields() {
    let f = |b: &[u8], head: bool| resp(b, head).expect("valid").framing;
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        ResponseFraming::Length(5)
    );
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
        ResponseFraming::None
    );
    assert_eq!(
        f(b"HTTP/1.1 204 No Content\r\n\r\n", false),
        ResponseFraming::None
    );
    assert_eq!(
        f(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false
        ),
        ResponseFraming::None
    );
    assert_eq!(
        f(b"HTTP/1.1 100 Continue\r\n\r\n", false),
        ResponseFraming::None
    );
    assert_eq!(
        f(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        ),
        ResponseFraming::Chunked
    );
    assert_eq!(
        f(b"HTTP/1.0 200 OK\r\n\r\n", false),
        ResponseFraming::CloseDelimited
    );
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\n\r\n", false),
        ResponseFraming::CloseDelimited
    );
    assert!(
        !resp(b"HTTP/1.1 200 OK\r\n\r\n", false)
            .expect("valid")
            .keep_alive
    );
    assert!(
        !resp(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false
        )
        .expect("valid")
        .keep_alive
    );
    assert!(
        resp(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false
        )
        .expect("valid")
        .keep_alive
    );
    let r = resp(
        b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .expect("valid");
    assert_eq!(r.reason(), b"Not Found Here");
}

#[test]
fn invalid_responses_are_rejected() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n X: folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 600 High\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
    ] {
        assert!(
            resp(bad, false).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// Feeds `input` through a decoder `step` bytes at a time; returns the payload.
fn decode(input: &[u8], step: usize) -> Result<Vec<u8>, ParseError> {
    decode_all(input, step, ChunkedDecoder::new(64, 256)).map(|(payload, _)| payload)
}

/// As `decode`, with `dec`; also returns the trailer fields it handed out.
fn decode_all(
    input: &[u8],
    step: usize,
    mut dec: ChunkedDecoder,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), ParseError> {
    let mut out = Vec::new();
    let mut trailers = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        match dec.step(&buf)? {
            ChunkEvent::Data { start, end } => {
                out.extend_from_slice(&buf[start..end]);
                buf.drain(..end);
            }
            ChunkEvent::Trailer {
                start,
                end,
                consumed,
            } => {
                trailers.push(buf[start..end].to_vec());
                buf.drain(..consumed);
            }
            ChunkEvent::NeedMore { consumed } => {
                buf.drain(..consumed);
                if fed >= input.len() {
                    return Err(ParseError::BadChunk("truncated"));
                }
                let n = step.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            ChunkEvent::Done { consumed } => {
                buf.drain(..consumed);
                assert!(dec.is_done());
                return Ok((out, trailers));
            }
        }
    }
}

#[test]
fn trailer_fields_are_handed_out_whole_at_any_feed_size_when_asked_for() {
    let body = b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\nX-Sum:\tab c \r\n\r\n";
    for step in [1, 2, 3, 7, 100] {
        let (payload, trailers) =
            decode_all(body, step, ChunkedDecoder::new(64, 256).with_trailers()).expect("valid");
        assert_eq!(payload, b"hello", "step {step}");
        assert_eq!(
            trailers,
            [&b"grpc-status: 0"[..], &b"X-Sum:\tab c "[..]],
            "step {step}"
        );
        // Not asked for: dropped.
        let (_, none) = decode_all(body, step, ChunkedDecoder::new(64, 256)).expect("valid");
        assert!(none.is_empty());
    }
    // The bounds hold when lines are given back and read again.
    let long = format!("0\r\nx: {}\r\n\r\n", "v".repeat(100));
    for step in [1, 5, 1000] {
        let got = decode_all(
            long.as_bytes(),
            step,
            ChunkedDecoder::new(64, 256).with_trailers(),
        );
        assert!(got.is_err(), "step {step}: {got:?}");
    }
    let many: String = (0..20)
        .map(|i| format!("x{i}: {}\r\n", "v".repeat(20)))
        .collect();
    let many = format!("0\r\n{many}\r\n");
    for step in [1, 5, 1000] {
        let got = decode_all(
            many.as_bytes(),
            step,
            ChunkedDecoder::new(64, 256).with_trailers(),
        );
        assert!(got.is_err(), "step {step}: {got:?}");
        let exact = decode_all(
            many.as_bytes(),
            step,
            ChunkedDecoder::new(64, 1024).with_trailers(),
        );
        assert_eq!(exact.map(|(_, t)| t.len()).ok(), Some(20), "step {step}");
    }
}

#[test]
fn chunked_bodies_decode_the_same_at_any_feed_size() {
    let body = b"5;a=b;c=\"q\\\"x\"\r\nhello\r\n0006\r\n world\r\n0\r\nX-T: v\r\n\r\n";
    for step in [1, 2, 3, 7, 100] {
        assert_eq!(
            decode(body, step).expect("valid"),
            b"hello world",
            "step {step}"
        );
    }
}

#[test]
fn chunked_syntax_errors_are_rejected() {
    for bad in [
        &b"\r\nx\r\n0\r\n\r\n"[..],
        b"g\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"unterminated\r\nhello\r\n",
        b"5;a b\r\nhello\r\n0\r\n\r\n",
        b"0\r\nContent-Length: 5\r\n\r\n",
        b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"0\r\nX\r\n\r\n",
        b"0\r\nX: a\nY: b\r\n\r\n",
        b"0\r\n\n",
    ] {
        assert!(
            decode(bad, 1).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A size line longer than max_line (64 here).
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(100));
    assert!(decode(long.as_bytes(), 8).is_err());
    // Whitespace before a ';' is allowed (BWS).
    assert_eq!(
        decode(b"5 ;a\r\nhello\r\n0\r\n\r\n", 1).expect("BWS"),
        b"hello"
    );
}

#[test]
fn chunk_headers_are_lowercase_hex() {
    let mut out = BytesMut::new();
    put_chunk_header(255, &mut out);
    put_chunk_header(1, &mut out);
    put_chunk_header(65536, &mut out);
    assert_eq!(&out[..], b"ff\r\n1\r\n10000\r\n");
}

#[test]
fn canned_responses_are_complete_and_short() {
    let mut out = BytesMut::new();
    let close = Canned {
        close: true,
        ..Canned::status(502)
    };
    super::canned::write_response(&close, &mut out);
    assert_eq!(
        &out[..],
        &b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n502 Bad Gateway\n"[..]
    );
    out.clear();
    let head_only = Canned {
        body: Some(b"no"),
        content_type: Some(b"text/x"),
        head_only: true,
        ..Canned::status(403)
    };
    super::canned::write_response(&head_only, &mut out);
    assert!(out.ends_with(b"Content-Length: 2\r\n\r\n"));
}

#[test]
fn canned_responses_carry_the_configured_server_first() {
    let mut out = BytesMut::new();
    let r = Canned {
        server: Some(b"edge"),
        extra: &[(b"Allow", b"GET")],
        ..Canned::status(405)
    };
    super::canned::write_response(&r, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 405 Method Not Allowed\r\nServer: edge\r\nContent-Type:"),
        "{text}"
    );
    assert!(
        text.contains("\r\nAllow: GET\r\n\r\n405 Method Not Allowed\n"),
        "{text}"
    );
}

/// xorshift64*, seeded: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Re-serialises a parsed head the way a strict sender would.
fn reserialise(h: &RequestHead) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(h.method());
    out.push(b' ');
    out.extend_from_slice(h.target());
    out.push(b' ');
    out.extend_from_slice(h.version.as_bytes());
    out.extend_from_slice(b"\r\n");
    for i in 0..h.headers.len() {
        let (n, v) = h.header_at(i);
        out.extend_from_slice(n);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn mutated_heads_never_panic_and_accepted_ones_round_trip() {
    let seeds: [&[u8]; 6] = [
        b"GET /a/b?c=d HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        b"GET http://a/%2e%2E/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    ];
    let tokens: [&[u8]; 10] = [
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b" ",
        b":",
        b"chunked",
        b"Content-Length: 1\r\n",
        b"%",
        b";",
    ];
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let mut accepted = 0;
    for _ in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..=rng.below(4) {
            let len = input.len();
            match rng.below(5) {
                0 if len > 0 => input[rng.below(len)] = rng.next() as u8,
                1 if len > 0 => {
                    input.remove(rng.below(len));
                }
                2 => {
                    let t = tokens[rng.below(tokens.len())];
                    let at = rng.below(len + 1);
                    input.splice(at..at, t.iter().copied());
                }
                3 if len > 0 => input.truncate(rng.below(len)),
                _ => {}
            }
        }
        let mut buf = BytesMut::from(&input[..]);
        let mut h = RequestHead::default();
        if let Ok(true) = parse_request(&mut buf, &Limits::default(), &mut h) {
            accepted += 1;
            let again = reserialise(&h);
            let mut buf2 = BytesMut::from(&again[..]);
            let mut h2 = RequestHead::default();
            assert_eq!(
                parse_request(&mut buf2, &Limits::default(), &mut h2),
                Ok(true),
                "{again:?}"
            );
            assert_eq!(h2.method(), h.method());
            assert_eq!(h2.target(), h.target());
            assert_eq!(h2.version, h.version);
            assert_eq!(h2.framing, h.framing);
            assert_eq!(h2.path, h.path);
            assert_eq!(h2.headers.len(), h.headers.len());
        }
        let mut buf = BytesMut::from(&input[..]);
        let _ = parse_response(
            &mut buf,
            &Limits::default(),
            false,
            &mut ResponseHead::default(),
        );
        let mut dec = ChunkedDecoder::new(64, 256).with_trailers();
        let mut pos = 0;
        while pos <= input.len() {
            match dec.step(&input[pos..]) {
                Ok(ChunkEvent::Data { end, .. }) => pos += end,
                Ok(ChunkEvent::Trailer {
                    start,
                    end,
                    consumed,
                }) => {
                    assert!(start <= end && end + 2 == consumed && consumed <= input.len() - pos);
                    pos += consumed;
                }
                Ok(ChunkEvent::NeedMore { .. }) | Ok(ChunkEvent::Done { .. }) | Err(_) => break,
            }
        }
    }
    assert!(
        accepted > 1_000,
        "only {accepted} mutated heads parsed: the seeds are too fragile"
    );
}

const WS: &[u8] = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket/13, foo\r\nUpgrade: bar\r\n\r\n";

fn upgrade_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let (h, _) = req(bytes).expect("valid");
    h.upgrade.map(|s| s.get(&h.buf).to_vec())
}

#[test]
fn an_upgrade_is_the_first_protocol_of_the_first_upgrade_field() {
    assert_eq!(upgrade_of(WS).as_deref(), Some(&b"WebSocket/13"[..]));
}

#[test]
fn an_upgrade_needs_connection_upgrade_get_no_body_and_http11() {
    let no_connection = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    let post = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\nx";
    let empty_post =
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let get_body = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nxy";
    let http10 = b"GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let empty = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: \r\n\r\n";
    for bytes in [
        &no_connection[..],
        post,
        empty_post,
        get_body,
        http10,
        empty,
    ] {
        assert_eq!(
            upgrade_of(bytes),
            None,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn protocols_compare_by_name_case_insensitively() {
    use super::head::same_protocol;
    assert!(same_protocol(b"websocket", b"WebSocket/13"));
    assert!(same_protocol(b"WEBSOCKET/1", b"websocket/2"));
    assert!(!same_protocol(b"websocket", b"websockets"));
    assert!(!same_protocol(b"h2c", b"websocket"));
}

#[test]
fn the_only_traceparent_field_is_found_in_the_parse_and_two_count_as_none() {
    let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut one = b"GET / HTTP/1.1\r\nHost: a\r\nTraceParent: ".to_vec();
    one.extend_from_slice(tp);
    one.extend_from_slice(b"\r\n\r\n");
    let (h, _) = req(&one).expect("valid");
    assert_eq!(h.traceparent.map(|s| s.get(&h.buf)), Some(&tp[..]));
    let mut two = one[..one.len() - 2].to_vec();
    two.extend_from_slice(b"traceparent: ");
    two.extend_from_slice(tp);
    two.extend_from_slice(b"\r\n\r\n");
    let (h, _) = req(&two).expect("valid");
    assert_eq!(h.traceparent, None);
    let (h, _) = req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("valid");
    assert_eq!(h.traceparent, None);
}

#[test]
fn a_head_from_parts_is_the_head_of_the_equivalent_request() {
    use super::request::request_from_parts;
    let mut h = RequestHead::default();
    let fields: [(&[u8], &[u8]); 2] = [(b"accept", b"*/*"), (b"cookie", b"a=1; b=2")];
    request_from_parts(
        b"POST",
        b"API.example:8443",
        b"/a/./b/../c?x=1",
        fields,
        BodyFraming::Chunked,
        &Limits::default(),
        &mut h,
    )
    .expect("valid parts");
    assert_eq!(h.method(), b"POST");
    assert_eq!(h.host_lower, b"api.example");
    assert_eq!(h.header(b"host"), Some(&b"API.example:8443"[..]));
    assert_eq!(h.path, b"/a/c");
    assert_eq!(h.query(), b"?x=1");
    assert_eq!(h.header(b"cookie"), Some(&b"a=1; b=2"[..]));
    assert_eq!(h.framing, BodyFraming::Chunked);
    assert!(h.keep_alive);
    type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [(&'a [u8], &'a [u8])]);
    let bad: [Parts<'_>; 7] = [
        (b"GET", b"a", b"/x/..%2fadmin", &[]),
        (b"GET", b"a b", b"/", &[]),
        (b"GET", b"a", b"/ok", &[(b"bad name", b"v")]),
        (b"GET", b"a", b"/ok", &[(b"x", b"a\r\nInjected: 1")]),
        (b"GET", b"a", b"/ok", &[(b"content-length", b"5")]),
        (b"GET", b"a", b"/ok", &[(b"Host", b"other")]),
        (b"G T", b"a", b"/ok", &[]),
    ];
    for (method, authority, target, fields) in bad {
        let r = request_from_parts(
            method,
            authority,
            target,
            fields.iter().copied(),
            BodyFraming::None,
            &Limits::default(),
            &mut h,
        );
        assert!(r.is_err(), "{:?} {:?} {:?}", method, target, fields);
    }
}
