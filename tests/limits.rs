//! Limits and timeouts: 408 (total header deadline, body deadline), idle close, 413, 414,
//! 431, 503 past max_in_flight, and max_connections.

use ringway_test_support::*;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

fn gateway_with(origin: &Origin, sections: &str, d: Driver) -> Gateway {
    Gateway::start(
        &Config::proxy_all(origin.addr()).section(sections).render(),
        d,
    )
}

/// A GET on a fresh connection is answered 200.
fn served(addr: std::net::SocketAddr) -> bool {
    let mut c = Reader::new(connect(addr));
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    c.response().map(|r| r.status) == Some(200)
}

both_drivers! {
    fn slowloris_trickle_gets_408_within_the_total_header_deadline(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[timeouts]\nheader = \"1s\"", d);
        let mut c = connect(gw.addr());
        let started = Instant::now();
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        // One byte every 100 ms: each read is quick, only the total deadline can stop it.
        for b in request.iter() {
            if c.write_all(&[*b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let mut r = Reader::new(c);
        let resp = r.response().expect("a 408");
        assert_eq!(resp.status, 408);
        assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
        assert!(r.closes_within(Duration::from_secs(1)));
        assert!(origin.all_bytes().is_empty());
    }

    fn a_stalled_body_gets_408_within_the_body_deadline(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[timeouts]\nbody = \"1s\"", d);
        let mut c = Reader::new(connect(gw.addr()));
        let started = Instant::now();
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
        let r = c.response().expect("a 408");
        assert_eq!(r.status, 408);
        assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
        assert!(c.closes_within(Duration::from_secs(1)));
        // The origin saw the head and the first bytes, never a complete body.
        assert!(origin.requests().is_empty());
    }

    fn an_idle_keep_alive_connection_is_closed(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[timeouts]\nidle = \"300ms\"", d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().expect("response").status, 200);
        let started = Instant::now();
        assert!(c.closes_within(Duration::from_secs(3)));
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    fn a_connection_that_never_sends_is_closed_after_the_header_deadline(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[timeouts]\nheader = \"300ms\"", d);
        let mut c = Reader::new(connect(gw.addr()));
        assert!(c.closes_within(Duration::from_secs(3)));
    }

    fn head_above_max_header_bytes_is_431(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_header_bytes = 2048", d);
        let big = "a".repeat(3000);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes());
        let r = c.response().expect("431");
        assert_eq!(r.status, 431);
        assert!(c.closes_within(Duration::from_secs(2)));
        assert!(origin.all_bytes().is_empty());
    }

    fn a_huge_head_without_end_is_431_not_buffered_forever(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_header_bytes = 4096", d);
        let mut c = connect(gw.addr());
        let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
        let _ = c.write_all(&vec![b'a'; 64 * 1024]);
        let mut r = Reader::new(c);
        assert_eq!(r.response().map(|r| r.status), Some(431));
    }

    fn more_fields_than_max_headers_is_431(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_headers = 10", d);
        let fields: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
        let r = roundtrip(gw.addr(), format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").as_bytes());
        assert_eq!(r.map(|r| r.status), Some(431));
        assert!(origin.all_bytes().is_empty());
    }

    fn target_above_max_uri_bytes_is_414(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_uri_bytes = 1024", d);
        let path = format!("/{}", "p".repeat(2000));
        let r = roundtrip(gw.addr(), format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!(r.map(|r| r.status), Some(414));
        assert!(origin.all_bytes().is_empty());
    }

    fn declared_body_above_max_body_bytes_is_413_and_nothing_is_forwarded(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_body_bytes = 1000", d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n");
        let r = c.response().expect("413");
        assert_eq!(r.status, 413);
        assert!(!r.head.contains("100 Continue"));
        assert!(c.closes_within(Duration::from_secs(2)));
        assert!(origin.all_bytes().is_empty());
    }

    fn streamed_chunked_body_above_max_body_bytes_is_413(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_body_bytes = 1000", d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        let chunk = format!("200\r\n{}\r\n", "x".repeat(512));
        for _ in 0..4 {
            let _ = c.s.write_all(chunk.as_bytes());
        }
        let _ = c.s.write_all(b"0\r\n\r\n");
        let r = c.response().expect("413");
        assert_eq!(r.status, 413);
        assert!(c.closes_within(Duration::from_secs(2)));
        assert!(origin.requests().is_empty(), "origin must never get a complete body");
    }

    fn requests_past_max_in_flight_get_an_immediate_503(d) {
        let origin = Origin::start(|req| {
            if req.target == "/slow" {
                Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("slow")))
            } else {
                Reply::ok("fast")
            }
        });
        let gw = gateway_with(&origin, "[limits]\nmax_in_flight = 1", d);
        let addr = gw.addr();
        let slow = thread::spawn(move || get(addr, "/slow"));
        origin.wait_requests(1);
        let started = Instant::now();
        let r = get(addr, "/fast");
        assert_eq!(r.status, 503);
        assert!(started.elapsed() < Duration::from_secs(1), "503 must be immediate");
        assert_eq!(slow.join().expect("slow request").status, 200);
        // Capacity is back once the slow request finished.
        assert_eq!(get(addr, "/fast").status, 200);
    }

    fn connections_past_max_connections_are_closed_at_once(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_connections = 2", d);
        let mut a = Reader::new(connect(gw.addr()));
        let mut b = Reader::new(connect(gw.addr()));
        a.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        b.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(a.response().map(|r| r.status), Some(200));
        assert_eq!(b.response().map(|r| r.status), Some(200));
        let mut third = Reader::new(connect(gw.addr()));
        assert!(third.closes_within(Duration::from_secs(1)), "third connection must be closed");
        drop(a);
        // Once a slot frees, new connections are served again.
        eventually("service to come back")
            .within(Duration::from_secs(5))
            .until(|| served(gw.addr()));
    }
}

