//! Semantic checks serde cannot express. Collects every error, never stops at the first.
//! Each error names the field path and says what is wrong and, where it helps, the fix.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{ConfigError, GatewayConfig, HeaderEditsConfig, RouteConfig, RESERVED_FIELDS};
use crate::config::Cidr;
use crate::grammar::{is_field_value, is_token};

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(path, reason));
    }
}

pub fn validate(cfg: &GatewayConfig) -> Vec<ConfigError> {
    let mut e = Errors(Vec::new());
    server(cfg, &mut e);
    timeouts(cfg, &mut e);
    limits(cfg, &mut e);
    http2(cfg, &mut e);
    upstreams(cfg, &mut e);
    for (i, r) in cfg.routes.iter().enumerate() {
        route(cfg, i, r, &mut e);
    }
    super::validate_policy::validate(cfg, &mut e.0);
    super::validate_protect::validate(cfg, &mut e.0);
    super::validate_upstream::validate(cfg, &mut e.0);
    super::access_log::validate(&cfg.access_log, &mut e.0);
    super::redis::validate(cfg, &mut e.0);
    e.0
}

fn server(cfg: &GatewayConfig, e: &mut Errors) {
    let s = &cfg.server;
    if s.listen.is_empty() && cfg.listeners.is_empty() {
        e.push(
            "server.listen",
            "at least one address is required, like \"127.0.0.1:8080\"",
        );
    }
    let mut seen = HashSet::new();
    for (i, l) in s.listen.iter().enumerate() {
        match l.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 && !seen.insert(a) => e.push(
                format!("server.listen[{i}]"),
                format!("{l:?} is listed twice"),
            ),
            Ok(_) => {}
            Err(_) => e.push(
                format!("server.listen[{i}]"),
                format!("{l:?} is not an ip:port address (IPv6 as \"[::1]:8080\")"),
            ),
        }
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        if !l.http1 && !l.http2 {
            e.push(
                format!("listeners[{i}].http1"),
                "a listener needs http1 or http2 (or both)",
            );
        }
        if !l.http1 && l.redirect_https_port.is_some() {
            e.push(
                format!("listeners[{i}].http1"),
                "a listener that redirects to HTTPS must speak HTTP/1.1",
            );
        }
        let p = format!("listeners[{i}]");
        match l.address.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 && !seen.insert(a) => e.push(
                format!("{p}.address"),
                format!("{:?} is listed twice", l.address),
            ),
            Ok(_) => {}
            Err(_) => e.push(
                format!("{p}.address"),
                format!("{:?} is not an ip:port address", l.address),
            ),
        }
        for (j, c) in l.proxy_protocol_from.iter().enumerate() {
            if let Err(why) = super::Cidr::parse(c) {
                e.push(format!("{p}.proxy_protocol_from[{j}]"), why);
            }
        }
        if !l.proxy_protocol_from.is_empty() && l.proxy_protocol.is_none() {
            e.push(
                format!("{p}.proxy_protocol_from"),
                "is only used with proxy_protocol",
            );
        }
        if l.redirect_https_port == Some(0) {
            e.push(
                format!("{p}.redirect_https_port"),
                "must be a port from 1 to 65535",
            );
        }
        if let Some(t) = &l.tls {
            if l.redirect_https_port.is_some() {
                e.push(p.clone(), "a TLS listener cannot also redirect to HTTPS");
            }
            let tp = format!("{p}.tls");
            if !["default", "refuse"].contains(&t.unknown_sni.as_str()) {
                e.push(
                    format!("{tp}.unknown_sni"),
                    format!("{:?} is not one of default, refuse", t.unknown_sni),
                );
            }
            if !["1.2", "1.3"].contains(&t.min_version.as_str()) {
                e.push(
                    format!("{tp}.min_version"),
                    format!("{:?} is not one of 1.2, 1.3", t.min_version),
                );
            }
            if let Some(alpn) = &t.alpn {
                if alpn.is_empty() || alpn.iter().any(|a| a.is_empty() || a.len() > 255) {
                    e.push(
                        format!("{tp}.alpn"),
                        "list one or more protocol names like \"http/1.1\"",
                    );
                } else if (!l.http2 && alpn.iter().any(|a| a == "h2"))
                    || (!l.http1 && alpn.iter().any(|a| a != "h2"))
                {
                    e.push(
                        format!("{tp}.alpn"),
                        "lists a protocol the listener's http1 / http2 turn off",
                    );
                }
            }
            if t.handshake_timeout.0.is_zero() {
                e.push(
                    format!("{tp}.handshake_timeout"),
                    "must be greater than zero",
                );
            }
            if let Some(c) = &t.client_auth {
                if !["required", "optional"].contains(&c.mode.as_str()) {
                    e.push(
                        format!("{tp}.client_auth.mode"),
                        format!("{:?} is not one of required, optional", c.mode),
                    );
                }
            }
        }
    }
    if let Some(a) = &cfg.admin {
        match a.listen.parse::<SocketAddr>() {
            Ok(addr) if seen.contains(&addr) && addr.port() != 0 => e.push(
                "admin.listen",
                format!("{:?} is also a traffic listener", a.listen),
            ),
            Ok(_) => {}
            Err(_) => e.push(
                "admin.listen",
                format!("{:?} is not an ip:port address", a.listen),
            ),
        }
    }
    if let Some(w) = s.workers {
        if w == 0 || w > 1024 {
            e.push("server.workers", format!("{w} is out of range: 1 to 1024"));
        }
    }
    if s.backlog == 0 {
        e.push("server.backlog", "must be at least 1");
    }
    for (i, p) in s.trusted_proxies.iter().enumerate() {
        if let Err(why) = Cidr::parse(p) {
            e.push(format!("server.trusted_proxies[{i}]"), why);
        }
    }
    if !s.via.is_empty() && !is_token(s.via.as_bytes()) {
        e.push(
            "server.via",
            format!(
                "{:?} must be a token (letters, digits, -._~!#$%&'*+^`|)",
                s.via
            ),
        );
    }
    if !s.request_id_header.is_empty() && !is_token(s.request_id_header.as_bytes()) {
        e.push(
            "server.request_id_header",
            format!("{:?} is not a valid field name", s.request_id_header),
        );
    }
    for (i, p) in s.upgrade_protocols.iter().enumerate() {
        let path = format!("server.upgrade_protocols[{i}]");
        if p.eq_ignore_ascii_case("h2c") {
            e.push(
                path,
                "\"h2c\" cannot be tunnelled: ringway speaks HTTP/1.1 to upstreams; remove it \
                 (an h2c upgrade request is forwarded without its upgrade)",
            );
        } else if !is_token(p.as_bytes()) {
            e.push(
                path,
                format!("{p:?} is not a protocol name (a token, like \"websocket\")"),
            );
        }
    }
}

