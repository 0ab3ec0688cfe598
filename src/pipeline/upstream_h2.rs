//! The request's life on an HTTP/2 upstream (`upstreams[].protocol = "h2c" | "h2" |
//! "auto"`): a stream leased from the worker's pool (`upstream::h2pool`) instead of a
//! connection, the rest as for HTTP/1.1.
//!
//! - The request head is the one `forward::request_head` writes for HTTP/1.1 (every field
//!   decision made once, in one place), carried over as an HTTP/2 header list:
//!   connection-specific fields left out, `Host` as `:authority`, `te: trailers` when the
//!   client sent it (gRPC needs it).
//! - The body goes as payload pieces (`BodySource::next_payload`), each sent once the
//!   upstream's window has room for it, so a slow upstream holds the client back and a slow
//!   client the upstream; its trailer fields follow. While the response comes back at the
//!   same time (`duplex`): a bidirectional gRPC call streams both ways.
//! - The response head becomes a `ResponseHead` (through the same strict parser as an
//!   HTTP/1.1 upstream's), so the front end's sink relays it unchanged; DATA is handed on
//!   as it comes, then the trailers (`grpc-status` into the access log).
//! - A stream the server never processed (REFUSED_STREAM, or above the last stream id of
//!   its GOAWAY) is sent again on another stream once, if its body was kept whole: the
//!   first `REPLAY_MAX` bytes of a body are kept (shared, not copied) for that and for
//!   retries on gRPC statuses.
//! - Dropping an exchange (the client reset its stream or went away) drops the upstream
//!   stream, which the codec resets with CANCEL.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::SendStream;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request};

use super::attempt::{duplex, Attempt, BodyEnd, Conn, Plan, Replay, Retried, Step};
use super::front::{BodySource, Front, HeadOut, Payload, ResponseSink, SendFail};
use super::outcome::{Holdback, Next, Refusal, UpstreamFault};
use super::response::{
    head_deadline, head_grpc_status, relay_trailer, upstream_limits, Exchange, RespOutcome,
};
use super::Life;
use crate::compiled::{Compiled, Route, Upstream};
use crate::http::response::parse_response_at;
use crate::http::{BodyFraming, ResponseFraming, ResponseHead};
use crate::io::deadline::BodyDeadline;
use crate::io::Connector;
use crate::upstream::h2pool::{self, Dial, H2Lease, LeaseError};

/// Response DATA gathered before one write to the client, when more is already in.
const GATHER: usize = 64 * 1024;

/// One attempt's stream.
pub(super) struct H2Exchange<'a> {
    pub(super) lease: &'a H2Lease,
    /// The connection is TLS (the `:scheme`).
    pub(super) tls: bool,
    pub(super) sent_at: Instant,
    pub(super) deadline: BodyDeadline,
    pub(super) retry: Option<&'a dyn Fn(u16) -> bool>,
    pub(super) grpc_retry: Option<&'a dyn Fn(u16) -> bool>,
    pub(super) replay: &'a RefCell<Replay>,
}

