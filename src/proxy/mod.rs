//! The per-request pipeline. A client connection runs `read head -> route -> admit ->
//! connect -> send request -> read response head -> relay response -> keep-alive`, each a
//! small method that either goes on or answers now. All state is per core (`Shared` lives
//! in one worker); nothing here locks or touches atomics.
//!
//! Invariants: a request is answered exactly once; once response bytes reached the client,
//! a failure aborts the connection instead of answering again; an upstream connection goes
//! back to the pool only after a complete, correctly framed response with no stray bytes;
//! a request with a body is never retried.

mod access;
pub mod forward;
mod relay;
mod reply;
mod request_body;
mod response;
mod tunnel;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::{OwnedReadHalf, OwnedWriteHalf, Splitable};

use crate::accesslog::RequestLog;
use crate::compiled::{Action, Compiled};
use crate::http::{parse_request, BodyFraming, RequestHead, ResponseHead};
use crate::notify::LocalNotify;
use crate::policy::{Denial, Grant, PolicyState};

use crate::io::{bufs, read_some_until, splice, write_all_within, Connector, IoFail, Stream};
use crate::upstream::pool::Pool;

/// Spare room kept for each client read.
const CLIENT_READ: usize = 16 * 1024;
/// Spare room kept for each upstream read while relaying bodies.
const UPSTREAM_READ: usize = 64 * 1024;
/// A keep-alive connection idle this long gives its large buffers back.
const SHRINK_AFTER: Duration = Duration::from_secs(1);
/// Read buffer of a connection that has been idle past `SHRINK_AFTER`: just enough to learn
/// that the next request has begun (the head is then read into a full-size buffer). Ten
/// thousand idle connections then hold almost nothing in user space.
const IDLE_READ: usize = 32;
/// Interim (1xx) responses tolerated before the final one.
const MAX_INTERIM: usize = 8;

/// Per-worker state shared by all of its connections.
pub struct Shared<C: Connector> {
    config: RefCell<Rc<Compiled>>,
    pub connector: C,
    pub pool: Pool<C::Conn>,
    /// Idle TLS upstream connections.
    pub tls_pool: Pool<crate::tls::UpTlsStream>,
    /// Empty pipes for spliced bodies.
    pub pipes: splice::Pipes,
    /// Large body buffers, shared by the connections in turn.
    bufs: bufs::BodyBufs,
    in_flight: Cell<usize>,
    max_in_flight: usize,
    draining: Cell<bool>,
    drain: LocalNotify,
    /// Set by the overload manager's thread while the process is over its memory
    /// threshold: new connections, new requests and heads still arriving are shed. A
    /// relaxed load on the request path; written only on transitions, so never contended.
    overload: Arc<AtomicBool>,
    /// Wakes the connections waiting between requests (drain, overload) so they close.
    idle_wake: LocalNotify,
    /// Wakes the connections waiting for the rest of a head (overload) so they close.
    shed: LocalNotify,
    /// Balancers, health, ejections, breakers and the retry budget of this worker.
    pub lb: Rc<crate::upstream::State>,
    next_id: Cell<u64>,
    id_salt: u64,
    /// Connections that gave their buffers back since `release_idle_memory` last looked.
    shrunk: Cell<usize>,
    /// This worker's counters (summed with the others' at scrape time).
    pub metrics: crate::metrics::Metrics,
    /// The policy's caches and rate limiter.
    policy: RefCell<PolicyState>,
    /// Origin of the monotonic clock the rate limiter reads.
    epoch: Instant,
    /// This worker's access log buffer (None: no access log).
    access_log: Option<crate::accesslog::CoreLog>,
    /// Random bits for trace and span ids.
    rng: crate::trace::Rng,
}

impl<C: Connector> Shared<C> {
    /// `max_in_flight` is this worker's share of the process limit; `worker` is its index.
    pub fn new(
        config: Rc<Compiled>,
        connector: C,
        max_in_flight: usize,
        worker: usize,
        id_salt: u64,
    ) -> Self {
        Shared {
            policy: RefCell::new(config.policy.new_state()),
            epoch: Instant::now(),
            config: RefCell::new(config),
            connector,
            pool: Pool::default(),
            tls_pool: Pool::default(),
            pipes: splice::Pipes::default(),
            bufs: bufs::BodyBufs::default(),
            in_flight: Cell::new(0),
            max_in_flight: max_in_flight.max(1),
            draining: Cell::new(false),
            drain: LocalNotify::default(),
            overload: Arc::default(),
            idle_wake: LocalNotify::default(),
            shed: LocalNotify::default(),
            lb: Rc::new(crate::upstream::State::new(worker)),
            next_id: Cell::new(0),
            id_salt,
            shrunk: Cell::new(0),
            metrics: crate::metrics::Metrics::default(),
            access_log: None,
            rng: crate::trace::Rng::new(id_salt.rotate_left(17) ^ 0x2545_F491_4F6C_DD1D),
        }
    }

