//! The runtime form of the config: `Compiled::build(&GatewayConfig)` turns the serde types
//! into per-core lookup structures (host table + path trie + predicates, upstream sets,
//! header edits, CIDR lists). Immutable once built, cheap to look up, no I/O after build,
//! no allocation or string building per lookup. Each worker owns its own copy.
//!
//! Where it sits: above `policy`, `upstream`, `tls`, `io`, `http` and `config`, whose
//! compiled parts it gathers; below `pipeline`, `front` and `runtime`.

mod protect;
mod route_table;

pub use protect::{hsts_value, ErrorPage, Protect};
pub use route_table::{HeaderPredicate, HostMatch, PathMatch, RouteMatch, RouteTable};

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{
    Cidr, ConfigError, ConfigErrors, GatewayConfig, HeaderEditsConfig, IoDriver, RouteConfig,
    UpstreamConfig,
};
use crate::http::path::EscapedSlashes;
use crate::http::{Limits, RequestHead};
use crate::policy::Policy;

/// What routing needs from a request. Implemented by `RequestHead`; tests can mock it.
pub trait RequestView {
    /// Lowercased host without port; empty if none.
    fn host(&self) -> &[u8];
    /// Normalised path.
    fn path(&self) -> &[u8];
    fn method(&self) -> &[u8];
    /// First value of a field; `name` is lowercase.
    fn header(&self, name: &[u8]) -> Option<&[u8]>;
}

impl RequestView for RequestHead {
    fn host(&self) -> &[u8] {
        &self.host_lower
    }
    fn path(&self) -> &[u8] {
        &self.path
    }
    fn method(&self) -> &[u8] {
        RequestHead::method(self)
    }
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        RequestHead::header(self, name)
    }
}

/// A request seen with another (lowercased) path.
struct Folded<'a, R> {
    req: &'a R,
    path: &'a [u8],
}

impl<R: RequestView> RequestView for Folded<'_, R> {
    fn host(&self) -> &[u8] {
        self.req.host()
    }
    fn path(&self) -> &[u8] {
        self.path
    }
    fn method(&self) -> &[u8] {
        self.req.method()
    }
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.req.header(name)
    }
}

