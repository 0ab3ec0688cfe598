//! The response on its way to the client: the strictly parsed head (1xx skipped, stray
//! bytes refused, a 101 refused unless it accepts the upgrade that was forwarded, which
//! hands the connection to `tunnel`), the re-serialised head, and the body relay with the
//! framing the client needs. Decides whether the upstream connection may be pooled afterwards.

use std::cell::Cell;
use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use monoio::io::OwnedReadHalf;

use super::forward::{self, OutFraming, ResponseCtx};
use super::request_body::MAX_CHUNK_LINE;
use super::{ClientOut, MAX_INTERIM, UPSTREAM_READ};
use crate::compiled::{Compiled, Route};
use crate::http::chunked::{put_chunk_header, ChunkEvent, ChunkedDecoder, CHUNK_END, LAST_CHUNK};
use crate::http::response::parse_response_at;
use crate::http::{Limits, RequestHead, ResponseFraming, ResponseHead, Version};
use crate::io::bufs::BodyBufs;
use crate::io::splice::{self, PipePair, Pipes, ReadLimit, SpliceFail};
use crate::io::{read_some_until, IoFail, Stream};

/// How the response exchange ended.
pub(super) enum RespOutcome {
    /// The whole response reached the client; `reusable` if the upstream may be pooled.
    Done { reusable: bool, close: bool },
    /// Nothing reached the client yet: answer this status.
    Failed(u16),
    /// No response came: the upstream closed or reset before sending a byte, or its first
    /// bytes were no response head. On a reused connection that is a stale keep-alive
    /// (closed while idle, or holding leftovers of an earlier answer such as bytes past its
    /// declared length, which only show up once the next request reads them).
    NoResponse,
    /// Response bytes reached the client and then something failed: abort the client.
    Aborted,
    /// The head's status is one the route retries on; nothing reached the client.
    Retry(u16),
    /// The upstream switched protocols (a 101 accepting the requested upgrade, in `resp`);
    /// nothing was sent to the client yet, and the upstream's bytes after its head start
    /// at this offset of `ubuf`. The tunnel takes over (see `tunnel`).
    Switched(usize),
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
    pub(super) keepalive_off: super::Closing<'a>,
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

/// Reads the final response head into `resp`, skipping 1xx interim responses, and returns
/// where the body starts in `ubuf`.
///
/// `ubuf` becomes a pooled body buffer (see `bufs`) whose first `HEADROOM` bytes are left
/// free: the head and, usually, the whole body of a response up to 64 KiB arrive in one
/// read, and ringway's own head is later written into the room just in front of the body,
/// so head and body leave in one write with no copy of the body.
pub(super) async fn read_response_head<C: Stream>(
    r: &mut OwnedReadHalf<C>,
    ubuf: &mut BytesMut,
    resp: &mut ResponseHead,
    ex: &Exchange<'_>,
) -> Result<usize, RespOutcome> {
    let limits = upstream_limits(ex.cfg);
    let is_head = ex.head.is_head();
    let mut interim = 0;
    let mut got_any = false;
    let previous = std::mem::replace(ubuf, ex.bufs.take());
    ex.bufs.give(previous);
    ubuf.put_bytes(0, HEADROOM);
    let mut pos = HEADROOM;
    loop {
        match parse_response_at(&ubuf[pos..], &limits, is_head, resp) {
            Ok(Some(n)) if resp.status == 101 => {
                if ex.upgrade.is_some_and(|p| super::tunnel::accepts(resp, p)) {
                    return Ok(pos + n);
                }
                log::warn!("upstream answered 101 to no matching upgrade");
                return Err(RespOutcome::Failed(502));
            }
            Ok(Some(n)) if resp.is_informational() => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(RespOutcome::Failed(502));
                }
                pos += n;
                continue;
            }
            Ok(Some(n)) => return Ok(pos + n),
            Ok(None) => {}
            Err(e) => {
                log::warn!("upstream sent an invalid response head: {e}");
                return Err(if interim == 0 {
                    RespOutcome::NoResponse
                } else {
                    RespOutcome::Failed(502)
                });
            }
        }
        let buf = std::mem::take(ubuf);
        let spare = (buf.capacity() - buf.len()).max(MIN_BODY_READ);
        match read_some_until(r, buf, spare, ex.head_deadline).await {
            Ok((0, buf)) => {
                *ubuf = buf;
                return Err(if got_any {
                    RespOutcome::Failed(502)
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
                return Err(RespOutcome::Failed(504));
            }
            Err(_) if !got_any => return Err(RespOutcome::NoResponse),
            Err(_) => return Err(RespOutcome::Failed(502)),
        }
    }
}

/// Reads the response and relays it to the client.
pub(super) async fn respond<S: Stream, C: Stream>(
    r: &mut OwnedReadHalf<C>,
    ubuf: &mut BytesMut,
    resp: &mut ResponseHead,
    cout: &mut ClientOut<S>,
    ex: &Exchange<'_>,
) -> RespOutcome {
    let body_start = match read_response_head(r, ubuf, resp, ex).await {
        Ok(at) => at,
        Err(outcome) => return outcome,
    };
    cout.log.response_head(resp.status);
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
        return RespOutcome::Failed(resp.status);
    }
    let client_v = ex.head.version;
    let mut close = ex.close || ex.keepalive_off.get() || !ex.body_done.get();
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
    if declared.is_some_and(|n| (ubuf.len() - body_start) as u64 > n) {
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
        hsts: ex.hsts,
        upgrade: None,
    };
    forward::response_head(&mut cout.buf, resp, &ctx);
    ex.started.set(true);
    // A Content-Length body is relayed from `ubuf` with ringway's head in front of it
    // (written into the room before the body, or, if it does not fit, with the body bytes
    // copied behind it); other framings decode the body from where it starts.
    let mut head_len = 0;
    if let ResponseFraming::Length(_) = framing {
        head_len = cout.buf.len();
        if head_len <= body_start {
            let at = body_start - head_len;
            ubuf[at..body_start].copy_from_slice(&cout.buf);
            ubuf.advance(at);
        } else {
            cout.buf.put_slice(&ubuf[body_start..]);
            ubuf.clear();
            ubuf.put_slice(&cout.buf);
        }
        cout.buf.clear();
    } else {
        ubuf.advance(body_start);
    }
    let mut relay = Relay {
        r,
        ubuf,
        cout,
        cfg: ex.cfg,
        pipes: ex.pipes,
        out,
        stray: false,
    };
    let outcome = match framing {
        ResponseFraming::None => finished(relay.cout.flush(ex.cfg.timeouts.write).await.is_ok()),
        ResponseFraming::Length(n) => relayed(relay.length(n, head_len).await, ex),
        ResponseFraming::Chunked => relayed(relay.chunked().await, ex),
        // Never pooled: the upstream ends this body by closing.
        ResponseFraming::CloseDelimited if relay.until_close().await => RespOutcome::Done {
            reusable: false,
            close,
        },
        ResponseFraming::CloseDelimited => RespOutcome::Aborted,
    };
    let outcome = match outcome {
        RespOutcome::Done { reusable, .. } => RespOutcome::Done {
            reusable: reusable && resp.keep_alive && relay.ubuf.is_empty() && !relay.stray,
            close,
        },
        other => other,
    };
    ex.bufs.give(std::mem::take(ubuf));
    outcome
}

