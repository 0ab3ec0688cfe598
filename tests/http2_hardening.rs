//! HTTP/2 attacks, malformed requests and abrupt clients, written frame by frame (a raw
//! client: no HTTP/2 library would send them): each flood gets GOAWAY ENHANCE_YOUR_CALM and
//! a fresh connection is still served at once; the stream limit refuses one stream too
//! many; a CONTINUATION flood is cut off; every malformed request is refused (a stream error
//! or a 400) without reaching the origin, and the other streams on its connection go on; a
//! reset stream or a client gone after GOAWAY cancels what it had upstream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringway_test_support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

fn frame(t: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, t, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: every field as a literal without indexing, with a new name, no Huffman.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        assert!(n.len() < 127 && v.len() < 127, "short fields only");
        b.push(0x00);
        b.push(n.len() as u8);
        b.extend_from_slice(n.as_bytes());
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

fn get_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "http".into()),
        (":authority", "gw.test".into()),
        (":path", path.into()),
    ]
}

/// One frame as received: type, flags, stream, payload.
type Frame = (u8, u8, u32, Vec<u8>);

struct Raw {
    s: TcpStream,
    /// Outcomes read while waiting for another stream's.
    seen: std::collections::HashMap<u32, Result<u8, u32>>,
}

impl Raw {
    /// Connects, sends the preface and an empty SETTINGS, and acknowledges the server's.
    fn open(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut r = Raw {
            s,
            seen: Default::default(),
        };
        r.send(PREFACE);
        r.send(&frame(SETTINGS, 0, 0, &[]));
        let f = r.next().expect("server SETTINGS");
        assert_eq!(f.0, SETTINGS, "the server speaks first with SETTINGS");
        r.send(&frame(SETTINGS, ACK, 0, &[]));
        r
    }

    fn send(&mut self, bytes: &[u8]) {
        // A write may fail once the server closed on us: that is what some tests expect.
        let _ = self.s.write_all(bytes);
    }

    fn headers(&mut self, stream: u32, fields: &[(&str, String)], end_stream: bool) {
        let f: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.send(&frame(HEADERS, flags, stream, &block(&f)));
    }

    /// The next frame, or None when the connection closed or went quiet.
    fn next(&mut self) -> Option<Frame> {
        let mut h = [0u8; 9];
        self.s.read_exact(&mut h).ok()?;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let mut payload = vec![0; len];
        self.s.read_exact(&mut payload).ok()?;
        let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
        Some((h[3], h[4], stream, payload))
    }

    /// Reads until GOAWAY (its error code) or the end of the connection (None).
    fn goaway(&mut self) -> Option<u32> {
        while let Some((t, _, _, p)) = self.next() {
            if t == GOAWAY && p.len() >= 8 {
                return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            }
        }
        None
    }

    /// What `stream` ends with: Ok(first byte of its response head block) or Err(the code
    /// of its RST_STREAM / the connection's GOAWAY).
    fn outcome(&mut self, stream: u32) -> Result<u8, u32> {
        loop {
            if let Some(o) = self.seen.remove(&stream) {
                return o;
            }
            let Some((t, _, id, p)) = self.next() else {
                return Err(u32::MAX);
            };
            let o = match t {
                HEADERS => Ok(p.first().copied().unwrap_or(0)),
                RST_STREAM => Err(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
                GOAWAY => return Err(u32::from_be_bytes([p[4], p[5], p[6], p[7]])),
                _ => continue,
            };
            self.seen.entry(id).or_insert(o);
        }
    }
}

/// The HPACK byte of an indexed `:status` of the static table.
const STATUS_200: u8 = 0x88;
const STATUS_400: u8 = 0x8c;

fn hardened(origin: &Origin, d: Driver) -> Gateway {
    let cfg = Config::proxy_all(origin.addr())
        .section(
            "[http2]\nmax_concurrent_streams = 5\nmax_resets_per_second = 20\n\n\
             [http2.flood]\nsettings = 10\nping = 10\npriority = 10\nrst_stream = 10\n\
             empty_data = 10\nwindow_update = 10",
        )
        .render();
    Gateway::start(&cfg, d)
}

/// A fresh connection is answered at once.
fn still_served(addr: SocketAddr) {
    let t = Instant::now();
    let mut r = Raw::open(addr);
    r.headers(1, &get_fields("/fresh"), true);
    assert_eq!(r.outcome(1), Ok(STATUS_200), "a fresh connection is served");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "and quickly: {:?}",
        t.elapsed()
    );
}