    pub fn config(&self) -> Rc<Compiled> {
        self.config.borrow().clone()
    }

    /// Switches to a reloaded config. Requests in flight keep the `Rc` they took; the
    /// policy's caches and rate-limit state start afresh with the new rules.
    pub fn set_config(&self, config: Rc<Compiled>) {
        let old = self.config();
        self.metrics
            .retire(&|r, proxied| old.metric_names(r, proxied));
        *self.policy.borrow_mut() = config.policy.new_state();
        *self.config.borrow_mut() = config;
    }

    /// Off the request path, once a second: if connections went idle and gave their
    /// buffers back since the last call, drops the pooled body buffers too and hands the
    /// freed pages to the OS (an idle worker's allocator would otherwise keep them).
    pub fn release_idle_memory(&self) {
        if self.shrunk.replace(0) > 0 || self.is_overloaded() {
            self.bufs.clear();
            crate::sys::release_free_memory();
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Stop keeping connections alive; wakes idle connections so they close now.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.pool.clear();
        self.tls_pool.clear();
        self.drain.notify_all();
        self.idle_wake.notify_all();
    }

    /// Follow this process-wide overload flag (the overload manager's).
    pub fn with_overload(mut self, flag: Arc<AtomicBool>) -> Self {
        self.overload = flag;
        self
    }

    pub fn is_overloaded(&self) -> bool {
        self.overload.load(Ordering::Relaxed)
    }

    /// The overload manager's word that the process went over its memory threshold (the
    /// flag is up already): connections waiting between requests, heads still arriving
    /// and request bodies still arriving are closed now, unanswered (an answer would cost
    /// memory), and this worker's spare buffers and free pages go back to the OS (again
    /// each second while it lasts: see `release_idle_memory`).
    pub fn shed_now(&self) {
        self.idle_wake.notify_all();
        self.shed.notify_all();
        self.bufs.clear();
        crate::sys::release_free_memory();
    }

    /// Responses close their connections (draining or overloaded).
    pub fn keepalive_off(&self) -> bool {
        self.closing().get()
    }

    /// What `keepalive_off` reads, to be read later (when a response head is written).
    fn closing(&self) -> Closing<'_> {
        Closing {
            draining: &self.draining,
            overload: &self.overload,
        }
    }

    /// Resolves at the next `start_drain`.
    pub fn drain_notified(&self) -> crate::notify::Notified<'_> {
        self.drain.notified()
    }

    /// Runs the policy for one request (no I/O; the clock reads are vDSO calls).
    fn check_policy(
        &self,
        cfg: &Compiled,
        head: &RequestHead,
        route: Option<&crate::compiled::Route>,
        peer: std::net::IpAddr,
        cert: Option<&Rc<crate::policy::identity::Identity>>,
    ) -> Result<Grant, Denial> {
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut st = self.policy.borrow_mut();
        cfg.policy.check(
            &mut st,
            head,
            route.map(|r| r.index),
            peer,
            cert,
            now_ns,
            now_unix,
        )
    }

    fn request_id(&self) -> u64 {
        let n = self.next_id.get().wrapping_add(1);
        self.next_id.set(n);
        // A bijective mix so ids look unrelated while staying unique per worker.
        (n ^ self.id_salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.id_salt.rotate_left(32)
    }
}

/// Whether responses close their connections now: the worker is draining or the process
/// is overloaded.
#[derive(Clone, Copy)]
struct Closing<'a> {
    draining: &'a Cell<bool>,
    overload: &'a AtomicBool,
}