impl<C: Connector, F: Front> Life<'_, C, F> {
    /// One attempt on an HTTP/2 upstream: a stream on a pooled connection, the exchange on
    /// it.
    pub(super) async fn h2_step(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        up: &Upstream,
        dial: Dial<'_>,
        plan: &mut Plan,
        body_deadline: Option<BodyDeadline>,
    ) -> Step {
        let addr = up.servers[plan.server];
        let host = up.hosts.get(plan.server).map_or("", String::as_str);
        let dial = match dial {
            Dial::Tls { tls, .. } => Dial::Tls { tls, host },
            Dial::Plain => Dial::Plain,
        };
        let has_body = self.req.head.framing != BodyFraming::None;
        let timed = self.shared.access_log.is_some();
        self.front.sink().log().connecting(addr, timed);
        let limits = h2pool::Limits {
            max_per_server: up.http2_connections,
            connect_timeout: cfg.timeouts.upstream_connect,
            idle_timeout: up.keepalive_timeout,
        };
        let shared = self.shared.clone();
        let lease = match shared
            .h2pool
            .lease(up.pool_keys[plan.server], dial, limits)
            .await
        {
            Ok(lease) => lease,
            Err(LeaseError::Http1) => return Step::Http1,
            Err(LeaseError::Full) => {
                log::debug!("upstream {}: {addr}: http2_connections full; 503", up.name);
                let refusal = Refusal::Ringway(Holdback::Breaker);
                return Step::Done(self.refuse(refusal, has_body).await);
            }
            Err(LeaseError::Connect(e)) => {
                log::warn!("upstream {addr}: http/2 connect failed: {e}");
                let fault = if e.kind() == std::io::ErrorKind::TimedOut {
                    UpstreamFault::ConnectTimeout
                } else {
                    UpstreamFault::ConnectFailed
                };
                if self.connect_failed(route, up, plan) {
                    return Step::Again;
                }
                return Step::Done(self.refuse(Refusal::Upstream(fault), has_body).await);
            }
        };
        let attempt = self
            .attempt::<C::Conn>(cfg, route, up, Conn::H2(&lease), plan, body_deadline)
            .await;
        match attempt {
            Attempt::Finished { next, .. } => Step::Done(next),
            // Never processed: once more on another stream, if the body can be sent again.
            Attempt::Retry if !plan.fresh && plan.replay.can_replay() => {
                lease.retire();
                plan.fresh = true;
                Step::Again
            }
            Attempt::Retry => {
                log::warn!("upstream {addr}: http/2 stream refused, not sent again");
                let refusal = Refusal::Upstream(UpstreamFault::Invalid);
                Step::Done(self.refuse(refusal, !plan.replay.whole).await)
            }
            Attempt::RetryStatus(r) => Step::RetryStatus(r),
        }
    }

    /// One exchange on an HTTP/2 stream: the request (`req.obuf` holds its head as written
    /// for HTTP/1.1), its body and the response at the same time.
    pub(super) async fn h2_exchange(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        h: H2Exchange<'_>,
    ) -> (Attempt, Option<u16>) {
        let req = &mut *self.req;
        let framing = req.head.framing;
        let has_body = framing != BodyFraming::None;
        let finished = |next| Attempt::Finished { next, pool: false };
        let tls = h.tls;
        // An HTTP/2 client takes trailers always; an HTTP/1.1 one when it says so.
        let te_trailers =
            req.head.version == crate::http::Version::Http2 || req.head.accepts_trailers();
        let Some(request) = h2_request(&req.obuf, tls, te_trailers) else {
            log::warn!("request head cannot be carried over http/2");
            let refusal = Refusal::Upstream(UpstreamFault::Invalid);
            return (finished(self.refuse(refusal, has_body).await), None);
        };
        let mut send = h.lease.send.clone();
        let (response, stream) = match send.send_request(request, !has_body) {
            Ok(pair) => pair,
            Err(e) => {
                log::debug!("http/2 stream could not start: {e}");
                h.lease.retire();
                return (Attempt::Retry, None);
            }
        };
        let grpc_deadline = req.grpc_deadline;
        let write = cfg.timeouts.write;
        let started = Cell::new(false);
        let body_done = Cell::new(!has_body);
        let (body, sink) = self.front.split();
        {
            let mut replay = h.replay.borrow_mut();
            if !replay.begun {
                replay.begun = true;
                body.begin(framing, req.body_limit, cfg.limits.max_header_bytes);
            }
        }
        let deadline = head_deadline(cfg, h.sent_at, has_body, &h.deadline, grpc_deadline);
        let ex = Exchange::new(
            cfg,
            route,
            &req.head,
            req.hsts.as_deref(),
            self.shared,
            &body_done,
            &started,
            h.retry,
            deadline,
        );
        let relay = H2Relay {
            ex: &ex,
            replay: h.replay,
            grpc_retry: h.grpc_retry,
        };
        let (outcome, body_end) = if has_body {
            let pump = async {
                let sent = pump(body, stream, h.replay, h.deadline, write).await;
                body_done.set(sent.is_ok());
                sent
            };
            let response = relay.respond(response, sink, &mut req.resp);
            // (Not boxed again: this whole exchange already is, see `attempt`.)
            duplex(pump, response, &started, self.shared).await
        } else {
            drop(stream);
            let response = relay.respond(response, sink, &mut req.resp);
            (response.await, BodyEnd::Sent)
        };
        let relayed = self.front.body().relayed(framing);
        let log = self.front.sink().log();
        log.bytes_in = relayed;
        let upstream_status = log.status;
        let body_sent = matches!(body_end, BodyEnd::Sent);
        let attempt = match outcome {
            RespOutcome::Done { close, .. } => finished(if close || !body_sent {
                Next::Close
            } else {
                Next::KeepAlive
            }),
            RespOutcome::Aborted => finished(Next::Close),
            RespOutcome::NoResponse => match body_end {
                BodyEnd::ClientError(r) => finished(self.refuse(r, true).await),
                BodyEnd::ClientGone => finished(Next::Close),
                _ => Attempt::Retry,
            },
            RespOutcome::Retry(status) => Attempt::RetryStatus(Retried::Http(status)),
            RespOutcome::RetryGrpc(code) => Attempt::RetryStatus(Retried::Grpc(code)),
            RespOutcome::Switched(_) => finished(
                self.refuse(Refusal::Upstream(UpstreamFault::Invalid), true)
                    .await,
            ),
            RespOutcome::Failed(fault) => {
                let next = match body_end {
                    BodyEnd::ClientError(r) => self.refuse(r, true).await,
                    BodyEnd::ClientGone => Next::Close,
                    _ => self.refuse(Refusal::Upstream(fault), !body_sent).await,
                };
                finished(next)
            }
        };
        (attempt, upstream_status)
    }
}

