//! The response on its way to the client: the upstream's head, strictly parsed (1xx skipped,
//! stray bytes refused, a 101 refused unless it accepts the upgrade that was forwarded),
//! then its body decoded from the upstream's framing and handed to the front end's sink
//! as it comes (Content-Length bodies with ringway's head joined in front of their first
//! bytes, large runs spliced). Decides whether the upstream connection may be pooled.

use std::cell::Cell;
use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use monoio::io::OwnedReadHalf;

use super::front::{HeadOut, ResponseSink};
use super::outcome::UpstreamFault;
use super::{Closing, MAX_INTERIM, UPSTREAM_READ};
use crate::compiled::{Compiled, Route};
use crate::http::chunked::{ChunkEvent, ChunkedDecoder};
use crate::http::response::parse_response_at;
use crate::http::{Limits, RequestHead, ResponseFraming, ResponseHead};
use crate::io::bufs::BodyBufs;
use crate::io::splice::{self, PipePair, Pipes, ReadLimit, SpliceFail};
use crate::io::{read_some_until, IoFail, Stream};

/// Longest chunk-size line (with extensions) accepted from an upstream.
const MAX_CHUNK_LINE: usize = 4096;

/// How the response exchange ended.
pub(super) enum RespOutcome {
    /// The whole response reached the client; `reusable` if the upstream may be pooled.
    Done { reusable: bool, close: bool },
    /// Nothing reached the client yet: ringway answers it.
    Failed(UpstreamFault),
    /// No response came: the upstream closed or reset before sending a byte, or its first
    /// bytes were no response head. On a reused connection that is a stale keep-alive
    /// (closed while idle, or holding leftovers of an earlier answer such as bytes past its
    /// declared length, which only show up once the next request reads them).
    NoResponse,
    /// Response bytes reached the client and then something failed: abort the client.
    Aborted,
    /// The head's status is one the route retries on; nothing reached the client.
    Retry(u16),
    /// A trailers-only gRPC answer whose status the route retries on (HTTP/2 upstreams).
    RetryGrpc(u16),
    /// The upstream switched protocols (a 101 accepting the requested upgrade, in `resp`);
    /// nothing was sent to the client yet, and the upstream's bytes after its head start
    /// at this offset of `ubuf`. The front end's tunnel takes over.
    Switched(usize),
}

/// How a body relay ended.
enum RelayEnd {
    /// Every byte reached the client.
    Complete,
    /// It broke after bytes reached the client: the client is aborted.
    Broken,
    /// It broke before any did: the client gets ringway's own answer.
    NotStarted(UpstreamFault),
}

pub(super) fn upstream_limits(cfg: &Compiled) -> Limits {
    Limits {
        max_header_bytes: cfg.limits.max_header_bytes.max(64 * 1024),
        max_headers: cfg.limits.max_headers.max(128),
        max_uri_bytes: cfg.limits.max_uri_bytes,
        ..Limits::default()
    }
}

/// What the response side needs to know about the request.
pub(super) struct Exchange<'a> {
    pub(super) cfg: &'a Compiled,
    pub(super) route: &'a Route,
    pub(super) head: &'a RequestHead,
    /// The client connection closes after this response whatever it says.
    pub(super) close: bool,
    /// The whole request body has gone upstream. If it has not when the response head is
    /// written, the client connection closes after the response: the rest of its body
    /// will never be read.
    pub(super) body_done: &'a Cell<bool>,
    /// The worker is draining or overloaded: checked when the response head is written.
    pub(super) keepalive_off: Closing<'a>,
    /// Set once any response byte was handed to the client.
    pub(super) started: &'a Cell<bool>,
    /// Deadline for the response head.
    pub(super) head_deadline: Instant,
    /// This worker's pipes, for spliced bodies.
    pub(super) pipes: &'a Pipes,
    /// This worker's large body buffers.
    pub(super) bufs: &'a BodyBufs,
    /// `Strict-Transport-Security` value for this response (TLS connections only).
    pub(super) hsts: Option<&'a [u8]>,
    /// Asked with the final status before anything is relayed: true = retry elsewhere.
    pub(super) retry: Option<&'a dyn Fn(u16) -> bool>,
    /// The upgrade protocol forwarded with the request: a 101 naming it is accepted.
    pub(super) upgrade: Option<&'a [u8]>,
}

