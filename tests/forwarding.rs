//! Forwarding rules on both sides of the wire: hop-by-hop stripping, X-Forwarded-*, Via,
//! request ids, 100-continue, bodiless responses, and re-framing of upstream bodies.

use ringway_test_support::*;
use std::time::Duration;

both_drivers! {
    fn hop_by_hop_fields_are_stripped_and_the_rest_kept_in_order(d) {
        let origin = Origin::ok("x");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let r = roundtrip(gw.addr(), b"GET /p?q=1 HTTP/1.1\r\nHost: h.example\r\nX-First: 1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Last: 2\r\n\r\n").expect("response");
        assert_eq!(r.status, 200);
        let req = &origin.wait_requests(1)[0];
        let head = req.head_text();
        assert!(head.starts_with("GET /p?q=1 HTTP/1.1\r\nHost: h.example\r\nX-First: 1\r\nX-Last: 2\r\n"), "{head}");
        for gone in ["connection", "x-hop", "keep-alive", "te", "upgrade", "proxy-connection", "trailer"] {
            assert_eq!(req.header(gone), None, "{gone} leaked: {head}");
        }
    }

    fn forwarding_headers_are_set_from_what_ringway_saw(d) {
        let origin = Origin::ok("x");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        roundtrip(gw.addr(), b"GET / HTTP/1.1\r\nHost: shop.example:8080\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n").expect("response");
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header_all("x-forwarded-for"), vec!["127.0.0.1"], "an untrusted peer's XFF is discarded");
        assert_eq!(req.header_all("x-forwarded-proto"), vec!["http"]);
        assert_eq!(req.header_all("x-forwarded-host"), vec!["shop.example:8080"]);
        assert_eq!(req.header_all("via"), vec!["1.1 ringway"]);
        let id = req.header("x-request-id").expect("a request id");
        assert!(id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }

    fn request_ids_are_unique_and_a_client_id_is_kept(d) {
        let origin = Origin::ok("x");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        get(gw.addr(), "/");
        get(gw.addr(), "/");
        roundtrip(gw.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine-1\r\n\r\n").expect("response");
        let reqs = origin.wait_requests(3);
        assert_ne!(reqs[0].header("x-request-id"), reqs[1].header("x-request-id"));
        assert_eq!(reqs[2].header_all("x-request-id"), vec!["mine-1"]);
    }

    fn a_trusted_proxy_s_forwarded_for_is_appended_to(d) {
        let origin = Origin::ok("x");
        let cfg = Config::proxy_all(origin.addr()).section("[server]\ntrusted_proxies = [\"127.0.0.0/8\"]");
        let gw = Gateway::start(&cfg.render(), d);
        roundtrip(gw.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.0 edge\r\n\r\n").expect("response");
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header_all("x-forwarded-for"), vec!["1.2.3.4, 127.0.0.1"]);
        assert_eq!(req.header_all("via"), vec!["1.0 edge, 1.1 ringway"]);
    }

    fn via_and_request_id_can_be_disabled(d) {
        let origin = Origin::ok("x");
        let cfg = Config::proxy_all(origin.addr()).section("[server]\nvia = \"\"\nrequest_id_header = \"\"");
        let gw = Gateway::start(&cfg.render(), d);
        let r = get(gw.addr(), "/");
        assert_eq!(r.header("via"), None);
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header("via"), None);
        assert_eq!(req.header("x-request-id"), None);
    }

    fn expect_100_continue_is_answered_by_ringway_and_not_forwarded(d) {
        let origin = Origin::start(Reply::echo);
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        let interim = c.interim_or_final_head().expect("100 Continue");
        assert_eq!(interim.status, 100);
        c.send(b"hello");
        let r = c.response().expect("final response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header("expect"), None);
        assert_eq!(req.header("content-length"), Some("5"));
    }

    fn head_responses_keep_their_length_and_have_no_body(d) {
        let origin = Origin::start(|_| Reply::raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        for _ in 0..2 {
            c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
            let r = c.response_to(true).expect("response");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-length"), Some("5"));
        }
        assert!(c.leftover().is_empty());
        assert_eq!(origin.connections(), 1);
    }

    fn no_content_and_not_modified_have_no_body(d) {
        let origin = Origin::start(|req| {
            if req.target == "/204" {
                Reply::raw(b"HTTP/1.1 204 No Content\r\n\r\n")
            } else {
                Reply::raw(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
            }
        });
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\n");
        let a = c.response().expect("204");
        assert_eq!(a.status, 204);
        assert!(!a.has_header("content-length") && !a.has_header("transfer-encoding"));
        let b = c.response().expect("304");
        assert_eq!(b.status, 304);
        assert_eq!(b.header("etag"), Some("\"x\""));
        assert!(c.leftover().is_empty());
    }

    fn chunked_upstream_bodies_are_rechunked_with_the_same_payload(d) {
        let origin = Origin::start(|_| Reply::raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let r = get(gw.addr(), "/");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.body, b"abcde");
        // The upstream connection was reusable after a complete chunked body.
        get(gw.addr(), "/");
        assert_eq!(origin.connections(), 1);
    }

    fn a_close_delimited_body_is_chunked_for_http11_clients(d) {
        let origin = Origin::start(|_| Reply::raw_then_close(b"HTTP/1.0 200 OK\r\n\r\nuntil-close"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.response().expect("response");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.body, b"until-close");
        // The client connection stays usable.
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().expect("second").body, b"until-close");
    }

    fn a_close_delimited_body_is_passed_raw_to_http10_clients_then_closed(d) {
        let origin = Origin::start(|_| Reply::raw_then_close(b"HTTP/1.0 200 OK\r\n\r\nuntil-close"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response().expect("response");
        assert!(!r.has_header("transfer-encoding"));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.body, b"until-close");
    }

    fn response_hop_by_hop_fields_are_stripped(d) {
        let origin = Origin::start(|_| Reply::raw(b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\nX-Public: 2\r\nContent-Length: 0\r\n\r\n"));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let r = get(gw.addr(), "/");
        assert_eq!(r.header("x-secret"), None);
        assert_eq!(r.header("keep-alive"), None);
        assert_eq!(r.header("x-public"), Some("2"));
        assert_eq!(r.header("via"), Some("1.1 ringway"));
        assert_eq!(r.header("content-length"), Some("0"));
    }

    fn a_response_head_grown_past_the_headroom_still_precedes_its_body_intact(d) {
        // ringway writes its own head into the room in front of the body; a route that makes
        // the head much longer than the upstream's takes the copying path instead.
        let body: String = (0..5000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let reply = Reply::ok(&body);
        let origin = Origin::start(move |_| reply.clone());
        let big = "v".repeat(2000);
        let cfg = Config::new().upstream("app", &[origin.addr()]).route(&format!(
            "path_prefix = \"/\"\nupstream = \"app\"\nresponse_headers = {{ set = {{ \"X-Big\" = \"{big}\" }} }}"
        ));
        let gw = Gateway::start(&cfg.render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        for _ in 0..2 {
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            let r = c.response().expect("response");
            assert_eq!(r.header("x-big"), Some(big.as_str()));
            assert_eq!(r.body_text(), body);
        }
        assert_eq!(c.leftover(), b"");
    }

    fn a_chunked_request_body_is_forwarded_rechunked(d) {
        let origin = Origin::start(Reply::echo);
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let r = roundtrip(gw.addr(), b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nwiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n").expect("response");
        assert_eq!(r.body, b"wikipedia");
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header("transfer-encoding"), Some("chunked"));
        assert!(!req.head_text().contains("a=b"));
        assert!(req.raw.ends_with(b"0\r\n\r\n"), "trailers dropped, last chunk sent");
    }

    fn bodies_split_across_many_writes_arrive_intact(d) {
        let origin = Origin::start(Reply::echo);
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n");
        for b in b"0123456789" {
            c.send(&[*b]);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.response().expect("response").body, b"0123456789");
    }
}

both_drivers! {
    fn a_large_chunked_body_sent_in_one_write_is_forwarded_whole(d) {
        // More than the 64 KiB staging window, all in the client's first write: every byte
        // must be decoded and forwarded although the client then waits silently.
        let origin = Origin::start(Reply::echo);
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).section("[limits]\nmax_body_bytes = 0").render(), d);
        let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut want = Vec::new();
        for i in 0..40u8 {
            let chunk = vec![b'a' + i % 26; 4000];
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(&chunk);
            req.extend_from_slice(b"\r\n");
            want.extend_from_slice(&chunk);
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let r = roundtrip(gw.addr(), &req).expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), want.len());
        assert!(r.body == want);
    }
}

both_drivers! {
    fn chunked_trailers_reach_http11_clients_that_ask_for_them(d) {
        let origin = Origin::start(|_| {
            Reply::raw(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n\
                  5\r\nhello\r\n0\r\ngrpc-status: 0\r\nX-Sum:  abc \r\nCache-Control: no-store\r\n\r\n",
            )
        });
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        // The whole response as sent: the request closes the connection after it.
        let raw = |version: &str, te: &str| {
            use std::io::{Read, Write};
            let mut s = connect(gw.addr());
            s.write_all(format!("GET /t {version}\r\nHost: a\r\n{te}Connection: close\r\n\r\n").as_bytes())
                .expect("request");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        // Asked for: the trailer section follows the last chunk; a field that must not
        // travel as a trailer (here Cache-Control) is dropped.
        for te in ["TE: trailers\r\n", "TE: gzip, trailers\r\n"] {
            let r = raw("HTTP/1.1", te);
            assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
            assert!(r.ends_with("\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\nX-Sum: abc\r\n\r\n"), "{te}: {r:?}");
        }
        // Not asked for: none, as before.
        let r = raw("HTTP/1.1", "");
        assert!(r.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "{r:?}");
        // HTTP/1.0 gets the body up to the close, which can carry no trailers.
        let r = raw("HTTP/1.0", "TE: trailers\r\n");
        assert!(r.ends_with("\r\n\r\nhello"), "{r:?}");
    }
}
