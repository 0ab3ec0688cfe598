//! A route's retry policy in compiled form, and the per-core retry budget.
//!
//! Two kinds of second tries exist, and `attempts` counts only the second:
//! - a connect failure (nothing reached the upstream) moves to another untried usable
//!   server, as long as `on` holds "connect" (the default) — any method, any body;
//! - a response whose status is in `on` is discarded (only its head was read; that
//!   connection is closed) and the request is sent to another server, for idempotent
//!   methods without a body only, while fewer than `attempts` requests were sent and the
//!   budget allows it;
//! - on an HTTP/2 upstream, a gRPC call answered trailers-only with a gRPC status in `on`
//!   ("unavailable", ...) is sent to another server the same way, whatever its method, when
//!   its whole body was kept for it (`pipeline::upstream_h2`'s replay buffer).
//!
//! Budget: a worker lets a status retry start only while its retries in flight are below
//! `max(1, in_flight * budget_percent / 100)` (in_flight: its requests being proxied, this
//! one included); `budget_percent = 0` disables status retries. A request counts as a retry
//! in flight from its first retry to its end.

use crate::config::{parse_retry_on, RetriesConfig, RetryOn};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Requests sent upstream at most (1 = no status retry).
    pub attempts: u32,
    pub on_connect: bool,
    /// Bit `s - 500` for each status 500..=599 in `on`.
    statuses: u128,
    /// Bit `code` for each gRPC status named in `on`.
    grpc_statuses: u32,
    pub budget_percent: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::build(&RetriesConfig::default())
    }
}

impl RetryPolicy {
    /// From a validated config (entries that do not parse are ignored).
    pub fn build(c: &RetriesConfig) -> RetryPolicy {
        let mut p = RetryPolicy {
            attempts: c.attempts.max(1),
            on_connect: false,
            statuses: 0,
            grpc_statuses: 0,
            budget_percent: c.budget_percent.min(100),
        };
        for on in &c.on {
            match parse_retry_on(on) {
                Ok(RetryOn::Connect) => p.on_connect = true,
                Ok(RetryOn::Status(s)) => p.statuses |= 1u128 << (s - 500),
                Ok(RetryOn::Grpc(code)) => p.grpc_statuses |= 1u32 << code,
                Err(_) => {}
            }
        }
        p
    }

    pub fn on_status(&self, status: u16) -> bool {
        (500..600).contains(&status) && self.statuses & (1u128 << (status - 500)) != 0
    }

    /// A trailers-only gRPC answer with `code` is retried (HTTP/2 upstreams).
    pub fn on_grpc(&self, code: u16) -> bool {
        code < 32 && self.grpc_statuses & (1u32 << code) != 0
    }

    /// Whether gRPC status retries can happen at all for this route.
    pub fn retries_grpc(&self) -> bool {
        self.attempts > 1 && self.grpc_statuses != 0 && self.budget_percent > 0
    }

    /// Whether status retries can happen at all for this route.
    pub fn retries_statuses(&self) -> bool {
        self.attempts > 1 && self.statuses != 0 && self.budget_percent > 0
    }

    /// The budget rule (see the module docs).
    pub fn budget_allows(&self, retries_in_flight: usize, in_flight: usize) -> bool {
        if self.budget_percent == 0 {
            return false;
        }
        let cap = (in_flight * self.budget_percent as usize / 100).max(1);
        retries_in_flight < cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_share_of_in_flight_with_a_floor_of_one() {
        let p = RetryPolicy::build(&RetriesConfig {
            attempts: 2,
            on: vec!["503".into()],
            budget_percent: 20,
        });
        assert!(p.budget_allows(0, 1));
        assert!(!p.budget_allows(1, 4));
        assert!(p.budget_allows(1, 10));
        assert!(!p.budget_allows(2, 10));
        assert!(p.on_status(503) && !p.on_status(502) && !p.on_connect);
    }

    #[test]
    fn the_default_retries_connect_failures_only() {
        let p = RetryPolicy::default();
        assert!(p.on_connect && !p.retries_statuses());
    }
}
