//! Every default value of `ringway.toml`, in one place. The serde defaults and `Default`
//! impls of the config types read these constants, and so does anything outside the config
//! layer that needs a default (`http::Limits::default`); nobody writes the numbers again.
//! `ringway config --defaults` prints them as TOML and `docs/configuration.md` documents
//! them (`tests/config_reference.rs` keeps the two equal). This module imports nothing but
//! the config's own `Duration`.

use super::Duration;

const fn secs(n: u64) -> Duration {
    Duration(std::time::Duration::from_secs(n))
}

/// `[server]`.
pub mod server {
    use super::{secs, Duration};

    pub const PIN_WORKERS: bool = true;
    pub const BACKLOG: u32 = 1024;
    pub const VIA: &str = "ringway";
    pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
    /// Below it a body is copied through user space: the measured crossover
    /// (docs/performance.md, `tools/splice-crossover.sh`).
    pub const SPLICE_THRESHOLD: u64 = 256 * 1024;
    pub const DNS_REFRESH: Duration = secs(30);
    pub const UPGRADE_PROTOCOLS: &[&str] = &["websocket"];
    pub const ALLOW_OPTIONS_ASTERISK: bool = false;
    /// HTTP/2 with prior knowledge on `listen`'s addresses.
    pub const HTTP2: bool = true;
}

/// `[http2]`.
pub mod http2 {
    pub const MAX_CONCURRENT_STREAMS: u32 = 100;
    pub const INITIAL_STREAM_WINDOW: u32 = 256 * 1024;
    pub const INITIAL_CONNECTION_WINDOW: u32 = 1024 * 1024;
    pub const MAX_FRAME_SIZE: u32 = 16 * 1024;
    pub const HEADER_TABLE_SIZE: u32 = 4096;
    pub const MAX_SEND_BUFFER: usize = 64 * 1024;
    pub const MAX_RESETS_PER_SECOND: u32 = 200;

    /// `[http2.flood]`: frames per second per connection.
    pub mod flood {
        pub const SETTINGS: u32 = 100;
        pub const PING: u32 = 100;
        pub const PRIORITY: u32 = 1000;
        pub const RST_STREAM: u32 = 1000;
        pub const EMPTY_DATA: u32 = 100;
        /// A fast download legitimately sends one per frame or so it reads.
        pub const WINDOW_UPDATE: u32 = 100_000;
    }
}

/// `[[listeners]]`.
pub mod listener {
    pub const HTTP2: bool = true;
    pub const HTTP1: bool = true;
}

/// `[timeouts]`.
pub mod timeouts {
    use super::{secs, Duration};

    pub const HEADER: Duration = secs(10);
    pub const BODY: Duration = secs(60);
    pub const IDLE: Duration = secs(60);
    pub const WRITE: Duration = secs(60);
    pub const UPSTREAM_CONNECT: Duration = secs(5);
    pub const UPSTREAM_RESPONSE: Duration = secs(60);
    pub const DRAIN: Duration = secs(10);
    pub const DRAIN_DELAY: Duration = secs(0);
    /// Zero: no limit.
    pub const MAX_CONNECTION_AGE: Duration = secs(0);
    pub const TUNNEL_IDLE: Duration = secs(300);
}

/// `[limits]`.
pub mod limits {
    use super::{secs, Duration};

    pub const MAX_HEADER_BYTES: usize = 16 * 1024;
    pub const MAX_HEADERS: usize = 100;
    pub const MAX_URI_BYTES: usize = 8 * 1024;
    pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_IN_FLIGHT: usize = 4096;
    pub const ALLOW_UNDERSCORES_IN_HEADERS: bool = false;
    /// Zero: off.
    pub const MIN_BODY_RATE: u64 = 0;
    pub const MIN_BODY_RATE_GRACE: Duration = secs(5);
    /// Zero: off.
    pub const MEMORY_CEILING: u64 = 0;
}

/// `[admin]`.
pub mod admin {
    /// Localhost only: the admin listener has no authentication.
    pub const LISTEN: &str = "127.0.0.1:9901";
}

/// `[[upstreams]]` and its `servers` entries.
pub mod upstream {
    use super::{secs, Duration};

    pub const KEEPALIVE: usize = 128;
    pub const KEEPALIVE_TIMEOUT: Duration = secs(60);
    pub const WEIGHT: u32 = 1;
    pub const HTTP2_CONNECTIONS: usize = 4;
}

