//! API keys: the request's key is hashed with SHA-256 and looked up among the configured
//! digests (config and files hold only `sha256:<hex>`, never a key).
//!
//! Invariant: a lookup allocates nothing (each consumer's `Identity` is built once here) and
//! compares digests in constant time.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::directory::Directory;
use super::{
    config_lines, read_config_file, AuthMethod, AuthOutcome, Identity, MAX_CREDENTIAL_BYTES,
};
use crate::config::{ApiKeyConfig, ConfigError, GatewayConfig};
use crate::grammar::is_token;
use crate::http::path::hex_val;
use crate::http::RequestHead;

type Sha256Digest = [u8; 32];

pub(super) struct ApiKeys {
    /// Lowercase field name, when keys are read from a field.
    pub(super) header: Option<Vec<u8>>,
    /// The field name as configured, for the challenge.
    pub(super) header_display: String,
    pub(super) query: Option<Vec<u8>>,
    /// First 8 digest bytes -> every key with that prefix (almost always one).
    by_prefix: HashMap<u64, Vec<(Sha256Digest, Rc<Identity>)>>,
}

impl ApiKeys {
    pub(super) fn build(
        cfg: &GatewayConfig,
        ak: &ApiKeyConfig,
        dir: &Directory,
        base_dir: &Path,
        errors: &mut Vec<ConfigError>,
    ) -> ApiKeys {
        let header = (!ak.header.is_empty()).then(|| ak.header.to_ascii_lowercase().into_bytes());
        if !ak.header.is_empty() && !is_token(ak.header.as_bytes()) {
            errors.push(ConfigError::new(
                "auth.api_key.header",
                format!("{:?} is not a valid field name", ak.header),
            ));
        }
        if ak.query.as_deref() == Some("") {
            errors.push(ConfigError::new(
                "auth.api_key.query",
                "must be a parameter name; leave it out to not read keys from the query",
            ));
        }
        if ak.header.is_empty() && ak.query.is_none() {
            errors.push(ConfigError::new(
                "auth.api_key",
                "keys are read from nowhere: set `header` or `query`",
            ));
        }
        let mut keys = ApiKeys {
            header,
            header_display: ak.header.clone(),
            query: ak.query.as_ref().map(|q| q.as_bytes().to_vec()),
            by_prefix: HashMap::new(),
        };
        // One shared identity per consumer, so a hit only bumps a reference count.
        let identities: HashMap<&str, Rc<Identity>> = cfg
            .consumers
            .iter()
            .filter_map(|c| {
                let id = dir.identity(AuthMethod::ApiKey, &c.name, std::iter::empty(), vec![])?;
                Some((c.name.as_str(), Rc::new(id)))
            })
            .collect();
        let identity_of = |name: &str| identities.get(name).map(Rc::clone);
        for (i, c) in cfg.consumers.iter().enumerate() {
            for (j, k) in c.api_keys.iter().enumerate() {
                let path = format!("consumers[{i}].api_keys[{j}]");
                match parse_sha256(k) {
                    Ok(d) => {
                        if let Some(id) = identity_of(&c.name) {
                            keys.add(d, id, &path, errors);
                        }
                    }
                    Err(reason) => errors.push(ConfigError::new(path, reason)),
                }
            }
        }
        if let Some(file) = &ak.keys_file {
            let path = "auth.api_key.keys_file";
            if let Some(text) = read_config_file(base_dir, file, path, errors) {
                for (n, line) in config_lines(&text) {
                    let at = |r: String| ConfigError::new(path, format!("{file} line {n}: {r}"));
                    match parse_keys_line(line, dir) {
                        Ok((d, name)) => match identity_of(name) {
                            Some(id) => keys.add(d, id, path, errors),
                            None => errors.push(at(format!("invalid consumer name {name:?}"))),
                        },
                        Err(reason) => errors.push(at(reason)),
                    }
                }
            }
        }
        keys
    }

    fn add(
        &mut self,
        d: Sha256Digest,
        id: Rc<Identity>,
        path: &str,
        errors: &mut Vec<ConfigError>,
    ) {
        let bucket = self.by_prefix.entry(prefix(&d)).or_default();
        if bucket.iter().any(|(other, _)| *other == d) {
            errors.push(ConfigError::new(
                path,
                "this API key digest is configured twice",
            ));
            return;
        }
        bucket.push((d, id));
    }

