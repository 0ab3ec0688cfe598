//! Global rate limits (`scope = "global"`) against a real `redis-server`: instances share
//! one budget; a Redis that is gone or hung makes each limit follow its `on_store_error`
//! without any request waiting longer than `redis.command_timeout`; global counting resumes
//! when Redis is back. (tests/fleet.rs runs three instances behind HAProxy under load.)

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ringway_test_support::*;

/// A gateway with one worker per driver, the limits `limits` (TOML of
/// `[[routes]]`-level rules by route), in front of `origin`.
fn gateway(redis: SocketAddr, origin: &Origin, routes: &str, d: Driver) -> Gateway {
    gateway_at(&redis.to_string(), origin, routes, d)
}

/// `gateway`, with Redis' address as written in the config (a name:port, say).
fn gateway_at(redis: &str, origin: &Origin, routes: &str, d: Driver) -> Gateway {
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [redis]\naddress = \"{redis}\"\ncommand_timeout = \"200ms\"\nconnect_timeout = \"200ms\"\n\
         local_share = 0.5\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n{routes}",
        origin.addr()
    );
    Gateway::start(&cfg, d)
}

/// A route at `path` with one global ip-keyed limit named `name`.
fn route(path: &str, name: &str, rate: &str, burst: u32, on_error: &str) -> String {
    format!(
        "[[routes]]\npath = \"{path}\"\nupstream = \"app\"\n\
         rules = {{ rate_limits = [{{ name = \"{name}\", key = \"ip\", rate = \"{rate}\", \
         burst = {burst}, scope = \"global\", on_store_error = \"{on_error}\" }}] }}\n\n"
    )
}

fn status(addr: SocketAddr, path: &str) -> u16 {
    get(addr, path).status
}

fn redis_up(gw: &Gateway) -> bool {
    gw.metric("ringway_redis_up") == 1
}

