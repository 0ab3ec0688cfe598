//! End-to-end test helpers: start the real `ringway` binary on an ephemeral port with a
//! generated config, a recording origin that captures the exact bytes it receives and can
//! answer with scripted (also malformed) bytes, and a raw TCP client. Everything waits on
//! readiness with deadlines; nothing sleeps blindly; only processes started here are killed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

impl Driver {
    pub fn env(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }
}

/// Generates `<name>_io_uring` and `<name>_legacy` tests from one body taking a `Driver`.
#[macro_export]
macro_rules! both_drivers {
    ($( $(#[$meta:meta])* fn $name:ident($d:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                fn run($d: $crate::common::Driver) $body
                #[test]
                $(#[$meta])*
                fn io_uring() { run($crate::common::Driver::IoUring) }
                #[test]
                $(#[$meta])*
                fn legacy() { run($crate::common::Driver::Legacy) }
            }
        )*
    };
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn temp_path(ext: &str) -> std::path::PathBuf {
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("ringway-test-{}-{n}.{ext}", std::process::id()))
}

/// A running `ringway run` process. Killed on drop.
pub struct Gateway {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    config_path: std::path::PathBuf,
}

impl Gateway {
    pub fn start(config: &str, driver: Driver) -> Gateway {
        Gateway::start_in(config, driver, &std::env::temp_dir())
    }

    /// `start` with the config file written into `dir` (its relative paths resolve there).
    #[allow(dead_code)]
    pub fn start_in(config: &str, driver: Driver, dir: &std::path::Path) -> Gateway {
        let config_path = dir.join(
            temp_path("toml")
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default(),
        );
        std::fs::write(&config_path, config).expect("write config");
        Gateway::spawn(config_path, driver, &[])
    }

    /// A second process on the same config file, started with `run --upgrade`: it takes
    /// the listeners of the running one. The config file is left to the first gateway.
    #[allow(dead_code)]
    pub fn start_upgrade(&self, driver: Driver) -> Gateway {
        let copy = self.config_path.with_extension("upgrade.toml");
        std::fs::copy(&self.config_path, &copy).expect("copy config");
        Gateway::spawn(copy, driver, &["--upgrade"])
    }

    fn spawn(config_path: std::path::PathBuf, driver: Driver, extra: &[&str]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["run", "-c"])
            .arg(&config_path)
            .args(extra)
            .env("RINGWAY_IO_DRIVER", driver.env())
            .env("RINGWAY_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out_pipe = child.stdout.take().expect("stdout piped");
        let out_lines = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                out_lines.lock().expect("stdout lock").push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        let lines = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                // Record the line before announcing readiness, so a test that reads the log
                // right after `start` returns sees it.
                lines.lock().expect("stderr lock").push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ringway did not become ready:\n{}",
                    stderr.lock().expect("stderr lock").join("\n")
                );
            }
        };
        Gateway {
            child: Some(child),
            addr,
            stderr,
            stdout,
            config_path,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The lines the gateway wrote to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// The config file this gateway was started with (tests rewrite it to reload).
    #[allow(dead_code)]
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Waits (bounded) until a log line contains `needle`; returns the line.
    #[allow(dead_code)]
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self.stderr_text().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.stderr_text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal (by name, e.g. "HUP") to this gateway's process.
    #[allow(dead_code)]
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits (bounded) for the process to exit on its own; its exit status.
    #[allow(dead_code)]
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status (kills after the deadline).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin listener's address, from the log (`[admin] listen = "127.0.0.1:0"`).
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self.wait_log("admin listening on ");
        line.split("admin listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("admin address")
    }

    /// Resident set size of the gateway process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// Builds a config with one listener on port 0 and one worker.
pub struct Config {
    sections: Vec<String>,
    upstreams: Vec<String>,
    routes: Vec<String>,
}

impl Config {
    pub fn new() -> Config {
        Config {
            sections: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
        }
    }
    /// Extra top-level sections, e.g. "[limits]\nmax_in_flight = 1".
    pub fn section(mut self, text: &str) -> Config {
        self.sections.push(text.to_string());
        self
    }
    pub fn upstream(mut self, name: &str, servers: &[SocketAddr]) -> Config {
        let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        self.upstreams.push(format!(
            "[[upstreams]]\nname = \"{name}\"\nservers = [{}]\n",
            list.join(", ")
        ));
        self
    }
    /// One route's fields (without the `[[routes]]` line).
    pub fn route(mut self, fields: &str) -> Config {
        self.routes.push(format!("[[routes]]\n{fields}\n"));
        self
    }
    pub fn render(&self) -> String {
        let mut server = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n".to_string();
        let mut rest = String::new();
        for s in &self.sections {
            if let Some(extra) = s.strip_prefix("[server]\n") {
                server.push_str(extra);
                server.push('\n');
            } else {
                rest.push_str(s);
                rest.push('\n');
            }
        }
        format!(
            "{server}\n{rest}\n{}\n{}",
            self.upstreams.join("\n"),
            self.routes.join("\n")
        )
    }
    /// Shorthand: one upstream "app" and a catch-all route to it.
    pub fn proxy_all(origin: SocketAddr) -> Config {
        Config::new()
            .upstream("app", &[origin])
            .route("path_prefix = \"/\"\nupstream = \"app\"")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

// ------------------------------------------------------------------ recording origin

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
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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

struct OriginState {
    requests: Mutex<Vec<OriginRequest>>,
    changed: Condvar,
    connections: AtomicUsize,
    /// Raw bytes received per connection (including partial requests).
    bytes: Mutex<Vec<Vec<u8>>>,
    closed_by_peer: Mutex<Vec<bool>>,
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
        let state = Arc::new(OriginState {
            requests: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            connections: AtomicUsize::new(0),
            bytes: Mutex::new(Vec::new()),
            closed_by_peer: Mutex::new(Vec::new()),
        });
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

    /// Waits until at least `n` complete requests arrived.
    pub fn wait_requests(&self, n: usize) -> Vec<OriginRequest> {
        let deadline = Instant::now() + TIMEOUT;
        let mut reqs = self.state.requests.lock().expect("lock");
        while reqs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "origin got {} of {n} requests", reqs.len());
            reqs = self.state.changed.wait_timeout(reqs, left).expect("lock").0;
        }
        reqs.clone()
    }

    /// Waits until the peer (ringway) closed origin connection `conn`.
    pub fn wait_closed_by_peer(&self, conn: usize) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if self.state.closed_by_peer.lock().expect("lock").get(conn) == Some(&true) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
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
            {
                let mut r = st.requests.lock().expect("lock");
                r.push(req);
                st.changed.notify_all();
            }
            if !send_reply(&mut s, reply) {
                // Our write failed or we closed: either way the connection is over.
                if let Some(c) = st.closed_by_peer.lock().expect("lock").get_mut(conn) {
                    *c = true;
                }
                return;
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => {
                if let Some(c) = st.closed_by_peer.lock().expect("lock").get_mut(conn) {
                    *c = true;
                }
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
#[allow(dead_code)]
pub fn answer_heads<S: std::io::Read + std::io::Write>(
    s: &mut S,
    body: &str,
    mut after_read: impl FnMut(&mut S),
) {
    let mut buf = Vec::new();
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

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut req = OriginRequest {
        conn: 0,
        raw: Vec::new(),
        method,
        target,
        headers: headers.clone(),
        body: Vec::new(),
    };
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let (len, body) = decode_chunked(&buf[head_end..])?;
        req.body = body;
        return Some((head_end + len, req));
    }
    let cl: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < head_end + cl {
        return None;
    }
    req.body = buf[head_end..head_end + cl].to_vec();
    Some((head_end + cl, req))
}

/// Decodes a complete chunked body: (bytes used, payload). None if incomplete.
pub fn decode_chunked(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = find(&buf[pos..], b"\r\n")? + pos;
        let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let e = find(&buf[pos..], b"\r\n")? + pos;
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Some((pos, body));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

// ------------------------------------------------------------------ raw client

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
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
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
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let reason = parts.next().unwrap_or("").to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_string(), v.trim().to_string()))
            .collect();
        Some(Response {
            status,
            reason,
            version,
            headers,
            body: Vec::new(),
            head: text,
        })
    }

    /// The next final response (1xx skipped), or None if the connection closed before one.
    pub fn response(&mut self) -> Option<Response> {
        self.response_to(false)
    }

    /// Like `response`, for a HEAD request (no body whatever the framing says).
    pub fn response_to(&mut self, head_request: bool) -> Option<Response> {
        loop {
            let mut r = self.head()?;
            if (100..200).contains(&r.status) {
                continue;
            }
            if head_request || r.status == 204 || r.status == 304 {
                return Some(r);
            }
            if r.header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                loop {
                    if let Some((len, body)) = decode_chunked(&self.buf) {
                        self.buf.drain(..len);
                        r.body = body;
                        return Some(r);
                    }
                    if !self.fill() {
                        return None;
                    }
                }
            }
            if let Some(cl) = r
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
            {
                while self.buf.len() < cl {
                    if !self.fill() {
                        return None;
                    }
                }
                r.body = self.buf.drain(..cl).collect();
                return Some(r);
            }
            // Close-delimited.
            while self.fill() {}
            r.body = std::mem::take(&mut self.buf);
            return Some(r);
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

/// One request on a fresh connection; returns the response (None if closed first).
pub fn roundtrip(addr: SocketAddr, request: &[u8]) -> Option<Response> {
    let mut r = Reader::new(connect(addr));
    r.send(request);
    r.response()
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    roundtrip(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes(),
    )
    .expect("a response")
}

/// An address on which nothing listens.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

// ------------------------------------------------------------------ bundled origin

/// The bundled `ringway-origin` on 127.0.0.1:0, killed on drop.
pub struct BundledOrigin {
    child: Child,
    pub addr: SocketAddr,
}

impl BundledOrigin {
    pub fn start() -> BundledOrigin {
        BundledOrigin::start_with(&[])
    }

    /// `start` with more command-line arguments (e.g. `--fault-rate`).
    pub fn start_with(args: &[&str]) -> BundledOrigin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringway-origin"))
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringway-origin");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("origin ready line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .expect("origin address");
        BundledOrigin { child, addr }
    }

    /// The origin's own counters (`/origin/stats`, asked directly, not through ringway):
    /// `connections`, `open` (not counting the asking one), `requests`, `faults`, per mode.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let r = get(self.addr, "/origin/stats");
        assert_eq!(r.status, 200, "origin stats");
        r.body_text()
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    /// One counter of `stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| v)
    }

    /// Waits (bounded) until exactly `n` origin connections are open.
    pub fn wait_open(&self, n: u64) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if self.stat("open") == n {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for BundledOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
