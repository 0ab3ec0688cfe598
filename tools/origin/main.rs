//! `ringway-origin`: the bundled test backend. Thread-per-core monoio, keep-alive,
//! pipelining-safe, one write per small response. Used by the end-to-end tests, the README
//! demo and the benchmarks. HTTP/2 with prior knowledge (h2c) and a gRPC echo service on
//! the same listeners: see `http2`. HTTP/1.1 endpoints:
//!
//! - `/bytes/N` N body bytes (pattern `a..z`), streamed; `/small` (100), `/64k.bin`, `/1m.bin`
//! - `/chunked/N[?chunk=SIZE]` N bytes, chunked
//! - `/echo` the request body back (chunked if the request was), plus `X-Echo-*` fields
//! - `/echo/headers` the raw request head as the body
//! - `/sink` reads the whole body, then answers `bytes=N pattern=ok|bad` (pattern: `a..z`)
//! - `/delay/MS[/...]` answer after MS milliseconds
//! - `/status/CODE` that status
//! - `/close` answer, then close
//! - `/origin/stats` this origin's counters: `connections= open= requests= faults= ...`
//! - anything else: `ok\n`
//!
//! Fault modes (see `fault`): a request with `X-Fault: MODE` or to `/fault/MODE[/N]` gets
//! that broken answer instead; `--fault-rate P --fault-modes a,b` injects them at random
//! (`X-Fault: none` keeps a request out of it).
//!
//! Every response carries `X-Origin-Port` (which listener answered), `X-Echo-Target` and
//! `X-Conn-Id` (the connection it was served on, numbered from 1 in accept order).

mod fault;
mod http2;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use clap::Parser;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

#[derive(Parser, Clone)]
#[command(
    name = "ringway-origin",
    version,
    about = "HTTP/1.1, h2c and gRPC test origin for ringway"
)]
struct Args {
    /// Address to listen on (repeatable). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: Vec<SocketAddr>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// I/O driver: auto, io_uring or legacy.
    #[arg(long, default_value = "auto")]
    driver: String,
    /// No per-connection error logging.
    #[arg(long)]
    quiet: bool,
    /// Share of requests (0 to 1) answered with a random fault from --fault-modes.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Comma-separated fault modes that --fault-rate draws from (default: all).
    #[arg(long, value_delimiter = ',')]
    fault_modes: Vec<String>,
    /// Seed of the random fault injection (thread i uses seed + i).
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Serve HTTP/2 over TLS (ALPN h2) with this certificate chain and key (PEM files)
    /// instead of HTTP/1.1 and h2c.
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
    tls: Option<Vec<std::path::PathBuf>>,
}

/// Connections accepted so far (the last `X-Conn-Id` given out).
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
/// Connections closed so far.
static CLOSED: AtomicU64 = AtomicU64::new(0);
/// Requests whose head was read.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// `connections=N open=N requests=N faults=N mode=N...`; `open` leaves out `exclude`
/// connections (the one asking).
fn stats(exclude: u64) -> String {
    let accepted = CONNECTIONS.load(Ordering::Relaxed);
    let open = accepted
        .saturating_sub(CLOSED.load(Ordering::Relaxed))
        .saturating_sub(exclude);
    let requests = REQUESTS.load(Ordering::Relaxed);
    format!(
        "connections={accepted} open={open} requests={requests} {}",
        fault::counts()
    )
}