/// `upstreams[i].health_check`.
pub mod health_check {
    use super::{secs, Duration};

    pub const PATH: &str = "/healthz";
    pub const INTERVAL: Duration = secs(5);
    pub const TIMEOUT: Duration = secs(2);
    pub const HEALTHY_THRESHOLD: u32 = 2;
    pub const UNHEALTHY_THRESHOLD: u32 = 3;
}

/// `upstreams[i].outlier`.
pub mod outlier {
    use super::{secs, Duration};

    pub const CONSECUTIVE_FAILURES: u32 = 5;
    pub const EJECTION: Duration = secs(30);
    pub const MAX_EJECTION: Duration = secs(300);
}

/// `routes[i].retries`.
pub mod retries {
    pub const ATTEMPTS: u32 = 1;
    pub const ON: &[&str] = &["connect"];
    pub const BUDGET_PERCENT: u32 = 20;
}

/// `routes[i].hsts`.
pub mod hsts {
    use super::{secs, Duration};

    pub const MAX_AGE: Duration = secs(365 * 86_400);
}

/// `[protect]`.
pub mod protect {
    pub const SERVER_HEADER: &str = "ringway";
    /// Fields an upstream response loses by default (they name the backend's software).
    pub const REMOVE_RESPONSE_HEADERS: [&str; 5] = [
        "X-Powered-By",
        "X-AspNet-Version",
        "X-AspNetMvc-Version",
        "X-Runtime",
        "X-Generator",
    ];
    pub const ERROR_PAGE_CONTENT_TYPE: &str = "text/html; charset=utf-8";
}

/// `listeners[i].tls`.
pub mod listener_tls {
    use super::{secs, Duration};

    pub const UNKNOWN_SNI: &str = "default";
    pub const MIN_VERSION: &str = "1.2";
    pub const SESSION_TICKETS: bool = true;
    pub const HANDSHAKE_TIMEOUT: Duration = secs(10);
    /// `client_auth.mode`.
    pub const CLIENT_AUTH_MODE: &str = "required";
}

/// `[auth]` and its `api_key`, `jwt` and `basic` tables.
pub mod auth {
    use super::{secs, Duration};

    pub const CONSUMER_HEADER: &str = "X-Consumer";
    pub const GROUPS_HEADER: &str = "X-Consumer-Groups";
    pub const STRIP_CREDENTIALS: bool = true;
    pub const CLIENT_CERT_HEADER: &str = "X-Client-Cert-Identity";
    pub const API_KEY_HEADER: &str = "X-Api-Key";
    pub const JWT_HEADER: &str = "Authorization";
    pub const JWT_LEEWAY: Duration = secs(30);
    pub const JWT_REQUIRE_EXP: bool = true;
    pub const JWT_CONSUMER_CLAIM: &str = "sub";
    pub const JWT_CACHE_SIZE: usize = 4096;
    pub const BASIC_REALM: &str = "ringway";
    pub const BASIC_CACHE_SIZE: usize = 1024;
    pub const BASIC_CACHE_TTL: Duration = secs(300);
}

/// `[policy]`.
pub mod policy {
    pub const CLIENT_IP_FROM: &str = "x-forwarded-for";
    /// 16 bytes an entry, per core: 1 MiB.
    pub const RATE_LIMIT_KEYS: usize = 65536;
    pub const STEER_BY_CLIENT: &str = "auto";
    pub const ESCAPED_SLASHES: &str = "keep";
    pub const CASE_INSENSITIVE_PATHS: bool = false;
}

/// `[rules]` and `routes[i].rules`.
pub mod rules {
    /// `rate_limits[j].key`.
    pub const RATE_LIMIT_KEY: &str = "ip";
}

/// `[redis]`.
pub mod redis {
    use super::{secs, Duration};

    pub const CONNECT_TIMEOUT: Duration = secs(1);
    pub const COMMAND_TIMEOUT: Duration = Duration(std::time::Duration::from_millis(100));
    pub const KEY_PREFIX: &str = "ringway:";
    pub const LOCAL_SHARE: f64 = 1.0;
}

/// `[access_log]`.
pub mod access_log {
    pub const BUFFER_BYTES: usize = 64 * 1024;
}

/// `list` as owned strings, for the `Vec<String>` fields whose default is a list.
pub(super) fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
