//! The runtime form of the config: `Compiled::build(&GatewayConfig)` turns the serde types
//! into per-core lookup structures (host table + path trie + predicates, upstream sets,
//! header edits, CIDR lists). Immutable once built, cheap to look up, no I/O after build,
//! no allocation or string building per lookup. Each worker owns its own copy.

mod cidr;
mod route_table;

pub use cidr::Cidr;
pub use route_table::{HeaderPredicate, HostMatch, PathMatch, RouteMatch, RouteTable};

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{ConfigErrors, GatewayConfig, IoDriver};
use crate::http::{Limits, RequestHead};

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

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    pub write: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub drain: Duration,
}

#[derive(Debug)]
pub struct Compiled {
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
    pub timeouts: Timeouts,
    pub trusted_proxies: Vec<Cidr>,
    /// Full Via value to append, e.g. b"1.1 ringway"; None when disabled.
    pub via: Option<Bytes>,
    /// Request-id field name as configured; None when disabled.
    pub request_id_header: Option<Bytes>,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    table: RouteTable,
}

#[derive(Debug)]
pub struct Route {
    /// Configured name, or "routes[i]".
    pub name: String,
    pub action: Action,
    pub rewrite: PathRewrite,
    pub request_edits: HeaderEdits,
    pub response_edits: HeaderEdits,
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
        todo!()
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
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<SocketAddr>,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
}

impl Compiled {
    /// Builds the runtime form. `file` is used in error messages. Resolves upstream host
    /// names once (the only I/O). Also applies the default worker count.
    pub fn build(cfg: &GatewayConfig, file: &str) -> Result<Compiled, ConfigErrors> {
        todo!()
    }

    /// The route for a request, or None (-> 404). Priority: exact host, then wildcard host
    /// (longest suffix first), then host-less routes; within a tier the longest path match
    /// (an exact path beats a prefix of the same length), then file order; method and
    /// header predicates must hold.
    pub fn route<R: RequestView>(&self, req: &R) -> Option<&Route> {
        self.table.lookup(req).map(|i| &self.routes[i])
    }

    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}
