//! Per-worker HTTP/2 connections to upstream servers: the pool an HTTP/2 upstream's
//! requests take their streams from. Streams are multiplexed on a connection up to the
//! server's SETTINGS_MAX_CONCURRENT_STREAMS; another connection is opened when every one
//! is full, up to `max_per_server`, and past that a lease is refused (the caller answers
//! 503, as the breakers do). A connection takes no new stream once its driver ended
//! (GOAWAY received and its streams done, an I/O error, the server closed) or once a
//! stream could not be started on it; it leaves the pool then.
//!
//! Not yet wired into the request pipeline (see issue 17's plan).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::net::TcpStream;

use crate::notify::LocalNotify;

/// One HTTP/2 connection to a server.
pub struct H2Conn {
    send: SendRequest<Bytes>,
    /// Streams leased on it and not yet given back.
    active: Cell<usize>,
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
    /// The connection turned out unusable (the stream could not start): no stream goes on
    /// it any more.
    pub fn retire(&self) {
        self.conn.gone.set(true);
    }
}

impl Drop for H2Lease {
    fn drop(&mut self) {
        self.conn
            .active
            .set(self.conn.active.get().saturating_sub(1));
    }
}

/// Why no stream could be had.
#[derive(Debug)]
pub enum LeaseError {
    /// Every connection is full and `max_per_server` are open.
    Full,
    /// Connecting or the HTTP/2 handshake failed or timed out.
    Connect(io::Error),
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
}

/// This worker's HTTP/2 connections, by server.
#[derive(Default)]
pub struct H2Pool {
    servers: RefCell<HashMap<SocketAddr, Server>>,
}

/// What a lease found.
enum Found {
    Room(Rc<H2Conn>),
    Open,
    Wait(Rc<LocalNotify>),
}

impl H2Pool {
    /// A stream's worth of a connection to `addr`: on one with room, else on a new one
    /// (connected and handshaken within `connect_timeout`).
    pub async fn lease(
        &self,
        addr: SocketAddr,
        max_per_server: usize,
        connect_timeout: Duration,
    ) -> Result<H2Lease, LeaseError> {
        loop {
            let found = {
                let mut servers = self.servers.borrow_mut();
                let server = servers.entry(addr).or_default();
                server.conns.retain(|c| !c.gone.get());
                if let Some(c) = server.conns.iter().find(|c| c.has_room()) {
                    Found::Room(c.clone())
                } else if server.connecting > 0 {
                    Found::Wait(server.changed.clone())
                } else if server.conns.len() >= max_per_server.max(1) {
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
                    let _connecting = Connecting { pool: self, addr };
                    let c = open(addr, connect_timeout)
                        .await
                        .map_err(LeaseError::Connect)?;
                    self.servers
                        .borrow_mut()
                        .entry(addr)
                        .or_default()
                        .conns
                        .push(c.clone());
                    c
                }
            };
            conn.active.set(conn.active.get() + 1);
            let mut lease = H2Lease {
                send: conn.send.clone(),
                conn,
            };
            // Ready: the connection can take a stream now (or it is going away).
            match poll_fn(|cx| lease.send.poll_ready(cx)).await {
                Ok(()) => return Ok(lease),
                Err(e) => {
                    log::debug!("upstream {addr}: http/2 connection unusable: {e}");
                    lease.retire();
                }
            }
        }
    }

    /// Connections open to `addr` (for tests and metrics).
    pub fn open_to(&self, addr: SocketAddr) -> usize {
        self.servers
            .borrow()
            .get(&addr)
            .map_or(0, |s| s.conns.iter().filter(|c| !c.gone.get()).count())
    }
}

/// A connection being opened; when it is done (or abandoned), the others waiting for it
/// look again.
struct Connecting<'a> {
    pool: &'a H2Pool,
    addr: SocketAddr,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if let Some(server) = self.pool.servers.borrow_mut().get_mut(&self.addr) {
            server.connecting = server.connecting.saturating_sub(1);
            server.changed.notify_all();
        }
    }
}

/// Connects to `addr`, runs the HTTP/2 handshake (prior knowledge) and spawns the
/// connection's driver.
async fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Rc<H2Conn>> {
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let io = tcp.try_into_poll_io().map_err(|(e, _)| e)?;
        h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    };
    let (send, connection) = match monoio::time::timeout(timeout, connect).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    let conn = Rc::new(H2Conn {
        send,
        active: Cell::new(0),
        gone: Cell::new(false),
    });
    let weak: Weak<H2Conn> = Rc::downgrade(&conn);
    monoio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("upstream {addr}: http/2 connection ended: {e}");
        }
        if let Some(c) = weak.upgrade() {
            c.gone.set(true);
        }
    });
    Ok(conn)
}
