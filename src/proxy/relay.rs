//! The upstream half of the pipeline: pick a server, send the request head with whatever of
//! the body has already arrived, then run the two directions at once: the rest of the
//! request body (client -> upstream) and the response (upstream -> client). Running them
//! together means an upstream that answers early (a 413 before reading the body) or streams
//! its answer while still reading (an echo) is relayed instead of deadlocking.
//!
//! A request with a body is never retried; an idempotent request without one is retried
//! once on a fresh connection when a pooled connection turns out to be closed.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use monoio::io::{OwnedReadHalf, OwnedWriteHalf};

use super::forward::{self, OutFraming, RequestCtx, ResponseCtx};
use super::io::{read_some_until, write_all_within, Connector, IoFail, Stream, UpConn};
use super::{ClientConn, ClientIn, ClientOut, Next, CLIENT_READ, MAX_INTERIM, UPSTREAM_READ};
use crate::compiled::{Compiled, Route, Upstream};
use crate::http::chunked::{put_chunk_header, ChunkEvent, ChunkedDecoder, CHUNK_END, LAST_CHUNK};
use crate::http::{
    canned, parse_response, BodyFraming, Limits, RequestHead, ResponseFraming, ResponseHead,
    Version,
};

/// Longest chunk-size line (with extensions) accepted in either direction.
const MAX_CHUNK_LINE: usize = 4096;
/// Flush re-chunked output once this much is queued.
const FLUSH_AT: usize = 64 * 1024;

/// Why sending the request did not complete.
enum SendFail {
    /// Writing to the upstream failed.
    Upstream,
    /// The client went away or broke the body rules: answer `status` (0 = none) and close.
    Client(u16),
}

/// How the response exchange ended.
enum RespOutcome {
    /// The whole response reached the client; `reusable` if the upstream may be pooled.
    Done { reusable: bool, close: bool },
    /// Nothing reached the client yet: answer this status.
    Failed(u16),
    /// The upstream closed or reset before sending a byte (a stale keep-alive).
    EmptyClose,
    /// Response bytes reached the client and then something failed: abort the client.
    Aborted,
}

/// Where the request body stands.
enum BodyState {
    Length { remaining: u64 },
    Chunked { dec: ChunkedDecoder, total: u64 },
    Done,
}

impl BodyState {
    fn new(framing: BodyFraming, max_trailer: usize) -> BodyState {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyState::Done,
            BodyFraming::Length(n) => BodyState::Length { remaining: n },
            BodyFraming::Chunked => BodyState::Chunked {
                dec: ChunkedDecoder::new(MAX_CHUNK_LINE, max_trailer),
                total: 0,
            },
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }

    /// Moves body bytes from the client buffer into `out` (re-chunking a chunked body)
    /// until the buffer runs dry, the body ends, or `out` holds `FLUSH_AT` bytes.
    fn stage(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        max_body: u64,
    ) -> Result<(), SendFail> {
        match self {
            BodyState::Done => Ok(()),
            BodyState::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                out.put_slice(&input[..take]);
                input.advance(take);
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyState::Done;
                }
                Ok(())
            }
            BodyState::Chunked { dec, total } => {
                while out.len() < FLUSH_AT {
                    match dec.step(input) {
                        Err(_) => return Err(SendFail::Client(400)),
                        Ok(ChunkEvent::Data { start, end }) => {
                            *total += (end - start) as u64;
                            if max_body > 0 && *total > max_body {
                                return Err(SendFail::Client(413));
                            }
                            put_chunk_header(end - start, out);
                            out.put_slice(&input[start..end]);
                            out.put_slice(CHUNK_END);
                            input.advance(end);
                        }
                        Ok(ChunkEvent::NeedMore { consumed }) => {
                            input.advance(consumed);
                            return Ok(());
                        }
                        Ok(ChunkEvent::Done { consumed }) => {
                            input.advance(consumed);
                            out.put_slice(LAST_CHUNK);
                            *self = BodyState::Done;
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

fn upstream_limits(cfg: &Compiled) -> Limits {
    Limits {
        max_header_bytes: cfg.limits.max_header_bytes.max(64 * 1024),
        max_headers: cfg.limits.max_headers.max(128),
        max_uri_bytes: cfg.limits.max_uri_bytes,
    }
}

/// Writes `buf` to the upstream within `timeout`, leaving it empty.
async fn flush_upstream<C: Stream>(
    w: &mut OwnedWriteHalf<C>,
    buf: &mut BytesMut,
    cfg: &Compiled,
) -> Result<(), SendFail> {
    let out = std::mem::take(buf);
    match write_all_within(w, out, cfg.timeouts.write).await {
        Ok(mut b) => {
            b.clear();
            *buf = b;
            Ok(())
        }
        Err(_) => Err(SendFail::Upstream),
    }
}

impl<S: Stream> ClientIn<S> {
    /// Reads more request body before the body deadline.
    async fn read_body(&mut self, deadline: Instant) -> Result<(), SendFail> {
        let buf = std::mem::take(&mut self.buf);
        match read_some_until(&mut self.r, buf, CLIENT_READ, deadline).await {
            Ok((0, buf)) => {
                self.buf = buf;
                Err(SendFail::Client(0))
            }
            Ok((_, buf)) => {
                self.buf = buf;
                Ok(())
            }
            Err(IoFail::Timeout) => Err(SendFail::Client(408)),
            Err(_) => Err(SendFail::Client(0)),
        }
    }
}

/// Streams the rest of the request body from the client to the upstream.
async fn pump_body<S: Stream, C: Stream>(
    cin: &mut ClientIn<S>,
    obuf: &mut BytesMut,
    w: &mut OwnedWriteHalf<C>,
    state: &mut BodyState,
    cfg: &Compiled,
    deadline: Instant,
) -> Result<(), SendFail> {
    loop {
        if !obuf.is_empty() {
            flush_upstream(w, obuf, cfg).await?;
        }
        if state.is_done() {
            return Ok(());
        }
        // Decode what is already buffered (staging stops at FLUSH_AT) before asking the
        // client for more: it may have sent the whole rest of the body already.
        let buffered = cin.buf.len();
        if buffered > 0 {
            state.stage(&mut cin.buf, obuf, cfg.max_body_bytes)?;
            if !obuf.is_empty() || state.is_done() || cin.buf.len() != buffered {
                continue;
            }
        }
        cin.read_body(deadline).await?;
        match state {
            // The whole buffer is body: send it as it is, no copy.
            BodyState::Length { remaining } if cin.buf.len() as u64 <= *remaining => {
                *remaining -= cin.buf.len() as u64;
                if *remaining == 0 {
                    *state = BodyState::Done;
                }
                std::mem::swap(obuf, &mut cin.buf);
            }
            _ => state.stage(&mut cin.buf, obuf, cfg.max_body_bytes)?,
        }
    }
}

/// What the response side needs to know about the request.
struct Exchange<'a> {
    cfg: &'a Compiled,
    route: &'a Route,
    head: &'a RequestHead,
    /// The client connection closes after this response whatever it says.
    close: bool,
    /// The worker is draining: checked when the response head is written.
    draining: &'a Cell<bool>,
    /// Set once any response byte was handed to the client.
    started: &'a Cell<bool>,
    /// Deadline for the response head.
    head_deadline: Instant,
}

/// Reads the final response head into `resp`, skipping 1xx interim responses.
async fn read_response_head<C: Stream>(
    r: &mut OwnedReadHalf<C>,
    ubuf: &mut BytesMut,
    resp: &mut ResponseHead,
    ex: &Exchange<'_>,
) -> Result<(), RespOutcome> {
    let limits = upstream_limits(ex.cfg);
    let is_head = ex.head.is_head();
    let mut interim = 0;
    let mut got_any = false;
    ubuf.clear();
    loop {
        match parse_response(ubuf, &limits, is_head, resp) {
            Ok(true) if resp.status == 101 => return Err(RespOutcome::Failed(502)),
            Ok(true) if resp.is_informational() => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(RespOutcome::Failed(502));
                }
                continue;
            }
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                log::warn!("upstream sent an invalid response head: {e}");
                return Err(RespOutcome::Failed(502));
            }
        }
        let buf = std::mem::take(ubuf);
        match read_some_until(r, buf, 8192, ex.head_deadline).await {
            Ok((0, buf)) => {
                *ubuf = buf;
                return Err(if got_any {
                    RespOutcome::Failed(502)
                } else {
                    RespOutcome::EmptyClose
                });
            }
            Ok((_, buf)) => {
                got_any = true;
                *ubuf = buf;
            }
            Err(IoFail::Timeout) => {
                log::warn!("upstream response head timed out");
                return Err(RespOutcome::Failed(504));
            }
            Err(_) if !got_any => return Err(RespOutcome::EmptyClose),
            Err(_) => return Err(RespOutcome::Failed(502)),
        }
    }
}

/// Reads the response and relays it to the client.
async fn respond<S: Stream, C: Stream>(
    r: &mut OwnedReadHalf<C>,
    ubuf: &mut BytesMut,
    resp: &mut ResponseHead,
    cout: &mut ClientOut<S>,
    ex: &Exchange<'_>,
) -> RespOutcome {
    if let Err(outcome) = read_response_head(r, ubuf, resp, ex).await {
        return outcome;
    }
    let client_v = ex.head.version;
    let mut close = ex.close || ex.draining.get();
    let status = resp.status;
    let framing = resp.framing;
    let out = match framing {
        ResponseFraming::None if ex.head.is_head() || status == 304 => OutFraming::HeadersOnly,
        ResponseFraming::None if status == 204 => OutFraming::None,
        ResponseFraming::None => OutFraming::Length(0),
        ResponseFraming::Length(n) => OutFraming::Length(n),
        ResponseFraming::Chunked | ResponseFraming::CloseDelimited => {
            if client_v == Version::Http11 {
                OutFraming::Chunked
            } else {
                close = true;
                OutFraming::Close
            }
        }
    };
    // Bytes beyond a declared body that arrived with the head: the upstream is confused.
    let declared = match framing {
        ResponseFraming::None => Some(0),
        ResponseFraming::Length(n) => Some(n),
        _ => None,
    };
    if declared.is_some_and(|n| ubuf.len() as u64 > n) {
        log::warn!("upstream sent more bytes than its response declared");
        return RespOutcome::Failed(502);
    }
    cout.buf.clear();
    let ctx = ResponseCtx {
        cfg: ex.cfg,
        edits: &ex.route.response_edits,
        framing: out,
        close,
        client_version: client_v,
    };
    forward::response_head(&mut cout.buf, resp, &ctx);
    ex.started.set(true);
    let mut relay = Relay {
        r,
        ubuf,
        cout,
        cfg: ex.cfg,
        out,
        stray: false,
    };
    let clean = match framing {
        ResponseFraming::None => relay.cout.flush(ex.cfg.timeouts.write).await.is_ok(),
        ResponseFraming::Length(n) => relay.length(n).await,
        ResponseFraming::Chunked => relay.chunked().await,
        ResponseFraming::CloseDelimited => {
            // Never pooled: the upstream ends this body by closing.
            return if relay.until_close().await {
                RespOutcome::Done {
                    reusable: false,
                    close,
                }
            } else {
                RespOutcome::Aborted
            };
        }
    };
    if !clean {
        return RespOutcome::Aborted;
    }
    RespOutcome::Done {
        reusable: resp.keep_alive && relay.ubuf.is_empty() && !relay.stray,
        close,
    }
}

/// The response body relay: upstream read half -> client write half.
struct Relay<'a, S: Stream, C: Stream> {
    r: &'a mut OwnedReadHalf<C>,
    ubuf: &'a mut BytesMut,
    cout: &'a mut ClientOut<S>,
    cfg: &'a Compiled,
    out: OutFraming,
    /// The upstream sent bytes past the declared body: never reuse it.
    stray: bool,
}