both_drivers! {
    fn two_instances_share_one_budget(d) {
        let redis = RedisServer::start();
        let origin = Origin::start(Reply::echo);
        // An hour's rate: no token comes back during the test, so the count is exact.
        let routes = route("/a", "shared", "1/h", 10, "deny");
        let one = gateway(redis.addr(), &origin, &routes, d);
        // The second names Redis by host name (resolved off the worker).
        let by_name = format!("localhost:{}", redis.addr().port());
        let two = gateway_at(&by_name, &origin, &routes, d);
        for gw in [&one, &two] {
            eventually("the Redis connection").until(|| redis_up(gw));
        }
        let mut codes = Vec::new();
        for i in 0..30 {
            let gw = if i % 2 == 0 { &one } else { &two };
            let r = get(gw.addr(), "/a");
            if r.status == 429 {
                assert!(r.header("retry-after").is_some(), "a 429 says when to retry");
            }
            codes.push(r.status);
        }
        let admitted = codes.iter().filter(|&&c| c == 200).count();
        assert_eq!(admitted, 10, "the burst, once for both instances: {codes:?}");
        assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
        assert_eq!(origin.requests().len(), 10, "the origin saw the admitted requests only");
        assert_eq!(redis.keys("ringway:shared:*"), vec!["ringway:shared:127.0.0.1".to_string()]);
        assert!(one.metric("ringway_redis_leases_total") > 0);
        assert!(two.metric("ringway_redis_leases_total") > 0);
        assert_eq!(one.metric("ringway_rate_limit_fallbacks_total"), 0);
        // Round trips to Redis are timed.
        assert!(one.metric("ringway_redis_command_seconds_count") > 0);
    }

    fn redis_away_follows_on_store_error_and_counting_resumes(d) {
        let mut redis = RedisServer::start();
        let origin = Origin::start(Reply::echo);
        let routes = [
            route("/local", "l", "1/h", 8, "local"),
            route("/allow", "a", "1/h", 2, "allow"),
            route("/deny", "d", "1/h", 2, "deny"),
        ]
        .concat();
        let gw = gateway(redis.addr(), &origin, &routes, d);
        eventually("the Redis connection").until(|| redis_up(&gw));
        assert_eq!(status(gw.addr(), "/deny"), 200);
        redis.stop();
        gw.wait_log("unreachable");
        eventually("ringway_redis_up to drop").until(|| !redis_up(&gw));
        // local: half the burst (local_share = 0.5) on this instance's own.
        let local: Vec<u16> = (0..8).map(|_| status(gw.addr(), "/local")).collect();
        assert_eq!(local, [200, 200, 200, 200, 429, 429, 429, 429]);
        assert!((0..5).all(|_| status(gw.addr(), "/allow") == 200));
        assert!((0..5).all(|_| status(gw.addr(), "/deny") == 429));
        assert!(gw.metric("ringway_rate_limit_fallbacks_total") >= 18);
        assert!(gw.metric("ringway_redis_errors_total") >= 1);
        redis.restart();
        eventually("the Redis connection again").until(|| redis_up(&gw));
        gw.wait_log("reachable again");
        // Redis kept nothing: the global budget starts afresh (2), counted globally again;
        // the worker may still hold the one token (a lease) it took before the outage.
        let deny: Vec<u16> = (0..5).map(|_| status(gw.addr(), "/deny")).collect();
        let admitted = deny.iter().take_while(|&&c| c == 200).count();
        assert!((2..=3).contains(&admitted), "{deny:?}");
        assert!(deny[admitted..].iter().all(|&c| c == 429), "{deny:?}");
        assert!(!redis.keys("ringway:d:*").is_empty());
    }

    fn a_hung_redis_costs_no_request_more_than_the_command_timeout(d) {
        let redis = RedisServer::start();
        let origin = Origin::start(Reply::echo);
        let routes = "[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
             rules = { rate_limits = [{ name = \"k\", key = \"header:X-Key\", rate = \"1/h\", \
             burst = 1, scope = \"global\", on_store_error = \"allow\" }] }\n";
        let gw = gateway(redis.addr(), &origin, routes, d);
        eventually("the Redis connection").until(|| redis_up(&gw));
        let pid = redis.pid().expect("redis pid").to_string();
        let signal = |sig: &str| {
            let ok = Command::new("kill").args([sig, &pid]).status().is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {pid}");
        };
        signal("-STOP");
        // Each new key needs a lease: Redis takes it and never answers.
        let mut slowest = Duration::ZERO;
        for i in 0..4 {
            let started = Instant::now();
            let r = ask(gw.addr(), Request::get("/").headers(&format!("X-Key: k{i}\r\n")));
            slowest = slowest.max(started.elapsed());
            assert_eq!(r.status, 200, "on_store_error = allow");
        }
        signal("-CONT");
        // 200 ms command timeout; the margin is for a loaded machine.
        assert!(slowest < Duration::from_millis(1500), "a request waited {slowest:?}");
        eventually("the Redis connection again").until(|| redis_up(&gw));
        let r = |k: &str| ask(gw.addr(), Request::get("/").headers(&format!("X-Key: {k}\r\n"))).status;
        assert_eq!((r("fresh"), r("fresh")), (200, 429), "counted in Redis again");
    }
}

/// A server that answers like something other than Redis: every connection gets bytes
/// that are not RESP, then is closed.
fn not_redis() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            use std::io::Write;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n*99999999\r\n");
        }
    });
    addr
}

both_drivers! {
    fn a_server_that_is_not_redis_is_treated_as_redis_away(d) {
        let origin = Origin::start(Reply::echo);
        let routes = route("/a", "x", "1/h", 2, "local");
        let gw = gateway(not_redis(), &origin, &routes, d);
        gw.wait_log("unreachable");
        let codes: Vec<u16> = (0..3).map(|_| status(gw.addr(), "/a")).collect();
        // local_share 0.5 of a burst of 2: one.
        assert_eq!(codes, [200, 429, 429]);
        assert_eq!(gw.metric("ringway_redis_up"), 0);
        assert!(gw.metric("ringway_redis_errors_total") >= 1);
        assert!(gw.stderr_text().contains("protocol error"), "{}", gw.stderr_text());
    }
}

