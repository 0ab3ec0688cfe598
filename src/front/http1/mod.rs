//! The HTTP/1.1 front end: one task per client connection reads request heads off the
//! socket (strictly, within `timeouts.header`), hands each to the request's life
//! (`pipeline::serve`), and decides what the connection does next: keep-alive (waiting
//! within `timeouts.idle`, giving its buffers back after a second idle), pipelining (the
//! next head may already be buffered), or close. Its `Front` implementation gives the
//! pipeline the request body (`body`), the response writer (`sink`), `Expect:
//! 100-continue`, and upgrade tunnels (`tunnel`).
//!
//! Invariants: nothing after a request that ends the connection is parsed; a client that
//! stopped reading is closed with a reset; over the memory threshold, heads still arriving
//! are dropped unanswered.

mod body;
mod sink;
mod tunnel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use monoio::io::Splitable;

use super::SHRINK_AFTER;
use crate::compiled::Compiled;
use crate::http::canned;
use crate::http::{parse_request, BodyFraming, RequestHead};
use crate::io::{read_some_until, Connector, IoFail, Stream, UpConn};
use crate::pipeline::{
    self, Client, ClientFault, ConnMeta, Front, Next, Request, ResponseSink, Shared, Tunnel,
};

pub use body::ClientIn;
pub use sink::ClientOut;

/// Spare room kept for each client read.
const CLIENT_READ: usize = 16 * 1024;
/// Read buffer of a connection that has been idle past `SHRINK_AFTER`: just enough to learn
/// that the next request has begun (the head is then read into a full-size buffer). Ten
/// thousand idle connections then hold almost nothing in user space.
const IDLE_READ: usize = 32;

/// Serves one client connection until it closes.
pub async fn serve<S, C>(
    shared: Rc<Shared<C>>,
    client: S,
    peer: SocketAddr,
    accepted: Instant,
    meta: ConnMeta,
) where
    S: Stream,
    C: Connector,
{
    let first = BytesMut::with_capacity(CLIENT_READ);
    serve_read(shared, client, first, peer, accepted, meta).await
}

/// `serve` for a connection whose first bytes were already read into `first` (by a
/// listener that looked for the HTTP/2 preface).
pub async fn serve_read<S, C>(
    shared: Rc<Shared<C>>,
    client: S,
    first: BytesMut,
    peer: SocketAddr,
    accepted: Instant,
    meta: ConnMeta,
) where
    S: Stream,
    C: Connector,
{
    let fd = client.raw_fd();
    let (r, w) = client.into_split();
    let mut conn = Conn {
        shared,
        client: Client { peer, meta },
        front: Http1 {
            cin: ClientIn::new(r, first),
            out: ClientOut::new(w, BytesMut::with_capacity(4096)),
            peer,
        },
        req: Request::default(),
    };
    conn.run(accepted).await;
    if let (true, Some(fd)) = (conn.front.out.abandoned, fd) {
        // What the kernel still queues for a client that stopped reading (up to its send
        // buffer) is not trickled out to it for as long as it keeps the connection open:
        // the close aborts the connection (nginx's reset_timedout_connection).
        let _ = crate::sys::reset_on_close(fd);
    }
}

/// An HTTP/1.1 client connection's two halves, as the pipeline's `Front`.
pub struct Http1<S: Stream> {
    cin: ClientIn<S>,
    out: ClientOut<S>,
    peer: SocketAddr,
}

impl<S: Stream> Front for Http1<S> {
    type Body = ClientIn<S>;
    type Sink = ClientOut<S>;

    async fn forwarding(&mut self, head: &RequestHead, write: Duration) -> Result<(), IoFail> {
        // `Expect: 100-continue` is answered once ringway is ready for the body, unless the
        // client sent some already.
        if head.expect_continue && head.framing != BodyFraming::None && self.cin.buf.is_empty() {
            self.out.buf.clear();
            self.out.buf.put_slice(canned::CONTINUE_100);
            return self.out.flush(write).await;
        }
        Ok(())
    }

    fn body(&mut self) -> &mut ClientIn<S> {
        &mut self.cin
    }

    fn sink(&mut self) -> &mut ClientOut<S> {
        &mut self.out
    }

    fn split(&mut self) -> (&mut ClientIn<S>, &mut ClientOut<S>) {
        (&mut self.cin, &mut self.out)
    }

    async fn tunnel<U: Stream>(&mut self, conn: &mut UpConn<U>, t: Tunnel<'_>) -> Next {
        self.run_tunnel(conn, t).await
    }
}

enum Wait {
    Data,
    Timeout,
    Closed,
}

/// How a wait for the next request ended.
enum Waited {
    Data,
    /// Idle past `SHRINK_AFTER`, buffers given back; the idle timeout ends at this instant.
    Idle(Instant),
    Gone,
}

enum HeadRead {
    Ok,
    Closed,
    Reject(ClientFault),
}

/// One HTTP/1.1 client connection.
struct Conn<S: Stream, C: Connector> {
    shared: Rc<Shared<C>>,
    client: Client,
    front: Http1<S>,
    /// The current request's state, reused request after request.
    req: Request,
}

