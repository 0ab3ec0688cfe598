//! Operating ringway: hot reload (under load, a bad config refused, file watching), the
//! admin endpoints and their metrics, and the maximum connection age. End to end over
//! real sockets, under both I/O drivers.

use ringway_test_support::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn versioned(origin: &Origin, body: &str, extra: &str) -> String {
    let text = Config::new()
        .section(extra)
        .upstream("app", &[origin.addr()])
        .route(&format!("name = \"main\"\npath_prefix = \"/\"\nupstream = \"app\"\nresponse_headers = {{ set = {{ \"X-Version\" = \"{body}\" }} }}"))
        .render();
    // Two workers for the load test: the builder writes one.
    if extra.contains("workers = 2") {
        text.replacen("workers = 1\n", "", 1)
    } else {
        text
    }
}

/// Four keep-alive clients sending GETs until `finish`. With `retry_closed_idle`, a reused
/// connection closed before any answer is retried on a new one (HTTP allows that for an
/// idempotent request) instead of counting as a failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, retry_closed_idle: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let clients = (0..4)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut r = Reader::new(connect(addr));
                    let mut fresh = true;
                    while !stop.load(Ordering::SeqCst) {
                        r.send(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n");
                        match r.response() {
                            Some(resp) if resp.status == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                fresh = false;
                                if resp.header("connection") == Some("close") {
                                    r = Reader::new(connect(addr));
                                    fresh = true;
                                }
                            }
                            None if retry_closed_idle && !fresh => {
                                r = Reader::new(connect(addr));
                                fresh = true;
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                r = Reader::new(connect(addr));
                                fresh = true;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            clients,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` requests succeeded.
    fn wait_for(&self, n: usize) {
        eventually(format!("{n} requests to succeed under load")).until(|| {
            let ok = self.ok();
            if ok >= n {
                Ok(())
            } else {
                Err(format!("the load stalled at {ok}"))
            }
        });
    }

    /// Stops the clients; (succeeded, failed).
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            let _ = c.join();
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

both_drivers! {
    fn reloading_ten_times_under_load_drops_nothing(driver) {
        let origin = Origin::ok("ok");
        let gw = Gateway::start(&versioned(&origin, "v0", "[server]\nworkers = 2"), driver);
        let addr = gw.addr();
        let load = Load::start(addr, false);
        let _guard = DumpOnPanic(&gw);
        for v in 1..=10 {
            std::fs::write(gw.config_path(), versioned(&origin, &format!("v{v}"), "[server]\nworkers = 2")).unwrap();
            gw.signal("HUP");
            gw.wait_log(&format!("config reloaded (version {})", v + 1));
        }
        let r = get(addr, "/after");
        assert_eq!(r.header("x-version"), Some("v10"));
        let (ok, failed) = load.finish();
        assert_eq!(failed, 0, "requests failed during reloads");
        assert!(ok > 100, "the load ran");
    }

    fn a_reload_applies_to_the_next_request_on_an_open_keep_alive_connection(driver) {
        let origin = Origin::ok("ok");
        let gw = Gateway::start(&versioned(&origin, "v1", ""), driver);
        let mut c = Reader::new(connect(gw.addr()));
        let mut ask = || {
            c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
            c.response().expect("response").header("x-version").map(str::to_owned)
        };
        assert_eq!(ask().as_deref(), Some("v1"));
        for v in 2..=4 {
            std::fs::write(gw.config_path(), versioned(&origin, &format!("v{v}"), "")).unwrap();
            gw.signal("HUP");
            gw.wait_log(&format!("config reloaded (version {v})"));
            // The very next request on the connection already has it.
            assert_eq!(ask(), Some(format!("v{v}")), "the first request after reload {v}");
            assert_eq!(ask(), Some(format!("v{v}")));
        }
        assert_eq!(origin.connections(), 1, "one upstream connection throughout");
    }

    fn a_bad_config_is_refused_and_the_old_one_keeps_serving(driver) {
        let origin = Origin::ok("ok");
        let gw = Gateway::start(&versioned(&origin, "v1", ""), driver);
        std::fs::write(gw.config_path(), "[server]\nlisten = [\"nope\"]\n[[routes]]\npath_prefix = \"x\"\n").unwrap();
        gw.signal("HUP");
        let line = gw.wait_log("config not reloaded");
        assert!(line.contains("server.listen[0]") || line.contains("routes[0]"), "{line}");
        assert_eq!(get(gw.addr(), "/").header("x-version"), Some("v1"));
    }

    fn a_watched_config_reloads_when_the_file_changes(driver) {
        let origin = Origin::ok("ok");
        let gw = Gateway::start(&versioned(&origin, "v1", "[server]\nwatch_config = true"), driver);
        // Make sure the new file gets another modification time.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(gw.config_path(), versioned(&origin, "v2", "[server]\nwatch_config = true")).unwrap();
        gw.wait_log("config reloaded (version 2)");
        assert_eq!(get(gw.addr(), "/").header("x-version"), Some("v2"));
    }

    fn admin_endpoints_report_health_metrics_and_config(driver) {
        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .section("[admin]\nlisten = \"127.0.0.1:0\"\n\n[auth.api_key]\n[[consumers]]\nname = \"a\"\napi_keys = [\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"]")
            .upstream("app", &[origin.addr()])
            .route("name = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"")
            .route("name = \"private\"\npath_prefix = \"/private\"\nupstream = \"app\"\naccess = {}")
            .render();
        let gw = Gateway::start(&cfg, driver);
        let admin = gw.admin_addr();
        for _ in 0..3 {
            assert_eq!(get(gw.addr(), "/api/x").status, 200);
        }
        for _ in 0..2 {
            assert_eq!(get(gw.addr(), "/nowhere").status, 404);
        }
        assert_eq!(get(gw.addr(), "/private").status, 401);
        assert_eq!(get(admin, "/healthz").status, 200);
        assert_eq!(get(admin, "/ready").status, 200);
        assert_eq!(get(admin, "/missing").status, 404);
        let m = get(admin, "/metrics");
        assert_eq!(m.status, 200);
        let text = m.body_text();
        for want in [
            "ringway_requests_total{route=\"api\",upstream=\"app\",class=\"2xx\"} 3",
            "ringway_requests_total{route=\"\",upstream=\"\",class=\"4xx\"} 2",
            "ringway_requests_total{route=\"private\",upstream=\"\",class=\"4xx\"} 1",
            "ringway_auth_rejected_total 1",
            "ringway_request_duration_seconds_count 6",
            "ringway_upstream_duration_seconds_count 3",
            "ringway_connections_accepted_total 6",
            "ringway_config_version 1",
            "ringway_scrape_missing_workers 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let c = get(admin, "/config");
        let v: serde_json::Value = serde_json::from_slice(&c.body).expect("json");
        assert_eq!(v["version"], 1);
        assert_eq!(v["sha256"].as_str().map(str::len), Some(64));
        assert!(!c.body_text().contains("sha256:0000"), "{}", c.body_text());
    }

    fn an_old_connection_is_closed_after_max_connection_age(driver) {
        let origin = Origin::ok("ok");
        let gw = Gateway::start(&versioned(&origin, "v1", "[timeouts]\nmax_connection_age = \"300ms\""), driver);
        let mut r = Reader::new(connect(gw.addr()));
        let start = Instant::now();
        eventually("a response with Connection: close (never closed)").until(|| {
            r.send(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n");
            let resp = r.response().expect("response");
            assert_eq!(resp.status, 200);
            resp.header("connection") == Some("close")
        });
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(r.closes_within(TIMEOUT));
    }
}

/// Prints the gateway's log if the test fails (the panic message alone rarely says why).
struct DumpOnPanic<'a>(&'a Gateway);

impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- gateway log ----\n{}", self.0.stderr_text());
        }
    }
}

both_drivers! {
    /// A second binary takes the listening sockets of the running one (SCM_RIGHTS over
    /// `server.upgrade_socket`), the old one drains and exits; clients under load see no
    /// failure (a client retries an idempotent request when an idle keep-alive connection
    /// is closed under it, as HTTP allows).
    fn a_binary_upgrade_hands_over_the_listeners_without_failures(driver) {
        let origin = Origin::ok("ok");
        let sock = std::env::temp_dir().join(format!("ringway-upgrade-{}-{}.sock", std::process::id(), driver.env()));
        let _ = std::fs::remove_file(&sock);
        let extra = format!("[server]\nupgrade_socket = \"{}\"", sock.display());
        let mut old = Gateway::start(&versioned(&origin, "old", &extra), driver);
        let addr = old.addr();
        let load = Load::start(addr, true);
        load.wait_for(50);
        let new = old.start_upgrade(driver);
        new.wait_log("upgrade: took over");
        old.wait_log("upgrade: the new process serves");
        assert!(old.wait_exit().is_some(), "the old process drained and exited");
        // Everything now goes to the new process (same address, same sockets).
        let r = get(addr, "/after");
        assert_eq!(r.status, 200);
        // Keep the load going on the new process for a while.
        load.wait_for(load.ok() + 200);
        let (_, failed) = load.finish();
        assert_eq!(failed, 0, "requests failed during the upgrade");
        // The new process listens for the next upgrade.
        new.wait_log("listening on");
        eventually("the new process's upgrade socket")
            .until(|| std::os::unix::net::UnixStream::connect(&sock).is_ok());
        let _ = std::fs::remove_file(&sock);
    }
}

/// A keep-alive origin on whatever address `localhost` resolves to first here, answering
/// every request with `body`.
fn localhost_origin(body: &'static str) -> u16 {
    use std::net::ToSocketAddrs;
    let addr = ("localhost", 0)
        .to_socket_addrs()
        .expect("localhost resolves")
        .next()
        .expect("an address");
    let listener = std::net::TcpListener::bind(addr).expect("bind localhost");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer_heads(&mut s, body, |_| {}));
        }
    });
    port
}

both_drivers! {
    /// Upstream names are resolved off the workers (at start, on reload and every
    /// `dns_refresh`); requests keep flowing through several refresh rounds.
    fn upstream_names_resolve_off_the_workers(driver) {
        let port = localhost_origin("named");
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\ndns_refresh = \"100ms\"\n\n\
             [[upstreams]]\nname = \"named\"\nservers = [\"localhost:{port}\"]\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"named\"\n"
        );
        let gw = Gateway::start(&cfg, driver);
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_millis(600) {
            let r = get(gw.addr(), "/");
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"named");
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(n > 5);
        // The same addresses every round: nothing to apply, nothing refused.
        let log = gw.stderr_text();
        assert!(!log.contains("not applied") && !log.contains("now resolves"), "{log}");
        // A reload compiles with names resolved on the reload thread too.
        gw.signal("HUP");
        gw.wait_log("config reloaded (version 2)");
        assert_eq!(get(gw.addr(), "/").body, b"named");
    }
}

/// `timeouts.drain_delay`: after SIGTERM, `/ready` answers 503 at once while ringway still
/// accepts and serves new connections; only after the delay does the drain close the
/// listeners, and the process exits.
#[test]
fn a_drain_delay_says_not_ready_before_it_stops_accepting() {
    let origin = Origin::ok("still here");
    let cfg = Config::proxy_all(origin.addr())
        .section("[admin]\nlisten = \"127.0.0.1:0\"\n\n[timeouts]\ndrain_delay = \"2s\"")
        .render();
    let mut gw = Gateway::start(&cfg, Driver::IoUring);
    let admin = gw.admin_addr();
    assert_eq!(get(admin, "/ready").status, 200);
    let signalled = std::time::Instant::now();
    gw.signal("TERM");
    eventually("/ready to say draining")
        .until(|| (get(admin, "/ready").status == 503).then_some(()));
    // Within the delay a new connection is still accepted and served.
    let r = get(gw.addr(), "/x");
    assert_eq!((r.status, r.body_text().as_str()), (200, "still here"));
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(2),
        "checked within the delay"
    );
    // Then the drain: the process exits (no request in flight), after the delay.
    let status = gw.wait_exit();
    assert!(status.is_some(), "ringway exited");
    assert!(signalled.elapsed() >= std::time::Duration::from_secs(2));
}