fn timeouts(cfg: &GatewayConfig, e: &mut Errors) {
    let t = &cfg.timeouts;
    let all = [
        ("header", t.header),
        ("body", t.body),
        ("idle", t.idle),
        ("write", t.write),
        ("upstream_connect", t.upstream_connect),
        ("upstream_response", t.upstream_response),
        ("tunnel_idle", t.tunnel_idle),
    ];
    for (name, d) in all {
        if d.0.is_zero() {
            e.push(format!("timeouts.{name}"), "must be greater than zero");
        }
    }
}

/// `[http2]`: every value within what HTTP/2 (RFC 9113 §6.5.2) and the codec allow.
fn http2(cfg: &GatewayConfig, e: &mut Errors) {
    let h = &cfg.http2;
    const MAX_WINDOW: u64 = (1 << 31) - 1;
    let ranges: [(&str, u64, u64, u64); 6] = [
        (
            "max_concurrent_streams",
            u64::from(h.max_concurrent_streams),
            1,
            100_000,
        ),
        (
            "initial_stream_window",
            u64::from(h.initial_stream_window),
            65_535,
            MAX_WINDOW,
        ),
        (
            "initial_connection_window",
            u64::from(h.initial_connection_window),
            65_535,
            MAX_WINDOW,
        ),
        (
            "max_frame_size",
            u64::from(h.max_frame_size),
            16_384,
            16_777_215,
        ),
        (
            "header_table_size",
            u64::from(h.header_table_size),
            0,
            65_536,
        ),
        (
            "max_resets_per_second",
            u64::from(h.max_resets_per_second),
            1,
            1_000_000,
        ),
    ];
    for (field, value, lo, hi) in ranges {
        if !(lo..=hi).contains(&value) {
            e.push(
                format!("http2.{field}"),
                format!("{value} is out of range: {lo} to {hi}"),
            );
        }
    }
    let f = &h.flood;
    for (field, value) in [
        ("settings", f.settings),
        ("ping", f.ping),
        ("priority", f.priority),
        ("rst_stream", f.rst_stream),
        ("empty_data", f.empty_data),
        ("window_update", f.window_update),
    ] {
        if value == 0 {
            e.push(format!("http2.flood.{field}"), "must be at least 1");
        }
    }
    if !(1024..=16 * 1024 * 1024).contains(&h.max_send_buffer) {
        e.push(
            "http2.max_send_buffer",
            format!("{} is out of range: 1024 to 16777216", h.max_send_buffer),
        );
    }
}

