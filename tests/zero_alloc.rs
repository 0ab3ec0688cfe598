//! Zero heap allocations per request after warm-up on the small keep-alive proxy path.
//!
//! A counting global allocator (this test binary only) counts `alloc`, `alloc_zeroed` and
//! `realloc` calls made on the gateway worker thread; frees are not counted. The real
//! pipeline (`front::http1::serve` with the real `TcpConnector` and keep-alive pool) runs on a
//! monoio runtime in-process, under both drivers, over loopback TCP between a blocking
//! client (the test thread) and a blocking origin (its own threads, not counted).
//!
//! Each case warms up, resets its counter, sends `MEASURED` requests on one keep-alive
//! connection, and asserts the worker thread allocated nothing. Cases: GET with a 100-byte
//! response, POST with a 100-byte body (sent with the head), and GET with a 32 KiB
//! response (relayed over several reads), and a GET through the policy (API key, group,
//! IP rule, rate limit), each under io_uring and the legacy driver. With the access log on
//! (a GET, lines written to /dev/null by the writer thread), formatting a line allocates
//! nothing; a buffer is only allocated when the writer has not yet given one back, so the
//! bound there is far below one allocation per line rather than zero.
//!
//! To find an allocation: `ZERO_ALLOC_TRACE=3 cargo test --test zero_alloc -- --nocapture`
//! prints the backtraces of the first 3 counted allocations after warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ringway::accesslog::{AccessLog, Sink};
use ringway::compiled::Compiled;
use ringway::config::AccessLogConfig;
use ringway::front::http1::serve;
use ringway::io::TcpConnector;
use ringway::pipeline::Shared;

// ------------------------------------------------------------------ counting allocator

/// One counter per test case, so cases running in parallel do not mix their counts.
const SLOTS: usize = 10;
const NO_SLOT: usize = usize::MAX;

static COUNTS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// Backtraces still to print per slot (diagnostics; see the module docs).
static TRACE_LEFT: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

thread_local! {
    /// The slot this thread's allocations are counted in (`NO_SLOT`: not counted).
    /// Const-initialised with no destructor, so it is safe to touch from the allocator.
    static SLOT: Cell<usize> = const { Cell::new(NO_SLOT) };
    /// Re-entrancy guard: set while this thread captures a backtrace.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn note_alloc(size: usize) {
    let slot = SLOT.with(Cell::get);
    if slot == NO_SLOT || TRACING.with(Cell::get) {
        return;
    }
    COUNTS[slot].fetch_add(1, Ordering::Relaxed);
    let left = &TRACE_LEFT[slot];
    if left.load(Ordering::Relaxed) > 0 {
        left.fetch_sub(1, Ordering::Relaxed);
        TRACING.with(|t| t.set(true));
        let bt = std::backtrace::Backtrace::force_capture();
        eprintln!("---- counted allocation of {size} bytes (slot {slot}):\n{bt}");
        TRACING.with(|t| t.set(false));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ------------------------------------------------------------------ parameters

const WARMUP: usize = 2_000;
const MEASURED: usize = 10_000;
/// Small bodies: the request body (POST) and the response body.
const BODY_LEN: usize = 100;
/// A response body that takes several upstream reads and client writes to relay.
const LARGE_BODY: usize = 32 * 1024;
/// Bound on any single socket wait.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A round trip this slow may have let the connection's idle shrink (1 s) kick in.
const STALL: Duration = Duration::from_millis(500);
/// Bound on a whole case.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    IoUring,
    Legacy,
}

// ------------------------------------------------------------------ origin

/// A blocking HTTP/1.1 origin answering every request with a fixed-size body, keep-alive,
/// head and body in one write. Its threads are not counted.
struct Origin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Origin {
    fn start(body_len: usize) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    thread::spawn(move || origin_conn(conn, body_len));
                }
            }
        });
        Origin { addr, stop }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Wake the accept loop so it sees the flag and returns.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
    }
}