impl Timeouts {
    /// The deadline of a request body that began at `start`.
    pub fn body_deadline(&self, start: std::time::Instant) -> crate::io::deadline::BodyDeadline {
        crate::io::deadline::BodyDeadline::new(
            start,
            self.body,
            self.min_body_rate_grace,
            self.min_body_rate,
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    pub write: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub drain: Duration,
    /// Zero = no limit.
    pub max_connection_age: Duration,
    pub tunnel_idle: Duration,
    /// `limits.min_body_rate` in bytes per second; 0 = off.
    pub min_body_rate: u64,
    pub min_body_rate_grace: Duration,
}

#[derive(Debug)]
pub struct Compiled {
    /// `server.listen`, then each `[[listeners]]` address (see `tls::build` for their kinds).
    pub listen: Vec<SocketAddr>,
    pub workers: usize,
    pub pin_workers: bool,
    pub io_driver: IoDriver,
    pub backlog: u32,
    pub limits: Limits,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub max_in_flight: usize,
    /// Bodies with at least this many bytes left after the first read are spliced; 0 = never.
    pub splice_threshold: u64,
    pub timeouts: Timeouts,
    /// `server.upgrade_protocols`, lowercased (never `h2c`).
    pub upgrade_protocols: Vec<Bytes>,
    pub trusted_proxies: Vec<Cidr>,
    /// Some upstream is sent PROXY protocol headers: connections learn their local address.
    pub sends_proxy_protocol: bool,
    /// Full Via value to append, e.g. b"1.1 ringway"; None when disabled.
    pub via: Option<Bytes>,
    /// Request-id field name as configured; None when disabled.
    pub request_id_header: Option<Bytes>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    /// Access control and blocking rules.
    pub policy: Policy,
    /// `[redis]`, when some rate limit is global.
    pub redis: Option<std::rc::Rc<crate::store::Settings>>,
    /// What ringway hides from clients and from its logs.
    pub protect: Protect,
    /// HTTP/2 settings and limits, as configured.
    pub http2: crate::config::Http2Config,
    /// Route paths are matched in lowercase (their patterns were lowercased at build).
    fold_case: bool,
    table: RouteTable,
}

#[derive(Debug)]
pub struct Route {
    /// Position in the config's `routes` (and in the policy's per-route tables).
    pub index: usize,
    /// Configured name, or "routes[i]".
    pub name: String,
    pub action: Action,
    pub rewrite: PathRewrite,
    pub request_edits: HeaderEdits,
    pub response_edits: HeaderEdits,
    /// `Strict-Transport-Security` value, sent on TLS connections only.
    pub hsts: Option<Bytes>,
    /// When the request goes to another server.
    pub retry: crate::upstream::RetryPolicy,
}

#[derive(Debug)]
pub enum Action {
    /// Index into `Compiled::upstreams`.
    Proxy { upstream: usize },
    Respond {
        status: u16,
        body: Option<Bytes>,
        content_type: Option<Bytes>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    None,
    /// Replace the first `prefix_len` bytes of the normalised path with `with`
    /// (strip_prefix is `with = "/"` plus merging a doubled slash).
    Replace {
        prefix_len: usize,
        with: Bytes,
    },
}

impl PathRewrite {
    /// Appends the path to forward for `path` (normalised) to `out`. Always starts with '/'
    /// and never contains "//" produced by the rewrite itself.
    pub fn apply(&self, path: &[u8], out: &mut Vec<u8>) {
        match self {
            PathRewrite::None => out.extend_from_slice(path),
            PathRewrite::Replace { prefix_len, with } => {
                let rest = path.get(*prefix_len..).unwrap_or_default();
                // `with` starts with '/' (validated): "/" + "/users" must not become "//users".
                out.extend_from_slice(with);
                let rest = match out.last() {
                    Some(b'/') => rest.strip_prefix(b"/").unwrap_or(rest),
                    _ => rest,
                };
                out.extend_from_slice(rest);
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct HeaderEdits {
    /// (name as written, lowercase name, value)
    pub set: Vec<(Bytes, Bytes, Bytes)>,
    pub add: Vec<(Bytes, Bytes)>,
    /// Lowercase names to remove (also covers the names in `set`).
    pub remove: Vec<Bytes>,
}

impl HeaderEdits {
    /// True when a field with this name must be dropped before `set`/`add` are appended.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self
                .set
                .iter()
                .any(|(_, lower, _)| lower.eq_ignore_ascii_case(name))
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<SocketAddr>,
    /// The host part of each configured server ("api.internal" of "api.internal:443"),
    /// the TLS server name unless `tls.server_name` is set.
    pub hosts: Vec<String>,
    /// TLS to the servers, when configured.
    pub tls: Option<crate::tls::UpstreamTls>,
    /// Each server's connection settings: its idle connections are pooled under this.
    pub pool_keys: Vec<crate::upstream::PoolKey>,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    /// HTTP/1.1 or HTTP/2 (`upstream::h2pool`) to the servers.
    pub protocol: crate::config::UpstreamProtocol,
    /// HTTP/2: connections per server per worker at most.
    pub http2_connections: usize,
    /// The PROXY protocol header sent first on each new connection to the servers.
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// Balancing, health and breaker settings.
    pub lb: crate::upstream::Lb,
}

impl Compiled {
    /// Builds the runtime form. `file` is used in error messages. Resolves upstream host
    /// names once (the only I/O). Also applies the default worker count.
    pub fn build(cfg: &GatewayConfig, file: &str) -> Result<Compiled, ConfigErrors> {
        Compiled::build_resolved(cfg, file, None)
    }

    /// `build`, taking upstream host names from `resolved` (see `resolve_names`) instead
    /// of asking the resolver: a worker never waits on DNS.
    pub fn build_resolved(
        cfg: &GatewayConfig,
        file: &str,
        resolved: Option<&Resolved>,
    ) -> Result<Compiled, ConfigErrors> {
        let mut errors = Vec::new();
        check_route_paths(cfg, &mut errors);
        let base_dir = std::path::Path::new(file)
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let plain = cfg
            .server
            .listen
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("server.listen[{i}]"), l));
        let more = cfg
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("listeners[{i}].address"), &l.address));
        let listen = plain
            .chain(more)
            .filter_map(|(path, l)| match l.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(ConfigError::new(
                        path,
                        format!("{l:?} is not an ip:port address"),
                    ));
                    None
                }
            })
            .collect();
        let upstreams = cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| build_upstream(i, u, base_dir, resolved, &mut errors))
            .collect::<Vec<_>>();
        let mut trusted_proxies = Vec::new();
        for (i, p) in cfg.server.trusted_proxies.iter().enumerate() {
            match Cidr::parse(p) {
                Ok(c) => trusted_proxies.push(c),
                Err(why) => errors.push(ConfigError::new(
                    format!("server.trusted_proxies[{i}]"),
                    why,
                )),
            }
        }
        let mut routes = Vec::new();
        let mut matches = Vec::new();
        let fold_case = cfg.policy.case_insensitive_paths;
        for (i, r) in cfg.routes.iter().enumerate() {
            match build_route(i, r, &upstreams) {
                Ok((route, mut m)) => {
                    if fold_case {
                        m.path = match m.path {
                            PathMatch::Prefix(p) => PathMatch::Prefix(p.to_ascii_lowercase()),
                            PathMatch::Exact(p) => PathMatch::Exact(p.to_ascii_lowercase()),
                        };
                    }
                    routes.push(route);
                    matches.push(m);
                }
                Err(e) => errors.push(e),
            }
        }
        let policy = Policy::build(cfg, base_dir, &mut errors);
        let protect = Protect::build(cfg, base_dir, &mut errors);
        let redis = cfg
            .redis
            .as_ref()
            .filter(|_| policy.has_global_limits())
            .and_then(|r| match address_of(&r.address, resolved) {
                Ok(addr) => Some(crate::store::Settings::build(
                    r,
                    addr,
                    host_of(&r.address),
                    base_dir,
                    &mut errors,
                )),
                Err(why) => {
                    errors.push(ConfigError::new("redis.address", why));
                    None
                }
            })
            .map(std::rc::Rc::new);
        if !errors.is_empty() {
            return Err(ConfigErrors {
                file: file.to_string(),
                errors,
            });
        }
        let t = &cfg.timeouts;
        let l = &cfg.limits;
        Ok(Compiled {
            listen,
            workers: cfg
                .server
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            pin_workers: cfg.server.pin_workers,
            http2: cfg.http2.clone(),
            io_driver: cfg.server.io_driver,
            backlog: cfg.server.backlog,
            limits: Limits {
                max_header_bytes: l.max_header_bytes,
                max_headers: l.max_headers,
                max_uri_bytes: l.max_uri_bytes,
                escaped_slashes: EscapedSlashes::from_config(&cfg.policy.escaped_slashes),
                allow_underscores: l.allow_underscores_in_headers,
                allow_options_asterisk: cfg.server.allow_options_asterisk,
            },
            max_body_bytes: l.max_body_bytes,
            max_connections: l.max_connections,
            max_in_flight: l.max_in_flight,
            splice_threshold: cfg.server.splice_threshold,
            timeouts: Timeouts {
                header: t.header.0,
                body: t.body.0,
                idle: t.idle.0,
                write: t.write.0,
                upstream_connect: t.upstream_connect.0,
                upstream_response: t.upstream_response.0,
                drain: t.drain.0,
                max_connection_age: t.max_connection_age.0,
                tunnel_idle: t.tunnel_idle.0,
                min_body_rate: l.min_body_rate,
                min_body_rate_grace: l.min_body_rate_grace.0,
            },
            upgrade_protocols: cfg
                .server
                .upgrade_protocols
                .iter()
                .filter(|p| !p.eq_ignore_ascii_case("h2c"))
                .map(|p| Bytes::from(p.to_ascii_lowercase()))
                .collect(),
            trusted_proxies,
            sends_proxy_protocol: cfg.upstreams.iter().any(|u| u.proxy_protocol.is_some()),
            via: (!cfg.server.via.is_empty())
                .then(|| Bytes::from(format!("1.1 {}", cfg.server.via))),
            request_id_header: (!cfg.server.request_id_header.is_empty())
                .then(|| Bytes::from(cfg.server.request_id_header.clone())),
            routes,
            upstreams: upstreams.into_iter().map(|(u, _)| u).collect(),
            policy,
            redis,
            protect,
            fold_case,
            table: RouteTable::build(&matches),
        })
    }

