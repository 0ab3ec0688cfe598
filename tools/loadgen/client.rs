//! One load-generating connection: keep-alive HTTP/1.1 requests in closed loop (send the
//! next request when the response is in) or open loop (requests due on a fixed schedule;
//! latency measured from the *intended* send time, so a stalled server cannot hide its
//! stall by slowing the generator down — coordinated omission corrected).
//!
//! Every complete response is counted by its status and its latency recorded, whatever the
//! status (a refusal that waited counts like a success that did); only 2xx and 3xx count as
//! requests done, any other status is a `status` error. A complete response leaves the
//! connection open when it allows it; any other error closes it and a new one is opened.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Error kinds counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Write,
    Read,
    Timeout,
    Parse,
    Status,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Write,
        ErrorKind::Read,
        ErrorKind::Timeout,
        ErrorKind::Parse,
        ErrorKind::Status,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Write => "write",
            ErrorKind::Read => "read",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Parse => "parse",
            ErrorKind::Status => "status",
        }
    }
}

/// Per-thread results, merged at the end.
pub struct Stats {
    pub latency_us: Histogram<u64>,
    /// Open loop: how late the generator itself sent each request (its timers tick in
    /// milliseconds); part of every open-loop latency, so it is reported next to it.
    pub send_lag_us: Histogram<u64>,
    pub requests: u64,
    pub bytes: u64,
    pub errors: [u64; 6],
    /// Complete responses by status code (the index). httparse and the h2 crate only pass
    /// three-digit codes, so the index is always in range; 8 KiB per thread, one add per
    /// response, no branch on the code's class.
    pub statuses: Box<[u64; STATUS_CODES]>,
}

/// Status codes are three digits: 100 to 999.
pub const STATUS_CODES: usize = 1000;

impl Stats {
    pub fn new() -> Stats {
        Stats {
            // 1 µs .. 100 s at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("constant histogram bounds are valid"),
            send_lag_us: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            bytes: 0,
            errors: [0; 6],
            statuses: Box::new([0; STATUS_CODES]),
        }
    }
    pub fn error(&mut self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.errors[i] += 1;
        }
    }

    /// Counts one complete response: its status and latency always; one request done and
    /// its bytes when it is `ok`, a status error when not. Whether it was ok.
    pub fn answered(&mut self, answer: &Answer, latency_us: u64) -> bool {
        if let Some(n) = self.statuses.get_mut(usize::from(answer.status)) {
            *n += 1;
        }
        let _ = self.latency_us.record(latency_us.min(MAX_US));
        if answer.ok {
            self.requests += 1;
            self.bytes += answer.bytes as u64;
        } else {
            self.error(ErrorKind::Status);
        }
        answer.ok
    }
}

/// A complete response.
pub struct Answer {
    pub status: u16,
    /// A success: 2xx or 3xx (and, for gRPC, grpc-status 0).
    pub ok: bool,
    /// Response bytes (HTTP/1.1: head and body; HTTP/2: body).
    pub bytes: usize,
    /// HTTP/1.1: the connection may carry the next request.
    pub keep: bool,
}

/// What every connection sends and how.
pub struct Plan {
    pub addr: SocketAddr,
    /// HTTP/1.1: the local address every connection is bound to (port 0) before connecting.
    pub source: Option<IpAddr>,
    /// The complete request bytes (head + body), shared by every request without a copy.
    pub request: &'static [u8],
    pub head_request: bool,
    pub end: Instant,
    /// Open loop: the interval between this connection's requests.
    pub interval: Option<Duration>,
    /// Per request, from the moment it is sent until its response is complete.
    pub timeout: Duration,
}

