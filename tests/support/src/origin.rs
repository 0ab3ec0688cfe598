//! The recording origin: a plain-threads HTTP/1.1 server on 127.0.0.1:0 that keeps the exact
//! bytes each connection delivered, parses them leniently into requests (so a test can check
//! what ringway forwarded), and answers each request as a handler scripts it: any bytes,
//! malformed ones included, late, never, or by closing. It records and obeys; it judges
//! nothing (tests do).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::wait::eventually;
use crate::wire::{decode_chunked, find, header, header_lines};

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct OriginRequest {
    /// Index of the origin connection it arrived on.
    pub conn: usize,
    /// The exact bytes: head and body (chunked bodies with their framing).
    pub raw: Vec<u8>,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl OriginRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn head_text(&self) -> String {
        let end = find(&self.raw, b"\r\n\r\n").map_or(self.raw.len(), |p| p + 4);
        String::from_utf8_lossy(&self.raw[..end]).into_owned()
    }
}

/// How the origin answers one request.
#[derive(Clone)]
pub enum Reply {
    /// Send these bytes; keep the connection.
    Raw(Vec<u8>),
    /// Send these bytes, then close.
    RawThenClose(Vec<u8>),
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
    /// Never answer; hold the connection until the test ends.
    Never,
    /// Close without answering.
    Close,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    pub fn raw(bytes: &[u8]) -> Reply {
        Reply::Raw(bytes.to_vec())
    }

    pub fn raw_then_close(bytes: &[u8]) -> Reply {
        Reply::RawThenClose(bytes.to_vec())
    }

    pub fn echo(req: &OriginRequest) -> Reply {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            req.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&req.body);
        Reply::Raw(out)
    }
}

type Handler = dyn Fn(&OriginRequest) -> Reply + Send + Sync;

#[derive(Default)]
struct OriginState {
    requests: Mutex<Vec<OriginRequest>>,
    connections: AtomicUsize,
    /// Raw bytes received per connection (including partial requests).
    bytes: Mutex<Vec<Vec<u8>>>,
    closed_by_peer: Mutex<Vec<bool>>,
}

impl OriginState {
    fn mark_closed(&self, conn: usize) {
        if let Some(c) = self.closed_by_peer.lock().expect("lock").get_mut(conn) {
            *c = true;
        }
    }
}

/// An origin on 127.0.0.1:0 that records what it receives. A thread per connection.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
}

impl Origin {
    pub fn start(handler: impl Fn(&OriginRequest) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(OriginState::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let st = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let conn = st.connections.fetch_add(1, Ordering::SeqCst);
                st.bytes.lock().expect("lock").push(Vec::new());
                st.closed_by_peer.lock().expect("lock").push(false);
                let st = st.clone();
                let handler = handler.clone();
                thread::spawn(move || origin_conn(stream, conn, st, handler));
            }
        });
        Origin { addr, state }
    }

    /// Answers every request with 200 and the given body.
    pub fn ok(body: &'static str) -> Origin {
        Origin::start(move |_| Reply::ok(body))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<OriginRequest> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Every byte received on every connection, concatenated.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.state.bytes.lock().expect("lock").concat()
    }

    pub fn conn_bytes(&self, conn: usize) -> Vec<u8> {
        self.state
            .bytes
            .lock()
            .expect("lock")
            .get(conn)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until at least `n` complete requests arrived; all of them.
    pub fn wait_requests(&self, n: usize) -> Vec<OriginRequest> {
        eventually(format!("{n} requests at the origin")).until(|| {
            let reqs = self.state.requests.lock().expect("lock");
            if reqs.len() >= n {
                Ok(reqs.clone())
            } else {
                Err(format!("{} requests", reqs.len()))
            }
        })
    }

    /// Waits until the peer (ringway) closed origin connection `conn`.
    pub fn wait_closed_by_peer(&self, conn: usize) -> bool {
        eventually(format!("ringway to close origin connection {conn}"))
            .try_until(|| self.state.closed_by_peer.lock().expect("lock").get(conn) == Some(&true))
            .is_some()
    }
}

fn origin_conn(mut s: TcpStream, conn: usize, st: Arc<OriginState>, handler: Arc<Handler>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 256 * 1024];
    loop {
        // Parse as many complete requests as the buffer holds.
        while let Some((req_len, mut req)) = parse_request(&buf) {
            req.conn = conn;
            req.raw = buf[..req_len].to_vec();
            buf.drain(..req_len);
            let reply = handler(&req);
            st.requests.lock().expect("lock").push(req);
            if !send_reply(&mut s, reply) {
                // Our write failed or we closed: either way the connection is over.
                st.mark_closed(conn);
                return;
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => {
                st.mark_closed(conn);
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                if let Some(b) = st.bytes.lock().expect("lock").get_mut(conn) {
                    b.extend_from_slice(&tmp[..n]);
                }
            }
        }
    }
}

/// False when the connection should end.
fn send_reply(s: &mut TcpStream, reply: Reply) -> bool {
    match reply {
        Reply::Raw(b) => s.write_all(&b).is_ok(),
        Reply::RawThenClose(b) => {
            let _ = s.write_all(&b);
            let _ = s.shutdown(Shutdown::Both);
            false
        }
        Reply::Delay(d, inner) => {
            // The delay is the scripted behaviour (a slow origin), not a wait for readiness.
            thread::sleep(d);
            send_reply(s, *inner)
        }
        Reply::Never => {
            // Hold the socket open (reading and discarding) until the peer goes away.
            let mut tmp = [0u8; 4096];
            while matches!(s.read(&mut tmp), Ok(n) if n > 0) {}
            false
        }
        Reply::Close => {
            let _ = s.shutdown(Shutdown::Both);
            false
        }
    }
}

/// Answers every request head read from `s` with `200 OK` and `body`, keep-alive, until
/// the peer closes or an error; `after_read` runs after each read (e.g. to look at a TLS
/// session once its handshake is done).
pub fn answer_heads<S: Read + Write>(s: &mut S, body: &str, after_read: impl FnMut(&mut S)) {
    answer_heads_after(s, Vec::new(), body, after_read)
}

/// `answer_heads`, with `buf` already read off `s` (what followed a preamble, say).
pub fn answer_heads_after<S: Read + Write>(
    s: &mut S,
    mut buf: Vec<u8>,
    body: &str,
    mut after_read: impl FnMut(&mut S),
) {
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            buf.drain(..end + 4);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        after_read(s);
    }
}

/// Lenient parse of one complete request at the front of `buf`: (length, request).
fn parse_request(buf: &[u8]) -> Option<(usize, OriginRequest)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let headers = header_lines(lines);
    let mut req = OriginRequest {
        conn: 0,
        raw: Vec::new(),
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let (len, body) = decode_chunked(&buf[head_end..])?;
        req.body = body;
        return Some((head_end + len, req));
    }
    let cl: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < head_end + cl {
        return None;
    }
    req.body = buf[head_end..head_end + cl].to_vec();
    Some((head_end + cl, req))
}