    /// The route for a request, or None (-> 404). Priority: exact host, then wildcard host
    /// (longest suffix first), then host-less routes; within a tier the longest path match
    /// (an exact path beats a prefix of the same length), then file order; method and
    /// header predicates must hold.
    pub fn route<R: RequestView>(&self, req: &R) -> Option<&Route> {
        self.table.lookup(req).map(|i| &self.routes[i])
    }

    /// `route`, honouring `policy.case_insensitive_paths`: then the path is matched in
    /// lowercase (`scratch` holds it; the request keeps its own path).
    pub fn route_for<'a, R: RequestView>(
        &'a self,
        req: &R,
        scratch: &mut Vec<u8>,
    ) -> Option<&'a Route> {
        if !self.fold_case {
            return self.route(req);
        }
        scratch.clear();
        scratch.extend(req.path().iter().map(u8::to_ascii_lowercase));
        self.route(&Folded { req, path: scratch })
    }

    /// (route name, upstream name) for metrics: route index `r` (None: no route), and
    /// whether the request went to the route's upstream.
    pub fn metric_names(&self, r: Option<usize>, proxied: bool) -> (String, String) {
        let Some(route) = r.and_then(|i| self.routes.get(i)) else {
            return (String::new(), String::new());
        };
        let upstream = match (&route.action, proxied) {
            (Action::Proxy { upstream }, true) => self
                .upstreams
                .get(*upstream)
                .map_or(String::new(), |u| u.name.clone()),
            _ => String::new(),
        };
        (route.name.clone(), upstream)
    }

    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// Upstream `host:port` names (not IP literals) and the address each resolved to.
