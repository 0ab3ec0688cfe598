//! serde types for access control: `[auth]` (how identities are proven), `[[consumers]]`
//! (who they are), `[policy]` (global settings), and `[rules]` / `routes[i].rules` plus
//! `routes[i].access` (what is allowed). Compiled into `policy::Policy` per core.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::defaults::{auth as d, policy as p};
use super::Duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Field carrying the authenticated consumer's name to the upstream; "" = none.
    /// A client's own field of that name is always removed.
    pub consumer_header: String,
    /// Field carrying the consumer's groups (comma-separated); "" = none.
    /// Always removed from the client's request.
    pub groups_header: String,
    /// Remove the credentials (Authorization, the API-key field or query parameter) before
    /// forwarding; `routes[i].access.strip_credentials` overrides it.
    pub strip_credentials: bool,
    /// Field carrying a verified client certificate's identity (mTLS: subject CN, else
    /// its first SAN) to the upstream; "" = none. Always
    /// removed from the client's request.
    pub client_cert_header: String,
    pub api_key: Option<ApiKeyConfig>,
    pub jwt: Option<JwtConfig>,
    pub basic: Option<BasicConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            consumer_header: d::CONSUMER_HEADER.into(),
            groups_header: d::GROUPS_HEADER.into(),
            strip_credentials: d::STRIP_CREDENTIALS,
            client_cert_header: d::CLIENT_CERT_HEADER.into(),
            api_key: None,
            jwt: None,
            basic: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Request field holding the key; "" = do not read a field.
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// Query parameter holding the key; default none.
    #[serde(default)]
    pub query: Option<String>,
    /// Optional file of `sha256:<64 hex> <consumer>` lines ('#' comments), relative to the
    /// config file's directory; added to the keys in `consumers[i].api_keys`.
    #[serde(default)]
    pub keys_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Field holding `Bearer <token>`.
    #[serde(default = "default_authorization")]
    pub header: String,
    /// Required `iss`, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one must be present), when set.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Duration,
    /// Require an `exp` claim.
    #[serde(default = "default_require_exp")]
    pub require_exp: bool,
    /// Claim naming the consumer.
    #[serde(default = "default_sub")]
    pub consumer_claim: String,
    /// Claim holding the groups (array of strings, or one space/comma separated string).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Upstream field name -> claim name: the claim's value is forwarded in that field.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Verification keys.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
    /// A local JWKS file (relative to the config file's directory); keys selected by `kid`.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Verified tokens cached per core (until they expire). 0 = no cache.
    #[serde(default = "default_jwt_cache")]
    pub cache_size: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Key id matched against the token's `kid`; a key without one matches any token.
    #[serde(default)]
    pub kid: Option<String>,
    /// HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub alg: String,
    /// HMAC secret (HS*), as text.
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM public key or certificate (RS*, PS*, ES*, EdDSA), relative to the config file.
    #[serde(default)]
    pub pem_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// Realm in `WWW-Authenticate: Basic realm="..."`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// htpasswd lines `user:hash` (bcrypt `$2y$`/`$2b$`/`$2a$` or argon2 `$argon2id$`...).
    #[serde(default)]
    pub users: Vec<String>,
    /// An htpasswd file (relative to the config file's directory), added to `users`.
    #[serde(default)]
    pub htpasswd_file: Option<String>,
    /// Verified credentials cached per core, so a hash is not recomputed on every request.
    /// 0 = no cache.
    #[serde(default = "default_basic_cache")]
    pub cache_size: usize,
    /// A cached verification is trusted this long.
    #[serde(default = "default_basic_ttl")]
    pub cache_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique name; also the Basic-auth user name and the JWT consumer claim value it matches.
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// API keys as `sha256:<64 hex digits>` (the SHA-256 of the key; never the key itself).
    #[serde(default)]
    pub api_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Groups that only come from tokens (JWT claims), declared so that rules may name them.
    pub groups: Vec<String>,
    /// Where the real client IP is read when the peer is in `server.trusted_proxies`:
    /// "x-forwarded-for" (the rightmost untrusted entry) or "forwarded".
    pub client_ip_from: String,
    /// Rate-limit entries kept per core (memory is fixed: 16 bytes each).
    pub rate_limit_keys: usize,
    /// Steer each client address's connections to one worker (SO_REUSEPORT CBPF), which
    /// makes per-client rate limits exact across workers. "auto" (when any rate limit is
    /// configured and workers > 1), "on" or "off".
    pub steer_by_client: String,
    /// `%2F`/`%5C` in a path: "keep" (forward as is, never a separator), "reject" (400) or
    /// "decode" (treat as '/' for routing and rules).
    pub escaped_slashes: String,
    /// Route paths match regardless of ASCII case ("/Admin" takes the "/admin" route, and
    /// its access rules), for backends that treat paths that way. The path is forwarded as
    /// sent. Off: case-sensitive, like nginx.
    pub case_insensitive_paths: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            groups: Vec::new(),
            client_ip_from: p::CLIENT_IP_FROM.into(),
            rate_limit_keys: p::RATE_LIMIT_KEYS,
            steer_by_client: p::STEER_BY_CLIENT.into(),
            escaped_slashes: p::ESCAPED_SLASHES.into(),
            case_insensitive_paths: p::CASE_INSENSITIVE_PATHS,
        }
    }
}

