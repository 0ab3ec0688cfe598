//! The contract between a front end (the protocol a client speaks) and the request's life.
//! A front end turns what arrives into a protocol-neutral `RequestHead`, then hands the
//! pipeline a `Front`: where the request body comes from (`BodySource`) and where the
//! response goes (`ResponseSink`). Every phase of the pipeline is written against these
//! traits only, so HTTP/1.1 and HTTP/2 clients share routing, policy, forwarding, relaying,
//! logging and metrics. The HTTP/1.1 front end (`front::http1`) is the first implementation;
//! its methods are monomorphised into the pipeline, so the abstraction costs nothing there.

use std::time::Duration;

use bytes::BytesMut;
use monoio::io::{OwnedReadHalf, OwnedWriteHalf};

use crate::accesslog::RequestLog;
use crate::compiled::{Compiled, HeaderEdits};
use crate::http::canned::Canned;
use crate::http::{BodyFraming, RequestHead, ResponseHead};
use crate::io::deadline::BodyDeadline;
use crate::io::splice::{PipePair, Pipes, ReadLimit, SpliceFail};
use crate::io::{IoFail, Stream, UpConn};

use super::outcome::{ClientFault, Next};

/// Why sending the request upstream did not complete.
#[derive(Debug)]
pub enum SendFail {
    /// Writing to the upstream failed.
    Upstream,
    /// The client went away mid-body: nobody is left to answer.
    ClientGone,
    /// The client broke the body rules: this is the answer (the connection then closes).
    Client(ClientFault),
}

/// One client connection as the request's life sees it.
#[allow(async_fn_in_trait)]
pub trait Front {
    type Body: BodySource;
    type Sink: ResponseSink;

    /// The request in `head` is about to be forwarded and its body read (HTTP/1.1
    /// answers `Expect: 100-continue` here). Err: the client is gone.
    async fn forwarding(&mut self, head: &RequestHead, write: Duration) -> Result<(), IoFail>;

    fn body(&mut self) -> &mut Self::Body;
    fn sink(&mut self) -> &mut Self::Sink;
    /// Both at once: the body streams upstream while the response comes back.
    fn split(&mut self) -> (&mut Self::Body, &mut Self::Sink);

    /// Takes over after an upstream's `101` that accepts the upgrade the request asked for
    /// (`resp`; the upstream's bytes after its head start at `at` in `ubuf`): relays bytes
    /// both ways until the tunnel ends. Only a front end whose requests carry an upgrade
    /// (`RequestHead::upgrade`) ever gets here.
    async fn tunnel<U: Stream>(&mut self, conn: &mut UpConn<U>, t: Tunnel<'_>) -> Next;
}

/// What a tunnel starts from.
pub struct Tunnel<'a> {
    pub cfg: &'a Compiled,
    pub edits: &'a HeaderEdits,
    pub hsts: Option<&'a [u8]>,
    pub resp: &'a ResponseHead,
    /// The upstream's bytes received with and after its head.
    pub ubuf: &'a mut BytesMut,
    pub at: usize,
    pub pipes: &'a Pipes,
}

/// Where a request body comes from.
#[allow(async_fn_in_trait)]
pub trait BodySource {
    /// A fresh body of `framing` for one attempt, with `limit` payload bytes at most (0 =
    /// unlimited) and trailers of up to `max_trailer` bytes.
    fn begin(&mut self, framing: BodyFraming, limit: u64, max_trailer: usize);

    /// Moves body bytes already at hand into `out`, framed for the upstream (HTTP/1.1).
    fn stage(&mut self, out: &mut BytesMut) -> Result<(), SendFail>;

    /// The whole body went into `out` (or there was none).
    fn is_done(&self) -> bool;

    /// Streams the rest of the body to the upstream behind what `out` holds.
    async fn pump<U: Stream>(
        &mut self,
        out: &mut BytesMut,
        w: &mut OwnedWriteHalf<U>,
        p: Pump<'_>,
    ) -> Result<(), SendFail>;

    /// Body payload bytes relayed so far (the access log's `bytes_in`).
    fn relayed(&self, framing: BodyFraming) -> u64;

    /// The next piece of the body as payload, unframed, for an HTTP/2 upstream (instead of
    /// `stage` and `pump`): data as it arrives, then the end with the body's trailer fields
    /// if it had any (connection-specific and framing ones left out). Asking for the next
    /// piece says the one before was delivered: an HTTP/2 client's window opens for it only
    /// then, so a slow upstream holds the client back.
    async fn next_payload(&mut self, deadline: BodyDeadline) -> Result<Payload, SendFail>;
}

/// A piece of a request body (`BodySource::next_payload`).
#[derive(Debug)]
pub enum Payload {
    Data(bytes::Bytes),
    /// The body ended, with these trailer fields.
    End(Option<http::HeaderMap>),
}