const MAX_HEAD: usize = 64 * 1024;
const PATTERN: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
const STREAM_CHUNK: usize = 64 * 1024;
/// What an HTTP/2 client with prior knowledge sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args.threads.max(1);
    if !(0.0..=1.0).contains(&args.fault_rate) {
        anyhow::bail!("--fault-rate {}: must be between 0 and 1", args.fault_rate);
    }
    let fault_modes: Vec<fault::Mode> = if args.fault_modes.is_empty() {
        fault::ALL.to_vec()
    } else {
        let mut modes = Vec::new();
        for name in &args.fault_modes {
            match fault::Mode::parse(name.trim()) {
                Some(m) => modes.push(m),
                None => anyhow::bail!(
                    "--fault-modes: {}",
                    fault::Fault::parse(name).err().unwrap_or_default()
                ),
            }
        }
        modes
    };
    let tls = match &args.tls {
        Some(files) => Some(http2::tls_config(&files[0], &files[1])?),
        None => None,
    };
    let mut per_thread: Vec<Vec<std::net::TcpListener>> =
        (0..threads).map(|_| Vec::new()).collect();
    for &configured in &args.listen {
        let mut addr = configured;
        for list in per_thread.iter_mut() {
            let l = bind(addr)?;
            if addr.port() == 0 {
                addr = l.local_addr()?;
            }
            list.push(l);
        }
        println!("listening on {addr}");
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let mut handles = Vec::new();
    for (i, socks) in per_thread.into_iter().enumerate() {
        let driver = args.driver.clone();
        let quiet = args.quiet;
        let (rate, modes, seed) = (args.fault_rate, fault_modes.clone(), args.fault_seed);
        let tls = tls.clone();
        handles.push(std::thread::spawn(move || {
            let faults = Rc::new(fault::Injector::new(
                rate,
                modes,
                seed.wrapping_add(i as u64),
            ));
            run_thread(socks, &driver, quiet, faults, tls)
        }));
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    if signals.forever().next().is_some() {
        println!("stats: {}", stats(0));
        std::io::stdout().flush()?;
        std::process::exit(0);
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

fn run_thread(
    socks: Vec<std::net::TcpListener>,
    driver: &str,
    quiet: bool,
    faults: Rc<fault::Injector>,
    tls: Option<http2::TlsConfig>,
) {
    let serve = move || async move {
        let mut tasks = Vec::new();
        for s in socks {
            match TcpListener::from_std(s) {
                Ok(l) => tasks.push(monoio::spawn(accept_loop(
                    l,
                    quiet,
                    faults.clone(),
                    tls.clone(),
                ))),
                Err(e) => eprintln!("listener: {e}"),
            }
        }
        for t in tasks {
            t.await;
        }
    };
    // The gateway's ring (DEFER_TASKRUN + SINGLE_ISSUER): waking it costs whoever sends to
    // the origin less, so the origin weighs less on what a benchmark measures.
    let uring = ringway::runtime::build_uring;
    let legacy = || {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
    };
    let use_uring = match driver {
        "legacy" => false,
        "io_uring" => true,
        _ => monoio::utils::detect_uring(),
    };
    if use_uring {
        match uring() {
            Ok(mut rt) => return rt.block_on(serve()),
            Err(e) => eprintln!("io_uring unavailable ({e}); using legacy"),
        }
    }
    match legacy() {
        Ok(mut rt) => rt.block_on(serve()),
        Err(e) => eprintln!("legacy runtime: {e}"),
    }
}

async fn accept_loop(
    l: TcpListener,
    quiet: bool,
    faults: Rc<fault::Injector>,
    tls: Option<http2::TlsConfig>,
) {
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                let faults = faults.clone();
                let tls = tls.clone();
                monoio::spawn(async move {
                    let served = match tls {
                        Some(tls) => http2::serve_tls(s, tls, port).await,
                        None => Conn::new(s, port, faults).serve().await,
                    };
                    CLOSED.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = served {
                        if !quiet {
                            eprintln!("origin connection: {e}");
                        }
                    }
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

type Res<T> = Result<T, String>;

/// How the request body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

struct Request {
    head: BytesMut,
    target: String,
    method: String,
    body: Body,
    keep_alive: bool,
    /// The `X-Fault` field, if any.
    fault: Option<String>,
}

struct Conn {
    s: TcpStream,
    port: u16,
    /// This connection's number (`X-Conn-Id`).
    id: u64,
    faults: Rc<fault::Injector>,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    fn new(s: TcpStream, port: u16, faults: Rc<fault::Injector>) -> Conn {
        Conn {
            s,
            port,
            id: CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1,
            faults,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
        }
    }

    async fn fill(&mut self) -> Res<bool> {
        if self.rbuf.capacity() - self.rbuf.len() < 8192 {
            self.rbuf.reserve(16 * 1024);
        }
        let buf = std::mem::take(&mut self.rbuf);
        let start = buf.len();
        let (res, slice) = self
            .s
            .read(monoio::buf::IoBufMut::slice_mut(buf, start..))
            .await;
        self.rbuf = slice.into_inner();
        match res {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn flush(&mut self) -> Res<()> {
        let buf = std::mem::take(&mut self.wbuf);
        let (res, mut buf) = self.s.write_all(buf).await;
        buf.clear();
        self.wbuf = buf;
        res.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn serve(mut self) -> Res<()> {
        // HTTP/2 with prior knowledge when the first bytes are its preface.
        loop {
            let n = self.rbuf.len().min(PREFACE.len());
            if self.rbuf[..n] != PREFACE[..n] {
                break;
            }
            if n == PREFACE.len() {
                let first = std::mem::take(&mut self.rbuf).freeze();
                // Boxed: HTTP/1.1 connections keep none of its state.
                return Box::pin(http2::serve(self.s, first, self.port)).await;
            }
            if !self.fill().await? {
                return Ok(());
            }
        }
        loop {
            let Some(req) = self.read_head().await? else {
                return Ok(());
            };
            REQUESTS.fetch_add(1, Ordering::Relaxed);
            let keep = self.respond(&req).await?;
            if !keep || !req.keep_alive {
                return Ok(());
            }
        }
    }

    async fn read_head(&mut self) -> Res<Option<Request>> {
        loop {
            if let Some(end) = find(&self.rbuf, b"\r\n\r\n") {
                let head = self.rbuf.split_to(end + 4);
                return parse(head).map(Some);
            }
            if self.rbuf.len() > MAX_HEAD {
                self.simple(400, b"head too large\n", false).await?;
                return Err("head too large".into());
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads the request body; calls `sink` with each piece.
    /// Passes the next `n` body bytes to `sink`, flushing what it writes as it grows.
    async fn body_bytes(
        &mut self,
        mut n: u64,
        sink: &mut impl FnMut(&[u8], &mut BytesMut),
        cut_short: &'static str,
    ) -> Res<()> {
        while n > 0 {
            if self.rbuf.is_empty() && !self.fill().await? {
                return Err(cut_short.into());
            }
            let take = (n as usize).min(self.rbuf.len());
            sink(&self.rbuf[..take], &mut self.wbuf);
            self.rbuf.advance(take);
            n -= take as u64;
            if self.wbuf.len() >= STREAM_CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn read_body(
        &mut self,
        body: Body,
        mut sink: impl FnMut(&[u8], &mut BytesMut),
    ) -> Res<()> {
        match body {
            Body::None => Ok(()),
            Body::Length(n) => self.body_bytes(n, &mut sink, "body cut short").await,
            Body::Chunked => loop {
                let line = loop {
                    if let Some(p) = find(&self.rbuf, b"\r\n") {
                        break self.rbuf.split_to(p + 2);
                    }
                    if self.rbuf.len() > 4096 || !self.fill().await? {
                        return Err("bad chunk line".into());
                    }
                };
                let size_part = line[..line.len() - 2]
                    .split(|&b| b == b';')
                    .next()
                    .unwrap_or_default();
                let size = std::str::from_utf8(size_part)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                    .ok_or("bad chunk size")?;
                if size == 0 {
                    // Trailers until an empty line.
                    loop {
                        if let Some(p) = find(&self.rbuf, b"\r\n") {
                            let l = self.rbuf.split_to(p + 2);
                            if l.len() == 2 {
                                return Ok(());
                            }
                            continue;
                        }
                        if !self.fill().await? {
                            return Err("trailers cut short".into());
                        }
                    }
                }
                self.body_bytes(size, &mut sink, "chunk cut short").await?;
                while self.rbuf.len() < 2 {
                    if !self.fill().await? {
                        return Err("chunk end cut short".into());
                    }
                }
                if &self.rbuf[..2] != b"\r\n" {
                    return Err("missing CRLF after chunk".into());
                }
                self.rbuf.advance(2);
            },
        }
    }

    fn head(&mut self, status: u16, extra: &[(&str, &str)], target: &str) {
        let w = &mut self.wbuf;
        w.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
        w.put_slice(b"Server: ringway-origin\r\n");
        w.put_slice(
            format!(
                "X-Origin-Port: {}\r\nX-Echo-Target: {target}\r\nX-Conn-Id: {}\r\n",
                self.port, self.id
            )
            .as_bytes(),
        );
        for (n, v) in extra {
            w.put_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        w.put_slice(b"\r\n");
    }

    async fn simple(&mut self, status: u16, body: &[u8], keep: bool) -> Res<bool> {
        let len = body.len().to_string();
        let mut extra = vec![("Content-Length", len.as_str())];
        if !keep {
            extra.push(("Connection", "close"));
        }
        self.head(status, &extra, "-");
        self.wbuf.put_slice(body);
        self.flush().await?;
        Ok(keep)
    }

    async fn respond(&mut self, req: &Request) -> Res<bool> {
        let path = req.target.split('?').next().unwrap_or("/").to_string();
        let query = req
            .target
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default();
        let is_head = req.method == "HEAD";
        if path == "/echo" {
            return self.echo(req).await;
        }
        if path == "/sink" {
            return self.sink(req).await;
        }
        self.read_body(req.body, |_, _| {}).await?;
        let target = req.target.clone();
        if path == "/origin/stats" {
            let body = format!("{}\n", stats(1));
            return self.simple(200, body.as_bytes(), req.keep_alive).await;
        }
        // `X-Fault: none` keeps a request out of the random injection.
        let fault = match req.fault.as_deref() {
            Some("none") => None,
            field => match fault::requested(field, &path) {
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => return self.simple(400, format!("{e}\n").as_bytes(), false).await,
                None => self.faults.draw(),
            },
        };
        if let Some(f) = fault {
            return self
                .fault(f, body_size(&path).unwrap_or(1024), &target)
                .await;
        }
        let close = [("Connection", "close")];
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if path == "/close" || !req.keep_alive {
            extra.extend_from_slice(&close);
        }
        let keep = path != "/close";
        if path == "/echo/headers" {
            let len = req.head.len().to_string();
            extra.push(("Content-Length", &len));
            self.head(200, &extra, &target);
            if !is_head {
                self.wbuf.put_slice(&req.head);
            }
            self.flush().await?;
            return Ok(keep);
        }
        if let Some(rest) = path.strip_prefix("/delay/") {
            let ms: u64 = rest
                .split('/')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            monoio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(code) = path.strip_prefix("/status/") {
            let status: u16 = code
                .parse()
                .ok()
                .filter(|c| (200..600).contains(c))
                .unwrap_or(400);
            let body: &[u8] = if status == 204 || status == 304 {
                b""
            } else {
                b"status\n"
            };
            let len = body.len().to_string();
            if status != 204 && status != 304 {
                extra.push(("Content-Length", &len));
            }
            self.head(status, &extra, &target);
            if !is_head {
                self.wbuf.put_slice(body);
            }
            self.flush().await?;
            return Ok(keep);
        }
        if let Some(n) = path.strip_prefix("/chunked/") {
            let n: u64 = n.parse().map_err(|_| "bad size")?;
            let chunk: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("chunk="))
                .and_then(|v| v.parse().ok())
                .filter(|&c| c > 0)
                .unwrap_or(8192);
            extra.push(("Transfer-Encoding", "chunked"));
            self.head(200, &extra, &target);
            if !is_head {
                self.stream_pattern(n, Some(chunk)).await?;
                self.wbuf.put_slice(b"0\r\n\r\n");
            }
            self.flush().await?;
            return Ok(keep);
        }
        let size = body_size(&path);
        let n = size.unwrap_or(3);
        let len = n.to_string();
        extra.push(("Content-Length", &len));
        self.head(200, &extra, &target);
        if !is_head {
            if size.is_some() {
                self.stream_pattern(n, None).await?;
            } else {
                self.wbuf.put_slice(b"ok\n");
            }
        }
        self.flush().await?;
        Ok(keep)
    }

    /// Writes `n` pattern bytes, raw or as chunks of `chunk` bytes.
    async fn stream_pattern(&mut self, n: u64, chunk: Option<usize>) -> Res<()> {
        let mut sent = 0u64;
        while sent < n {
            let piece = (n - sent).min(chunk.unwrap_or(STREAM_CHUNK) as u64) as usize;
            if chunk.is_some() {
                self.wbuf.put_slice(format!("{piece:x}\r\n").as_bytes());
            }
            let mut done = 0;
            while done < piece {
                let off = ((sent as usize) + done) % 26;
                let take = (piece - done).min(STREAM_CHUNK);
                self.wbuf.put_slice(&pattern()[off..off + take]);
                done += take;
            }
            if chunk.is_some() {
                self.wbuf.put_slice(b"\r\n");
            }
            sent += piece as u64;
            if self.wbuf.len() >= STREAM_CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn sink(&mut self, req: &Request) -> Res<bool> {
        let mut n: u64 = 0;
        let mut ok = true;
        self.read_body(req.body, |d, _| {
            for &b in d {
                ok &= b == PATTERN[(n % 26) as usize];
                n += 1;
            }
        })
        .await?;
        let body = format!("bytes={n} pattern={}\n", if ok { "ok" } else { "bad" });
        let len = body.len().to_string();
        let mut extra = vec![("Content-Length", len.as_str())];
        if !req.keep_alive {
            extra.push(("Connection", "close"));
        }
        self.head(200, &extra, &req.target);
        self.wbuf.put_slice(body.as_bytes());
        self.flush().await?;
        Ok(true)
    }

    async fn echo(&mut self, req: &Request) -> Res<bool> {
        let target = req.target.clone();
        let method = req.method.clone();
        let mut extra: Vec<(&str, &str)> = vec![("X-Echo-Method", &method)];
        if !req.keep_alive {
            extra.push(("Connection", "close"));
        }
        match req.body {
            Body::Length(n) => {
                let len = n.to_string();
                extra.push(("Content-Length", &len));
                extra.push(("X-Echo-Body-Length", &len));
                self.head(200, &extra, &target);
                self.read_body(req.body, |d, w| w.put_slice(d)).await?;
            }
            Body::None => {
                extra.push(("Content-Length", "0"));
                extra.push(("X-Echo-Body-Length", "0"));
                self.head(200, &extra, &target);
            }
            Body::Chunked => {
                extra.push(("Transfer-Encoding", "chunked"));
                self.head(200, &extra, &target);
                self.read_body(req.body, |d, w| {
                    if !d.is_empty() {
                        w.put_slice(format!("{:x}\r\n", d.len()).as_bytes());
                        w.put_slice(d);
                        w.put_slice(b"\r\n");
                    }
                })
                .await?;
                self.wbuf.put_slice(b"0\r\n\r\n");
            }
        }
        self.flush().await?;
        Ok(true)
    }
}

/// The body size a path asks for: `/bytes/N`, `/fault/MODE/N`, `/small`, `/64k.bin`, `/1m.bin`.
fn body_size(path: &str) -> Option<u64> {
    match path {
        "/small" => Some(100),
        "/64k.bin" => Some(65536),
        "/1m.bin" => Some(1 << 20),
        p => p
            .strip_prefix("/bytes/")
            .or_else(|| {
                p.strip_prefix("/fault/")
                    .and_then(|r| r.split_once('/'))
                    .map(|(_, n)| n)
            })
            .and_then(|n| n.parse().ok()),
    }
}

/// The body pattern, long enough to copy any STREAM_CHUNK-sized window from any phase.
fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| (0..STREAM_CHUNK + 26).map(|i| PATTERN[i % 26]).collect())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse(head: BytesMut) -> Res<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("malformed request".into()),
    }
    let minor = req.version.unwrap_or(1);
    let mut body = Body::None;
    let mut keep_alive = minor == 1;
    let mut fault = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("x-fault") {
            fault = Some(String::from_utf8_lossy(h.value).trim().to_string());
        }
        let v = std::str::from_utf8(h.value)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("content-length") {
            body = Body::Length(v.parse().map_err(|_| "bad content-length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") && v.ends_with("chunked") {
            body = Body::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if body == Body::Length(0) {
        body = Body::None;
    }
    let target = req.path.unwrap_or("/").to_string();
    let method = req.method.unwrap_or("GET").to_string();
    Ok(Request {
        head,
        target,
        method,
        body,
        keep_alive,
        fault,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
