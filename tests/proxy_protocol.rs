//! The PROXY protocol on listeners (`listeners[].proxy_protocol`): the client address in
//! the header stands for the peer's everywhere (forwarding fields, `ip` rules, the access
//! log); connections without a valid header, or from a peer that may not send one, are
//! closed unanswered, within the header deadline. Raw headers from a test client, and curl's
//! own `--haproxy-protocol`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ringway_test_support::*;

/// A gateway with one plain listener expecting `mode` (plus `extra` listener fields), in
/// front of `origin`; `/denied` refuses 203.0.113.0/24; an access log at `log`.
fn gateway(origin: &Origin, mode: &str, extra: &str, log: &std::path::Path, d: Driver) -> Gateway {
    let cfg = format!(
        "[server]\nlisten = []\nworkers = 1\n\n[timeouts]\nheader = \"1s\"\n\n\
         [access_log]\npath = \"{}\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"{mode}\"\n{extra}\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath = \"/denied\"\nupstream = \"app\"\nrules = {{ ip_deny = [\"203.0.113.0/24\"] }}\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        log.display(),
        origin.addr()
    );
    Gateway::start(&cfg, d)
}

fn log_path(tag: &str, d: Driver) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!(
        "ringway-proxy-{tag}-{}-{}.log",
        std::process::id(),
        d.env()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// Sends `header` then a GET of `path`; the response.
fn through(addr: SocketAddr, header: &[u8], path: &str) -> Option<Response> {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes());
    roundtrip(addr, &bytes)
}

/// A v2 header: PROXY over TCP/IPv4 from `src` to 10.0.0.1:443 (`local`: LOCAL, no
/// address), then `tlvs`.
fn v2(src: [u8; 4], sport: u16, local: bool, tlvs: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(if local { 0x20 } else { 0x21 });
    out.push(if local { 0x00 } else { 0x11 });
    let body_len = if local { tlvs.len() } else { 12 + tlvs.len() };
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
    if !local {
        out.extend_from_slice(&src);
        out.extend_from_slice(&[10, 0, 0, 1]);
        out.extend_from_slice(&sport.to_be_bytes());
        out.extend_from_slice(&443u16.to_be_bytes());
    }
    out.extend_from_slice(tlvs);
    out
}