impl<S, C> Conn<S, C>
where
    S: Stream,
    C: Connector,
{
    async fn run(&mut self, accepted: Instant) {
        let mut start = accepted;
        loop {
            // Boxed: the request pipeline's future is several KiB, and would otherwise be
            // part of every connection's task for its whole life. A connection that went
            // idle (below) keeps none of it; a busy one allocates it once.
            let Some(deadline) = Box::pin(self.busy(start, accepted)).await else {
                return;
            };
            if !matches!(self.wait_read(deadline, IDLE_READ).await, Wait::Data) {
                return;
            }
            start = Instant::now();
        }
    }

    /// Serves requests, the first one's bytes at hand from `start`, until the connection
    /// ends (None) or has waited `SHRINK_AFTER` for its next request: it then has given its
    /// large buffers back, and waits on (Some(idle deadline)) outside.
    async fn busy(&mut self, mut start: Instant, accepted: Instant) -> Option<Instant> {
        loop {
            let cfg = self.shared.config();
            let deadline = start + cfg.timeouts.header;
            let read = self.read_head(&cfg, deadline).await;
            // The config is taken again once the head is in: a reload applied while this
            // connection waited for it (idle, or a slow head) applies to this request.
            let cfg = self.shared.config();
            let (shared, client, req, front) =
                (&self.shared, &self.client, &mut self.req, &mut self.front);
            let head = match read {
                HeadRead::Ok => Ok(()),
                HeadRead::Closed => return None,
                HeadRead::Reject(fault) => Err(fault),
            };
            let max_age = cfg.timeouts.max_connection_age;
            if !max_age.is_zero() && accepted.elapsed() >= max_age {
                // Old enough: this response closes the connection, so every connection
                // converges on the current config and binary.
                req.head.keep_alive = false;
            }
            // An unparsed head is answered as HTTP/1.1 (and closes the connection).
            front.out.version = match head {
                Ok(()) => req.head.version,
                Err(_) => crate::http::Version::Http11,
            };
            let next = pipeline::serve(shared, &cfg, client, req, front, start, head).await;
            if next == Next::Close {
                return None;
            }
            drop(cfg);
            if self.front.cin.buf.is_empty() {
                let idle = self.shared.config.borrow().timeouts.idle;
                match self.wait_for_bytes(idle).await {
                    Waited::Data => {}
                    Waited::Gone => return None,
                    Waited::Idle(deadline) => return Some(deadline),
                }
            }
            // When the request began: its first bytes (the accept for the first one).
            start = Instant::now();
        }
    }

    /// Waits for the next request's first bytes. A connection still idle after
    /// `SHRINK_AFTER` gives its large buffers back and is `Idle` (its wait goes on outside
    /// the request pipeline's future), so many idle keep-alive connections cost little
    /// memory while busy ones never reallocate. `Gone` on idle timeout, EOF or drain.
    async fn wait_for_bytes(&mut self, idle: Duration) -> Waited {
        if self.shared.keepalive_off() {
            return Waited::Gone;
        }
        let deadline = Instant::now() + idle;
        if !S::READ_CANCEL_SAFE {
            return match self.wait_read(deadline, CLIENT_READ).await {
                Wait::Data => Waited::Data,
                _ => Waited::Gone,
            };
        }
        let first = (Instant::now() + SHRINK_AFTER).min(deadline);
        match self.wait_read(first, CLIENT_READ).await {
            Wait::Data => Waited::Data,
            Wait::Closed => Waited::Gone,
            Wait::Timeout if first >= deadline => Waited::Gone,
            Wait::Timeout => {
                self.shrink();
                Waited::Idle(deadline)
            }
        }
    }

    async fn wait_read(&mut self, deadline: Instant, spare: usize) -> Wait {
        let shared = self.shared.clone();
        let cin = &mut self.front.cin;
        let buf = std::mem::take(&mut cin.buf);
        monoio::select! {
            r = read_some_until(&mut cin.r, buf, spare, deadline) => match r {
                Ok((n, buf)) => {
                    cin.buf = buf;
                    if n > 0 { Wait::Data } else { Wait::Closed }
                }
                Err(IoFail::Timeout) => Wait::Timeout,
                Err(_) => Wait::Closed,
            },
            _ = shared.idle_wake.notified() => Wait::Closed,
        }
    }

    /// Drops every per-request buffer (the read buffer was empty: the connection is idle).
    fn shrink(&mut self) {
        self.shared.note_shrunk();
        self.front.cin.buf = BytesMut::with_capacity(IDLE_READ);
        self.front.out.buf = BytesMut::new();
        self.req.shrink();
    }

    async fn read_head(&mut self, cfg: &Compiled, deadline: Instant) -> HeadRead {
        let cin = &mut self.front.cin;
        loop {
            match parse_request(&mut cin.buf, &cfg.limits, &mut self.req.head) {
                Ok(true) => return HeadRead::Ok,
                Ok(false) => {}
                Err(e) => {
                    log::debug!("client {}: {e}", self.client.peer);
                    return HeadRead::Reject(ClientFault::Head(e));
                }
            }
            let had_bytes = !cin.buf.is_empty();
            if self.shared.is_overloaded() {
                // Over the memory threshold a head still arriving is not waited for, and
                // not answered either: writing an answer would touch the connection's
                // untouched response buffer, a page each, across a whole flood.
                crate::metrics::bump(&self.shared.metrics.shed);
                return HeadRead::Closed;
            }
            let buf = std::mem::take(&mut cin.buf);
            let shared = self.shared.clone();
            let read = monoio::select! {
                r = read_some_until(&mut cin.r, buf, CLIENT_READ, deadline) => r,
                // Over the memory threshold, likewise (a slowloris flood must not hold
                // memory): the read and its bytes are dropped, the connection closed.
                _ = shared.shed.notified() => {
                    crate::metrics::bump(&shared.metrics.shed);
                    return HeadRead::Closed;
                }
            };
            match read {
                Ok((0, buf)) => {
                    cin.buf = buf;
                    return HeadRead::Closed;
                }
                Ok((_, buf)) => cin.buf = buf,
                Err(IoFail::Timeout) if had_bytes => {
                    return HeadRead::Reject(ClientFault::HeadTimeout)
                }
                Err(_) => return HeadRead::Closed,
            }
        }
    }
}
