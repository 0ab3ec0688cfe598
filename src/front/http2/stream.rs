//! One HTTP/2 stream as the pipeline's `Front`: its request body comes from DATA frames
//! (`Body`: the flow-control window is released only once the upstream took the bytes, so a
//! slow upstream holds the client back), its response goes out as HEADERS and DATA frames
//! (`Sink`: each DATA frame waits for window capacity within `timeouts.write`, so a client
//! that stops reading holds the upstream back, and nothing buffers without bound).

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use monoio::io::OwnedWriteHalf;

use crate::accesslog::RequestLog;
use crate::compiled::Compiled;
use crate::http::canned::{self, Canned};
use crate::http::chunked::{put_chunk_header, CHUNK_END, LAST_CHUNK};
use crate::http::{BodyFraming, ParseError, RequestHead, ResponseFraming, ResponseHead, Version};
use crate::io::deadline::BodyDeadline;
use crate::io::{IoFail, Stream, UpConn};
use crate::pipeline::forward::{self, FieldWriter, OutFraming, ResponseCtx};
use crate::pipeline::{
    flush_upstream, BodySource, ClientFault, Front, HeadOut, Next, Payload, Pump, ResponseSink,
    SendFail, Tunnel,
};

/// DATA at least this large that does not end its stream is handed to the codec without a
/// copy.
const ZERO_COPY_FROM: usize = 16 * 1024;

/// Where a stream's response stands.
pub(super) enum Send {
    /// No head sent yet.
    Head(SendResponse<Bytes>),
    /// The head went out; DATA follows.
    Body(SendStream<Bytes>),
    /// The stream ended (or was never answered).
    Done,
}

impl Send {
    /// Resolves with the reason when the client resets the stream.
    pub(super) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        let r = match self {
            Send::Head(h) => h.poll_reset(cx),
            Send::Body(b) => b.poll_reset(cx),
            Send::Done => return Poll::Pending,
        };
        r.map(|r| r.unwrap_or(Reason::CANCEL))
    }
}

/// The stream's two directions, as the pipeline's front end.
pub(super) struct H2 {
    pub(super) body: Body,
    pub(super) sink: Sink,
}

impl Front for H2 {
    type Body = Body;
    type Sink = Sink;

    async fn forwarding(&mut self, head: &RequestHead, _write: Duration) -> Result<(), IoFail> {
        if head.expect_continue && head.framing != BodyFraming::None {
            let mut send = self.sink.send.borrow_mut();
            if let Send::Head(h) = &mut *send {
                let continue_100 = Response::builder()
                    .status(StatusCode::CONTINUE)
                    .body(())
                    .map_err(|_| IoFail::Eof)?;
                send_interim(h, continue_100).map_err(|_| IoFail::Eof)?;
            }
        }
        Ok(())
    }

    fn body(&mut self) -> &mut Body {
        &mut self.body
    }

    fn sink(&mut self) -> &mut Sink {
        &mut self.sink
    }

    fn split(&mut self) -> (&mut Body, &mut Sink) {
        (&mut self.body, &mut self.sink)
    }

    async fn tunnel<U: Stream>(&mut self, _conn: &mut UpConn<U>, _t: Tunnel<'_>) -> Next {
        // An HTTP/2 request never carries an upgrade (connection-specific fields are
        // refused), so no 101 is ever accepted for one.
        Next::Close
    }
}

/// A request body arriving as DATA frames.
pub(super) struct Body {
    recv: RecvStream,
    framing: BodyFraming,
    limit: u64,
    received: u64,
    /// Bytes handed out by `next_payload` whose window is not released yet.
    unreleased: usize,
}

impl Body {
    pub(super) fn new(recv: RecvStream) -> Body {
        Body {
            recv,
            framing: BodyFraming::None,
            limit: 0,
            received: 0,
            unreleased: 0,
        }
    }