both_drivers! {
    fn the_client_a_proxy_header_names_is_the_client_everywhere(d) {
        let origin = Origin::start(Reply::echo);
        let log = log_path("names", d);
        let gw = gateway(&origin, "any", "", &log, d);
        // v1: forwarding fields and the ip rule see 203.0.113.9, not 127.0.0.1.
        let r = through(gw.addr(), b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 8080\r\n", "/a")
            .expect("response");
        assert_eq!(r.status, 200);
        let req = origin.wait_requests(1).pop().expect("forwarded");
        assert_eq!(req.header("x-forwarded-for"), Some("203.0.113.9"));
        let r = through(gw.addr(), b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 8080\r\n", "/denied")
            .expect("response");
        assert_eq!(r.status, 403);
        let r = through(gw.addr(), b"PROXY TCP4 198.51.100.4 10.0.0.1 40000 8080\r\n", "/denied")
            .expect("response");
        assert_eq!(r.status, 200);
        // v2, IPv4 with a TLV: the same.
        let r = through(gw.addr(), &v2([198, 51, 100, 77], 5555, false, &[0x04, 0, 1, 0]), "/b")
            .expect("response");
        assert_eq!(r.status, 200);
        let req = origin.wait_requests(3).pop().expect("forwarded");
        assert_eq!(req.header("x-forwarded-for"), Some("198.51.100.77"));
        // v2 LOCAL (a balancer's own health check) and v1 UNKNOWN: the real peer stands.
        for header in [v2([0; 4], 0, true, &[]), b"PROXY UNKNOWN\r\n".to_vec()] {
            let r = through(gw.addr(), &header, "/c").expect("response");
            assert_eq!(r.status, 200);
        }
        let reqs = origin.wait_requests(5);
        assert!(reqs[3..].iter().all(|r| r.header("x-forwarded-for") == Some("127.0.0.1")));
        // The access log says who the client was.
        let text = eventually("the access log").until(|| {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            (t.lines().count() >= 6).then_some(t)
        });
        assert!(text.contains("\"client_ip\":\"203.0.113.9\""), "{text}");
        assert!(text.contains("\"client_ip\":\"198.51.100.77\""), "{text}");
        let _ = std::fs::remove_file(&log);
    }

    fn connections_without_a_valid_header_are_closed_unanswered(d) {
        let origin = Origin::ok("no");
        let log = log_path("refused", d);
        let gw = gateway(&origin, "v2", "", &log, d);
        let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        huge.extend_from_slice(&[0u8; 64]);
        for (what, bytes) in [
            ("no header", b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec()),
            ("a v1 header on a v2 listener", b"PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r\n".to_vec()),
            ("a bad v2 version", {
                let mut h = v2([203, 0, 113, 9], 1, false, &[]);
                h[12] = 0x31;
                h
            }),
            ("a TLV past the end", v2([203, 0, 113, 9], 1, false, &[0x01, 0, 40, b'h'])),
            ("an oversized v2 header", huge),
        ] {
            // One write: the gateway may close (and so reset) before a second one.
            let mut c = Reader::new(connect(gw.addr()));
            c.send(&[&bytes[..], b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"].concat());
            assert!(c.closes_within(Duration::from_secs(3)), "{what}: not closed");
            assert!(c.leftover().is_empty(), "{what}: answered {:?}", String::from_utf8_lossy(c.leftover()));
        }
        // A header cut short is given up at the header deadline (1 s).
        let mut c = Reader::new(connect(gw.addr()));
        let h = v2([203, 0, 113, 9], 1, false, &[]);
        c.send(&h[..20]);
        let started = std::time::Instant::now();
        assert!(c.closes_within(Duration::from_secs(4)), "a truncated header held on");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(origin.requests().is_empty(), "nothing reached the origin");
    }

    fn only_the_listed_peers_may_send_a_header(d) {
        let origin = Origin::ok("yes");
        let log = log_path("from", d);
        let gw = gateway(&origin, "v1", "proxy_protocol_from = [\"10.0.0.0/8\"]", &log, d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 8080\r\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert!(c.closes_within(Duration::from_secs(3)));
        assert!(c.leftover().is_empty());
        drop(gw);
        let gw = gateway(&origin, "v1", "proxy_protocol_from = [\"127.0.0.0/8\"]", &log, d);
        let r = through(gw.addr(), b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 8080\r\n", "/")
            .expect("response");
        assert_eq!(r.status, 200);
        let _ = std::fs::remove_file(&log);
    }
}

#[test]
fn curl_haproxy_protocol_reaches_plain_and_tls_listeners() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var("RINGWAY_REQUIRE_H2_CLIENTS").as_deref() != Ok("1"),
            "curl not found"
        );
        println!("skipped: curl not found");
        return;
    }
    let origin = Origin::start(Reply::echo);
    let dir = std::env::temp_dir().join(format!("ringway-proxy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    write_self_signed(&dir);
    let cfg = format!(
        "[server]\nlisten = []\nworkers = 1\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"v1\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"any\"\n\
         tls = {{ certificates = [{{ cert_file = \"cert.pem\", key_file = \"key.pem\" }}] }}\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        origin.addr()
    );
    let gw = Gateway::start_in(&cfg, Driver::IoUring, &dir);
    let plain = gw.listener_addr("http, h2c");
    let tls = gw.listener_addr("https");
    for url in [
        format!("http://{plain}/p"),
        format!("https://localhost:{}/t", tls.port()),
    ] {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--haproxy-protocol",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", tls.port())])
            .arg(&url)
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{url}");
    }
    let reqs = origin.wait_requests(2);
    assert!(reqs
        .iter()
        .all(|r| r.header("x-forwarded-for") == Some("127.0.0.1")));
    // Without the header, curl's TLS handshake gets nowhere.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
        ])
        .arg(format!("https://127.0.0.1:{}/", tls.port()))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::io::stdout().flush();
}

/// An origin that takes a PROXY protocol header first on each connection (parsed with
/// ringway's own parser, strictly) and answers every request on it with the client the
/// header named; the headers' clients, one per connection, in order.
fn proxy_origin() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use ringway::proxy_protocol::{parse, Accept, Parsed};
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let record = record.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let client = loop {
                    match parse(&buf, Accept::Any) {
                        Ok(Parsed::Done(h, n)) => {
                            buf.drain(..n);
                            break h.source.map_or("none".to_string(), |a| a.to_string());
                        }
                        Ok(Parsed::Incomplete) => {}
                        Err(e) => {
                            record.lock().expect("seen").push(format!("bad: {e}"));
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                record.lock().expect("seen").push(client.clone());
                answer_heads_after(&mut s, buf, &client, |_| {});
            });
        }
    });
    (addr, seen)
}

