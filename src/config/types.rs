//! serde types for `ringway.toml`: `[server]`, `[timeouts]`, `[limits]`, `[[upstreams]]`,
//! `[[routes]]`, `[admin]` and `[protect]`. Their defaults come from `defaults.rs` and are
//! documented in docs/configuration.md; nothing here does I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::defaults::{self, strings};
use super::policy::{AccessConfig, AuthConfig, ConsumerConfig, PolicyConfig, RulesConfig};
use super::tls::ListenerConfig;
use super::upstream::{
    AllUnhealthy, Balance, HealthCheckConfig, OutlierConfig, RetriesConfig, ServerEntry,
    UpstreamProtocol,
};
use super::Duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// HTTP/2 from clients: settings and limits.
    #[serde(default)]
    pub http2: super::Http2Config,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// How identities are proven (API keys, JWT, Basic).
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub consumers: Vec<ConsumerConfig>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Blocking rules for every request.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Listeners with options (TLS, a redirect to HTTPS), after `server.listen`.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// The admin listener (health, readiness, metrics, config); absent = off.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// What ringway hides from clients and from its logs.
    #[serde(default)]
    pub protect: ProtectConfig,
    /// JSON-lines access log; absent: none.
    #[serde(default)]
    pub access_log: Option<super::AccessLogConfig>,
    /// The store global rate limits share across instances; absent: none.
    #[serde(default)]
    pub redis: Option<super::RedisConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// "ip:port"; localhost only by default.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