/// The outcome of a relay that ran to its end (`clean`) or broke after the head went out;
/// `respond` then fills in whether the upstream may be pooled and the client closed.
fn finished(clean: bool) -> RespOutcome {
    if clean {
        RespOutcome::Done {
            reusable: true,
            close: false,
        }
    } else {
        RespOutcome::Aborted
    }
}

/// The outcome of a relay that may break before anything reached the client: then
/// (`Err(status)`) the client gets an answer of ringway's own instead of a cut connection.
fn relayed(relay: Result<bool, u16>, ex: &Exchange<'_>) -> RespOutcome {
    match relay {
        Ok(clean) => finished(clean),
        Err(status) => {
            ex.started.set(false);
            RespOutcome::Failed(status)
        }
    }
}

/// Appends more of the response body to `buf`: Ok(0) at EOF; on timeout or error, the
/// status a client that has seen nothing yet would get (504 or 502).
async fn read_more<C: Stream>(
    r: &mut OwnedReadHalf<C>,
    buf: &mut BytesMut,
    spare: usize,
    cfg: &Compiled,
) -> Result<usize, u16> {
    let deadline = Instant::now() + cfg.timeouts.upstream_response;
    let b = std::mem::take(buf);
    match read_some_until(r, b, spare, deadline).await {
        Ok((n, b)) => {
            *buf = b;
            Ok(n)
        }
        Err(IoFail::Timeout) => Err(504),
        Err(_) => Err(502),
    }
}

/// Least room for a body read into a pooled buffer (which normally has far more).
const MIN_BODY_READ: usize = 16 * 1024;

/// Room left in front of a response read for ringway's own head (see
/// `read_response_head`); a re-serialised head that is longer than the upstream's by more
/// than this is joined to the body by a copy instead.
const HEADROOM: usize = 512;

/// The response body relay: upstream read half -> client write half.
pub(super) struct Relay<'a, S: Stream, C: Stream> {
    r: &'a mut OwnedReadHalf<C>,
    ubuf: &'a mut BytesMut,
    cout: &'a mut ClientOut<S>,
    cfg: &'a Compiled,
    pipes: &'a Pipes,
    out: OutFraming,
    /// The upstream sent bytes past the declared body: never reuse it.
    stray: bool,
}

