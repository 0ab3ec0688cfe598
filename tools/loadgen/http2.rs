//! `--h2`: one HTTP/2 connection and its stream slots. A keeper task holds the connection
//! up (TCP, then TLS with ALPN `h2` for `https://` or h2c with prior knowledge for
//! `http://`, then the `h2` client codec, which the keeper drives) and reconnects when it
//! ends; each of the `streams` slot tasks is a closed loop of its own (its next request
//! when its previous response is complete) or follows its own open-loop schedule, exactly
//! as an HTTP/1.1 connection does in `client::run`. Response bodies are read to the end
//! and their flow-control capacity is released as each chunk arrives.
//!
//! A slot whose connection is gone (GOAWAY, reset, I/O error) waits for the keeper's next
//! one; its open-loop schedule keeps running meanwhile, so the wait shows in the latency of
//! the requests that were due. A request's own failure is counted once, by kind; a
//! connection that ends without any request on it is counted as a read error.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::net::TcpStream;
use ringway::notify::LocalNotify;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::{Answer, ErrorKind, Pacer, Plan, Stats, MAX_US};
use crate::tls::{self, TlsError};

/// Flow-control windows we advertise. Bodies are consumed (and their capacity released) as
/// they arrive, so a window is never held for long: these only have to be large enough for
/// the server never to stall on a WINDOW_UPDATE. 16 MiB per stream and at least 64 MiB per
/// connection (16 MiB per stream slot, up to the protocol's 2^31-1) carry a 1 MiB body in
/// one round trip on every slot; h2load's defaults (`-w 30 -W 30`) are 1 GiB each.
pub const STREAM_WINDOW: u32 = 16 << 20;
pub const MIN_CONN_WINDOW: u32 = 64 << 20;

/// The first fatal error (TLS refused, ALPN without `h2`): the run stops and reports it.
pub static FATAL: Mutex<Option<String>> = Mutex::new(None);

fn fatal(msg: String) {
    if let Ok(mut f) = FATAL.lock() {
        f.get_or_insert(msg);
    }
}

pub fn fatal_error() -> Option<String> {
    FATAL.lock().ok().and_then(|f| f.clone())
}

/// What every HTTP/2 connection sends and how.
#[derive(Clone)]
pub struct H2Plan {
    /// The request head every stream sends (absolute URI: scheme and authority).
    pub request: http::Request<()>,
    /// The request body, shared by every request without a copy.
    pub body: Option<Bytes>,
    /// Concurrent streams (slots) per connection.
    pub streams: usize,
    /// Unary gRPC calls: a call succeeds only with grpc-status 0.
    pub grpc: bool,
    /// For https:// URLs.
    pub tls: Option<TlsPlan>,
}

