//! The config file exactly as a user writes it (TOML, serde, `deny_unknown_fields`), its
//! documented defaults, and `validate()`, which reports *every* problem as
//! `ConfigError { path: "routes[2].upstream", reason }`. At its bottom, the small value
//! types a config is parsed into (`Duration`, `Cidr`, `Glob`, `Rate`), which the compiled
//! form runs on too.
//!
//! Where it sits: the bottom layer of the crate. It imports only leaves (`grammar`,
//! `redact`); everything else (`compiled`, `http`, `policy`, ...) builds on it, never the
//! other way round (`tests/architecture.rs` keeps it so). No I/O beyond reading the file.

mod access_log;
mod cidr;
pub mod defaults;
mod defaults_toml;
mod duration;
mod error;
mod glob;
mod http2;
mod policy;
mod rate;
mod redis;
mod tls;
mod types;
mod upstream;
mod validate;
mod validate_policy;
mod validate_protect;
mod validate_upstream;

pub use access_log::AccessLogConfig;
pub use cidr::Cidr;
pub use defaults_toml::default_config_toml;
pub use duration::Duration;
pub use error::{ConfigError, ConfigErrors};
pub use glob::{Glob, MAX_GLOB};
pub use http2::{FloodConfig, Http2Config};
pub use policy::*;
pub use rate::Rate;
pub use redis::RedisConfig;
pub use tls::*;
pub use types::*;
pub use upstream::*;
pub use validate_protect::parse_error_status;

use std::path::Path;

/// Fields a header edit may never touch: they carry framing or belong to one hop.
const RESERVED_FIELDS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Reads, parses and validates `path`. Errors carry the file name.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(&file, "", format!("cannot read: {e}")))?;
    from_str(&text, &file)
}

/// Parses and validates TOML text; `file` is only used in error messages.
pub fn from_str(text: &str, file: &str) -> Result<GatewayConfig, ConfigErrors> {
    let de = toml::Deserializer::new(text);
    let cfg: GatewayConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        syntax_error(text, file, if path == "." { "" } else { &path }, e.inner())
    })?;
    let errors = validate::validate(&cfg);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors {
            file: file.to_string(),
            errors,
        })
    }
}

/// A TOML or schema error: "line L, column C: message", with the key path when known.
fn syntax_error(text: &str, file: &str, path: &str, e: &toml::de::Error) -> ConfigErrors {
    let message = e.message().trim();
    let message = if holds_secret(path) {
        hide_quoted(message)
    } else {
        message.to_string()
    };
    let reason = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before
                .rfind('\n')
                .map_or(before.len(), |p| before.len() - p - 1)
                + 1;
            format!("line {line}, column {col}: {message}")
        }
        None => message,
    };
    ConfigErrors::one(file, path, reason)
}

/// Fields whose values are secrets (keys, passwords, hashes): their values are never echoed
/// in an error message.
fn holds_secret(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    matches!(last, "secret" | "api_keys" | "users")
}

/// `message` with every double-quoted part replaced by `"REDACTED"` (serde quotes the
/// offending value: `invalid type: string "k3y", expected a sequence`).
fn hide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 {
            crate::redact::REDACTED
        } else {
            part
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::from_str;

    #[test]
    fn a_secret_of_the_wrong_type_is_not_echoed() {
        let cfg = "[server]\nlisten = [\"127.0.0.1:0\"]\n[[consumers]]\nname = \"a\"\napi_keys = \"plain-k3y\"\n";
        let e = from_str(cfg, "f.toml").err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("consumers[0].api_keys"), "{e}");
        assert!(!e.contains("plain-k3y"), "{e}");
    }
}
