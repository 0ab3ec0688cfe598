//! serde types for load balancing, health checks, outlier ejection, circuit breaking
//! (`[[upstreams]]`) and retries (`[[routes]]`). Defaults keep a config without these
//! fields behaving as before: round-robin, every server healthy, one attempt.

use serde::{Deserialize, Serialize};

use super::defaults::{self, strings};
use super::Duration;

/// One entry of `upstreams[i].servers`: `"host:port"` or `{ address = "host:port", weight = 3 }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ServerEntry {
    Address(String),
    Weighted(WeightedServer),
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WeightedServer {
    pub address: String,
    /// Relative share of requests (weighted_round_robin, least_requests, p2c, hash).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl ServerEntry {
    pub fn address(&self) -> &str {
        match self {
            ServerEntry::Address(a) => a,
            ServerEntry::Weighted(w) => &w.address,
        }
    }
    pub fn weight(&self) -> u32 {
        match self {
            ServerEntry::Address(_) => defaults::upstream::WEIGHT,
            ServerEntry::Weighted(w) => w.weight,
        }
    }
}

impl From<&str> for ServerEntry {
    fn from(s: &str) -> Self {
        ServerEntry::Address(s.to_string())
    }
}

/// A server's "host:port" (an upstream's, Redis'), with a port 1..=65535; DNS is not
/// consulted here.
pub(super) fn check_server(s: &str) -> Result<(), String> {
    if s.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.port() != 0)
    {
        return Ok(());
    }
    let bad = || format!("{s:?} is not \"host:port\" with a port from 1 to 65535");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(())
}

/// `upstreams[i].protocol`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over plain TCP.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2` only).
    H2,
    /// TLS offering ALPN `h2` and `http/1.1`: each server speaks what it picks.
    Auto,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastRequests,
    P2c,
    Hash,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AllUnhealthy {
    /// Answer 503 at once.
    Fail,
    /// Ignore health and ejection: pick among all servers.
    #[default]
    TryAll,
}

/// `upstreams[i].health_check`: one checker thread per process sends `GET path` to every
/// server each `interval`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Path probed.
    pub path: String,
    /// Host field sent; default: the server's configured `host:port`.
    pub host: Option<String>,
    /// Time between probes.
    pub interval: Duration,
    /// Connect + answer within this, else a failure.
    pub timeout: Duration,
    /// Consecutive 2xx answers that make an unhealthy server healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy server unhealthy.
    pub unhealthy_threshold: u32,
    /// A gRPC health check of this service (`grpc.health.v1.Health/Check`; "" = the whole
    /// server) instead of `GET path`; HTTP/2 upstreams only.
    pub grpc: Option<String>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        use defaults::health_check as h;
        HealthCheckConfig {
            path: h::PATH.into(),
            host: None,
            interval: h::INTERVAL,
            timeout: h::TIMEOUT,
            healthy_threshold: h::HEALTHY_THRESHOLD,
            unhealthy_threshold: h::UNHEALTHY_THRESHOLD,
            grpc: None,
        }
    }
}

/// `upstreams[i].outlier`: passive health, per worker.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Consecutive connect failures or 5xx answers that eject a server.
    pub consecutive_failures: u32,
    /// First ejection; doubles on each ejection in a row.
    pub ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        use defaults::outlier as o;
        OutlierConfig {
            consecutive_failures: o::CONSECUTIVE_FAILURES,
            ejection: o::EJECTION,
            max_ejection: o::MAX_EJECTION,
        }
    }
}

/// `routes[i].retries`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetriesConfig {
    /// Requests sent upstream at most (1 = no retry after a response). At most 10.
    pub attempts: u32,
    /// "connect" and/or statuses 500..=599 as strings ("503").
    pub on: Vec<String>,
    /// Retries in flight per worker stay within this percentage of its requests in flight
    /// (at least one when above 0).
    pub budget_percent: u32,
}

impl Default for RetriesConfig {
    fn default() -> Self {
        use defaults::retries as r;
        RetriesConfig {
            attempts: r::ATTEMPTS,
            on: strings(r::ON),
            budget_percent: r::BUDGET_PERCENT,
        }
    }
}

fn default_weight() -> u32 {
    defaults::upstream::WEIGHT
}

/// What `hash_on` names, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    ClientIp,
    /// Lowercased field name.
    Header(String),
    Cookie(String),
}

impl HashOn {
    pub fn parse(s: &str) -> Result<HashOn, String> {
        let bad =
            || format!("{s:?} is not one of \"client_ip\", \"header:<Name>\", \"cookie:<name>\"");
        if s == "client_ip" {
            return Ok(HashOn::ClientIp);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || !crate::grammar::is_token(name.as_bytes()) {
            return Err(bad());
        }
        match kind {
            "header" => Ok(HashOn::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(HashOn::Cookie(name.to_string())),
            _ => Err(bad()),
        }
    }
}

/// One entry of `retries.on`, parsed: `None` for "connect", else the status.
pub fn parse_retry_on(s: &str) -> Result<RetryOn, String> {
    if s == "connect" {
        return Ok(RetryOn::Connect);
    }
    if let Some(code) = crate::grammar::GRPC_STATUS_NAMES
        .iter()
        .skip(1)
        .position(|n| n.eq_ignore_ascii_case(s) && s.bytes().all(|b| !b.is_ascii_uppercase()))
    {
        return Ok(RetryOn::Grpc(code as u8 + 1));
    }
    match s.parse::<u16>() {
        Ok(n) if (500..=599).contains(&n) && s.len() == 3 => Ok(RetryOn::Status(n)),
        _ => Err(format!(
            "{s:?} is not \"connect\", a status from \"500\" to \"599\" or a gRPC status \
             other than OK in lower case (\"unavailable\", \"resource_exhausted\", ...)"
        )),
    }
}

/// One entry of `routes[i].retries.on`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// A connect failure (to another server; nothing was sent).
    Connect,
    /// An upstream's HTTP status, 500 to 599.
    Status(u16),
    /// A gRPC call's status (1 to 16) in a trailers-only answer.
    Grpc(u8),
}