#[derive(Clone)]
pub struct TlsPlan {
    pub config: Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// The connection as the slots see it.
#[derive(Default)]
struct Shared {
    /// The current connection's handle (None while the keeper connects).
    send: RefCell<Option<SendRequest<Bytes>>>,
    /// Incremented with every new connection.
    generation: Cell<u64>,
    /// A new connection is up, or the keeper gave up.
    changed: LocalNotify,
    /// The keeper stopped (fatal error): slots stop too.
    closed: Cell<bool>,
    /// Requests started on the current connection.
    started: Cell<u64>,
}

/// Runs one connection with `offsets.len()` stream slots until `plan.end`. `offsets`
/// spread the slots' open-loop schedules evenly over one interval.
pub async fn run(
    plan: Rc<Plan>,
    h2: Rc<H2Plan>,
    stats: Rc<RefCell<Stats>>,
    progress: &'static AtomicU64,
    offsets: Vec<Duration>,
    precise_timer: bool,
) {
    let shared = Rc::new(Shared::default());
    // Detached: at the end it finishes the connection (GOAWAY) once the slots let go of it,
    // or goes with the runtime.
    drop(monoio::spawn(keep_connected(
        plan.clone(),
        h2.clone(),
        shared.clone(),
        stats.clone(),
    )));
    let slots: Vec<_> = offsets
        .into_iter()
        .map(|offset| {
            monoio::spawn(slot(
                plan.clone(),
                h2.clone(),
                shared.clone(),
                stats.clone(),
                progress,
                offset,
                precise_timer,
            ))
        })
        .collect();
    for s in slots {
        s.await;
    }
    shared.closed.set(true);
    shared.send.borrow_mut().take();
    shared.changed.notify_all();
}

/// The h2 client settings.
fn builder(streams: usize) -> h2::client::Builder {
    let conn_window = (u64::from(STREAM_WINDOW) * streams as u64)
        .clamp(u64::from(MIN_CONN_WINDOW), (1 << 31) - 1) as u32;
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(conn_window)
        .initial_max_send_streams(streams)
        .enable_push(false);
    b
}

/// Connects, serves the connection until it ends, and again, until the run is over.
async fn keep_connected(
    plan: Rc<Plan>,
    h2: Rc<H2Plan>,
    shared: Rc<Shared>,
    stats: Rc<RefCell<Stats>>,
) {
    let pause = || monoio::time::sleep(Duration::from_millis(10));
    while !shared.closed.get() && Instant::now() < plan.end {
        let tcp =
            match monoio::time::timeout(plan.timeout, TcpStream::connect_addr(plan.addr)).await {
                Ok(Ok(c)) => c,
                Ok(Err(_)) => {
                    stats.borrow_mut().error(ErrorKind::Connect);
                    pause().await;
                    continue;
                }
                Err(_) => {
                    stats.borrow_mut().error(ErrorKind::Timeout);
                    continue;
                }
            };
        let _ = tcp.set_nodelay(true);
        let io = match tcp.try_into_poll_io() {
            Ok(io) => io,
            Err(_) => {
                stats.borrow_mut().error(ErrorKind::Connect);
                pause().await;
                continue;
            }
        };
        let ok = match &h2.tls {
            None => serve(io, &plan, &h2, &shared, &stats).await,
            Some(t) => {
                let handshake = tls::connect(io, t.config.clone(), t.name.clone());
                match monoio::time::timeout(plan.timeout, handshake).await {
                    Ok(Ok(session)) => serve(session, &plan, &h2, &shared, &stats).await,
                    Ok(Err(TlsError::Io)) => {
                        stats.borrow_mut().error(ErrorKind::Connect);
                        false
                    }
                    Ok(Err(TlsError::Fatal(msg))) => {
                        fatal(format!("{}: {msg}", plan.addr));
                        shared.closed.set(true);
                        shared.changed.notify_all();
                        return;
                    }
                    Err(_) => {
                        stats.borrow_mut().error(ErrorKind::Timeout);
                        continue;
                    }
                }
            }
        };
        if !ok {
            pause().await;
        }
    }
}

/// The HTTP/2 handshake on `io`, then drives the connection until it ends. False when it
/// failed without carrying a request (the keeper pauses before the next one).
async fn serve<T>(io: T, plan: &Plan, h2: &H2Plan, shared: &Shared, stats: &RefCell<Stats>) -> bool
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let handshake = builder(h2.streams).handshake::<_, Bytes>(io);
    let (send, connection) = match monoio::time::timeout(plan.timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) => {
            stats.borrow_mut().error(ErrorKind::Connect);
            return false;
        }
        Err(_) => {
            stats.borrow_mut().error(ErrorKind::Timeout);
            return false;
        }
    };
    shared.started.set(0);
    *shared.send.borrow_mut() = Some(send);
    shared.generation.set(shared.generation.get() + 1);
    shared.changed.notify_all();
    let result = connection.await;
    shared.send.borrow_mut().take();
    let carried = shared.started.get() > 0;
    if !carried && result.is_err() {
        // Nothing else counts it: no request saw it fail.
        stats.borrow_mut().error(ErrorKind::Read);
    }
    carried
}

/// A slot's handle on the current connection.
struct Conn {
    send: Option<SendRequest<Bytes>>,
    /// The generation of `send`, or of the connection last found dead.
    generation: u64,
}

impl Conn {
    /// A handle ready for a new stream, waiting for the keeper's next connection while
    /// there is none; None when the run is over.
    async fn ready(&mut self, shared: &Shared, end: Instant) -> Option<&mut SendRequest<Bytes>> {
        let end = monoio::time::Instant::from_std(end);
        loop {
            if self.send.is_none() || self.generation != shared.generation.get() {
                self.send = None;
                loop {
                    if shared.closed.get() {
                        return None;
                    }
                    if shared.generation.get() != self.generation {
                        if let Some(s) = shared.send.borrow().as_ref() {
                            self.send = Some(s.clone());
                            self.generation = shared.generation.get();
                            break;
                        }
                    }
                    let changed = shared.changed.notified();
                    monoio::time::timeout_at(end, changed).await.ok()?;
                }
            }
            let send = self.send.as_mut()?;
            let ready = monoio::time::timeout_at(end, poll_fn(|cx| send.poll_ready(cx))).await;
            match ready {
                Ok(Ok(())) => break,
                // The connection is gone (or going): wait for the next.
                Ok(Err(_)) => self.send = None,
                Err(_) => return None,
            }
        }
        self.send.as_mut()
    }
}

