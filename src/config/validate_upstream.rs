//! Checks for the load-balancing, health, outlier, breaker and retry fields
//! (`config/upstream.rs`). Collects every error with its field path.

use super::{
    parse_retry_on, Balance, ConfigError, GatewayConfig, HashOn, UpstreamConfig, UpstreamProtocol,
};

/// Largest server weight (a hash ring holds 100 points per weight unit).
pub const MAX_WEIGHT: u32 = 100;
/// Most attempts a route may make.
pub const MAX_ATTEMPTS: u32 = 10;
/// Most HTTP/2 connections per server per worker.
pub const MAX_HTTP2_CONNECTIONS: usize = 1000;

pub fn validate(cfg: &GatewayConfig, e: &mut Vec<ConfigError>) {
    for (i, u) in cfg.upstreams.iter().enumerate() {
        upstream(&format!("upstreams[{i}]"), u, e);
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        let p = format!("routes[{i}].retries");
        let t = &r.retries;
        if t.attempts == 0 || t.attempts > MAX_ATTEMPTS {
            e.push(ConfigError::new(
                format!("{p}.attempts"),
                format!("{} is out of range: 1 to {MAX_ATTEMPTS}", t.attempts),
            ));
        }
        if t.budget_percent > 100 {
            e.push(ConfigError::new(
                format!("{p}.budget_percent"),
                format!("{} is out of range: 0 to 100", t.budget_percent),
            ));
        }
        for (j, on) in t.on.iter().enumerate() {
            if let Err(why) = parse_retry_on(on) {
                e.push(ConfigError::new(format!("{p}.on[{j}]"), why));
            }
        }
    }
}

fn upstream(p: &str, u: &UpstreamConfig, e: &mut Vec<ConfigError>) {
    let mut push = |path: String, why: String| e.push(ConfigError::new(path, why));
    for (j, s) in u.servers.iter().enumerate() {
        if s.weight() == 0 || s.weight() > MAX_WEIGHT {
            push(
                format!("{p}.servers[{j}].weight"),
                format!("{} is out of range: 1 to {MAX_WEIGHT}", s.weight()),
            );
        }
    }
    match (u.protocol, u.tls.is_some()) {
        (UpstreamProtocol::H2c, true) => push(
            format!("{p}.protocol"),
            "\"h2c\" is HTTP/2 in the clear: use \"h2\" or \"auto\" with tls".into(),
        ),
        (UpstreamProtocol::H2 | UpstreamProtocol::Auto, false) => push(
            format!("{p}.protocol"),
            "\"h2\" and \"auto\" need tls (HTTP/2 in the clear is \"h2c\")".into(),
        ),
        _ => {}
    }
    if u.proxy_protocol.is_some() && u.protocol != UpstreamProtocol::Http1 {
        push(
            format!("{p}.proxy_protocol"),
            "is for protocol = \"http1\" upstreams (HTTP/2 connections carry many clients)".into(),
        );
    }
    if u.http2_connections == 0 || u.http2_connections > MAX_HTTP2_CONNECTIONS {
        push(
            format!("{p}.http2_connections"),
            format!(
                "{} is out of range: 1 to {MAX_HTTP2_CONNECTIONS}",
                u.http2_connections
            ),
        );
    }
    match (&u.hash_on, u.balance) {
        (Some(h), Balance::Hash) => {
            if let Err(why) = HashOn::parse(h) {
                push(format!("{p}.hash_on"), why);
            }
        }
        (Some(_), _) => push(
            format!("{p}.hash_on"),
            "is only used with balance = \"hash\"".into(),
        ),
        (None, _) => {}
    }
    if let Some(h) = &u.health_check {
        let q = format!("{p}.health_check");
        if h.grpc.is_some() && u.protocol == UpstreamProtocol::Http1 {
            push(
                format!("{q}.grpc"),
                "a gRPC health check needs protocol = \"h2c\", \"h2\" or \"auto\"".into(),
            );
        }
        if !h.path.starts_with('/') || h.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            push(
                format!("{q}.path"),
                format!(
                    "{:?} must start with '/' and hold no spaces or controls",
                    h.path
                ),
            );
        }
        if let Some(host) = &h.host {
            if host.is_empty() || !crate::grammar::is_field_value(host.as_bytes()) {
                push(
                    format!("{q}.host"),
                    format!("{host:?} is not a valid Host value"),
                );
            }
        }
        for (name, d) in [("interval", h.interval), ("timeout", h.timeout)] {
            if d.0.is_zero() {
                push(format!("{q}.{name}"), "must be above zero".into());
            }
        }
        for (name, n) in [
            ("healthy_threshold", h.healthy_threshold),
            ("unhealthy_threshold", h.unhealthy_threshold),
        ] {
            if n == 0 {
                push(format!("{q}.{name}"), "must be at least 1".into());
            }
        }
    }
    if let Some(o) = &u.outlier {
        let q = format!("{p}.outlier");
        if o.consecutive_failures == 0 {
            push(
                format!("{q}.consecutive_failures"),
                "must be at least 1".into(),
            );
        }
        if o.ejection.0.is_zero() {
            push(format!("{q}.ejection"), "must be above zero".into());
        }
        if o.max_ejection < o.ejection {
            push(
                format!("{q}.max_ejection"),
                "must be at least `ejection`".into(),
            );
        }
    }
}
