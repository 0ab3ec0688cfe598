//! Authentication: who is calling. Reads the credentials of the configured methods (API key,
//! bearer JWT, HTTP Basic) from a parsed `RequestHead` and turns them into an `Identity`.
//!
//! Sans-IO: `Authenticators::build` reads key files once (the only I/O, at config time);
//! `authenticate` does none, never reads the clock (the caller passes `now_unix`) and never
//! panics on any input. `Authenticators` and `AuthCaches` hold `Rc`s: each worker core builds
//! its own. Whether an identity may call a route is not decided here (see the access rules).

mod api_key;
mod basic;
mod cache;
mod directory;
mod jwt;
mod jwt_keys;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use self::api_key::ApiKeys;
use self::basic::Basic;
use self::cache::BoundedCache;
use self::jwt::Jwt;
use crate::config::{ConfigError, GatewayConfig};
use crate::http::RequestHead;

pub use self::directory::Directory;

/// Longest credential read (token, API key, base64 of `user:password`); longer -> Invalid.
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// Realm in the `Bearer` challenge.
const BEARER_REALM: &str = "ringway";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Basic,
    /// A client certificate verified in the TLS handshake (`"mtls"`).
    ClientCert,
}

impl AuthMethod {
    /// The names used in `routes[i].access.auth`: "api_key", "jwt", "basic", "mtls".
    pub fn parse(s: &str) -> Option<AuthMethod> {
        match s {
            "api_key" => Some(AuthMethod::ApiKey),
            "jwt" => Some(AuthMethod::Jwt),
            "basic" => Some(AuthMethod::Basic),
            "mtls" => Some(AuthMethod::ClientCert),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            AuthMethod::ApiKey => 1,
            AuthMethod::Jwt => 2,
            AuthMethod::Basic => 4,
            AuthMethod::ClientCert => 8,
        }
    }
}

/// A bitmask of `AuthMethod`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Methods(pub u8);

impl Methods {
    pub const ALL: Methods = Methods(1 | 2 | 4);

    pub fn contains(self, m: AuthMethod) -> bool {
        self.0 & m.bit() != 0
    }

    pub fn with(self, m: AuthMethod) -> Methods {
        Methods(self.0 | m.bit())
    }
}

/// Who a request proved to be. Every byte string here is a valid field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub method: AuthMethod,
    /// The consumer name.
    pub consumer: Bytes,
    /// Ids of the *declared* groups (see `Directory`) this identity has, sorted.
    pub groups: Vec<u16>,
    /// All group names, comma-separated, for the upstream field ("" if none).
    pub groups_value: Bytes,
    /// (upstream field name, value) from `auth.jwt.forward_claims`.
    pub claims: Vec<(Bytes, Bytes)>,
}

#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// No credentials of an allowed method were sent.
    Missing,
    Ok(Rc<Identity>),
    /// Credentials of this method were sent and did not verify.
    Invalid(AuthMethod),
}

/// Counters of one core's caches (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub jwt_hits: u64,
    /// Tokens whose signature and claims were checked (cache misses).
    pub jwt_verifications: u64,
    pub basic_hits: u64,
    /// Password hashes computed (cache misses of a known user).
    pub basic_verifications: u64,
}

/// Per-core caches of verified credentials, fixed in size by the config.
pub struct AuthCaches {
    jwt: Option<BoundedCache<Rc<Identity>>>,
    basic: Option<BoundedCache<Rc<Identity>>>,
    stats: CacheStats,
}

impl AuthCaches {
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Entries held: (jwt, basic).
    pub fn len(&self) -> (usize, usize) {
        (
            self.jwt.as_ref().map_or(0, BoundedCache::len),
            self.basic.as_ref().map_or(0, BoundedCache::len),
        )
    }