fn default_admin_listen() -> String {
    defaults::admin::LISTEN.into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else the legacy epoll driver.
    #[default]
    Auto,
    IoUring,
    Legacy,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Plain-HTTP addresses to listen on ("ip:port"; IPv6 as "[::1]:8080"). At least one
    /// address is required here or in `[[listeners]]`.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Worker threads (one runtime each). Default: available cores.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Pin worker i to core i (mod cores).
    #[serde(default = "default_pin_workers")]
    pub pin_workers: bool,
    /// I/O driver. The env var RINGWAY_IO_DRIVER overrides it.
    #[serde(default)]
    pub io_driver: IoDriver,
    /// Listen backlog.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// Peers (IP or CIDR) whose X-Forwarded-For is kept and appended to.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Pseudonym in the Via field ("1.1 ringway"); "" disables Via.
    #[serde(default = "default_via")]
    pub via: String,
    /// Request-id field set when absent; "" disables.
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
    /// A body (either direction) with at least this many bytes still to relay after the
    /// first read is spliced through a kernel pipe instead of copied; 0 disables splicing.
    #[serde(default = "default_splice_threshold")]
    pub splice_threshold: u64,
    /// Reload when the config file changes (checked every second), as on SIGHUP.
    #[serde(default)]
    pub watch_config: bool,
    /// Upstream host names are resolved again this often, on a background thread (a
    /// worker never waits on DNS); a changed address is applied like a reload. 0s = only
    /// at start and reload.
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh: Duration,
    /// Unix socket path where this process hands its listening sockets to a successor
    /// (`ringway run --upgrade`) for a binary upgrade.
    #[serde(default)]
    pub upgrade_socket: Option<String>,
    /// `Upgrade` protocols tunnelled for a GET without a body that asks for one (first
    /// token, case-insensitive); [] disables tunnelling. `h2c` is refused.
    #[serde(default = "default_upgrade_protocols")]
    pub upgrade_protocols: Vec<String>,
    /// Accept `OPTIONS *` (routed and checked as the path `/`, forwarded as `*`); when
    /// false it is refused with 400.
    #[serde(default = "default_allow_options_asterisk")]
    pub allow_options_asterisk: bool,
    /// Accept HTTP/2 with prior knowledge (h2c) on `listen`'s addresses, recognised by the
    /// connection preface; false: HTTP/1.1 only.
    #[serde(default = "default_server_http2")]
    pub http2: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// Total time to receive a request head -> 408.
    pub header: Duration,
    /// Total time to receive a request body -> 408.
    pub body: Duration,
    /// Keep-alive idle time between requests.
    pub idle: Duration,
    /// A stalled write to the client is abandoned after this.
    pub write: Duration,
    /// Upstream connect -> 504.
    pub upstream_connect: Duration,
    /// Time to the upstream response head (and between upstream body reads) -> 504.
    pub upstream_response: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may finish.
    pub drain: Duration,
    /// On SIGTERM/SIGINT, how long `/ready` answers 503 while ringway still accepts and
    /// serves as usual, before the drain starts (for balancers to notice); zero = none.
    pub drain_delay: Duration,
    /// A client connection older than this gets `Connection: close` on its next response,
    /// so that long-lived connections are made again; zero = no limit.
    pub max_connection_age: Duration,
    /// An upgraded tunnel with no bytes in either direction for this long is closed.
    pub tunnel_idle: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Above it -> 431.
    pub max_header_bytes: usize,
    /// Above it -> 431.
    pub max_headers: usize,
    /// Above it -> 414.
    pub max_uri_bytes: usize,
    /// Declared or streamed request body above it -> 413; 0 = unlimited.
    pub max_body_bytes: u64,
    /// Per process (split evenly across workers); above it new connections are closed at
    /// once.
    pub max_connections: usize,
    /// Requests being proxied per process (split evenly across workers); above it, an
    /// immediate 503.
    pub max_in_flight: usize,
    /// Accept and forward field names with '_'; when false such a request gets 400.
    pub allow_underscores_in_headers: bool,
    /// Minimum average request-body rate in bytes per second, after
    /// `min_body_rate_grace`: a slower body gets 408 (within `timeouts.body` in any case);
    /// 0 = off.
    pub min_body_rate: u64,
    /// Head start before `min_body_rate` applies; each byte received then buys
    /// 1/`min_body_rate` seconds more.
    pub min_body_rate_grace: Duration,
    /// Resident memory (bytes) the whole process must stay under. From 90% of it ringway
    /// sheds load: new requests get 503 with `Connection: close`; heads and request bodies
    /// still arriving, idle keep-alive connections and new connections are closed at once;
    /// keep-alive is off. Service resumes below 80% of it. Sampled every 20 ms off the
    /// request path. 0 = off.
    pub memory_ceiling: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name routes refer to.
    pub name: String,
    /// "ip:port" or "host:port" (resolved at start, on reload and every
    /// `server.dns_refresh`), or
    /// `{ address = "host:port", weight = 3 }`.
    pub servers: Vec<ServerEntry>,
    /// Max idle keep-alive connections per server per worker; 0 disables pooling.
    #[serde(default = "default_keepalive")]
    pub keepalive: usize,
    /// An idle pooled connection is closed after this.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: Duration,
    /// TLS to the servers; absent = plain HTTP.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// Load-balancing algorithm.
    #[serde(default)]
    pub balance: Balance,
    /// For `balance = "hash"`: "client_ip", "header:<Name>" or "cookie:<name>";
    /// unset means "client_ip".
    #[serde(default)]
    pub hash_on: Option<String>,
    /// Active health checks; absent = none.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive health (outlier ejection); absent = none.
    #[serde(default)]
    pub outlier: Option<OutlierConfig>,
    /// When every server is unhealthy or ejected.
    #[serde(default)]
    pub all_unhealthy: AllUnhealthy,
    /// Upstream connections in use at once per worker; past it a fast 503. 0 = unlimited.
    #[serde(default)]
    pub max_connections: usize,
    /// Requests on this upstream at once per worker; past it a fast 503. 0 = unlimited.
    #[serde(default)]
    pub max_pending: usize,
    /// The protocol spoken to the servers: HTTP/1.1, or HTTP/2 (`h2c` in the clear, `h2`
    /// over TLS, `auto`: what TLS ALPN picks).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// HTTP/2 upstreams: connections per server per worker at most.
    #[serde(default = "default_http2_connections")]
    pub http2_connections: usize,
    /// A PROXY protocol header ("v1" or "v2") naming the client, sent first on every new
    /// connection to the servers (HTTP/1.1 upstreams; such a connection is only reused for
    /// the same client connection). Unset: none.
    #[serde(default)]
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA bundle the servers' certificates must chain to; default: the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Name sent as SNI (and expected in the server certificate unless `verify_name` says
    /// otherwise); default: the host part of each server address (an IP address is then
    /// checked against the certificate's IPs, and no SNI is sent).
    #[serde(default)]
    pub server_name: Option<String>,
    /// The name expected in the server certificate when it differs from the SNI name;
    /// default: the SNI name.
    #[serde(default)]
    pub verify_name: Option<String>,
    /// Client certificate chain and key for mTLS to the backend (both or neither).
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Optional name used in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Exact host ("api.example.com") or wildcard ("*.example.com"); absent = any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Byte-prefix match on the normalised path. Exactly one of path_prefix / path.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Exact match on the normalised path.
    #[serde(default)]
    pub path: Option<String>,
    /// Methods this route matches (case-sensitive tokens); absent = all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Header predicates; all must hold.
    #[serde(default)]
    pub headers: Vec<HeaderMatchConfig>,
    /// Remove the matched path_prefix before forwarding (result always starts with '/').
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the matched path_prefix (or exact path) with this before forwarding.
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// Upstream name. Exactly one of upstream / respond.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Answer directly without contacting an upstream.
    #[serde(default)]
    pub respond: Option<RespondConfig>,
    #[serde(default)]
    pub request_headers: HeaderEditsConfig,
    #[serde(default)]
    pub response_headers: HeaderEditsConfig,
    /// Who may call this route; absent = public.
    #[serde(default)]
    pub access: Option<AccessConfig>,
    /// Blocking rules for this route (after the global `[rules]`).
    #[serde(default)]
    pub rules: RulesConfig,
    /// Strict-Transport-Security on this route's responses (TLS connections only).
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Retries on another server; default: connect failures only.
    #[serde(default)]
    pub retries: RetriesConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    /// `max-age`; must be above zero.
    #[serde(default = "default_hsts_max_age")]
    pub max_age: Duration,
    /// Adds `includeSubDomains`.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Adds `preload`.
    #[serde(default)]
    pub preload: bool,
}