impl<'a> Exchange<'a> {
    /// What the response side of an attempt needs: `head` and `hsts` of the request;
    /// `body_done` and `started` shared with the body side; the retry question; the
    /// deadline for the response head (`head_deadline`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new<C: crate::io::Connector>(
        cfg: &'a Compiled,
        route: &'a Route,
        head: &'a RequestHead,
        hsts: Option<&'a [u8]>,
        shared: &'a super::Shared<C>,
        body_done: &'a Cell<bool>,
        started: &'a Cell<bool>,
        retry: Option<&'a dyn Fn(u16) -> bool>,
        head_deadline: Instant,
    ) -> Exchange<'a> {
        Exchange {
            cfg,
            route,
            head,
            close: !head.keep_alive,
            body_done,
            keepalive_off: shared.closing(),
            started,
            head_deadline,
            pipes: &shared.pipes,
            bufs: &shared.bufs,
            hsts,
            retry,
            upgrade: super::requested_upgrade(cfg, head),
        }
    }
}

/// When the response head must have come: `timeouts.upstream_response` after the request
/// went out (`sent_at`), or while a body still streams (`body_pending`) after the body's
/// own deadline, since the head may legitimately wait for all of it; never after a gRPC
/// call's deadline.
pub(super) fn head_deadline(
    cfg: &Compiled,
    sent_at: Instant,
    body_pending: bool,
    body_deadline: &crate::io::deadline::BodyDeadline,
    grpc_deadline: Option<Instant>,
) -> Instant {
    let head = if body_pending {
        body_deadline.total() + cfg.timeouts.upstream_response
    } else {
        sent_at + cfg.timeouts.upstream_response
    };
    grpc_deadline.map_or(head, |d| d.min(head))
}

/// Reads the final response head into `resp`, handing 1xx interim responses other than
/// 100 to `interim` on the way, and returns where the body starts in `ubuf`.
///
/// `ubuf` becomes a pooled body buffer (see `io::bufs`) whose first `HEADROOM` bytes are
/// left free: the head and, usually, the whole body of a response up to 64 KiB arrive in
/// one read, and ringway's own head is later written into the room just in front of the
/// body, so head and body leave in one write with no copy of the body.
pub(super) async fn read_response_head<C: Stream>(
    r: &mut OwnedReadHalf<C>,
    ubuf: &mut BytesMut,
    resp: &mut ResponseHead,
    ex: &Exchange<'_>,
    mut interim: impl FnMut(&ResponseHead),
) -> Result<usize, RespOutcome> {
    let limits = upstream_limits(ex.cfg);
    let is_head = ex.head.is_head();
    let mut interim_count = 0;
    let mut got_any = false;
    let previous = std::mem::replace(ubuf, ex.bufs.take());
    ex.bufs.give(previous);
    ubuf.put_bytes(0, HEADROOM);
    let mut pos = HEADROOM;
    let invalid = RespOutcome::Failed(UpstreamFault::Invalid);
    loop {
        match parse_response_at(&ubuf[pos..], &limits, is_head, resp) {
            Ok(Some(n)) if resp.status == 101 => {
                if ex.upgrade.is_some_and(|p| super::accepts_upgrade(resp, p)) {
                    return Ok(pos + n);
                }
                log::warn!("upstream answered 101 to no matching upgrade");
                return Err(invalid);
            }
            Ok(Some(n)) if resp.is_informational() => {
                interim_count += 1;
                if interim_count > MAX_INTERIM {
                    return Err(invalid);
                }
                // ringway answers `Expect: 100-continue` itself (and does not forward it).
                if resp.status != 100 {
                    interim(resp);
                }
                pos += n;
                continue;
            }
            Ok(Some(n)) => return Ok(pos + n),
            Ok(None) => {}
            Err(e) => {
                log::warn!("upstream sent an invalid response head: {e}");
                return Err(if interim_count == 0 {
                    RespOutcome::NoResponse
                } else {
                    invalid
                });
            }
        }
        let buf = std::mem::take(ubuf);
        let spare = (buf.capacity() - buf.len()).max(MIN_BODY_READ);
        match read_some_until(r, buf, spare, ex.head_deadline).await {
            Ok((0, buf)) => {
                *ubuf = buf;
                return Err(if got_any {
                    invalid
                } else {
                    RespOutcome::NoResponse
                });
            }
            Ok((_, buf)) => {
                got_any = true;
                *ubuf = buf;
            }
            Err(IoFail::Timeout) => {
                log::warn!("upstream response head timed out");
                return Err(RespOutcome::Failed(UpstreamFault::ResponseTimeout));
            }
            Err(_) if !got_any => return Err(RespOutcome::NoResponse),
            Err(_) => return Err(invalid),
        }
    }
}

