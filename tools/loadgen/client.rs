//! One load-generating connection: keep-alive HTTP/1.1 requests in closed loop (send the
//! next request when the response is in) or open loop (requests due on a fixed schedule;
//! latency measured from the *intended* send time, so a stalled server cannot hide its
//! stall by slowing the generator down — coordinated omission corrected).

use std::cell::RefCell;
use std::net::SocketAddr;
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
}

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
        }
    }
    pub fn error(&mut self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.errors[i] += 1;
        }
    }
}

/// What every connection sends and how.
pub struct Plan {
    pub addr: SocketAddr,
    /// The complete request bytes (head + body).
    pub request: Vec<u8>,
    pub head_request: bool,
    pub end: Instant,
    /// Open loop: the interval between this connection's requests.
    pub interval: Option<Duration>,
    pub timeout: Duration,
}

enum Fail {
    Kind(ErrorKind),
}

/// Runs one connection until `plan.end`, reconnecting after errors.
/// `offset` spreads the connections' open-loop schedules evenly over one interval.
pub async fn run(
    plan: Rc<Plan>,
    stats: Rc<RefCell<Stats>>,
    progress: &'static std::sync::atomic::AtomicU64,
    offset: Duration,
) {
    let mut next_due = Instant::now() + offset;
    while Instant::now() < plan.end {
        let mut conn =
            match monoio::time::timeout(plan.timeout, TcpStream::connect_addr(plan.addr)).await {
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
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            if Instant::now() >= plan.end {
                return;
            }
            let intended = match plan.interval {
                Some(every) => {
                    let due = next_due;
                    next_due += every;
                    let now = Instant::now();
                    if due > now {
                        monoio::time::sleep(due - now).await;
                    }
                    let lag = due.elapsed().as_micros().max(1) as u64;
                    let _ = stats.borrow_mut().send_lag_us.record(lag.min(100_000_000));
                    due
                }
                None => Instant::now(),
            };
            if intended >= plan.end {
                return;
            }
            match exchange(&mut conn, &mut buf, &plan).await {
                Ok((keep, n)) => {
                    let us = intended.elapsed().as_micros().max(1) as u64;
                    let mut s = stats.borrow_mut();
                    let _ = s.latency_us.record(us.min(100_000_000));
                    s.requests += 1;
                    s.bytes += n as u64;
                    progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !keep {
                        break;
                    }
                }
                Err(Fail::Kind(k)) => {
                    stats.borrow_mut().error(k);
                    break;
                }
            }
        }
    }
}

/// Sends the request and reads one response; Ok((keep_alive, response bytes)).
async fn exchange(
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    plan: &Plan,
) -> Result<(bool, usize), Fail> {
    let req = plan.request.clone();
    match monoio::time::timeout(plan.timeout, conn.write_all(req)).await {
        Ok((Ok(_), _)) => {}
        Ok((Err(_), _)) => return Err(Fail::Kind(ErrorKind::Write)),
        Err(_) => return Err(Fail::Kind(ErrorKind::Timeout)),
    }
    let deadline = Instant::now() + plan.timeout;
    let (status, keep, framing, head_len) = loop {
        if let Some(parsed) = parse_head(buf)? {
            break parsed;
        }
        fill(conn, buf, deadline).await?;
    };
    buf.advance(head_len);
    let mut total = head_len;
    let bodiless = plan.head_request || status == 204 || status == 304 || status < 200;
    let keep = if bodiless {
        keep
    } else {
        match framing {
            Framing::Length(n) => {
                let mut left = n;
                while left > 0 {
                    if buf.is_empty() {
                        fill(conn, buf, deadline).await?;
                    }
                    let take = left.min(buf.len());
                    buf.advance(take);
                    left -= take;
                    total += take;
                }
                keep
            }
            Framing::Chunked => {
                total += skip_chunked(conn, buf, deadline).await?;
                keep
            }
            Framing::Close => {
                loop {
                    total += buf.len();
                    buf.clear();
                    if !fill_or_eof(conn, buf, deadline).await? {
                        break;
                    }
                }
                false
            }
        }
    };
    if !(200..400).contains(&status) {
        return Err(Fail::Kind(ErrorKind::Status));
    }
    Ok((keep, total))
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn parse_head(buf: &[u8]) -> Result<Option<(u16, bool, Framing, usize)>, Fail> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Fail::Kind(ErrorKind::Parse)),
    };
    let status = resp.code.unwrap_or(0);
    let mut keep = resp.version == Some(1);
    let mut framing = Framing::Close;
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(v.parse().map_err(|_| Fail::Kind(ErrorKind::Parse))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && v.eq_ignore_ascii_case("chunked")
        {
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v.eq_ignore_ascii_case("close") {
                keep = false;
            } else if v.eq_ignore_ascii_case("keep-alive") {
                keep = true;
            }
        }
    }
    Ok(Some((status, keep, framing, len)))
}

async fn fill(conn: &mut TcpStream, buf: &mut BytesMut, deadline: Instant) -> Result<(), Fail> {
    if fill_or_eof(conn, buf, deadline).await? {
        Ok(())
    } else {
        Err(Fail::Kind(ErrorKind::Read))
    }
}

/// Reads more; Ok(false) at EOF.
async fn fill_or_eof(
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Result<bool, Fail> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    let owned = std::mem::take(buf);
    let start = owned.len();
    let left = deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, conn.read(owned.slice_mut(start..))).await {
        Ok((Ok(n), slice)) => {
            *buf = slice.into_inner();
            Ok(n > 0)
        }
        Ok((Err(_), _)) => Err(Fail::Kind(ErrorKind::Read)),
        Err(_) => Err(Fail::Kind(ErrorKind::Timeout)),
    }
}

/// Skips a chunked body; returns the bytes it spanned.
async fn skip_chunked(
    conn: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Result<usize, Fail> {
    let mut total = 0;
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            fill(conn, buf, deadline).await?;
        };
        let size_text =
            std::str::from_utf8(&buf[..line_end]).map_err(|_| Fail::Kind(ErrorKind::Parse))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| Fail::Kind(ErrorKind::Parse))?;
        buf.advance(line_end + 2);
        total += line_end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let end = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    fill(conn, buf, deadline).await?;
                };
                buf.advance(end + 2);
                total += end + 2;
                if end == 0 {
                    return Ok(total);
                }
            }
        }
        let mut left = size + 2;
        while left > 0 {
            if buf.is_empty() {
                fill(conn, buf, deadline).await?;
            }
            let take = left.min(buf.len());
            buf.advance(take);
            left -= take;
            total += take;
        }
    }
}
