//! Which server of an upstream gets a request, and when not to send one: load balancing
//! (`balance`), active health checks (`health`: one checker thread per process, results sent
//! to every worker over a channel), passive outlier ejection and circuit breaking (`state`),
//! and retries (`retry`).
//!
//! Invariant: everything the request path reads is per core (`State` lives in one worker's
//! `Shared`; `Lb` in its `Compiled`): no locks, no atomics. The checker thread never touches
//! worker state; a worker drains its channel off the request path. All load figures
//! (outstanding requests, connections, retries in flight) are therefore **per worker**:
//! least_requests and p2c balance each worker's own requests, and the breaker limits apply
//! per worker.
//!
//! Where it sits: below `compiled` (which holds each upstream's `Lb`) and `pipeline`; it
//! imports `config`, `http`, `io` and `metrics` only. The keep-alive pools (`pool`) live here.

pub mod balance;
pub mod h2pool;
pub mod health;
pub mod pool;
pub mod retry;
pub mod state;

use std::cell::Cell;
use std::net::IpAddr;
use std::time::Duration;

pub use balance::Ring;
pub use retry::RetryPolicy;
pub use state::State;

use crate::config::{AllUnhealthy, Balance, HashOn, HealthCheckConfig, UpstreamConfig};
use crate::http::RequestHead;

/// What an upstream connection was made with: the server's address and, for TLS, a digest
/// of every TLS setting (trust anchors, SNI and verified names, client certificate, ALPN).
/// Pools file idle connections under it, so a connection is reused only for a request
/// whose connection settings are the same (two upstreams on one address with different
/// TLS names never share one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: std::net::SocketAddr,
    /// 0 for plain TCP.
    pub settings: u64,
}

/// An upstream's balancing and health settings, compiled.
#[derive(Debug)]
pub struct Lb {
    pub balance: Balance,
    /// The configured server addresses ("host:port"), for the ring and the logs.
    pub addresses: Vec<String>,
    pub weights: Vec<u32>,
    pub hash_on: HashOn,
    /// Built for `balance = "hash"` only.
    pub ring: Option<Ring>,
    pub health_check: Option<HealthCheckConfig>,
    pub outlier: Option<Outlier>,
    pub all_unhealthy: AllUnhealthy,
    /// 0 = unlimited.
    pub max_connections: usize,
    /// 0 = unlimited.
    pub max_pending: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Outlier {
    pub consecutive_failures: u32,
    pub ejection: Duration,
    pub max_ejection: Duration,
}

impl Lb {
    /// From a validated config.
    pub fn build(u: &UpstreamConfig) -> Lb {
        let addresses: Vec<String> = u.servers.iter().map(|s| s.address().to_string()).collect();
        let weights: Vec<u32> = u.servers.iter().map(|s| s.weight().max(1)).collect();
        let ring = (u.balance == Balance::Hash).then(|| Ring::build(&addresses, &weights));
        Lb {
            balance: u.balance,
            hash_on: u
                .hash_on
                .as_deref()
                .and_then(|h| HashOn::parse(h).ok())
                .unwrap_or(HashOn::ClientIp),
            ring,
            addresses,
            weights,
            health_check: u.health_check.clone(),
            outlier: u.outlier.as_ref().map(|o| Outlier {
                consecutive_failures: o.consecutive_failures.max(1),
                ejection: o.ejection.0,
                max_ejection: o.max_ejection.0.max(o.ejection.0),
            }),
            all_unhealthy: u.all_unhealthy,
            max_connections: u.max_connections,
            max_pending: u.max_pending,
        }
    }

    /// The hash key of a request for `balance = "hash"`; None when it has no key (no such
    /// header or cookie: the request is then balanced round-robin).
    pub fn hash_key(&self, head: &RequestHead, peer: IpAddr) -> Option<u64> {
        self.ring.as_ref()?;
        match &self.hash_on {
            HashOn::ClientIp => Some(match peer {
                IpAddr::V4(a) => balance::stable_hash(&[&a.octets()]),
                IpAddr::V6(a) => balance::stable_hash(&[&a.octets()]),
            }),
            HashOn::Header(name) => head
                .header(name.as_bytes())
                .map(|v| balance::stable_hash(&[v])),
            HashOn::Cookie(name) => head
                .header(b"cookie")
                .and_then(|c| cookie(c, name.as_bytes()))
                .map(|v| balance::stable_hash(&[v])),
        }
    }
}

/// The value of cookie `name` in a Cookie field value (`a=1; b=2`).
fn cookie<'a>(field: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    field.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| &pair[eq + 1..])
    })
}

/// The servers already tried for one request (no allocation up to 128 servers).
#[derive(Default)]
pub struct Tried {
    small: u128,
    more: Vec<usize>,
}

impl Tried {
    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.small |= 1 << i;
        } else if !self.more.contains(&i) {
            self.more.push(i);
        }
    }
    pub fn is_empty(&self) -> bool {
        self.small == 0 && self.more.is_empty()
    }
    pub fn contains(&self, i: usize) -> bool {
        if i < 128 {
            self.small & (1 << i) != 0
        } else {
            self.more.contains(&i)
        }
    }
}

/// Per-core counters for metrics: plain cells, read with `snapshot`.
#[derive(Default, Debug)]
pub struct Counters {
    /// Status retries started.
    pub retries: Cell<u64>,
    /// Status retries refused by the budget.
    pub retry_budget_exhausted: Cell<u64>,
    /// Connect failovers to another server.
    pub connect_failovers: Cell<u64>,
    /// Servers ejected by outlier detection.
    pub ejections: Cell<u64>,
    /// Health state changes applied by this worker (from the checker).
    pub health_transitions: Cell<u64>,
    /// Requests answered 503 by `max_pending` / `max_connections`.
    pub breaker_rejections: Cell<u64>,
    /// Requests answered 503 because every server was unhealthy (`all_unhealthy = "fail"`).
    pub no_healthy_server: Cell<u64>,
}

/// A copy of `Counters` at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub retries: u64,
    pub retry_budget_exhausted: u64,
    pub connect_failovers: u64,
    pub ejections: u64,
    pub health_transitions: u64,
    pub breaker_rejections: u64,
    pub no_healthy_server: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            retries: self.retries.get(),
            retry_budget_exhausted: self.retry_budget_exhausted.get(),
            connect_failovers: self.connect_failovers.get(),
            ejections: self.ejections.get(),
            health_transitions: self.health_transitions.get(),
            breaker_rejections: self.breaker_rejections.get(),
            no_healthy_server: self.no_healthy_server.get(),
        }
    }
}

pub(crate) use crate::metrics::bump;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        assert_eq!(cookie(b"a=1; sid=xyz; b=2", b"sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie(b"xsid=1;sid=2", b"sid"), Some(&b"2"[..]));
        assert_eq!(cookie(b"a=1", b"sid"), None);
    }

    #[test]
    fn tried_holds_small_and_large_indexes() {
        let mut t = Tried::default();
        t.insert(3);
        t.insert(200);
        assert!(t.contains(3) && t.contains(200) && !t.contains(4) && !t.contains(201));
    }
}