    /// Most entries each cache can ever hold: (jwt, basic).
    pub fn capacity(&self) -> (usize, usize) {
        (
            self.jwt.as_ref().map_or(0, BoundedCache::capacity),
            self.basic.as_ref().map_or(0, BoundedCache::capacity),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

pub struct Authenticators {
    pub directory: Directory,
    api_key: Option<ApiKeys>,
    jwt: Option<Jwt>,
    basic: Option<Basic>,
    /// Precomputed challenges: api key, bearer, bearer with invalid_token, basic.
    challenge_api_key: Bytes,
    challenge_bearer: Bytes,
    challenge_bearer_invalid: Bytes,
    challenge_basic: Bytes,
}

impl Authenticators {
    /// `base_dir`: relative file paths (keys_file, jwks_file, pem_file, htpasswd_file)
    /// resolve against it. Pushes every problem to `errors` with its field path; the result
    /// is only meant to be used when no error was pushed.
    pub fn build(
        cfg: &GatewayConfig,
        base_dir: &Path,
        errors: &mut Vec<ConfigError>,
    ) -> Authenticators {
        let directory = Directory::build(cfg, errors);
        let auth = &cfg.auth;
        let api_key = auth
            .api_key
            .as_ref()
            .map(|ak| ApiKeys::build(cfg, ak, &directory, base_dir, errors));
        if api_key.is_none() {
            check_unused_api_keys(cfg, errors);
        }
        let jwt = auth.jwt.as_ref().map(|j| Jwt::build(j, base_dir, errors));
        let basic = auth
            .basic
            .as_ref()
            .map(|b| Basic::build(b, &directory, base_dir, errors));
        let challenge_api_key = api_key.as_ref().map_or(Bytes::new(), api_key_challenge);
        let challenge_basic = basic.as_ref().map_or(Bytes::new(), |b| {
            Bytes::from(format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"",
                quoted_string_body(&b.realm)
            ))
        });
        Authenticators {
            directory,
            api_key,
            jwt,
            basic,
            challenge_api_key,
            challenge_bearer: Bytes::from(format!("Bearer realm=\"{BEARER_REALM}\"")),
            challenge_bearer_invalid: Bytes::from(format!(
                "Bearer realm=\"{BEARER_REALM}\", error=\"invalid_token\""
            )),
            challenge_basic,
        }
    }

    /// Which methods are configured.
    pub fn configured(&self) -> Methods {
        let mut m = Methods::default();
        if self.api_key.is_some() {
            m = m.with(AuthMethod::ApiKey);
        }
        if self.jwt.is_some() {
            m = m.with(AuthMethod::Jwt);
        }
        if self.basic.is_some() {
            m = m.with(AuthMethod::Basic);
        }
        m
    }

    /// The identity of a verified client certificate (mTLS): `name` is its subject CN or
    /// SAN; a declared consumer of that name adds its groups.
    pub fn cert_identity(&self, name: &str) -> Option<Identity> {
        self.directory
            .identity(AuthMethod::ClientCert, name, std::iter::empty(), vec![])
    }

    /// Per-core mutable caches sized from the config.
    pub fn new_caches(&self) -> AuthCaches {
        AuthCaches {
            jwt: self
                .jwt
                .as_ref()
                .and_then(|j| BoundedCache::new(j.cache_size)),
            basic: self
                .basic
                .as_ref()
                .and_then(|b| BoundedCache::new(b.cache_size)),
            stats: CacheStats::default(),
        }
    }

    /// Looks for credentials of the `allowed` methods in `req` (in order api_key, jwt,
    /// basic) and verifies the first found. `now_unix`: seconds since the epoch.
    pub fn authenticate(
        &self,
        caches: &mut AuthCaches,
        req: &RequestHead,
        allowed: Methods,
        now_unix: u64,
    ) -> AuthOutcome {
        if allowed.contains(AuthMethod::ApiKey) {
            if let Some(out) = self.api_key.as_ref().and_then(|a| a.authenticate(req)) {
                return out;
            }
        }
        if allowed.contains(AuthMethod::Jwt) {
            if let Some(j) = &self.jwt {
                let cache = caches.jwt.as_mut();
                let out = j.authenticate(&self.directory, cache, &mut caches.stats, req, now_unix);
                if let Some(out) = out {
                    return out;
                }
            }
        }
        if allowed.contains(AuthMethod::Basic) {
            if let Some(b) = &self.basic {
                let authorization = req.header(b"authorization");
                let cache = caches.basic.as_mut();
                if let Some(out) = b.authenticate(cache, &mut caches.stats, authorization, now_unix)
                {
                    return out;
                }
            }
        }
        AuthOutcome::Missing
    }

    /// `WWW-Authenticate` values for a 401, one per allowed and configured method (order
    /// api_key, jwt, basic). `failed`: the method whose credentials did not verify, if any.
    pub fn challenges(&self, allowed: Methods, failed: Option<AuthMethod>) -> Vec<Bytes> {
        let on = |m: AuthMethod| allowed.contains(m) && self.configured().contains(m);
        let mut out = Vec::with_capacity(3);
        if on(AuthMethod::ApiKey) {
            out.push(self.challenge_api_key.clone());
        }
        if on(AuthMethod::Jwt) {
            out.push(if failed == Some(AuthMethod::Jwt) {
                self.challenge_bearer_invalid.clone()
            } else {
                self.challenge_bearer.clone()
            });
        }
        if on(AuthMethod::Basic) {
            out.push(self.challenge_basic.clone());
        }
        out
    }

    /// Lowercase names of the request fields that carry credentials for the configured
    /// methods, each once, so the forwarder can strip them.
    pub fn credential_fields(&self) -> Vec<Bytes> {
        let mut names: Vec<&[u8]> = Vec::new();
        if let Some(h) = self.api_key.as_ref().and_then(|a| a.header.as_deref()) {
            names.push(h);
        }
        if let Some(j) = &self.jwt {
            names.push(&j.header);
        }
        if self.basic.is_some() {
            names.push(b"authorization");
        }
        let mut out: Vec<Bytes> = Vec::with_capacity(names.len());
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push(Bytes::copy_from_slice(n));
            }
        }
        out
    }

