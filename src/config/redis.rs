//! `[redis]`: the store that global rate limits (`scope = "global"`) share across a fleet.
//! Absent section: no global limit may be configured.

use serde::{Deserialize, Serialize};

use super::Rate;
use super::{ConfigError, Duration, GatewayConfig, RateLimitConfig, UpstreamTlsConfig};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// "host:port" of the Redis server (a name is resolved like upstream servers' names:
    /// at start, on reload and every `server.dns_refresh`).
    pub address: String,
    /// ACL user name (`AUTH user password`); needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (`AUTH`); absent: no authentication.
    #[serde(default)]
    pub password: Option<String>,
    /// Database number (`SELECT`).
    #[serde(default)]
    pub db: u32,
    /// TLS to Redis; absent: plain TCP. Same fields as `upstreams[].tls`.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// Bound on connecting, the TLS handshake and the set-up commands.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Bound on one command's answer; a request never waits on Redis longer than this.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Duration,
    /// Prefix of every key ringway writes.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The share (0 < share <= 1) of each global limit one instance admits on its own
    /// while Redis is unreachable (`on_store_error = "local"`).
    #[serde(default = "default_local_share")]
    pub local_share: f64,
}

fn default_connect_timeout() -> Duration {
    super::defaults::redis::CONNECT_TIMEOUT
}
fn default_command_timeout() -> Duration {
    super::defaults::redis::COMMAND_TIMEOUT
}
fn default_key_prefix() -> String {
    super::defaults::redis::KEY_PREFIX.into()
}
fn default_local_share() -> f64 {
    super::defaults::redis::LOCAL_SHARE
}

/// The global limits seen so far while the rules are checked (`validate_policy`): names
/// must be unique across all of them.
pub(super) struct GlobalLimits<'a> {
    redis: bool,
    names: Vec<(String, &'a str)>,
}

impl<'a> GlobalLimits<'a> {
    pub(super) fn new(cfg: &GatewayConfig) -> GlobalLimits<'a> {
        GlobalLimits {
            redis: cfg.redis.is_some(),
            names: Vec::new(),
        }
    }

    /// Checks the global limit `l` at `lp` (`rate`: its rate, when that parsed).
    pub(super) fn check(
        &mut self,
        lp: &str,
        l: &'a RateLimitConfig,
        rate: Option<&Rate>,
        push: &mut dyn FnMut(String, String),
    ) {
        if !self.redis {
            push(
                format!("{lp}.scope"),
                "\"global\" needs a [redis] section (the store the fleet shares)".into(),
            );
        }
        match l.name.as_deref() {
            None | Some("") => push(
                format!("{lp}.name"),
                "a global limit needs a name: its counters' key in Redis".into(),
            ),
            Some(n) if !n.bytes().all(|b| b.is_ascii_graphic()) => push(
                format!("{lp}.name"),
                format!("{n:?}: a global limit's name is printable ASCII without spaces"),
            ),
            Some(n) => {
                if let Some((other, _)) = self.names.iter().find(|(_, m)| *m == n) {
                    push(
                        format!("{lp}.name"),
                        format!("{n:?} already names the global limit {other}"),
                    );
                }
                self.names.push((lp.to_string(), n));
            }
        }
        if rate.is_some_and(|r| r.interval_ns() < 1000) {
            push(
                format!("{lp}.rate"),
                format!(
                    "{:?}: a global limit counts in microseconds: at most 1000000/s",
                    l.rate
                ),
            );
        }
    }
}

/// Checks `[redis]` (the global limits are checked with the rest of the rules).
pub(super) fn validate(cfg: &GatewayConfig, errors: &mut Vec<ConfigError>) {
    let Some(r) = &cfg.redis else { return };
    let mut push = |field: &str, why: String| errors.push(ConfigError::new(field, why));
    if let Err(why) = super::upstream::check_server(&r.address) {
        push("redis.address", why);
    }
    if r.username.is_some() && r.password.is_none() {
        push(
            "redis.username",
            "needs a password (AUTH user password)".into(),
        );
    }
    if r.connect_timeout.0.is_zero() {
        push("redis.connect_timeout", "must be above zero".into());
    }
    if r.command_timeout.0.is_zero() {
        push("redis.command_timeout", "must be above zero".into());
    }
    if !(r.local_share > 0.0 && r.local_share <= 1.0) {
        push(
            "redis.local_share",
            format!("{} is not a share above 0 and at most 1", r.local_share),
        );
    }
    if r.key_prefix.len() > 64 || !r.key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        push(
            "redis.key_prefix",
            "at most 64 printable ASCII characters without spaces".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    fn errors(extra: &str) -> String {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n\
             [[routes]]\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\n"
        );
        match crate::config::from_str(&text, "t.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const LIMIT: &str =
        "[[rules.rate_limits]]\nname = \"api\"\nrate = \"10/s\"\nscope = \"global\"\n";

    #[test]
    fn a_global_limit_needs_redis_and_a_unique_name() {
        assert_eq!(
            errors(&format!("[redis]\naddress = \"127.0.0.1:6379\"\n{LIMIT}")),
            ""
        );
        let e = errors(LIMIT);
        assert!(
            e.contains("rules.rate_limits[0].scope") && e.contains("[redis]"),
            "{e}"
        );
        let e = errors("[redis]\naddress = \"r:6379\"\n[[rules.rate_limits]]\nrate = \"1/s\"\nscope = \"global\"\n");
        assert!(e.contains("rules.rate_limits[0].name"), "{e}");
        let e = errors(&format!("[redis]\naddress = \"r:6379\"\n{LIMIT}{LIMIT}"));
        assert!(
            e.contains("rules.rate_limits[1].name") && e.contains("already"),
            "{e}"
        );
        // (Each an unknown value of its field: the file stops at the first, so one each.)
        let e = errors("[[rules.rate_limits]]\nrate = \"1/s\"\nscope = \"fleet\"\n");
        assert!(e.contains("rules.rate_limits[0].scope"), "{e}");
        let e = errors("[[rules.rate_limits]]\nrate = \"1/s\"\non_store_error = \"panic\"\n");
        assert!(e.contains("rules.rate_limits[0].on_store_error"), "{e}");
    }

    #[test]
    fn redis_fields_are_checked() {
        let e = errors("[redis]\naddress = \"nohost\"\nusername = \"u\"\nlocal_share = 0.0\ncommand_timeout = \"0s\"\n");
        for field in [
            "redis.address",
            "redis.username",
            "redis.local_share",
            "redis.command_timeout",
        ] {
            assert!(e.contains(field), "{field}: {e}");
        }
        assert_eq!(
            errors("[redis]\naddress = \"redis.internal:6380\"\nlocal_share = 0.34\n"),
            ""
        );
    }
}
