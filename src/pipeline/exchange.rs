//! The upstream half of the request's life: pick a server, get a connection to it (pooled,
//! or opened; a failed connect moves to another server), send the request head with
//! whatever of the body is at hand, then run the two directions at once: the rest of the
//! body (client -> upstream) and the response (upstream -> client). Running them together
//! means an upstream that answers early (a 413 before reading the body) or streams its
//! answer while still reading (an echo) is relayed instead of deadlocking. A response whose
//! status the route retries on is dropped unread for another server while the budget
//! allows (see `upstream::retry`).
//!
//! A request with a body is never retried after its bytes went out; an idempotent request
//! without one is retried once on a fresh connection when a pooled connection turns out to
//! be closed, or to hold stray bytes where its response head should start.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;
use monoio::io::OwnedWriteHalf;

use super::attempt::{duplex, Attempt, BodyEnd, Conn, Plan, Replay, Retried, Step};
use super::forward::{self, OutFraming, RequestCtx};
use super::front::{BodySource, Front, Pump, SendFail, Tunnel};
use super::outcome::{Holdback, Next, Refusal, UpstreamFault};
use super::response::{head_deadline, respond, Exchange, RespOutcome};
use super::{requested_upgrade, Life, ResponseSink, Shared};
use crate::compiled::{Compiled, Route, Upstream};
use crate::config::UpstreamProtocol;
use crate::http::{grpc, BodyFraming};
use crate::io::deadline::BodyDeadline;
use crate::io::{write_all_within, Connector, Stream, UpConn};
use crate::tls::{UpTlsStream, UpstreamTls};
use crate::upstream::h2pool::Dial;
use crate::upstream::pool::Pool;
use crate::upstream::{bump, Tried};

fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// How one kind of upstream connection is opened.
#[allow(async_fn_in_trait)]
pub(super) trait Open<U: Stream> {
    /// Connects to `addr` (`host`: its configured host name, for TLS), sending `preamble`
    /// (a PROXY protocol header, or nothing) first, before any TLS.
    async fn open(
        &self,
        addr: SocketAddr,
        host: &str,
        preamble: &[u8],
    ) -> std::io::Result<UpConn<U>>;
}

/// Plain TCP through the worker's connector.
struct Plain<'a, C>(&'a C);

impl<C: Connector> Open<C::Conn> for Plain<'_, C> {
    async fn open(
        &self,
        addr: SocketAddr,
        _host: &str,
        preamble: &[u8],
    ) -> std::io::Result<UpConn<C::Conn>> {
        let mut conn = UpConn::new(self.0.connect(addr).await?);
        if !preamble.is_empty() {
            use monoio::io::AsyncWriteRentExt;
            conn.w.write_all(preamble.to_vec()).await.0?;
        }
        Ok(conn)
    }
}

impl Open<UpTlsStream> for UpstreamTls {
    async fn open(
        &self,
        addr: SocketAddr,
        host: &str,
        preamble: &[u8],
    ) -> std::io::Result<UpConn<UpTlsStream>> {
        let (stream, fd) = self.connect(addr, host, preamble).await?;
        Ok(UpConn::with_fd(stream, fd))
    }
}

/// Connects within the connect timeout (the TLS handshake included), logging why not.
async fn connect<U: Stream, O: Open<U>>(
    cfg: &Compiled,
    open: &O,
    addr: SocketAddr,
    (host, preamble): (&str, &[u8]),
) -> Result<UpConn<U>, UpstreamFault> {
    let opened = open.open(addr, host, preamble);
    match monoio::time::timeout(cfg.timeouts.upstream_connect, opened).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            log::warn!("upstream {addr}: connect failed: {e}");
            Err(UpstreamFault::ConnectFailed)
        }
        Err(_) => {
            log::warn!("upstream {addr}: connect timed out");
            Err(UpstreamFault::ConnectTimeout)
        }
    }
}

