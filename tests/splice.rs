//! Spliced bodies: Content-Length bodies and large chunk payloads above
//! `server.splice_threshold` go socket -> pipe -> socket in both directions. Each test checks
//! the bytes on both sides of the wire, that keep-alive and the upstream pool survive a
//! spliced body, and that failures mid-splice end the way they do on the copy path.

use ringway_test_support::*;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i + seed as usize) % 26) as u8)
        .collect()
}

/// A chunked body with the given chunk sizes, and its decoded payload.
fn chunked(sizes: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut framed = Vec::new();
    let mut payload = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let data = pattern(n, i as u8);
        framed.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        framed.extend_from_slice(&data);
        framed.extend_from_slice(b"\r\n");
        payload.extend_from_slice(&data);
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    (framed, payload)
}

fn gateway(origin: &Origin, d: Driver, extra: &str) -> Gateway {
    let cfg = Config::proxy_all(origin.addr()).section(extra).render();
    Gateway::start(&cfg, d)
}

fn cl_reply(body: &[u8]) -> Reply {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    Reply::Raw(out)
}

fn get_on(r: &mut Reader, path: &str) -> Response {
    r.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    r.response().expect("a response")
}

/// Two large Content-Length responses on one client connection: both intact, and the
/// origin saw one connection (the spliced response left it reusable).
fn large_responses_keep_both_connections(d: Driver, extra: &str) {
    let body = pattern(3 * MIB + 123, 7);
    let reply = cl_reply(&body);
    let origin = Origin::start(move |_| reply.clone());
    let gw = gateway(&origin, d, extra);
    let mut r = Reader::new(connect(gw.addr()));
    for _ in 0..2 {
        let resp = get_on(&mut r, "/big");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some("3145851"));
        assert!(resp.body == body, "body differs");
    }
    assert_eq!(
        origin.connections(),
        1,
        "the upstream connection was reused"
    );
    assert_eq!(origin.wait_requests(2).len(), 2);
}

both_drivers! {
    fn a_large_content_length_response_is_spliced_intact_and_both_sides_stay_alive(d) {
        large_responses_keep_both_connections(d, "");
    }

    fn the_copy_path_gives_the_same_bytes_when_splicing_is_off(d) {
        large_responses_keep_both_connections(d, "[server]\nsplice_threshold = 0");
    }

    fn a_large_chunked_response_is_reframed_around_spliced_payloads(d) {
        let (framed, payload) = chunked(&[10, 2 * MIB, 5, MIB + 3, 1]);
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        reply.extend_from_slice(&framed);
        let origin = Origin::start(move |_| Reply::Raw(reply.clone()));
        let gw = gateway(&origin, d, "");
        let mut r = Reader::new(connect(gw.addr()));
        for _ in 0..2 {
            let resp = get_on(&mut r, "/chunks");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
            assert!(resp.body == payload, "decoded body differs");
        }
        assert!(r.leftover().is_empty(), "bytes after the last chunk");
        assert_eq!(origin.connections(), 1);
    }

    fn a_large_chunked_response_reaches_an_http10_client_raw_then_closes(d) {
        let (framed, payload) = chunked(&[2 * MIB, 17]);
        let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        reply.extend_from_slice(&framed);
        let origin = Origin::start(move |_| Reply::Raw(reply.clone()));
        let gw = gateway(&origin, d, "");
        let mut r = Reader::new(connect(gw.addr()));
        r.send(b"GET /chunks HTTP/1.0\r\nHost: t\r\n\r\n");
        let resp = r.response().expect("a close-delimited response");
        assert_eq!(resp.status, 200);
        assert!(!resp.has_header("transfer-encoding"));
        assert!(resp.body == payload, "body differs");
    }

    fn a_large_content_length_request_body_is_spliced_to_the_upstream(d) {
        let origin = Origin::start(|req| Reply::ok(&req.body.len().to_string()));
        let gw = gateway(&origin, d, "[limits]\nmax_body_bytes = 0");
        let body = pattern(3 * MIB + 5, 3);
        let mut r = Reader::new(connect(gw.addr()));
        for _ in 0..2 {
            let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len());
            r.send(head.as_bytes());
            r.send(&body);
            let resp = r.response().expect("a response");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body_text(), body.len().to_string());
        }
        let reqs = origin.wait_requests(2);
        for req in &reqs {
            assert_eq!(req.header("content-length"), Some("3145733"));
            assert!(req.body == body, "origin got a different body");
        }
        assert_eq!(origin.connections(), 1);
    }

    fn a_large_chunked_request_body_is_reframed_around_spliced_payloads(d) {
        let origin = Origin::start(|req| Reply::ok(&req.body.len().to_string()));
        let gw = gateway(&origin, d, "[limits]\nmax_body_bytes = 0");
        let (framed, payload) = chunked(&[3, 2 * MIB, 9, MIB]);
        let mut r = Reader::new(connect(gw.addr()));
        for _ in 0..2 {
            r.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
            r.send(&framed);
            let resp = r.response().expect("a response");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body_text(), payload.len().to_string());
        }
        for req in origin.wait_requests(2) {
            assert_eq!(req.header("transfer-encoding"), Some("chunked"));
            assert!(req.body == payload, "origin got a different body");
            // What the origin got is strictly framed and ends where the request ends.
            let start = find(&req.raw, b"\r\n\r\n").expect("head end") + 4;
            let (used, _) = decode_chunked(&req.raw[start..]).expect("valid chunked framing");
            assert_eq!(start + used, req.raw.len());
        }
    }

    fn a_spliced_chunk_over_the_body_limit_is_refused_with_413(d) {
        let origin = Origin::ok("never");
        let gw = gateway(&origin, d, "[limits]\nmax_body_bytes = 1048576");
        let mut r = Reader::new(connect(gw.addr()));
        r.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        r.send(format!("{:x}\r\n", 2 * MIB).as_bytes());
        let resp = r.response().expect("a response");
        assert_eq!(resp.status, 413);
        assert!(r.closes_within(TIMEOUT));
        assert!(origin.requests().is_empty(), "the origin got a whole request");
    }

    fn an_upstream_dying_mid_spliced_body_aborts_the_client(d) {
        let mut partial = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 4 * MIB).into_bytes();
        partial.extend_from_slice(&pattern(MIB, 0));
        let origin = Origin::start(move |_| Reply::raw_then_close(&partial));
        let gw = gateway(&origin, d, "");
        let mut r = Reader::new(connect(gw.addr()));
        r.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        let got = r.read_to_close();
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "the head was relayed");
        assert!(got.len() < 4 * MIB, "the client must not see a complete body");
        assert_eq!(find(&got[20..], b"HTTP/1.1"), None, "a second response was sent");
    }

    fn a_client_stalling_mid_spliced_body_gets_408(d) {
        let origin = Origin::ok("never");
        let extra = "[limits]\nmax_body_bytes = 0\n[timeouts]\nbody = \"1s\"";
        let gw = gateway(&origin, d, extra);
        let mut r = Reader::new(connect(gw.addr()));
        let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", 2 * MIB);
        r.send(head.as_bytes());
        r.send(&pattern(MIB / 2, 1));
        let started = std::time::Instant::now();
        let resp = r.response().expect("a response");
        assert_eq!(resp.status, 408);
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(r.closes_within(TIMEOUT));
        assert!(origin.requests().is_empty(), "the origin got a whole request");
    }
}