/// `[protect]`: backend details hidden from clients, secrets kept out of logs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectConfig {
    /// `Server` value on every response; "" = no `Server` field. The upstream's own
    /// `Server` is always removed.
    pub server_header: String,
    /// Fields removed from every upstream response (case-insensitive); a list given here
    /// replaces the default list.
    pub remove_response_headers: Vec<String>,
    /// Status ("404", "502", ...; 400 to 599) -> the page ringway sends instead of its
    /// short default body.
    pub error_pages: BTreeMap<String, ErrorPageConfig>,
    /// Answer an upstream 5xx with ringway's own page for that status (its body is never
    /// relayed).
    pub replace_upstream_5xx: bool,
    /// Field names whose values never appear in logs, on top of the built-in ones
    /// (`redact::BUILT_IN`) and the API-key field.
    pub redact_headers: Vec<String>,
}

/// One error page: exactly one of `body` and `file`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ErrorPageConfig {
    /// The page itself.
    #[serde(default)]
    pub body: Option<String>,
    /// A file relative to the config file's directory, read once when the config is built.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default = "default_error_page_type")]
    pub content_type: String,
}

impl Default for ProtectConfig {
    fn default() -> Self {
        ProtectConfig {
            server_header: defaults::protect::SERVER_HEADER.into(),
            remove_response_headers: strings(&defaults::protect::REMOVE_RESPONSE_HEADERS),
            error_pages: BTreeMap::new(),
            replace_upstream_5xx: false,
            redact_headers: Vec::new(),
        }
    }
}

fn default_hsts_max_age() -> Duration {
    defaults::hsts::MAX_AGE
}
fn default_error_page_type() -> String {
    defaults::protect::ERROR_PAGE_CONTENT_TYPE.into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    /// Field name (case-insensitive).
    pub name: String,
    /// Exact value required; absent = the field must be present with any value.
    #[serde(default)]
    pub value: Option<String>,
    /// When true the field must be absent (value must then be unset).
    #[serde(default)]
    pub absent: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// 200..=599.
    pub status: u16,
    /// Body; default "{status} {reason}\n".
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsConfig {
    /// Replace (or add) these fields.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these fields (keeping existing ones).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these fields (case-insensitive names).
    #[serde(default)]
    pub remove: Vec<String>,
}

fn default_pin_workers() -> bool {
    defaults::server::PIN_WORKERS
}
fn default_backlog() -> u32 {
    defaults::server::BACKLOG
}
fn default_via() -> String {
    defaults::server::VIA.into()
}
fn default_request_id_header() -> String {
    defaults::server::REQUEST_ID_HEADER.into()
}
fn default_upgrade_protocols() -> Vec<String> {
    strings(defaults::server::UPGRADE_PROTOCOLS)
}
fn default_dns_refresh() -> Duration {
    defaults::server::DNS_REFRESH
}
fn default_splice_threshold() -> u64 {
    defaults::server::SPLICE_THRESHOLD
}
fn default_server_http2() -> bool {
    defaults::server::HTTP2
}
fn default_allow_options_asterisk() -> bool {
    defaults::server::ALLOW_OPTIONS_ASTERISK
}

fn default_keepalive() -> usize {
    defaults::upstream::KEEPALIVE
}
fn default_keepalive_timeout() -> Duration {
    defaults::upstream::KEEPALIVE_TIMEOUT
}
fn default_http2_connections() -> usize {
    defaults::upstream::HTTP2_CONNECTIONS
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        use defaults::timeouts as t;
        TimeoutsConfig {
            header: t::HEADER,
            body: t::BODY,
            idle: t::IDLE,
            write: t::WRITE,
            upstream_connect: t::UPSTREAM_CONNECT,
            upstream_response: t::UPSTREAM_RESPONSE,
            drain: t::DRAIN,
            drain_delay: t::DRAIN_DELAY,
            max_connection_age: t::MAX_CONNECTION_AGE,
            tunnel_idle: t::TUNNEL_IDLE,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        use defaults::limits as l;
        LimitsConfig {
            max_header_bytes: l::MAX_HEADER_BYTES,
            max_headers: l::MAX_HEADERS,
            max_uri_bytes: l::MAX_URI_BYTES,
            max_body_bytes: l::MAX_BODY_BYTES,
            max_connections: l::MAX_CONNECTIONS,
            max_in_flight: l::MAX_IN_FLIGHT,
            allow_underscores_in_headers: l::ALLOW_UNDERSCORES_IN_HEADERS,
            min_body_rate: l::MIN_BODY_RATE,
            min_body_rate_grace: l::MIN_BODY_RATE_GRACE,
            memory_ceiling: l::MEMORY_CEILING,
        }
    }
}