    /// Takes the next DATA frame's payload within the body's deadline, counting it
    /// against the limits; None at the end of the body (its length checked).
    async fn take(&mut self, deadline: BodyDeadline) -> Result<Option<Bytes>, SendFail> {
        let declared = match self.framing {
            BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let at = deadline.at(self.received);
        let data = match monoio::time::timeout_at(at.into(), self.next()).await {
            Err(_) => return Err(SendFail::Client(ClientFault::BodyTimeout)),
            Ok(None) => {
                if declared.is_some_and(|d| self.received != d) {
                    return Err(SendFail::Client(ClientFault::Body(ParseError::Bad(
                        "DATA shorter than content-length",
                    ))));
                }
                return Ok(None);
            }
            Ok(Some(Err(_))) => return Err(SendFail::ClientGone),
            Ok(Some(Ok(data))) => data,
        };
        self.received += data.len() as u64;
        if self.limit > 0 && self.received > self.limit {
            return Err(SendFail::Client(ClientFault::BodyTooLarge));
        }
        if declared.is_some_and(|d| self.received > d) {
            return Err(SendFail::Client(ClientFault::Body(ParseError::Bad(
                "DATA beyond content-length",
            ))));
        }
        Ok(Some(data))
    }

    /// The next DATA frame's payload (None at END_STREAM), its window released at once
    /// only for what the caller has taken (see `pump`).
    async fn next(&mut self) -> Option<Result<Bytes, h2::Error>> {
        poll_fn(|cx| self.recv.poll_data(cx)).await
    }
}

impl BodySource for Body {
    fn begin(&mut self, framing: BodyFraming, limit: u64, _max_trailer: usize) {
        self.framing = framing;
        self.limit = limit;
    }

    fn stage(&mut self, _out: &mut BytesMut) -> Result<(), SendFail> {
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.framing == BodyFraming::None
    }

    async fn pump<U: Stream>(
        &mut self,
        out: &mut BytesMut,
        w: &mut OwnedWriteHalf<U>,
        p: Pump<'_>,
    ) -> Result<(), SendFail> {
        let chunked = self.framing == BodyFraming::Chunked;
        while let Some(data) = self.take(p.deadline).await? {
            let n = data.len();
            if n == 0 {
                continue;
            }
            if chunked {
                put_chunk_header(n, out);
            }
            out.extend_from_slice(&data);
            if chunked {
                out.extend_from_slice(CHUNK_END);
            }
            flush_upstream(w, out, p.write).await?;
            // The upstream took these bytes: the client may send as many more.
            let _ = self.recv.flow_control().release_capacity(n);
        }
        if chunked {
            out.extend_from_slice(LAST_CHUNK);
            flush_upstream(w, out, p.write).await?;
        }
        Ok(())
    }

    fn relayed(&self, _framing: BodyFraming) -> u64 {
        self.received
    }

