//! What an attempt at an upstream is made of, for both upstream protocols: where the
//! request stands among the servers (`Plan`), how an attempt and a step of the forwarding
//! loop end, what an attempt goes over (`Conn`), the request body kept for another attempt
//! on an HTTP/2 upstream (`Replay`), and running the body and the response at the same time
//! (`duplex`). `exchange` runs the loop and the HTTP/1.1 attempt, `upstream_h2` the
//! HTTP/2 one; both build on this.

use std::cell::Cell;

use bytes::Bytes;
use http::HeaderMap;

use super::front::SendFail;
use super::outcome::{Next, Refusal};
use super::response::RespOutcome;
use super::Shared;
use crate::grammar::GRPC_STATUS_NAMES;
use crate::io::{Connector, Stream, UpConn};
use crate::upstream::h2pool::H2Lease;
use crate::upstream::state::RetryGuard;
use crate::upstream::Tried;

/// Where a request stands among the servers of its upstream.
pub(super) struct Plan {
    pub(super) upstream: usize,
    pub(super) key: Option<u64>,
    pub(super) server: usize,
    pub(super) tried: Tried,
    /// The request may be replayed elsewhere (idempotent, no body).
    pub(super) replay_ok: bool,
    /// The route retries on some statuses and this request may be.
    pub(super) status_retries: bool,
    /// The route retries on some gRPC statuses and this is a gRPC call to an HTTP/2
    /// upstream (retried when its body is whole in `replay`).
    pub(super) grpc_retries: bool,
    /// HTTP/2 upstreams: the request body kept for another attempt.
    pub(super) replay: Replay,
    /// Requests that went out (a status retry needs fewer than `attempts`).
    pub(super) sent: u32,
    /// Held while this request counts as retrying (the retry budget).
    pub(super) retrying: Option<RetryGuard>,
    /// The next attempt opens a fresh connection (a pooled one turned out stale).
    pub(super) fresh: bool,
}

/// What an attempt goes over.
pub(super) enum Conn<'a, U: Stream> {
    H1(&'a mut UpConn<U>),
    /// A stream's lease on an HTTP/2 connection.
    H2(&'a H2Lease),
}

/// How one step of the forwarding loop ended.
pub(super) enum Step {
    Done(Next),
    /// Try again (another server, or a fresh connection).
    Again,
    /// The upstream answered a status the route retries on.
    RetryStatus(Retried),
    /// `auto`: the server speaks HTTP/1.1; take that way.
    Http1,
}

/// A status an attempt was retried on.
#[derive(Clone, Copy)]
pub(super) enum Retried {
    Http(u16),
    /// A gRPC status in a trailers-only answer.
    Grpc(u16),
}

impl std::fmt::Display for Retried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retried::Http(s) => write!(f, "{s}"),
            Retried::Grpc(c) => {
                let name = GRPC_STATUS_NAMES.get(usize::from(*c)).unwrap_or(&"?");
                write!(f, "gRPC {name}")
            }
        }
    }
}

/// How one attempt ended.
pub(super) enum Attempt {
    Finished {
        next: Next,
        pool: bool,
    },
    /// No response head came (closed, reset, or bytes that are no head) for a request
    /// without a body: retried once on a fresh connection if this one was reused.
    Retry,
    /// The upstream answered a status the route retries on (only its head was read).
    RetryStatus(Retried),
}

/// How the request body ended.
pub(super) enum BodyEnd {
    Sent,
    /// The response ended first; the rest of the body was never read.
    Unfinished,
    /// The client broke the body rules (400, 408, 413).
    ClientError(Refusal),
    /// The client went away mid-body.
    ClientGone,
    /// The upstream stopped taking the body.
    UpstreamFailed,
}

/// Most request body bytes kept for another attempt.
pub const REPLAY_MAX: usize = 64 * 1024;

/// The request body as sent on an HTTP/2 upstream, kept for another attempt.
#[derive(Default)]
pub(super) struct Replay {
    pub(super) pieces: Vec<Bytes>,
    size: usize,
    /// The body source was started (`BodySource::begin`).
    pub(super) begun: bool,
    /// The whole body went out (and is in `pieces` unless `over`).
    pub(super) whole: bool,
    /// More than `REPLAY_MAX`: pieces were let go.
    over: bool,
    pub(super) trailers: Option<HeaderMap>,
}

impl Replay {
    /// Keeps a piece of the body as it goes out (until there is too much).
    pub(super) fn keep(&mut self, data: &Bytes) {
        if self.over {
            return;
        }
        self.size += data.len();
        if self.size > REPLAY_MAX {
            self.over = true;
            self.pieces = Vec::new();
        } else {
            self.pieces.push(data.clone());
        }
    }

    /// Another attempt can send every body byte taken so far.
    pub(super) fn can_replay(&self) -> bool {
        !self.over
    }

    /// The whole body is here for another attempt.
    pub(super) fn is_whole(&self) -> bool {
        self.whole && !self.over
    }
}

/// Runs the body pump and the response side together. The response side decides the
/// outcome; the pump's end only matters when the response had not started. Over the memory
/// threshold (`Shared::shed_now`) a body still arriving is cut off: the connection is
/// closed, unanswered.
pub(super) async fn duplex<P, R, C: Connector>(
    pump: P,
    response: R,
    started: &Cell<bool>,
    shared: &Shared<C>,
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
            Err(SendFail::Client(fault)) if !started.get() => {
                // Nothing was answered yet: the client's fault is the answer.
                return (RespOutcome::NoResponse, BodyEnd::ClientError(Refusal::Client(fault)));
            }
            Err(SendFail::ClientGone) if !started.get() => {
                return (RespOutcome::NoResponse, BodyEnd::ClientGone);
            }
            Err(SendFail::Client(_) | SendFail::ClientGone) => {
                return (RespOutcome::Aborted, BodyEnd::ClientGone)
            }
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