impl Closing<'_> {
    fn get(&self) -> bool {
        self.draining.get() || self.overload.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight until dropped.
struct InFlight<C: Connector>(Rc<Shared<C>>);

impl<C: Connector> Drop for InFlight<C> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

enum Wait {
    Data,
    Timeout,
    Closed,
}

enum HeadRead {
    Ok,
    Closed,
    Reject(u16),
}

/// What the accept path learned about a client connection.
#[derive(Default)]
pub struct ConnMeta {
    /// The connection is TLS (X-Forwarded-Proto: https).
    pub tls: bool,
    /// The identity of the client certificate verified in the handshake (mTLS).
    pub cert: Option<Rc<crate::policy::identity::Identity>>,
    /// Answer every request with a redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
}

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
    let fd = client.raw_fd();
    let (r, w) = client.into_split();
    let mut conn = ClientConn {
        shared,
        cin: ClientIn {
            r,
            buf: BytesMut::with_capacity(CLIENT_READ),
        },
        cout: ClientOut {
            w,
            buf: BytesMut::with_capacity(4096),
            log: RequestLog::default(),
            abandoned: false,
        },
        peer,
        hsts: None,
        ubuf: BytesMut::new(),
        obuf: BytesMut::with_capacity(4096),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        path: Vec::new(),
        grant: Grant::default(),
        body_limit: 0,
        meta,
    };
    conn.run(accepted).await;
    if let (true, Some(fd)) = (conn.cout.abandoned, fd) {
        // What the kernel still queues for a client that stopped reading (up to its send
        // buffer) is not trickled out to it for as long as it keeps the connection open:
        // the close aborts the connection (nginx's reset_timedout_connection).
        let _ = crate::sys::reset_on_close(fd);
    }
}

/// The client's read half and the bytes received from it but not yet consumed (which may
/// hold pipelined requests).
struct ClientIn<S: Stream> {
    r: OwnedReadHalf<S>,
    buf: BytesMut,
}

/// The client's write half and the bytes being prepared for it.
struct ClientOut<S: Stream> {
    w: OwnedWriteHalf<S>,
    buf: BytesMut,
    /// The current request's access log record (it counts the bytes written here).
    log: RequestLog,
    /// A write to the client timed out or failed: the connection ends with a reset.
    abandoned: bool,
}

impl<S: Stream> ClientOut<S> {
    /// Writes `self.buf` to the client within `timeout`, leaving it empty.
    async fn flush(&mut self, timeout: Duration) -> Result<(), IoFail> {
        let mut buf = std::mem::take(&mut self.buf);
        let sent = self.send(&mut buf, timeout).await;
        self.buf = buf;
        sent
    }

    /// Writes all of `buf` to the client within `timeout` and counts it, leaving `buf`
    /// empty with its capacity. A write that fails or times out abandons the connection
    /// (it ends with a reset; see `serve`).
    async fn send(&mut self, buf: &mut BytesMut, timeout: Duration) -> Result<(), IoFail> {
        let n = buf.len() as u64;
        let mut b = write_all_within(&mut self.w, std::mem::take(buf), timeout)
            .await
            .inspect_err(|_| self.abandoned = true)?;
        self.log.bytes_out += n;
        b.clear();
        *buf = b;
        Ok(())
    }
}

struct ClientConn<S: Stream, C: Connector> {
    shared: Rc<Shared<C>>,
    cin: ClientIn<S>,
    cout: ClientOut<S>,
    peer: SocketAddr,
    /// The current request's `Strict-Transport-Security` value (its route's, on TLS only).
    hsts: Option<Bytes>,
    /// Upstream bytes received and not yet consumed.
    ubuf: BytesMut,
    /// Bytes being prepared for the upstream.
    obuf: BytesMut,
    head: RequestHead,
    resp: ResponseHead,
    /// The path to forward (normalised, rewritten).
    path: Vec<u8>,
    /// The policy's decision for the current request.
    grant: Grant,
    /// The current request's body limit (0 = unlimited).
    body_limit: u64,
    meta: ConnMeta,
}

