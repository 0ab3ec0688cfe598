//! WebSocket and Upgrade tunnels: a configured upgrade goes upstream with `Connection:
//! Upgrade`, a matching 101 turns the connection into a byte tunnel (client bytes sent
//! with the head reach the origin only after its 101), a refused upgrade leaves an ordinary
//! HTTP/1.1 connection, half-close and the idle timeout end tunnels, and large transfers
//! go both ways intact (spliced, or copied with splicing off).

use ringway_test_support::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// How long the origin watches for bytes after a request head before it answers 101.
const EARLY_WINDOW: Duration = Duration::from_millis(200);

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
fn accept_for(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: ws.test\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A WebSocket-ish frame: FIN + text opcode, unmasked, short payload.
fn frame(payload: &str) -> Vec<u8> {
    let mut f = vec![0x81, payload.len() as u8];
    f.extend_from_slice(payload.as_bytes());
    f
}

// ------------------------------------------------------------------ tunnel origin

/// What the tunnel origin saw on its (only) connection.
#[derive(Default, Clone)]
struct Seen {
    head: String,
    /// Bytes that arrived before the origin wrote its 101.
    early: Vec<u8>,
    /// Bytes that arrived after it.
    after: Vec<u8>,
    /// ringway closed (or shut down) its side.
    eof: bool,
}

/// An origin that answers a request head with a 101 (and `greeting` in the same write),
/// then echoes every byte until EOF, then sends `farewell` and closes.
struct TunnelOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl TunnelOrigin {
    fn start(greeting: &'static [u8], farewell: &'static [u8]) -> TunnelOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let st = seen.clone();
        thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                tunnel_conn(s, &st, greeting, farewell);
            }
        });
        TunnelOrigin { addr, seen }
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        record(&self.seen, f);
    }

    /// Waits until `ready` holds for what the origin saw, then returns it.
    fn wait(&self, what: &str, ready: impl Fn(&Seen) -> bool) -> Seen {
        eventually(format!("the origin to see {what}")).until(|| {
            let seen = self.seen.lock().expect("lock");
            ready(&seen).then(|| seen.clone())
        })
    }
}

fn record(st: &Mutex<Seen>, f: impl FnOnce(&mut Seen)) {
    f(&mut st.lock().expect("lock"));
}

fn tunnel_conn(mut s: TcpStream, st: &Mutex<Seen>, greeting: &[u8], farewell: &[u8]) {
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 256 * 1024];
    let end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    // Anything after the head, now or within the window, came before our 101: a bug.
    let mut early = buf.split_off(end);
    let _ = s.set_read_timeout(Some(EARLY_WINDOW));
    if let Ok(n) = s.read(&mut tmp) {
        early.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let key = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap_or("")
        .to_string();
    record(st, |seen| {
        seen.head = head;
        seen.early = early;
    });
    let mut reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nX-Origin: yes\r\n\r\n",
        accept_for(&key)
    )
    .into_bytes();
    reply.extend_from_slice(greeting);
    let _ = s.set_read_timeout(None);
    if s.write_all(&reply).is_err() {
        return;
    }
    loop {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                record(st, |seen| seen.after.extend_from_slice(&tmp[..n]));
                if s.write_all(&tmp[..n]).is_err() {
                    break;
                }
            }
        }
    }
    record(st, |seen| seen.eof = true);
    let _ = s.write_all(farewell);
    let _ = s.shutdown(Shutdown::Both);
}

// ------------------------------------------------------------------ client

/// Exactly the next `n` tunnelled bytes.
fn bytes(c: &mut Reader, n: usize) -> Vec<u8> {
    c.bytes(n).unwrap_or_else(|| {
        panic!(
            "closed before {n} bytes: {:?}",
            String::from_utf8_lossy(c.leftover())
        )
    })
}

fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends the upgrade request (with `extra` in the same write), checks the 101 and returns
/// the client, now tunnelled.
fn open_tunnel(gw: &Gateway, extra: &[u8]) -> Reader {
    let mut c = Reader::new(connect(gw.addr()));
    let mut req = upgrade_request("/chat").into_bytes();
    req.extend_from_slice(extra);
    c.send(&req);
    let head = c.interim_or_final_head().expect("a response head").head;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(field(&head, "connection"), Some("Upgrade"), "{head}");
    assert_eq!(field(&head, "upgrade"), Some("websocket"), "{head}");
    assert_eq!(
        field(&head, "sec-websocket-accept"),
        Some(accept_for(KEY).as_str())
    );
    assert_eq!(field(&head, "x-origin"), Some("yes"), "{head}");
    assert!(field(&head, "content-length").is_none(), "{head}");
    assert!(field(&head, "transfer-encoding").is_none(), "{head}");
    c
}

fn gateway_to(origin: SocketAddr, d: Driver, extra: &str) -> Gateway {
    Gateway::start(&Config::proxy_all(origin).section(extra).render(), d)
}

both_drivers! {
    fn frames_flow_both_ways_and_bytes_sent_with_the_head_wait_for_the_101(d) {
        let origin = TunnelOrigin::start(b"hello", b"");
        let gw = gateway_to(origin.addr, d, "");
        let early = frame("sent-with-the-head");
        let mut c = open_tunnel(&gw, &early);
        // The origin recorded what came before its 101 before sending it.
        let seen = origin.wait("the head", |s| !s.head.is_empty());
        assert!(seen.early.is_empty(), "origin got {:?} before its 101", String::from_utf8_lossy(&seen.early));
        assert_eq!(bytes(&mut c, 5), b"hello", "origin bytes sent with its 101");
        assert_eq!(bytes(&mut c, early.len()), early, "early frame echoed");
        for i in 0..5 {
            let f = frame(&format!("message {i}"));
            c.send(&f);
            assert_eq!(bytes(&mut c, f.len()), f);
        }
        let seen = origin.wait("the frames", |s| s.after.len() >= early.len());
        assert!(seen.after.starts_with(&early), "{:?}", seen.after);
        assert!(seen.head.starts_with("GET /chat HTTP/1.1\r\n"), "{}", seen.head);
        assert!(seen.head.contains("\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"), "{}", seen.head);
        assert_eq!(field(&seen.head, "sec-websocket-key"), Some(KEY));
        assert_eq!(field(&seen.head, "sec-websocket-version"), Some("13"));
        assert_eq!(seen.head.matches("Connection:").count(), 1, "{}", seen.head);
        drop(c);
        origin.wait("the client close", |s| s.eof);
    }

    fn a_half_closed_client_still_gets_the_origin_s_last_message(d) {
        let origin = TunnelOrigin::start(b"", b"bye");
        let gw = gateway_to(origin.addr, d, "");
        let mut c = open_tunnel(&gw, b"");
        c.send(b"last");
        assert_eq!(bytes(&mut c, 4), b"last");
        c.s.shutdown(Shutdown::Write).expect("shutdown");
        origin.wait("EOF", |s| s.eof);
        assert_eq!(c.read_to_close(), b"bye", "final message, then close");
    }

    fn a_silent_tunnel_is_closed_after_tunnel_idle(d) {
        let origin = TunnelOrigin::start(b"", b"");
        let gw = gateway_to(origin.addr, d, "[timeouts]\ntunnel_idle = \"300ms\"");
        let mut c = open_tunnel(&gw, b"");
        // Traffic keeps it open past the idle time.
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(150));
            c.send(b"ping");
            assert_eq!(bytes(&mut c, 4), b"ping");
        }
        let quiet = Instant::now();
        assert!(c.read_to_close().is_empty());
        let waited = quiet.elapsed();
        assert!(waited >= Duration::from_millis(250), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
        origin.wait("the close", |s| s.eof);
    }

    fn four_mib_each_way_are_spliced_intact(d) {
        large_transfer(d, "");
    }

    fn four_mib_each_way_are_copied_intact_without_splicing(d) {
        large_transfer(d, "[server]\nsplice_threshold = 0");
    }

    fn a_refused_upgrade_leaves_an_http_connection_for_the_pipelined_request(d) {
        for refusal in [
            "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 7\r\n\r\nrefused",
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nrefused",
        ] {
            let origin = Origin::start(move |r| {
                if r.target == "/chat" { Reply::raw(refusal.as_bytes()) } else { Reply::ok("second") }
            });
            let gw = gateway_to(origin.addr(), d, "");
            let mut r = Reader::new(connect(gw.addr()));
            let mut bytes = upgrade_request("/chat").into_bytes();
            bytes.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: ws.test\r\n\r\n");
            r.send(&bytes);
            let first = r.response().expect("first response");
            assert_eq!(first.status, refusal[9..12].parse::<u16>().unwrap_or(0));
            assert_eq!(first.body_text(), "refused");
            assert!(!first.has_header("upgrade"), "{}", first.head);
            assert!(!first.has_header("connection"), "{}", first.head);
            let second = r.response().expect("second response");
            assert_eq!((second.status, second.body_text().as_str()), (200, "second"));
            let reqs = origin.wait_requests(2);
            assert_eq!(reqs[0].target, "/chat");
            assert_eq!(reqs[0].header("upgrade"), Some("websocket"));
            assert_eq!(reqs[0].header("connection"), Some("Upgrade"));
            assert_eq!(reqs[1].target, "/next");
            assert_eq!(reqs[1].header("upgrade"), None);
            assert_eq!(reqs[1].header("connection"), None);
            // Still a keep-alive HTTP/1.1 connection.
            r.send(b"GET /third HTTP/1.1\r\nHost: ws.test\r\n\r\n");
            assert_eq!(r.response().expect("third").status, 200);
        }
    }

    fn requests_that_may_not_upgrade_go_upstream_without_it(d) {
        let origin = Origin::ok("plain");
        let h2c = "GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
        let other = "GET /other HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\n";
        let post = "POST /post HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi";
        let http10 = "GET /old HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let disabled = upgrade_request("/disabled");
        let gw = gateway_to(origin.addr(), d, "");
        let off = gateway_to(origin.addr(), d, "[server]\nupgrade_protocols = []");
        let cases = [(&gw, h2c), (&gw, other), (&gw, post), (&gw, http10), (&off, disabled.as_str())];
        for (i, (gw, request)) in cases.iter().enumerate() {
            let resp = roundtrip(gw.addr(), request.as_bytes()).expect("a response");
            assert_eq!((resp.status, resp.body_text().as_str()), (200, "plain"), "{request}");
            let req = origin.wait_requests(i + 1).remove(i);
            assert_eq!(req.header("upgrade"), None, "{}", req.head_text());
            assert_eq!(req.header("connection"), None, "{}", req.head_text());
            assert_eq!(req.header("http2-settings"), None, "{}", req.head_text());
        }
    }

    fn a_101_to_a_refused_or_different_upgrade_is_502(d) {
        let origin = Origin::start(|_| Reply::raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"));
        let gw = gateway_to(origin.addr(), d, "");
        let h2c = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
        for request in [h2c, upgrade_request("/chat").as_str()] {
            let resp = roundtrip(gw.addr(), request.as_bytes()).expect("a response");
            assert_eq!(resp.status, 502, "{request}");
        }
    }
}

/// 4 MiB up and 4 MiB back (the origin echoes) at the same time, compared byte for byte.
fn large_transfer(d: Driver, extra: &str) {
    const LEN: usize = 4 * 1024 * 1024;
    let origin = TunnelOrigin::start(b"", b"");
    let gw = gateway_to(origin.addr, d, extra);
    let mut c = open_tunnel(&gw, b"");
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let mut w = c.s.try_clone().expect("clone");
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&sent).expect("send 4 MiB");
    });
    let back = bytes(&mut c, LEN);
    writer.join().expect("writer");
    assert!(back == data, "echo differs");
    origin.update(|s| assert_eq!(s.after.len(), LEN));
    let spliced = gw.stderr_text().contains("tunnel: splicing");
    assert_eq!(spliced, extra.is_empty(), "{}", gw.stderr_text());
}
