//! The request's life, written once for every protocol. A front end (`front::http1`,
//! `front::http2`) parses a request head into the protocol-neutral `RequestHead` and hands
//! it here with a `Front` (where the body comes from, where the response goes); the request
//! then goes through its phases, top to bottom in `Life::handle`: admit (overload,
//! redirect) -> route -> policy -> answer a `respond` route, or pick an upstream server ->
//! forward the head and stream the body -> relay the response -> log and count. Each phase
//! either goes on or answers now with a typed `Refusal` (see `outcome`).
//!
//! All state is per core (`Shared` lives in one worker); nothing here locks or touches
//! atomics on the request path (the overload flag is one relaxed load).
//!
//! Invariants: a request is answered exactly once; once response bytes reached the client,
//! a failure aborts the connection instead of answering again; an upstream connection goes
//! back to the pool only after a complete, correctly framed response with no stray bytes;
//! a request with a body is never retried after any of it went out, except from the replay
//! buffer of an HTTP/2 upstream's attempt (`attempt::Replay`), which holds all of it.
//!
//! Where it sits: below the front ends and the runtime; above `upstream`, `policy`,
//! `compiled`, `io` and `http`.

mod access;
mod attempt;
mod exchange;
pub mod forward;
pub mod front;
pub mod outcome;
mod reply;
mod response;
mod upstream_h2;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::accesslog::RequestLog;
use crate::compiled::{Action, Compiled};
use crate::http::head::{first_protocol, same_protocol};
use crate::http::{BodyFraming, RequestHead, ResponseHead};
use crate::io::{bufs, splice, Connector};
use crate::notify::LocalNotify;
use crate::policy::{Denial, Grant, PolicyState};
use crate::upstream::pool::Pool;

pub use exchange::flush_upstream;
pub use front::{
    trailer_field, BodySource, Front, HeadOut, Payload, Pump, ResponseSink, SendFail, Tunnel,
};
pub use outcome::{ClientFault, Holdback, Next, Refusal, UpstreamFault};

/// Spare room kept for each upstream read while relaying bodies.
const UPSTREAM_READ: usize = 64 * 1024;
/// Interim (1xx) responses tolerated before the final one.
const MAX_INTERIM: usize = 8;

