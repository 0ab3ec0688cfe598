//! The bundled load generator against ringway in front of the bundled origin: closed and
//! open loop, JSON output, error counting, and the SVG plot with an overlay.

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
