//! The HTTP/2 front end: one task per client connection drives the `h2` codec (framing,
//! HPACK, flow control) over a poll-style stream (monoio's poll-io socket for h2c, a rustls
//! session over it for ALPN `h2`), and one task per stream runs the request's life
//! (`pipeline::serve`) with the stream as its front end (`stream`), after the request is
//! checked against RFC 9113 and translated (`translate`). A stream's failure costs the
//! other streams nothing.
//!
//! The connection ends with GOAWAY: when the worker drains, after a reload, when it is
//! older than `timeouts.max_connection_age`, when it stays idle for `timeouts.idle`, and
//! (ENHANCE_YOUR_CALM) when the client resets streams faster than allowed; its streams
//! finish first (within `timeouts.drain` when the worker drains); a reset stream's upstream request is dropped at once (its connection closed,
//! never pooled). While the process sheds load, new streams are refused (REFUSED_STREAM).
//!
//! Where it sits: beside `front::http1`, above `pipeline`.

mod meter;
mod stream;
mod translate;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};

use super::SHRINK_AFTER;
use crate::compiled::Compiled;
use crate::io::Connector;
use crate::notify::LocalNotify;
use crate::pipeline::{self, Client, ConnMeta, Request, Shared};

use self::stream::{Body, Send, Sink, H2};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The `h2` settings ringway serves with (`[http2]`; the header list is bounded by
/// `limits.max_header_bytes` while its CONTINUATION frames still arrive).
fn builder(cfg: &Compiled) -> h2::server::Builder {
    let h = &cfg.http2;
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(h.max_concurrent_streams)
        .initial_window_size(h.initial_stream_window)
        .initial_connection_window_size(h.initial_connection_window)
        .max_frame_size(h.max_frame_size)
        .max_header_list_size(u32::try_from(cfg.limits.max_header_bytes).unwrap_or(u32::MAX))
        .header_table_size(h.header_table_size)
        .max_send_buffer_size(h.max_send_buffer)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024));
    b
}

/// What the connection's streams tell it.
#[derive(Default)]
struct ConnState {
    /// Streams being served.
    open: Cell<usize>,
    /// When the last stream ended (for the idle timeout).
    last_end: Cell<Option<Instant>>,
    /// Client resets in the current second, and when that second began.
    resets: Cell<(u32, Option<Instant>)>,
    /// Set once the client reset too many streams: the connection ends.
    calm: LocalNotify,
    /// The client reset too many streams.
    calmed: Cell<bool>,
    /// A stream ended: the idle timer may start.
    ended: LocalNotify,
}

impl ConnState {
    fn calm_sent(&self) -> bool {
        self.calmed.get()
    }

    /// Counts a stream the client reset; true when that was one more than `max` in a
    /// second.
    fn client_reset(&self, max: u32) -> bool {
        let now = Instant::now();
        let (n, since) = self.resets.get();
        let (n, since) = match since {
            Some(s) if now.duration_since(s) < Duration::from_secs(1) => (n + 1, s),
            _ => (1, now),
        };
        self.resets.set((n, Some(since)));
        n > max
    }
}