impl<S: Stream, C: Stream> Relay<'_, S, C> {
    /// Reads more of the response body: Ok(0) at EOF, Err on timeout or error.
    async fn read(&mut self) -> Result<usize, ()> {
        let deadline = Instant::now() + self.cfg.timeouts.upstream_response;
        let buf = std::mem::take(self.ubuf);
        match read_some_until(self.r, buf, UPSTREAM_READ, deadline).await {
            Ok((n, buf)) => {
                *self.ubuf = buf;
                Ok(n)
            }
            Err(_) => Err(()),
        }
    }

    /// Content-Length body: the head and what is buffered go out in one write.
    async fn length(&mut self, len: u64) -> bool {
        let mut remaining = len.saturating_sub(self.ubuf.len() as u64);
        self.cout.buf.put_slice(self.ubuf);
        self.ubuf.clear();
        if self.cout.flush(self.cfg.timeouts.write).await.is_err() {
            return false;
        }
        while remaining > 0 {
            match self.read().await {
                Ok(0) | Err(()) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return false;
                }
                Ok(_) => {}
            }
            if self.ubuf.len() as u64 > remaining {
                // Stray bytes after the body: send what was declared, never reuse.
                self.ubuf.truncate(remaining as usize);
                self.stray = true;
            }
            remaining -= self.ubuf.len() as u64;
            let buf = std::mem::take(self.ubuf);
            match write_all_within(&mut self.cout.w, buf, self.cfg.timeouts.write).await {
                Ok(mut b) => {
                    b.clear();
                    *self.ubuf = b;
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Chunked upstream body, decoded strictly and re-framed for the client.
    async fn chunked(&mut self) -> bool {
        let mut dec = ChunkedDecoder::new(MAX_CHUNK_LINE, 64 * 1024);
        loop {
            loop {
                match dec.step(self.ubuf) {
                    Err(_) => {
                        log::warn!("upstream sent bad chunked framing; aborting client");
                        return false;
                    }
                    Ok(ChunkEvent::Data { start, end }) => {
                        if self.out == OutFraming::Chunked {
                            put_chunk_header(end - start, &mut self.cout.buf);
                            self.cout.buf.put_slice(&self.ubuf[start..end]);
                            self.cout.buf.put_slice(CHUNK_END);
                        } else {
                            self.cout.buf.put_slice(&self.ubuf[start..end]);
                        }
                        self.ubuf.advance(end);
                    }
                    Ok(ChunkEvent::NeedMore { consumed }) => {
                        self.ubuf.advance(consumed);
                        break;
                    }
                    Ok(ChunkEvent::Done { consumed }) => {
                        self.ubuf.advance(consumed);
                        if self.out == OutFraming::Chunked {
                            self.cout.buf.put_slice(LAST_CHUNK);
                        }
                        return self.cout.flush(self.cfg.timeouts.write).await.is_ok();
                    }
                }
            }
            if !self.cout.buf.is_empty() && self.cout.flush(self.cfg.timeouts.write).await.is_err()
            {
                return false;
            }
            match self.read().await {
                Ok(0) | Err(()) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return false;
                }
                Ok(_) => {}
            }
        }
    }

    /// Close-delimited upstream body: chunked to 1.1 clients, raw (then close) to 1.0 ones.
    async fn until_close(&mut self) -> bool {
        loop {
            if !self.ubuf.is_empty() {
                if self.out == OutFraming::Chunked {
                    put_chunk_header(self.ubuf.len(), &mut self.cout.buf);
                    self.cout.buf.put_slice(self.ubuf);
                    self.cout.buf.put_slice(CHUNK_END);
                } else {
                    self.cout.buf.put_slice(self.ubuf);
                }
                self.ubuf.clear();
            }
            if !self.cout.buf.is_empty() && self.cout.flush(self.cfg.timeouts.write).await.is_err()
            {
                return false;
            }
            match self.read().await {
                Ok(0) => {
                    if self.out == OutFraming::Chunked {
                        self.cout.buf.put_slice(LAST_CHUNK);
                        return self.cout.flush(self.cfg.timeouts.write).await.is_ok();
                    }
                    return true;
                }
                Ok(_) => {}
                Err(()) => return false,
            }
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
        let request_id = self.shared.request_id();
        let n = up.servers.len();
        let first = self.shared.next_server(upstream, n);
        let replay_ok = !has_body && is_idempotent(self.head.method());
        let body_deadline = Instant::now() + cfg.timeouts.body;
        let mut tries = 0;
        let mut fresh_retry = false;
        loop {
            let addr = up.servers[(first + tries) % n];
            let pooled = if fresh_retry {
                None
            } else {
                self.shared.pool.take(addr, up.keepalive_timeout)
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => match self.connect(cfg, addr).await {
                    Ok(c) => c,
                    Err(status) => {
                        tries += 1;
                        if tries < n {
                            continue;
                        }
                        return self.reply(cfg, status, has_body).await;
                    }
                },
            };
            self.obuf.clear();
            let ctx = RequestCtx {
                cfg,
                edits: &route.request_edits,
                path: &self.path,
                peer: self.peer.ip(),
                framing: out_framing,
                upstream_addr: addr,
                request_id,
            };
            forward::request_head(&mut self.obuf, &self.head, &ctx);
            match self.exchange(cfg, route, &mut conn, body_deadline).await {
                Attempt::Finished { next, pool } => {
                    if pool {
                        self.shared.pool.put(addr, conn, up.keepalive);
                    }
                    return next;
                }
                Attempt::Retry if reused && replay_ok && !fresh_retry => fresh_retry = true,
                Attempt::Retry => {
                    log::warn!("upstream {addr}: closed without a response");
                    return self.reply(cfg, 502, false).await;
                }
            }
        }
    }

    /// Connects within the connect timeout; Err is the status to answer (502/504).
    async fn connect(&self, cfg: &Compiled, addr: SocketAddr) -> Result<UpConn<C::Conn>, u16> {
        let fut = self.shared.connector.connect(addr);
        match monoio::time::timeout(cfg.timeouts.upstream_connect, fut).await {
            Ok(Ok(c)) => Ok(UpConn::new(c)),
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

    /// One attempt on one upstream connection: the head and the buffered body first, then
    /// the rest of the body and the response at the same time. `self.obuf` holds the head.
    async fn exchange(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        conn: &mut UpConn<C::Conn>,
        body_deadline: Instant,
    ) -> Attempt {
        let has_body = self.head.framing != BodyFraming::None;
        let mut body = BodyState::new(self.head.framing, cfg.limits.max_header_bytes);
        if let Err(fail) = body.stage(&mut self.cin.buf, &mut self.obuf, cfg.max_body_bytes) {
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
        let ex = Exchange {
            cfg,
            route,
            head: &self.head,
            close: !self.head.keep_alive || body_pending,
            draining: &self.shared.draining,
            started: &started,
            // While the body still streams, the head may legitimately wait for all of it.
            head_deadline: if body_pending {
                body_deadline + cfg.timeouts.upstream_response
            } else {
                Instant::now() + cfg.timeouts.upstream_response
            },
        };
        let (outcome, body_end) = if body_pending {
            let pump = pump_body(
                &mut self.cin,
                &mut self.obuf,
                &mut conn.w,
                &mut body,
                cfg,
                body_deadline,
            );
            let response = respond(
                &mut conn.r,
                &mut self.ubuf,
                &mut self.resp,
                &mut self.cout,
                &ex,
            );
            duplex(pump, response, &started).await
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
        match outcome {
            RespOutcome::Done { reusable, close } => Attempt::Finished {
                next: if close || !body_sent {
                    Next::Close
                } else {
                    Next::KeepAlive
                },
                pool: reusable && body_sent && !self.shared.is_draining(),
            },
            RespOutcome::Aborted => Attempt::Finished {
                next: Next::Close,
                pool: false,
            },
            RespOutcome::EmptyClose if !has_body => Attempt::Retry,
            RespOutcome::EmptyClose | RespOutcome::Failed(_) => {
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
    /// The upstream closed a reused connection before answering a replayable request.
    Retry,
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
/// outcome; the pump's end only matters when the response had not started.
async fn duplex<P, R>(pump: P, response: R, started: &Cell<bool>) -> (RespOutcome, BodyEnd)
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
    };
    (response.await, body_end)
}
