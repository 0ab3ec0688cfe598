//! HTTP/2 from clients, end to end: the h2 crate's client (on a tokio runtime of the test's
//! own) talks h2c with prior knowledge to ringway, which forwards to a recording HTTP/1.1
//! origin. Both sides of the wire are checked: the frames the client got (status, fields,
//! body, stream resets) and the HTTP/1.1 bytes the origin got.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Method, Request};
use ringway_test_support::*;

/// What one stream answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A runtime for the client side of one test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An HTTP/2 connection with prior knowledge to `addr`.
async fn connect_h2(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Sends one request on `send` and reads its whole answer.
async fn exchange(
    send: &mut SendRequest<Bytes>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Answer, h2::Error> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://gw.test{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(()).expect("request");
    let mut ready = send.clone().ready().await?;
    let (response, mut stream) = ready.send_request(req, body.is_none())?;
    if let Some(body) = body {
        stream.send_data(Bytes::from(body), true)?;
    }
    let response = response.await?;
    let (parts, mut recv) = response.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    runtime().block_on(async {
        let mut send = connect_h2(addr).await;
        exchange(&mut send, Method::GET, path, &[], None)
            .await
            .expect("answer")
    })
}

fn gateway(origin: &Origin, d: Driver) -> Gateway {
    Gateway::start(&Config::proxy_all(origin.addr()).render(), d)
}

both_drivers! {
    fn a_get_over_h2c_reaches_the_origin_as_http11_and_comes_back_as_http2(d) {
        let origin = Origin::ok("hello over two");
        let gw = gateway(&origin, d);
        let a = get(gw.addr(), "/a/./b?x=1");
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"hello over two");
        assert_eq!(a.headers.get("server").map(|v| v.as_bytes()), Some(&b"ringway"[..]));
        assert_eq!(a.headers.get("content-length").map(|v| v.as_bytes()), Some(&b"14"[..]));
        for hop in ["connection", "keep-alive", "transfer-encoding"] {
            assert!(a.headers.get(hop).is_none(), "{hop} in an HTTP/2 response");
        }
        let seen = origin.wait_requests(1);
        let r = &seen[0];
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/a/b?x=1");
        assert!(r.raw.starts_with(b"GET /a/b?x=1 HTTP/1.1\r\n"), "{}", r.head_text());
        assert_eq!(r.header("host"), Some("gw.test"));
        assert_eq!(r.header("via"), Some("2 ringway"));
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(r.header("x-forwarded-proto"), Some("http"));
        assert!(r.header("x-request-id").is_some());
        assert!(r.header("traceparent").is_some());
    }

    fn request_bodies_stream_upstream_with_and_without_a_length(d) {
        let origin = Origin::start(Reply::echo);
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            let body = vec![b'x'; 100_000];
            let a = exchange(&mut send, Method::POST, "/echo", &[("content-length", "100000")], Some(body.clone()))
                .await
                .expect("answer");
            assert_eq!((a.status, a.body.len()), (200, 100_000));
            let a = exchange(&mut send, Method::PUT, "/echo", &[], Some(b"no length".to_vec()))
                .await
                .expect("answer");
            assert_eq!((a.status, &a.body[..]), (200, &b"no length"[..]));
        });
        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].header("content-length"), Some("100000"));
        assert_eq!(seen[0].body.len(), 100_000);
        assert_eq!(seen[1].header("transfer-encoding"), Some("chunked"));
        assert_eq!(seen[1].body, b"no length");
    }

    fn cookie_crumbs_are_joined_and_te_trailers_is_not_forwarded(d) {
        let origin = Origin::ok("ok");
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            let a = exchange(&mut send, Method::GET, "/c", &[("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers")], None)
                .await
                .expect("answer");
            assert_eq!(a.status, 200);
        });
        let seen = origin.wait_requests(1);
        assert_eq!(seen[0].header_all("cookie"), vec!["a=1; b=2"]);
        assert!(seen[0].header("te").is_none());
    }

    fn ringways_own_answers_and_refusals_reach_http2_clients(d) {
        let origin = Origin::ok("never");
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/teapot\"\nrespond = { status = 418, body = \"short and stout\" }")
            .route("path_prefix = \"/api\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, d);
        let a = get(gw.addr(), "/teapot");
        assert_eq!((a.status, &a.body[..]), (418, &b"short and stout"[..]));
        let a = get(gw.addr(), "/nowhere");
        assert_eq!((a.status, &a.body[..]), (404, &b"404 Not Found\n"[..]));
        let a = get(gw.addr(), "/api/x/..%2fadmin");
        assert_eq!(a.status, 400);
        assert!(origin.requests().is_empty());
    }

    fn a_hundred_concurrent_streams_on_one_connection_all_get_their_own_answer(d) {
        let origin = Origin::start(Reply::echo);
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let send = connect_h2(gw.addr()).await;
            let mut tasks = Vec::new();
            for i in 0..100 {
                let mut send = send.clone();
                tasks.push(tokio::spawn(async move {
                    let body = format!("stream {i}").into_bytes();
                    let a = exchange(&mut send, Method::POST, &format!("/s/{i}"), &[], Some(body.clone())).await;
                    (body, a)
                }));
            }
            for t in tasks {
                let (body, a) = t.await.expect("task");
                let a = a.expect("answer");
                assert_eq!(a.status, 200);
                assert_eq!(a.body, body, "each stream gets its own body back");
            }
        });
        assert_eq!(origin.wait_requests(100).len(), 100);
    }

    fn a_connection_idle_past_the_shrink_point_still_serves_concurrent_streams(d) {
        let origin = Origin::start(Reply::echo);
        let gw = gateway(&origin, d);
        let round = |send: SendRequest<Bytes>, tag: &'static str| async move {
            let mut tasks = Vec::new();
            for i in 0..20 {
                let mut send = send.clone();
                tasks.push(tokio::spawn(async move {
                    let body = vec![b'a' + (i % 26) as u8; 50_000 + i];
                    let path = format!("/{tag}/{i}");
                    // The same field on every stream: the client indexes it in HPACK's
                    // dynamic table, and the later round refers to the entry.
                    let a = exchange(&mut send, Method::POST, &path, &[("x-tenant", "tenant-0123456789")], Some(body.clone())).await;
                    (body, a)
                }));
            }
            for t in tasks {
                let (body, a) = t.await.expect("task");
                let a = a.expect("answer");
                assert_eq!(a.status, 200);
                assert_eq!(a.body, body, "each stream gets its own body back");
            }
        };
        runtime().block_on(async {
            let send = connect_h2(gw.addr()).await;
            round(send.clone(), "before").await;
            // The behaviour under test is time-based: after 1 s with no stream open the
            // connection gives its buffers, stream store and frame queues back.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            round(send.clone(), "after").await;
        });
        let seen = origin.wait_requests(40);
        assert_eq!(seen.len(), 40);
        for r in &seen {
            assert_eq!(r.header("x-tenant"), Some("tenant-0123456789"), "{}", r.target);
            assert!(r.header("host").is_some_and(|h| h == "gw.test"), "{}", r.target);
        }
    }

    fn grpc_calls_ringway_answers_itself_get_grpc_statuses(d) {
        let origin = Origin::ok("not reached");
        let cfg = Config::grpc_refusals(origin.addr());
        let gw = Gateway::start(&cfg, d);
        let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            // (path, gRPC status, ringway's HTTP status behind it)
            for (path, code, http) in [
                ("/pkg.Denied/Call", "7", "403 Forbidden"),
                ("/pkg.Nowhere/Call", "12", "404 Not Found"),
                ("/pkg.Gone/Call", "14", "502 Bad Gateway"),
            ] {
                let a = exchange(&mut send, Method::POST, path, &grpc, Some(vec![0, 0, 0, 0, 0]))
                    .await
                    .expect("answer");
                // Trailers-only: HTTP 200 and the status in the only HEADERS, no DATA.
                assert_eq!(a.status, 200, "{path}");
                let field = |n: &str| a.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                assert_eq!(field("content-type").as_deref(), Some("application/grpc"), "{path}");
                assert_eq!(field("grpc-status").as_deref(), Some(code), "{path}");
                assert_eq!(field("grpc-message"), Some(format!("ringway: {http}")), "{path}");
                assert_eq!(field("content-length"), None, "{path}");
                assert!(a.body.is_empty(), "{path}");
            }
            // A request that is not gRPC still gets the HTTP status.
            let a = exchange(&mut send, Method::GET, "/pkg.Denied/Call", &[], None).await.expect("answer");
            assert_eq!(a.status, 403);
            assert!(a.headers.get("grpc-status").is_none());
        });
        assert!(origin.requests().is_empty(), "nothing reached the origin");
    }

    fn a_grpc_timeout_bounds_the_wait_and_goes_upstream_reduced(d) {
        const GRPC_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\n\0\0\0\0\0\r\n0\r\ngrpc-status: 0\r\n\r\n";
        let origin = Origin::start(|req| {
            if req.target.ends_with("/Slow") {
                Reply::Delay(Duration::from_secs(5), Box::new(Reply::raw(GRPC_OK)))
            } else {
                Reply::raw(GRPC_OK)
            }
        });
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            let call = |timeout: &'static str| {
                [("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", timeout)]
            };
            // The deadline passes long before the upstream answers: DEADLINE_EXCEEDED then.
            let asked = std::time::Instant::now();
            let a = exchange(&mut send, Method::POST, "/pkg.S/Slow", &call("300m"), Some(vec![0; 5]))
                .await
                .expect("answer");
            let took = asked.elapsed();
            assert_eq!(a.status, 200);
            assert_eq!(a.headers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"4"[..]), "{:?}", a.headers);
            assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
            // In time: the upstream is told what is left of the deadline.
            let a = exchange(&mut send, Method::POST, "/pkg.S/Fast", &call("10S"), Some(vec![0; 5]))
                .await
                .expect("answer");
            assert_eq!(a.status, 200);
        });
        let seen = origin.wait_requests(2);
        let fast = seen.iter().find(|r| r.target.ends_with("/Fast")).expect("the fast call");
        let left = fast.header("grpc-timeout").expect("grpc-timeout forwarded");
        let (digits, unit) = left.split_at(left.len() - 1);
        let n: u64 = digits.parse().expect("digits");
        let left = match unit {
            "u" => Duration::from_micros(n),
            "m" => Duration::from_millis(n),
            other => panic!("unit {other}"),
        };
        assert!(left < Duration::from_secs(10) && left > Duration::from_secs(5), "{left:?}");
    }

    fn the_policy_edits_and_limits_apply_per_stream_as_for_http11(d) {
        let origin = Origin::start(Reply::echo);
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
             [auth.api_key]\n\n\
             [[consumers]]\nname = \"alice\"\ngroups = [\"admins\"]\n\
             api_keys = [\"sha256:72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20\"]\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
             access = {{ groups = [\"admins\"] }}\n\
             request_headers = {{ set = {{ \"X-Env\" = \"prod\" }} }}\n\
             rules = {{ max_body_bytes = 10, rate_limits = [{{ key = \"consumer\", rate = \"1/m\", burst = 3 }}] }}\n",
            origin.addr()
        );
        let gw = Gateway::start(&cfg, d);
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            let key = [("x-api-key", "alice-key")];
            // No credentials: 401, before any limit is spent.
            let a = exchange(&mut send, Method::GET, "/a", &[], None).await.expect("answer");
            assert_eq!(a.status, 401);
            // The consumer's requests: the route's edit reaches the origin.
            let a = exchange(&mut send, Method::POST, "/b", &key, Some(b"tiny".to_vec())).await.expect("answer");
            assert_eq!((a.status, &a.body[..]), (200, &b"tiny"[..]));
            // A body above the route's limit: 413.
            let a = exchange(&mut send, Method::POST, "/c", &key, Some(vec![b'x'; 64])).await.expect("answer");
            assert_eq!(a.status, 413);
            // The rate limit counts streams like requests: the burst of 3 is spent (the
            // 413 counted), the next is 429 with its fields.
            let a = exchange(&mut send, Method::GET, "/d", &key, None).await.expect("answer");
            assert_eq!(a.status, 200);
            let a = exchange(&mut send, Method::GET, "/e", &key, None).await.expect("answer");
            assert_eq!(a.status, 429);
            assert!(a.headers.get("retry-after").is_some(), "{:?}", a.headers);
        });
        let seen = origin.requests();
        let paths: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(paths, ["/b", "/d"], "only admitted requests reach the origin");
        assert!(seen.iter().all(|r| r.header("x-env") == Some("prod")));
    }

    fn a_plain_listener_with_http2_off_answers_a_preface_as_http11(d) {
        let origin = Origin::ok("x");
        let cfg = Config::proxy_all(origin.addr()).section("[server]\nhttp2 = false").render();
        let gw = Gateway::start(&cfg, d);
        let r = roundtrip(gw.addr(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").expect("an HTTP/1.1 answer");
        assert_eq!(r.status, 400);
        assert!(origin.requests().is_empty());
    }

    fn idle_and_old_connections_end_with_goaway(d) {
        let origin = Origin::ok("x");
        for timeouts in ["idle = \"300ms\"", "idle = \"60s\"\nmax_connection_age = \"300ms\""] {
            let cfg = Config::proxy_all(origin.addr())
                .section(&format!("[timeouts]\n{timeouts}"))
                .render();
            let gw = Gateway::start(&cfg, d);
            runtime().block_on(async {
                let tcp = tokio::net::TcpStream::connect(gw.addr()).await.expect("connect");
                let (mut send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
                let driver = tokio::spawn(conn);
                let a = exchange(&mut send, Method::GET, "/x", &[], None).await.expect("answer");
                assert_eq!(a.status, 200);
                // GOAWAY NO_ERROR, then the close: the client's connection ends cleanly.
                let ended = tokio::time::timeout(Duration::from_secs(5), driver)
                    .await
                    .unwrap_or_else(|_| panic!("{timeouts}: the connection is still open"))
                    .expect("driver task");
                assert!(ended.is_ok(), "{timeouts}: {ended:?}");
            });
        }
    }

    fn a_client_that_opens_no_window_has_its_stream_reset_after_the_write_timeout(d) {
        let origin = Origin::start(|_| Reply::ok(&"b".repeat(64 * 1024)));
        let cfg = Config::proxy_all(origin.addr())
            .section("[timeouts]\nwrite = \"300ms\"")
            .render();
        let gw = Gateway::start(&cfg, d);
        runtime().block_on(async {
            let tcp = tokio::net::TcpStream::connect(gw.addr()).await.expect("connect");
            // A stream window of 0, never opened: ringway can send the head, no DATA.
            let (send, conn) = h2::client::Builder::new()
                .initial_window_size(0)
                .handshake::<_, Bytes>(tcp)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            let mut ready = send.ready().await.expect("ready");
            let req = Request::get("http://gw.test/big").body(()).expect("request");
            let (response, _) = ready.send_request(req, true).expect("sent");
            let asked = std::time::Instant::now();
            let response = response.await.expect("the head goes out");
            assert_eq!(response.status().as_u16(), 200);
            let mut body = response.into_body();
            let err = loop {
                match tokio::time::timeout(Duration::from_secs(5), body.data()).await {
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => break e,
                    Ok(None) => panic!("the body ended with no window given"),
                    Err(_) => panic!("no reset within 5 s"),
                }
            };
            assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err:?}");
            assert!(asked.elapsed() >= Duration::from_millis(250), "{:?}", asked.elapsed());
        });
    }

    fn balancing_failover_error_pages_and_in_flight_limits_apply_per_stream(d) {
        let slow = Origin::start(|_| Reply::Delay(Duration::from_millis(500), Box::new(Reply::ok("slow"))));
        let cfg = Config::new()
            .section("[limits]\nmax_in_flight = 1")
            .section("[protect]\nserver_header = \"edge\"\nerror_pages = { \"404\" = { body = \"nothing here\\n\" } }")
            .upstream("app", &[dead_addr(), slow.addr()])
            .route("path_prefix = \"/app\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, d);
        runtime().block_on(async {
            let send = connect_h2(gw.addr()).await;
            // Two streams at once with room for one request in flight: one is served (by
            // the live server, after the dead one failed to connect), the other gets 503.
            let mut tasks = Vec::new();
            for i in 0..2 {
                let mut send = send.clone();
                tasks.push(tokio::spawn(async move {
                    exchange(&mut send, Method::GET, &format!("/app/{i}"), &[], None).await.expect("answer")
                }));
            }
            let mut statuses = Vec::new();
            for t in tasks {
                let a = t.await.expect("task");
                assert_eq!(a.headers.get("server").map(|v| v.as_bytes()), Some(&b"edge"[..]));
                if a.status == 200 {
                    assert_eq!(a.body, b"slow");
                }
                statuses.push(a.status);
            }
            statuses.sort();
            assert_eq!(statuses, [200, 503]);
            // The next one finds the limit free again, and the configured error page.
            let mut send = send.clone();
            let a = exchange(&mut send, Method::GET, "/app/again", &[], None).await.expect("answer");
            assert_eq!(a.status, 200);
            let a = exchange(&mut send, Method::GET, "/none", &[], None).await.expect("answer");
            assert_eq!((a.status, &a.body[..]), (404, &b"nothing here\n"[..]));
        });
        assert_eq!(slow.requests().len(), 2);
    }

    fn a_thousand_sequential_streams_share_one_connection(d) {
        let origin = Origin::ok("seq");
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            for i in 0..1000 {
                let a = exchange(&mut send, Method::GET, &format!("/n/{i}"), &[], None)
                    .await
                    .expect("answer");
                assert_eq!((a.status, &a.body[..]), (200, &b"seq"[..]), "stream {i}");
            }
        });
        assert_eq!(origin.requests().len(), 1000);
        assert!(origin.connections() <= 2, "upstream keep-alive: {}", origin.connections());
    }

    fn head_204_and_304_answers_carry_no_data(d) {
        let origin = Origin::start(|r| match r.target.as_str() {
            "/204" => Reply::raw(b"HTTP/1.1 204 No Content\r\n\r\n"),
            "/304" => Reply::raw(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
            // A HEAD answer: the length of the body a GET would get, and no body.
            _ => Reply::raw(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"),
        });
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let mut send = connect_h2(gw.addr()).await;
            let a = exchange(&mut send, Method::HEAD, "/h", &[], None).await.expect("answer");
            assert_eq!((a.status, a.body.len()), (200, 0));
            assert_eq!(a.headers.get("content-length").map(|v| v.as_bytes()), Some(&b"6"[..]));
            let a = exchange(&mut send, Method::GET, "/204", &[], None).await.expect("answer");
            assert_eq!((a.status, a.body.len()), (204, 0));
            let a = exchange(&mut send, Method::GET, "/304", &[], None).await.expect("answer");
            assert_eq!((a.status, a.body.len()), (304, 0));
        });
    }

    fn a_chunked_upstream_response_streams_to_an_http2_client(d) {
        let origin = Origin::start(|_| {
            Reply::raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        });
        let gw = gateway(&origin, d);
        let a = get(gw.addr(), "/chunks");
        assert_eq!((a.status, &a.body[..]), (200, &b"hello world"[..]));
        assert!(a.headers.get("transfer-encoding").is_none());
    }

    fn a_client_that_goes_away_mid_stream_leaves_other_connections_served(d) {
        let origin = Origin::start(|r| {
            if r.target == "/slow" {
                Reply::Delay(Duration::from_millis(500), Box::new(Reply::ok("late")))
            } else {
                Reply::ok("fresh")
            }
        });
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let send = connect_h2(gw.addr()).await;
            let req = Request::get("http://gw.test/slow").body(()).expect("request");
            let mut ready = send.clone().ready().await.expect("ready");
            let (response, _) = ready.send_request(req, true).expect("sent");
            drop(response);
            drop(send);
        });
        let a = get(gw.addr(), "/after");
        assert_eq!((a.status, &a.body[..]), (200, &b"fresh"[..]));
    }
}

