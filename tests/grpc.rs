//! gRPC, driven by a gRPC implementation nobody on this project wrote: Python's grpcio
//! (the C-core implementation), run from `tests/grpc/client.py`. The bundled origin's gRPC
//! echo service, and ringway's own answers to gRPC calls.
//!
//! The Python comes from `RINGWAY_GRPC_PYTHON` (`.ci/run` makes a virtualenv with grpcio
//! and names it there), else `python3` if it can `import grpc`. Without either the tests
//! say they were skipped and why, unless `RINGWAY_REQUIRE_GRPCIO=1` (CI sets it), which
//! makes that a failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use ringway_test_support::*;

/// A Python that can `import grpc`, or None (after saying why, or failing if required).
fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("RINGWAY_GRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&candidate)
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    let why = format!(
        "{} cannot import grpc: pip install grpcio (or set RINGWAY_GRPC_PYTHON)",
        candidate.display()
    );
    if std::env::var("RINGWAY_REQUIRE_GRPCIO").as_deref() == Ok("1") {
        panic!("{why}");
    }
    println!("skipped: {why}");
    None
}

/// grpcio's client (`tests/grpc/client.py`) on `method` with `extra` arguments: its status
/// code name, details, responses and trailing metadata.
fn call(py: &PathBuf, addr: SocketAddr, method: &str, extra: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/client.py");
    let out = Command::new(py)
        .args([script, &addr.to_string(), method, "--timeout", "20"])
        .args(extra)
        .output()
        .expect("run the grpcio client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

#[test]
fn the_bundled_origin_echoes_grpc_calls_to_grpcio() {
    let Some(py) = python() else { return };
    let origin = BundledOrigin::start();
    let unary = call(&py, origin.addr, "/ringway.Echo/Unary", &[]);
    assert_eq!(
        (&unary["code"], &unary["echoed"]),
        (&"OK".into(), &true.into()),
        "{unary}"
    );
    // 1,000 messages each way on one call, with metadata back as trailing metadata.
    let bidi = call(
        &py,
        origin.addr,
        "/ringway.Echo/Bidi",
        &[
            "--stream",
            "1000",
            "--size",
            "100",
            "--meta",
            "x-meta-a=1",
            "--meta",
            "x-meta-b-bin=00ff",
        ],
    );
    assert_eq!(bidi["code"], "OK", "{bidi}");
    assert_eq!(bidi["responses"], 1000, "{bidi}");
    assert_eq!(bidi["echoed"], true, "{bidi}");
    let trailing = bidi["trailing"].to_string();
    assert!(
        trailing.contains(r#"["x-meta-a","1"]"#) && trailing.contains(r#"["x-meta-b-bin","00ff"]"#),
        "{bidi}"
    );
    // A 4 MiB message each way.
    let big = call(
        &py,
        origin.addr,
        "/ringway.Echo/Big",
        &["--size", "4194304"],
    );
    assert_eq!(
        (&big["code"], &big["echoed"]),
        (&"OK".into(), &true.into()),
        "{big}"
    );
    // A status asked for comes back trailers-only with its message.
    let denied = call(
        &py,
        origin.addr,
        "/ringway.Echo/Err",
        &["--meta", "x-grpc-status=7", "--meta", "x-grpc-message=nope"],
    );
    assert_eq!(
        (&denied["code"], &denied["details"]),
        (&"PERMISSION_DENIED".into(), &"nope".into()),
        "{denied}"
    );
}

both_drivers! {
    fn grpcio_sees_ringways_own_answers_as_grpc_statuses(d) {
        let Some(py) = python() else { return };
        let origin = Origin::ok("not reached");
        let cfg = Config::grpc_refusals(origin.addr());
        let gw = Gateway::start(&cfg, d);
        for (method, code, details) in [
            ("/pkg.Denied/Call", "PERMISSION_DENIED", "ringway: 403 Forbidden"),
            ("/pkg.Nowhere/Call", "UNIMPLEMENTED", "ringway: 404 Not Found"),
            ("/pkg.Gone/Call", "UNAVAILABLE", "ringway: 502 Bad Gateway"),
        ] {
            let r = call(&py, gw.addr(), method, &[]);
            assert_eq!(r["code"], code, "{method}: {r}");
            assert_eq!(r["details"], details, "{method}: {r}");
        }
        assert!(origin.requests().is_empty(), "nothing reached the origin");
    }
}

/// `tests/grpc/server.py`: a grpcio server on 127.0.0.1:0, its later stdout lines kept for
/// `wait_line`; killed by its PID on drop.
struct GrpcServer {
    child: std::process::Child,
    addr: SocketAddr,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl GrpcServer {
    fn start(py: &PathBuf, args: &[&str]) -> GrpcServer {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/server.py");
        let mut child = Command::new(py)
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the grpcio server");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready line");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("grpcio server said {line:?}"));
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                keep.lock().expect("lines").push(l);
            }
        });
        GrpcServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
        }
    }

    /// Whether a stdout line equal to `line` came within `within`.
    fn wait_line(&self, line: &str, within: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + within;
        loop {
            if self.lines.lock().expect("lines").iter().any(|l| l == line) {
                return true;
            }
            if std::time::Instant::now() > end {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// SIGTERM: a graceful stop (GOAWAY, calls in flight finish).
    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway in front of `servers` as one HTTP/2 upstream (`protocol`, `extra` upstream
/// fields), every path routed to it, with `more` appended (routes first match in order,
/// so `more` cannot take paths from the catch-all: it is placed before it).
fn h2_gateway(servers: &[SocketAddr], upstream: &str, more: &str, d: Driver) -> Gateway {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [limits]\nmax_body_bytes = 16777216\n\n\
         [timeouts]\nupstream_connect = \"1s\"\n\n\
         [[upstreams]]\nname = \"grpc\"\nservers = [{}]\n{upstream}\n\n\
         {more}\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"grpc\"\n",
        list.join(", ")
    );
    Gateway::start(&cfg, d)
}

both_drivers! {
    fn every_grpc_call_kind_streams_through_ringway_to_a_grpcio_server(d) {
        let Some(py) = python() else { return };
        let server = GrpcServer::start(&py, &[]);
        let log = std::env::temp_dir().join(format!(
            "ringway-grpc-log-{}-{}.log", std::process::id(), d.env()));
        let _ = std::fs::remove_file(&log);
        let more = format!("[access_log]\npath = \"{}\"\n", log.display());
        let gw = h2_gateway(&[server.addr], "protocol = \"h2c\"", &more, d);
        let a = gw.addr();
        // Unary, with request metadata (a -bin one too) back as trailing metadata.
        let r = call(&py, a, "/test.Echo/Unary",
            &["--meta", "x-meta-k=v", "--meta", "x-meta-b-bin=00ff01"]);
        assert_eq!((&r["code"], &r["echoed"]), (&"OK".into(), &true.into()), "{r}");
        let trailing = r["trailing"].to_string();
        assert!(trailing.contains(r#"["x-meta-k","v"]"#)
            && trailing.contains(r#"["x-meta-b-bin","00ff01"]"#), "{r}");
        // What reached the server: the metadata, the forwarding fields, no hop-by-hop.
        let who = call(&py, a, "/test.Echo/Who", &["--meta", "x-meta-b-bin=00ff01"]);
        let seen = who["reply"].as_str().unwrap_or_default().to_string();
        assert!(seen.contains("x-meta-b-bin=00ff01"), "{seen}");
        assert!(seen.contains("x-forwarded-for=127.0.0.1"), "{seen}");
        assert!(seen.contains("x-forwarded-proto=http"), "{seen}");
        assert!(!seen.contains("connection="), "{seen}");
        // Server streaming: 1,000 messages.
        let r = call(&py, a, "/test.Echo/ServerStream",
            &["--kind", "server", "--request", "1000 100"]);
        assert_eq!((&r["code"], &r["responses"]), (&"OK".into(), &1000.into()), "{r}");
        // Client streaming: 1,000 messages.
        let r = call(&py, a, "/test.Echo/ClientStream",
            &["--kind", "client", "--stream", "1000", "--size", "100"]);
        assert_eq!((&r["code"], &r["reply"]), (&"OK".into(), &"1000 100000".into()), "{r}");
        // Bidirectional: 1,000 messages each way, in order.
        let r = call(&py, a, "/test.Echo/Bidi", &["--stream", "1000", "--size", "64"]);
        assert_eq!((&r["code"], &r["responses"], &r["echoed"]),
            (&"OK".into(), &1000.into(), &true.into()), "{r}");
        // Interleaved: each message goes only once the reply to the one before came back,
        // so nothing waits for the client to half-close.
        let r = call(&py, a, "/test.Echo/Bidi",
            &["--kind", "interleave", "--stream", "50", "--size", "10"]);
        assert_eq!((&r["code"], &r["responses"]), (&"OK".into(), &50.into()), "{r}");
        // 4 MiB each way.
        let r = call(&py, a, "/test.Echo/Unary", &["--size", "4194304"]);
        assert_eq!((&r["code"], &r["echoed"]), (&"OK".into(), &true.into()), "{r}");
        // A server's error status, with its message.
        let r = call(&py, a, "/test.Echo/Unary",
            &["--meta", "x-status=9", "--meta", "x-message=not now"]);
        assert_eq!((&r["code"], &r["details"]),
            (&"FAILED_PRECONDITION".into(), &"not now".into()), "{r}");
        // 200 calls at once on one channel.
        let r = call(&py, a, "/test.Echo/Unary", &["--concurrent", "200"]);
        assert_eq!((&r["code"], &r["responses"], &r["echoed"]),
            (&"OK".into(), &200.into(), &true.into()), "{r}");
        // The access log's and the metrics' gRPC status.
        let metrics = get(gw.admin_addr(), "/metrics").body_text();
        assert!(metrics.lines().any(|l| l.starts_with("ringway_grpc_responses_total{status=\"FAILED_PRECONDITION\"} ")),
            "{metrics}");
        let lines = eventually("the gRPC statuses in the access log").until(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("\"grpc_status\":9").then_some(text)
        });
        assert!(lines.lines().any(|l| l.contains("\"status\":200") && l.contains("\"grpc_status\":0")),
            "{lines}");
        let _ = std::fs::remove_file(&log);
    }

    fn grpc_deadlines_and_cancellations_reach_the_grpcio_server(d) {
        let Some(py) = python() else { return };
        let server = GrpcServer::start(&py, &[]);
        let gw = h2_gateway(&[server.addr], "protocol = \"h2c\"", "", d);
        // The client cancels mid-call: the server sees its call cancelled at once (the
        // upstream stream is reset), not after the 5 s it would sleep.
        let start = std::time::Instant::now();
        let r = call(&py, gw.addr(), "/test.Echo/Sleep",
            &["--request", "5", "--cancel-after", "0.5", "--meta", "x-id=c1"]);
        assert_eq!(r["code"], "CANCELLED", "{r}");
        assert!(server.wait_line("cancelled c1", std::time::Duration::from_secs(3)),
            "the cancellation reached the server");
        assert!(start.elapsed() < std::time::Duration::from_secs(4));
        // A deadline shorter than the call: DEADLINE_EXCEEDED on time, and the server's call
        // ends too.
        let start = std::time::Instant::now();
        let r = call(&py, gw.addr(), "/test.Echo/Sleep",
            &["--request", "5", "--timeout", "0.4", "--meta", "x-id=d1"]);
        assert_eq!(r["code"], "DEADLINE_EXCEEDED", "{r}");
        assert!(start.elapsed() < std::time::Duration::from_secs(3));
        assert!(server.wait_line("cancelled d1", std::time::Duration::from_secs(3)));
    }

    fn a_grpc_upstream_going_away_or_down_is_told_apart(d) {
        let Some(py) = python() else { return };
        let a = GrpcServer::start(&py, &[]);
        let b = GrpcServer::start(&py, &[]);
        let gw = h2_gateway(&[a.addr, b.addr], "protocol = \"h2c\"", "", d);
        let addr = gw.addr();
        // Calls in flight on both servers; one of them stops gracefully (GOAWAY): every
        // call in flight still completes, and new calls go on.
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let py = py.clone();
                std::thread::spawn(move || {
                    let id = format!("x-id=g{i}");
                    call(&py, addr, "/test.Echo/Sleep", &["--request", "1", "--meta", &id])
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        a.terminate();
        assert!(a.wait_line("stopping", std::time::Duration::from_secs(3)));
        for _ in 0..4 {
            let r = call(&py, addr, "/test.Echo/Unary", &[]);
            assert_eq!(r["code"], "OK", "a new call after the GOAWAY: {r}");
        }
        for c in calls {
            let r = c.join().expect("call");
            assert_eq!((&r["code"], &r["reply"]), (&"OK".into(), &"slept".into()), "{r}");
        }
        assert!(a.wait_line("stopped", std::time::Duration::from_secs(5)));
        drop(a);
        drop(b);
        // Nothing listens any more: UNAVAILABLE, quickly.
        let start = std::time::Instant::now();
        let r = call(&py, addr, "/test.Echo/Unary", &[]);
        assert_eq!(r["code"], "UNAVAILABLE", "{r}");
        assert!(start.elapsed() < std::time::Duration::from_secs(3));
    }

    fn grpc_methods_route_and_deny_by_service_and_method(d) {
        let Some(py) = python() else { return };
        let server = GrpcServer::start(&py, &[]);
        let more = "[[routes]]\npath = \"/test.Echo/Who\"\nupstream = \"grpc\"\n\
                    rules = { ip_deny = [\"127.0.0.0/8\"] }\n";
        let gw = h2_gateway(&[server.addr], "protocol = \"h2c\"", more, d);
        let r = call(&py, gw.addr(), "/test.Echo/Who", &[]);
        assert_eq!((&r["code"], &r["details"]),
            (&"PERMISSION_DENIED".into(), &"ringway: 403 Forbidden".into()), "{r}");
        let r = call(&py, gw.addr(), "/test.Echo/Unary", &[]);
        assert_eq!(r["code"], "OK", "{r}");
    }

    fn an_http1_client_reaches_an_http2_upstream_trailers_and_all(d) {
        let Some(py) = python() else { return };
        let server = GrpcServer::start(&py, &[]);
        let origin = BundledOrigin::start();
        let more = format!(
            "[[upstreams]]\nname = \"plain\"\nservers = [\"{}\"]\nprotocol = \"h2c\"\n\n\
             [[routes]]\npath_prefix = \"/bytes/\"\nupstream = \"plain\"\n\n\
             [[routes]]\npath_prefix = \"/ringway.Echo/\"\nupstream = \"plain\"\n",
            origin.addr
        );
        let gw = h2_gateway(&[server.addr], "protocol = \"h2c\"", &more, d);
        // A plain GET over HTTP/1.1 to an h2c origin: length and body intact.
        let r = get(gw.addr(), "/bytes/100000");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("100000"));
        assert_eq!(r.body.len(), 100000);
        // gRPC over HTTP/1.1 with TE: trailers: the reply chunked, the status and the
        // trailing metadata as trailer fields.
        let mut body = vec![0u8, 0, 0, 0, 5];
        body.extend_from_slice(b"hello");
        let head = format!(
            "POST /test.Echo/Unary HTTP/1.1\r\nHost: gw\r\nContent-Type: application/grpc\r\n\
             TE: trailers\r\nx-meta-t: yes\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let text = grpc_over_http1(gw.addr(), head.as_bytes(), &body);
        assert!(text.contains("hello"), "{text}");
        let trailer = &text[text.find("\r\n0\r\n").expect("last chunk")..];
        assert!(trailer.contains("grpc-status: 0"), "{text}");
        assert!(trailer.contains("x-meta-t: yes"), "{text}");
        // A chunked request's trailer fields go on as HTTP/2 trailers: the bundled origin's
        // echo sends its request trailers' x-meta-* fields back.
        let head = "POST /ringway.Echo/Unary HTTP/1.1\r\nHost: gw\r\n\
            Content-Type: application/grpc\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n";
        let chunked = b"a\r\n\x00\x00\x00\x00\x05hello\r\n0\r\nx-meta-late: later\r\n\r\n";
        let text = grpc_over_http1(gw.addr(), head.as_bytes(), chunked);
        let trailer = &text[text.find("\r\n0\r\n").expect("last chunk")..];
        assert!(trailer.contains("x-meta-late: later"), "{text}");
        assert!(trailer.contains("grpc-status: 0"), "{text}");
    }
}

/// Sends `head` and `body` over HTTP/1.1 and reads the response until its trailer section
/// (with a `grpc-status`) has ended; lower-cased, checked to be a 200 sent chunked.
fn grpc_over_http1(addr: SocketAddr, head: &[u8], body: &[u8]) -> String {
    use std::io::Read;
    let mut s = connect(addr);
    send(&mut s, head);
    send(&mut s, body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(raw.ends_with(b"\r\n\r\n") && String::from_utf8_lossy(&raw).contains("grpc-status")) {
        assert!(
            std::time::Instant::now() < end,
            "{}",
            String::from_utf8_lossy(&raw)
        );
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e}"),
        }
    }
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    text
}

#[test]
fn streams_fill_the_servers_limit_then_new_connections_then_503() {
    let Some(py) = python() else { return };
    // One stream at a time per connection, two connections per server at most.
    let server = GrpcServer::start(&py, &["--max-streams", "1"]);
    let upstream = "protocol = \"h2c\"\nhttp2_connections = 2";
    let gw = h2_gateway(&[server.addr], upstream, "", Driver::IoUring);
    let addr = gw.addr();
    // A first call learns the server's SETTINGS.
    assert_eq!(call(&py, addr, "/test.Echo/Unary", &[])["code"], "OK");
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let py = py.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100 * i));
                call(&py, addr, "/test.Echo/Sleep", &["--request", "1.5"])
            })
        })
        .collect();
    let results: Vec<serde_json::Value> =
        calls.into_iter().map(|c| c.join().expect("call")).collect();
    let ok = results.iter().filter(|r| r["reply"] == "slept").count();
    let full: Vec<_> = results
        .iter()
        .filter(|r| r["code"] == "UNAVAILABLE")
        .collect();
    assert_eq!((ok, full.len()), (2, 1), "{results:?}");
    assert_eq!(
        full[0]["details"], "ringway: 503 Service Unavailable",
        "{results:?}"
    );
}