/// The upstream request for the HTTP/1.1 head `head` (as `forward::request_head` wrote it):
/// the same fields less the connection-specific ones, `Host` as the authority. None if it
/// cannot be carried (a field HTTP/2 cannot hold, a target that is no URI).
fn h2_request(head: &[u8], tls: bool, te_trailers: bool) -> Option<Request<()>> {
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    // On the stack for the usual head; a long one on the heap.
    let mut stack = [httparse::EMPTY_HEADER; 64];
    let mut heap;
    let fields: &mut [httparse::Header<'_>] = if lines <= stack.len() {
        &mut stack[..]
    } else {
        heap = vec![httparse::EMPTY_HEADER; lines];
        &mut heap[..]
    };
    let mut parsed = httparse::Request::new(fields);
    if !parsed.parse(head).ok()?.is_complete() {
        return None;
    }
    let mut request = Request::builder()
        .method(parsed.method?)
        .version(http::Version::HTTP_2);
    let headers = request.headers_mut()?;
    let mut authority = None;
    for f in parsed.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            authority = Some(f.value);
            continue;
        }
        if CONNECTION_SPECIFIC
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
        {
            continue;
        }
        headers.append(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(f.value).ok()?,
        );
    }
    if te_trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority?)
        .path_and_query(parsed.path?)
        .build()
        .ok()?;
    request.uri(uri).body(()).ok()
}

/// Fields HTTP/2 does not carry (RFC 9113 §8.2.2); `te` is sent only as `trailers`.
const CONNECTION_SPECIFIC: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
];

/// Sends the request body on `stream`: what an earlier attempt kept, then what the client
/// sends, each piece once the upstream's window has room for it (waiting up to `write`).
async fn pump<B: BodySource>(
    body: &mut B,
    mut stream: SendStream<Bytes>,
    replay: &RefCell<Replay>,
    deadline: BodyDeadline,
    write: Duration,
) -> Result<(), SendFail> {
    let (kept, whole) = {
        let r = replay.borrow();
        (r.pieces.clone(), r.whole)
    };
    for piece in kept {
        send_data(&mut stream, piece, write).await?;
    }
    if whole {
        let trailers = replay.borrow().trailers.clone();
        return finish(&mut stream, trailers);
    }
    loop {
        match body.next_payload(deadline).await? {
            Payload::Data(data) => {
                replay.borrow_mut().keep(&data);
                send_data(&mut stream, data, write).await?;
            }
            Payload::End(trailers) => {
                {
                    let mut r = replay.borrow_mut();
                    r.whole = true;
                    r.trailers = trailers.clone();
                }
                return finish(&mut stream, trailers);
            }
        }
    }
}

/// Sends `data` within the stream's window, waiting for room up to `write` each time.
async fn send_data(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    write: Duration,
) -> Result<(), SendFail> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let room = match monoio::time::timeout(write, poll_fn(|cx| stream.poll_capacity(cx))).await
        {
            Ok(Some(Ok(n))) => n,
            _ => return Err(SendFail::Upstream),
        };
        if room == 0 {
            continue;
        }
        let piece = data.split_to(room.min(data.len()));
        stream
            .send_data(piece, false)
            .map_err(|_| SendFail::Upstream)?;
    }
    Ok(())
}