    /// `None` when the request carries no API key; otherwise the verdict on the key found
    /// (the field first, then the query parameter).
    pub(super) fn authenticate(&self, req: &RequestHead) -> Option<AuthOutcome> {
        let digest = if let Some(v) = self.header.as_ref().and_then(|h| req.header(h)) {
            if v.len() > MAX_CREDENTIAL_BYTES {
                return Some(AuthOutcome::Invalid(AuthMethod::ApiKey));
            }
            Some(Sha256::digest(v).into())
        } else {
            let name = self.query.as_deref()?;
            let raw = query_param(req.query(), name)?;
            percent_decoded_digest(raw)
        };
        let outcome = digest
            .and_then(|d| self.lookup(&d))
            .map_or(AuthOutcome::Invalid(AuthMethod::ApiKey), AuthOutcome::Ok);
        Some(outcome)
    }

    fn lookup(&self, d: &Sha256Digest) -> Option<Rc<Identity>> {
        let bucket = self.by_prefix.get(&prefix(d))?;
        bucket
            .iter()
            .find(|(k, _)| bool::from(k.ct_eq(d)))
            .map(|(_, id)| Rc::clone(id))
    }
}

fn prefix(d: &Sha256Digest) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&d[..8]);
    u64::from_le_bytes(p)
}

/// `sha256:<64 hex digits>` -> the digest.
pub(super) fn parse_sha256(s: &str) -> Result<Sha256Digest, String> {
    let bad = || {
        // The value is not echoed: it may well be a plain key pasted by mistake.
        format!(
            "a {}-character value is not `sha256:<64 hex digits>` (store the SHA-256 of \
             the key, e.g. `printf %s KEY | sha256sum`)",
            s.chars().count()
        )
    };
    let hex = s.strip_prefix("sha256:").ok_or_else(bad)?.as_bytes();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (hex_val(pair[0]).ok_or_else(bad)? << 4) | hex_val(pair[1]).ok_or_else(bad)?;
    }
    Ok(out)
}

/// A keys_file line: `sha256:<hex> <consumer>`.
fn parse_keys_line<'l>(line: &'l str, dir: &Directory) -> Result<(Sha256Digest, &'l str), String> {
    let mut parts = line.split_whitespace();
    let (Some(digest), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected `sha256:<64 hex digits> <consumer>`".into());
    };
    let d = parse_sha256(digest)?;
    if !dir.has_consumer(name) {
        return Err(format!(
            "unknown consumer {name:?} (declare it in [[consumers]])"
        ));
    }
    Ok((d, name))
}

/// The raw value of the first `name=value` pair in `query` ("?a=b&c=d" or empty).
/// The name is compared as sent (no decoding).
pub(super) fn query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    let query = query.strip_prefix(b"?").unwrap_or(query);
    query.split(|&b| b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=');
        let (n, v) = match eq {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (n == name).then_some(v)
    })
}

/// SHA-256 of the percent-decoded `raw`, decoded straight into the hasher (no buffer).
/// `+` stays `+`: keys are often base64, and RFC 3986 gives '+' no special meaning.
/// `None` for a malformed escape or an over-long value.
fn percent_decoded_digest(raw: &[u8]) -> Option<Sha256Digest> {
    if raw.len() > MAX_CREDENTIAL_BYTES {
        return None;
    }
    let mut h = Sha256::new();
    let mut i = 0;
    while i < raw.len() {
        let start = i;
        while i < raw.len() && raw[i] != b'%' {
            i += 1;
        }
        h.update(&raw[start..i]);
        if i < raw.len() {
            let hi = hex_val(*raw.get(i + 1)?)?;
            let lo = hex_val(*raw.get(i + 2)?)?;
            h.update([(hi << 4) | lo]);
            i += 3;
        }
    }
    Some(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::{parse_sha256, percent_decoded_digest, query_param};
    use sha2::{Digest, Sha256};

    #[test]
    fn query_param_finds_the_first_exact_name() {
        assert_eq!(
            query_param(b"?a=1&key=x%20y&key=2", b"key"),
            Some(&b"x%20y"[..])
        );
        assert_eq!(query_param(b"?keys=1", b"key"), None);
        assert_eq!(query_param(b"?key", b"key"), Some(&b""[..]));
        assert_eq!(query_param(b"", b"key"), None);
    }

    #[test]
    fn percent_decoding_feeds_the_decoded_bytes_to_the_hash() {
        let want: [u8; 32] = Sha256::digest(b"a b+c/").into();
        assert_eq!(percent_decoded_digest(b"a%20b+c%2f"), Some(want));
        assert_eq!(percent_decoded_digest(b"a%2"), None);
        assert_eq!(percent_decoded_digest(b"a%zz"), None);
    }

    #[test]
    fn sha256_strings_need_the_prefix_and_64_hex_digits() {
        assert!(parse_sha256(&format!("sha256:{}", "aB".repeat(32))).is_ok());
        assert!(parse_sha256(&"ab".repeat(32)).is_err());
        assert!(parse_sha256(&format!("sha256:{}", "ab".repeat(31))).is_err());
        assert!(parse_sha256(&format!("sha256:{}g", "ab".repeat(31) + "a")).is_err());
    }
}