#[test]
fn an_idle_upstream_connection_that_stops_answering_pings_is_dropped() {
    let Some(py) = python() else { return };
    let server = GrpcServer::start(&py, &[]);
    let gw = h2_gateway(&[server.addr], "protocol = \"h2c\"", "", Driver::IoUring);
    assert_eq!(call(&py, gw.addr(), "/test.Echo/Unary", &[])["code"], "OK");
    // The server stops (its kernel still takes the bytes): the idle connection's next PING
    // (every 10 s) gets no PONG within upstream_connect (1 s here), and it is dropped.
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        let _ = Command::new("kill").args([sig, &pid]).status();
    };
    signal("-STOP");
    let dropped = eventually("the dead connection to be dropped")
        .within(std::time::Duration::from_secs(20))
        .try_until(|| gw.stderr_text().contains("no PONG in time").then_some(()));
    signal("-CONT");
    assert!(dropped.is_some(), "{}", gw.stderr_text());
    // A new connection serves the next call.
    assert_eq!(call(&py, gw.addr(), "/test.Echo/Unary", &[])["code"], "OK");
}

#[test]
fn an_upstreams_http_error_to_a_grpc_call_becomes_its_grpc_status() {
    let Some(py) = python() else { return };
    let origin = BundledOrigin::start();
    let gw = h2_gateway(&[origin.addr], "protocol = \"h2c\"", "", Driver::IoUring);
    // gRPC's own "HTTP to gRPC status code mapping", ringway answering trailers-only.
    for (http, code) in [
        ("400", "INTERNAL"),
        ("401", "UNAUTHENTICATED"),
        ("403", "PERMISSION_DENIED"),
        ("404", "UNIMPLEMENTED"),
        ("429", "UNAVAILABLE"),
        ("503", "UNAVAILABLE"),
        ("504", "UNAVAILABLE"),
        ("500", "UNKNOWN"),
    ] {
        let meta = format!("x-http-status={http}");
        let r = call(&py, gw.addr(), "/ringway.Echo/Unary", &["--meta", &meta]);
        assert_eq!(r["code"], code, "{http}: {r}");
        assert_eq!(
            r["details"],
            format!("ringway: upstream answered HTTP {http}"),
            "{r}"
        );
    }
}