fn limits(cfg: &GatewayConfig, e: &mut Errors) {
    let l = &cfg.limits;
    if !(1024..=1024 * 1024).contains(&l.max_header_bytes) {
        e.push(
            "limits.max_header_bytes",
            format!("{} is out of range: 1024 to 1048576", l.max_header_bytes),
        );
    }
    if !(1..=256).contains(&l.max_headers) {
        e.push(
            "limits.max_headers",
            format!("{} is out of range: 1 to 256", l.max_headers),
        );
    }
    // A target longer than max_header_bytes is stopped by that limit first (431).
    if l.max_uri_bytes == 0 {
        e.push("limits.max_uri_bytes", "must be at least 1");
    }
    if l.max_connections == 0 {
        e.push("limits.max_connections", "must be at least 1");
    }
    if l.max_in_flight == 0 {
        e.push("limits.max_in_flight", "must be at least 1");
    }
    if l.memory_ceiling != 0 && l.memory_ceiling < MIN_MEMORY_CEILING {
        e.push(
            "limits.memory_ceiling",
            format!(
                "{} bytes is below the minimum of {MIN_MEMORY_CEILING} (16 MiB); 0 turns it off \
                 (the value is in bytes, not MiB)",
                l.memory_ceiling
            ),
        );
    }
}

/// Below this, a ceiling is surely a unit mistake: the process alone needs about that much.
const MIN_MEMORY_CEILING: u64 = 16 << 20;

fn upstreams(cfg: &GatewayConfig, e: &mut Errors) {
    let mut names = HashSet::new();
    for (i, u) in cfg.upstreams.iter().enumerate() {
        let p = format!("upstreams[{i}]");
        let valid = !u.name.is_empty()
            && u.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            e.push(
                format!("{p}.name"),
                format!("{:?} must be letters, digits, '_', '.' or '-'", u.name),
            );
        } else if !names.insert(u.name.as_str()) {
            e.push(
                format!("{p}.name"),
                format!("{:?} is defined twice", u.name),
            );
        }
        if u.servers.is_empty() {
            e.push(
                format!("{p}.servers"),
                "at least one \"host:port\" is required",
            );
        }
        for (j, s) in u.servers.iter().enumerate() {
            if let Err(why) = super::upstream::check_server(s.address()) {
                e.push(format!("{p}.servers[{j}]"), why);
            }
        }
        if u.keepalive > 10_000 {
            e.push(
                format!("{p}.keepalive"),
                format!("{} is out of range: 0 to 10000", u.keepalive),
            );
        }
    }
}

/// A route path must start with '/' (whether it is a normalised path is checked where
/// routes are compiled: normalisation is HTTP's).
fn starts_with_slash(path: &str, p: &str, e: &mut Errors) {
    if !p.starts_with('/') {
        e.push(path, format!("{p:?} must start with '/'"));
    }
}

/// Lowercase host or "*." + host; no port.
fn check_host(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    let ok = !name.is_empty()
        && !name.contains('*')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{h:?} must be a host name like \"api.example.com\" or \"*.example.com\" (no port)"
        ))
    }
}

