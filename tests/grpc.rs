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
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
             [[upstreams]]\nname = \"gone\"\nservers = [\"{}\"]\n\n\
             [[routes]]\npath_prefix = \"/pkg.Denied/\"\nupstream = \"app\"\n\
             rules = {{ ip_deny = [\"127.0.0.0/8\"] }}\n\n\
             [[routes]]\npath_prefix = \"/pkg.Gone/\"\nupstream = \"gone\"\n",
            origin.addr(),
            dead_addr()
        );
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