both_drivers! {
    fn redis_over_tls_with_a_password_and_a_database(d) {
        let redis = RedisServer::start_tls("sekret");
        let origin = Origin::start(Reply::echo);
        let cfg = |password: &str| {
            format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
                 [redis]\naddress = \"127.0.0.1:{}\"\nusername = \"default\"\npassword = \"{password}\"\n\
                 db = 3\ntls = {{ ca_file = \"{}\", server_name = \"localhost\" }}\n\n\
                 [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n{}",
                redis.addr().port(),
                redis.ca_file().display(),
                origin.addr(),
                route("/a", "tls", "1/h", 3, "deny"),
            )
        };
        let gw = Gateway::start(&cfg("sekret"), d);
        eventually("the Redis connection").until(|| redis_up(&gw));
        let codes: Vec<u16> = (0..5).map(|_| status(gw.addr(), "/a")).collect();
        assert_eq!(codes, [200, 200, 200, 429, 429]);
        let keys = |db: &str| redis.cli(&["-n", db, "KEYS", "*"]);
        assert!(keys("3").contains("ringway:tls:127.0.0.1"), "{}", keys("3"));
        assert!(!keys("0").contains("ringway:tls"), "db 0 is left alone");
        // A wrong password: Redis is away for this instance (logged with Redis' reason).
        let wrong = Gateway::start(&cfg("wrong"), d);
        let line = wrong.wait_log("unreachable");
        assert!(line.contains("WRONGPASS"), "{line}");
        assert_eq!(status(wrong.addr(), "/a"), 429, "on_store_error = deny");
    }
}

both_drivers! {
    fn the_workers_of_one_instance_share_the_budget(d) {
        let redis = RedisServer::start();
        let origin = Origin::start(Reply::echo);
        // Two workers, connections spread over both (no steering by client).
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [policy]\nsteer_by_client = \"off\"\n\n[redis]\naddress = \"{}\"\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n{}",
            redis.addr(),
            origin.addr(),
            route("/a", "workers", "1/h", 10, "deny"),
        );
        let gw = Gateway::start(&cfg, d);
        eventually("both workers connected to Redis")
            .until(|| gw.metric("ringway_redis_up") == 2);
        // A new connection per request: the kernel spreads them over the two workers.
        let codes: Vec<u16> = (0..40).map(|_| status(gw.addr(), "/a")).collect();
        let admitted = codes.iter().filter(|&&c| c == 200).count();
        assert_eq!(admitted, 10, "one budget for both workers: {codes:?}");
        assert_eq!(origin.requests().len(), 10);
    }
}

/// A server that sets up like Redis (SCRIPT LOAD answered with a script name, PING with
/// PONG) and then answers every lease with something wrong, in turn: a short array, a
/// bare integer, an error, an array of strings, a reply too long, bytes that are not RESP.
fn wrong_redis() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let bad: [&[u8]; 6] = [
            b"*2\r\n:1\r\n:0\r\n",
            b":5\r\n",
            b"-ERR oops\r\n",
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
            b"$999999999\r\n",
            b"\x00\x01garbage\r\n",
        ];
        let mut n = 0;
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            while let Ok(got) = s.read(&mut buf) {
                if got == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..got]);
                let reply: &[u8] = if text.contains("SCRIPT") {
                    b"$40\r\n0123456789012345678901234567890123456789\r\n"
                } else if text.contains("PING") {
                    b"+PONG\r\n"
                } else {
                    n += 1;
                    bad[n % bad.len()]
                };
                if s.write_all(reply).is_err() {
                    break;
                }
            }
        }
    });
    addr
}

both_drivers! {
    fn wrong_answers_to_leases_never_break_a_request(d) {
        let origin = Origin::start(Reply::echo);
        let routes = "[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
             rules = { rate_limits = [{ name = \"w\", key = \"header:X-Key\", rate = \"10/s\", \
             burst = 10, scope = \"global\", on_store_error = \"allow\" }] }\n";
        let gw = gateway(wrong_redis(), &origin, routes, d);
        for i in 0..24 {
            let started = Instant::now();
            let r = ask(gw.addr(), Request::get("/").headers(&format!("X-Key: k{i}\r\n")));
            assert_eq!(r.status, 200, "request {i}: on_store_error = allow");
            assert!(started.elapsed() < Duration::from_millis(1500), "request {i} waited");
            if i % 4 == 3 {
                // Let the client reconnect now and then, so that every wrong answer is met.
                eventually("a Redis connection again").until(|| redis_up(&gw));
            }
        }
        assert!(gw.metric("ringway_redis_errors_total") >= 3);
        assert!(gw.metric("ringway_rate_limit_fallbacks_total") >= 1);
        assert_eq!(get(gw.admin_addr(), "/ready").status, 200, "alive and ready");
    }
}
