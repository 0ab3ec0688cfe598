//! What one request's access log line needs, collected as the request goes: filled with
//! plain stores at the points where each value becomes known, read once at the end. Cheap
//! enough to fill whether or not the access log is on (a few clock reads, no allocation).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::trace::Trace;

#[derive(Default)]
pub struct RequestLog {
    /// When the request's first bytes arrived.
    pub start: Option<Instant>,
    /// The head parsed; false for a request refused before that (method and path unknown).
    pub parsed: bool,
    pub request_id: u64,
    pub trace: Trace,
    /// The status sent to the client, once one was.
    pub status: Option<u16>,
    /// The gRPC status of a gRPC answer: ringway's own, or the `grpc-status` an upstream
    /// sent (in its head or its trailers) as it went to the client.
    pub grpc_status: Option<u16>,
    /// Request body bytes relayed upstream.
    pub bytes_in: u64,
    /// Bytes written to the client, heads included.
    pub bytes_out: u64,
    /// Index of the matched route.
    pub route: Option<usize>,
    /// The upstream server of the last attempt.
    pub upstream: Option<SocketAddr>,
    attempt: Option<Instant>,
    pub connect: Option<Duration>,
    sent: Option<Instant>,
    pub header: Option<Duration>,
    /// When the upstream exchange ended (None: no exchange, or more was written after it).
    pub end: Option<Instant>,
}

impl RequestLog {
    /// Starts the record of a new request.
    pub fn begin(&mut self, start: Instant, parsed: bool, request_id: u64, trace: Trace) {
        *self = RequestLog {
            start: Some(start),
            parsed,
            request_id,
            trace,
            ..RequestLog::default()
        };
    }

    /// The status to report: the one sent, or nginx's 499 when the client went away
    /// before any answer.
    pub fn final_status(&self) -> u16 {
        self.status.unwrap_or(499)
    }

    /// An upstream connection to `addr` is being taken from the pool or opened. `timed`:
    /// an access log wants the durations (the clock is read only then).
    pub fn connecting(&mut self, addr: SocketAddr, timed: bool) {
        self.upstream = Some(addr);
        self.attempt = timed.then(Instant::now);
        self.header = None;
    }

    /// The connection is ready; the request goes out at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connect = self.attempt.map(|a| now.saturating_duration_since(a));
        self.sent = self.attempt.map(|_| now);
    }

    /// When the request ended: the end of its upstream exchange, or now.
    pub fn end_or_now(&self) -> Instant {
        self.end.unwrap_or_else(Instant::now)
    }

    /// The upstream's response head arrived with `status`.
    pub fn response_head(&mut self, status: u16) {
        self.status = Some(status);
        self.header = self.sent.map(|s| s.elapsed());
    }
}