/// Reads the response and relays it to the client through `sink`.
pub(super) async fn respond<K: ResponseSink, C: Stream>(
    r: &mut OwnedReadHalf<C>,
    ubuf: &mut BytesMut,
    resp: &mut ResponseHead,
    sink: &mut K,
    ex: &Exchange<'_>,
) -> RespOutcome {
    let body_start = match read_response_head(r, ubuf, resp, ex, |h| sink.interim(h, ex.cfg)).await
    {
        Ok(at) => at,
        Err(outcome) => return outcome,
    };
    sink.log().response_head(resp.status);
    if resp.status == 101 {
        return RespOutcome::Switched(body_start);
    }
    if ex.retry.is_some_and(|retry| retry(resp.status)) {
        return RespOutcome::Retry(resp.status);
    }
    if ex.cfg.protect.replace_upstream_5xx && (500..=599).contains(&resp.status) {
        // Its body (a stack trace, a framework's page) is never read, let alone relayed:
        // the connection is dropped, never pooled, and the client gets ringway's own page.
        log::debug!(
            "upstream answered {}; sending ringway's own page instead",
            resp.status
        );
        return RespOutcome::Failed(UpstreamFault::Status(resp.status));
    }
    let framing = resp.framing;
    // Bytes beyond a declared body that arrived with the head: the upstream is confused.
    let declared = match framing {
        ResponseFraming::None => Some(0),
        ResponseFraming::Length(n) => Some(n),
        _ => None,
    };
    if declared.is_some_and(|n| (ubuf.len() - body_start) as u64 > n) {
        log::warn!("upstream sent more bytes than its response declared");
        return RespOutcome::Failed(UpstreamFault::Invalid);
    }
    let out = HeadOut {
        cfg: ex.cfg,
        edits: &ex.route.response_edits,
        hsts: ex.hsts,
        close: ex.close || ex.keepalive_off.get() || !ex.body_done.get(),
        head_request: ex.head.is_head(),
        te_trailers: framing == ResponseFraming::Chunked && ex.head.accepts_trailers(),
    };
    let close = sink.start(resp, &out);
    ex.started.set(true);
    sink.log().grpc_status = head_grpc_status(ex, resp);
    // A Content-Length body is relayed from `ubuf` with ringway's head in front of it;
    // other framings decode the body from where it starts.
    let head_len = match framing {
        ResponseFraming::Length(_) => sink.join_head(ubuf, body_start),
        _ => {
            ubuf.advance(body_start);
            0
        }
    };
    let mut relay = Relay {
        r,
        ubuf,
        sink,
        cfg: ex.cfg,
        pipes: ex.pipes,
        stray: false,
    };
    let write = ex.cfg.timeouts.write;
    let end = match framing {
        ResponseFraming::None => match relay.sink.flush(write).await {
            Ok(()) => RelayEnd::Complete,
            Err(_) => RelayEnd::Broken,
        },
        ResponseFraming::Length(n) => relay.length(n, head_len).await,
        ResponseFraming::Chunked => relay.chunked().await,
        ResponseFraming::CloseDelimited => relay.until_close().await,
    };
    let outcome = match end {
        RelayEnd::Complete => RespOutcome::Done {
            // A close-delimited body ended with the connection.
            reusable: framing != ResponseFraming::CloseDelimited
                && resp.keep_alive
                && relay.ubuf.is_empty()
                && !relay.stray,
            close,
        },
        RelayEnd::Broken => RespOutcome::Aborted,
        RelayEnd::NotStarted(fault) => {
            ex.started.set(false);
            RespOutcome::Failed(fault)
        }
    };
    ex.bufs.give(std::mem::take(ubuf));
    outcome
}

/// The gRPC status a response head carries (a trailers-only answer), for a gRPC call;
/// HTTP/1.1 requests cost no look (`is_grpc` asks the version first).
pub(super) fn head_grpc_status(ex: &Exchange<'_>, resp: &ResponseHead) -> Option<u16> {
    if !ex.head.is_grpc() {
        return None;
    }
    resp.header(b"grpc-status")
        .and_then(crate::http::grpc::parse_status)
}