both_drivers! {
    fn a_connection_flood_past_max_connections_is_closed_at_once_and_service_returns_within_a_second(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[limits]\nmax_connections = 20", d);
        let addr = gw.addr();
        // 20 silent connections take every slot.
        let held: Vec<_> = (0..20).map(|_| connect(addr)).collect();
        // Until ringway accepted all of them, a new one may still get a slot: wait for the
        // first refusal.
        eventually("a 21st connection to be refused")
            .within(Duration::from_secs(5))
            .until(|| Reader::new(connect(addr)).closes_within(Duration::from_millis(500)));
        // A flood of 300 more: each is closed at once, none is left accepted but silent.
        let flood: Vec<_> = (0..300).map(|_| Reader::new(connect(addr))).collect();
        for (i, mut c) in flood.into_iter().enumerate() {
            assert!(
                c.closes_within(Duration::from_secs(1)),
                "flood connection {i} was left open past the limit"
            );
        }
        // The flood ends: service is back within a second.
        drop(held);
        eventually("service to come back within a second")
            .within(Duration::from_secs(1))
            .until(|| served(addr));
    }
}

both_drivers! {
    fn a_client_that_stops_reading_is_dropped_after_the_write_timeout(d) {
        // 64 MiB is far more than the socket buffers between ringway and a client that
        // never reads, so ringway's write stalls until `write` gives up.
        let body = vec![b'z'; 64 * 1024 * 1024];
        let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        reply.extend_from_slice(&body);
        let origin = Origin::start(move |_| Reply::Raw(reply.clone()));
        let gw = gateway_with(&origin, "[limits]\nmax_body_bytes = 0\n[timeouts]\nwrite = \"1s\"", d);
        let mut c = connect(gw.addr());
        c.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").expect("request");
        origin.wait_requests(1);
        let started = Instant::now();
        // ringway abandons the stalled client and drops the upstream connection mid-body.
        assert!(origin.wait_closed_by_peer(0), "ringway must give up on the stalled client");
        assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
        drop(c);
    }
}
