//! The pipeline's side of the access log and of trace context: each request starts a
//! `RequestLog` (request id, `traceparent`), the phases fill it as they go, and when the
//! request is over one line goes to this worker's buffer, if the access log is on. Nothing
//! here does I/O; with the access log off nothing here allocates.

use std::time::{Instant, SystemTime};

use super::{Front, Life, ResponseSink, Shared};
use crate::accesslog::{CoreLog, Line, RequestId, Sink};
use crate::io::Connector;
use crate::trace::Trace;

impl<C: Connector> Shared<C> {
    /// Turns the access log on for this worker: lines go to `sink`'s writer thread.
    pub fn with_access_log(mut self, sink: Sink) -> Self {
        self.access_log = Some(CoreLog::new(sink));
        self
    }

    /// Hands the buffered lines to the writer thread (the sweeper, once a second, and the
    /// worker when it stops).
    pub fn ship_access_log(&self) {
        if let Some(log) = &self.access_log {
            log.ship();
        }
    }
}

impl<C: Connector, F: Front> Life<'_, C, F> {
    /// Starts the record of the request whose first bytes arrived at `start`: its id and
    /// its trace (the client's valid `traceparent`, or a new one). `parsed`: the head parsed
    /// (otherwise nothing of `req.head` belongs to this request).
    pub(super) fn begin_log(&mut self, start: Instant, parsed: bool) {
        let id = self.shared.request_id();
        let (random, span) = (self.shared.rng.next(), self.shared.rng.next());
        let h = &self.req.head;
        let client = h.traceparent.filter(|_| parsed).map(|v| v.get(&h.buf));
        let trace = Trace::of(client, id, random, span);
        self.front.sink().log().begin(start, parsed, id, trace);
    }

    /// Writes the finished request's line, when the access log is on.
    pub(super) fn end_log(&mut self) {
        let Some(core) = &self.shared.access_log else {
            return;
        };
        let cfg = self.cfg;
        let r = self.front.sink().log();
        let h = &self.req.head;
        let client_id = cfg
            .request_id_header
            .as_deref()
            .filter(|_| r.parsed)
            .and_then(|name| {
                (0..h.headers.len())
                    .map(|i| h.header_at(i))
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v);
        let consumer = self
            .req
            .grant
            .identity
            .as_deref()
            .or(self.client.meta.cert.as_deref())
            .filter(|_| r.parsed)
            .map(|id| &id.consumer[..]);
        let (method, path): (&[u8], &[u8]) = if r.parsed {
            (h.method(), &h.path)
        } else {
            (b"", b"")
        };
        let line = Line {
            time: SystemTime::now(),
            request_id: client_id.map_or(RequestId::Own(r.request_id), RequestId::Client),
            trace_id: r.trace.trace_id(),
            client_ip: self.client.peer.ip(),
            method,
            path,
            status: r.final_status(),
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            duration: r
                .start
                .map(|s| r.end_or_now().saturating_duration_since(s))
                .unwrap_or_default(),
            upstream_connect: r.connect,
            upstream_header: r.header,
            route: r
                .route
                .and_then(|i| cfg.routes.get(i))
                .map(|route| route.name.as_str()),
            upstream: r.upstream,
            consumer,
            tls: self.client.meta.tls,
            protocol: if r.parsed { h.version.as_bytes() } else { b"" },
            grpc_status: r.grpc_status,
        };
        core.write(&line);
    }
}
