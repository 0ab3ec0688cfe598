//! Bearer JWTs: signature by `jsonwebtoken` (signature only), then `exp`/`nbf`/`iss`/`aud`
//! checked here against the time the caller passes in, never the system clock.
//!
//! Invariant: a token is verified only by keys whose configured algorithms include the
//! token's `alg` (see `jwt_keys`); a verified token becomes an `Identity` whose every value
//! is a valid field value (claims that are not are dropped).

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use serde_json::Value;

use super::cache::BoundedCache;
use super::directory::Directory;
use super::jwt_keys::{build_keys, JwtKey};
use super::{scheme_param, AuthMethod, AuthOutcome, CacheStats, Identity, MAX_CREDENTIAL_BYTES};
use crate::config::{ConfigError, JwtConfig};
use crate::grammar::{is_field_value, is_token};
use crate::http::RequestHead;

pub(super) struct Jwt {
    /// Lowercase field name carrying `Bearer <token>`.
    pub(super) header: Vec<u8>,
    keys: Vec<JwtKey>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    require_exp: bool,
    consumer_claim: String,
    groups_claim: Option<String>,
    /// (upstream field name, claim name).
    forward: Vec<(Bytes, String)>,
    pub(super) cache_size: usize,
}

impl Jwt {
    pub(super) fn build(jwt: &JwtConfig, base_dir: &Path, errors: &mut Vec<ConfigError>) -> Jwt {
        if !is_token(jwt.header.as_bytes()) {
            errors.push(ConfigError::new(
                "auth.jwt.header",
                format!("{:?} is not a valid field name", jwt.header),
            ));
        }
        if jwt.consumer_claim.is_empty() {
            errors.push(ConfigError::new(
                "auth.jwt.consumer_claim",
                "must not be empty",
            ));
        }
        for field in jwt.forward_claims.keys() {
            if !is_token(field.as_bytes()) {
                errors.push(ConfigError::new(
                    format!("auth.jwt.forward_claims.{field}"),
                    format!("{field:?} is not a valid field name"),
                ));
            }
        }
        Jwt {
            header: jwt.header.to_ascii_lowercase().into_bytes(),
            keys: build_keys(jwt, base_dir, errors),
            issuer: jwt.issuer.clone(),
            audiences: jwt.audiences.clone(),
            leeway: jwt.leeway.0.as_secs(),
            require_exp: jwt.require_exp,
            consumer_claim: jwt.consumer_claim.clone(),
            groups_claim: jwt.groups_claim.clone(),
            forward: jwt
                .forward_claims
                .iter()
                .map(|(field, claim)| (Bytes::copy_from_slice(field.as_bytes()), claim.clone()))
                .collect(),
            cache_size: jwt.cache_size,
        }
    }

    /// `None` when the request carries no bearer token in the configured field.
    pub(super) fn authenticate(
        &self,
        dir: &Directory,
        cache: Option<&mut BoundedCache<Rc<Identity>>>,
        stats: &mut CacheStats,
        req: &RequestHead,
        now: u64,
    ) -> Option<AuthOutcome> {
        let token = bearer_token(req.header(&self.header)?)?;
        let invalid = Some(AuthOutcome::Invalid(AuthMethod::Jwt));
        if token.len() > MAX_CREDENTIAL_BYTES {
            return invalid;
        }
        let mut cache = cache;
        if let Some(c) = cache.as_deref_mut() {
            if let Some(id) = c.get(token, now) {
                stats.jwt_hits += 1;
                return Some(AuthOutcome::Ok(id));
            }
        }
        stats.jwt_verifications += 1;
        let Ok((identity, valid_until)) = self.verify(dir, token, now) else {
            return invalid;
        };
        let identity = Rc::new(identity);
        if let Some(c) = cache {
            c.insert(token, Rc::clone(&identity), valid_until, now);
        }
        Some(AuthOutcome::Ok(identity))
    }