    async fn next_payload(&mut self, deadline: BodyDeadline) -> Result<Payload, SendFail> {
        // The piece handed out before has been delivered.
        if self.unreleased > 0 {
            let _ = self.recv.flow_control().release_capacity(self.unreleased);
            self.unreleased = 0;
        }
        if self.framing == BodyFraming::None {
            return Ok(Payload::End(None));
        }
        loop {
            match self.take(deadline).await? {
                Some(data) if data.is_empty() => continue,
                Some(data) => {
                    self.unreleased = data.len();
                    return Ok(Payload::Data(data));
                }
                None => break,
            }
        }
        // Trailer fields, if the client sent any (the stream has ended: no wait).
        let trailers = match poll_fn(|cx| self.recv.poll_trailers(cx)).await {
            Ok(Some(map)) => map,
            Ok(None) => return Ok(Payload::End(None)),
            Err(_) => return Err(SendFail::ClientGone),
        };
        let mut kept = HeaderMap::new();
        for (name, value) in &trailers {
            if let Some((n, v)) = crate::pipeline::trailer_field(name.as_ref(), value.as_bytes()) {
                kept.append(n, v);
            }
        }
        Ok(Payload::End((!kept.is_empty()).then_some(kept)))
    }
}

/// Sends a 1xx interim response on a stream that is still open. The codec's
/// `send_informational` queues the frame whatever the stream's state, even after the codec
/// itself reset the stream (a request body shorter than its content-length), so the state
/// is asked first. (Asking registers a no-op waker for the stream; the stream's reset
/// watcher, polled in the same task right after, registers the task's own again.)
fn send_interim(h: &mut SendResponse<Bytes>, head: Response<()>) -> Result<(), h2::Error> {
    let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
    let mut cx = Context::from_waker(&waker);
    if let Poll::Ready(reset) = h.poll_reset(&mut cx) {
        return Err(match reset {
            Ok(reason) => reason.into(),
            Err(e) => e,
        });
    }
    h.send_informational(head)
}

/// A waker that wakes nothing (`send_interim` only asks).
struct NoWake;

impl std::task::Wake for NoWake {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// Collects response fields into an HTTP/2 header list (names lowercased; a field whose
/// name or value HTTP/2 cannot carry is left out).
struct Fields {
    map: HeaderMap,
    name: Option<HeaderName>,
    value: Vec<u8>,
}

impl FieldWriter for Fields {
    fn begin(&mut self, name: &[u8]) {
        self.name = HeaderName::from_bytes(name).ok();
        self.value.clear();
    }
    fn part(&mut self, value: &[u8]) {
        self.value.extend_from_slice(value);
    }
    fn end(&mut self) {
        if let (Some(name), Ok(value)) = (self.name.take(), HeaderValue::from_bytes(&self.value)) {
            self.map.append(name, value);
        }
    }
}

/// A stream's response: HEADERS, then DATA under flow control.
pub(super) struct Sink {
    pub(super) send: Rc<RefCell<Send>>,
    log: RequestLog,
    /// Payload queued by `put`, sent on `flush`.
    pending: BytesMut,
    /// Content-Length body bytes still to send: the frame that sends the last ends the
    /// stream.
    remaining: Option<u64>,
    /// The body ended (`end`): the next flush ends the stream.
    ended: bool,
    /// Trailer fields of a chunked upstream body, sent after its last DATA.
    trailers: Option<HeaderMap>,
}

impl Sink {
    pub(super) fn new(send: Rc<RefCell<Send>>) -> Sink {
        Sink {
            send,
            log: RequestLog::default(),
            pending: BytesMut::new(),
            remaining: None,
            ended: false,
            trailers: None,
        }
    }

    /// Sends the head; the stream ends with it when `end_stream`.
    fn send_head(&mut self, head: Response<()>, end_stream: bool) -> Result<(), IoFail> {
        let mut send = self.send.borrow_mut();
        let Send::Head(h) = &mut *send else {
            return Err(IoFail::Eof);
        };
        match h.send_response(head, end_stream) {
            Ok(stream) if !end_stream => *send = Send::Body(stream),
            Ok(_) => *send = Send::Done,
            Err(e) => return Err(IoFail::Io(std::io::Error::other(e))),
        }
        Ok(())
    }