/// Per-worker state shared by all of its connections.
pub struct Shared<C: Connector> {
    pub(crate) config: RefCell<Rc<Compiled>>,
    pub connector: C,
    pub pool: Pool<C::Conn>,
    /// Idle TLS upstream connections.
    pub tls_pool: Pool<crate::tls::UpTlsStream>,
    /// HTTP/2 upstream connections (plain and TLS).
    pub h2pool: crate::upstream::h2pool::H2Pool,
    /// Empty pipes for spliced bodies.
    pub pipes: splice::Pipes,
    /// Large body buffers, shared by the connections in turn.
    pub(crate) bufs: bufs::BodyBufs,
    pub(crate) in_flight: Cell<usize>,
    max_in_flight: usize,
    draining: Cell<bool>,
    drain: LocalNotify,
    /// Set by the overload manager's thread while the process is over its memory
    /// threshold: new connections, new requests and heads still arriving are shed. A
    /// relaxed load on the request path; written only on transitions, so never contended.
    overload: Arc<AtomicBool>,
    /// Wakes the connections waiting between requests (drain, overload) so they close.
    pub(crate) idle_wake: LocalNotify,
    /// Wakes the connections that follow the config (HTTP/2's, whose settings were
    /// announced at its start) after a reload.
    pub(crate) reloaded: LocalNotify,
    /// Wakes the connections waiting for the rest of a head (overload) so they close.
    pub(crate) shed: LocalNotify,
    /// Balancers, health, ejections, breakers and the retry budget of this worker.
    pub lb: Rc<crate::upstream::State>,
    next_id: Cell<u64>,
    id_salt: u64,
    /// Connections that gave their buffers back since `release_idle_memory` last looked.
    pub(crate) shrunk: Cell<usize>,
    /// This worker's counters (summed with the others' at scrape time).
    pub metrics: crate::metrics::Metrics,
    /// The policy's caches and rate limiter.
    pub(crate) policy: RefCell<PolicyState>,
    /// Origin of the monotonic clock the rate limiter reads.
    epoch: Instant,
    /// The Redis client global rate limits lease through (None: no global limit).
    store: RefCell<Option<Rc<crate::store::Client>>>,
    /// Its counters, kept across reloads.
    pub store_stats: Rc<crate::store::redis::Stats>,
    /// Woken when an answer from Redis changed the leases (requests wait on it).
    leases_changed: LocalNotify,
    /// This worker's access log buffer (None: no access log).
    pub(crate) access_log: Option<crate::accesslog::CoreLog>,
    /// Random bits for trace and span ids.
    pub(crate) rng: crate::trace::Rng,
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
            store: RefCell::new(None),
            store_stats: Rc::default(),
            leases_changed: LocalNotify::default(),
            config: RefCell::new(config),
            connector,
            pool: Pool::default(),
            tls_pool: Pool::default(),
            h2pool: crate::upstream::h2pool::H2Pool::default(),
            pipes: splice::Pipes::default(),
            bufs: bufs::BodyBufs::default(),
            in_flight: Cell::new(0),
            max_in_flight: max_in_flight.max(1),
            draining: Cell::new(false),
            drain: LocalNotify::default(),
            overload: Arc::default(),
            idle_wake: LocalNotify::default(),
            reloaded: LocalNotify::default(),
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
        self.reloaded.notify_all();
    }

    /// A connection went idle and gave its buffers back (see `release_idle_memory`).
    pub(crate) fn note_shrunk(&self) {
        self.shrunk.set(self.shrunk.get() + 1);
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
    pub(crate) fn closing(&self) -> Closing<'_> {
        Closing {
            draining: &self.draining,
            overload: &self.overload,
        }
    }

    /// Resolves at the next `start_drain`.
    pub fn drain_notified(&self) -> crate::notify::Notified<'_> {
        self.drain.notified()
    }

    /// Starts, keeps or stops this worker's Redis client as the config says (at start and
    /// after each reload): the same `[redis]` settings keep the connection.
    pub fn follow_store(self: &Rc<Self>) {
        let cfg = self.config();
        let wanted = cfg.redis.clone();
        let mut store = self.store.borrow_mut();
        let same = match (&*store, &wanted) {
            (Some(c), Some(w)) => c.settings().same_as(w),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if let Some(old) = store.take() {
            old.stop();
        }
        if let Some(settings) = wanted {
            let me = Rc::downgrade(self);
            let on_answer = Box::new(move |tag: u64, answer: crate::store::redis::Answer| {
                let Some(me) = me.upgrade() else { return };
                let now = me.now_ns();
                if let Ok(mut st) = me.policy.try_borrow_mut() {
                    match answer {
                        Some((got, wait_us, reserved)) => {
                            let g = crate::policy::global::Grant {
                                got,
                                wait_us,
                                reserved,
                            };
                            st.leases.granted(tag, g, now)
                        }
                        None => st.leases.failed(tag, now),
                    }
                }
                me.leases_changed.notify_all();
            });
            *store = Some(crate::store::Client::start(
                settings,
                self.store_stats.clone(),
                on_answer,
            ));
        }
    }

    /// Whether this worker's Redis connection is up (exported as `ringway_redis_up`).
    pub fn store_up(&self) -> Option<bool> {
        self.store.borrow().as_ref().map(|c| c.is_up())
    }

    /// This worker's policy state, its leases told whether Redis is up right now (the one
    /// place that copies the client's state into them).
    fn policy_state(&self) -> std::cell::RefMut<'_, PolicyState> {
        let mut st = self.policy.borrow_mut();
        if let Some(up) = self.store_up() {
            st.leases.up = up;
        }
        st
    }

    /// Once a second: gives unspent lease tokens back to Redis and forgets idle keys.
    pub fn sweep_leases(&self) {
        if self.store.borrow().is_none() {
            return;
        }
        let now = self.now_ns();
        let mut st = self.policy_state();
        st.leases.sweep(now);
        self.send_fetches(&mut st);
    }

    /// Hands the leases' queued commands to the Redis client (one that cannot take a
    /// command fails it at once: the requests waiting on it decide without Redis).
    fn send_fetches(&self, st: &mut PolicyState) {
        let fallbacks = std::mem::take(&mut st.leases.fallbacks);
        crate::metrics::Metrics::add(&self.store_stats.fallbacks, fallbacks);
        if st.leases.fetches.is_empty() {
            return;
        }
        let store = self.store.borrow();
        let mut fetches = std::mem::take(&mut st.leases.fetches);
        let now = self.now_ns();
        let mut refused = false;
        for f in fetches.drain(..) {
            let sent = store.as_ref().is_some_and(|c| {
                c.lease(
                    f.tag,
                    &f.key,
                    f.spec.interval_us,
                    f.spec.tolerance_us,
                    f.want,
                    crate::policy::global::RESERVE_US,
                )
            });
            if !sent {
                st.leases.failed(f.tag, now);
                refused = true;
            }
        }
        // Keep the (empty) vector's capacity.
        st.leases.fetches = fetches;
        if refused {
            // Requests waiting on a refused command decide now, without Redis.
            self.leases_changed.notify_all();
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Waits while a global limit waits for its lease (`grant.wait_at`), at most
    /// `redis.command_timeout` in all; then that limit is decided by `on_store_error`.
    async fn await_leases(
        &self,
        cfg: &Compiled,
        head: &RequestHead,
        route: Option<&crate::compiled::Route>,
        peer: std::net::IpAddr,
        mut grant: Grant,
    ) -> Result<Grant, Denial> {
        let timeout = cfg
            .redis
            .as_ref()
            .map_or(std::time::Duration::ZERO, |r| r.command_timeout());
        let deadline = Instant::now() + timeout;
        crate::metrics::bump(&self.store_stats.waits);
        while grant.wait_at.is_some() {
            let changed = self.leases_changed.notified();
            let gave_up = monoio::time::timeout_at(deadline.into(), changed)
                .await
                .is_err();
            let now = self.now_ns();
            let mut st = self.policy_state();
            let r = cfg.policy.resume(
                &mut st,
                head,
                route.map(|r| r.index),
                peer,
                &mut grant,
                now,
                gave_up,
            );
            self.send_fetches(&mut st);
            r?;
        }
        Ok(grant)
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
        let now_ns = self.now_ns();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut st = self.policy_state();
        let r = cfg.policy.check(
            &mut st,
            head,
            route.map(|r| r.index),
            peer,
            cert,
            now_ns,
            now_unix,
        );
        if cfg.redis.is_some() {
            self.send_fetches(&mut st);
        }
        r
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
pub(crate) struct Closing<'a> {
    draining: &'a Cell<bool>,
    overload: &'a AtomicBool,
}

impl Closing<'_> {
    pub(crate) fn get(&self) -> bool {
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

/// What the accept path learned about a client connection.
#[derive(Default)]
pub struct ConnMeta {
    /// The connection is TLS (X-Forwarded-Proto: https).
    pub tls: bool,
    /// The identity of the client certificate verified in the handshake (mTLS).
    pub cert: Option<Rc<crate::policy::identity::Identity>>,
    /// Answer every request with a redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// The address the client connected to: the listener's, or the one a PROXY protocol
    /// header named (what `upstreams[].proxy_protocol` passes on).
    pub local: Option<SocketAddr>,
}

/// One client connection as every request on it sees it.
pub struct Client {
    pub peer: SocketAddr,
    pub meta: ConnMeta,
}

/// A connection's per-request state, reused request after request: buffers and heads keep
/// their capacity, so a warm connection allocates nothing per request.
pub struct Request {
    /// The protocol-neutral request head, filled by the front end.
    pub head: RequestHead,
    resp: ResponseHead,
    /// The path to forward (normalised, rewritten).
    path: Vec<u8>,
    /// The policy's decision for the current request.
    grant: Grant,
    /// The current request's body limit (0 = unlimited).
    body_limit: u64,
    /// The current request's `Strict-Transport-Security` value (its route's, on TLS only).
    hsts: Option<Bytes>,
    /// Upstream bytes received and not yet consumed.
    ubuf: BytesMut,
    /// Bytes being prepared for the upstream.
    obuf: BytesMut,
    /// The current request's gRPC deadline (`grpc-timeout`), set before it is forwarded.
    grpc_deadline: Option<std::time::Instant>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            head: RequestHead::default(),
            resp: ResponseHead::default(),
            path: Vec::new(),
            grant: Grant::default(),
            body_limit: 0,
            hsts: None,
            ubuf: BytesMut::new(),
            obuf: BytesMut::with_capacity(4096),
            grpc_deadline: None,
        }
    }
}

impl Request {
    /// Drops every buffer (the connection is idle), including the copies of the last
    /// request and response heads.
    pub fn shrink(&mut self) {
        *self = Request {
            obuf: BytesMut::new(),
            ..Request::default()
        };
    }
}

/// The protocol `head` asks to switch to, if the config tunnels it.
pub fn requested_upgrade<'a>(cfg: &Compiled, head: &'a RequestHead) -> Option<&'a [u8]> {
    let protocol = head.upgrade?.get(&head.buf);
    cfg.upgrade_protocols
        .iter()
        .any(|allowed| same_protocol(allowed, protocol))
        .then_some(protocol)
}