both_drivers! {
    fn control_frame_floods_end_the_connection_with_enhance_your_calm(d) {
        let origin = Origin::ok("ok");
        let gw = hardened(&origin, d);
        let floods: [(&str, Vec<u8>); 5] = [
            ("SETTINGS", frame(SETTINGS, 0, 0, &[])),
            ("PING", frame(PING, 0, 0, &[0; 8])),
            ("PRIORITY", frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 16])),
            ("WINDOW_UPDATE", frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1])),
            ("RST_STREAM", frame(RST_STREAM, 0, 1, &[0, 0, 0, 8])),
        ];
        for (what, f) in floods {
            let mut r = Raw::open(gw.addr());
            if what == "RST_STREAM" {
                // Resets must name a stream the client opened.
                r.headers(1, &get_fields("/r"), false);
            }
            for _ in 0..11 {
                r.send(&f);
            }
            assert_eq!(r.goaway(), Some(ENHANCE_YOUR_CALM), "{what} flood");
            still_served(gw.addr());
        }
    }

    fn an_empty_data_flood_ends_the_connection(d) {
        let origin = Origin::ok("ok");
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        let mut post = get_fields("/upload");
        post[0].1 = "POST".into();
        r.headers(1, &post, false);
        for _ in 0..11 {
            r.send(&frame(DATA, 0, 1, &[]));
        }
        assert_eq!(r.goaway(), Some(ENHANCE_YOUR_CALM));
        still_served(gw.addr());
    }

    fn rapid_reset_ends_the_connection_and_cancels_upstream_requests(d) {
        let origin = Origin::start(|_| Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("late"))));
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        let mut id = 1;
        for _ in 0..40 {
            r.headers(id, &get_fields("/slow"), true);
            r.send(&frame(RST_STREAM, 0, id, &[0, 0, 0, 8]));
            id += 2;
        }
        assert_eq!(r.goaway(), Some(ENHANCE_YOUR_CALM));
        // Whatever reached the origin before the resets was cancelled there.
        for c in 0..origin.connections() {
            assert!(origin.wait_closed_by_peer(c), "origin connection {c} left open");
        }
        still_served(gw.addr());
    }

    fn a_reset_stream_cancels_its_upstream_request_and_the_others_go_on(d) {
        // The origin never answers /drop: only ringway closing it ends that connection.
        let origin = Origin::start(|r| {
            if r.target == "/drop" {
                Reply::Never
            } else {
                Reply::Delay(Duration::from_millis(400), Box::new(Reply::ok("late")))
            }
        });
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        r.headers(1, &get_fields("/keep"), true);
        origin.wait_requests(1);
        r.headers(3, &get_fields("/drop"), true);
        origin.wait_requests(2);
        r.send(&frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        // The reset stream's upstream request is cancelled (its connection closed by
        // ringway); the other stream is answered.
        assert!(origin.wait_closed_by_peer(1), "the reset stream's upstream request went on");
        assert_eq!(r.outcome(1), Ok(STATUS_200));
        assert_eq!(origin.requests().len(), 2);
    }

    fn a_client_goaway_lets_its_streams_finish_then_the_connection_ends(d) {
        let origin = Origin::start(|_| Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("late"))));
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        r.headers(1, &get_fields("/one"), true);
        r.headers(3, &get_fields("/two"), true);
        origin.wait_requests(2);
        // GOAWAY, NO_ERROR: the client takes no pushed streams (and opens no more).
        r.send(&frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(r.outcome(1), Ok(STATUS_200));
        assert_eq!(r.outcome(3), Ok(STATUS_200));
        // Then the connection ends (the server's own GOAWAY may come first), well before
        // the read timeout.
        let t = Instant::now();
        while let Some((t, _, id, _)) = r.next() {
            assert!(t != HEADERS || id > 3, "a stream after the client's GOAWAY");
        }
        assert!(t.elapsed() < Duration::from_secs(3), "the connection lingered: {:?}", t.elapsed());
        assert_eq!(origin.requests().len(), 2);
    }

    fn a_client_goaway_with_an_error_then_gone_cancels_its_upstream_requests(d) {
        let origin = Origin::start(|r| if r.target == "/fresh" { Reply::ok("fresh") } else { Reply::Never });
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        r.headers(1, &get_fields("/one"), true);
        r.headers(3, &get_fields("/two"), true);
        origin.wait_requests(2);
        r.send(&frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 2]));
        drop(r);
        assert!(origin.wait_closed_by_peer(0) && origin.wait_closed_by_peer(1), "upstream requests left running");
        still_served(gw.addr());
        assert_eq!(origin.requests().len(), 3);
    }

    fn one_stream_past_the_limit_is_refused(d) {
        let origin = Origin::start(|_| Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("late"))));
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        for i in 0..6u32 {
            r.headers(1 + 2 * i, &get_fields(&format!("/s{i}")), true);
        }
        assert_eq!(r.outcome(11), Err(REFUSED_STREAM), "the sixth of max 5");
        for i in 0..5u32 {
            assert_eq!(r.outcome(1 + 2 * i), Ok(STATUS_200), "stream {}", 1 + 2 * i);
        }
    }

    fn a_continuation_flood_is_cut_off_within_the_header_limit(d) {
        let origin = Origin::ok("never");
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        let fields: Vec<(&str, &str)> = vec![(":method", "GET"), (":scheme", "http"), (":authority", "gw.test"), (":path", "/")];
        r.send(&frame(HEADERS, 0, 1, &block(&fields)));
        let junk = block(&[("x-junk", &"j".repeat(100))]);
        // 1,000 CONTINUATION frames: far past limits.max_header_bytes (16 KiB).
        for _ in 0..1000 {
            r.send(&frame(CONTINUATION, 0, 1, &junk));
        }
        let end = r.outcome(1);
        assert!(end.is_err() || end == Ok(0x8d) || end == Ok(STATUS_400) || matches!(end, Ok(b) if b != STATUS_200), "{end:?}");
        assert!(origin.requests().is_empty());
        still_served(gw.addr());
    }

    fn a_connection_that_sends_no_request_is_closed_after_the_header_timeout(d) {
        let origin = Origin::ok("never");
        let cfg = Config::proxy_all(origin.addr())
            .section("[timeouts]\nheader = \"1s\"")
            .render();
        let gw = Gateway::start(&cfg, d);
        let t = Instant::now();
        let mut r = Raw::open(gw.addr());
        assert_eq!(r.goaway(), Some(0), "GOAWAY NO_ERROR");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
        // A slow preface too: half of it, then nothing.
        let mut s = TcpStream::connect(gw.addr()).expect("connect");
        s.write_all(&PREFACE[..10]).expect("half a preface");
        s.set_read_timeout(Some(Duration::from_secs(4))).expect("timeout");
        let t = Instant::now();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).ok(), Some(0), "closed without a word");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    fn malformed_requests_are_refused_and_cost_other_streams_nothing(d) {
        let origin = Origin::ok("ok");
        let gw = hardened(&origin, d);
        let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
            ("uppercase field name", { let mut f = get_fields("/u"); f.push(("X-Upper", "1".into())); f }),
            ("connection-specific field", { let mut f = get_fields("/c"); f.push(("connection", "keep-alive".into())); f }),
            ("transfer-encoding", { let mut f = get_fields("/te"); f.push(("transfer-encoding", "chunked".into())); f }),
            ("te other than trailers", { let mut f = get_fields("/t"); f.push(("te", "gzip".into())); f }),
            ("value with leading space", { let mut f = get_fields("/w"); f.push(("x-a", " lead".into())); f }),
            ("unknown pseudo-header", { let mut f = get_fields("/p"); f.insert(0, (":foo", "bar".into())); f }),
            ("response pseudo-header", { let mut f = get_fields("/s"); f.insert(0, (":status", "200".into())); f }),
            ("pseudo-header after a field", { let mut f = get_fields("/o"); let p = f.remove(3); f.push(("x-a", "1".into())); f.push(p); f }),
            ("duplicate :path", { let mut f = get_fields("/d"); f.push((":path", "/e".into())); f }),
            ("empty :path", get_fields("")),
            ("absolute :path", get_fields("http://other/x")),
            ("dot behind an escaped slash", get_fields("/x/..%2fadmin")),
            ("host that differs from :authority", { let mut f = get_fields("/h"); f.push(("host", "other.test".into())); f }),
        ];
        for (what, fields) in cases {
            let mut r = Raw::open(gw.addr());
            r.headers(1, &fields, true);
            let end = r.outcome(1);
            assert!(
                matches!(end, Err(c) if c == PROTOCOL_ERROR) || end == Ok(STATUS_400),
                "{what}: {end:?}"
            );
            // The connection goes on (unless the codec treats it as a connection error).
            r.headers(3, &get_fields("/after"), true);
            let next = r.outcome(3);
            assert!(next == Ok(STATUS_200) || next.is_err(), "{what}: next stream {next:?}");
            still_served(gw.addr());
        }
        let reached: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
        assert!(reached.iter().all(|t| t == "/after" || t == "/fresh"), "{reached:?}");
    }

    fn content_length_disagreeing_with_the_data_is_a_stream_error(d) {
        let origin = Origin::start(Reply::echo);
        let gw = hardened(&origin, d);
        let mut r = Raw::open(gw.addr());
        let mut post = get_fields("/cl");
        post[0].1 = "POST".into();
        post.push(("content-length", "10".into()));
        r.headers(1, &post, false);
        r.send(&frame(DATA, END_STREAM, 1, b"short"));
        assert!(r.outcome(1) != Ok(STATUS_200), "a body shorter than its content-length");
        still_served(gw.addr());
        // Whatever was forwarded of it never completed upstream.
        assert!(origin.requests().iter().all(|q| q.target != "/cl"));
    }
}