fn route(cfg: &GatewayConfig, i: usize, r: &RouteConfig, e: &mut Errors) {
    let p = format!("routes[{i}]");
    match (&r.path_prefix, &r.path) {
        (None, None) => e.push(&p, "set path_prefix (e.g. \"/\") or path"),
        (Some(_), Some(_)) => e.push(&p, "set only one of path_prefix and path"),
        (Some(x), None) => starts_with_slash(&format!("{p}.path_prefix"), x, e),
        (None, Some(x)) => starts_with_slash(&format!("{p}.path"), x, e),
    }
    if let Some(h) = &r.host {
        if let Err(why) = check_host(h) {
            e.push(format!("{p}.host"), why);
        }
    }
    if let Some(methods) = &r.methods {
        if methods.is_empty() {
            e.push(
                format!("{p}.methods"),
                "an empty list matches nothing: remove it to match all",
            );
        }
        for (j, m) in methods.iter().enumerate() {
            if !is_token(m.as_bytes()) {
                e.push(
                    format!("{p}.methods[{j}]"),
                    format!("{m:?} is not a method token"),
                );
            }
        }
    }
    for (j, h) in r.headers.iter().enumerate() {
        if !is_token(h.name.as_bytes()) {
            e.push(
                format!("{p}.headers[{j}].name"),
                format!("{:?} is not a valid field name", h.name),
            );
        }
        if h.absent && h.value.is_some() {
            e.push(
                format!("{p}.headers[{j}]"),
                "absent = true cannot be combined with value",
            );
        }
        if let Some(v) = &h.value {
            if !is_field_value(v.as_bytes()) {
                e.push(
                    format!("{p}.headers[{j}].value"),
                    "contains a control character",
                );
            }
        }
    }
    if r.strip_prefix && r.path_prefix.is_none() {
        e.push(format!("{p}.strip_prefix"), "needs path_prefix");
    }
    if r.strip_prefix && r.rewrite_prefix.is_some() {
        e.push(
            format!("{p}.rewrite_prefix"),
            "set only one of strip_prefix and rewrite_prefix",
        );
    }
    if let Some(rw) = &r.rewrite_prefix {
        starts_with_slash(&format!("{p}.rewrite_prefix"), rw, e);
    }
    match (&r.upstream, &r.respond) {
        (None, None) => e.push(&p, "set upstream (a name from [[upstreams]]) or respond"),
        (Some(_), Some(_)) => e.push(&p, "set only one of upstream and respond"),
        (Some(u), None) => {
            if !cfg.upstreams.iter().any(|x| &x.name == u) {
                let defined: Vec<&str> = cfg.upstreams.iter().map(|x| x.name.as_str()).collect();
                e.push(
                    format!("{p}.upstream"),
                    format!(
                        "no upstream named {u:?} (defined: {})",
                        list_or_none(&defined)
                    ),
                );
            }
        }
        (None, Some(resp)) => {
            if !(200..=599).contains(&resp.status) {
                e.push(
                    format!("{p}.respond.status"),
                    format!("{} is out of range: 200 to 599", resp.status),
                );
            }
            if let Some(ct) = &resp.content_type {
                if !is_field_value(ct.as_bytes()) || ct.is_empty() {
                    e.push(
                        format!("{p}.respond.content_type"),
                        "must be a non-empty field value",
                    );
                }
            }
            if r.strip_prefix || r.rewrite_prefix.is_some() || !is_empty(&r.request_headers) {
                e.push(
                    &p,
                    "a respond route does not forward: remove strip_prefix, rewrite_prefix and request_headers",
                );
            }
        }
    }
    edits(&format!("{p}.request_headers"), &r.request_headers, true, e);
    edits(
        &format!("{p}.response_headers"),
        &r.response_headers,
        false,
        e,
    );
}

fn is_empty(h: &HeaderEditsConfig) -> bool {
    h.set.is_empty() && h.add.is_empty() && h.remove.is_empty()
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn edits(p: &str, h: &HeaderEditsConfig, request: bool, e: &mut Errors) {
    let check_name = |e: &mut Errors, path: String, name: &str| {
        let lower = name.to_ascii_lowercase();
        if !is_token(name.as_bytes()) {
            e.push(path, format!("{name:?} is not a valid field name"));
        } else if RESERVED_FIELDS.contains(&lower.as_str()) || (request && lower == "host") {
            e.push(
                path,
                format!("{name} is managed by ringway and cannot be edited"),
            );
        }
    };
    for (kind, map) in [("set", &h.set), ("add", &h.add)] {
        for (name, value) in map {
            check_name(e, format!("{p}.{kind}.{name}"), name);
            if !is_field_value(value.as_bytes()) {
                e.push(
                    format!("{p}.{kind}.{name}"),
                    "value contains a control character",
                );
            }
        }
    }
    for (j, name) in h.remove.iter().enumerate() {
        check_name(e, format!("{p}.remove[{j}]"), name);
    }
}