/// Ends the request body, with its trailer fields if it has any.
fn finish(stream: &mut SendStream<Bytes>, trailers: Option<HeaderMap>) -> Result<(), SendFail> {
    match trailers {
        Some(t) => stream.send_trailers(t),
        None => stream.send_data(Bytes::new(), true),
    }
    .map_err(|_| SendFail::Upstream)
}

/// A stream's response on its way to the client.
struct H2Relay<'a> {
    ex: &'a Exchange<'a>,
    replay: &'a RefCell<Replay>,
    grpc_retry: Option<&'a dyn Fn(u16) -> bool>,
}

impl H2Relay<'_> {
    async fn respond<K: ResponseSink>(
        &self,
        response: ResponseFuture,
        sink: &mut K,
        resp: &mut ResponseHead,
    ) -> RespOutcome {
        let ex = self.ex;
        let cfg = ex.cfg;
        let response = match monoio::time::timeout_at(ex.head_deadline.into(), response).await {
            Err(_) => {
                log::warn!("upstream response head timed out");
                return RespOutcome::Failed(UpstreamFault::ResponseTimeout);
            }
            Ok(Err(e)) if never_processed(&e) => {
                log::debug!("upstream did not process the stream: {e}");
                return RespOutcome::NoResponse;
            }
            Ok(Err(e)) => {
                log::warn!("upstream http/2 stream failed before its response: {e}");
                return RespOutcome::Failed(UpstreamFault::Invalid);
            }
            Ok(Ok(r)) => r,
        };
        let (parts, mut recv) = response.into_parts();
        if let Err(why) = response_head(&parts, recv.is_end_stream(), ex, resp) {
            log::warn!("upstream sent a response head ringway cannot relay: {why}");
            return RespOutcome::Failed(UpstreamFault::Invalid);
        }
        sink.log().response_head(resp.status);
        let status = resp.status;
        if ex.retry.is_some_and(|retry| retry(status)) {
            return RespOutcome::Retry(status);
        }
        let grpc = ex.head.is_grpc();
        if (grpc && status != 200)
            || (cfg.protect.replace_upstream_5xx && (500..=599).contains(&status))
        {
            // Answered by ringway instead (a gRPC client gets the status gRPC's mapping
            // gives); the stream is dropped unread.
            return RespOutcome::Failed(UpstreamFault::Status(status));
        }
        let head_code = head_grpc_status(ex, resp);
        if let (Some(code), Some(retry)) = (head_code, self.grpc_retry) {
            if recv.is_end_stream() && self.replay.borrow().is_whole() && retry(code) {
                return RespOutcome::RetryGrpc(code);
            }
        }
        let out = HeadOut {
            cfg,
            edits: &ex.route.response_edits,
            hsts: ex.hsts,
            close: ex.close || ex.keepalive_off.get() || !ex.body_done.get(),
            head_request: ex.head.is_head(),
            te_trailers: resp.framing == ResponseFraming::Chunked && ex.head.accepts_trailers(),
        };
        let close = sink.start(resp, &out);
        ex.started.set(true);
        sink.log().grpc_status = head_code;
        let write = cfg.timeouts.write;
        if resp.framing == ResponseFraming::None {
            // No body (HEAD, 204, 304): DATA the upstream sends anyway is never read, let
            // alone relayed; dropping the stream resets it.
            sink.end();
            return match sink.flush(write).await {
                Ok(()) => RespOutcome::Done {
                    reusable: false,
                    close,
                },
                Err(_) => RespOutcome::Aborted,
            };
        }
        let each = cfg.timeouts.upstream_response;
        let mut sent_any = false;
        loop {
            let first = match monoio::time::timeout(each, poll_fn(|cx| recv.poll_data(cx))).await {
                Ok(Some(Ok(data))) => data,
                Ok(None) => break,
                Ok(Some(Err(e))) => return self.broken(sent_any, &format!("{e}")),
                Err(_) => return self.broken(sent_any, "timed out"),
            };
            let mut gathered = first.len();
            sink.put(&first);
            let _ = recv.flow_control().release_capacity(first.len());
            // What else is in already goes out in the same write.
            let mut ended = false;
            while gathered < GATHER {
                let more = poll_fn(|cx| match recv.poll_data(cx) {
                    Poll::Ready(d) => Poll::Ready(Some(d)),
                    Poll::Pending => Poll::Ready(None),
                })
                .await;
                match more {
                    Some(Some(Ok(data))) => {
                        gathered += data.len();
                        sink.put(&data);
                        let _ = recv.flow_control().release_capacity(data.len());
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    Some(Some(Err(e))) => return self.broken(sent_any, &format!("{e}")),
                    None => break,
                }
            }
            if !sink.is_empty() {
                if sink.flush(write).await.is_err() {
                    return RespOutcome::Aborted;
                }
                sent_any = true;
            }
            if ended {
                break;
            }
        }
        let trailers = match monoio::time::timeout(each, poll_fn(|cx| recv.poll_trailers(cx))).await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return self.broken(sent_any, &format!("{e}")),
            Err(_) => return self.broken(sent_any, "trailers timed out"),
        };
        for (name, value) in trailers.iter().flatten() {
            relay_trailer(sink, cfg, name.as_str().as_bytes(), value.as_bytes());
        }
        sink.end();
        match sink.flush(write).await {
            Ok(()) => RespOutcome::Done {
                reusable: false,
                close,
            },
            Err(_) => RespOutcome::Aborted,
        }
    }

    /// The stream broke mid-response: the client is aborted if it got something, else
    /// answered by ringway.
    fn broken(&self, sent_any: bool, why: &str) -> RespOutcome {
        if sent_any {
            log::warn!("upstream http/2 stream broke mid-body ({why}); aborting client");
            RespOutcome::Aborted
        } else {
            log::warn!("upstream http/2 stream broke ({why}); nothing relayed yet");
            self.ex.started.set(false);
            RespOutcome::Failed(UpstreamFault::Invalid)
        }
    }
}

