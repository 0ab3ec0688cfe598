//! The raw client: blocking TCP to ringway with `TIMEOUT` on every read and write, writing
//! exactly the bytes a test gives (or a `Request` renders) and reading responses leniently
//! (1xx skipped, bodies by Content-Length, chunked or close), keeping whatever bytes
//! follow for the next read. `ask` is the one request-and-answer helper. It never retries,
//! reconnects or fixes up a request: what ringway gets is what the test wrote.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::wait::TIMEOUT;
use crate::wire::{decode_chunked, find, header, header_lines};

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("send");
}

/// One request for `ask`: `METHOD target HTTP/1.1`, `Host` (`gw` unless `host` says
/// otherwise), the header lines in the order they were added, the blank line, the body.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    target: String,
    host: String,
    headers: String,
    body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            host: "gw".to_string(),
            headers: String::new(),
            body: Vec::new(),
        }
    }

    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    pub fn host(mut self, host: &str) -> Request {
        self.host = host.to_string();
        self
    }

    /// Header lines as they go on the wire, each ending in CRLF (empty for none).
    pub fn headers(mut self, lines: &str) -> Request {
        self.headers.push_str(lines);
        self
    }

    /// A body with its `Content-Length` line (added after the headers so far).
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Request {
        let body = body.as_ref();
        self.headers
            .push_str(&format!("Content-Length: {}\r\n", body.len()));
        self.body = body.to_vec();
        self
    }

    /// Body bytes as they are, framed by the headers the test gave (e.g. chunked).
    pub fn raw_body(mut self, bytes: impl AsRef<[u8]>) -> Request {
        self.body = bytes.as_ref().to_vec();
        self
    }

    /// The exact bytes `ask` sends.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
            self.method, self.target, self.host, self.headers
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Sends `request` on a fresh connection and returns the answer; panics if the connection
/// closes without one.
pub fn ask(addr: SocketAddr, request: Request) -> Response {
    roundtrip(addr, &request.to_bytes()).unwrap_or_else(|| {
        panic!(
            "no response to {} {} (Host: {})",
            request.method, request.target, request.host
        )
    })
}

/// `GET path` with `Host: test.local`, answered.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    ask(addr, Request::get(path).host("test.local"))
}

/// One request on a fresh connection; returns the response (None if closed first).
pub fn roundtrip(addr: SocketAddr, request: &[u8]) -> Option<Response> {
    let mut r = Reader::new(connect(addr));
    r.send(request);
    r.response()
}

/// An address on which nothing listens.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The exact head bytes.
    pub head: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses a head (status line and header lines, with its blank line); no body yet.
    fn from_head(text: String) -> Response {
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let reason = parts.next().unwrap_or("").to_string();
        let headers = header_lines(lines);
        Response {
            status,
            reason,
            version,
            headers,
            body: Vec::new(),
            head: text,
        }
    }
}

/// Reads responses from one connection, keeping bytes that belong to the next one.
pub struct Reader {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new(s: TcpStream) -> Reader {
        Reader { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> bool {
        let mut tmp = vec![0u8; 256 * 1024];
        match self.s.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!(
                    "timed out waiting for a response; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(_) => false,
        }
    }

    /// Reads the next head; None if the connection closed first.
    fn head(&mut self) -> Option<Response> {
        let end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if !self.fill() {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..end).collect();
        Some(Response::from_head(
            String::from_utf8_lossy(&head).into_owned(),
        ))
    }

    /// The next final response (1xx skipped), or None if the connection closed before one.
    pub fn response(&mut self) -> Option<Response> {
        self.response_to(false)
    }

    /// Like `response`, for a HEAD request (no body whatever the framing says).
    pub fn response_to(&mut self, head_request: bool) -> Option<Response> {
        let mut r = loop {
            let r = self.head()?;
            if !(100..200).contains(&r.status) {
                break r;
            }
        };
        if head_request || r.status == 204 || r.status == 304 {
            return Some(r);
        }
        r.body = if r
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            self.chunked_body()?
        } else if let Some(cl) = r
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            self.bytes(cl)?
        } else {
            // Close-delimited.
            self.read_to_close()
        };
        Some(r)
    }

    /// A whole chunked body, decoded; None if the connection closed first.
    fn chunked_body(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some((len, body)) = decode_chunked(&self.buf) {
                self.buf.drain(..len);
                return Some(body);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next head only (for interim responses such as 100 Continue).
    pub fn interim_or_final_head(&mut self) -> Option<Response> {
        self.head()
    }

    /// True if the peer closes (EOF or reset) within `within`, with no further bytes.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        let _ = self.s.set_read_timeout(Some(within));
        let mut tmp = [0u8; 4096];
        let started = Instant::now();
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return false
                }
                Err(_) => return true,
            }
            if started.elapsed() > within {
                return false;
            }
        }
    }

    /// Exactly the next `n` bytes, whatever they are (a tunnel's); None if the connection
    /// closed first.
    pub fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Bytes received but not yet consumed.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }

    /// Reads until EOF/reset (bounded by the read timeout); returns everything unread.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }
}