/// True when the 101 in `resp` switches to `protocol` (the one that was forwarded).
fn accepts_upgrade(resp: &ResponseHead, protocol: &[u8]) -> bool {
    resp.header(b"upgrade")
        .and_then(first_protocol)
        .is_some_and(|p| same_protocol(p, protocol))
}

/// Serves one request whose first bytes arrived at `start`, from admission to the access
/// log line. `head` says whether the front end parsed its head into `req.head`; when it
/// did not, the client's fault is the answer (nothing of `req.head`, which may hold the
/// previous request, is consulted) and the connection then closes.
pub async fn serve<C: Connector, F: Front>(
    shared: &Rc<Shared<C>>,
    cfg: &Rc<Compiled>,
    client: &Client,
    req: &mut Request,
    front: &mut F,
    start: Instant,
    head: Result<(), ClientFault>,
) -> Next {
    if head.is_err() {
        req.head.keep_alive = false;
        req.head.method = Default::default();
        req.hsts = None;
    }
    let mut life = Life {
        shared,
        cfg,
        client,
        req,
        front,
    };
    life.begin_log(start, head.is_ok());
    let next = match head {
        Ok(()) => {
            let next = life.handle().await;
            life.count(start);
            next
        }
        Err(fault) => {
            life.refuse(Refusal::Client(fault), true).await;
            Next::Close
        }
    };
    life.end_log();
    next
}