/// Serves one HTTP/2 connection (its preface not yet read) until it closes.
pub async fn serve<IO, C>(
    shared: Rc<Shared<C>>,
    io: IO,
    peer: SocketAddr,
    accepted: Instant,
    meta: ConnMeta,
) where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
    C: Connector,
{
    let cfg = shared.config();
    let deadline = accepted + cfg.timeouts.header;
    let mut io = io;
    let first = match monoio::time::timeout_at(deadline.into(), read_preface(&mut io)).await {
        Ok(Ok(first)) => first,
        Ok(Err(first)) => {
            if !first.is_empty() {
                log::debug!("client {peer}: not the HTTP/2 preface; GOAWAY PROTOCOL_ERROR");
                // Boxed, as the handshake below: an idle connection's future is only as
                // large as its serving loop.
                Box::pin(refuse_preface(io)).await;
            }
            return;
        }
        Err(_) => {
            log::debug!("client {peer}: http/2 preface timed out");
            return;
        }
    };
    let flood = Rc::new(meter::Flood::new(cfg.http2.flood.clone()));
    let io = meter::Meter::new(Prefixed::new(first, io), flood.clone());
    let handshake = Box::pin(builder(&cfg).handshake::<_, Bytes>(io));
    let mut conn = match monoio::time::timeout_at(deadline.into(), handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            log::debug!("client {peer}: http/2 handshake failed: {e}");
            return;
        }
        Err(_) => {
            log::debug!("client {peer}: http/2 preface timed out");
            return;
        }
    };
    let client = Rc::new(Client { peer, meta });
    let state = Rc::new(ConnState::default());
    state.last_end.set(Some(Instant::now()));
    let mut closing = false;
    let mut seen_stream = false;
    // The last stream end already reported as idleness (below).
    let mut idle_noted = None;
    // Old enough (`timeouts.max_connection_age`): GOAWAY, so every connection converges on
    // the current config and binary.
    let age = cfg.timeouts.max_connection_age;
    let max_age = (!age.is_zero()).then(|| accepted + age);
    loop {
        // A trip while another branch won the last round is seen here.
        if flood.tripped.get().is_some() || state.calm_sent() {
            log::debug!(
                "client {peer}: {}; GOAWAY ENHANCE_YOUR_CALM",
                match flood.tripped.get() {
                    Some(kind) => format!("{kind:?} flood"),
                    None => "too many streams reset".to_string(),
                }
            );
            break;
        }
        // Until its first request, a connection has `timeouts.header` from its accept;
        // then `timeouts.idle` whenever no stream is open.
        let idle = if seen_stream {
            idle_deadline(&state, &cfg)
        } else {
            Some(accepted + cfg.timeouts.header)
        };
        // No stream open for `SHRINK_AFTER`: the codec has given its frame buffers back
        // (vendor/h2) and now gives back its stream store's room too, and the worker may
        // hand the freed pages to the OS.
        let settled = match (state.open.get(), state.last_end.get()) {
            (0, Some(end)) if seen_stream && idle_noted != Some(end) => Some(end + SHRINK_AFTER),
            _ => None,
        };
        // Old enough, or idle for `timeouts.idle`: GOAWAY (once); idle for a second: say so.
        let ends = if closing {
            None
        } else {
            [max_age, idle].into_iter().flatten().min()
        };
        let wake = ends.into_iter().chain(settled).min();
        monoio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    if shared.is_overloaded() {
                        crate::metrics::bump(&shared.metrics.shed);
                        let mut respond = respond;
                        respond.send_reset(Reason::REFUSED_STREAM);
                        continue;
                    }
                    seen_stream = true;
                    state.open.set(state.open.get() + 1);
                    monoio::spawn(serve_stream(
                        shared.clone(),
                        client.clone(),
                        state.clone(),
                        request,
                        respond,
                    ));
                }
                Some(Err(e)) => {
                    log::debug!("client {peer}: http/2 connection error: {e}");
                    break;
                }
                None => return,
            },
            _ = shared.drain_notified(), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
            // A reload: the settings this connection announced are the old config's; its
            // streams finish, and the client's next connection gets the new ones.
            _ = shared.reloaded.notified(), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
            // One timer for all three (each monoio timer is 640 bytes of this future, which
            // an idle connection keeps).
            _ = sleep_until(wake) => {
                let now = Instant::now();
                if settled.is_some_and(|t| t <= now) {
                    idle_noted = state.last_end.get();
                    conn.shrink_idle();
                    shared.note_shrunk();
                }
                if !closing && [max_age, idle].into_iter().flatten().any(|t| t <= now) {
                    closing = true;
                    conn.graceful_shutdown();
                }
            }
            _ = state.ended.notified() => {}
            // Either ends the connection at the top of the loop.
            _ = state.calm.notified() => {}
            _ = flood.trip.notified() => {}
        }
    }
    // Ended by a connection error or for calm: GOAWAY goes out (ENHANCE_YOUR_CALM unless
    // the codec already sent its own), and the connection closes once it is flushed, or
    // after a second.
    if flood.tripped.get().is_some() || state.calm_sent() {
        conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
    }
    let _ = monoio::time::timeout(Duration::from_secs(1), poll_fn(|cx| conn.poll_closed(cx))).await;
}