/// Writes `buf` to the upstream within `timeout`, leaving it empty.
pub async fn flush_upstream<U: Stream>(
    w: &mut OwnedWriteHalf<U>,
    buf: &mut BytesMut,
    timeout: std::time::Duration,
) -> Result<(), SendFail> {
    let out = std::mem::take(buf);
    match write_all_within(w, out, timeout).await {
        Ok(mut b) => {
            b.clear();
            *buf = b;
            Ok(())
        }
        Err(_) => Err(SendFail::Upstream),
    }
}

/// How getting a connection ended.
enum Connected<U: Stream> {
    Ready {
        conn: UpConn<U>,
        reused: bool,
    },
    /// Nothing reached the upstream: another server was picked.
    Failover,
    Failed(UpstreamFault),
}

impl<C: Connector, F: Front> Life<'_, C, F> {
    /// Forwards the request to `up`, over plain TCP or TLS with that kind's pool.
    pub(super) async fn proxy(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        upstream: usize,
        up: &Upstream,
    ) -> Next {
        let shared = self.shared.clone();
        let h2 = match (&up.tls, up.protocol) {
            (_, UpstreamProtocol::Http1) => None,
            (None, _) => Some(Dial::Plain),
            (Some(tls), _) => Some(Dial::Tls { tls, host: "" }),
        };
        match &up.tls {
            None => {
                let open = Plain(&shared.connector);
                self.forward(cfg, route, upstream, up, &shared.pool, &open, h2)
                    .await
            }
            Some(tls) => {
                self.forward(cfg, route, upstream, up, &shared.tls_pool, tls, h2)
                    .await
            }
        }
    }

    /// `proxy` over one kind of upstream connection: admit, pick a server, then attempt
    /// until one attempt finishes the request. `h2`: the upstream speaks HTTP/2, its
    /// connections opened so (`auto` servers that pick HTTP/1.1 take `pool` and `open`).
    #[allow(clippy::too_many_arguments)]
    async fn forward<U: Stream, O: Open<U>>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        upstream: usize,
        up: &Upstream,
        pool: &Pool<U>,
        open: &O,
        h2: Option<Dial<'_>>,
    ) -> Next {
        let has_body = self.req.head.framing != BodyFraming::None;
        let write = cfg.timeouts.write;
        if self.front.forwarding(&self.req.head, write).await.is_err() {
            return Next::Close;
        }
        self.req.path.clear();
        route.rewrite.apply(&self.req.head.path, &mut self.req.path);
        // Read the clock for it only when there is a body to wait for.
        let body_deadline = has_body.then(|| cfg.timeouts.body_deadline(Instant::now()));
        let lb = self.shared.lb.clone();
        let Some(_pending) = lb.admit(upstream, &up.lb) else {
            log::debug!("upstream {}: max_pending reached; 503", up.name);
            return self
                .refuse(Refusal::Ringway(Holdback::Breaker), has_body)
                .await;
        };
        let key = up.lb.hash_key(&self.req.head, self.client.peer.ip());
        let tried = Tried::default();
        let Ok(server) = lb.pick(upstream, &up.lb, key, &tried) else {
            bump(&lb.counters.no_healthy_server);
            log::debug!("upstream {}: no healthy server; 503", up.name);
            return self
                .refuse(Refusal::Ringway(Holdback::NoHealthyServer), has_body)
                .await;
        };
        // A gRPC call's `grpc-timeout`: the wait for the upstream ends there, and the
        // upstream is told what is left of it.
        let grpc_deadline = self.grpc_deadline();
        self.req.grpc_deadline = grpc_deadline;
        if grpc_deadline.is_some_and(|d| d <= Instant::now()) {
            return self
                .refuse(Refusal::Upstream(UpstreamFault::ResponseTimeout), has_body)
                .await;
        }
        let replay_ok = !has_body && is_idempotent(self.req.head.method());
        let mut plan = Plan {
            upstream,
            key,
            server,
            tried,
            replay_ok,
            status_retries: replay_ok && route.retry.retries_statuses(),
            grpc_retries: h2.is_some() && self.req.head.is_grpc() && route.retry.retries_grpc(),
            sent: 0,
            retrying: None,
            fresh: false,
            replay: Replay::default(),
        };
        loop {
            plan.tried.insert(plan.server);
            let Some(_busy) = lb.begin(upstream, &up.lb, plan.server) else {
                log::debug!("upstream {}: max_connections reached; 503", up.name);
                return self
                    .refuse(Refusal::Ringway(Holdback::Breaker), has_body)
                    .await;
            };
            let step = match h2 {
                // Boxed: an HTTP/2 attempt's state (codec futures, the relay, the replay
                // buffer) would otherwise make every request's future as large, HTTP/1.1
                // upstreams' included, and a future is moved whole when a task spawns.
                Some(dial) => {
                    match Box::pin(self.h2_step(cfg, route, up, dial, &mut plan, body_deadline))
                        .await
                    {
                        Step::Http1 => {
                            self.h1_step(cfg, route, up, pool, open, &mut plan, body_deadline)
                                .await
                        }
                        step => step,
                    }
                }
                None => {
                    self.h1_step(cfg, route, up, pool, open, &mut plan, body_deadline)
                        .await
                }
            };
            match step {
                Step::Done(next) => return next,
                Step::Again | Step::Http1 => {}
                Step::RetryStatus(status) => {
                    plan.sent += 1;
                    if plan.retrying.is_none() {
                        plan.retrying = lb.start_retry(|_| true);
                    } else {
                        bump(&lb.counters.retries);
                    }
                    let addr = up.servers[plan.server];
                    log::info!("upstream {addr}: answered {status}; retrying on another server");
                    match lb.pick(upstream, &up.lb, key, &plan.tried) {
                        Ok(next) => plan.server = next,
                        // `wants_retry` checked that one is left; answer as the upstream did.
                        Err(_) => {
                            let fault = match status {
                                Retried::Http(s) => UpstreamFault::Status(s),
                                Retried::Grpc(_) => UpstreamFault::Invalid,
                            };
                            return self.refuse(Refusal::Upstream(fault), false).await;
                        }
                    }
                    plan.fresh = false;
                }
            }
        }
    }

    /// One attempt over HTTP/1.1: a pooled or new connection, the exchange on it.
    #[allow(clippy::too_many_arguments)]
    async fn h1_step<U: Stream, O: Open<U>>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        up: &Upstream,
        pool: &Pool<U>,
        open: &O,
        plan: &mut Plan,
        body_deadline: Option<BodyDeadline>,
    ) -> Step {
        let has_body = self.req.head.framing != BodyFraming::None;
        let (mut conn, reused) = match self.connection(cfg, route, up, pool, open, plan).await {
            Connected::Ready { conn, reused } => (conn, reused),
            Connected::Failover => return Step::Again,
            Connected::Failed(fault) => {
                return Step::Done(self.refuse(Refusal::Upstream(fault), has_body).await)
            }
        };
        let attempt = self
            .attempt(cfg, route, up, Conn::H1(&mut conn), plan, body_deadline)
            .await;
        match attempt {
            Attempt::Finished { next, pool: reuse } => {
                if reuse {
                    pool.put(self.pool_key(up, plan.server), conn, up.keepalive);
                }
                Step::Done(next)
            }
            Attempt::Retry if reused && plan.replay_ok && !plan.fresh => {
                plan.fresh = true;
                Step::Again
            }
            Attempt::Retry => {
                let addr = up.servers[plan.server];
                log::warn!("upstream {addr}: closed or answered no valid response head");
                Step::Done(
                    self.refuse(Refusal::Upstream(UpstreamFault::Invalid), false)
                        .await,
                )
            }
            Attempt::RetryStatus(status) => Step::RetryStatus(status),
        }
    }

    /// When a gRPC call's `grpc-timeout` runs out, counted from the request's start
    /// (HTTP/1.1 requests cost no look: `is_grpc` asks the version first).
    fn grpc_deadline(&mut self) -> Option<Instant> {
        let h = &self.req.head;
        if !h.is_grpc() {
            return None;
        }
        let timeout = grpc::parse_timeout(h.header(b"grpc-timeout")?)?;
        let start = self.front.sink().log().start?;
        start.checked_add(timeout)
    }

    /// A connection to the plan's server: a pooled one unless a fresh one is due, else a
    /// new one. A failed connect reached nothing, so any request may go to another server.
    async fn connection<U: Stream, O: Open<U>>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        up: &Upstream,
        pool: &Pool<U>,
        open: &O,
        plan: &mut Plan,
    ) -> Connected<U> {
        let addr = up.servers[plan.server];
        let timed = self.shared.access_log.is_some();
        self.front.sink().log().connecting(addr, timed);
        if !plan.fresh {
            let key = self.pool_key(up, plan.server);
            if let Some(conn) = pool.take(key, up.keepalive_timeout, plan.replay_ok) {
                return Connected::Ready { conn, reused: true };
            }
        }
        let host = up.hosts.get(plan.server).map_or("", String::as_str);
        let mut preamble = Vec::new();
        if let Some(version) = up.proxy_protocol {
            let client = self.client.peer;
            let unspecified = if client.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let to = self.client.meta.local.unwrap_or(unspecified);
            crate::proxy_protocol::encode(version, client, to, &mut preamble);
        }
        let fault = match connect(cfg, open, addr, (host, &preamble)).await {
            Ok(conn) => {
                return Connected::Ready {
                    conn,
                    reused: false,
                }
            }
            Err(fault) => fault,
        };
        if self.connect_failed(route, up, plan) {
            Connected::Failover
        } else {
            Connected::Failed(fault)
        }
    }

    /// The pool key of a connection to `up`'s server `server` for this request: by address
    /// and settings, and for an upstream that is sent a PROXY protocol header by the client
    /// connection too (such a connection speaks for that one client only).
    #[inline]
    fn pool_key(&self, up: &Upstream, server: usize) -> crate::upstream::PoolKey {
        let key = up.pool_keys[server];
        if up.proxy_protocol.is_none() {
            return key;
        }
        self.client_pool_key(key)
    }

    /// `key` for this client connection alone (see `pool_key`).
    #[inline(never)]
    fn client_pool_key(&self, key: crate::upstream::PoolKey) -> crate::upstream::PoolKey {
        // FNV-1a over the client's address and port.
        let peer = self.client.peer;
        let ip = match peer.ip() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        let fnv = ip
            .iter()
            .chain(&peer.port().to_be_bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        crate::upstream::PoolKey {
            addr: key.addr,
            settings: key.settings ^ fnv | 2,
        }
    }

    /// The plan's server could not be connected to: reports it, and moves the plan to
    /// another server if the route retries on connect failures and one is left (true).
    pub(super) fn connect_failed(&self, route: &Route, up: &Upstream, plan: &mut Plan) -> bool {
        let lb = &self.shared.lb;
        lb.report(plan.upstream, &up.lb, plan.server, true);
        if route.retry.on_connect {
            if let Ok(next) = lb.pick(plan.upstream, &up.lb, plan.key, &plan.tried) {
                bump(&lb.counters.connect_failovers);
                plan.server = next;
                plan.fresh = false;
                return true;
            }
        }
        false
    }

    /// One attempt on one connection: the head, then the exchange; accounts its time and
    /// its server's health.
    pub(super) async fn attempt<U: Stream>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        up: &Upstream,
        conn: Conn<'_, U>,
        plan: &mut Plan,
        body_deadline: Option<BodyDeadline>,
    ) -> Attempt {
        let sent_at = Instant::now();
        self.encode_head(cfg, route, up.servers[plan.server], sent_at);
        let lb = self.shared.lb.clone();
        let shared: &Rc<Shared<C>> = self.shared;
        // Called with the response status once its head is read, before anything of it
        // reaches the client: true drops the response for a retry elsewhere.
        let wants_retry = |status: u16| {
            let p = &route.retry;
            if !(p.on_status(status)
                && plan.sent + 1 < p.attempts
                && lb.has_untried(plan.upstream, &up.lb, &plan.tried))
            {
                return false;
            }
            let budget = plan.retrying.is_some()
                || p.budget_allows(lb.retries_in_flight(), shared.in_flight.get());
            if !budget {
                bump(&lb.counters.retry_budget_exhausted);
            }
            budget
        };
        let retry: Option<&dyn Fn(u16) -> bool> = if plan.status_retries {
            Some(&wants_retry)
        } else {
            None
        };
        // The same for a trailers-only gRPC answer's status (HTTP/2 upstreams).
        let wants_grpc_retry = |code: u16| {
            let p = &route.retry;
            p.on_grpc(code) && {
                let (on, retrying) = (p.attempts, plan.retrying.is_some());
                plan.sent + 1 < on
                    && lb.has_untried(plan.upstream, &up.lb, &plan.tried)
                    && (retrying || p.budget_allows(lb.retries_in_flight(), shared.in_flight.get()))
            }
        };
        let grpc_retry: Option<&dyn Fn(u16) -> bool> = if plan.grpc_retries {
            Some(&wants_grpc_retry)
        } else {
            None
        };
        self.front.sink().log().status = None;
        let deadline = body_deadline.unwrap_or_else(|| cfg.timeouts.body_deadline(sent_at));
        let (attempt, upstream_status) = match conn {
            Conn::H1(conn) => {
                self.exchange(cfg, route, conn, sent_at, deadline, retry)
                    .await
            }
            Conn::H2(lease) => {
                let replay = std::cell::RefCell::new(std::mem::take(&mut plan.replay));
                let h = super::upstream_h2::H2Exchange {
                    lease,
                    tls: up.tls.is_some(),
                    sent_at,
                    deadline,
                    retry,
                    grpc_retry,
                    replay: &replay,
                };
                // Boxed for the same reason as `h2_step`: HTTP/1.1 attempts stay small.
                let r = Box::pin(self.h2_exchange(cfg, route, h)).await;
                plan.replay = replay.into_inner();
                r
            }
        };
        // One clock read ends both the upstream exchange and, unless more follows (a
        // retry, an error of ringway's own), the request.
        let done = Instant::now();
        self.shared
            .metrics
            .upstream_latency(done.saturating_duration_since(sent_at));
        self.front.sink().log().end = Some(done);
        if let Some(status) = upstream_status {
            lb.report(plan.upstream, &up.lb, plan.server, status >= 500);
        }
        attempt
    }

    /// The upstream request head into `req.obuf`; the request goes out at `sent_at`.
    fn encode_head(&mut self, cfg: &Compiled, route: &Route, addr: SocketAddr, sent_at: Instant) {
        let grpc_timeout = self
            .req
            .grpc_deadline
            .map(|d| grpc::encode_timeout(d.saturating_duration_since(sent_at)));
        let req = &mut *self.req;
        let log = self.front.sink().log();
        log.connected(sent_at);
        let trace = &log.trace;
        let ctx = RequestCtx {
            cfg,
            edits: &route.request_edits,
            path: &req.path,
            peer: self.client.peer.ip(),
            framing: match req.head.framing {
                BodyFraming::None => OutFraming::None,
                BodyFraming::Length(n) => OutFraming::Length(n),
                BodyFraming::Chunked => OutFraming::Chunked,
            },
            upstream_addr: addr,
            request_id: log.request_id,
            grant: Some(&req.grant),
            tls: self.client.meta.tls,
            client_cert: self.client.meta.cert.as_deref().map(|c| &c.consumer[..]),
            upgrade: requested_upgrade(cfg, &req.head),
            traceparent: trace.generated.then(|| trace.value()),
            grpc_timeout: grpc_timeout.as_deref().map(str::as_bytes),
        };
        req.obuf.clear();
        forward::request_head(&mut req.obuf, &req.head, &ctx);
    }

    /// One exchange on one upstream connection: the head and the buffered body first, then
    /// the rest of the body and the response at the same time. `req.obuf` holds the head.
    async fn exchange<U: Stream>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        conn: &mut UpConn<U>,
        sent_at: Instant,
        body_deadline: BodyDeadline,
        retry: Option<&dyn Fn(u16) -> bool>,
    ) -> (Attempt, Option<u16>) {
        let req = &mut *self.req;
        let grpc_deadline = req.grpc_deadline;
        let framing = req.head.framing;
        let has_body = framing != BodyFraming::None;
        let write = cfg.timeouts.write;
        let body = self.front.body();
        body.begin(framing, req.body_limit, cfg.limits.max_header_bytes);
        if let Err(fail) = body.stage(&mut req.obuf) {
            let next = match fail {
                SendFail::Client(fault) => self.refuse(Refusal::Client(fault), true).await,
                _ => Next::Close,
            };
            return (Attempt::Finished { next, pool: false }, None);
        }
        if flush_upstream(&mut conn.w, &mut req.obuf, write)
            .await
            .is_err()
        {
            // Only a request without a body may be replayed on another connection.
            if has_body {
                let next = self
                    .refuse(Refusal::Upstream(UpstreamFault::Invalid), true)
                    .await;
                return (Attempt::Finished { next, pool: false }, None);
            }
            return (Attempt::Retry, None);
        }
        let started = Cell::new(false);
        let (body, sink) = self.front.split();
        let body_pending = !body.is_done();
        let body_done = Cell::new(!body_pending);
        let deadline = head_deadline(cfg, sent_at, body_pending, &body_deadline, grpc_deadline);
        let ex = Exchange::new(
            cfg,
            route,
            &req.head,
            req.hsts.as_deref(),
            self.shared,
            &body_done,
            &started,
            retry,
            deadline,
        );
        let (outcome, body_end) = if body_pending {
            let pump = async {
                let p = Pump {
                    write,
                    splice_threshold: cfg.splice_threshold,
                    deadline: body_deadline,
                    pipes: &self.shared.pipes,
                };
                let sent = body.pump(&mut req.obuf, &mut conn.w, p).await;
                body_done.set(sent.is_ok());
                sent
            };
            let response = respond(&mut conn.r, &mut req.ubuf, &mut req.resp, sink, &ex);
            // Boxed: the two concurrent state machines would otherwise make every
            // connection's future (idle ones included) as large as both; this path already
            // streams a body.
            Box::pin(duplex(pump, response, &started, self.shared)).await
        } else {
            let o = respond(&mut conn.r, &mut req.ubuf, &mut req.resp, sink, &ex).await;
            (o, BodyEnd::Sent)
        };
        let relayed = self.front.body().relayed(framing);
        let log = self.front.sink().log();
        log.bytes_in = relayed;
        // The upstream's own status, if its final head came (before an answer of ringway's
        // own replaces it in the log).
        let upstream_status = log.status;
        let body_sent = matches!(body_end, BodyEnd::Sent);
        let attempt = match outcome {
            RespOutcome::Done { reusable, close } => Attempt::Finished {
                next: if close || !body_sent {
                    Next::Close
                } else {
                    Next::KeepAlive
                },
                pool: reusable && body_sent && !self.shared.is_draining(),
            },
            RespOutcome::Switched(at) => {
                let t = Tunnel {
                    cfg,
                    edits: &route.response_edits,
                    hsts: self.req.hsts.as_deref(),
                    resp: &self.req.resp,
                    ubuf: &mut self.req.ubuf,
                    at,
                    pipes: &self.shared.pipes,
                };
                Attempt::Finished {
                    next: self.front.tunnel(conn, t).await,
                    pool: false,
                }
            }
            RespOutcome::Aborted => Attempt::Finished {
                next: Next::Close,
                pool: false,
            },
            RespOutcome::NoResponse if !has_body => Attempt::Retry,
            RespOutcome::Retry(status) => Attempt::RetryStatus(Retried::Http(status)),
            RespOutcome::RetryGrpc(code) => Attempt::RetryStatus(Retried::Grpc(code)),
            RespOutcome::NoResponse | RespOutcome::Failed(_) => {
                let refusal = match (outcome, body_end) {
                    // The client broke the body rules: that is the answer.
                    (_, BodyEnd::ClientError(r)) => r,
                    (_, BodyEnd::ClientGone) => {
                        return (
                            Attempt::Finished {
                                next: Next::Close,
                                pool: false,
                            },
                            upstream_status,
                        )
                    }
                    (RespOutcome::Failed(fault), _) => Refusal::Upstream(fault),
                    _ => Refusal::Upstream(UpstreamFault::Invalid),
                };
                let next = self.refuse(refusal, !body_sent).await;
                Attempt::Finished { next, pool: false }
            }
        };
        (attempt, upstream_status)
    }
}