fn origin_conn(mut s: TcpStream, body_len: usize) {
    let _ = s.set_nodelay(true);
    // Bounded: the gateway keeps this connection pooled until its worker ends.
    let _ = s.set_read_timeout(Some(CASE_TIMEOUT));
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    response.extend(std::iter::repeat(b'o').take(body_len));
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    loop {
        // Answer every complete request already buffered.
        while let Some((head_end, body_len)) = parse_head(&buf[..have]) {
            let total = head_end + body_len;
            if have < total {
                break;
            }
            buf.copy_within(total..have, 0);
            have -= total;
            if s.write_all(&response).is_err() {
                return;
            }
        }
        if have == buf.len() {
            return; // a head larger than the buffer: not this test's traffic
        }
        match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

/// (end of head, Content-Length) of the message at the front of `buf`, if its head is
/// complete. No Content-Length means no body (neither side sends chunked here).
fn parse_head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let len = buf[..end]
        .split(|&b| b == b'\n')
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            if !line[..colon].eq_ignore_ascii_case(b"content-length") {
                return None;
            }
            let v = std::str::from_utf8(&line[colon + 1..]).ok()?;
            v.trim().parse().ok()
        })
        .unwrap_or(0);
    Some((end, len))
}

// ------------------------------------------------------------------ gateway

fn config(origin: SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\n\
         [auth.api_key]\n\n\
         [[consumers]]\nname = \"alice\"\ngroups = [\"admins\"]\napi_keys = [\"{API_KEY_SHA256}\"]\n\n\
         [[routes]]\npath_prefix = \"/auth\"\nupstream = \"app\"\naccess = {{ groups = [\"admins\"] }}\n\
         rules = {{ ip_allow = [\"127.0.0.0/8\"], rate_limits = [{{ key = \"consumer\", rate = \"1000000/s\", burst = 1000000 }}] }}\n"
    )
}

/// SHA-256 of "alice-key".
const API_KEY_SHA256: &str =
    "sha256:72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20";

/// Accepts one client connection and serves it to the end, like `worker::accept_loop`.
async fn gateway_main(
    compiled: Compiled,
    listening: mpsc::Sender<SocketAddr>,
    access_log: Option<Sink>,
) {
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("gateway bind");
    let addr = listener.local_addr().expect("gateway addr");
    let mut shared = Shared::new(Rc::new(compiled), TcpConnector, 64, 0, 0x5a17);
    if let Some(sink) = access_log {
        shared = shared.with_access_log(sink);
    }
    let shared = Rc::new(shared);
    listening
        .send(addr)
        .expect("test thread waits for the address");
    let (stream, peer) = listener.accept().await.expect("accept");
    stream.set_nodelay(true).expect("nodelay");
    monoio::spawn(serve(
        shared.clone(),
        stream,
        peer,
        Instant::now(),
        Default::default(),
    ))
    .await;
}

/// Starts the gateway worker thread; returns its address and a receiver that yields once
/// the worker has finished (or is dropped if it panicked).
fn start_gateway(
    driver: Driver,
    origin: SocketAddr,
    slot: usize,
    access_log: Option<Sink>,
) -> (SocketAddr, mpsc::Receiver<()>) {
    let text = config(origin);
    let cfg = ringway::config::from_str(&text, "test.toml").expect("test config parses");
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("gateway-{driver:?}"))
        .spawn(move || {
            // Built on the worker's own thread, as ringway does (the policy is per core).
            let compiled = Compiled::build(&cfg, "test.toml").expect("test config builds");
            SLOT.with(|s| s.set(slot));
            match driver {
                Driver::IoUring => ringway::runtime::build_uring()
                    .expect("io_uring runtime")
                    .block_on(gateway_main(compiled, addr_tx, access_log)),
                Driver::Legacy => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .expect("legacy runtime")
                    .block_on(gateway_main(compiled, addr_tx, access_log)),
            }
            SLOT.with(|s| s.set(NO_SLOT));
            let _ = done_tx.send(());
        })
        .expect("spawn gateway thread");
    let addr = addr_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("gateway worker did not start listening");
    (addr, done_rx)
}

