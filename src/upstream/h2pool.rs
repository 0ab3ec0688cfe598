//! Per-worker HTTP/2 connections to upstream servers: the pool an HTTP/2 upstream's
//! requests take their streams from (`upstreams[].protocol = "h2c" | "h2" | "auto"`).
//!
//! - Streams are multiplexed on a connection up to the server's
//!   SETTINGS_MAX_CONCURRENT_STREAMS; another connection is opened when every one is full,
//!   up to `max_per_server`, and past that a lease is refused (the caller answers 503, as
//!   the breakers do).
//! - A connection takes no new stream once its driver ended (GOAWAY received and its
//!   streams done, an I/O error, the server closed), once a stream could not be started on
//!   it, or once a GOAWAY said so; it leaves the pool then, its streams in flight finishing.
//! - An idle connection is PINGed every `PING_EVERY`; one whose PONG does not come within
//!   the connect timeout is dropped, and one idle for the upstream's `keepalive_timeout` is
//!   closed.
//! - `protocol = "auto"`: a server whose TLS handshake picks `http/1.1` is remembered, and
//!   its requests go the HTTP/1.1 way (`LeaseError::Http1`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::PoolKey;
use crate::notify::LocalNotify;
use crate::tls::UpstreamTls;

/// How often an idle connection is checked (PING, idle timeout).
pub const PING_EVERY: Duration = Duration::from_secs(10);

/// One HTTP/2 connection to a server.
pub struct H2Conn {
    send: SendRequest<Bytes>,
    /// Streams leased on it and not yet given back.
    active: Cell<usize>,
    /// When its last stream ended (None while it carries one).
    idle_since: Cell<Option<Instant>>,
    /// Its driver ended, or a stream could not start on it: no new streams.
    gone: Cell<bool>,
}

impl H2Conn {
    fn has_room(&self) -> bool {
        !self.gone.get() && self.active.get() < self.send.current_max_send_streams().max(1)
    }
}

/// The right to start one stream on a pooled connection; given back when dropped.
pub struct H2Lease {
    conn: Rc<H2Conn>,
    /// A handle ready for `send_request`.
    pub send: SendRequest<Bytes>,
}

impl H2Lease {
    /// The connection turned out unusable (the stream could not start, or the server sent
    /// GOAWAY): no new stream goes on it.
    pub fn retire(&self) {
        self.conn.gone.set(true);
    }
}

impl Drop for H2Lease {
    fn drop(&mut self) {
        let left = self.conn.active.get().saturating_sub(1);
        self.conn.active.set(left);
        if left == 0 {
            self.conn.idle_since.set(Some(Instant::now()));
        }
    }
}

/// Why no stream could be had.
#[derive(Debug)]
pub enum LeaseError {
    /// Every connection is full and `max_per_server` are open.
    Full,
    /// Connecting or the HTTP/2 handshake failed or timed out.
    Connect(io::Error),
    /// `protocol = "auto"`: the server picked HTTP/1.1.
    Http1,
}

/// How a connection is opened.
#[derive(Clone, Copy)]
pub enum Dial<'a> {
    /// h2c: HTTP/2 with prior knowledge over TCP.
    Plain,
    /// TLS with ALPN `h2` (and `http/1.1` with `auto`); `host` is the server's configured
    /// host (its TLS name unless one is configured).
    Tls { tls: &'a UpstreamTls, host: &'a str },
}

/// A lease's limits.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Connections per server at most.
    pub max_per_server: usize,
    /// Connect, TLS and HTTP/2 handshakes within this; a PONG within it too.
    pub connect_timeout: Duration,
    /// An idle connection is closed after this.
    pub idle_timeout: Duration,
}

/// One server's connections.
#[derive(Default)]
struct Server {
    conns: Vec<Rc<H2Conn>>,
    /// Connections being opened: a lease that finds no room waits for them rather than
    /// opening one more.
    connecting: usize,
    /// A connection was opened (or failed to be).
    changed: Rc<LocalNotify>,
    /// `auto`: the server picked HTTP/1.1.
    http1: bool,
}

/// This worker's HTTP/2 connections, by server and connection settings.
#[derive(Default)]
pub struct H2Pool {
    servers: RefCell<HashMap<PoolKey, Server>>,
}

/// What a lease found.
enum Found {
    Room(Rc<H2Conn>),
    Open,
    Wait(Rc<LocalNotify>),
}

