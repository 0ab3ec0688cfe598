//! Routing: the priority matrix, path normalisation against deny rules, strip/rewrite, and
//! header edits — checked on both sides of the wire.

use ringway_test_support::*;

fn respond(fields: &str, body: &str) -> String {
    format!("{fields}\nrespond = {{ status = 200, body = \"{body}\" }}")
}

fn matrix_config() -> String {
    Config::new()
        .route(&respond("path_prefix = \"/\"", "any-root"))
        .route(&respond("path_prefix = \"/api/v1/long\"", "any-long"))
        .route(&respond(
            "host = \"*.example.com\"\npath_prefix = \"/api\"",
            "wild",
        ))
        .route(&respond(
            "host = \"api.example.com\"\npath_prefix = \"/\"",
            "exact-host",
        ))
        .route(&respond("path = \"/exact\"", "exact-path"))
        .route(&respond("path_prefix = \"/exact\"", "prefix-exact"))
        .route(&respond(
            "host = \"*.b.example.com\"\npath_prefix = \"/\"",
            "deep-wild",
        ))
        .route(&respond(
            "path_prefix = \"/m\"\nmethods = [\"POST\"]",
            "post-only",
        ))
        .route(&respond("path_prefix = \"/m\"", "m-any"))
        .route(&respond(
            "path_prefix = \"/h\"\nheaders = [{ name = \"x-canary\", value = \"1\" }]",
            "canary",
        ))
        .route(&respond(
            "path_prefix = \"/h\"\nheaders = [{ name = \"x-debug\", absent = true }]",
            "no-debug",
        ))
        .route(&respond("path_prefix = \"/h\"", "h-any"))
        .route(&respond("path_prefix = \"/dup\"", "first"))
        .route(&respond("path_prefix = \"/dup\"", "second"))
        .route("path_prefix = \"/admin\"\nrespond = { status = 403 }")
        .render()
}