/// Who may call a route. Absent = public.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Public routes accept anyone (credentials are still read when sent).
    #[serde(default)]
    pub public: bool,
    /// Methods accepted as proof: "api_key", "jwt", "basic", "mtls" (a client certificate
    /// verified by a TLS listener's `client_auth`). Default: every configured one.
    #[serde(default)]
    pub auth: Option<Vec<String>>,
    /// Consumers allowed; with `groups`, a consumer in either list is allowed. Both empty =
    /// any authenticated consumer.
    #[serde(default)]
    pub consumers: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Overrides `auth.strip_credentials` for this route.
    #[serde(default)]
    pub strip_credentials: Option<bool>,
}

/// Blocking rules; `[rules]` applies to every request, `routes[i].rules` to one route.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Client IPs (CIDR) allowed; when non-empty, any other client gets 403.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Client IPs (CIDR) refused with 403 (checked before ip_allow).
    #[serde(default)]
    pub ip_deny: Vec<String>,
    /// Methods allowed; others get 405 with `Allow`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Paths refused with 403.
    #[serde(default)]
    pub deny_paths: Vec<PathPatternConfig>,
    /// Header rules (the User-Agent included).
    #[serde(default)]
    pub headers: Vec<FieldRuleConfig>,
    /// Query parameter rules.
    #[serde(default)]
    pub query: Vec<FieldRuleConfig>,
    /// Request body above this -> 413 (overrides `limits.max_body_bytes` when smaller).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub rate_limits: Vec<RateLimitConfig>,
}

/// Exactly one of `exact`, `prefix` or `glob`. Matched against the normalised path.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PathPatternConfig {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// `*` matches within a segment, `**` across segments, `?` one byte (not '/').
    #[serde(default)]
    pub glob: Option<String>,
    /// When false, "/Admin" matches "/admin".
    #[serde(default)]
    pub case_sensitive: bool,
}

/// A rule on one header field or query parameter.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FieldRuleConfig {
    pub name: String,
    /// Missing -> 403 (400 for a query parameter).
    #[serde(default)]
    pub required: bool,
    /// Present -> 403.
    #[serde(default)]
    pub forbidden: bool,
    /// When present, the value must match one of these globs (`*`, `?`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// A value matching one of these globs -> 403.
    #[serde(default)]
    pub deny: Vec<String>,
    /// When false, globs ignore ASCII case.
    #[serde(default)]
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Optional name, shown in logs.
    #[serde(default)]
    pub name: Option<String>,
    /// "ip" (the real client IP), "consumer", "route", or "header:<Field-Name>".
    #[serde(default = "default_rl_key")]
    pub key: String,
    /// Sustained rate like "100/s", "600/m", "10000/h".
    pub rate: String,
    /// Requests allowed at once above the rate. Default: the per-second rate, at least 1.
    #[serde(default)]
    pub burst: Option<u32>,
    /// "local": each worker counts on its own; "global": the whole fleet shares the limit
    /// through `[redis]` (then `name` is required: it names the counters in Redis).
    #[serde(default)]
    pub scope: RateLimitScope,
    /// A global limit while Redis is unreachable: "local" (each instance applies
    /// `redis.local_share` of the limit on its own), "allow" or "deny".
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

/// `rate_limits[j].scope`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// Each worker counts on its own.
    #[default]
    Local,
    /// Every instance sharing `[redis]` counts against one budget.
    Global,
}

/// `rate_limits[j].on_store_error`: a global limit while Redis is away.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// This instance applies `redis.local_share` of the limit on its own.
    #[default]
    Local,
    /// Admit.
    Allow,
    /// Refuse with 429.
    Deny,
}

fn default_require_exp() -> bool {
    d::JWT_REQUIRE_EXP
}
fn default_api_key_header() -> String {
    d::API_KEY_HEADER.into()
}
fn default_authorization() -> String {
    d::JWT_HEADER.into()
}
fn default_leeway() -> Duration {
    d::JWT_LEEWAY
}
fn default_sub() -> String {
    d::JWT_CONSUMER_CLAIM.into()
}
fn default_jwt_cache() -> usize {
    d::JWT_CACHE_SIZE
}
fn default_realm() -> String {
    d::BASIC_REALM.into()
}
fn default_basic_cache() -> usize {
    d::BASIC_CACHE_SIZE
}
fn default_basic_ttl() -> Duration {
    d::BASIC_CACHE_TTL
}
fn default_rl_key() -> String {
    super::defaults::rules::RATE_LIMIT_KEY.into()
}