/// Runs one connection until `plan.end`, reconnecting after errors.
/// `offset` spreads the connections' open-loop schedules evenly over one interval.
pub async fn run(
    plan: Rc<Plan>,
    stats: Rc<RefCell<Stats>>,
    progress: &'static std::sync::atomic::AtomicU64,
    offset: Duration,
    precise_timer: bool,
) {
    let mut pacer = Pacer::new(precise_timer && plan.interval.is_some());
    let mut next_due = Instant::now() + offset;
    while Instant::now() < plan.end {
        let mut conn =
            match monoio::time::timeout(plan.timeout, connect(plan.addr, plan.source)).await {
                Ok(Ok(c)) => c,
                Ok(Err(_)) => {
                    stats.borrow_mut().error(ErrorKind::Connect);
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    stats.borrow_mut().error(ErrorKind::Timeout);
                    continue;
                }
            };
        let _ = conn.set_nodelay(true);
        let mut buf = BytesMut::with_capacity(BUF_SIZE);
        loop {
            // Clock reads are a visible share of the generator's own CPU: two per request
            // (send time, completion time), the first also serving the end check and deadline.
            let (intended, sent) = match plan.interval {
                Some(every) => {
                    let due = next_due;
                    next_due += every;
                    if due >= plan.end {
                        return;
                    }
                    let mut now = Instant::now();
                    if due > now {
                        pacer.wait(due - now).await;
                        now = Instant::now();
                    }
                    let lag = now.saturating_duration_since(due).as_micros().max(1) as u64;
                    let _ = stats.borrow_mut().send_lag_us.record(lag.min(MAX_US));
                    (due, now)
                }
                None => {
                    let now = Instant::now();
                    if now >= plan.end {
                        return;
                    }
                    (now, now)
                }
            };
            let deadline = monoio::time::Instant::from_std(sent + plan.timeout);
            let outcome = monoio::time::timeout_at(deadline, exchange(&mut conn, &mut buf, &plan))
                .await
                .unwrap_or(Err(ErrorKind::Timeout));
            match outcome {
                Ok(answer) => {
                    let us = intended.elapsed().as_micros().max(1) as u64;
                    if stats.borrow_mut().answered(&answer, us) {
                        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if !answer.keep {
                        break;
                    }
                }
                Err(k) => {
                    stats.borrow_mut().error(k);
                    break;
                }
            }
        }
    }
}

/// A connection to `addr`, from `source` (any port) when given.
async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    match source {
        None => TcpStream::connect_addr(addr).await,
        Some(ip) => connect_from(ip, addr).await,
    }
}

/// monoio cannot bind a socket before connecting it, so the socket is made here: bound,
/// connected without blocking, handed to monoio, awaited writable (the connect's end),
/// then its error checked through a duplicate of the descriptor (which shares its flags).
/// io_uring's operations want a blocking socket, the legacy driver a non-blocking one.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let probe = socket.try_clone()?;
    let stream = TcpStream::from_std(socket.into())?;
    stream.writable(false).await?;
    if let Some(e) = probe.take_error()? {
        return Err(e);
    }
    if !monoio::utils::is_legacy() {
        probe.set_nonblocking(false)?;
    }
    Ok(stream)
}

/// Open-loop waits. monoio's timers tick in milliseconds, which makes a request leave about
/// 1 ms after its intended time on average; that lateness lands in every open-loop latency
/// and would hide the differences between servers. Under io_uring a timerfd per connection,
/// read through the ring, wakes the runtime to the microsecond instead; the timer wheel is
/// the fallback (legacy driver, where a timerfd read would block the thread, or any error).
pub struct Pacer {
    timerfd: Option<monoio::fs::File>,
    buf: Vec<u8>,
}

impl Pacer {
    pub fn new(precise: bool) -> Pacer {
        Pacer {
            timerfd: if precise { timerfd() } else { None },
            buf: Vec::with_capacity(8),
        }
    }

    pub async fn wait(&mut self, wait: Duration) {
        if let Some(fd) = &self.timerfd {
            if arm(fd, wait) {
                let buf = std::mem::take(&mut self.buf);
                let (res, buf) = fd.read_at(buf, 0).await;
                self.buf = buf;
                self.buf.clear();
                if res.is_ok() {
                    return;
                }
            }
            self.timerfd = None;
        }
        monoio::time::sleep(wait).await;
    }
}

/// A blocking-read CLOCK_MONOTONIC timerfd (its reads go through io_uring, never block the
/// thread).
fn timerfd() -> Option<monoio::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; the returned fd is owned by the File below.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    monoio::fs::File::from_std(file).ok()
}

/// Arms the timerfd to expire once, `wait` from now (at least 1 ns: zero would disarm it).
fn arm(fd: &monoio::fs::File, wait: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let value = libc::timespec {
        tv_sec: wait.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos().max(u32::from(wait.as_secs() == 0))),
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    // SAFETY: `spec` is a valid itimerspec; a null old-value pointer is allowed.
    unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) == 0 }
}

/// Histogram ceiling: 100 s in µs.
pub const MAX_US: u64 = 100_000_000;
/// Read buffer per connection; refilled in place, grown only for a head larger than this.
const BUF_SIZE: usize = 64 * 1024;