    /// The query parameter carrying API keys, if one is configured.
    pub fn credential_query_param(&self) -> Option<&[u8]> {
        self.api_key.as_ref().and_then(|a| a.query.as_deref())
    }
}

/// `consumers[i].api_keys` without `[auth.api_key]` would silently never match.
fn check_unused_api_keys(cfg: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    for (i, c) in cfg.consumers.iter().enumerate() {
        if !c.api_keys.is_empty() {
            errors.push(ConfigError::new(
                format!("consumers[{i}].api_keys"),
                "API keys are configured but [auth.api_key] is not: add it to accept them",
            ));
        }
    }
}

fn api_key_challenge(a: &ApiKeys) -> Bytes {
    let mut params = Vec::new();
    if a.header.is_some() {
        params.push(format!(
            "header=\"{}\"",
            quoted_string_body(&a.header_display)
        ));
    }
    if let Some(q) = &a.query {
        params.push(format!(
            "query=\"{}\"",
            quoted_string_body(&String::from_utf8_lossy(q))
        ));
    }
    Bytes::from(format!("ApiKey {}", params.join(", ")))
}

/// `s` escaped for the inside of a quoted-string.
fn quoted_string_body(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The part after `<scheme> ` (scheme compared ignoring ASCII case, then one or more
/// spaces), or empty for the bare scheme; `None` for another scheme.
fn scheme_param<'v>(value: &'v [u8], scheme: &[u8]) -> Option<&'v [u8]> {
    let (name, rest) = value.split_at_checked(scheme.len())?;
    if !name.eq_ignore_ascii_case(scheme) || !matches!(rest.first(), None | Some(b' ')) {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Some(&rest[start..])
}

/// The meaningful lines of a keys or htpasswd file, trimmed, with their 1-based numbers:
/// blank lines and `#` comment lines are skipped.
fn config_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Reads a file named in the config, `rel` resolved against `base_dir`. An unreadable file
/// is reported at `path` with the resolved path and the OS error.
fn read_config_file(
    base_dir: &Path,
    rel: &str,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let full = base_dir.join(rel);
    match std::fs::read_to_string(&full) {
        Ok(text) => Some(text),
        Err(e) => {
            errors.push(ConfigError::new(
                path,
                format!("cannot read {}: {e}", full.display()),
            ));
            None
        }
    }
}