#[test]
fn compressed_grpc_messages_pass_through_untouched() {
    let Some(py) = python() else { return };
    let server = GrpcServer::start(&py, &[]);
    let log = std::env::temp_dir().join(format!("ringway-grpc-gzip-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let more = format!("[access_log]\npath = \"{}\"\n", log.display());
    let gw = h2_gateway(&[server.addr], "protocol = \"h2c\"", &more, Driver::IoUring);
    // 1 MiB of one letter, gzip-compressed by the client, decompressed by the server only.
    let r = call(
        &py,
        gw.addr(),
        "/test.Echo/Unary",
        &["--gzip", "--size", "1048576"],
    );
    assert_eq!(
        (&r["code"], &r["echoed"]),
        (&"OK".into(), &true.into()),
        "{r}"
    );
    // What ringway relayed upstream is the compressed message, a few KiB.
    let line = eventually("the access log line").until(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("/test.Echo/Unary"))
            .map(str::to_string)
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    let bytes_in = v["bytes_in"].as_u64().expect("bytes_in");
    assert!(bytes_in > 0 && bytes_in < 64 * 1024, "{line}");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn the_bundled_origin_speaks_http2_over_tls_to_an_h2_upstream() {
    let Some(py) = python() else { return };
    let tls = TlsFiles::new("origin");
    let origin = BundledOrigin::start_with(&["--tls", &tls.cert, &tls.key]);
    let gw = h2_gateway(&[origin.addr], &tls.upstream("h2"), "", Driver::IoUring);
    let r = get(gw.addr(), "/bytes/1000");
    assert_eq!((r.status, r.body.len()), (200, 1000));
    let r = call(
        &py,
        gw.addr(),
        "/ringway.Echo/Bidi",
        &["--stream", "10", "--size", "100"],
    );
    assert_eq!(
        (&r["code"], &r["echoed"]),
        (&"OK".into(), &true.into()),
        "{r}"
    );
}

#[test]
fn grpc_over_tls_to_the_upstream_with_alpn_h2() {
    let Some(py) = python() else { return };
    let tls = TlsFiles::new("grpcio");
    let server = GrpcServer::start(&py, &["--tls", &tls.cert, &tls.key]);
    for protocol in ["h2", "auto"] {
        let gw = h2_gateway(&[server.addr], &tls.upstream(protocol), "", Driver::IoUring);
        let r = call(
            &py,
            gw.addr(),
            "/test.Echo/Bidi",
            &["--stream", "100", "--size", "1000"],
        );
        assert_eq!(
            (&r["code"], &r["echoed"]),
            (&"OK".into(), &true.into()),
            "{protocol}: {r}"
        );
    }
}

/// A self-signed certificate for `localhost` and its key in a scratch directory (removed
/// on drop), for a TLS upstream that trusts that very certificate.
struct TlsFiles {
    dir: PathBuf,
    cert: String,
    key: String,
}

impl TlsFiles {
    fn new(tag: &str) -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("ringway-grpc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        write_self_signed(&dir);
        let path = |f: &str| dir.join(f).display().to_string();
        let (cert, key) = (path("cert.pem"), path("key.pem"));
        TlsFiles { dir, cert, key }
    }

    /// Upstream fields for `protocol` over TLS to `localhost`.
    fn upstream(&self, protocol: &str) -> String {
        format!(
            "protocol = \"{protocol}\"\ntls = {{ ca_file = \"{}\", server_name = \"localhost\" }}",
            self.cert
        )
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Which server `Who` reached, over `n` calls through `addr`.
fn who_answers(py: &PathBuf, addr: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = call(py, addr, "/test.Echo/Who", &[]);
            assert_eq!(r["code"], "OK", "{r}");
            let reply = r["reply"].as_str().unwrap_or_default();
            reply.lines().next().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn a_grpc_health_check_takes_a_server_out_and_back() {
    let Some(py) = python() else { return };
    let flag = std::env::temp_dir().join(format!("ringway-grpc-sick-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let sick = flag.display().to_string();
    let a = GrpcServer::start(&py, &["--name", "a", "--unhealthy", &sick]);
    let b = GrpcServer::start(&py, &["--name", "b"]);
    let upstream = "protocol = \"h2c\"\nall_unhealthy = \"fail\"\n\
        health_check = { grpc = \"\", interval = \"100ms\", timeout = \"1s\", \
        healthy_threshold = 1, unhealthy_threshold = 1 }";
    let gw = h2_gateway(&[a.addr, b.addr], upstream, "", Driver::IoUring);
    let both = eventually("both servers to answer").until(|| {
        let seen = who_answers(&py, gw.addr(), 4);
        (seen.contains(&"server=a".to_string()) && seen.contains(&"server=b".to_string()))
            .then_some(seen)
    });
    assert_eq!(both.len(), 4);
    std::fs::write(&flag, b"").expect("flag");
    gw.wait_log("is unhealthy: not SERVING");
    // The workers follow the checker's news within a moment.
    eventually("server a to be taken out").until(|| {
        who_answers(&py, gw.addr(), 2)
            .iter()
            .all(|s| s == "server=b")
            .then_some(())
    });
    let seen = who_answers(&py, gw.addr(), 6);
    assert!(seen.iter().all(|s| s == "server=b"), "{seen:?}");
    std::fs::remove_file(&flag).expect("flag");
    gw.wait_log("is healthy again");
    eventually("server a to answer again").until(|| {
        who_answers(&py, gw.addr(), 4)
            .contains(&"server=a".to_string())
            .then_some(())
    });
}

#[test]
fn a_route_retries_a_grpc_status_on_another_server() {
    let Some(py) = python() else { return };
    let a = GrpcServer::start(&py, &["--name", "a", "--fail-with", "14"]);
    let b = GrpcServer::start(&py, &["--name", "b"]);
    let retry = "[[routes]]\npath_prefix = \"/test.Echo/\"\nupstream = \"grpc\"\n\
                 retries = { attempts = 2, on = [\"unavailable\"] }\n";
    let gw = h2_gateway(
        &[a.addr, b.addr],
        "protocol = \"h2c\"",
        retry,
        Driver::IoUring,
    );
    // Every call succeeds: the ones that went to `a` first were sent again to `b`, with
    // their body (a unary request body, kept for it).
    for _ in 0..6 {
        let r = call(&py, gw.addr(), "/test.Echo/Unary", &["--size", "1000"]);
        assert_eq!(
            (&r["code"], &r["echoed"]),
            (&"OK".into(), &true.into()),
            "{r}"
        );
    }
    assert!(
        a.wait_line("failed 1000", std::time::Duration::from_secs(2)),
        "a was tried"
    );
    // Without the retry, half the calls fail.
    let gw = h2_gateway(&[a.addr, b.addr], "protocol = \"h2c\"", "", Driver::IoUring);
    let codes: Vec<String> = (0..4)
        .map(|_| call(&py, gw.addr(), "/test.Echo/Unary", &[])["code"].to_string())
        .collect();
    assert!(codes.iter().any(|c| c.contains("UNAVAILABLE")), "{codes:?}");
}