// ------------------------------------------------------------------ client

/// One keep-alive client connection with preallocated buffers.
struct Client {
    s: TcpStream,
    request: Vec<u8>,
    /// The response body length every response must have.
    body_len: usize,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, request: Vec<u8>, body_len: usize) -> Client {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to gateway");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        s.set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        Client {
            s,
            request,
            body_len,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// Sends the request (one write) and reads exactly one full response.
    fn round_trip(&mut self, i: usize) {
        self.s
            .write_all(&self.request)
            .unwrap_or_else(|e| panic!("request {i}: write: {e}"));
        let mut have = 0;
        loop {
            if let Some((head_end, body_len)) = parse_head(&self.buf[..have]) {
                let head = &self.buf[..head_end];
                assert!(
                    head.starts_with(b"HTTP/1.1 200 "),
                    "request {i}: unexpected response head {:?}",
                    String::from_utf8_lossy(head)
                );
                assert_eq!(body_len, self.body_len, "request {i}: body length");
                if have >= head_end + body_len {
                    assert_eq!(have, head_end + body_len, "request {i}: stray bytes");
                    return;
                }
            }
            assert!(have < self.buf.len(), "request {i}: response too large");
            match self.s.read(&mut self.buf[have..]) {
                Ok(0) => panic!("request {i}: gateway closed the connection"),
                Ok(n) => have += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("request {i}: read: {e}"),
            }
        }
    }
}

// ------------------------------------------------------------------ the cases

/// Allocations the worker thread made during `MEASURED` requests after `WARMUP` ones.
fn measure(driver: Driver, slot: usize, what: &str, request: &[u8], response_body: usize) -> u64 {
    measure_with(driver, slot, what, request, response_body, false)
}

