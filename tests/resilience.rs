//! Health checks, outlier ejection, all-unhealthy handling, retries with their budget, and
//! circuit breaking, end to end. Every wait is a poll with a deadline.

use ringway_test_support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";

/// An upstream "app" over `servers` with `extra` fields, and a catch-all route with
/// `route_extra` fields.
fn config(servers: &[SocketAddr], extra: &str, route_extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let up = format!(
        "[[upstreams]]\nname = \"app\"\nservers = [{}]\n{extra}\n",
        list.join(", ")
    );
    Config::new()
        .section(&up)
        .route(&format!(
            "path_prefix = \"/\"\nupstream = \"app\"\n{route_extra}"
        ))
        .render()
}

/// True when the next `n` requests all get a 200 with body `body`.
fn all_answered_by(gw: SocketAddr, n: usize, body: &str) -> bool {
    (0..n).all(|_| {
        let r = get(gw, "/");
        r.status == 200 && r.body_text() == body
    })
}

/// An origin whose `/healthz` answers 200 or 503 as `up` says, and "name" elsewhere.
fn checked_origin(name: &'static str, up: Arc<AtomicBool>) -> Origin {
    Origin::start(move |req| {
        if req.target == "/healthz" {
            if up.load(Ordering::SeqCst) {
                Reply::ok("ok")
            } else {
                Reply::raw(UNAVAILABLE)
            }
        } else {
            Reply::ok(name)
        }
    })
}

fn app_requests(o: &Origin) -> usize {
    o.requests()
        .iter()
        .filter(|r| r.target != "/healthz")
        .count()
}

const CHECK: &str = "health_check = { path = \"/healthz\", interval = \"50ms\", timeout = \"500ms\", healthy_threshold = 2, unhealthy_threshold = 2 }";