/// Reads the client's first `PREFACE.len()` bytes: Ok when they are the preface, Err with
/// what came (empty: the connection closed first) when they are not.
async fn read_preface<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<Bytes, Bytes> {
    let mut buf = [0u8; 24];
    let mut have = 0;
    while have < PREFACE.len() {
        let n = poll_fn(|cx| {
            let mut rb = tokio::io::ReadBuf::new(&mut buf[have..]);
            std::pin::Pin::new(&mut *io)
                .poll_read(cx, &mut rb)
                .map(|r| r.map(|()| rb.filled().len()))
        })
        .await;
        match n {
            Ok(0) | Err(_) => return Err(Bytes::copy_from_slice(&buf[..have])),
            Ok(n) => have += n,
        }
        if buf[..have] != PREFACE[..have] {
            return Err(Bytes::copy_from_slice(&buf[..have]));
        }
    }
    Ok(Bytes::copy_from_slice(&buf))
}

/// Answers an invalid preface (RFC 9113 §3.4: a connection error of type PROTOCOL_ERROR)
/// with GOAWAY, then closes: the write side first, then, once the client closed too (or
/// after a second), the socket, so that what the client still sent does not turn the close
/// into a reset.
async fn refuse_preface<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    const GOAWAY: [u8; 17] = [
        0, 0, 8, 7, 0, 0, 0, 0, 0, // length 8, GOAWAY, no flags, stream 0
        0, 0, 0, 0, // last stream id 0
        0, 0, 0, 1, // PROTOCOL_ERROR
    ];
    let send = async {
        let mut sent = 0;
        while sent < GOAWAY.len() {
            match poll_fn(|cx| std::pin::Pin::new(&mut io).poll_write(cx, &GOAWAY[sent..])).await {
                Ok(0) | Err(_) => return,
                Ok(n) => sent += n,
            }
        }
        let _ = poll_fn(|cx| std::pin::Pin::new(&mut io).poll_shutdown(cx)).await;
        let mut sink = [0u8; 1024];
        loop {
            let n = poll_fn(|cx| {
                let mut rb = tokio::io::ReadBuf::new(&mut sink);
                std::pin::Pin::new(&mut io)
                    .poll_read(cx, &mut rb)
                    .map(|r| r.map(|()| rb.filled().len()))
            })
            .await;
            if !matches!(n, Ok(n) if n > 0) {
                return;
            }
        }
    };
    let _ = monoio::time::timeout(Duration::from_secs(1), send).await;
}

/// When the connection has been idle (no stream open) for `timeouts.idle`.
fn idle_deadline(state: &ConnState, cfg: &Compiled) -> Option<Instant> {
    if state.open.get() > 0 {
        return None;
    }
    state.last_end.get().map(|t| t + cfg.timeouts.idle)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => monoio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Serves one stream: the request's life with the stream as its front end, cut short
/// (its upstream request dropped) if the client resets the stream.
async fn serve_stream<C: Connector>(
    shared: Rc<Shared<C>>,
    client: Rc<Client>,
    state: Rc<ConnState>,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let start = Instant::now();
    let cfg = shared.config();
    let (parts, recv) = request.into_parts();
    let mut req = Request::default();
    let mut scratch = Vec::new();
    let head = translate::translate(
        &parts,
        recv.is_end_stream(),
        &cfg,
        &mut req.head,
        &mut scratch,
    );
    drop(parts);
    let send = Rc::new(RefCell::new(Send::Head(respond)));
    let mut front = H2 {
        body: Body::new(recv),
        sink: Sink::new(send.clone()),
    };
    let life = pipeline::serve(&shared, &cfg, &client, &mut req, &mut front, start, head);
    let reset = poll_fn(|cx| send.borrow_mut().poll_reset(cx));
    // Biased: the reset watcher is polled after the request's life in every round, so the
    // waker it leaves with the codec is the task's own (see `stream::send_interim`).
    monoio::select! {
        biased;
        _ = life => {}
        reason = reset => {
            log::debug!("client {}: stream reset ({reason:?}); its upstream request is dropped", client.peer);
            if state.client_reset(cfg.http2.max_resets_per_second) {
                state.calmed.set(true);
                state.calm.notify_all();
            }
        }
    }
    state.open.set(state.open.get().saturating_sub(1));
    state.last_end.set(Some(Instant::now()));
    state.ended.notify_all();
}

/// A poll-style stream whose first bytes were already read (the preface, found by sniffing
/// a plain connection): those are read again first.
pub struct Prefixed<T> {
    first: Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub fn new(first: Bytes, io: T) -> Prefixed<T> {
        Prefixed { first, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            let part = self.first.split_to(n);
            buf.put_slice(&part);
            if self.first.is_empty() {
                // Read out: its allocation is not kept for the connection's life.
                self.first = Bytes::new();
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
