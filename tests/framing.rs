//! Request framing and syntax rejections: each gets its status, `Connection: close`, the
//! connection closes, and the origin receives nothing.

use ringway_test_support::*;
use std::time::Duration;

fn assert_rejected(driver: Driver, request: &[u8], status: u16) {
    let origin = Origin::ok("backend");
    let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), driver);
    let mut c = Reader::new(connect(gw.addr()));
    c.send(request);
    let r = c
        .response()
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(request)));
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(request));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body_text(), format!("{} {}\n", r.status, r.reason));
    assert!(
        c.closes_within(Duration::from_secs(2)),
        "connection must close"
    );
    assert!(
        origin.all_bytes().is_empty(),
        "origin must receive nothing, got {:?}",
        String::from_utf8_lossy(&origin.all_bytes())
    );
}

both_drivers! {
    fn cl_and_te_together_is_rejected_and_closed(d) {
        assert_rejected(d, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    }
    fn two_content_length_fields_are_rejected(d) {
        assert_rejected(d, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
    }
    fn a_content_length_list_is_rejected(d) {
        assert_rejected(d, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400);
    }
    fn non_digit_content_lengths_are_rejected(d) {
        for cl in ["+5", "0x5", "-1", "5a", "", "99999999999999999999999"] {
            assert_rejected(d, format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nhello").as_bytes(), 400);
        }
    }
    fn an_unknown_transfer_coding_is_501(d) {
        assert_rejected(d, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
    }
    fn chunked_not_final_is_rejected(d) {
        assert_rejected(d, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400);
    }
    fn chunked_twice_is_rejected(d) {
        assert_rejected(d, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    }
    fn transfer_encoding_in_http10_is_rejected(d) {
        assert_rejected(d, b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    }
    fn bare_lf_line_ending_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400);
    }
    fn bare_cr_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400);
    }
    fn obs_fold_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400);
    }
    fn whitespace_before_colon_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nX-A : one\r\n\r\n", 400);
    }
    fn nul_in_a_value_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: o\0ne\r\n\r\n", 400);
    }
    fn control_character_in_a_value_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: o\x01ne\r\n\r\n", 400);
    }
    fn invalid_field_name_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nFo@o: x\r\n\r\n", 400);
    }
    fn missing_host_in_http11_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    }
    fn two_host_fields_are_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    }
    fn other_http_versions_are_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400);
        assert_rejected(d, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400);
        assert_rejected(d, b"GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    }
    fn a_fragment_in_the_target_is_rejected(d) {
        assert_rejected(d, b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    }
    fn non_ascii_target_bytes_are_rejected(d) {
        assert_rejected(d, b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    }
    fn a_dot_segment_behind_an_escaped_slash_is_rejected(d) {
        for target in [
            "/x/..%2fadmin", "/x/..%2Fadmin", "/x/%2e%2e%2fadmin", "/x/%2E%2e%2Fadmin",
            "/.%2fadmin", "/x%2f../admin", "/a/b%2F..", "/a/b%2f.", "/a/..%5cadmin",
            "/a/%2e%2e%5Cadmin/y?q=1", "http://a/x/..%2fadmin", "HTTP://a:80/x%2F..%2Fadmin",
        ] {
            assert_rejected(d, format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(), 400);
        }
    }
    fn an_invalid_absolute_form_authority_is_rejected(d) {
        assert_rejected(d, b"GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        assert_rejected(d, b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        assert_rejected(d, b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        assert_rejected(d, b"GET http://a/ HTTP/1.1\r\n\r\n", 400);
    }
    fn double_space_in_request_line_is_rejected(d) {
        assert_rejected(d, b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    }
    fn unsupported_expectation_is_rejected(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 400);
    }
    fn connect_is_not_implemented(d) {
        assert_rejected(d, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501);
        assert_rejected(d, b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 501);
    }
    fn options_asterisk_is_rejected_by_default(d) {
        assert_rejected(d, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    }
    fn an_underscore_in_a_field_name_is_rejected_by_default(d) {
        assert_rejected(d, b"GET / HTTP/1.1\r\nHost: a\r\nX_Real_IP: 1.2.3.4\r\n\r\n", 400);
    }
    fn other_http_version_forms_are_rejected(d) {
        for line in ["GET / HTTP/0.9", "GET / HTTP/1.10", "GET / HTTP/1.1x", "GET / HTTP/1", "GET /", "GET / HTTP/1.1 "] {
            assert_rejected(d, format!("{line}\r\nHost: a\r\n\r\n").as_bytes(), 400);
        }
    }
    fn target_bytes_outside_rfc3986_are_rejected(d) {
        for b in [b'{', b'}', b'|', b'^', b'`', b'"', b'<', b'>', b'\\', 0x7f, 0x00, b'\t'] {
            let mut req = b"GET /a".to_vec();
            req.push(b);
            req.extend_from_slice(b"b HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_rejected(d, &req, 400);
        }
    }

    fn bad_chunk_size_is_400_and_the_origin_never_sees_a_complete_body(d) {
        let origin = Origin::ok("backend");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        for body in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"\r\nhello\r\n0\r\n\r\n"] {
            let mut c = Reader::new(connect(gw.addr()));
            c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
            c.send(body);
            if let Some(r) = c.response() {
                assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(body));
            }
            assert!(c.closes_within(Duration::from_secs(2)));
        }
        // Whatever reached the origin never forms a complete chunked message.
        assert!(origin.requests().is_empty(), "origin got a complete request");
    }

    fn a_rejected_request_after_a_good_one_still_answers_the_first(d) {
        let origin = Origin::ok("first");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        let first = c.response().expect("first response");
        assert_eq!(first.status, 200);
        assert_eq!(first.body_text(), "first");
        let second = c.response().expect("second response");
        assert_eq!(second.status, 400);
        assert!(c.closes_within(Duration::from_secs(2)));
        assert_eq!(origin.requests().len(), 1);
    }
}

both_drivers! {
    fn bare_lf_anywhere_in_chunked_framing_is_400_and_no_complete_body_is_forwarded(d) {
        let origin = Origin::ok("backend");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let cases: [&[u8]; 6] = [
            b"5\nhello\r\n0\r\n\r\n",
            b"5;ext=1\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
        ];
        for body in cases {
            let mut c = Reader::new(connect(gw.addr()));
            c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
            c.send(body);
            let r = c.response().unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(body)));
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(body));
            assert!(c.closes_within(Duration::from_secs(2)));
        }
        assert!(origin.requests().is_empty(), "origin got a complete request");
        // Whatever part of a body went upstream was re-chunked: no bare LF in it.
        let upstream = origin.all_bytes();
        assert!(!upstream.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }

    fn underscored_fields_are_forwarded_when_allowed(d) {
        let origin = Origin::ok("backend");
        let config = Config::proxy_all(origin.addr())
            .section("[limits]\nallow_underscores_in_headers = true")
            .render();
        let gw = Gateway::start(&config, d);
        let r = roundtrip(gw.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nX_Real_IP: 1.2.3.4\r\n\r\n");
        assert_eq!(r.map(|r| r.status), Some(200));
        assert_eq!(origin.wait_requests(1)[0].header("x_real_ip"), Some("1.2.3.4"));
    }

    fn options_asterisk_is_forwarded_as_asterisk_when_allowed(d) {
        let origin = Origin::ok("options");
        let config = Config::proxy_all(origin.addr())
            .section("[server]\nallow_options_asterisk = true")
            .render();
        let gw = Gateway::start(&config, d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().map(|r| r.status), Some(200));
        // The switch is for OPTIONS only: `*` with another method is still refused.
        c.send(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().map(|r| r.status), Some(400));
        assert!(c.closes_within(Duration::from_secs(2)));
        let reqs = origin.requests();
        assert_eq!(reqs.len(), 1);
        assert!(reqs[0].head_text().starts_with("OPTIONS * HTTP/1.1\r\n"), "{}", reqs[0].head_text());
    }
}
