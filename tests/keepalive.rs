//! Keep-alive on both sides, pipelining, and HTTP/1.0 connection handling.

use ringway_test_support::*;
use std::time::Duration;

/// Sends `batch` (a first request whose framing ends the connection, then a second one) in
/// one write: the client gets one response with `status` and the connection closes; the
/// origin sees `upstream` requests and not one byte of the second request.
fn nothing_after_a_closing_request_is_parsed(
    d: Driver,
    limits: &str,
    batch: &[u8],
    status: u16,
    upstream: usize,
) {
    let origin = Origin::start(|req| Reply::ok(&req.target));
    let config = Config::proxy_all(origin.addr()).section(limits).render();
    let gw = Gateway::start(&config, d);
    let mut c = Reader::new(connect(gw.addr()));
    c.send(batch);
    let r = c.response().expect("the first response");
    assert_eq!(r.status, status);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.closes_within(Duration::from_secs(2)),
        "connection must close"
    );
    assert!(
        c.leftover().is_empty(),
        "a second response: {:?}",
        String::from_utf8_lossy(c.leftover())
    );
    assert_eq!(origin.requests().len(), upstream);
    let seen = origin.all_bytes();
    assert!(
        find(&seen, b"/second").is_none(),
        "origin saw the second request: {:?}",
        String::from_utf8_lossy(&seen)
    );
}

both_drivers! {
    fn a_hundred_sequential_requests_use_one_upstream_connection(d) {
        let origin = Origin::start(|req| Reply::ok(&req.target));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        for i in 0..100 {
            c.send(format!("GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            let r = c.response().expect("response");
            assert_eq!(r.status, 200);
            assert_eq!(r.body_text(), format!("/r{i}"));
        }
        assert_eq!(origin.connections(), 1);
        assert_eq!(origin.requests().len(), 100);
    }

    fn pipelined_requests_are_answered_in_order(d) {
        let origin = Origin::start(|req| Reply::ok(&req.target));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        let mut batch = Vec::new();
        for i in 0..20 {
            batch.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        }
        batch.extend_from_slice(b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /last HTTP/1.1\r\nHost: a\r\n\r\n");
        c.send(&batch);
        for i in 0..20 {
            assert_eq!(c.response().expect("response").body_text(), format!("/p{i}"));
        }
        assert_eq!(c.response().expect("response").body_text(), "/body");
        assert_eq!(c.response().expect("response").body_text(), "/last");
        let reqs = origin.requests();
        assert_eq!(reqs[20].body, b"abc");
    }

    fn http10_client_is_closed_after_the_response_by_default(d) {
        let origin = Origin::ok("ten");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET / HTTP/1.0\r\n\r\n");
        let r = c.response().expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closes_within(Duration::from_secs(2)));
        // Upstream still gets HTTP/1.1 with a Host.
        let req = &origin.wait_requests(1)[0];
        assert!(req.head_text().starts_with("GET / HTTP/1.1\r\n"));
        assert!(req.header("host").is_some());
    }

    fn http10_client_with_keep_alive_stays_open(d) {
        let origin = Origin::ok("ten");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        for _ in 0..3 {
            c.send(b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
            let r = c.response().expect("response");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), Some("keep-alive"));
        }
    }

    fn connection_close_from_the_client_is_honoured(d) {
        let origin = Origin::ok("x");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let r = c.response().expect("response");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closes_within(Duration::from_secs(2)));
        // The upstream connection is still pooled: close was hop-by-hop.
        assert_eq!(origin.requests()[0].header("connection"), None);
    }

    fn upstream_connection_close_is_not_reused_but_the_client_stays(d) {
        let origin = Origin::start(|_| Reply::raw_then_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        for _ in 0..3 {
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            let r = c.response().expect("response");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), None);
        }
        assert_eq!(origin.connections(), 3);
    }
}

both_drivers! {
    fn a_connection_idle_past_the_shrink_point_still_serves_large_requests(d) {
        let origin = Origin::start(|req| Reply::ok(&format!("{}:{}", req.target, req.body.len())));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().expect("first").body_text(), "/first:0");
        // The behaviour under test is time-based: after 1 s idle ringway swaps in a small
        // read buffer. The next request is bigger than that buffer and carries a body.
        std::thread::sleep(Duration::from_millis(1500));
        let big = "v".repeat(6000);
        c.send(format!("POST /second HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\nContent-Length: 3000\r\n\r\n{}", "b".repeat(3000)).as_bytes());
        assert_eq!(c.response().expect("second").body_text(), "/second:3000");
        assert_eq!(origin.requests()[1].header("x-big").map(str::len), Some(6000));
    }
}

both_drivers! {
    fn a_request_pipelined_after_a_rejected_one_is_never_parsed(d) {
        nothing_after_a_closing_request_is_parsed(d, "", b"GET /first HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0);
    }

    fn a_request_pipelined_after_a_413_body_is_never_parsed(d) {
        // The refused body is where a smuggled request would hide.
        nothing_after_a_closing_request_is_parsed(d, "[limits]\nmax_body_bytes = 10", b"POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n", 413, 0);
    }

    fn a_request_pipelined_after_http10_without_keep_alive_is_never_forwarded(d) {
        nothing_after_a_closing_request_is_parsed(d, "", b"GET /first HTTP/1.0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n", 200, 1);
    }

    fn a_request_pipelined_after_connection_close_is_never_forwarded(d) {
        nothing_after_a_closing_request_is_parsed(d, "", b"POST /first HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabcGET /second HTTP/1.1\r\nHost: a\r\n\r\n", 200, 1);
    }
}