    /// Sends `data` as DATA frames, each within the window the client granted (waiting
    /// for it up to `write`), ending the stream after it when `end_stream`.
    async fn send_data(
        &mut self,
        mut data: Bytes,
        end_stream: bool,
        write: Duration,
    ) -> Result<(), IoFail> {
        self.log.bytes_out += data.len() as u64;
        loop {
            if data.is_empty() {
                if end_stream {
                    self.with_body(|s| s.send_data(Bytes::new(), true))?;
                    *self.send.borrow_mut() = Send::Done;
                }
                return Ok(());
            }
            let want = data.len();
            self.with_body(|s| {
                s.reserve_capacity(want);
                Ok(())
            })?;
            let send = &self.send;
            let granted = poll_fn(|cx| match &mut *send.borrow_mut() {
                Send::Body(s) => s.poll_capacity(cx),
                _ => Poll::Ready(None),
            });
            let n = match monoio::time::timeout(write, granted).await {
                Err(_) => {
                    self.with_body(|s| {
                        s.send_reset(Reason::CANCEL);
                        Ok(())
                    })?;
                    return Err(IoFail::Timeout);
                }
                Ok(None) => return Err(IoFail::Eof),
                Ok(Some(Err(e))) => return Err(IoFail::Io(std::io::Error::other(e))),
                Ok(Some(Ok(n))) => n,
            };
            if n == 0 {
                continue;
            }
            let chunk = data.split_to(n.min(data.len()));
            let last = end_stream && data.is_empty();
            self.with_body(|s| s.send_data(chunk, last))?;
            if last {
                *self.send.borrow_mut() = Send::Done;
                return Ok(());
            }
        }
    }

    fn with_body(
        &self,
        f: impl FnOnce(&mut SendStream<Bytes>) -> Result<(), h2::Error>,
    ) -> Result<(), IoFail> {
        match &mut *self.send.borrow_mut() {
            Send::Body(s) => f(s).map_err(|e| IoFail::Io(std::io::Error::other(e))),
            _ => Err(IoFail::Eof),
        }
    }
}

impl Fields {
    fn new() -> Fields {
        Fields {
            map: HeaderMap::new(),
            name: None,
            value: Vec::new(),
        }
    }
}

impl ResponseSink for Sink {
    fn takes_trailers(&self) -> bool {
        true
    }

    fn log(&mut self) -> &mut RequestLog {
        &mut self.log
    }

    async fn answer(&mut self, a: &Canned<'_>, write: Duration) -> Result<(), IoFail> {
        let mut fields = Fields::new();
        if let Some(server) = a.server {
            fields.field(b"server", server);
        }
        let reason = canned::reason(a.status);
        let default_body;
        let bodiless = a.status == 204 || a.status == 304 || a.status < 200;
        let body: &[u8] = match a.body {
            Some(b) => b,
            None => {
                default_body = format!("{} {reason}\n", a.status);
                default_body.as_bytes()
            }
        };
        if !bodiless {
            fields.field(
                b"content-type",
                a.content_type.unwrap_or(b"text/plain; charset=utf-8"),
            );
            // An empty body is a HEADERS frame that ends the stream: nothing to count
            // (a gRPC answer's trailers-only form). A HEAD answer says what GET would send.
            if !body.is_empty() || a.head_only {
                fields.field(b"content-length", body.len().to_string().as_bytes());
            }
        }
        for (name, value) in a.extra {
            fields.field(name, value);
        }
        let mut head = Response::new(());
        *head.status_mut() = StatusCode::from_u16(a.status).map_err(|_| IoFail::Eof)?;
        *head.headers_mut() = fields.map;
        let no_body = bodiless || a.head_only || body.is_empty();
        self.send_head(head, no_body)?;
        if !no_body {
            self.send_data(Bytes::copy_from_slice(body), true, write)
                .await?;
        }
        Ok(())
    }