#[test]
fn an_upstream_is_told_the_client_in_a_proxy_header_of_its_own() {
    for version in ["v1", "v2"] {
        let (origin, seen) = proxy_origin();
        let cfg = format!(
            "[server]\nlisten = []\nworkers = 1\n\n\
             [[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\nproxy_protocol = \"{version}\"\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n"
        );
        let gw = Gateway::start(&cfg, Driver::IoUring);
        // Two requests on one client connection: one upstream connection, one header,
        // naming that client.
        let s = connect(gw.addr());
        let me = s.local_addr().expect("local").to_string();
        let mut a = Reader::new(s);
        for _ in 0..2 {
            a.send(b"GET /a HTTP/1.1\r\nHost: gw\r\n\r\n");
            let r = a.response().expect("response");
            assert_eq!((r.status, r.body_text()), (200, me.clone()), "{version}");
        }
        // Another client connection never gets the first one's upstream connection.
        let s = connect(gw.addr());
        let other = s.local_addr().expect("local").to_string();
        let mut b = Reader::new(s);
        b.send(b"GET /b HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(
            b.response().expect("response").body_text(),
            other,
            "{version}"
        );
        assert_eq!(
            *seen.lock().expect("seen"),
            vec![me.clone(), other.clone()],
            "{version}"
        );
        drop(a);
        drop(b);
        // Behind a balancer: the client its header named is the one passed on.
        let cfg = cfg.replace(
            "address = \"127.0.0.1:0\"\n",
            "address = \"127.0.0.1:0\"\nproxy_protocol = \"any\"\n",
        );
        let gw = Gateway::start(&cfg, Driver::IoUring);
        let r = through(
            gw.addr(),
            b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 8080\r\n",
            "/c",
        )
        .expect("response");
        assert_eq!(
            (r.status, r.body_text()),
            (200, "203.0.113.9:40000".to_string()),
            "{version}"
        );
    }
}

/// A GET of `path` from the local address `source`, to `to`.
fn get_from(source: [u8; 4], to: SocketAddr, path: &str) -> Response {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.bind(&SocketAddr::from((source, 0)).into())
        .expect("bind the source address");
    sock.connect(&to.into()).expect("connect");
    let mut r = Reader::new(sock.into());
    r.send(format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").as_bytes());
    r.response().expect("a response")
}

both_drivers! {
    fn haproxy_send_proxy_v2_names_the_client_everywhere(d) {
        if fleet_skipped() {
            return;
        }
        let origin = Origin::start(Reply::echo);
        let log = log_path("haproxy", d);
        let cfg = format!(
            "[server]\nlisten = []\nworkers = 1\n\n[access_log]\npath = \"{}\"\n\n\
             [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"v2\"\n\
             proxy_protocol_from = [\"127.0.0.1/32\"]\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
             [[routes]]\npath = \"/denied\"\nupstream = \"app\"\nrules = {{ ip_deny = [\"127.0.0.2/32\"] }}\n\n\
             [[routes]]\npath = \"/limited\"\nupstream = \"app\"\n\
             rules = {{ rate_limits = [{{ key = \"ip\", rate = \"1/h\", burst = 1 }}] }}\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
            log.display(),
            origin.addr()
        );
        let gw = Gateway::start(&cfg, d);
        let lb = Haproxy::tcp_balancer(&[gw.listener_addr("http, h2c")], true);
        // Every connection reaches ringway from HAProxy (127.0.0.1); the header names the
        // client's own address.
        assert_eq!(get_from([127, 0, 0, 2], lb.addr(), "/denied").status, 403, "ip rule");
        assert_eq!(get_from([127, 0, 0, 3], lb.addr(), "/denied").status, 200);
        let forwarded = origin.wait_requests(1).pop().expect("forwarded");
        assert_eq!(forwarded.header("x-forwarded-for"), Some("127.0.0.3"));
        let limited: Vec<u16> = [[127, 0, 0, 3], [127, 0, 0, 3], [127, 0, 0, 4]]
            .iter()
            .map(|&s| get_from(s, lb.addr(), "/limited").status)
            .collect();
        assert_eq!(limited, [200, 429, 200], "an ip-keyed limit counts each client");
        let text = eventually("the access log").until(|| {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            (t.lines().count() >= 5).then_some(t)
        });
        for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            assert!(text.contains(&format!("\"client_ip\":\"{ip}\"")), "{ip}: {text}");
        }
        assert!(!text.contains("\"client_ip\":\"127.0.0.1\""), "{text}");
        let _ = std::fs::remove_file(&log);
    }
}

both_drivers! {
    fn hash_on_the_client_ip_hashes_the_client_a_proxy_header_names(d) {
        let a = Origin::ok("a");
        let b = Origin::ok("b");
        let cfg = format!(
            "[server]\nlisten = []\nworkers = 1\n\n\
             [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"v1\"\n\n\
             [[upstreams]]\nname = \"app\"\nservers = [\"{}\", \"{}\"]\nbalance = \"hash\"\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
            a.addr(),
            b.addr()
        );
        let gw = Gateway::start(&cfg, d);
        // Every connection comes from 127.0.0.1; only the header tells the clients apart.
        let server_of = |client: u8| {
            let header = format!("PROXY TCP4 198.51.100.{client} 10.0.0.1 40000 8080\r\n");
            through(gw.addr(), header.as_bytes(), "/").expect("response").body_text()
        };
        let first: Vec<String> = (1..=20).map(server_of).collect();
        assert!(first.iter().any(|s| s == "a") && first.iter().any(|s| s == "b"), "{first:?}");
        let again: Vec<String> = (1..=20).map(server_of).collect();
        assert_eq!(first, again, "each client stays on its server");
    }
}
