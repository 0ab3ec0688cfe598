//! The upstream half of the pipeline: pick a server, send the request head with whatever of
//! the body has already arrived, then run the two directions at once: the rest of the
//! request body (client -> upstream) and the response (upstream -> client). Running them
//! together means an upstream that answers early (a 413 before reading the body) or streams
//! its answer while still reading (an echo) is relayed instead of deadlocking.
//!
//! A request with a body is never retried after its bytes went out; an idempotent request
//! without one is retried once on a fresh connection when a pooled connection turns out to
//! be closed, or to hold stray bytes where its response head should start. The server is
//! chosen by `upstream::State`; connect failures and retryable statuses move to another
//! server as the route's `retries` allow (see `upstream::retry`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BufMut;

use super::forward::{self, OutFraming, RequestCtx};
use super::request_body::{flush_upstream, pump_body, BodyState, SendFail};
use super::response::{respond, Exchange, RespOutcome};
use super::tunnel;
use super::{ClientConn, Next};
use crate::compiled::{Compiled, Route, Upstream};
use crate::http::{canned, BodyFraming};
use crate::io::deadline::BodyDeadline;
use crate::io::{Connector, Stream, UpConn};
use crate::tls::{UpTlsStream, UpstreamTls};
use crate::upstream::pool::Pool;
use crate::upstream::state::RetryGuard;
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
    /// Connects to `addr` (`host`: its configured host name, for TLS).
    async fn open(&self, addr: SocketAddr, host: &str) -> std::io::Result<UpConn<U>>;
}

/// Plain TCP through the worker's connector.
struct Plain<'a, C>(&'a C);

impl<C: Connector> Open<C::Conn> for Plain<'_, C> {
    async fn open(&self, addr: SocketAddr, _host: &str) -> std::io::Result<UpConn<C::Conn>> {
        self.0.connect(addr).await.map(UpConn::new)
    }
}

impl Open<UpTlsStream> for UpstreamTls {
    async fn open(&self, addr: SocketAddr, host: &str) -> std::io::Result<UpConn<UpTlsStream>> {
        let (stream, fd) = self.connect(addr, host).await?;
        Ok(UpConn::with_fd(stream, fd))
    }
}

/// Connects within the connect timeout (the TLS handshake included); Err is the status to
/// answer (502/504), logged with the reason.
async fn connect<U: Stream, O: Open<U>>(
    cfg: &Compiled,
    open: &O,
    addr: SocketAddr,
    host: &str,
) -> Result<UpConn<U>, u16> {
    match monoio::time::timeout(cfg.timeouts.upstream_connect, open.open(addr, host)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            log::warn!("upstream {addr}: connect failed: {e}");
            Err(502)
        }
        Err(_) => {
            log::warn!("upstream {addr}: connect timed out");
            Err(504)
        }
    }
}

