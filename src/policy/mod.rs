//! Who may call which route, and what never gets through. `Policy::build` compiles the
//! config into a per-core matcher (immutable, like `Compiled`); `PolicyState` holds the
//! per-core mutable parts (token and password caches, the rate limiter). `Policy::check`
//! returns a decision for one request and does no I/O; it reads the normalised path and
//! host that routing used.
//!
//! Order of checks: global `[rules]`, then the route's `rules` (IP deny/allow -> 403,
//! methods -> 405, denied paths -> 403, header and query rules -> 403, body size -> 413),
//! then the route's `access` (401 / 403), then every rate limit (429).
//!
//! Where it sits: below `compiled` (which holds the built `Policy`) and `pipeline`; it
//! imports only `config`, `http` and `grammar`.

pub mod global;
pub mod identity;
pub mod ratelimit;
pub mod rules;

use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use self::global::{Leases, Spend};
use self::identity::{AuthCaches, AuthMethod, AuthOutcome, Authenticators, Identity, Methods};
use self::ratelimit::{KeyHasher, Limiter, Verdict};
use self::rules::{percent_decode, query_pairs, CidrSet, FieldRule, PathPattern};
use crate::config::Cidr;
use crate::config::Glob;
use crate::config::Rate;
use crate::config::{
    AccessConfig, ConfigError, FieldRuleConfig, GatewayConfig, OnStoreError, PathPatternConfig,
    RateLimitScope, RedisConfig, RulesConfig,
};
use crate::http::head::trim_ows;
use crate::http::RequestHead;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientIpFrom {
    XForwardedFor,
    Forwarded,
}

#[derive(Debug, Clone)]
enum LimitKey {
    Ip,
    Consumer,
    Route,
    /// Lowercase field name.
    Header(Bytes),
}

#[derive(Debug, Clone)]
struct Limit {
    /// Distinguishes the limits' keys in the shared table.
    id: u32,
    key: LimitKey,
    rate: Rate,
    /// `scope = "global"`: shared through Redis.
    global: Option<Global>,
}

/// What a global limit needs besides its rate.
#[derive(Debug, Clone)]
struct Global {
    /// `redis.key_prefix`, the limit's name and ':'.
    prefix: Bytes,
    spec: global::Spec,
    on_error: OnStoreError,
    /// `on_store_error = "local"`: this instance's share of the limit.
    fallback: Rate,
}

/// Keys of the fallback limiter's entries are the global key's hash with this mixed in.
const FALLBACK_SALT: u64 = 0x6a09_e667_f3bc_c908;

#[derive(Default)]
struct Rules {
    ip_allow: CidrSet,
    ip_deny: CidrSet,
    /// Allowed methods and the `Allow` value listing them.
    methods: Option<(Vec<Bytes>, Bytes)>,
    deny_paths: Vec<PathPattern>,
    headers: Vec<FieldRule>,
    query: Vec<FieldRule>,
    max_body: Option<u64>,
    limits: Vec<Limit>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.ip_allow.is_empty()
            && self.ip_deny.is_empty()
            && self.methods.is_none()
            && self.deny_paths.is_empty()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.max_body.is_none()
            && self.limits.is_empty()
    }

    fn needs_client_ip(&self) -> bool {
        !self.ip_allow.is_empty()
            || !self.ip_deny.is_empty()
            || self
                .limits
                .iter()
                .any(|l| matches!(l.key, LimitKey::Ip | LimitKey::Consumer))
    }
}

struct Access {
    public: bool,
    methods: Methods,
    consumers: Vec<Bytes>,
    groups: Vec<u16>,
    strip: bool,
}

#[derive(Default)]
struct RoutePolicy {
    access: Option<Access>,
    rules: Rules,
}