/// One request on its way through the phases.
struct Life<'a, C: Connector, F: Front> {
    shared: &'a Rc<Shared<C>>,
    cfg: &'a Rc<Compiled>,
    client: &'a Client,
    req: &'a mut Request,
    front: &'a mut F,
}

impl<C: Connector, F: Front> Life<'_, C, F> {
    /// The phases, top to bottom.
    async fn handle(&mut self) -> Next {
        let cfg = self.cfg.clone();
        let has_body = self.req.head.framing != BodyFraming::None;
        if self.shared.is_overloaded() {
            // Shed before any work: no routing, policy or upstream, and the connection
            // closes (its buffers go back).
            crate::metrics::bump(&self.shared.metrics.shed);
            return self
                .refuse(Refusal::Ringway(Holdback::Overloaded), true)
                .await;
        }
        if let Some(port) = self.client.meta.redirect_https {
            return self.redirect_https(port, has_body).await;
        }
        // Route.
        let route = cfg.route_for(&self.req.head, &mut self.req.path);
        self.front.sink().log().route = route.map(|r| r.index);
        self.req.hsts = route
            .filter(|_| self.client.meta.tls)
            .and_then(|r| r.hsts.clone());
        // Policy.
        if let Err(denial) = self.police(&cfg, route).await {
            return self.refuse(Refusal::Policy(denial), has_body).await;
        }
        let Some(route) = route else {
            return self.refuse(Refusal::NoRoute, has_body).await;
        };
        // A `respond` route answers here.
        let upstream = match &route.action {
            Action::Respond {
                status,
                body,
                content_type,
            } => {
                return self
                    .respond(*status, body.as_deref(), content_type.as_deref(), has_body)
                    .await;
            }
            Action::Proxy { upstream } => *upstream,
        };
        let Some(up) = cfg.upstreams.get(upstream) else {
            return self
                .refuse(Refusal::Ringway(Holdback::Internal), true)
                .await;
        };
        if let BodyFraming::Length(n) = self.req.head.framing {
            if self.req.body_limit > 0 && n > self.req.body_limit {
                return self
                    .refuse(Refusal::Client(ClientFault::BodyTooLarge), true)
                    .await;
            }
        }
        // Admit it as in flight, then forward and relay.
        let shared = self.shared;
        if shared.in_flight.get() >= shared.max_in_flight {
            return self
                .refuse(Refusal::Ringway(Holdback::InFlight), has_body)
                .await;
        }
        shared.in_flight.set(shared.in_flight.get() + 1);
        let _guard = InFlight(shared.clone());
        self.proxy(&cfg, route, upstream, up).await
    }

    /// Runs the policy, leaving its grant (and the body limit it sets) in `req`; counts a
    /// denial in the metrics.
    async fn police(
        &mut self,
        cfg: &Compiled,
        route: Option<&crate::compiled::Route>,
    ) -> Result<(), Denial> {
        self.req.grant = Grant::default();
        self.req.body_limit = cfg.max_body_bytes;
        if !cfg.policy.is_active() {
            return Ok(());
        }
        let cert = self.client.meta.cert.as_ref();
        let peer = self.client.peer.ip();
        let mut verdict = self
            .shared
            .check_policy(cfg, &self.req.head, route, peer, cert);
        if let Ok(grant) = &mut verdict {
            if grant.wait_at.is_some() {
                let grant = std::mem::take(grant);
                verdict = self
                    .shared
                    .await_leases(cfg, &self.req.head, route, peer, grant)
                    .await;
            }
        }
        match verdict {
            Ok(grant) => {
                if let Some(m) = grant.max_body {
                    self.req.body_limit = match self.req.body_limit {
                        0 => m,
                        l => l.min(m),
                    };
                }
                self.req.grant = grant;
                Ok(())
            }
            Err(denial) => {
                let m = &self.shared.metrics;
                let counter = match denial {
                    Denial::Unauthorized(_) => &m.auth_rejected,
                    Denial::RateLimited { .. } => &m.rate_limited,
                    Denial::Status(_) | Denial::MethodNotAllowed(_) => &m.blocked,
                };
                crate::metrics::bump(counter);
                Err(denial)
            }
        }
    }

    /// `https://host[:port]/path?query` for a plain listener that only redirects: 301 for
    /// GET and HEAD, 308 (method and body kept) for the rest.
    async fn redirect_https(&mut self, port: u16, has_body: bool) -> Next {
        let head = &self.req.head;
        let mut location = Vec::with_capacity(64);
        location.extend_from_slice(b"https://");
        location.extend_from_slice(&head.host_lower);
        if port != 443 {
            location.push(b':');
            location.extend_from_slice(port.to_string().as_bytes());
        }
        location.extend_from_slice(&head.path);
        location.extend_from_slice(head.query());
        let status = match head.method() {
            b"GET" | b"HEAD" => 301,
            _ => 308,
        };
        let fields: [(&[u8], &[u8]); 1] = [(b"Location", &location)];
        self.answer(status, reply::OwnBody::ErrorPage, &fields, has_body)
            .await
    }

    /// Adds the request just answered to this worker's metrics (from the same record the
    /// access log writes).
    fn count(&mut self, started: Instant) {
        let m = &self.shared.metrics;
        let log: &RequestLog = self.front.sink().log();
        m.request(
            log.route,
            log.upstream.is_some(),
            log.final_status(),
            log.end_or_now().saturating_duration_since(started),
        );
        crate::metrics::Metrics::add(&m.bytes_in, log.bytes_in);
        crate::metrics::Metrics::add(&m.bytes_out, log.bytes_out);
        let protocol = match self.req.head.version {
            crate::http::Version::Http10 => 0,
            crate::http::Version::Http11 => 1,
            crate::http::Version::Http2 => 2,
        };
        crate::metrics::bump(&m.by_protocol[protocol]);
        if let Some(code) = log.grpc_status {
            let slot = usize::from(code).min(crate::metrics::GRPC_SLOTS - 1);
            crate::metrics::bump(&m.grpc[slot]);
        }
    }
}
