//! The bundled load generator against ringway in front of the bundled origin: closed and
//! open loop, JSON output, error counting, responses by status, `--source` as the client
//! address, and the SVG plot with an overlay; and `--h2`:
//! h2c with prior knowledge and TLS with ALPN `h2`, streams per connection, certificate
//! checks, with ringway's metrics confirming the requests came as HTTP/2.

use ringway_test_support::*;
use std::process::{Command, Stdio};

fn loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway-loadgen"))
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json result")
}

/// Runs loadgen expecting it to fail; its stderr.
fn loadgen_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway-loadgen"))
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run loadgen");
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn counter(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn closed_and_open_loop_runs_report_requests_latency_and_no_errors() {
    let origin = BundledOrigin::start();
    let origin_addr = origin.addr;
    let gw = Gateway::start(&Config::proxy_all(origin_addr).render(), Driver::IoUring);
    let url = format!("http://{}/small", gw.addr());
    let closed = loadgen(&[&url, "-c", "8", "-d", "1s", "--label", "closed"]);
    assert_eq!(closed["mode"], "closed");
    assert!(closed["requests"].as_u64().unwrap_or(0) > 100, "{closed}");
    assert_eq!(closed["errors"]["status"], 0);
    assert_eq!(closed["errors"]["connect"], 0);
    assert!(closed["latency_us"]["p50"].as_u64().unwrap_or(0) > 0);
    assert!(
        closed["bytes"].as_u64().unwrap_or(0) >= 100 * closed["requests"].as_u64().unwrap_or(0)
    );

    let open = loadgen(&[
        &url, "-c", "4", "-d", "2s", "--rate", "500", "--label", "open",
    ]);
    assert_eq!(open["mode"], "open");
    let n = open["requests"].as_u64().unwrap_or(0);
    // 500 req/s for 2 s, on schedule: close to 1000, never far above it.
    assert!((800..=1010).contains(&n), "{open}");

    // A POST with a body reaches the origin's echo and is counted.
    let echo_url = format!("http://{}/echo", gw.addr());
    let post = loadgen(&[
        &echo_url, "-m", "POST", "--body", "hello", "-c", "2", "-d", "1s",
    ]);
    assert!(post["requests"].as_u64().unwrap_or(0) > 10, "{post}");
    assert_eq!(post["errors"]["status"], 0);
}

#[test]
fn non_success_statuses_and_refused_connections_are_counted_as_errors() {
    let origin = BundledOrigin::start();
    let origin_addr = origin.addr;
    let gw = Gateway::start(&Config::proxy_all(origin_addr).render(), Driver::Legacy);
    let r = loadgen(&[
        &format!("http://{}/status/500", gw.addr()),
        "-c",
        "2",
        "-d",
        "1s",
    ]);
    assert_eq!(r["requests"], 0);
    assert!(r["errors"]["status"].as_u64().unwrap_or(0) > 0, "{r}");
    let refused = loadgen(&[
        &format!("http://{}/", dead_addr()),
        "-c",
        "1",
        "-d",
        "500ms",
    ]);
    assert!(
        refused["errors"]["connect"].as_u64().unwrap_or(0) > 0,
        "{refused}"
    );
}

#[test]
fn responses_are_counted_by_status_and_source_sets_the_client_address() {
    // Every other request is refused with 429 by the origin, through ringway.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let origin = Origin::start(move |_| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 2 == 0 {
            Reply::ok("ok")
        } else {
            Reply::raw(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
        }
    });
    let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), Driver::IoUring);
    let url = format!("http://{}/", gw.addr());
    let r = loadgen(&[
        &url,
        "-c",
        "1",
        "-d",
        "1s",
        "--rate",
        "100",
        "--source",
        "127.0.0.2",
    ]);
    let ok = r["statuses"]["200"].as_u64().unwrap_or(0);
    let refused = r["statuses"]["429"].as_u64().unwrap_or(0);
    // One connection, strictly alternating answers: the counts differ by one at most, the
    // 429s are status errors, the 200s the requests, and the connection was kept across.
    assert!(ok + refused >= 90 && ok.abs_diff(refused) <= 1, "{r}");
    assert_eq!(
        (r["requests"].as_u64(), r["errors"]["status"].as_u64()),
        (Some(ok), Some(refused)),
        "{r}"
    );
    assert_eq!(r["statuses"].as_object().map(|m| m.len()), Some(2), "{r}");
    assert!(r["latency_us"]["p100"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(origin.connections(), 1, "one upstream connection");
    let requests = origin.requests();
    assert!(requests
        .iter()
        .all(|q| q.header("x-forwarded-for") == Some("127.0.0.2")));
    // --source must be an address of this machine, of the target's family, over HTTP/1.1.
    assert!(loadgen_fails(&[&url, "--source", "192.0.2.1", "-d", "100ms"]).contains("cannot bind"));
    assert!(loadgen_fails(&[&url, "--source", "::1", "-d", "100ms"]).contains("family"));
    assert!(
        loadgen_fails(&[&url, "--h2", "--source", "127.0.0.2", "-d", "100ms"])
            .contains("HTTP/1.1 only")
    );
}

#[test]
fn the_plot_overlays_earlier_json_results() {
    let origin = BundledOrigin::start();
    let origin_addr = origin.addr;
    let gw = Gateway::start(&Config::proxy_all(origin_addr).render(), Driver::IoUring);
    let url = format!("http://{}/small", gw.addr());
    let dir = std::env::temp_dir();
    let first = dir.join(format!("ringway-loadgen-{}.json", std::process::id()));
    let svg = dir.join(format!("ringway-loadgen-{}.svg", std::process::id()));
    let baseline = loadgen(&[&url, "-c", "2", "-d", "500ms", "--label", "baseline"]);
    std::fs::write(&first, baseline.to_string()).expect("write json");
    let status = Command::new(env!("CARGO_BIN_EXE_ringway-loadgen"))
        .args([
            &url, "-c", "2", "-d", "500ms", "--quiet", "--label", "second",
        ])
        .arg("--plot")
        .arg(&svg)
        .arg("--overlay")
        .arg(&first)
        .stdout(Stdio::null())
        .status()
        .expect("run loadgen");
    assert!(status.success());
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(text.starts_with("<svg"));
    assert_eq!(text.matches("<polyline").count(), 2, "one line per run");
    assert!(text.contains("baseline") && text.contains("second"));
    let _ = std::fs::remove_file(first);
    let _ = std::fs::remove_file(svg);
}

#[test]
fn http2_runs_over_h2c_and_tls_with_streams_per_connection() {
    let origin = BundledOrigin::start();
    let dir = std::env::temp_dir().join(format!("ringway-loadgen-h2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    write_self_signed(&dir);
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{{ cert_file = \"cert.pem\", key_file = \"key.pem\" }}] }}\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        origin.addr
    );
    let gw = Gateway::start_in(&cfg, Driver::IoUring, &dir);
    let tls_port = gw.listener_addr("https").port();
    let h2_requests = || {
        let metrics = get(gw.admin_addr(), "/metrics").body_text();
        (
            counter(
                &metrics,
                "ringway_requests_by_protocol_total{protocol=\"HTTP/2\"}",
            ),
            counter(
                &metrics,
                "ringway_requests_by_protocol_total{protocol=\"HTTP/1.1\"}",
            ),
        )
    };

    // h2c, closed loop: 2 connections with 4 streams each.
    let url = format!("http://{}/small", gw.addr());
    let closed = loadgen(&[&url, "--h2", "-c", "2", "--streams", "4", "-d", "1s"]);
    assert_eq!(
        (&closed["protocol"], &closed["streams"], &closed["mode"]),
        (&"h2".into(), &4.into(), &"closed".into()),
        "{closed}"
    );
    let n = closed["requests"].as_u64().unwrap_or(0);
    assert!(n > 100, "{closed}");
    for kind in ["status", "connect", "read", "timeout"] {
        assert_eq!(closed["errors"][kind], 0, "{kind}: {closed}");
    }
    assert!(closed["bytes"].as_u64().unwrap_or(0) >= 100 * n, "{closed}");
    // Every request loadgen counted reached ringway as HTTP/2 (a few more may have been
    // in flight when the run ended); none as HTTP/1.1.
    let (h2, h1) = h2_requests();
    assert!(h2 >= n && h2 <= n + 8, "HTTP/2 requests {h2}, loadgen {n}");
    assert_eq!(h1, 0);

    // h2c, open loop: 400 req/s over 8 stream slots for 2 s.
    let open = loadgen(&[
        &url,
        "--h2",
        "-c",
        "2",
        "--streams",
        "4",
        "-d",
        "2s",
        "--rate",
        "400",
    ]);
    assert_eq!(open["mode"], "open");
    let n = open["requests"].as_u64().unwrap_or(0);
    assert!((640..=810).contains(&n), "{open}");

    // A POST body over HTTP/2 reaches the origin's echo.
    let echo = format!("http://{}/echo", gw.addr());
    let post = loadgen(&[
        &echo,
        "--h2",
        "-m",
        "POST",
        "--body",
        "hello",
        "-c",
        "1",
        "--streams",
        "2",
        "-d",
        "500ms",
    ]);
    assert!(post["requests"].as_u64().unwrap_or(0) > 10, "{post}");
    assert_eq!(post["errors"]["status"], 0, "{post}");

    // TLS with ALPN h2: trusted by --cacert, or not checked with -k; refused otherwise.
    let https = format!("https://localhost:{tls_port}/small");
    let cacert = dir.join("cert.pem");
    let cacert = cacert.to_str().expect("utf-8 path");
    let before = h2_requests().0;
    let verified = loadgen(&[
        &https,
        "--h2",
        "--cacert",
        cacert,
        "-c",
        "1",
        "--streams",
        "2",
        "-d",
        "500ms",
    ]);
    let insecure = loadgen(&[&https, "--h2", "-k", "-c", "1", "-d", "500ms"]);
    for r in [&verified, &insecure] {
        assert!(r["requests"].as_u64().unwrap_or(0) > 10, "{r}");
        assert_eq!(r["errors"]["status"], 0, "{r}");
        assert_eq!(r["errors"]["connect"], 0, "{r}");
    }
    let tls_n =
        verified["requests"].as_u64().unwrap_or(0) + insecure["requests"].as_u64().unwrap_or(0);
    assert!(h2_requests().0 - before >= tls_n);
    let refused = loadgen_fails(&[&https, "--h2", "-c", "1", "-d", "500ms"]);
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    assert_eq!(h2_requests().1, 0, "nothing came as HTTP/1.1");

    // Options that make no sense are refused before any connection.
    assert!(loadgen_fails(&[&https, "-d", "100ms"]).contains("--h2"));
    assert!(loadgen_fails(&[&url, "--streams", "4", "-d", "100ms"]).contains("--h2"));
    assert!(loadgen_fails(&[&url, "--h2", "-m", "10", "-d", "100ms"]).contains("--streams"));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http2_errors_are_counted_by_kind() {
    let origin = BundledOrigin::start();
    let gw = Gateway::start(&Config::proxy_all(origin.addr).render(), Driver::Legacy);
    let r = loadgen(&[
        &format!("http://{}/status/500", gw.addr()),
        "--h2",
        "-c",
        "1",
        "--streams",
        "2",
        "-d",
        "500ms",
    ]);
    assert_eq!(r["requests"], 0, "{r}");
    assert!(r["errors"]["status"].as_u64().unwrap_or(0) > 0, "{r}");
    let refused = loadgen(&[
        &format!("http://{}/", dead_addr()),
        "--h2",
        "-c",
        "1",
        "-d",
        "300ms",
    ]);
    assert!(
        refused["errors"]["connect"].as_u64().unwrap_or(0) > 0,
        "{refused}"
    );
}

#[test]
fn grpc_calls_count_as_done_only_with_grpc_status_0() {
    let origin = BundledOrigin::start();
    // The bundled origin's gRPC echo, over h2c: every call OK, each answer the 4-byte
    // message back behind its 5-byte prefix.
    let url = format!("http://{}/ringway.Echo/Unary", origin.addr);
    let ok = loadgen(&[
        &url,
        "--grpc",
        "--body",
        "ping",
        "-c",
        "2",
        "--streams",
        "4",
        "-d",
        "1s",
    ]);
    assert_eq!(ok["protocol"], "grpc", "{ok}");
    let n = ok["requests"].as_u64().unwrap_or(0);
    assert!(n > 100, "{ok}");
    for kind in ["status", "connect", "read", "parse", "timeout"] {
        assert_eq!(ok["errors"][kind], 0, "{kind}: {ok}");
    }
    assert_eq!(ok["bytes"].as_u64(), Some(9 * n), "{ok}");
    // ringway refusing the call answers HTTP 200 with PERMISSION_DENIED: an error.
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
         rules = {{ ip_deny = [\"127.0.0.0/8\"] }}\n",
        origin.addr
    );
    let gw = Gateway::start(&cfg, Driver::IoUring);
    let denied = loadgen(&[
        &format!("http://{}/ringway.Echo/Unary", gw.addr()),
        "--grpc",
        "-c",
        "1",
        "-d",
        "300ms",
    ]);
    assert_eq!(denied["requests"], 0, "{denied}");
    assert!(
        denied["errors"]["status"].as_u64().unwrap_or(0) > 0,
        "{denied}"
    );
}