both_drivers! {
    fn a_failing_health_check_takes_a_server_out_and_a_passing_one_puts_it_back(d) {
        let a_up = Arc::new(AtomicBool::new(true));
        let a = checked_origin("a", a_up.clone());
        let b = checked_origin("b", Arc::new(AtomicBool::new(true)));
        let gw = Gateway::start(&config(&[a.addr(), b.addr()], CHECK, ""), d);
        eventually("both servers are checked").until(|| {
            a.requests().iter().any(|r| r.target == "/healthz")
                && b.requests().iter().any(|r| r.target == "/healthz")
        });
        a_up.store(false, Ordering::SeqCst);
        eventually("a is taken out").until(|| all_answered_by(gw.addr(), 6, "b"));
        assert!(gw.stderr_text().contains("is unhealthy: status 503"), "{}", gw.stderr_text());
        let before = app_requests(&a);
        a_up.store(true, Ordering::SeqCst);
        eventually("a is put back").until(|| {
            let _ = get(gw.addr(), "/");
            app_requests(&a) > before
        });
        assert!(gw.stderr_text().contains("is healthy again"));
    }

    fn health_checks_follow_a_reload_to_new_servers(d) {
        let a = checked_origin("a", Arc::new(AtomicBool::new(true)));
        let b_up = Arc::new(AtomicBool::new(false));
        let b = checked_origin("b", b_up.clone());
        let check = CHECK.replace("50ms", "100ms");
        let gw = Gateway::start(&config(&[a.addr()], &check, ""), d);
        eventually("a is checked").until(|| a.requests().iter().any(|r| r.target == "/healthz"));
        std::fs::write(gw.config_path(), config(&[a.addr(), b.addr()], &check, ""))
            .expect("rewrite config");
        gw.signal("HUP");
        gw.wait_log("config reloaded (version 2)");
        // Only a checker that follows the reload knows b (server 1 of the new config).
        gw.wait_log(&format!("upstream server app/{} is unhealthy: status 503", b.addr()));
        eventually("every worker took b out").until(|| all_answered_by(gw.addr(), 30, "a"));
        let before = app_requests(&b);
        assert!(all_answered_by(gw.addr(), 30, "a"));
        assert_eq!(app_requests(&b), before, "no request reaches b while it is down");
        b_up.store(true, Ordering::SeqCst);
        gw.wait_log(&format!("upstream server app/{} is healthy again", b.addr()));
        eventually("b gets traffic again").until(|| {
            let _ = get(gw.addr(), "/");
            app_requests(&b) > before
        });
    }

    fn a_stopped_server_is_taken_out_by_health_checks(d) {
        let good = Origin::ok("good");
        let extra = format!("{CHECK}\nall_unhealthy = \"fail\"");
        // Without connect retries, a request sent to the dead server would be a 502.
        let cfg = config(&[dead_addr(), good.addr()], &extra, "retries = { on = [] }");
        let gw = Gateway::start(&cfg, d);
        eventually("only the live server is used").until(|| all_answered_by(gw.addr(), 6, "good"));
    }

    fn consecutive_failures_eject_a_server(d) {
        let good = Origin::ok("good");
        let extra = "outlier = { consecutive_failures = 2, ejection = \"30s\" }";
        let cfg = config(&[dead_addr(), good.addr()], extra, "retries = { on = [] }");
        let gw = Gateway::start(&cfg, d);
        let statuses: Vec<u16> = (0..12).map(|_| get(gw.addr(), "/").status).collect();
        let failed = statuses.iter().filter(|&&s| s == 502).count();
        assert_eq!(failed, 2, "two failures eject the dead server: {statuses:?}");
        assert!(statuses[4..].iter().all(|&s| s == 200), "{statuses:?}");
        assert!(gw.stderr_text().contains("ejected for 30s"));
    }

    fn with_every_server_ejected_all_unhealthy_fail_answers_503_at_once(d) {
        let extra = "outlier = { consecutive_failures = 1, ejection = \"30s\" }\nall_unhealthy = \"fail\"";
        let gw = Gateway::start(&config(&[dead_addr()], extra, ""), d);
        assert_eq!(get(gw.addr(), "/").status, 502);
        let r = get(gw.addr(), "/");
        assert_eq!(r.status, 503);
        assert_eq!(r.body_text(), "503 Service Unavailable\n");
    }

    fn with_every_server_ejected_try_all_still_tries_them(d) {
        let extra = "outlier = { consecutive_failures = 1, ejection = \"30s\" }";
        let gw = Gateway::start(&config(&[dead_addr()], extra, ""), d);
        assert_eq!(get(gw.addr(), "/").status, 502);
        assert_eq!(get(gw.addr(), "/").status, 502);
    }

    fn a_get_answered_503_is_retried_on_another_server(d) {
        let bad = Origin::start(|_| Reply::raw(UNAVAILABLE));
        let good = Origin::ok("good");
        let route = "retries = { attempts = 2, on = [\"503\"] }";
        let gw = Gateway::start(&config(&[bad.addr(), good.addr()], "", route), d);
        for _ in 0..6 {
            let r = get(gw.addr(), "/");
            assert_eq!((r.status, r.body_text().as_str()), (200, "good"));
        }
        assert_eq!(bad.requests().len(), 3, "every other request went to the bad server first");
        assert_eq!(good.requests().len(), 6);
        assert!(bad.wait_closed_by_peer(0), "the discarded response's connection is closed");
    }

    fn a_post_is_not_retried_once_its_bytes_reached_an_upstream(d) {
        let bad = Origin::start(|_| Reply::raw(UNAVAILABLE));
        let good = Origin::ok("good");
        let route = "retries = { attempts = 3, on = [\"503\"] }";
        let gw = Gateway::start(&config(&[bad.addr(), good.addr()], "", route), d);
        let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
        let statuses: Vec<u16> = (0..4).map(|_| roundtrip(gw.addr(), post).expect("response").status).collect();
        assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 2, "{statuses:?}");
        assert_eq!(bad.requests().len() + good.requests().len(), 4, "each POST went out once");
    }

    fn a_connect_failure_is_retried_on_another_server_even_for_a_post(d) {
        let good = Origin::ok("good");
        let gw = Gateway::start(&config(&[dead_addr(), good.addr()], "", ""), d);
        let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
        for _ in 0..4 {
            assert_eq!(roundtrip(gw.addr(), post).expect("response").status, 200);
        }
        assert_eq!(good.requests().len(), 4);
    }

    fn the_retry_budget_limits_retries_in_flight(d) {
        let bad = Origin::start(|_| Reply::raw(UNAVAILABLE));
        let slow = Origin::start(|_| Reply::Delay(Duration::from_millis(500), Box::new(Reply::ok("good"))));
        let route = "retries = { attempts = 2, on = [\"503\"], budget_percent = 20 }";
        let gw = Gateway::start(&config(&[bad.addr(), slow.addr()], "", route), d);
        let addr = gw.addr();
        let go = Arc::new(std::sync::Barrier::new(10));
        let clients: Vec<_> = (0..10)
            .map(|_| {
                let go = go.clone();
                std::thread::spawn(move || {
                    go.wait();
                    get(addr, "/").status
                })
            })
            .collect();
        let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().expect("client")).collect();
        let refused = statuses.iter().filter(|&&s| s == 503).count();
        let bad_first = bad.requests().len();
        let retried = bad_first - refused;
        // 10 in flight at most: 20% allows 2 retries at once, and each lasts 500ms.
        assert!((1..=2).contains(&retried), "{retried} of {bad_first} retried: {statuses:?}");
        assert_eq!(slow.requests().len(), 10 - bad_first + retried);
    }

    fn max_pending_answers_503_at_once_while_the_upstream_is_busy(d) {
        a_busy_upstream_answers_503_at_once(d, "max_pending = 1");
    }

    fn max_connections_answers_503_at_once_while_the_upstream_is_busy(d) {
        a_busy_upstream_answers_503_at_once(d, "max_connections = 1");
    }
}

/// With one slow request on the upstream, a second one gets a fast 503 from the breaker
/// `extra` configures; once the first is done the slot is free again.
fn a_busy_upstream_answers_503_at_once(d: Driver, extra: &str) {
    let slow =
        Origin::start(|_| Reply::Delay(Duration::from_millis(800), Box::new(Reply::ok("slow"))));
    let gw = Gateway::start(&config(&[slow.addr()], extra, ""), d);
    let addr = gw.addr();
    let first = std::thread::spawn(move || get(addr, "/").status);
    slow.wait_requests(1);
    let started = Instant::now();
    assert_eq!(get(addr, "/").status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first.join().expect("first"), 200);
    assert_eq!(get(addr, "/").status, 200, "the slot is free again");
}
