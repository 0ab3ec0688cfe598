//! HTTP Basic: users from `auth.basic.users` and an htpasswd file, bcrypt or argon2 hashes.
//!
//! Invariant: only bcrypt (`$2a$`/`$2b$`/`$2y$`) and argon2 (`$argon2id$`/`$argon2i$`/
//! `$argon2d$`) hashes are accepted; anything weaker is a config error, never a silent
//! fallback. A verified `user:password` is cached per core by its SHA-256 (compared in full,
//! in constant time) for `cache_ttl`, so the slow hash runs once per credential and TTL.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::PasswordVerifier;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::cache::BoundedCache;
use super::directory::{check_name, Directory};
use super::{
    config_lines, read_config_file, scheme_param, AuthMethod, AuthOutcome, CacheStats, Identity,
    MAX_CREDENTIAL_BYTES,
};
use crate::config::{BasicConfig, ConfigError};
use crate::grammar::is_field_value;

/// Standard alphabet; padding optional (some clients leave it out).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decoded `user:password` fits here: base64 of at most `MAX_CREDENTIAL_BYTES`.
const DECODED_MAX: usize = MAX_CREDENTIAL_BYTES / 4 * 3 + 3;

#[derive(Clone)]
enum PasswordHashKind {
    Bcrypt(String),
    Argon2(Box<PasswordHash>),
}

struct User {
    hash: PasswordHashKind,
    identity: Rc<Identity>,
}

pub(super) struct Basic {
    pub(super) realm: String,
    users: HashMap<Vec<u8>, User>,
    /// A configured user's hash, verified (and the result ignored) for an unknown user name,
    /// so that answering "no such user" takes as long as "wrong password".
    decoy: Option<PasswordHashKind>,
    pub(super) cache_size: usize,
    ttl_secs: u64,
}

impl Basic {
    pub(super) fn build(
        b: &BasicConfig,
        dir: &Directory,
        base_dir: &Path,
        errors: &mut Vec<ConfigError>,
    ) -> Basic {
        if !is_field_value(b.realm.as_bytes()) {
            errors.push(ConfigError::new(
                "auth.basic.realm",
                "must be printable text without control characters",
            ));
        }
        let mut basic = Basic {
            realm: b.realm.clone(),
            users: HashMap::new(),
            decoy: None,
            cache_size: b.cache_size,
            ttl_secs: b.cache_ttl.0.as_secs(),
        };
        for (i, line) in b.users.iter().enumerate() {
            if let Err(reason) = basic.add_line(line, dir) {
                errors.push(ConfigError::new(format!("auth.basic.users[{i}]"), reason));
            }
        }
        if let Some(file) = &b.htpasswd_file {
            let path = "auth.basic.htpasswd_file";
            if let Some(text) = read_config_file(base_dir, file, path, errors) {
                for (n, line) in config_lines(&text) {
                    if let Err(reason) = basic.add_line(line, dir) {
                        errors.push(ConfigError::new(path, format!("{file} line {n}: {reason}")));
                    }
                }
            }
        }
        basic
    }

    /// One htpasswd line `user:hash`.
    fn add_line(&mut self, line: &str, dir: &Directory) -> Result<(), String> {
        let (user, hash) = line
            .split_once(':')
            .ok_or("expected `user:hash` (bcrypt or argon2)")?;
        check_name(user).map_err(|r| format!("user {user:?}: {r}"))?;
        let hash = parse_hash(hash).map_err(|r| format!("user {user:?}: {r}"))?;
        if self.users.contains_key(user.as_bytes()) {
            return Err(format!("user {user:?} is listed twice"));
        }
        let identity = dir
            .identity(AuthMethod::Basic, user, std::iter::empty(), vec![])
            .ok_or_else(|| format!("user {user:?}: not a valid consumer name"))?;
        if self.decoy.is_none() {
            self.decoy = Some(hash.clone());
        }
        self.users.insert(
            user.as_bytes().to_vec(),
            User {
                hash,
                identity: Rc::new(identity),
            },
        );
        Ok(())
    }