/// Passes one trailer field of a relayed response on, whatever the upstream's protocol:
/// never a hidden (`protect`) or forbidden one; `grpc-status` goes into the access log;
/// sent only to a client that takes trailers.
pub(super) fn relay_trailer<K: ResponseSink>(
    sink: &mut K,
    cfg: &Compiled,
    name: &[u8],
    value: &[u8],
) {
    if cfg.protect.hides(name) || crate::http::head::is_forbidden_trailer(name) {
        return;
    }
    if name.eq_ignore_ascii_case(b"grpc-status") {
        sink.log().grpc_status = crate::http::grpc::parse_status(value);
    }
    if sink.takes_trailers() {
        sink.trailer(name, value);
    }
}

/// Appends more of the response body to `buf`: Ok(0) at EOF; on timeout or error, what a
/// client that has seen nothing yet would be told.
async fn read_more<C: Stream>(
    r: &mut OwnedReadHalf<C>,
    buf: &mut BytesMut,
    spare: usize,
    cfg: &Compiled,
) -> Result<usize, UpstreamFault> {
    let deadline = Instant::now() + cfg.timeouts.upstream_response;
    let b = std::mem::take(buf);
    match read_some_until(r, b, spare, deadline).await {
        Ok((n, b)) => {
            *buf = b;
            Ok(n)
        }
        Err(IoFail::Timeout) => Err(UpstreamFault::ResponseTimeout),
        Err(_) => Err(UpstreamFault::Invalid),
    }
}

/// Least room for a body read into a pooled buffer (which normally has far more).
const MIN_BODY_READ: usize = 16 * 1024;

/// Room left in front of a response read for ringway's own head (see
/// `read_response_head`); a re-serialised head that is longer than the upstream's by more
/// than this is joined to the body by a copy instead.
const HEADROOM: usize = 512;

/// The response body relay: upstream read half -> the front end's sink.
struct Relay<'a, K: ResponseSink, C: Stream> {
    r: &'a mut OwnedReadHalf<C>,
    ubuf: &'a mut BytesMut,
    sink: &'a mut K,
    cfg: &'a Compiled,
    pipes: &'a Pipes,
    /// The upstream sent bytes past the declared body: never reuse it.
    stray: bool,
}