impl<S, C> ClientConn<S, C>
where
    S: Stream,
    C: Connector,
{
    async fn run(&mut self, accepted: Instant) {
        let mut first = true;
        loop {
            // When the request began: the accept for the first one, its first bytes after.
            let start = if first {
                accepted
            } else {
                let idle = self.shared.config.borrow().timeouts.idle;
                if self.cin.buf.is_empty() && !self.wait_for_bytes(idle).await {
                    return;
                }
                Instant::now()
            };
            let cfg = self.shared.config();
            let deadline = start + cfg.timeouts.header;
            first = false;
            let read = self.read_head(&cfg, deadline).await;
            // The config is taken again once the head is in: a reload applied while this
            // connection waited for it (idle, or a slow head) applies to this request.
            let cfg = self.shared.config();
            match read {
                HeadRead::Ok => self.begin_log(start, true),
                HeadRead::Closed => return,
                HeadRead::Reject(status) => {
                    // The head did not parse: `self.head` may hold the previous request, so
                    // nothing of it is consulted.
                    self.head.keep_alive = false;
                    self.head.method = Default::default();
                    self.hsts = None;
                    self.begin_log(start, false);
                    self.reply(&cfg, status, true).await;
                    self.end_log(&cfg);
                    return;
                }
            }
            let max_age = cfg.timeouts.max_connection_age;
            if !max_age.is_zero() && accepted.elapsed() >= max_age {
                // Old enough: this response closes the connection, so every connection
                // converges on the current config and binary.
                self.head.keep_alive = false;
            }
            let next = self.handle(&cfg).await;
            self.count(start);
            self.end_log(&cfg);
            if next == Next::Close {
                return;
            }
        }
    }

    /// Adds the request just answered to this worker's metrics (from the same record the
    /// access log writes).
    fn count(&self, started: Instant) {
        let log = &self.cout.log;
        let m = &self.shared.metrics;
        m.request(
            log.route,
            log.upstream.is_some(),
            log.final_status(),
            log.end_or_now().saturating_duration_since(started),
        );
        crate::metrics::Metrics::add(&m.bytes_in, log.bytes_in);
        crate::metrics::Metrics::add(&m.bytes_out, log.bytes_out);
    }

    /// Waits for the next request's first bytes; false on idle timeout, EOF or drain.
    /// A connection still idle after `SHRINK_AFTER` gives its large buffers back first, so
    /// many idle keep-alive connections cost little memory while busy ones never reallocate.
    async fn wait_for_bytes(&mut self, idle: Duration) -> bool {
        if self.shared.keepalive_off() {
            return false;
        }
        let deadline = Instant::now() + idle;
        if !S::READ_CANCEL_SAFE {
            return matches!(self.wait_read(deadline, CLIENT_READ).await, Wait::Data);
        }
        let first = (Instant::now() + SHRINK_AFTER).min(deadline);
        match self.wait_read(first, CLIENT_READ).await {
            Wait::Data => return true,
            Wait::Closed => return false,
            Wait::Timeout if first >= deadline => return false,
            Wait::Timeout => {}
        }
        self.shrink();
        matches!(self.wait_read(deadline, IDLE_READ).await, Wait::Data)
    }

    async fn wait_read(&mut self, deadline: Instant, spare: usize) -> Wait {
        let shared = self.shared.clone();
        let buf = std::mem::take(&mut self.cin.buf);
        monoio::select! {
            r = read_some_until(&mut self.cin.r, buf, spare, deadline) => match r {
                Ok((n, buf)) => {
                    self.cin.buf = buf;
                    if n > 0 { Wait::Data } else { Wait::Closed }
                }
                Err(IoFail::Timeout) => Wait::Timeout,
                Err(_) => Wait::Closed,
            },
            _ = shared.idle_wake.notified() => Wait::Closed,
        }
    }

    /// Drops every per-request buffer (the read buffer was empty: the connection is idle),
    /// including the copies of the last request and response heads.
    fn shrink(&mut self) {
        self.shared.shrunk.set(self.shared.shrunk.get() + 1);
        self.cin.buf = BytesMut::with_capacity(IDLE_READ);
        self.cout.buf = BytesMut::new();
        self.obuf = BytesMut::new();
        self.ubuf = BytesMut::new();
        self.head = RequestHead::default();
        self.resp = ResponseHead::default();
        self.path = Vec::new();
    }

    async fn read_head(&mut self, cfg: &Compiled, deadline: Instant) -> HeadRead {
        loop {
            match parse_request(&mut self.cin.buf, &cfg.limits, &mut self.head) {
                Ok(true) => return HeadRead::Ok,
                Ok(false) => {}
                Err(e) => {
                    log::debug!("client {}: {e}", self.peer);
                    return HeadRead::Reject(e.status());
                }
            }
            let had_bytes = !self.cin.buf.is_empty();
            if self.shared.is_overloaded() {
                // Over the memory threshold a head still arriving is not waited for, and
                // not answered either: writing an answer would touch the connection's
                // untouched response buffer, a page each, across a whole flood.
                crate::metrics::bump(&self.shared.metrics.shed);
                return HeadRead::Closed;
            }
            let buf = std::mem::take(&mut self.cin.buf);
            let shared = self.shared.clone();
            let read = monoio::select! {
                r = read_some_until(&mut self.cin.r, buf, CLIENT_READ, deadline) => r,
                // Over the memory threshold, likewise (a slowloris flood must not hold
                // memory): the read and its bytes are dropped, the connection closed.
                _ = shared.shed.notified() => {
                    crate::metrics::bump(&shared.metrics.shed);
                    return HeadRead::Closed;
                }
            };
            match read {
                Ok((0, buf)) => {
                    self.cin.buf = buf;
                    return HeadRead::Closed;
                }
                Ok((_, buf)) => self.cin.buf = buf,
                Err(IoFail::Timeout) if had_bytes => return HeadRead::Reject(408),
                Err(_) => return HeadRead::Closed,
            }
        }
    }

    async fn handle(&mut self, cfg: &Rc<Compiled>) -> Next {
        let has_body = self.head.framing != BodyFraming::None;
        if self.shared.is_overloaded() {
            // Shed before any work: no routing, policy or upstream, and the connection
            // closes (its buffers go back).
            crate::metrics::bump(&self.shared.metrics.shed);
            return self.reply(cfg, 503, true).await;
        }
        if let Some(port) = self.meta.redirect_https {
            return self.redirect_https(cfg, port, has_body).await;
        }
        let route = cfg.route_for(&self.head, &mut self.path);
        self.cout.log.route = route.map(|r| r.index);
        self.hsts = route.filter(|_| self.meta.tls).and_then(|r| r.hsts.clone());
        self.grant = Grant::default();
        self.body_limit = cfg.max_body_bytes;
        if cfg.policy.is_active() {
            let cert = self.meta.cert.as_ref();
            let verdict = self
                .shared
                .check_policy(cfg, &self.head, route, self.peer.ip(), cert);
            match verdict {
                Ok(grant) => {
                    if let Some(m) = grant.max_body {
                        self.body_limit = match self.body_limit {
                            0 => m,
                            l => l.min(m),
                        };
                    }
                    self.grant = grant;
                }
                Err(denial) => {
                    let m = &self.shared.metrics;
                    let counter = match denial {
                        Denial::Unauthorized(_) => &m.auth_rejected,
                        Denial::RateLimited { .. } => &m.rate_limited,
                        Denial::Status(_) | Denial::MethodNotAllowed(_) => &m.blocked,
                    };
                    crate::metrics::bump(counter);
                    return self.deny(cfg, denial, has_body).await;
                }
            }
        }
        let Some(route) = route else {
            return self.reply(cfg, 404, has_body).await;
        };
        let upstream = match &route.action {
            Action::Respond {
                status,
                body,
                content_type,
            } => {
                return self
                    .reply_with(
                        cfg,
                        *status,
                        body.as_deref(),
                        content_type.as_deref(),
                        has_body,
                    )
                    .await;
            }
            Action::Proxy { upstream } => *upstream,
        };
        let Some(up) = cfg.upstreams.get(upstream) else {
            return self.reply(cfg, 500, true).await;
        };
        if let BodyFraming::Length(n) = self.head.framing {
            if self.body_limit > 0 && n > self.body_limit {
                return self.reply(cfg, 413, true).await;
            }
        }
        if self.shared.in_flight.get() >= self.shared.max_in_flight {
            return self.reply(cfg, 503, has_body).await;
        }
        self.shared.in_flight.set(self.shared.in_flight.get() + 1);
        let _guard = InFlight(self.shared.clone());
        self.proxy(cfg, route, upstream, up).await
    }

    /// `https://host[:port]/path?query` for a plain listener that only redirects: 301 for
    /// GET and HEAD, 308 (method and body kept) for the rest.
    async fn redirect_https(&mut self, cfg: &Compiled, port: u16, has_body: bool) -> Next {
        let mut location = Vec::with_capacity(64);
        location.extend_from_slice(b"https://");
        location.extend_from_slice(&self.head.host_lower);
        if port != 443 {
            location.push(b':');
            location.extend_from_slice(port.to_string().as_bytes());
        }
        location.extend_from_slice(&self.head.path);
        location.extend_from_slice(self.head.query());
        let status = match self.head.method() {
            b"GET" | b"HEAD" => 301,
            _ => 308,
        };
        let fields: [(&[u8], &[u8]); 1] = [(b"Location", &location)];
        self.reply_fields(cfg, status, &fields, has_body).await
    }
}
