//! Upstream failures with scripted origins: refused -> 502, connect timeout -> 504, invalid
//! responses -> 502 with the upstream connection closed and never reused, stale pooled
//! connections, early answers. The bundled origin's fault modes (closes, resets, trickles,
//! silence, bad lengths, 1xx storms...) are driven in `upstream_faults.rs`.

use ringway_test_support::*;
use std::time::{Duration, Instant};

/// Asserts that `bad` from the origin gives the client a 502 and that ringway closes that
/// origin connection; a following request then arrives on a new origin connection.
fn assert_invalid_response_is_502(d: Driver, bad: &'static [u8]) {
    let origin = Origin::start(move |req| {
        if req.target == "/bad" {
            Reply::raw(bad)
        } else {
            Reply::ok("good")
        }
    });
    let cfg = Config::proxy_all(origin.addr()).section("[timeouts]\nupstream_response = \"1s\"");
    let gw = Gateway::start(&cfg.render(), d);
    let r = get(gw.addr(), "/bad");
    assert_eq!(r.status, 502, "for {:?}", String::from_utf8_lossy(bad));
    assert_eq!(r.body_text(), "502 Bad Gateway\n");
    assert!(
        origin.wait_closed_by_peer(0),
        "ringway must close the broken upstream connection"
    );
    let r = get(gw.addr(), "/next");
    assert_eq!(r.status, 200);
    let reqs = origin.wait_requests(2);
    assert_eq!(
        reqs[1].conn, 1,
        "the next request must use a new upstream connection"
    );
}

both_drivers! {
    fn upstream_refused_is_502(d) {
        let gw = Gateway::start(&Config::proxy_all(dead_addr()).render(), d);
        let r = get(gw.addr(), "/");
        assert_eq!(r.status, 502);
        assert_eq!(r.body_text(), "502 Bad Gateway\n");
    }

    fn garbage_status_line_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n");
        assert_invalid_response_is_502(d, b"SSH-2.0-OpenSSH\r\n\r\n");
    }
    fn cl_with_te_in_a_response_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    }
    fn unknown_response_transfer_coding_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx");
    }
    fn invalid_content_length_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok");
    }
    fn control_bytes_in_a_response_header_are_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok");
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok");
    }
    fn bare_lf_in_a_response_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok");
    }
    fn switching_protocols_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    }
    fn bad_chunking_before_anything_was_relayed_is_502(d) {
        assert_invalid_response_is_502(d, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nZZ\r\n");
    }

    fn upstream_death_before_any_body_byte_was_relayed_is_a_502(d) {
        // The head is held back until body bytes come; none do, so the client gets an
        // answer instead of a cut connection, and exactly one.
        let origin = Origin::start(|_| {
            Reply::raw_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        });
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.response().expect("a response");
        assert_eq!(r.status, 502);
        assert!(!r.body_text().contains("only-part"), "nothing of the upstream leaks");
        // Exactly one answer per request: the next one on this connection gets its own.
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().expect("a second response").status, 502);
        assert_eq!(c.leftover(), b"", "nothing beyond the two answers");
    }

    fn a_stale_pooled_connection_is_not_used_for_the_next_request(d) {
        // The origin answers once per connection, then closes it.
        let origin = Origin::start(|_| Reply::raw_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        assert_eq!(get(gw.addr(), "/a").status, 200);
        assert!(origin.wait_closed_by_peer(0), "the origin closed its first connection");
        // The closed connection must not be reused: the POST (never retried) must succeed.
        let r = roundtrip(gw.addr(), b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx").expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(origin.wait_requests(2)[1].conn, 1);
    }
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs until the connector gives up.
fn saturated_listener() -> (
    socket2::Socket,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    l.bind(&any.into()).expect("bind");
    l.listen(0).expect("listen");
    let addr = l.local_addr().expect("addr").as_socket().expect("inet");
    let mut held = Vec::new();
    // Fill the queue; later connects time out instead of completing.
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    (l, held, addr)
}

both_drivers! {
    fn an_upstream_connect_timeout_is_504(d) {
        let (_listener, _held, addr) = saturated_listener();
        let cfg = Config::proxy_all(addr).section("[timeouts]\nupstream_connect = \"500ms\"");
        let gw = Gateway::start(&cfg.render(), d);
        let started = Instant::now();
        let r = get(gw.addr(), "/");
        assert_eq!(r.status, 504);
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }
}

/// An origin that answers `reply` as soon as it has a request head, then reads and discards
/// whatever body follows until the peer closes.
fn early_answer_origin(reply: &'static [u8]) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut tmp = [0u8; 65536];
                let mut answered = false;
                while let Ok(n) = s.read(&mut tmp) {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&tmp[..n.min(4096)]);
                    if !answered && find(&seen, b"\r\n\r\n").is_some() {
                        answered = true;
                        let _ = s.write_all(reply);
                    }
                }
            });
        }
    });
    addr
}

both_drivers! {
    fn an_early_upstream_answer_reaches_the_client_while_it_still_sends(d) {
        let origin = early_answer_origin(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n");
        let cfg = Config::proxy_all(origin).section("[limits]\nmax_body_bytes = 0");
        let gw = Gateway::start(&cfg.render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n");
        c.send(&vec![b'x'; 256 * 1024]);
        let r = c.response().expect("the upstream's answer");
        assert_eq!(r.status, 413);
        assert_eq!(r.body_text(), "big\n");
        assert_eq!(r.header("connection"), Some("close"), "the unread body forces a close");
        assert!(c.closes_within(Duration::from_secs(5)));
    }
}