/// The compiled policy of one core.
pub struct Policy {
    pub auth: Authenticators,
    global: Rules,
    routes: Vec<RoutePolicy>,
    client_ip_from: ClientIpFrom,
    trusted: Vec<Cidr>,
    /// Field names (lowercase) a client may never send: ringway sets them.
    reserved: Vec<Bytes>,
    consumer_header: Option<Bytes>,
    groups_header: Option<Bytes>,
    client_cert_header: Option<Bytes>,
    credential_fields: Vec<Bytes>,
    credential_query: Option<Bytes>,
    rate_limit_keys: usize,
    has_limits: bool,
    /// Some limit is `scope = "global"`.
    has_global: bool,
    active: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("active", &self.active)
            .field("has_limits", &self.has_limits)
            .finish_non_exhaustive()
    }
}

/// Per-core mutable state: caches and the rate limiter.
pub struct PolicyState {
    caches: AuthCaches,
    limiter: Limiter,
    hasher: KeyHasher,
    /// Global limits' leases (empty without global limits).
    pub leases: Leases,
    scratch: Vec<u8>,
}

/// What to do with a request that passed.
#[derive(Default)]
pub struct Grant {
    pub identity: Option<Rc<Identity>>,
    /// Remove the credentials before forwarding.
    pub strip_credentials: bool,
    /// The route's body limit, when it has one.
    pub max_body: Option<u64>,
    /// A global limit waits for its lease: the position of that limit among the
    /// request's limits (`Policy::resume` goes on from there).
    pub wait_at: Option<usize>,
}

/// Why a request is refused; each becomes ringway's own short response.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial {
    /// 400, 403 or 413.
    Status(u16),
    /// 405 with this `Allow` value.
    MethodNotAllowed(Bytes),
    /// 401 with these `WWW-Authenticate` challenges.
    Unauthorized(Vec<Bytes>),
    /// 429.
    RateLimited {
        limit: u32,
        retry_after: u64,
        reset: u64,
    },
}

/// A local limiter's verdict as `limit` says it: pass (true), or 429 (`limit`: the
/// `RateLimit-Limit` value).
fn verdict(v: Verdict, limit: u32) -> Result<bool, Denial> {
    match v {
        Verdict::Allow { .. } => Ok(true),
        Verdict::Deny {
            retry_after_secs,
            reset_secs,
        } => Err(Denial::RateLimited {
            limit,
            retry_after: retry_after_secs,
            reset: reset_secs,
        }),
    }
}

/// What a limit counts, as a global limit's Redis key names it.
#[derive(Clone, Copy)]
enum KeyText<'a> {
    Ip(IpAddr),
    Route(usize),
    Bytes(&'a [u8]),
}