    /// `None` when the request has no `Authorization: Basic ...`.
    pub(super) fn authenticate(
        &self,
        cache: Option<&mut BoundedCache<Rc<Identity>>>,
        stats: &mut CacheStats,
        authorization: Option<&[u8]>,
        now: u64,
    ) -> Option<AuthOutcome> {
        let encoded = basic_credentials(authorization?)?;
        let invalid = Some(AuthOutcome::Invalid(AuthMethod::Basic));
        if encoded.len() > MAX_CREDENTIAL_BYTES {
            return invalid;
        }
        let mut buf = [0u8; DECODED_MAX];
        let Ok(n) = B64.decode_slice(encoded, &mut buf) else {
            return invalid;
        };
        let decoded = &buf[..n];
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return invalid;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let Some(u) = self.users.get(user) else {
            if let Some(decoy) = &self.decoy {
                stats.basic_verifications += 1;
                verify(decoy, password);
            }
            return invalid;
        };
        let key: [u8; 32] = Sha256::digest(decoded).into();
        let mut cache = cache;
        if let Some(c) = cache.as_deref_mut() {
            if let Some(id) = c.get(&key, now) {
                stats.basic_hits += 1;
                return Some(AuthOutcome::Ok(id));
            }
        }
        stats.basic_verifications += 1;
        if !verify(&u.hash, password) {
            return invalid;
        }
        if let Some(c) = cache {
            let until = now.saturating_add(self.ttl_secs).saturating_sub(1);
            if self.ttl_secs > 0 {
                c.insert(&key, Rc::clone(&u.identity), until, now);
            }
        }
        Some(AuthOutcome::Ok(Rc::clone(&u.identity)))
    }
}

fn verify(hash: &PasswordHashKind, password: &[u8]) -> bool {
    match hash {
        PasswordHashKind::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        PasswordHashKind::Argon2(h) => argon2::Argon2::default()
            .verify_password(password, h.as_ref())
            .is_ok(),
    }
}

fn parse_hash(hash: &str) -> Result<PasswordHashKind, String> {
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return match hash.parse::<bcrypt::HashParts>() {
            Ok(_) => Ok(PasswordHashKind::Bcrypt(hash.to_string())),
            Err(e) => Err(format!("malformed bcrypt hash: {e}")),
        };
    }
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        return match PasswordHash::new(hash) {
            Ok(h) if h.hash.is_some() && h.salt.is_some() => {
                Ok(PasswordHashKind::Argon2(Box::new(h)))
            }
            Ok(_) => Err("argon2 hash without salt or output".into()),
            Err(e) => Err(format!("malformed argon2 hash: {e}")),
        };
    }
    let scheme = if hash.starts_with("$apr1$") {
        "apr1 (MD5)"
    } else if hash.starts_with("{SHA}") {
        "{SHA} (SHA-1)"
    } else if hash.starts_with("$1$") || hash.starts_with("$5$") || hash.starts_with("$6$") {
        "crypt(3) MD5/SHA"
    } else {
        "plain text or crypt"
    };
    Err(format!(
        "unsupported password hash scheme {scheme}: use bcrypt (`htpasswd -B`) or argon2"
    ))
}

/// The base64 part of `Basic <b64>` (scheme in any case, one or more spaces).
fn basic_credentials(value: &[u8]) -> Option<&[u8]> {
    scheme_param(value, b"basic")
}

#[cfg(test)]
mod tests {
    use super::{basic_credentials, parse_hash};

    #[test]
    fn basic_scheme_is_case_insensitive() {
        assert_eq!(basic_credentials(b"bAsIc  dTpw"), Some(&b"dTpw"[..]));
        assert_eq!(basic_credentials(b"Bearer x"), None);
        assert_eq!(basic_credentials(b"Basicx"), None);
    }

    #[test]
    fn weak_hash_schemes_are_named_in_the_error() {
        let e = parse_hash("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")
            .err()
            .unwrap();
        assert!(e.contains("{SHA}"), "{e}");
        assert!(parse_hash("$apr1$abc$def").err().unwrap().contains("apr1"));
        assert!(parse_hash("secret").err().unwrap().contains("plain"));
        assert!(parse_hash("$2y$05$short")
            .err()
            .unwrap()
            .contains("malformed bcrypt"));
    }
}