/// Sends the request and reads one whole response, whatever its status.
async fn exchange(
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    plan: &Plan,
) -> Result<Answer, ErrorKind> {
    if conn.write_all(plan.request).await.0.is_err() {
        return Err(ErrorKind::Write);
    }
    let head = loop {
        if let Some(head) = parse_head(buf)? {
            break head;
        }
        fill(conn, buf).await?;
    };
    buf.advance(head.len);
    let mut total = head.len;
    let bodiless =
        plan.head_request || head.status == 204 || head.status == 304 || head.status < 200;
    let keep = if bodiless {
        head.keep
    } else {
        match head.framing {
            Framing::Length(n) => {
                total += skip(conn, buf, n).await?;
                head.keep
            }
            Framing::Chunked => {
                total += skip_chunked(conn, buf).await?;
                head.keep
            }
            Framing::Close => {
                loop {
                    total += buf.len();
                    buf.clear();
                    if !fill_or_eof(conn, buf).await? {
                        break;
                    }
                }
                false
            }
        }
    };
    Ok(Answer {
        status: head.status,
        ok: (200..400).contains(&head.status),
        bytes: total,
        keep,
    })
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

struct Head {
    status: u16,
    keep: bool,
    framing: Framing,
    len: usize,
}

/// Parses a response head from the front of `buf`; Ok(None) if it is incomplete. Only the
/// three fields that decide framing and keep-alive are looked at, on raw bytes.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ErrorKind> {
    match parse_into(buf, &mut [httparse::EMPTY_HEADER; 32]) {
        Err(None) => parse_head_slow(buf),
        r => r.map_err(|e| e.unwrap_or(ErrorKind::Parse)),
    }
}

/// The same for a head with more than 32 fields (rare; allocates).
#[cold]
fn parse_head_slow(buf: &[u8]) -> Result<Option<Head>, ErrorKind> {
    parse_into(buf, &mut vec![httparse::EMPTY_HEADER; 1024])
        .map_err(|e| e.unwrap_or(ErrorKind::Parse))
}

/// `parse_head` with `fields` as httparse's field array; Err(None): the head has more
/// fields than that.
fn parse_into<'b>(
    buf: &'b [u8],
    fields: &mut [httparse::Header<'b>],
) -> Result<Option<Head>, Option<ErrorKind>> {
    let mut resp = httparse::Response::new(fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(None),
        Err(_) => return Err(Some(ErrorKind::Parse)),
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        keep: resp.version == Some(1),
        framing: Framing::Close,
        len,
    };
    for h in resp.headers.iter() {
        apply_field(&mut head, h.name.as_bytes(), h.value).map_err(Some)?;
    }
    Ok(Some(head))
}

fn apply_field(head: &mut Head, name: &[u8], value: &[u8]) -> Result<(), ErrorKind> {
    let value = value.trim_ascii();
    match name.len() {
        14 if name.eq_ignore_ascii_case(b"content-length") => {
            head.framing = Framing::Length(parse_decimal(value).ok_or(ErrorKind::Parse)?);
        }
        17 if name.eq_ignore_ascii_case(b"transfer-encoding")
            && value.eq_ignore_ascii_case(b"chunked") =>
        {
            head.framing = Framing::Chunked;
        }
        10 if name.eq_ignore_ascii_case(b"connection") => {
            if value.eq_ignore_ascii_case(b"close") {
                head.keep = false;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                head.keep = true;
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
    })
}

/// Consumes `n` body bytes, reading as needed; returns `n`.
async fn skip(conn: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Result<usize, ErrorKind> {
    let mut left = n;
    loop {
        let take = left.min(buf.len());
        buf.advance(take);
        left -= take;
        if left == 0 {
            return Ok(n);
        }
        fill(conn, buf).await?;
    }
}

async fn fill(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ErrorKind> {
    if fill_or_eof(conn, buf).await? {
        Ok(())
    } else {
        Err(ErrorKind::Read)
    }
}

/// Reads more; Ok(false) at EOF.
async fn fill_or_eof(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<bool, ErrorKind> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        // An empty buffer is rewound in place; a partial head is moved to the front.
        buf.reserve(BUF_SIZE);
    }
    let owned = std::mem::take(buf);
    let start = owned.len();
    let (res, slice) = conn.read(owned.slice_mut(start..)).await;
    *buf = slice.into_inner();
    match res {
        Ok(n) => Ok(n > 0),
        Err(_) => Err(ErrorKind::Read),
    }
}

/// The position of the first CRLF, reading until there is one.
async fn line(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, ErrorKind> {
    loop {
        if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(p);
        }
        fill(conn, buf).await?;
    }
}

/// Skips a chunked body; returns the bytes it spanned.
async fn skip_chunked(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, ErrorKind> {
    let mut total = 0;
    loop {
        let line_end = line(conn, buf).await?;
        let size_text = buf[..line_end].split(|&b| b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(size_text.trim_ascii())
            .ok()
            .and_then(|t| usize::from_str_radix(t, 16).ok())
            .ok_or(ErrorKind::Parse)?;
        buf.advance(line_end + 2);
        total += line_end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let end = line(conn, buf).await?;
                buf.advance(end + 2);
                total += end + 2;
                if end == 0 {
                    return Ok(total);
                }
            }
        }
        total += skip(conn, buf, size + 2).await?;
    }
}