pub type Resolved = std::collections::BTreeMap<String, SocketAddr>;

/// Resolves every upstream server, and the Redis server, given by name (blocking: call it
/// off the request path). A name that does not resolve is left out (compiling then
/// reports it).
pub fn resolve_names(cfg: &GatewayConfig) -> Resolved {
    let mut out = Resolved::new();
    let servers = cfg
        .upstreams
        .iter()
        .flat_map(|u| &u.servers)
        .map(|s| s.address());
    let redis = cfg.redis.iter().map(|r| r.address.as_str());
    for s in servers.chain(redis) {
        if s.parse::<SocketAddr>().is_ok() || out.contains_key(s) {
            continue;
        }
        if let Some(a) = s.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            out.insert(s.to_string(), a);
        }
    }
    out
}

/// The address of a configured `host:port`: an IP literal as written; a name from
/// `resolved` (a worker never waits on DNS), or else from the resolver (`ringway check`,
/// the first compile): the first address it gives.
fn address_of(s: &str, resolved: Option<&Resolved>) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    match resolved {
        Some(r) => r
            .get(s)
            .copied()
            .ok_or_else(|| format!("cannot resolve {s:?}")),
        None => match s.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| format!("{s:?} resolves to no address")),
            Err(e) => Err(format!("cannot resolve {s:?}: {e}")),
        },
    }
}