/// The Redis key of a global limit's counter: its prefix, then the key as text (an
/// address as written, a route by its position); a key that is long or not printable is
/// named by its SHA-256 in hex.
fn redis_key(prefix: &[u8], key: KeyText<'_>) -> Rc<[u8]> {
    use std::io::Write as _;
    let mut out = prefix.to_vec();
    match key {
        KeyText::Ip(ip) => {
            let _ = write!(out, "{ip}");
        }
        KeyText::Route(r) => {
            let _ = write!(out, "route{r}");
        }
        KeyText::Bytes(k) if k.len() <= 128 && k.iter().all(|b| b.is_ascii_graphic()) => {
            out.extend_from_slice(k);
        }
        KeyText::Bytes(k) => {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(k);
            out.extend_from_slice(b"sha256-");
            for b in d.iter() {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    Rc::from(out)
}

fn lower(s: &str) -> Bytes {
    Bytes::from(s.to_ascii_lowercase())
}

fn cidr_set(list: &[String]) -> CidrSet {
    // Validated before; a bad entry cannot reach here, and is skipped if it did.
    let cidrs: Vec<Cidr> = list.iter().filter_map(|c| Cidr::parse(c).ok()).collect();
    CidrSet::build(&cidrs)
}

fn path_pattern(d: &PathPatternConfig) -> Option<PathPattern> {
    let fold = !d.case_sensitive;
    match (&d.exact, &d.prefix, &d.glob) {
        (Some(x), None, None) => Some(PathPattern::Exact {
            path: x.as_bytes().to_vec(),
            fold,
        }),
        (None, Some(x), None) => Some(PathPattern::Prefix {
            prefix: x.as_bytes().to_vec(),
            fold,
        }),
        (None, None, Some(g)) => Glob::new(g, d.case_sensitive, true)
            .ok()
            .map(PathPattern::Glob),
        _ => None,
    }
}

fn field_rule(f: &FieldRuleConfig, header: bool) -> FieldRule {
    let globs = |l: &[String]| {
        l.iter()
            .filter_map(|g| Glob::new(g, f.case_sensitive, false).ok())
            .collect()
    };
    FieldRule {
        name: if header {
            lower(&f.name)
        } else {
            Bytes::from(f.name.clone())
        },
        required: f.required,
        forbidden: f.forbidden,
        allow: globs(&f.allow),
        deny: globs(&f.deny),
    }
}

fn build_rules(r: &RulesConfig, next_id: &mut u32, redis: Option<&RedisConfig>) -> Rules {
    let limits = r
        .rate_limits
        .iter()
        .filter_map(|l| {
            let key = match l.key.split_once(':') {
                Some(("header", name)) => LimitKey::Header(lower(name)),
                _ => match l.key.as_str() {
                    "consumer" => LimitKey::Consumer,
                    "route" => LimitKey::Route,
                    _ => LimitKey::Ip,
                },
            };
            let rate = Rate::parse(&l.rate, l.burst).ok()?;
            *next_id += 1;
            let global = match (l.scope, redis, &l.name) {
                (RateLimitScope::Global, Some(redis), Some(name)) => Some(Global {
                    prefix: Bytes::from(format!("{}{name}:", redis.key_prefix)),
                    spec: global::Spec::new(rate.interval_ns(), rate.limit()),
                    on_error: l.on_store_error,
                    fallback: rate.scaled(redis.local_share),
                }),
                _ => None,
            };
            Some(Limit {
                id: *next_id,
                key,
                rate,
                global,
            })
        })
        .collect();
    Rules {
        ip_allow: cidr_set(&r.ip_allow),
        ip_deny: cidr_set(&r.ip_deny),
        methods: r.methods.as_ref().map(|ms| {
            (
                ms.iter().map(|m| Bytes::from(m.clone())).collect(),
                Bytes::from(ms.join(", ")),
            )
        }),
        deny_paths: r.deny_paths.iter().filter_map(path_pattern).collect(),
        headers: r.headers.iter().map(|f| field_rule(f, true)).collect(),
        query: r.query.iter().map(|f| field_rule(f, false)).collect(),
        max_body: r.max_body_bytes,
        limits,
    }
}

impl Policy {
    /// Compiles the policy; `base_dir` resolves relative key-file paths. Problems (an
    /// unreadable key file, a key that does not fit its algorithm) go to `errors`.
    pub fn build(cfg: &GatewayConfig, base_dir: &Path, errors: &mut Vec<ConfigError>) -> Policy {
        let auth = Authenticators::build(cfg, base_dir, errors);
        let mut next_id = 0;
        let redis = cfg.redis.as_ref();
        let global = build_rules(&cfg.rules, &mut next_id, redis);
        let strip_default = cfg.auth.strip_credentials;
        let mtls = cfg
            .listeners
            .iter()
            .any(|l| l.tls.as_ref().is_some_and(|t| t.client_auth.is_some()));
        let routes: Vec<RoutePolicy> = cfg
            .routes
            .iter()
            .map(|r| RoutePolicy {
                access: r
                    .access
                    .as_ref()
                    .map(|a| build_access(a, &auth, strip_default, mtls)),
                rules: build_rules(&r.rules, &mut next_id, redis),
            })
            .collect();
        let header = |s: &str| (!s.is_empty()).then(|| Bytes::from(s.to_string()));
        let consumer_header = header(&cfg.auth.consumer_header);
        let groups_header = header(&cfg.auth.groups_header);
        let client_cert_header = header(&cfg.auth.client_cert_header);
        let mut reserved: Vec<Bytes> = [&consumer_header, &groups_header, &client_cert_header]
            .into_iter()
            .flatten()
            .map(|h| Bytes::from(h.to_ascii_lowercase()))
            .collect();
        if let Some(j) = &cfg.auth.jwt {
            reserved.extend(j.forward_claims.keys().map(|k| lower(k)));
        }
        let has_limits =
            !global.limits.is_empty() || routes.iter().any(|r| !r.rules.limits.is_empty());
        let has_global = std::iter::once(&global)
            .chain(routes.iter().map(|r| &r.rules))
            .any(|r| r.limits.iter().any(|l| l.global.is_some()));
        let active = !global.is_empty()
            || routes
                .iter()
                .any(|r| r.access.is_some() || !r.rules.is_empty());
        let trusted = cfg
            .server
            .trusted_proxies
            .iter()
            .filter_map(|c| Cidr::parse(c).ok())
            .collect();
        Policy {
            credential_fields: auth.credential_fields(),
            credential_query: auth.credential_query_param().map(Bytes::copy_from_slice),
            auth,
            global,
            routes,
            client_ip_from: if cfg.policy.client_ip_from == "forwarded" {
                ClientIpFrom::Forwarded
            } else {
                ClientIpFrom::XForwardedFor
            },
            trusted,
            reserved,
            consumer_header,
            groups_header,
            client_cert_header,
            rate_limit_keys: cfg.policy.rate_limit_keys,
            has_limits,
            has_global,
            active,
        }
    }

    /// False when nothing is configured: requests skip `check` entirely.
    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn has_rate_limits(&self) -> bool {
        self.has_limits
    }

    /// Some rate limit is shared through Redis.
    pub fn has_global_limits(&self) -> bool {
        self.has_global
    }

    pub fn new_state(&self) -> PolicyState {
        PolicyState {
            caches: self.auth.new_caches(),
            limiter: Limiter::new(if self.has_limits {
                self.rate_limit_keys
            } else {
                16
            }),
            hasher: KeyHasher::new(),
            leases: Leases::new(if self.has_global {
                self.rate_limit_keys
            } else {
                1
            }),
            scratch: Vec::new(),
        }
    }

    /// Lowercase names of fields removed from every forwarded request (ringway sets them).
    pub fn reserved_fields(&self) -> &[Bytes] {
        &self.reserved
    }

    pub fn consumer_header(&self) -> Option<&Bytes> {
        self.consumer_header.as_ref()
    }

    pub fn groups_header(&self) -> Option<&Bytes> {
        self.groups_header.as_ref()
    }

    /// The field that carries a verified client certificate's identity upstream.
    pub fn client_cert_header(&self) -> Option<&Bytes> {
        self.client_cert_header.as_ref()
    }

    /// The identity of a connection's verified client certificate (made once per
    /// connection).
    pub fn cert_identity(&self, name: &str) -> Option<Rc<Identity>> {
        self.auth.cert_identity(name).map(Rc::new)
    }

    /// Lowercase names of the credential fields, removed when a grant says so.
    pub fn credential_fields(&self) -> &[Bytes] {
        &self.credential_fields
    }

    /// The API-key query parameter, removed when a grant says so.
    pub fn credential_query(&self) -> Option<&[u8]> {
        self.credential_query.as_deref()
    }

    /// Decides one request. `route` is the matched route's index (None: no route matched,
    /// only the global rules apply). `now_ns` is a monotonic clock, `now_unix` wall time.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        st: &mut PolicyState,
        req: &RequestHead,
        route: Option<usize>,
        peer: IpAddr,
        cert: Option<&Rc<Identity>>,
        now_ns: u64,
        now_unix: u64,
    ) -> Result<Grant, Denial> {
        let rp = route.and_then(|i| self.routes.get(i));
        let route_rules = rp.map(|r| &r.rules);
        let client = self.client_for(req, route_rules, peer);
        let mut grant = Grant::default();
        for rules in std::iter::once(&self.global).chain(route_rules) {
            self.block(rules, st, req, client)?;
            if let Some(m) = rules.max_body {
                grant.max_body = Some(grant.max_body.map_or(m, |g| g.min(m)));
            }
        }
        if let (Some(max), crate::http::BodyFraming::Length(n)) = (grant.max_body, req.framing) {
            if n > max {
                return Err(Denial::Status(413));
            }
        }
        if let Some(access) = rp.and_then(|r| r.access.as_ref()) {
            grant.strip_credentials = access.strip;
            grant.identity = self.authorize(access, st, req, cert, now_unix)?;
        }
        if self.has_limits {
            grant.wait_at = self.limits(st, req, route, client, &grant, now_ns, 0, false)?;
        }
        Ok(grant)
    }

    /// Goes on with a request's limits after `check` (or an earlier `resume`) left it
    /// waiting for a global limit's lease (`grant.wait_at`): that limit is asked again, or
    /// decided by its `on_store_error` when `gave_up` (Redis did not answer in time).
    #[allow(clippy::too_many_arguments)]
    pub fn resume(
        &self,
        st: &mut PolicyState,
        req: &RequestHead,
        route: Option<usize>,
        peer: IpAddr,
        grant: &mut Grant,
        now_ns: u64,
        gave_up: bool,
    ) -> Result<(), Denial> {
        let Some(from) = grant.wait_at.take() else {
            return Ok(());
        };
        let route_rules = route.and_then(|i| self.routes.get(i)).map(|r| &r.rules);
        let client = self.client_for(req, route_rules, peer);
        grant.wait_at = self.limits(st, req, route, client, grant, now_ns, from, gave_up)?;
        Ok(())
    }

    /// The client address the rules that apply look at (`client_ip`), or just the peer
    /// when none of them looks at an address.
    fn client_for(&self, req: &RequestHead, route_rules: Option<&Rules>, peer: IpAddr) -> IpAddr {
        if self.global.needs_client_ip() || route_rules.is_some_and(Rules::needs_client_ip) {
            self.client_ip(req, peer)
        } else {
            peer
        }
    }

    /// The request's limits from position `from` on; `Some(k)`: the k-th waits for a lease.
    #[allow(clippy::too_many_arguments)]
    fn limits(
        &self,
        st: &mut PolicyState,
        req: &RequestHead,
        route: Option<usize>,
        client: IpAddr,
        grant: &Grant,
        now_ns: u64,
        from: usize,
        gave_up: bool,
    ) -> Result<Option<usize>, Denial> {
        let id = grant.identity.as_deref();
        let route_rules = route.and_then(|i| self.routes.get(i)).map(|r| &r.rules);
        // Plain loops with a count: the common `from = 0` costs no skipping iterator.
        let mut k = 0;
        for rules in std::iter::once(&self.global).chain(route_rules) {
            for l in &rules.limits {
                if k >= from
                    && !self.limit(l, st, req, route, client, id, now_ns, gave_up && k == from)?
                {
                    return Ok(Some(k));
                }
                k += 1;
            }
        }
        Ok(None)
    }

    fn block(
        &self,
        r: &Rules,
        st: &mut PolicyState,
        req: &RequestHead,
        client: IpAddr,
    ) -> Result<(), Denial> {
        if r.ip_deny.contains(client) || !r.ip_allow.is_empty() && !r.ip_allow.contains(client) {
            return Err(Denial::Status(403));
        }
        if let Some((ms, allow)) = &r.methods {
            if !ms.iter().any(|m| m[..] == *req.method()) {
                return Err(Denial::MethodNotAllowed(allow.clone()));
            }
        }
        if r.deny_paths.iter().any(|p| p.is_match(&req.path)) {
            return Err(Denial::Status(403));
        }
        for f in &r.headers {
            let mut count = 0;
            for i in 0..req.headers.len() {
                let (name, value) = req.header_at(i);
                if name.eq_ignore_ascii_case(&f.name) {
                    count += 1;
                    if !f.value_ok(value) {
                        return Err(Denial::Status(403));
                    }
                }
            }
            if !f.presence_ok(count) {
                return Err(Denial::Status(403));
            }
        }
        for f in &r.query {
            let mut count = 0;
            for (name, value) in query_pairs(req.query()) {
                percent_decode(name, &mut st.scratch);
                if st.scratch[..] != f.name[..] {
                    continue;
                }
                count += 1;
                percent_decode(value, &mut st.scratch);
                if !f.value_ok(&st.scratch) {
                    return Err(Denial::Status(403));
                }
            }
            if !f.presence_ok(count) {
                return Err(Denial::Status(403));
            }
        }
        Ok(())
    }

    fn authorize(
        &self,
        access: &Access,
        st: &mut PolicyState,
        req: &RequestHead,
        cert: Option<&Rc<Identity>>,
        now_unix: u64,
    ) -> Result<Option<Rc<Identity>>, Denial> {
        let outcome = match cert {
            // A certificate verified in the handshake is the strongest proof offered.
            Some(id) if access.methods.contains(AuthMethod::ClientCert) => {
                AuthOutcome::Ok(id.clone())
            }
            _ => self
                .auth
                .authenticate(&mut st.caches, req, access.methods, now_unix),
        };
        if access.public {
            // Credentials on a public route only name the caller (for consumer limits).
            return Ok(match outcome {
                AuthOutcome::Ok(id) => Some(id),
                _ => None,
            });
        }
        let id = match outcome {
            AuthOutcome::Ok(id) => id,
            AuthOutcome::Missing => {
                let challenges = self.auth.challenges(access.methods, None);
                // Only a client certificate would do, and there is no way to ask for one
                // over HTTP: refuse.
                if challenges.is_empty() {
                    return Err(Denial::Status(403));
                }
                return Err(Denial::Unauthorized(challenges));
            }
            AuthOutcome::Invalid(m) => {
                return Err(Denial::Unauthorized(
                    self.auth.challenges(access.methods, Some(m)),
                ))
            }
        };
        let open = access.consumers.is_empty() && access.groups.is_empty();
        let allowed = open
            || access.consumers.iter().any(|c| *c == id.consumer)
            || access.groups.iter().any(|g| id.groups.contains(g));
        if !allowed {
            return Err(Denial::Status(403));
        }
        Ok(Some(id))
    }

    #[allow(clippy::too_many_arguments)]
    fn limit(
        &self,
        l: &Limit,
        st: &mut PolicyState,
        req: &RequestHead,
        route: Option<usize>,
        client: IpAddr,
        id: Option<&Identity>,
        now_ns: u64,
        gave_up: bool,
    ) -> Result<bool, Denial> {
        // The key's bytes for this worker's table, and as a global limit's Redis key
        // names it.
        let mut ipbuf = [0u8; 17];
        let (key, text): (&[u8], KeyText<'_>) = match (&l.key, id) {
            (LimitKey::Consumer, Some(id)) => (&id.consumer, KeyText::Bytes(&id.consumer)),
            // Without an identity a consumer limit counts the client address.
            (LimitKey::Ip | LimitKey::Consumer, _) => {
                (ip_key(client, &mut ipbuf), KeyText::Ip(client))
            }
            (LimitKey::Route, _) => match route {
                Some(r) => {
                    ipbuf[..8].copy_from_slice(&(r as u64).to_le_bytes());
                    (&ipbuf[..8], KeyText::Route(r))
                }
                None => return Ok(true),
            },
            (LimitKey::Header(name), _) => match req.header(name) {
                Some(v) => (v, KeyText::Bytes(v)),
                // Requests without the field are not limited by it.
                None => return Ok(true),
            },
        };
        let h = st.hasher.hash(l.id, key);
        match &l.global {
            Some(g) => self.limit_global(l, g, st, h, text, now_ns, gave_up),
            None => verdict(st.limiter.check(h, &l.rate, now_ns), l.rate.limit()),
        }
    }

    /// A global limit: a token from this worker's lease, a wait for one (`Ok(false)`), a
    /// denial until the fleet's budget has a token again, or `on_store_error` while Redis
    /// is away (or did not answer in time: `gave_up`).
    #[allow(clippy::too_many_arguments)]
    fn limit_global(
        &self,
        l: &Limit,
        g: &Global,
        st: &mut PolicyState,
        h: u64,
        key: KeyText<'_>,
        now_ns: u64,
        gave_up: bool,
    ) -> Result<bool, Denial> {
        let spend = if gave_up || !st.leases.up {
            Spend::Fallback
        } else {
            st.leases
                .spend(h, now_ns, g.spec, || redis_key(&g.prefix, key))
        };
        match spend {
            Spend::Spent => Ok(true),
            Spend::Wait => Ok(false),
            Spend::Denied { wait_ns } => {
                let secs = wait_ns.div_ceil(1_000_000_000).max(1);
                Err(Denial::RateLimited {
                    limit: l.rate.limit(),
                    retry_after: secs,
                    reset: secs,
                })
            }
            Spend::Fallback => {
                st.leases.fallbacks += 1;
                match g.on_error {
                    OnStoreError::Allow => Ok(true),
                    OnStoreError::Deny => Err(Denial::RateLimited {
                        limit: l.rate.limit(),
                        retry_after: 1,
                        reset: 1,
                    }),
                    OnStoreError::Local => verdict(
                        st.limiter.check(h ^ FALLBACK_SALT, &g.fallback, now_ns),
                        g.fallback.limit(),
                    ),
                }
            }
        }
    }

    /// The real client address: the peer, or, when the peer is a trusted proxy, the
    /// rightmost untrusted address of X-Forwarded-For (or Forwarded `for=`).
    pub fn client_ip(&self, req: &RequestHead, peer: IpAddr) -> IpAddr {
        if !self.trusted.iter().any(|c| c.contains(peer)) {
            return peer;
        }
        let name: &[u8] = match self.client_ip_from {
            ClientIpFrom::XForwardedFor => b"x-forwarded-for",
            ClientIpFrom::Forwarded => b"forwarded",
        };
        let mut client = peer;
        // Fields in reverse order, elements in reverse order: walk back from the nearest hop.
        for i in (0..req.headers.len()).rev() {
            let (n, value) = req.header_at(i);
            if !n.eq_ignore_ascii_case(name) {
                continue;
            }
            let items = value
                .rsplit(|&b| b == b',')
                .map(trim_ows)
                .filter(|e| !e.is_empty());
            for item in items {
                let ip = match self.client_ip_from {
                    ClientIpFrom::XForwardedFor => parse_ip(item),
                    ClientIpFrom::Forwarded => forwarded_for(item),
                };
                let Some(ip) = ip else {
                    return client;
                };
                client = ip;
                if !self.trusted.iter().any(|c| c.contains(ip)) {
                    return client;
                }
            }
        }
        client
    }
}

fn build_access(
    a: &AccessConfig,
    auth: &Authenticators,
    strip_default: bool,
    mtls: bool,
) -> Access {
    let mut configured = auth.configured();
    if mtls {
        configured = configured.with(AuthMethod::ClientCert);
    }
    let methods = match &a.auth {
        None => configured,
        Some(list) => list
            .iter()
            .filter_map(|m| AuthMethod::parse(m))
            .fold(Methods::default(), Methods::with),
    };
    Access {
        public: a.public,
        methods,
        consumers: a.consumers.iter().map(|c| Bytes::from(c.clone())).collect(),
        groups: a
            .groups
            .iter()
            .filter_map(|g| auth.directory.group_id(g))
            .collect(),
        strip: a.strip_credentials.unwrap_or(strip_default),
    }
}

fn ip_key(ip: IpAddr, buf: &mut [u8; 17]) -> &[u8] {
    match ip {
        IpAddr::V4(a) => {
            buf[0] = 4;
            buf[1..5].copy_from_slice(&a.octets());
            &buf[..5]
        }
        IpAddr::V6(a) => {
            buf[0] = 6;
            buf[1..17].copy_from_slice(&a.octets());
            &buf[..17]
        }
    }
}

/// An address from an X-Forwarded-For element: a bare IP, "[v6]", "[v6]:port" or
/// "v4:port".
fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` address of one Forwarded element (`for=192.0.2.1;proto=http`,
/// `for="[2001:db8::1]:80"`); obfuscated or "unknown" nodes give None.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    for pair in element.split(|&b| b == b';') {
        let pair = trim_ows(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if !pair[..eq].eq_ignore_ascii_case(b"for") {
            continue;
        }
        let v = &pair[eq + 1..];
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        return parse_ip(v);
    }
    None
}

#[cfg(test)]
mod tests;