impl<S, C> ClientConn<S, C>
where
    S: Stream,
    C: Connector,
{
    pub(super) async fn proxy(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        upstream: usize,
        up: &Upstream,
    ) -> Next {
        let shared = self.shared.clone();
        match &up.tls {
            None => {
                let open = Plain(&shared.connector);
                self.proxy_on(cfg, route, upstream, up, &shared.pool, &open)
                    .await
            }
            Some(tls) => {
                self.proxy_on(cfg, route, upstream, up, &shared.tls_pool, tls)
                    .await
            }
        }
    }

    /// `proxy` over one kind of upstream connection (plain or TLS), with its pool.
    async fn proxy_on<U: Stream, O: Open<U>>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        upstream: usize,
        up: &Upstream,
        pool: &Pool<U>,
        open: &O,
    ) -> Next {
        let has_body = self.head.framing != BodyFraming::None;
        if self.head.expect_continue && has_body && self.cin.buf.is_empty() {
            self.cout.buf.clear();
            self.cout.buf.put_slice(canned::CONTINUE_100);
            if self.cout.flush(cfg.timeouts.write).await.is_err() {
                return Next::Close;
            }
        }
        self.path.clear();
        route.rewrite.apply(&self.head.path, &mut self.path);
        let out_framing = match self.head.framing {
            BodyFraming::None => OutFraming::None,
            BodyFraming::Length(n) => OutFraming::Length(n),
            BodyFraming::Chunked => OutFraming::Chunked,
        };
        let request_id = self.cout.log.request_id;
        let replay_ok = !has_body && is_idempotent(self.head.method());
        // Read the clock for it only when there is a body to wait for.
        let body_deadline = has_body.then(|| cfg.timeouts.body_deadline(Instant::now()));
        let lb = self.shared.lb.clone();
        let Some(_pending) = lb.admit(upstream, &up.lb) else {
            log::debug!("upstream {}: max_pending reached; 503", up.name);
            return self.reply(cfg, 503, has_body).await;
        };
        let key = up.lb.hash_key(&self.head, self.peer.ip());
        let mut tried = Tried::default();
        let mut server = match lb.pick(upstream, &up.lb, key, &tried) {
            Ok(i) => i,
            Err(_) => {
                bump(&lb.counters.no_healthy_server);
                log::debug!("upstream {}: no healthy server; 503", up.name);
                return self.reply(cfg, 503, has_body).await;
            }
        };
        let status_retries = replay_ok && route.retry.retries_statuses();
        // Requests that went out (a status retry needs fewer than `attempts`).
        let mut sent = 0;
        let mut retrying: Option<RetryGuard> = None;
        let mut fresh_retry = false;
        loop {
            tried.insert(server);
            let addr = up.servers[server];
            let host = up.hosts.get(server).map_or("", String::as_str);
            let Some(_busy) = lb.begin(upstream, &up.lb, server) else {
                log::debug!("upstream {}: max_connections reached; 503", up.name);
                return self.reply(cfg, 503, has_body).await;
            };
            let timed = self.shared.access_log.is_some();
            self.cout.log.connecting(addr, timed);
            let pooled = if fresh_retry {
                None
            } else {
                pool.take(up.pool_keys[server], up.keepalive_timeout, replay_ok)
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => match connect(cfg, open, addr, host).await {
                    Ok(c) => c,
                    Err(status) => {
                        lb.report(upstream, &up.lb, server, true);
                        // Nothing reached the upstream: any request may go elsewhere.
                        let next = route
                            .retry
                            .on_connect
                            .then(|| lb.pick(upstream, &up.lb, key, &tried));
                        if let Some(Ok(next)) = next {
                            bump(&lb.counters.connect_failovers);
                            server = next;
                            fresh_retry = false;
                            continue;
                        }
                        return self.reply(cfg, status, has_body).await;
                    }
                },
            };
            let sent_at = Instant::now();
            self.cout.log.connected(sent_at);
            self.obuf.clear();
            let trace = &self.cout.log.trace;
            let ctx = RequestCtx {
                cfg,
                edits: &route.request_edits,
                path: &self.path,
                peer: self.peer.ip(),
                framing: out_framing,
                upstream_addr: addr,
                request_id,
                grant: Some(&self.grant),
                tls: self.meta.tls,
                client_cert: self.meta.cert.as_deref().map(|c| &c.consumer[..]),
                upgrade: tunnel::requested(cfg, &self.head),
                traceparent: trace.generated.then(|| trace.value()),
            };
            forward::request_head(&mut self.obuf, &self.head, &ctx);
            let shared = self.shared.clone();
            // Called with the response status once its head is read, before anything of
            // it reaches the client: true discards the response for a retry elsewhere.
            let retry_on = |status: u16| {
                let p = &route.retry;
                if !(p.on_status(status)
                    && sent + 1 < p.attempts
                    && lb.has_untried(upstream, &up.lb, &tried))
                {
                    return false;
                }
                let budget = retrying.is_some()
                    || p.budget_allows(lb.retries_in_flight(), shared.in_flight.get());
                if !budget {
                    bump(&lb.counters.retry_budget_exhausted);
                }
                budget
            };
            let retry: Option<&dyn Fn(u16) -> bool> = if status_retries {
                Some(&retry_on)
            } else {
                None
            };
            self.resp.status = 0;
            let attempt = self
                .exchange(cfg, route, &mut conn, (sent_at, body_deadline), retry)
                .await;
            // One clock read ends both the upstream exchange and, unless more follows
            // (a retry, an error of ringway's own), the request.
            let done = Instant::now();
            let took = done.saturating_duration_since(sent_at);
            self.shared.metrics.upstream_latency(took);
            self.cout.log.end = Some(done);
            let status = self.resp.status;
            if status >= 100 {
                lb.report(upstream, &up.lb, server, status >= 500);
            }
            match attempt {
                Attempt::Finished { next, pool: reuse } => {
                    if reuse {
                        pool.put(up.pool_keys[server], conn, up.keepalive);
                    }
                    return next;
                }
                Attempt::Retry if reused && replay_ok && !fresh_retry => fresh_retry = true,
                Attempt::Retry => {
                    log::warn!("upstream {addr}: closed or answered no valid response head");
                    return self.reply(cfg, 502, false).await;
                }
                Attempt::RetryStatus(status) => {
                    sent += 1;
                    if retrying.is_none() {
                        retrying = lb.start_retry(|_| true);
                    } else {
                        bump(&lb.counters.retries);
                    }
                    log::info!("upstream {addr}: answered {status}; retrying on another server");
                    match lb.pick(upstream, &up.lb, key, &tried) {
                        Ok(next) => server = next,
                        // `retry_on` checked that one is left; answer as the upstream did.
                        Err(_) => return self.reply(cfg, status, false).await,
                    }
                    fresh_retry = false;
                }
            }
        }
    }

    /// One attempt on one upstream connection: the head and the buffered body first, then
    /// the rest of the body and the response at the same time. `self.obuf` holds the head.
    async fn exchange<U: Stream>(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        conn: &mut UpConn<U>,
        (sent_at, body_deadline): (Instant, Option<BodyDeadline>),
        retry: Option<&dyn Fn(u16) -> bool>,
    ) -> Attempt {
        // Without a body (the only case without a body deadline) it is never waited on.
        let body_deadline = body_deadline.unwrap_or_else(|| cfg.timeouts.body_deadline(sent_at));
        let has_body = self.head.framing != BodyFraming::None;
        let mut body = BodyState::new(
            self.head.framing,
            cfg.limits.max_header_bytes,
            self.body_limit,
        );
        if let Err(fail) = body.stage(&mut self.cin.buf, &mut self.obuf) {
            let next = match fail {
                SendFail::Client(status) if status != 0 => self.reply(cfg, status, true).await,
                _ => Next::Close,
            };
            return Attempt::Finished { next, pool: false };
        }
        if flush_upstream(&mut conn.w, &mut self.obuf, cfg)
            .await
            .is_err()
        {
            // Only a request without a body may be replayed on another connection.
            if has_body {
                let next = self.reply(cfg, 502, true).await;
                return Attempt::Finished { next, pool: false };
            }
            return Attempt::Retry;
        }
        let started = Cell::new(false);
        let body_pending = !body.is_done();
        let body_done = Cell::new(!body_pending);
        let ex = Exchange {
            cfg,
            route,
            head: &self.head,
            close: !self.head.keep_alive,
            body_done: &body_done,
            keepalive_off: self.shared.closing(),
            pipes: &self.shared.pipes,
            bufs: &self.shared.bufs,
            hsts: self.hsts.as_deref(),
            upgrade: tunnel::requested(cfg, &self.head),
            started: &started,
            retry,
            // While the body still streams, the head may legitimately wait for all of it.
            head_deadline: if body_pending {
                body_deadline.total() + cfg.timeouts.upstream_response
            } else {
                sent_at + cfg.timeouts.upstream_response
            },
        };
        let (outcome, body_end) = if body_pending {
            let pump = async {
                let sent = pump_body(
                    &mut self.cin,
                    &mut self.obuf,
                    &mut conn.w,
                    &mut body,
                    cfg,
                    body_deadline,
                    &self.shared.pipes,
                )
                .await;
                body_done.set(sent.is_ok());
                sent
            };
            let response = respond(
                &mut conn.r,
                &mut self.ubuf,
                &mut self.resp,
                &mut self.cout,
                &ex,
            );
            // Boxed: the two concurrent state machines would otherwise make every connection's
            // future (idle ones included) as large as both; this path already streams a body.
            Box::pin(duplex(pump, response, &started, &self.shared)).await
        } else {
            let o = respond(
                &mut conn.r,
                &mut self.ubuf,
                &mut self.resp,
                &mut self.cout,
                &ex,
            )
            .await;
            (o, BodyEnd::Sent)
        };
        let body_sent = matches!(body_end, BodyEnd::Sent);
        self.cout.log.bytes_in = body.relayed(self.head.framing);
        match outcome {
            RespOutcome::Done { reusable, close } => Attempt::Finished {
                next: if close || !body_sent {
                    Next::Close
                } else {
                    Next::KeepAlive
                },
                pool: reusable && body_sent && !self.shared.is_draining(),
            },
            RespOutcome::Switched(at) => Attempt::Finished {
                next: self.tunnel(cfg, route, conn, at).await,
                pool: false,
            },
            RespOutcome::Aborted => Attempt::Finished {
                next: Next::Close,
                pool: false,
            },
            RespOutcome::NoResponse if !has_body => Attempt::Retry,
            RespOutcome::Retry(status) => Attempt::RetryStatus(status),
            RespOutcome::NoResponse | RespOutcome::Failed(_) => {
                let status = match (&outcome, &body_end) {
                    // The client broke the body rules: that is the answer.
                    (_, BodyEnd::ClientError(s)) => *s,
                    (_, BodyEnd::ClientGone) => {
                        return Attempt::Finished {
                            next: Next::Close,
                            pool: false,
                        }
                    }
                    (RespOutcome::Failed(s), _) => *s,
                    _ => 502,
                };
                let next = self.reply(cfg, status, !body_sent).await;
                Attempt::Finished { next, pool: false }
            }
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Finished {
        next: Next,
        pool: bool,
    },
    /// No response head came (closed, reset, or bytes that are no head) for a request
    /// without a body: retried once on a fresh connection if this one was reused.
    Retry,
    /// The upstream answered a status the route retries on (only its head was read).
    RetryStatus(u16),
}

/// How the request body ended.
enum BodyEnd {
    Sent,
    /// The response ended first; the rest of the body was never read.
    Unfinished,
    /// The client broke the body rules (400, 408, 413).
    ClientError(u16),
    /// The client went away mid-body.
    ClientGone,
    /// The upstream stopped taking the body.
    UpstreamFailed,
}

/// Runs the body pump and the response side together. The response side decides the
/// outcome; the pump's end only matters when the response had not started. Over the memory
/// threshold (`Shared::shed_now`) a body still arriving is cut off: the connection is
/// closed, unanswered.
async fn duplex<P, R, C: Connector>(
    pump: P,
    response: R,
    started: &Cell<bool>,
    shared: &super::Shared<C>,
) -> (RespOutcome, BodyEnd)
where
    P: std::future::Future<Output = Result<(), SendFail>>,
    R: std::future::Future<Output = RespOutcome>,
{
    let mut pump = std::pin::pin!(pump);
    let mut response = std::pin::pin!(response);
    let body_end = monoio::select! {
        p = &mut pump => match p {
            Ok(()) => BodyEnd::Sent,
            Err(SendFail::Client(status)) if !started.get() => {
                // Nothing was answered yet: the client's error is the answer.
                let end = if status == 0 { BodyEnd::ClientGone } else { BodyEnd::ClientError(status) };
                return (RespOutcome::Failed(status), end);
            }
            Err(SendFail::Client(_)) => return (RespOutcome::Aborted, BodyEnd::ClientGone),
            // The upstream stopped reading; it may still have answered.
            Err(SendFail::Upstream) => BodyEnd::UpstreamFailed,
        },
        o = &mut response => return (o, BodyEnd::Unfinished),
        _ = shared.shed.notified() => {
            crate::metrics::bump(&shared.metrics.shed);
            return (RespOutcome::Aborted, BodyEnd::ClientGone);
        }
    };
    (response.await, body_end)
}