/// The host of a configured `host:port` (an IPv6 literal without its brackets): the name
/// TLS sends unless one is configured.
fn host_of(s: &str) -> String {
    let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

use crate::config::UpstreamProtocol;

impl Compiled {
    /// Every upstream as the health checker sees it, in config order.
    pub fn health_targets(&self) -> Vec<crate::upstream::health::Checked<'_>> {
        self.upstreams
            .iter()
            .map(|u| crate::upstream::health::Checked {
                name: &u.name,
                servers: &u.servers,
                lb: &u.lb,
                tls: u.tls.is_some(),
                h2_tls: u
                    .tls
                    .as_ref()
                    .filter(|_| u.protocol != UpstreamProtocol::Http1),
                hosts: &u.hosts,
            })
            .collect()
    }
}

fn build_upstream(
    i: usize,
    u: &UpstreamConfig,
    base_dir: &std::path::Path,
    resolved: Option<&Resolved>,
    errors: &mut Vec<ConfigError>,
) -> (Upstream, String) {
    let mut servers = Vec::new();
    let hosts: Vec<String> = u.servers.iter().map(|s| host_of(s.address())).collect();
    let tls = u.tls.as_ref().and_then(|t| {
        let auto = u.protocol == crate::config::UpstreamProtocol::Auto;
        crate::tls::UpstreamTls::build(&format!("upstreams[{i}].tls"), t, base_dir, auto, errors)
    });
    for (j, s) in u.servers.iter().enumerate() {
        match address_of(s.address(), resolved) {
            Ok(a) => servers.push(a),
            Err(why) => errors.push(ConfigError::new(
                format!("upstreams[{i}].servers[{j}]"),
                why,
            )),
        }
    }
    let pool_keys = servers
        .iter()
        .zip(&hosts)
        .map(
            |(&addr, host): (&SocketAddr, &String)| crate::upstream::PoolKey {
                addr,
                settings: tls.as_ref().map_or(0, |t| t.connection_settings(host)),
            },
        )
        .collect();
    (
        Upstream {
            name: u.name.clone(),
            servers,
            hosts,
            tls,
            pool_keys,
            keepalive: u.keepalive,
            keepalive_timeout: u.keepalive_timeout.0,
            protocol: u.protocol,
            http2_connections: u.http2_connections,
            proxy_protocol: u.proxy_protocol,
            lb: crate::upstream::Lb::build(u),
        },
        u.name.clone(),
    )
}

fn build_edits(h: &HeaderEditsConfig) -> HeaderEdits {
    let b = |s: &String| Bytes::from(s.clone());
    HeaderEdits {
        set: h
            .set
            .iter()
            .map(|(n, v)| (b(n), Bytes::from(n.to_ascii_lowercase()), b(v)))
            .collect(),
        add: h.add.iter().map(|(n, v)| (b(n), b(v))).collect(),
        remove: h
            .remove
            .iter()
            .map(|n| Bytes::from(n.to_ascii_lowercase()))
            .collect(),
    }
}