impl H2Pool {
    /// A stream's worth of a connection to `key`'s server: on one with room, else on a new
    /// one (opened as `dial` says, within the connect timeout).
    pub async fn lease(
        &self,
        key: PoolKey,
        dial: Dial<'_>,
        limits: Limits,
    ) -> Result<H2Lease, LeaseError> {
        loop {
            let found = {
                let mut servers = self.servers.borrow_mut();
                let server = servers.entry(key).or_default();
                if server.http1 {
                    return Err(LeaseError::Http1);
                }
                server.conns.retain(|c| !c.gone.get());
                if let Some(c) = server.conns.iter().find(|c| c.has_room()) {
                    Found::Room(c.clone())
                } else if server.connecting > 0 {
                    Found::Wait(server.changed.clone())
                } else if server.conns.len() >= limits.max_per_server.max(1) {
                    return Err(LeaseError::Full);
                } else {
                    server.connecting += 1;
                    Found::Open
                }
            };
            let conn = match found {
                Found::Room(c) => c,
                Found::Wait(changed) => {
                    changed.notified().await;
                    continue;
                }
                Found::Open => {
                    // Counted as connecting until done, also if this lease is dropped
                    // (cancelled) meanwhile: the others would wait for it forever.
                    let _connecting = Connecting { pool: self, key };
                    let c = match open(key, dial, limits).await {
                        Ok(Some(c)) => c,
                        Ok(None) => {
                            if let Some(s) = self.servers.borrow_mut().get_mut(&key) {
                                s.http1 = true;
                            }
                            return Err(LeaseError::Http1);
                        }
                        Err(e) => return Err(LeaseError::Connect(e)),
                    };
                    self.servers
                        .borrow_mut()
                        .entry(key)
                        .or_default()
                        .conns
                        .push(c.clone());
                    c
                }
            };
            conn.active.set(conn.active.get() + 1);
            conn.idle_since.set(None);
            let mut lease = H2Lease {
                send: conn.send.clone(),
                conn,
            };
            // Ready: the connection can take a stream now (or it is going away).
            match poll_fn(|cx| lease.send.poll_ready(cx)).await {
                Ok(()) => return Ok(lease),
                Err(e) => {
                    log::debug!("upstream {}: http/2 connection unusable: {e}", key.addr);
                    lease.retire();
                }
            }
        }
    }

    /// Connections open to `key`'s server (for tests and metrics).
    pub fn open_to(&self, key: PoolKey) -> usize {
        self.servers
            .borrow()
            .get(&key)
            .map_or(0, |s| s.conns.iter().filter(|c| !c.gone.get()).count())
    }
}

/// A connection being opened; when it is done (or abandoned), the others waiting for it
/// look again.
struct Connecting<'a> {
    pool: &'a H2Pool,
    key: PoolKey,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if let Some(server) = self.pool.servers.borrow_mut().get_mut(&self.key) {
            server.connecting = server.connecting.saturating_sub(1);
            server.changed.notify_all();
        }
    }
}

/// Connects to `key`'s server, runs the HTTP/2 handshake and spawns the connection's
/// driver. Ok(None): TLS ALPN picked something else than `h2`.
async fn open(key: PoolKey, dial: Dial<'_>, limits: Limits) -> io::Result<Option<Rc<H2Conn>>> {
    let addr = key.addr;
    let connect = async {
        match dial {
            Dial::Plain => {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let io = tcp.try_into_poll_io().map_err(|(e, _)| e)?;
                handshake(io, limits).await.map(Some)
            }
            Dial::Tls { tls, host } => match tls.connect_h2(addr, host).await? {
                (io, true) => handshake(io, limits).await.map(Some),
                (_, false) => Ok(None),
            },
        }
    };
    match monoio::time::timeout(limits.connect_timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// The HTTP/2 handshake on `io`; spawns the driver of the connection.
async fn handshake<T>(io: T, limits: Limits) -> io::Result<Rc<H2Conn>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let conn = Rc::new(H2Conn {
        send,
        active: Cell::new(0),
        idle_since: Cell::new(Some(Instant::now())),
        gone: Cell::new(false),
    });
    monoio::spawn(drive(connection, Rc::downgrade(&conn), limits));
    Ok(conn)
}

/// Runs a connection until it ends: its frames, and while it is idle a PING every
/// `PING_EVERY` (no PONG within the connect timeout: dropped) and the idle timeout.
async fn drive<T>(
    mut connection: h2::client::Connection<T, Bytes>,
    conn: Weak<H2Conn>,
    limits: Limits,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut ping = connection.ping_pong();
    let mut connection = std::pin::pin!(connection);
    let mut next = Instant::now() + PING_EVERY;
    // A PING is out, its PONG due by then.
    let mut pong_due: Option<Instant> = None;
    loop {
        /// What woke the driver.
        enum Woke {
            Ended,
            Pong(bool),
            Tick,
        }
        let woke = {
            let pong = async {
                match (&mut ping, pong_due) {
                    (Some(p), Some(_)) => poll_fn(|cx| p.poll_pong(cx)).await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            monoio::select! {
                r = &mut connection => {
                    if let Err(e) = r {
                        log::debug!("upstream http/2 connection ended: {e}");
                    }
                    Woke::Ended
                }
                ok = pong => Woke::Pong(ok),
                _ = monoio::time::sleep_until(next.into()) => Woke::Tick,
            }
        };
        match woke {
            Woke::Ended | Woke::Pong(false) => break,
            Woke::Pong(true) => {
                pong_due = None;
                next = Instant::now() + PING_EVERY;
            }
            Woke::Tick => {
                let Some(c) = conn.upgrade() else { break };
                if pong_due.is_some() {
                    log::warn!("upstream http/2 connection: no PONG in time; dropped");
                    break;
                }
                let now = Instant::now();
                next = now + PING_EVERY;
                match c.idle_since.get() {
                    Some(since) if now.duration_since(since) >= limits.idle_timeout => {
                        c.gone.set(true);
                        break;
                    }
                    Some(_) => {
                        if let Some(p) = &mut ping {
                            if p.send_ping(h2::Ping::opaque()).is_ok() {
                                pong_due = Some(now + limits.connect_timeout);
                                next = now + limits.connect_timeout;
                            }
                        }
                    }
                    None => {}
                }
            }
        }
    }
    if let Some(c) = conn.upgrade() {
        c.gone.set(true);
    }
}
