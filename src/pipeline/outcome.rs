//! Typed outcomes: when a request is answered by ringway itself, one `Refusal` says who
//! failed (the client, the policy, the routes, the upstream, or ringway holding back), which
//! one status that maps to, and whether the client connection must close because of it.
//! Nothing between the phases travels as a bare status code.

use crate::http::ParseError;
use crate::policy::Denial;

/// What happens to the client connection once a request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
}

/// Why ringway answers a request itself instead of relaying an upstream's answer.
#[derive(Debug)]
pub enum Refusal {
    /// The client broke the protocol or a limit.
    Client(ClientFault),
    /// The policy refused the request (identity, access, rules, rate limits).
    Policy(Denial),
    /// No route matched.
    NoRoute,
    /// The upstream could not be reached, or failed before anything was relayed.
    Upstream(UpstreamFault),
    /// ringway holds the request back to protect itself or an upstream.
    Ringway(Holdback),
}

/// A client's fault. The connection always closes after it: what follows on it can no
/// longer be trusted or was never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// The head did not parse, or broke a strict rule or a limit (400, 414, 431, 501).
    Head(ParseError),
    /// The head did not arrive whole within `timeouts.header` (408).
    HeadTimeout,
    /// The body's framing is malformed (400).
    Body(ParseError),
    /// The body did not arrive within its deadline or minimum rate (408).
    BodyTimeout,
    /// The body is larger than the request's limit (413).
    BodyTooLarge,
}

/// What went wrong with an upstream before any of its answer reached the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFault {
    /// Refused, unreachable, reset, or a failed TLS handshake (502).
    ConnectFailed,
    /// The connection (with its TLS handshake) took longer than `upstream_connect` (504).
    ConnectTimeout,
    /// The response (head, or the rest of its body) took longer than `upstream_response` (504).
    ResponseTimeout,
    /// It closed, or answered with something that is not a valid response (502).
    Invalid,
    /// It answered this 5xx, which is not relayed (`protect.replace_upstream_5xx`, or a
    /// status retry that found no server left): the client gets ringway's own page.
    Status(u16),
}

/// ringway itself holds a request back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holdback {
    /// Over the memory threshold (`limits.memory_ceiling`): shedding (503, close).
    Overloaded,
    /// `limits.max_in_flight` requests are already being proxied (503).
    InFlight,
    /// The upstream's `max_pending` or `max_connections` is reached (503).
    Breaker,
    /// No server of the upstream is usable (503).
    NoHealthyServer,
    /// The compiled config names an upstream it does not hold (500).
    Internal,
}

impl Refusal {
    /// The one status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Client(c) => match c {
                ClientFault::Head(e) | ClientFault::Body(e) => e.status(),
                ClientFault::HeadTimeout | ClientFault::BodyTimeout => 408,
                ClientFault::BodyTooLarge => 413,
            },
            Refusal::Policy(d) => match d {
                Denial::Status(s) => *s,
                Denial::MethodNotAllowed(_) => 405,
                Denial::Unauthorized(_) => 401,
                Denial::RateLimited { .. } => 429,
            },
            Refusal::NoRoute => 404,
            Refusal::Upstream(u) => match u {
                UpstreamFault::ConnectFailed | UpstreamFault::Invalid => 502,
                UpstreamFault::ConnectTimeout | UpstreamFault::ResponseTimeout => 504,
                UpstreamFault::Status(s) => *s,
            },
            Refusal::Ringway(h) => match h {
                Holdback::Internal => 500,
                _ => 503,
            },
        }
    }

    /// The connection closes after this answer whatever else holds: a client fault leaves
    /// the connection's framing untrusted, a policy refusal of a body-limit kind leaves a
    /// body unread, and shedding gives the connection's memory back.
    pub fn closes(&self) -> bool {
        match self {
            Refusal::Client(_) => true,
            Refusal::Policy(d) => matches!(d, Denial::Status(413)),
            Refusal::Ringway(Holdback::Overloaded | Holdback::Internal) => true,
            _ => false,
        }
    }
}

impl From<ClientFault> for Refusal {
    fn from(c: ClientFault) -> Refusal {
        Refusal::Client(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_maps_to_one_status_and_client_faults_close() {
        let cases = [
            (
                Refusal::Client(ClientFault::Head(ParseError::UriTooLong)),
                414,
                true,
            ),
            (Refusal::Client(ClientFault::HeadTimeout), 408, true),
            (
                Refusal::Client(ClientFault::Body(ParseError::BadChunk("x"))),
                400,
                true,
            ),
            (Refusal::Client(ClientFault::BodyTooLarge), 413, true),
            (Refusal::Policy(Denial::Status(403)), 403, false),
            (Refusal::Policy(Denial::Status(413)), 413, true),
            (Refusal::NoRoute, 404, false),
            (Refusal::Upstream(UpstreamFault::ConnectTimeout), 504, false),
            (Refusal::Upstream(UpstreamFault::Invalid), 502, false),
            (Refusal::Upstream(UpstreamFault::Status(503)), 503, false),
            (Refusal::Ringway(Holdback::Overloaded), 503, true),
            (Refusal::Ringway(Holdback::InFlight), 503, false),
            (Refusal::Ringway(Holdback::Internal), 500, true),
        ];
        for (r, status, closes) in cases {
            assert_eq!((r.status(), r.closes()), (status, closes), "{r:?}");
        }
    }
}