both_drivers! {
    fn route_priority_matrix_picks_the_documented_winner(driver) {
        let gw = Gateway::start(&matrix_config(), driver);
        let a = gw.addr();
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            ("GET", "other.org", "/api/v1/long/x", "", "any-long"),
            ("GET", "www.example.com", "/api/v1/long", "", "wild"),
            ("GET", "API.Example.com:8080", "/api/v1/long", "", "exact-host"),
            ("GET", "example.com", "/api", "", "any-root"),
            ("GET", "x.b.example.com", "/api", "", "deep-wild"),
            ("GET", "t", "/exact", "", "exact-path"),
            ("GET", "t", "/exact/more", "", "prefix-exact"),
            ("GET", "t", "/exactly", "", "prefix-exact"),
            ("POST", "t", "/m", "", "post-only"),
            ("GET", "t", "/m", "", "m-any"),
            ("GET", "t", "/h", "X-Canary: 1\r\n", "canary"),
            ("GET", "t", "/h", "X-Canary: 2\r\n", "no-debug"),
            ("GET", "t", "/h", "X-Debug: 1\r\n", "h-any"),
            ("GET", "t", "/dup/x", "", "first"),
            ("GET", "t", "/nothing", "", "any-root"),
        ];
        for (method, host, path, extra, want) in cases {
            let r = ask(a, Request::new(method, path).host(host).headers(extra).body(""));
            assert_eq!(r.status, 200, "{method} {host} {path}");
            assert_eq!(r.body_text(), *want, "{method} {host}{path} {extra:?}");
        }
    }

    fn no_matching_route_is_404(driver) {
        let cfg = Config::new().route(&respond("path_prefix = \"/only\"", "x")).render();
        let gw = Gateway::start(&cfg, driver);
        assert_eq!(get(gw.addr(), "/other").status, 404);
    }

    fn normalised_paths_cannot_get_around_a_deny_route(driver) {
        let origin = Origin::ok("backend");
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/admin\"\nrespond = { status = 403 }")
            .route("path_prefix = \"/\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, driver);
        for target in [
            "/admin",
            "/public/../admin",
            "//admin",
            "/%61dmin",
            "/./admin/x",
            "/public/%2e%2e/admin",
            "http://test.local/admin",
        ] {
            let r = roundtrip(
                gw.addr(),
                format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes(),
            )
            .expect("response");
            assert_eq!(r.status, 403, "{target}");
        }
        assert!(origin.all_bytes().is_empty(), "origin must see none of them");
        // An encoded slash is not a segment separator, but a dot-segment behind one is
        // refused: a backend that decodes %2F would serve /admin.
        let r = get(gw.addr(), "/public%2F..%2Fadmin");
        assert_eq!(r.status, 400);
        let r = get(gw.addr(), "/public%2Fadmin");
        assert_eq!(r.status, 200);
        assert_eq!(origin.wait_requests(1)[0].target, "/public%2Fadmin");
    }

    fn absolute_form_is_routed_and_forwarded_by_its_own_authority(driver) {
        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route("host = \"evil.example\"\npath_prefix = \"/\"\nrespond = { status = 403 }")
            .route("host = \"localhost\"\npath_prefix = \"/\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, driver);
        // RFC 9112 §3.2.2: the received Host is ignored and replaced by the target's.
        let r = roundtrip(gw.addr(), b"GET http://localhost:8080/abs?q=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            .expect("response");
        assert_eq!(r.status, 200);
        let seen = origin.wait_requests(1);
        assert_eq!(seen[0].target, "/abs?q=1");
        assert_eq!(seen[0].header_all("host"), vec!["localhost:8080"]);
        assert_eq!(seen[0].header("x-forwarded-host"), Some("localhost:8080"));
        assert!(!seen[0].head_text().contains("evil"), "{}", seen[0].head_text());
        // The other way round: the target's host is the one refused.
        let r = roundtrip(gw.addr(), b"GET http://evil.example/abs HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("response");
        assert_eq!(r.status, 403);
        // HTTP/1.0 without Host: the target's authority is sent as Host.
        let r = roundtrip(gw.addr(), b"GET http://LocalHost/ten HTTP/1.0\r\n\r\n").expect("response");
        assert_eq!(r.status, 200);
        let seen = origin.wait_requests(2);
        assert_eq!(seen[1].target, "/ten");
        assert_eq!(seen[1].header_all("host"), vec!["LocalHost"]);
        assert_eq!(origin.requests().len(), 2);
    }

    fn strip_prefix_removes_the_matched_prefix_and_keeps_the_query(driver) {
        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route("host = \"api.example.com\"\npath_prefix = \"/v1/\"\nstrip_prefix = true\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, driver);
        let r = roundtrip(gw.addr(), b"GET /v1/users?x=1&y=%2F HTTP/1.1\r\nHost: api.example.com\r\n\r\n").expect("response");
        assert_eq!(r.status, 200);
        let reqs = origin.wait_requests(1);
        assert_eq!(reqs[0].target, "/users?x=1&y=%2F");
        assert_eq!(reqs[0].header("host"), Some("api.example.com"));
    }

    fn rewrite_prefix_replaces_the_matched_prefix(driver) {
        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/api/\"\nrewrite_prefix = \"/internal/\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, driver);
        assert_eq!(get(gw.addr(), "/api/x/y").status, 200);
        assert_eq!(origin.wait_requests(1)[0].target, "/internal/x/y");
    }

    fn header_edits_apply_to_request_and_response(driver) {
        let origin = Origin::start(|_| {
            Reply::raw(b"HTTP/1.1 200 OK\r\nX-Powered-By: php\r\nX-Keep: 1\r\nContent-Length: 2\r\n\r\nok")
        });
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route(concat!(
                "path_prefix = \"/\"\nupstream = \"app\"\n",
                "request_headers = { set = { \"X-Env\" = \"prod\" }, add = { \"X-Added\" = \"a\" }, remove = [\"X-Debug\"] }\n",
                "response_headers = { set = { \"Cache-Control\" = \"no-store\" }, remove = [\"X-Powered-By\"] }"
            ))
            .render();
        let gw = Gateway::start(&cfg, driver);
        let r = roundtrip(
            gw.addr(),
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Env: dev\r\nX-Debug: 1\r\nX-Other: o\r\n\r\n",
        )
        .expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("x-powered-by"), None);
        assert_eq!(r.header("x-keep"), Some("1"));
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header_all("x-env"), vec!["prod"]);
        assert_eq!(req.header("x-added"), Some("a"));
        assert_eq!(req.header("x-debug"), None);
        assert_eq!(req.header("x-other"), Some("o"));
    }

    fn round_robin_spreads_requests_over_servers(driver) {
        let a = Origin::ok("a");
        let b = Origin::ok("b");
        let cfg = Config::new()
            .upstream("app", &[a.addr(), b.addr()])
            .route("path_prefix = \"/\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, driver);
        let bodies: Vec<String> = (0..4).map(|_| get(gw.addr(), "/").body_text()).collect();
        assert_eq!(bodies, ["a", "b", "a", "b"]);
    }
}