    /// Verifies `token` fully; returns its identity and the last second it is valid.
    fn verify(&self, dir: &Directory, token: &[u8], now: u64) -> Result<(Identity, u64), ()> {
        let token = std::str::from_utf8(token).map_err(|_| ())?;
        // Rejects `alg: none` and any alg outside jsonwebtoken's list (it is not an Algorithm).
        let header = jsonwebtoken::decode_header(token).map_err(|_| ())?;
        let claims = self
            .keys
            .iter()
            .filter(|k| k.accepts(header.alg, header.kid.as_deref()))
            .find_map(|k| jsonwebtoken::decode::<Value>(token, &k.key, &k.validation).ok())
            .ok_or(())?
            .claims;
        let valid_until = self.check_claims(&claims, now)?;
        let identity = self.identity(dir, &claims).ok_or(())?;
        Ok((identity, valid_until))
    }

    /// exp/nbf (with leeway), iss, aud. Returns the last second the token is valid.
    fn check_claims(&self, claims: &Value, now: u64) -> Result<u64, ()> {
        let valid_until = match claims.get("exp") {
            Some(v) => numeric_date(v)?.saturating_add(self.leeway),
            None if self.require_exp => return Err(()),
            None => u64::MAX,
        };
        if now > valid_until {
            return Err(());
        }
        if let Some(v) = claims.get("nbf") {
            if numeric_date(v)? > now.saturating_add(self.leeway) {
                return Err(());
            }
        }
        if let Some(want) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(());
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|w| w == a)),
                _ => false,
            };
            if !ok {
                return Err(());
            }
        }
        Ok(valid_until)
    }

    fn identity(&self, dir: &Directory, claims: &Value) -> Option<Identity> {
        let consumer = claims.get(&self.consumer_claim)?.as_str()?;
        let groups = self.groups_claim.as_ref().and_then(|g| claims.get(g));
        let token_groups: Vec<&str> = match groups {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => s.split([' ', ',']).filter(|g| !g.is_empty()).collect(),
            _ => Vec::new(),
        };
        let forwarded = self
            .forward
            .iter()
            .filter_map(|(field, claim)| {
                let value = claim_text(claims.get(claim)?)?;
                is_field_value(value.as_bytes()).then(|| (field.clone(), Bytes::from(value)))
            })
            .collect();
        dir.identity(
            AuthMethod::Jwt,
            consumer,
            token_groups.into_iter(),
            forwarded,
        )
    }
}

/// The token of `Bearer <token>` (scheme in any case, one or more spaces); `None` for
/// another scheme. A bare `Bearer` (field values arrive trimmed) gives an empty token,
/// which fails verification: it is a credential of this scheme, just a broken one.
pub(super) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    scheme_param(value, b"bearer")
}

/// A NumericDate: a non-negative number of seconds (fractions truncated).
fn numeric_date(v: &Value) -> Result<u64, ()> {
    if let Some(n) = v.as_u64() {
        return Ok(n);
    }
    match v.as_f64() {
        // `as` saturates for values beyond u64; the range is checked just before.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f as u64),
        _ => Err(()),
    }
}

/// A claim as field text: strings as they are, numbers and booleans as JSON writes them,
/// arrays of strings joined by ','. Anything else is not forwarded.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(list) => {
            let items: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
            Some(items?.join(","))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, claim_text};
    use serde_json::json;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_takes_several_spaces() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bEaReR   abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), Some(&b""[..]));
        assert_eq!(bearer_token(b"bearer"), Some(&b""[..]));
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[test]
    fn claims_become_text_or_are_dropped() {
        assert_eq!(claim_text(&json!("a")), Some("a".into()));
        assert_eq!(claim_text(&json!(42)), Some("42".into()));
        assert_eq!(claim_text(&json!(true)), Some("true".into()));
        assert_eq!(claim_text(&json!(["a", "b"])), Some("a,b".into()));
        assert_eq!(claim_text(&json!(["a", 1])), None);
        assert_eq!(claim_text(&json!({"a": 1})), None);
    }
}