impl<S: Stream, C: Stream> Relay<'_, S, C> {
    /// Reads more of the response body: Ok(0) at EOF, Err on timeout or error.
    async fn read(&mut self) -> Result<usize, u16> {
        read_more(self.r, self.ubuf, UPSTREAM_READ, self.cfg).await
    }

    /// Splices the next `len` body bytes to the client; false if they did not all arrive.
    async fn splice(&mut self, pipe: PipePair, len: u64) -> bool {
        let read = ReadLimit::Each(self.cfg.timeouts.upstream_response);
        let write = self.cfg.timeouts.write;
        match splice::relay(self.pipes, pipe, self.r, &mut self.cout.w, len, read, write).await {
            Ok(()) => {
                self.cout.log.bytes_out += len;
                true
            }
            Err(SpliceFail::Destination) => {
                self.cout.abandoned = true;
                false
            }
            Err(e) => {
                log::warn!("upstream body ended early ({e:?}); aborting client");
                false
            }
        }
    }

    /// A pipe when `remaining` body bytes are worth splicing and one can be had.
    fn splice_pipe(&self, remaining: u64) -> Option<PipePair> {
        if splice::worth_it::<C, S>(remaining, self.cfg.splice_threshold) {
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
    /// that they leave together (nginx's `postpone_output` does the same). Ok(false): the
    /// relay broke after bytes reached the client; Err(status): it broke before any did.
    async fn length(&mut self, len: u64, head_len: usize) -> Result<bool, u16> {
        let mut remaining = len.saturating_sub((self.ubuf.len() - head_len) as u64);
        let write = self.cfg.timeouts.write;
        let pipe = self.splice_pipe(remaining);
        if remaining == 0 || pipe.is_some() {
            if self.write_ubuf(write).await.is_err() {
                return Ok(false);
            }
            return Ok(match pipe {
                Some(pipe) => self.splice(pipe, remaining).await,
                None => true,
            });
        }
        let mut head_pending = true;
        while remaining > 0 {
            let base = self.ubuf.len();
            let spare = (self.ubuf.capacity() - base).max(MIN_BODY_READ);
            match read_more(self.r, self.ubuf, spare, self.cfg).await {
                Ok(0) if head_pending => {
                    log::warn!("upstream closed before its body; nothing relayed yet");
                    return Err(502);
                }
                Err(status) if head_pending => {
                    log::warn!("upstream body did not come; nothing relayed yet");
                    return Err(status);
                }
                Ok(0) | Err(_) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return Ok(false);
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
            if self.write_ubuf(write).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes all of `ubuf` to the client and empties it.
    async fn write_ubuf(&mut self, write: std::time::Duration) -> Result<(), ()> {
        self.cout.send(self.ubuf, write).await.map_err(|_| ())
    }

    /// Chunked upstream body, decoded strictly and re-framed for the client. The head goes
    /// out with the chunks that came with it. Ok(false): the relay broke after bytes
    /// reached the client; Err(502): bad framing before any did.
    async fn chunked(&mut self) -> Result<bool, u16> {
        let mut dec = ChunkedDecoder::new(MAX_CHUNK_LINE, 64 * 1024);
        let before = self.cout.log.bytes_out;
        loop {
            loop {
                match dec.step(self.ubuf) {
                    Err(_) if self.cout.log.bytes_out == before => {
                        log::warn!("upstream sent bad chunked framing; nothing relayed yet");
                        return Err(502);
                    }
                    Err(_) => {
                        log::warn!("upstream sent bad chunked framing; aborting client");
                        return Ok(false);
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
                        return Ok(self.cout.flush(self.cfg.timeouts.write).await.is_ok());
                    }
                }
            }
            let pending = dec.pending_data();
            if let Some(pipe) = self.splice_pipe(pending) {
                // One chunk for the whole rest of this payload, spliced between our lines.
                if self.out == OutFraming::Chunked {
                    put_chunk_header(pending as usize, &mut self.cout.buf);
                }
                if self.cout.flush(self.cfg.timeouts.write).await.is_err()
                    || !self.splice(pipe, pending).await
                {
                    return Ok(false);
                }
                dec.skip_data(pending);
                if self.out == OutFraming::Chunked {
                    self.cout.buf.put_slice(CHUNK_END);
                }
                continue;
            }
            // A lone chunk terminator waits for the next write instead of costing its own.
            let only_crlf = self.cout.buf[..] == *CHUNK_END;
            if !self.cout.buf.is_empty()
                && !only_crlf
                && self.cout.flush(self.cfg.timeouts.write).await.is_err()
            {
                return Ok(false);
            }
            match self.read().await {
                Ok(0) | Err(_) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return Ok(false);
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
                Err(_) => return false,
            }
        }
    }
}