    fn start(&mut self, resp: &ResponseHead, out: &HeadOut<'_>) -> bool {
        let status = resp.status;
        let no_body = out.head_request || status == 204 || status == 304;
        let (framing, remaining) = match resp.framing {
            _ if no_body => (OutFraming::HeadersOnly, None),
            ResponseFraming::None => (OutFraming::Length(0), Some(0)),
            ResponseFraming::Length(n) => (OutFraming::Length(n), Some(n)),
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited => (OutFraming::None, None),
        };
        self.remaining = remaining;
        self.ended = false;
        self.trailers = None;
        let ctx = ResponseCtx {
            cfg: out.cfg,
            edits: out.edits,
            framing,
            close: false,
            client_version: Version::Http2,
            hsts: out.hsts,
            upgrade: None,
        };
        let mut fields = Fields::new();
        forward::response_fields(&mut fields, resp, &ctx, |w| {
            // An empty body is the HEADERS frame ending the stream: nothing to count (a
            // gRPC trailers-only answer carries no content-length).
            if let OutFraming::Length(n @ 1..) = framing {
                w.field(b"content-length", n.to_string().as_bytes());
            }
        });
        let mut head = Response::new(());
        match StatusCode::from_u16(status) {
            Ok(s) => *head.status_mut() = s,
            Err(_) => {
                // The parser only lets 100-999 through; HTTP/2 carries the same range.
                *head.status_mut() = StatusCode::BAD_GATEWAY;
            }
        }
        *head.headers_mut() = fields.map;
        let end_stream = no_body || remaining == Some(0);
        // A failed send shows at the first flush or send (the stream is gone).
        let _ = self.send_head(head, end_stream);
        false
    }

    fn join_head(&mut self, buf: &mut BytesMut, at: usize) -> usize {
        bytes::Buf::advance(buf, at);
        0
    }

    fn put(&mut self, payload: &[u8]) {
        self.pending.extend_from_slice(payload);
    }

    fn begin_run(&mut self, _len: u64) {}

    fn end_run(&mut self) {}

    fn end(&mut self) {
        self.ended = true;
    }

    fn trailer(&mut self, name: &[u8], value: &[u8]) {
        // (Connection-specific fields never get here: `http::head::is_forbidden_trailer`.)
        // A name or value HTTP/2 cannot carry is left out.
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            self.trailers
                .get_or_insert_with(HeaderMap::new)
                .append(name, value);
        }
    }

    fn interim(&mut self, resp: &ResponseHead, cfg: &Compiled) {
        let Ok(status) = StatusCode::from_u16(resp.status) else {
            return;
        };
        let mut fields = Fields::new();
        forward::interim_fields(&mut fields, resp, cfg);
        let mut head = Response::new(());
        *head.status_mut() = status;
        *head.headers_mut() = fields.map;
        if let Send::Head(h) = &mut *self.send.borrow_mut() {
            // A stream already gone shows at the final head.
            let _ = send_interim(h, head);
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty() && !self.ended
    }

    fn holds_framing_only(&self) -> bool {
        false
    }

    async fn flush(&mut self, write: Duration) -> Result<(), IoFail> {
        if matches!(*self.send.borrow(), Send::Done) {
            return if self.pending.is_empty() {
                Ok(())
            } else {
                Err(IoFail::Eof)
            };
        }
        // A copy, exactly sized: the codec keeps the last frame it wrote until the next one,
        // and a share of a larger buffer would keep all of it alive on an idle connection.
        let data = Bytes::copy_from_slice(&self.pending);
        self.pending.clear();
        let end_stream = self.ended;
        self.ended = false;
        match self.trailers.take() {
            Some(trailers) if end_stream => {
                self.send_data(data, false, write).await?;
                self.with_body(|s| s.send_trailers(trailers))?;
                *self.send.borrow_mut() = Send::Done;
                Ok(())
            }
            _ => self.send_data(data, end_stream, write).await,
        }
    }

    async fn send(&mut self, buf: &mut BytesMut, write: Duration) -> Result<(), IoFail> {
        if !self.pending.is_empty() {
            self.flush(write).await?;
        }
        let end_stream = match &mut self.remaining {
            Some(r) => {
                *r = r.saturating_sub(buf.len() as u64);
                *r == 0
            }
            None => false,
        };
        // A large run that does not end the stream goes to the codec without a copy; the
        // last one, and small ones, are copied for the same reason as in `flush` (and leave
        // the pooled body buffer whole, for its pool).
        let data = if !end_stream && buf.len() >= ZERO_COPY_FROM {
            buf.split().freeze()
        } else {
            let data = Bytes::copy_from_slice(buf);
            buf.clear();
            data
        };
        self.send_data(data, end_stream, write).await
    }
}
