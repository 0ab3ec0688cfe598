//! HTTP/2 with stock clients: curl (`--http2-prior-knowledge`, and `--http2` over TLS where
//! ALPN picks `h2` while `--http1.1` on the same listener still gets HTTP/1.1), nghttp and
//! h2load (Debian's nghttp2-client). A client missing from the machine makes its test say
//! it was skipped, unless `RINGWAY_REQUIRE_H2_CLIENTS=1` (CI sets it, and installs them).

use std::net::SocketAddr;
use std::process::Command;

use ringway_test_support::*;

/// Whether `tool` can run here; when it cannot, says why (or fails, when required).
fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        let why = format!("{tool} not found (Debian: curl, nghttp2-client)");
        if std::env::var("RINGWAY_REQUIRE_H2_CLIENTS").as_deref() == Ok("1") {
            panic!("{why}");
        }
        println!("skipped: {why}");
    }
    found
}

fn output_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("client runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

both_drivers! {
    fn curl_with_prior_knowledge_gets_http2_and_the_origin_http11(d) {
        if !have("curl") {
            return;
        }
        let origin = Origin::ok("curl says hi");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let out = output_of(Command::new("curl").args([
            "-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
            &url(gw.addr(), "/curl"),
        ]));
        assert_eq!(out, "curl says hi\n2 200");
        let seen = origin.wait_requests(1);
        assert!(seen[0].raw.starts_with(b"GET /curl HTTP/1.1\r\n"), "{}", seen[0].head_text());
        assert_eq!(seen[0].header("via"), Some("2 ringway"));
    }

    fn nghttp_sees_the_frames_of_a_whole_exchange(d) {
        if !have("nghttp") {
            return;
        }
        let origin = Origin::ok("frames");
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let out = output_of(Command::new("nghttp").args(["-v", "-n", &url(gw.addr(), "/n")]));
        assert!(out.contains("recv SETTINGS frame"), "{out}");
        assert!(out.contains(":status: 200"), "{out}");
        assert!(out.contains("recv DATA frame"), "{out}");
        assert!(out.contains("; END_STREAM"), "{out}");
        assert!(out.contains("send GOAWAY frame"), "{out}");
        assert_eq!(origin.requests().len(), 1);
    }

    fn h2load_drives_many_streams_over_few_connections(d) {
        if !have("h2load") {
            return;
        }
        let origin = BundledOrigin::start();
        let gw = Gateway::start(&Config::proxy_all(origin.addr).render(), d);
        let out = output_of(Command::new("h2load").args([
            "-n", "2000", "-c", "4", "-m", "10", &url(gw.addr(), "/small"),
        ]));
        assert!(out.contains("2000 succeeded, 0 failed, 0 errored"), "{out}");
        assert!(out.contains("status codes: 2000 2xx"), "{out}");
    }
}

#[test]
fn alpn_picks_http2_or_http11_on_the_same_tls_listener() {
    if !have("curl") {
        return;
    }
    let origin = Origin::ok("tls");
    let dir = std::env::temp_dir().join(format!("ringway-h2tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    write_self_signed(&dir);
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{{ cert_file = \"cert.pem\", key_file = \"key.pem\" }}] }}\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        origin.addr()
    );
    let gw = Gateway::start_in(&cfg, Driver::IoUring, &dir);
    let port = gw.listener_addr("https").port();
    let ask = |flag: &str| {
        output_of(Command::new("curl").args([
            "-sk",
            flag,
            "-w",
            "\n%{http_version}",
            &format!("https://localhost:{port}/t"),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ]))
    };
    assert_eq!(ask("--http2"), "tls\n2");
    assert_eq!(ask("--http1.1"), "tls\n1.1");
    let seen = origin.wait_requests(2);
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen[0].header("via"), Some("2 ringway"));
    assert_eq!(seen[1].header("via"), Some("1.1 ringway"));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