impl<K: ResponseSink, C: Stream> Relay<'_, K, C> {
    /// Reads more of the response body: Ok(0) at EOF, Err on timeout or error.
    async fn read(&mut self) -> Result<usize, UpstreamFault> {
        read_more(self.r, self.ubuf, UPSTREAM_READ, self.cfg).await
    }

    /// Splices the next `len` body bytes to the client; false if they did not all arrive.
    async fn splice(&mut self, pipe: PipePair, len: u64) -> bool {
        let read = ReadLimit::Each(self.cfg.timeouts.upstream_response);
        let write = self.cfg.timeouts.write;
        match self
            .sink
            .splice_from(self.pipes, pipe, self.r, len, read, write)
            .await
        {
            Ok(()) => true,
            Err(SpliceFail::Destination) => false,
            Err(e) => {
                log::warn!("upstream body ended early ({e:?}); aborting client");
                false
            }
        }
    }

    /// A pipe when `remaining` body bytes are worth splicing and one can be had.
    fn splice_pipe(&self, remaining: u64) -> Option<PipePair> {
        if splice::worth(C::SPLICE && K::SPLICE, remaining, self.cfg.splice_threshold) {
            self.pipes.take()
        } else {
            None
        }
    }

    /// Content-Length body. `ubuf` holds ringway's head (`head_len` bytes) followed by the
    /// body bytes that came with the upstream's head: they go out in one write, then the
    /// rest is read into the same buffer and written from it, or spliced when large.
    ///
    /// Unless the whole body came with it, the head waits for the next body bytes, so
    /// that they leave together (nginx's `postpone_output` does the same).
    async fn length(&mut self, len: u64, head_len: usize) -> RelayEnd {
        let mut remaining = len.saturating_sub((self.ubuf.len() - head_len) as u64);
        let write = self.cfg.timeouts.write;
        let pipe = self.splice_pipe(remaining);
        if remaining == 0 || pipe.is_some() {
            if self.sink.send(self.ubuf, write).await.is_err() {
                return RelayEnd::Broken;
            }
            let done = match pipe {
                Some(pipe) => self.splice(pipe, remaining).await,
                None => true,
            };
            return if done {
                RelayEnd::Complete
            } else {
                RelayEnd::Broken
            };
        }
        let mut head_pending = true;
        while remaining > 0 {
            let base = self.ubuf.len();
            let spare = (self.ubuf.capacity() - base).max(MIN_BODY_READ);
            match read_more(self.r, self.ubuf, spare, self.cfg).await {
                Ok(0) if head_pending => {
                    log::warn!("upstream closed before its body; nothing relayed yet");
                    return RelayEnd::NotStarted(UpstreamFault::Invalid);
                }
                Err(fault) if head_pending => {
                    log::warn!("upstream body did not come; nothing relayed yet");
                    return RelayEnd::NotStarted(fault);
                }
                Ok(0) | Err(_) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return RelayEnd::Broken;
                }
                Ok(_) => {}
            }
            if (self.ubuf.len() - base) as u64 > remaining {
                // Stray bytes after the body: send what was declared, never reuse.
                self.ubuf.truncate(base + remaining as usize);
                self.stray = true;
            }
            remaining -= (self.ubuf.len() - base) as u64;
            head_pending = false;
            if self.sink.send(self.ubuf, write).await.is_err() {
                return RelayEnd::Broken;
            }
        }
        RelayEnd::Complete
    }

    /// Chunked upstream body, decoded strictly and handed on as payload. The head goes out
    /// with the chunks that came with it.
    async fn chunked(&mut self) -> RelayEnd {
        let mut dec = ChunkedDecoder::new(MAX_CHUNK_LINE, 64 * 1024);
        if self.sink.takes_trailers() {
            dec = dec.with_trailers();
        }
        let before = self.sink.log().bytes_out;
        let write = self.cfg.timeouts.write;
        loop {
            loop {
                match dec.step(self.ubuf) {
                    Err(_) if self.sink.log().bytes_out == before => {
                        log::warn!("upstream sent bad chunked framing; nothing relayed yet");
                        return RelayEnd::NotStarted(UpstreamFault::Invalid);
                    }
                    Err(_) => {
                        log::warn!("upstream sent bad chunked framing; aborting client");
                        return RelayEnd::Broken;
                    }
                    Ok(ChunkEvent::Data { start, end }) => {
                        self.sink.put(&self.ubuf[start..end]);
                        self.ubuf.advance(end);
                    }
                    Ok(ChunkEvent::NeedMore { consumed }) => {
                        self.ubuf.advance(consumed);
                        break;
                    }
                    Ok(ChunkEvent::Trailer {
                        start,
                        end,
                        consumed,
                    }) => {
                        let line = &self.ubuf[start..end];
                        if let Some(colon) = line.iter().position(|&b| b == b':') {
                            let value = line[colon + 1..].trim_ascii();
                            relay_trailer(self.sink, self.cfg, &line[..colon], value);
                        }
                        self.ubuf.advance(consumed);
                    }
                    Ok(ChunkEvent::Done { consumed }) => {
                        self.ubuf.advance(consumed);
                        self.sink.end();
                        return match self.sink.flush(write).await {
                            Ok(()) => RelayEnd::Complete,
                            Err(_) => RelayEnd::Broken,
                        };
                    }
                }
            }
            let pending = dec.pending_data();
            if let Some(pipe) = self.splice_pipe(pending) {
                // One run for the whole rest of this payload, spliced between our framing.
                self.sink.begin_run(pending);
                if self.sink.flush(write).await.is_err() || !self.splice(pipe, pending).await {
                    return RelayEnd::Broken;
                }
                dec.skip_data(pending);
                self.sink.end_run();
                continue;
            }
            // A lone chunk terminator waits for the next write instead of costing its own.
            if !self.sink.is_empty()
                && !self.sink.holds_framing_only()
                && self.sink.flush(write).await.is_err()
            {
                return RelayEnd::Broken;
            }
            match self.read().await {
                Ok(0) | Err(_) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return RelayEnd::Broken;
                }
                Ok(_) => {}
            }
        }
    }

    /// Close-delimited upstream body: handed on as it comes until the upstream closes.
    async fn until_close(&mut self) -> RelayEnd {
        let write = self.cfg.timeouts.write;
        loop {
            if !self.ubuf.is_empty() {
                self.sink.put(self.ubuf);
                self.ubuf.clear();
            }
            if !self.sink.is_empty() && self.sink.flush(write).await.is_err() {
                return RelayEnd::Broken;
            }
            match self.read().await {
                Ok(0) => {
                    self.sink.end();
                    return match self.sink.flush(write).await {
                        Ok(()) => RelayEnd::Complete,
                        Err(_) => RelayEnd::Broken,
                    };
                }
                Ok(_) => {}
                Err(_) => return RelayEnd::Broken,
            }
        }
    }
}