/// The server never processed the stream: it refused it, or its GOAWAY's last stream id is
/// below it (RFC 9113 §8.7): sending it again is safe.
fn never_processed(e: &h2::Error) -> bool {
    e.is_remote()
        && (e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM) && e.is_reset())
}

/// `resp` from an HTTP/2 response head, through the HTTP/1.1 parser's checks. Without a
/// `content-length`, the body ends with the stream (`Chunked`, or empty if the head ended
/// it).
fn response_head(
    parts: &http::response::Parts,
    end_stream: bool,
    ex: &Exchange<'_>,
    resp: &mut ResponseHead,
) -> Result<(), String> {
    let status = parts.status.as_u16();
    let mut head = Vec::with_capacity(256);
    let reason = crate::http::canned::reason(status);
    let _ = std::io::Write::write_fmt(&mut head, format_args!("HTTP/1.1 {status} {reason}\r\n"));
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let limits = upstream_limits(ex.cfg);
    match parse_response_at(&head, &limits, ex.head.is_head(), resp) {
        Ok(Some(_)) => {}
        Ok(None) => return Err("incomplete".into()),
        Err(e) => return Err(e.to_string()),
    }
    if resp.is_informational() {
        return Err(format!("status {status}"));
    }
    if resp.framing == ResponseFraming::CloseDelimited {
        resp.framing = if end_stream {
            ResponseFraming::Length(0)
        } else {
            ResponseFraming::Chunked
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http1_head_is_carried_over_as_an_http2_request() {
        let head = b"POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nHost: api.example:8443\r\n\
            Content-Type: application/grpc\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\
            X-Meta-Bin: AAEC\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        let r = h2_request(head, false, true).expect("request");
        assert_eq!(r.method(), "POST");
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert_eq!(
            r.uri().to_string(),
            "http://api.example:8443/pkg.Svc/Call?x=1"
        );
        let h = r.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["x-meta-bin"], "AAEC");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["te"], "trailers");
        for gone in ["host", "transfer-encoding", "connection"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        let r = h2_request(head, true, false).expect("request");
        assert_eq!(r.uri().scheme_str(), Some("https"));
        assert!(
            !r.headers().contains_key("te"),
            "te only when the client sent it"
        );
        // No Host: nothing to name the authority.
        assert!(h2_request(b"GET / HTTP/1.1\r\nX: y\r\n\r\n", false, false).is_none());
    }
}