#[test]
fn grpc_statuses_reach_the_access_log_and_the_metrics() {
    // The origin answers like a gRPC server behind an HTTP/1.1 hop: chunked, with the
    // status in a trailer.
    let origin = Origin::start(|req| {
        if req.target.ends_with("/plain") {
            return Reply::ok("plain");
        }
        Reply::raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\n\0\0\0\0\0\r\n0\r\ngrpc-status: 0\r\n\r\n",
        )
    });
    let dir = std::env::temp_dir().join(format!("ringway-grpclog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let log = dir.join("access.log");
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n[access_log]\npath = \"{}\"\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/pkg.Denied/\"\nupstream = \"app\"\n\
         rules = {{ ip_deny = [\"127.0.0.0/8\"] }}\n\n\
         [[routes]]\npath_prefix = \"/pkg.Ok/\"\nupstream = \"app\"\n",
        log.display(),
        origin.addr()
    );
    let gw = Gateway::start(&cfg, Driver::IoUring);
    let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
    runtime().block_on(async {
        let mut send = connect_h2(gw.addr()).await;
        for path in ["/pkg.Denied/Call", "/pkg.Ok/Call", "/pkg.Nowhere/Call"] {
            let a = exchange(
                &mut send,
                Method::POST,
                path,
                &grpc,
                Some(vec![0, 0, 0, 0, 0]),
            )
            .await
            .expect("answer");
            assert_eq!(a.status, 200, "{path}");
        }
        // Not gRPC: no gRPC status anywhere.
        exchange(&mut send, Method::GET, "/pkg.Ok/plain", &[], None)
            .await
            .expect("answer");
    });
    let lines = eventually("four access log lines").until(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 4 {
            Ok(text)
        } else {
            Err(text)
        }
    });
    let status_of = |path: &str| -> serde_json::Value {
        let line = lines
            .lines()
            .find(|l| l.contains(&format!("\"path\":\"{path}\"")))
            .unwrap_or_else(|| panic!("no line for {path}: {lines}"));
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        assert_eq!(v["status"], 200, "{line}");
        v["grpc_status"].clone()
    };
    assert_eq!(status_of("/pkg.Denied/Call"), 7);
    assert_eq!(status_of("/pkg.Ok/Call"), 0);
    assert_eq!(status_of("/pkg.Nowhere/Call"), 12);
    assert!(status_of("/pkg.Ok/plain").is_null());
    let metrics = ringway_test_support::get(gw.admin_addr(), "/metrics").body_text();
    for status in ["PERMISSION_DENIED", "OK", "UNIMPLEMENTED"] {
        assert!(
            metrics.contains(&format!(
                "ringway_grpc_responses_total{{status=\"{status}\"}} 1\n"
            )),
            "{status}: {metrics}"
        );
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_access_log_and_metrics_say_which_protocol_a_request_came_with() {
    let origin = Origin::ok("logged");
    let dir = std::env::temp_dir().join(format!("ringway-h2log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let log = dir.join("access.log");
    let cfg = Config::proxy_all(origin.addr())
        .section(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[access_log]\npath = \"{}\"",
            log.display()
        ))
        .render();
    let gw = Gateway::start(&cfg, Driver::IoUring);
    assert_eq!(get(gw.addr(), "/two").status, 200);
    assert_eq!(ringway_test_support::get(gw.addr(), "/one").status, 200);
    let lines = eventually("two access log lines").until(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        lines.contains("\"path\":\"/two\"") && lines.contains("\"protocol\":\"HTTP/2\""),
        "{lines}"
    );
    assert!(
        lines.contains("\"path\":\"/one\"") && lines.contains("\"protocol\":\"HTTP/1.1\""),
        "{lines}"
    );
    let metrics = ringway_test_support::get(gw.admin_addr(), "/metrics").body_text();
    assert!(
        metrics.contains("ringway_requests_by_protocol_total{protocol=\"HTTP/2\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringway_requests_by_protocol_total{protocol=\"HTTP/1.1\"} 1"),
        "{metrics}"
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits, letting the runtime drive the connections, until the origin has a request.
async fn upstream_has_it(origin: &Origin) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while origin.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `total` bytes of body in pieces while reading the answer at the same time, so
/// that flow control runs both ways; returns (status, body bytes received).
async fn stream_both_ways(send: &mut SendRequest<Bytes>, path: &str, total: usize) -> (u16, usize) {
    let req = Request::post(format!("http://gw.test{path}"))
        .body(())
        .expect("request");
    let mut ready = send.clone().ready().await.expect("ready");
    let (response, mut out) = ready.send_request(req, false).expect("sent");
    let upload = async move {
        let piece = Bytes::from(vec![b'u'; 64 * 1024]);
        let mut sent = 0;
        while sent < total {
            let n = piece.len().min(total - sent);
            out.reserve_capacity(n);
            let granted = std::future::poll_fn(|cx| out.poll_capacity(cx))
                .await
                .expect("capacity")
                .expect("no error");
            let n = n.min(granted);
            out.send_data(piece.slice(..n), sent + n == total)
                .expect("data");
            sent += n;
        }
    };
    let download = async move {
        let response = response.await.expect("response");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut got = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("chunk");
            got += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        (status, got)
    };
    let ((), result) = tokio::join!(upload, download);
    result
}

/// 64 MiB down, then 64 MiB up and down at once, over HTTP/2 through ringway to the bundled
/// origin over `protocol`; ringway's RSS must grow by less than 48 MiB: flow control holds
/// each side to what the other takes.
fn sixty_four_mib_each_way(protocol: &str, d: Driver) {
    let origin = BundledOrigin::start();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[limits]\nmax_body_bytes = 0\n\n\
         [[upstreams]]\nname = \"o\"\nservers = [\"{}\"]\nprotocol = \"{protocol}\"\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"o\"\n",
        origin.addr
    );
    let gw = Gateway::start(&cfg, d);
    let before = gw.rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = gw.pid();
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    const MIB64: usize = 64 * 1024 * 1024;
    runtime().block_on(async {
        let mut send = connect_h2(gw.addr()).await;
        // Down: 64 MiB from the origin.
        let a = exchange(
            &mut send,
            Method::GET,
            &format!("/bytes/{MIB64}"),
            &[],
            None,
        )
        .await
        .expect("download");
        assert_eq!((a.status, a.body.len()), (200, MIB64));
        // Up and down at once: 64 MiB echoed back as it goes.
        let (status, got) = stream_both_ways(&mut send, "/echo", MIB64).await;
        assert_eq!((status, got), (200, MIB64));
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let grew_mib = (peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before))
        / 1024;
    assert!(
        grew_mib < 48,
        "{protocol}: ringway grew by {grew_mib} MiB while relaying 64 MiB each way"
    );
}

both_drivers! {
    fn sixty_four_mib_each_way_keeps_memory_bounded(d) {
        sixty_four_mib_each_way("http1", d);
    }

    fn sixty_four_mib_each_way_to_an_http2_upstream_keeps_memory_bounded(d) {
        sixty_four_mib_each_way("h2c", d);
    }

    fn a_drain_lets_streams_in_flight_finish_and_says_goaway(d) {
        let origin = Origin::start(|_| Reply::Delay(Duration::from_millis(600), Box::new(Reply::ok("finished"))));
        let mut gw = gateway(&origin, d);
        let addr = gw.addr();
        let rt = runtime();
        let answer = rt.block_on(async {
            let mut send = connect_h2(addr).await;
            let in_flight = tokio::spawn(async move {
                exchange(&mut send, Method::GET, "/slow", &[], None).await
            });
            // Once the origin has the request, drain.
            upstream_has_it(&origin).await;
            gw.signal("TERM");
            in_flight.await.expect("task")
        });
        let a = answer.expect("the stream in flight is answered");
        assert_eq!((a.status, &a.body[..]), (200, &b"finished"[..]));
        assert!(gw.wait_exit().is_some(), "ringway exits once drained");
    }

    fn a_reload_ends_http2_connections_with_goaway_after_their_streams(d) {
        let origin = Origin::start(|r| {
            if r.target == "/slow" {
                Reply::Delay(Duration::from_millis(600), Box::new(Reply::ok("old")))
            } else {
                Reply::ok("new")
            }
        });
        let cfg = Config::proxy_all(origin.addr()).render();
        let gw = Gateway::start(&cfg, d);
        let addr = gw.addr();
        runtime().block_on(async {
            let mut send = connect_h2(addr).await;
            let mut second = send.clone();
            let in_flight = tokio::spawn(async move {
                exchange(&mut send, Method::GET, "/slow", &[], None).await
            });
            upstream_has_it(&origin).await;
            std::fs::write(gw.config_path(), cfg.replace("workers = 1", "workers = 1\nvia = \"edge\"")).expect("config");
            gw.signal("HUP");
            gw.wait_log("config reloaded (version 2)");
            let a = in_flight.await.expect("task").expect("answered");
            assert_eq!((a.status, &a.body[..]), (200, &b"old"[..]));
            // The connection said GOAWAY: no new stream on it.
            let after = exchange(&mut second, Method::GET, "/after", &[], None).await;
            assert!(after.is_err(), "a new stream on a connection told to go away: {after:?}");
        });
        // A new connection gets the new config.
        let a = get(addr, "/fresh");
        assert_eq!(a.status, 200);
        let last = origin.requests().last().and_then(|r| r.header("via").map(str::to_owned));
        assert_eq!(last.as_deref(), Some("2 edge"));
    }
}

both_drivers! {
    fn interim_responses_and_chunked_trailers_reach_the_http2_client(d) {
        // The upstream hints, sends an unasked 100 (ringway answers Expect itself), then a
        // chunked body with trailers (their arrival split across reads is the decoder's
        // unit test).
        let origin = Origin::start(|_| {
            Reply::raw(
                b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n\
                  HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n\
                  5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\nX-Sum:  abc \r\n\r\n",
            )
        });
        let gw = gateway(&origin, d);
        runtime().block_on(async {
            let send = connect_h2(gw.addr()).await;
            let mut ready = send.ready().await.expect("ready");
            let req = Request::get("http://gw.test/hints").body(()).expect("request");
            let (mut response, _) = ready.send_request(req, true).expect("sent");
            let mut interim = Vec::new();
            while let Some(r) = std::future::poll_fn(|cx| response.poll_informational(cx)).await {
                let r = r.expect("interim");
                interim.push((r.status().as_u16(), r.headers().clone()));
            }
            assert_eq!(interim.len(), 1, "{interim:?}");
            let (status, fields) = &interim[0];
            assert_eq!(*status, 103);
            assert_eq!(fields.get("link").map(|v| v.as_bytes()), Some(&b"</app.css>; rel=preload"[..]));
            assert!(fields.get("x-hop").is_none() && fields.get("connection").is_none(), "{fields:?}");
            let response = response.await.expect("response");
            assert_eq!(response.status().as_u16(), 200);
            assert!(response.headers().get("trailer").is_none());
            let mut body = response.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("data");
                let _ = body.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, b"hello world");
            let trailers = body.trailers().await.expect("trailers").expect("some trailers");
            assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
            assert_eq!(trailers.get("x-sum").map(|v| v.as_bytes()), Some(&b"abc"[..]));
            assert_eq!(trailers.len(), 2, "{trailers:?}");
        });
        assert_eq!(origin.wait_requests(1).len(), 1);
    }
}
