//! The JSON access log and W3C trace context end to end, under both I/O drivers: the lines
//! a proxied answer, a 404 and a policy refusal produce, that secrets stay out, reopening
//! after SIGUSR1 (logrotate), stdout output, and `traceparent` kept or made.

use ringway_test_support::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};

const GOOD_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn log_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ringway-accesslog-{}-{tag}-{:?}.log",
        std::process::id(),
        Instant::now()
    ))
}

fn api_key_hash(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Routes "app" (/app, proxied), "private" (/private, API key required) and "pong" (/ping,
/// answered by ringway); nothing else.
fn gateway(origin: &Origin, log: &str, driver: Driver) -> Gateway {
    let cfg = Config::new()
        .section(&format!(
            "[access_log]\npath = {log:?}\nbuffer_bytes = 65536\n\n\
             [auth.api_key]\nheader = \"X-Api-Key\"\nquery = \"api_key\"\n\n\
             [[consumers]]\nname = \"alice\"\napi_keys = [\"{}\"]\n",
            api_key_hash("alice-key")
        ))
        .upstream("backend", &[origin.addr()])
        .route("name = \"app\"\npath_prefix = \"/app\"\nupstream = \"backend\"")
        .route(
            "name = \"private\"\npath_prefix = \"/private\"\nupstream = \"backend\"\naccess = {}",
        )
        .route("name = \"pong\"\npath = \"/ping\"\nrespond = { status = 200, body = \"pong\" }")
        .render();
    Gateway::start(&cfg, driver)
}

fn parse(lines: impl Iterator<Item = String>) -> Vec<Value> {
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The complete lines of the file (a line the writer is still writing is left out).
fn file_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    parse(complete.lines().map(str::to_string))
}

/// Waits until `read` returns at least `n` lines.
fn wait_lines(n: usize, read: impl Fn() -> Vec<Value>) -> Vec<Value> {
    eventually(format!("{n} access log lines")).until(|| {
        let lines = read();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(format!("{} of {n} lines: {lines:?}", lines.len()))
        }
    })
}

both_drivers! {
    fn proxied_404_and_401_requests_each_get_a_line_with_their_fields(driver) {
        let origin = Origin::ok("hello");
        let path = log_path("fields");
        let gw = gateway(&origin, &path.display().to_string(), driver);
        let ok = ask(gw.addr(), Request::get("/app/a/../hi?x=1"));
        assert_eq!(ok.status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/nowhere")).status, 404);
        assert_eq!(ask(gw.addr(), Request::get("/private/x")).status, 401);
        let post = Request::new("POST", "/private/y").headers("X-Api-Key: alice-key\r\n").body("abcde");
        assert_eq!(ask(gw.addr(), post).status, 200);
        let seen = origin.wait_requests(2);
        let lines = wait_lines(4, || file_lines(&path));

        let l = &lines[0];
        assert_eq!(l["method"], "GET");
        assert_eq!(l["path"], "/app/hi", "normalised, no query");
        assert_eq!(l["status"], 200);
        assert_eq!(l["route"], "app");
        assert_eq!(l["upstream"], origin.addr().to_string());
        assert_eq!(l["client_ip"], "127.0.0.1");
        assert_eq!(l["tls"], false);
        assert_eq!(l["bytes_in"], 0);
        let sent = ok.head.len() + ok.body.len();
        assert_eq!(l["bytes_out"].as_u64(), Some(sent as u64));
        assert!(l["duration_ms"].as_f64().is_some(), "{l}");
        assert!(l["upstream_connect_ms"].as_f64().is_some(), "{l}");
        assert!(l["upstream_header_ms"].as_f64().is_some(), "{l}");
        assert!(l["consumer"].is_null());
        assert_eq!(l["request_id"].as_str(), seen[0].header("x-request-id"));
        let tp = seen[0].header("traceparent").expect("a traceparent upstream");
        assert_eq!(l["trace_id"].as_str(), Some(&tp[3..35]));
        let time = l["time"].as_str().expect("time");
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");

        let l = &lines[1];
        assert_eq!((l["status"].as_u64(), l["path"].as_str()), (Some(404), Some("/nowhere")));
        assert!(l["route"].is_null() && l["upstream"].is_null(), "{l}");
        assert!(l["upstream_connect_ms"].is_null() && l["upstream_header_ms"].is_null());
        assert!(l["bytes_out"].as_u64() > Some(0));

        let l = &lines[2];
        assert_eq!((l["status"].as_u64(), l["route"].as_str()), (Some(401), Some("private")));
        assert!(l["consumer"].is_null() && l["upstream"].is_null(), "{l}");

        let l = &lines[3];
        assert_eq!((l["method"].as_str(), l["status"].as_u64()), (Some("POST"), Some(200)));
        assert_eq!(l["consumer"], "alice");
        assert_eq!(l["bytes_in"], 5);
        let _ = std::fs::remove_file(&path);
    }

    fn respond_routes_and_unparsable_heads_get_lines_too(driver) {
        let origin = Origin::ok("hello");
        let path = log_path("own");
        let gw = gateway(&origin, &path.display().to_string(), driver);
        let pong = ask(gw.addr(), Request::get("/ping?q=1"));
        assert_eq!(pong.status, 200);
        let bad = ask(gw.addr(), Request::get("/x").headers("Content-Length: 1\r\nContent-Length: 2\r\n"));
        assert_eq!(bad.status, 400);
        let lines = wait_lines(2, || file_lines(&path));
        let l = &lines[0];
        assert_eq!((l["route"].as_str(), l["status"].as_u64()), (Some("pong"), Some(200)));
        assert_eq!(l["path"], "/ping");
        assert!(l["upstream"].is_null() && l["upstream_connect_ms"].is_null(), "{l}");
        let sent = pong.head.len() + pong.body.len();
        assert_eq!(l["bytes_out"].as_u64(), Some(sent as u64));
        let l = &lines[1];
        assert_eq!(l["status"], 400);
        assert_eq!((l["method"].as_str(), l["path"].as_str()), (Some(""), Some("")));
        assert!(l["route"].is_null(), "{l}");
        assert_eq!(l["trace_id"].as_str().map(str::len), Some(32));
        assert!(origin.requests().is_empty());
        let _ = std::fs::remove_file(&path);
    }

    fn spliced_and_chunked_bodies_are_counted(driver) {
        let origin = Origin::start(Reply::echo);
        let path = log_path("bodies");
        let gw = gateway(&origin, &path.display().to_string(), driver);
        // Above the default splice_threshold (256 KiB): both directions are spliced.
        let big = "b".repeat(300_000);
        let r = ask(gw.addr(), Request::new("POST", "/app/big").body(&big));
        assert_eq!((r.status, r.body.len()), (200, big.len()));
        let chunked = Request::new("POST", "/app/c")
            .headers("Transfer-Encoding: chunked\r\n")
            .raw_body("3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
        let c = ask(gw.addr(), chunked);
        assert_eq!(c.body, b"abcdefg");
        let lines = wait_lines(2, || file_lines(&path));
        assert_eq!(lines[0]["bytes_in"].as_u64(), Some(big.len() as u64));
        let sent = r.head.len() + r.body.len();
        assert_eq!(lines[0]["bytes_out"].as_u64(), Some(sent as u64));
        assert_eq!(lines[1]["bytes_in"], 7, "the chunked payload");
        let sent = c.head.len() + c.body.len();
        assert_eq!(lines[1]["bytes_out"].as_u64(), Some(sent as u64));
        let _ = std::fs::remove_file(&path);
    }

    fn secrets_in_the_query_and_fields_never_reach_the_log(driver) {
        let origin = Origin::ok("hello");
        let path = log_path("secret");
        let gw = gateway(&origin, &path.display().to_string(), driver);
        let r = ask(
            gw.addr(),
            Request::get("/app/x?api_key=secret&x=1")
                .headers("Authorization: Bearer secret\r\nCookie: s=secret\r\n"),
        );
        assert_eq!(r.status, 200);
        let lines = wait_lines(1, || file_lines(&path));
        assert_eq!(lines[0]["path"], "/app/x");
        let text = std::fs::read_to_string(&path).expect("log");
        assert!(!text.contains("secret"), "{text}");
        let _ = std::fs::remove_file(&path);
    }

    fn sigusr1_reopens_the_file_after_a_rename(driver) {
        let origin = Origin::ok("hello");
        let path = log_path("rotate");
        let rotated = path.with_extension("log.1");
        let gw = gateway(&origin, &path.display().to_string(), driver);
        assert_eq!(ask(gw.addr(), Request::get("/app/one")).status, 200);
        wait_lines(1, || file_lines(&path));
        std::fs::rename(&path, &rotated).expect("rename");
        let killed = Command::new("kill")
            .args(["-USR1", &gw.pid().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        // Reopening creates the file at the configured path again.
        eventually("the log file to be reopened").until(|| {
            if path.exists() {
                Ok(())
            } else {
                Err(gw.stderr_text())
            }
        });
        assert_eq!(ask(gw.addr(), Request::get("/app/two")).status, 200);
        let lines = wait_lines(1, || file_lines(&path));
        assert_eq!(lines[0]["path"], "/app/two");
        let old = file_lines(&rotated);
        assert_eq!(old.len(), 1, "{old:?}");
        assert_eq!(old[0]["path"], "/app/one");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);
    }

    fn the_log_can_go_to_stdout(driver) {
        let origin = Origin::ok("hello");
        let gw = gateway(&origin, "stdout", driver);
        assert_eq!(ask(gw.addr(), Request::get("/app/out")).status, 200);
        let lines = wait_lines(1, || parse(gw.stdout_lines().into_iter()));
        assert_eq!(lines[0]["path"], "/app/out");
        assert_eq!(lines[0]["status"], 200);
    }

    fn a_valid_traceparent_passes_through_and_others_are_replaced(driver) {
        let origin = Origin::ok("hello");
        let path = log_path("trace");
        let gw = gateway(&origin, &path.display().to_string(), driver);
        let with = |tp: &str| {
            let request = Request::get("/app/t").headers(tp).headers("tracestate: v=1\r\n");
            assert_eq!(ask(gw.addr(), request).status, 200);
        };
        with(&format!("traceparent: {GOOD_TRACE}\r\n"));
        with("");
        with("traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n");
        with("traceparent: garbage\r\n");
        let seen = origin.wait_requests(4);
        assert_eq!(seen[0].header_all("traceparent"), vec![GOOD_TRACE]);
        assert_eq!(seen[0].header("tracestate"), Some("v=1"), "kept with a valid parent");
        let mut made = Vec::new();
        for r in &seen[1..] {
            let tps = r.header_all("traceparent");
            assert_eq!(tps.len(), 1, "{}", r.head_text());
            assert!(ringway::trace::is_valid(tps[0].as_bytes()), "{}", tps[0]);
            assert!(tps[0].ends_with("-01"));
            assert_eq!(r.header("tracestate"), None, "dropped with a replaced parent");
            made.push(tps[0].to_string());
        }
        made.sort();
        made.dedup();
        assert_eq!(made.len(), 3, "each request gets its own trace: {made:?}");
        let lines = wait_lines(4, || file_lines(&path));
        assert_eq!(lines[0]["trace_id"], &GOOD_TRACE[3..35]);
        for (line, req) in lines[1..].iter().zip(&seen[1..]) {
            let tp = req.header("traceparent").expect("traceparent");
            assert_eq!(line["trace_id"].as_str(), Some(&tp[3..35]));
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn an_access_log_that_cannot_be_opened_stops_startup() {
    let dir = std::env::temp_dir().join(format!("ringway-no-such-dir-{}", std::process::id()));
    let cfg = Config::new()
        .section(&format!(
            "[access_log]\npath = {:?}",
            dir.join("access.log").display().to_string()
        ))
        .route("path_prefix = \"/\"\nrespond = { status = 200 }")
        .render();
    let file = log_path("badcfg").with_extension("toml");
    std::fs::write(&file, cfg).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["run", "-c"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = eventually("ringway to stop for want of its access log")
        .try_until(|| child.try_wait().expect("wait"))
        .unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringway kept running without its access log");
        });
    let mut err = String::new();
    use std::io::Read as _;
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    let _ = std::fs::remove_file(&file);
    assert!(!status.success());
    assert!(err.contains("access log"), "{err}");
}