/// A normalised path (its leading '/' is checked by `config`): no empty, "." or ".." segments, only uppercase
/// escapes of characters that normalisation keeps escaped, no query or fragment.
fn check_path(p: &str) -> Result<(), String> {
    let mut out = Vec::new();
    match crate::http::path::normalize(p.as_bytes(), &mut out) {
        Ok(parts) if parts.query.is_some() => Err(format!("{p:?} must not contain '?'")),
        Ok(_) if out != p.as_bytes() => Err(format!(
            "{p:?} is not a normalised path; requests are matched on \"{}\"",
            String::from_utf8_lossy(&out)
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{p:?} is not a valid path: {e}")),
    }
}

/// Every route path a request is matched against or rewritten to must be a normalised
/// path (the config layer checks the rest of a route; normalisation is HTTP's).
fn check_route_paths(cfg: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    for (i, r) in cfg.routes.iter().enumerate() {
        let fields = [
            ("path_prefix", &r.path_prefix),
            ("path", &r.path),
            ("rewrite_prefix", &r.rewrite_prefix),
        ];
        for (field, value) in fields {
            if let Some(Err(why)) = value.as_deref().map(check_path) {
                errors.push(ConfigError::new(format!("routes[{i}].{field}"), why));
            }
        }
    }
}

fn build_route(
    i: usize,
    r: &RouteConfig,
    upstreams: &[(Upstream, String)],
) -> Result<(Route, RouteMatch), ConfigError> {
    let p = format!("routes[{i}]");
    let (path, prefix) = match (&r.path_prefix, &r.path) {
        (Some(x), None) => (PathMatch::Prefix(x.as_bytes().to_vec()), x),
        (None, Some(x)) => (PathMatch::Exact(x.as_bytes().to_vec()), x),
        _ => {
            return Err(ConfigError::new(
                p,
                "set exactly one of path_prefix and path",
            ))
        }
    };
    let host = match r.host.as_deref().map(str::to_ascii_lowercase) {
        None => HostMatch::Any,
        Some(h) => match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Wildcard(suffix.to_string()),
            None => HostMatch::Exact(h),
        },
    };
    let action = match (&r.upstream, &r.respond) {
        (Some(name), None) => match upstreams.iter().position(|(_, n)| n == name) {
            Some(upstream) => Action::Proxy { upstream },
            None => {
                return Err(ConfigError::new(
                    format!("{p}.upstream"),
                    format!("no upstream named {name:?}"),
                ))
            }
        },
        (None, Some(resp)) => Action::Respond {
            status: resp.status,
            body: resp.body.as_ref().map(|b| Bytes::from(b.clone())),
            content_type: resp.content_type.as_ref().map(|c| Bytes::from(c.clone())),
        },
        _ => {
            return Err(ConfigError::new(
                p,
                "set exactly one of upstream and respond",
            ))
        }
    };
    let rewrite = if r.strip_prefix {
        PathRewrite::Replace {
            prefix_len: prefix.len(),
            with: Bytes::from_static(b"/"),
        }
    } else if let Some(w) = &r.rewrite_prefix {
        PathRewrite::Replace {
            prefix_len: prefix.len(),
            with: Bytes::from(w.clone()),
        }
    } else {
        PathRewrite::None
    };
    let m = RouteMatch {
        host,
        path,
        methods: r
            .methods
            .as_ref()
            .map(|ms| ms.iter().map(|m| m.as_bytes().to_vec()).collect()),
        headers: r
            .headers
            .iter()
            .map(|h| {
                let pred = match (&h.value, h.absent) {
                    (_, true) => HeaderPredicate::Absent,
                    (Some(v), false) => HeaderPredicate::Equals(v.as_bytes().to_vec()),
                    (None, false) => HeaderPredicate::Present,
                };
                (h.name.to_ascii_lowercase().into_bytes(), pred)
            })
            .collect(),
    };
    let route = Route {
        index: i,
        name: r.name.clone().unwrap_or(p),
        action,
        rewrite,
        request_edits: build_edits(&r.request_headers),
        response_edits: build_edits(&r.response_headers),
        hsts: r.hsts.as_ref().map(hsts_value),
        retry: crate::upstream::RetryPolicy::build(&r.retries),
    };
    Ok((route, m))
}

#[cfg(test)]
mod tests {
    use super::PathRewrite;
    use bytes::Bytes;

    fn rewrite(prefix: &str, with: &'static str, path: &str) -> String {
        let r = PathRewrite::Replace {
            prefix_len: prefix.len(),
            with: Bytes::from_static(with.as_bytes()),
        };
        let mut out = Vec::new();
        r.apply(path.as_bytes(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn strip_and_rewrite_never_double_a_slash() {
        assert_eq!(rewrite("/v1/", "/", "/v1/users"), "/users");
        assert_eq!(rewrite("/v1/", "/", "/v1/"), "/");
        assert_eq!(rewrite("/api", "/", "/api/x"), "/x");
        assert_eq!(rewrite("/api", "/", "/api"), "/");
        assert_eq!(rewrite("/api", "/", "/apix"), "/x");
        assert_eq!(rewrite("/api/", "/internal/", "/api/x/y"), "/internal/x/y");
        assert_eq!(rewrite("/api", "/internal", "/api/x"), "/internal/x");
        let mut out = Vec::new();
        PathRewrite::None.apply(b"/same", &mut out);
        assert_eq!(out, b"/same");
    }
}