/// One stream slot: requests one after another until `plan.end`.
async fn slot(
    plan: Rc<Plan>,
    h2: Rc<H2Plan>,
    shared: Rc<Shared>,
    stats: Rc<RefCell<Stats>>,
    progress: &'static AtomicU64,
    offset: Duration,
    precise_timer: bool,
) {
    let mut pacer = Pacer::new(precise_timer && plan.interval.is_some());
    let mut next_due = Instant::now() + offset;
    let mut conn = Conn {
        send: None,
        generation: 0,
    };
    loop {
        // Open loop: wait for the due time first; the schedule moves on only once the
        // request goes out (a wait for a connection is the generator's lateness, in the
        // latency like any other).
        if plan.interval.is_some() {
            if next_due >= plan.end {
                return;
            }
            let now = Instant::now();
            if next_due > now {
                pacer.wait(next_due - now).await;
            }
        }
        let Some(send) = conn.ready(&shared, plan.end).await else {
            return;
        };
        let now = Instant::now();
        let intended = match plan.interval {
            Some(every) => {
                let due = next_due;
                next_due += every;
                let lag = now.saturating_duration_since(due).as_micros().max(1) as u64;
                let _ = stats.borrow_mut().send_lag_us.record(lag.min(MAX_US));
                due
            }
            None => {
                if now >= plan.end {
                    return;
                }
                now
            }
        };
        shared.started.set(shared.started.get() + 1);
        let deadline = monoio::time::Instant::from_std(now + plan.timeout);
        let outcome = monoio::time::timeout_at(deadline, exchange(send, &h2))
            .await
            .unwrap_or(Err(ErrorKind::Timeout));
        match outcome {
            Ok(answer) => {
                let us = intended.elapsed().as_micros().max(1) as u64;
                if stats.borrow_mut().answered(&answer, us) {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A timed-out stream is reset (its handles dropped); the connection stays.
            Err(k) => stats.borrow_mut().error(k),
        }
    }
}

/// Sends the request and reads its whole response, whatever its status.
async fn exchange(send: &mut SendRequest<Bytes>, h2: &H2Plan) -> Result<Answer, ErrorKind> {
    let (response, mut body_out) = send
        .send_request(h2.request.clone(), h2.body.is_none())
        .map_err(|_| ErrorKind::Write)?;
    if let Some(body) = &h2.body {
        body_out
            .send_data(body.clone(), true)
            .map_err(|_| ErrorKind::Write)?;
    }
    let response = response.await.map_err(kind)?;
    let status = response.status().as_u16();
    // A trailers-only gRPC answer has its status in the head.
    let mut grpc_ok = response
        .headers()
        .get("grpc-status")
        .map(|v| v.as_bytes() == b"0");
    let mut body = response.into_body();
    let mut n = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(kind)?;
        n += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    if !body.is_end_stream() {
        if let Some(trailers) = body.trailers().await.map_err(kind)? {
            if let Some(v) = trailers.get("grpc-status") {
                grpc_ok = Some(v.as_bytes() == b"0");
            }
        }
    }
    Ok(Answer {
        status,
        ok: (200..400).contains(&status) && (!h2.grpc || grpc_ok == Some(true)),
        bytes: n,
        keep: true,
    })
}

/// A protocol error h2 itself found in what the server sent is a parse error; a reset,
/// GOAWAY or I/O failure a read error.
fn kind(e: h2::Error) -> ErrorKind {
    if e.is_library() {
        ErrorKind::Parse
    } else {
        ErrorKind::Read
    }
}

/// `host` of an authority ("host:port", "[v6]:port") as a TLS server name.
pub fn server_name(authority: &str) -> anyhow::Result<rustls::pki_types::ServerName<'static>> {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| anyhow::anyhow!("{host:?} is not a valid TLS server name"))
}