/// A trailer field as HTTP/2 can carry it, unless it is one that never passes
/// (`http::head::is_forbidden_trailer`) or its name or value is not valid there.
pub fn trailer_field(
    name: &[u8],
    value: &[u8],
) -> Option<(http::header::HeaderName, http::header::HeaderValue)> {
    if crate::http::head::is_forbidden_trailer(name) {
        return None;
    }
    let name = http::header::HeaderName::from_bytes(name).ok()?;
    let value = http::header::HeaderValue::from_bytes(value).ok()?;
    Some((name, value))
}

/// What the body pump needs besides the body and the upstream.
#[derive(Clone, Copy)]
pub struct Pump<'a> {
    pub write: Duration,
    pub splice_threshold: u64,
    pub deadline: BodyDeadline,
    pub pipes: &'a Pipes,
}

/// How a relayed response's head goes out.
pub struct HeadOut<'a> {
    pub cfg: &'a Compiled,
    /// The route's response header edits.
    pub edits: &'a HeaderEdits,
    /// `Strict-Transport-Security` to send instead of the upstream's (TLS only).
    pub hsts: Option<&'a [u8]>,
    /// The connection closes after this response.
    pub close: bool,
    /// The request was a HEAD: no body follows whatever the head says.
    pub head_request: bool,
    /// The client said `TE: trailers` (looked at only for a chunked response).
    pub te_trailers: bool,
}

/// Where responses go: ringway's own answers whole, relayed ones as a head, then body
/// payload as it comes. Appends (`put…`) only queue; `flush` and `send` write.
#[allow(async_fn_in_trait)]
pub trait ResponseSink {
    /// Body runs can be spliced into the client's socket (`splice_from`): a plain socket,
    /// not TLS, not a multiplexed stream.
    const SPLICE: bool = false;

    /// The current request's access log record; the sink counts what it writes there.
    fn log(&mut self) -> &mut RequestLog;

    /// Writes one of ringway's own answers whole. Err: the client is gone.
    async fn answer(&mut self, answer: &Canned<'_>, write: Duration) -> Result<(), IoFail>;

    /// Queues the head of the relayed response `resp` and chooses how its body is framed
    /// for this client. Returns whether the connection closes after it (`out.close`, or
    /// a body this client can only be sent by closing).
    fn start(&mut self, resp: &ResponseHead, out: &HeadOut<'_>) -> bool;

    /// Moves the queued head into `buf` right in front of the body bytes that start at
    /// `at` (over the free room there, or with the body bytes copied behind it), dropping
    /// what came before, so that head and body leave in one write; returns the head's
    /// length in `buf` (0: the sink sends its head on its own, and `buf` starts at `at`).
    fn join_head(&mut self, buf: &mut BytesMut, at: usize) -> usize;

    /// Queues body payload, framed for the client.
    fn put(&mut self, payload: &[u8]);
    /// Before `len` payload bytes are sent or spliced as they are: queues their framing.
    fn begin_run(&mut self, len: u64);
    /// After such a run: queues what ends it.
    fn end_run(&mut self);
    /// Queues the end of the body.
    fn end(&mut self);
    /// The relayed response being sent passes on its trailer fields (`trailer`): always
    /// to HTTP/2 clients, to HTTP/1.1 ones that said `TE: trailers` and get it chunked.
    fn takes_trailers(&self) -> bool {
        false
    }
    /// Queues one trailer field of the body (only when `takes_trailers`; never one that
    /// `http::head::is_forbidden_trailer` names), sent with its end.
    fn trailer(&mut self, name: &[u8], value: &[u8]) {
        let _ = (name, value);
    }
    /// Passes on an upstream's 1xx interim response (102, 103, …; never 100, which ringway
    /// answers itself, or 101) before the final one. Those who cannot carry it drop it.
    fn interim(&mut self, resp: &ResponseHead, cfg: &Compiled) {
        let _ = (resp, cfg);
    }
    /// Nothing is queued.
    fn is_empty(&self) -> bool;
    /// What is queued is framing only (a lone chunk terminator), which may wait for the next
    /// write instead of costing one of its own.
    fn holds_framing_only(&self) -> bool;

    /// Writes what is queued. Err: the client is gone (or stalled past `write`).
    async fn flush(&mut self, write: Duration) -> Result<(), IoFail>;
    /// Writes what is queued, then all of `buf` (body bytes or a joined head), leaving `buf`
    /// empty with its capacity.
    async fn send(&mut self, buf: &mut BytesMut, write: Duration) -> Result<(), IoFail>;
    /// Moves exactly `len` body bytes from `src` to the client through `pipe`. Only called
    /// when `SPLICE` is true.
    async fn splice_from<U: Stream>(
        &mut self,
        pipes: &Pipes,
        pipe: PipePair,
        src: &mut OwnedReadHalf<U>,
        len: u64,
        read: ReadLimit,
        write: Duration,
    ) -> Result<(), SpliceFail> {
        let _ = (pipes, pipe, src, len, read, write);
        Err(SpliceFail::Destination)
    }
}