/// `measure`, with the access log on when `log` (written to /dev/null).
fn measure_with(
    driver: Driver,
    slot: usize,
    what: &str,
    request: &[u8],
    response_body: usize,
    log: bool,
) -> u64 {
    let started = Instant::now();
    let origin = Origin::start(response_body);
    let access_log = log.then(|| {
        let cfg = AccessLogConfig {
            path: "/dev/null".into(),
            buffer_bytes: 64 * 1024,
        };
        AccessLog::start(&cfg, 1).expect("access log writer")
    });
    let sink = access_log.as_ref().map(AccessLog::sink);
    let (addr, done) = start_gateway(driver, origin.addr, slot, sink);
    let mut client = Client::connect(addr, request.to_vec(), response_body);
    for i in 0..WARMUP {
        client.round_trip(i);
    }
    let trace = std::env::var("ZERO_ALLOC_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut attempt = 0;
    let count = loop {
        attempt += 1;
        // Reset only after the last warm-up response arrived: from here on the worker does
        // nothing but steady-state requests (whatever it still does for the previous one is
        // part of the same per-request cycle).
        COUNTS[slot].store(0, Ordering::SeqCst);
        TRACE_LEFT[slot].store(trace, Ordering::SeqCst);
        let mut slowest = Duration::ZERO;
        for i in WARMUP..WARMUP + MEASURED {
            let t = Instant::now();
            client.round_trip(i);
            slowest = slowest.max(t.elapsed());
        }
        let count = COUNTS[slot].load(Ordering::SeqCst);
        TRACE_LEFT[slot].store(0, Ordering::SeqCst);
        // A connection idle for a second gives its buffers back by design (and reallocates
        // them for the next request): if the machine stalled that long, measure again.
        if count == 0 || slowest < STALL || attempt == 3 {
            break count;
        }
        eprintln!("{driver:?} {what}: a round trip took {slowest:?}; measuring again");
    };
    assert!(
        started.elapsed() < CASE_TIMEOUT,
        "case took {:?}",
        started.elapsed()
    );
    // Closing the client ends `serve`, then the worker's runtime.
    let _ = client.s.shutdown(Shutdown::Both);
    drop(client);
    done.recv_timeout(IO_TIMEOUT)
        .expect("gateway worker did not finish after the client closed (or it panicked)");
    drop(origin);
    if let Some(a) = access_log {
        a.close();
    }
    eprintln!(
        "{driver:?} {what}: {count} allocations in {MEASURED} requests ({:.4} per request)",
        count as f64 / MEASURED as f64
    );
    count
}

fn get_request() -> Vec<u8> {
    b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
}

/// A request through the policy: API key (a consumer in a group), IP rule, rate limit.
fn policy_request() -> Vec<u8> {
    b"GET /auth/small HTTP/1.1\r\nHost: x\r\nX-Api-Key: alice-key\r\n\r\n".to_vec()
}

fn post_request() -> Vec<u8> {
    let mut r = format!("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY_LEN}\r\n\r\n")
        .into_bytes();
    r.extend(std::iter::repeat(b'p').take(BODY_LEN));
    r
}

/// Measures one case and asserts that the worker thread allocated nothing.
fn assert_zero(driver: Driver, slot: usize, what: &str, request: &[u8], response_body: usize) {
    let count = measure(driver, slot, what, request, response_body);
    assert_eq!(
        count,
        0,
        "{driver:?} {what}: {count} heap allocations on the worker thread in {MEASURED} \
         keep-alive requests after {WARMUP} warm-up ones ({:.4} per request); \
         rerun with ZERO_ALLOC_TRACE=3 and --nocapture for backtraces",
        count as f64 / MEASURED as f64
    );
}

#[test]
fn get_io_uring() {
    assert_zero(Driver::IoUring, 0, "GET", &get_request(), BODY_LEN);
}

#[test]
fn get_legacy() {
    assert_zero(Driver::Legacy, 1, "GET", &get_request(), BODY_LEN);
}

/// The request body arrives with the head, so it goes upstream in the head's write.
#[test]
fn post_io_uring() {
    assert_zero(Driver::IoUring, 2, "POST", &post_request(), BODY_LEN);
}

#[test]
fn post_legacy() {
    assert_zero(Driver::Legacy, 3, "POST", &post_request(), BODY_LEN);
}

/// A response body relayed over several upstream reads (the buffer grows to its relay
/// size during warm-up and is reused after).
#[test]
fn get_32k_response_io_uring() {
    assert_zero(Driver::IoUring, 4, "GET 32 KiB", &get_request(), LARGE_BODY);
}

#[test]
fn get_32k_response_legacy() {
    assert_zero(Driver::Legacy, 5, "GET 32 KiB", &get_request(), LARGE_BODY);
}

/// The policy path: API-key lookup, group check, IP rule and rate limit.
#[test]
fn policy_io_uring() {
    assert_zero(
        Driver::IoUring,
        6,
        "GET with policy",
        &policy_request(),
        BODY_LEN,
    );
}

#[test]
fn policy_legacy() {
    assert_zero(
        Driver::Legacy,
        7,
        "GET with policy",
        &policy_request(),
        BODY_LEN,
    );
}

/// With the access log on, formatting and buffering a line allocates nothing; only a
/// buffer the writer has not given back yet is allocated (at most one per 64 KiB of lines).
fn assert_logging_is_allocation_free_per_line(driver: Driver, slot: usize) {
    let count = measure_with(
        driver,
        slot,
        "GET, access log on",
        &get_request(),
        BODY_LEN,
        true,
    );
    assert!(
        count * 100 <= MEASURED as u64,
        "{driver:?}: {count} allocations in {MEASURED} logged requests"
    );
}

#[test]
fn access_log_io_uring() {
    assert_logging_is_allocation_free_per_line(Driver::IoUring, 8);
}

#[test]
fn access_log_legacy() {
    assert_logging_is_allocation_free_per_line(Driver::Legacy, 9);
}
