//! JWT verification keys from `auth.jwt.keys` and a local JWKS file.
//!
//! Invariant: every key knows the exact algorithms it may verify, all of one family (HMAC,
//! RSA, EC on one curve, Ed25519), fixed here from the config; the token's header never
//! widens that set. This is what stops alg confusion (an RSA public key used as an HMAC
//! secret, `alg: none`). Everything here runs at build time only.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::read_config_file;
use crate::config::{ConfigError, JwtConfig, JwtKeyConfig};

/// The algorithms ringway verifies, as written in config and in tokens.
const SUPPORTED: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// DER of the named-curve OIDs in a SubjectPublicKeyInfo.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

pub(super) struct JwtKey {
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    /// Signature-only validation for exactly this key's algorithms: times, issuer and
    /// audience are checked by the caller against the time it is given.
    pub(super) validation: Validation,
}

impl JwtKey {
    fn new(kid: Option<String>, key: DecodingKey, algs: &[Algorithm]) -> JwtKey {
        let mut validation = Validation::new(algs[0]);
        validation.algorithms = algs.to_vec();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        JwtKey {
            kid,
            key,
            validation,
        }
    }

    pub(super) fn accepts(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        let kid_ok = match (&self.kid, kid) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        };
        kid_ok && self.validation.algorithms.contains(&alg)
    }
}

pub(super) fn build_keys(
    jwt: &JwtConfig,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Vec<JwtKey> {
    let mut keys = Vec::new();
    for (i, k) in jwt.keys.iter().enumerate() {
        let path = format!("auth.jwt.keys[{i}]");
        if let Some(key) = config_key(k, &path, base_dir, errors) {
            keys.push(key);
        }
    }
    if let Some(file) = &jwt.jwks_file {
        let path = "auth.jwt.jwks_file";
        if let Some(text) = read_config_file(base_dir, file, path, errors) {
            match serde_json::from_str::<JwkSet>(&text) {
                Ok(set) => {
                    for (j, jwk) in set.keys.iter().enumerate() {
                        match jwks_key(jwk) {
                            Ok(Some(key)) => keys.push(key),
                            Ok(None) => {}
                            Err(reason) => {
                                let kid = jwk.common.key_id.as_deref().unwrap_or("");
                                errors.push(ConfigError::new(
                                    path,
                                    format!("{file}: keys[{j}] (kid {kid:?}): {reason}"),
                                ));
                            }
                        }
                    }
                }
                Err(e) => errors.push(ConfigError::new(
                    path,
                    format!("{file} is not a JWKS document ({{\"keys\": [...]}}): {e}"),
                )),
            }
        }
    }
    if keys.is_empty() && jwt.keys.is_empty() && jwt.jwks_file.is_none() {
        errors.push(ConfigError::new(
            "auth.jwt",
            "no verification keys: add [[auth.jwt.keys]] or jwks_file",
        ));
    }
    keys
}

fn config_key(
    k: &JwtKeyConfig,
    path: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<JwtKey> {
    let Ok(alg) = k.alg.parse::<Algorithm>() else {
        errors.push(ConfigError::new(
            format!("{path}.alg"),
            format!("unknown alg {:?}: use one of {SUPPORTED}", k.alg),
        ));
        return None;
    };
    let alg_name = &k.alg;
    if HMAC_ALGS.contains(&alg) {
        if k.pem_file.is_some() {
            errors.push(ConfigError::new(
                format!("{path}.pem_file"),
                format!("alg {alg_name} takes a secret, not pem_file"),
            ));
        }
        let Some(secret) = &k.secret else {
            errors.push(ConfigError::new(
                path,
                format!("alg {alg_name} needs secret"),
            ));
            return None;
        };
        if secret.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.secret"),
                "must not be empty",
            ));
            return None;
        }
        return Some(JwtKey::new(
            k.kid.clone(),
            DecodingKey::from_secret(secret.as_bytes()),
            &[alg],
        ));
    }
    if k.secret.is_some() {
        errors.push(ConfigError::new(
            format!("{path}.secret"),
            format!("alg {alg_name} needs pem_file, not secret"),
        ));
        return None;
    }
    let Some(file) = &k.pem_file else {
        errors.push(ConfigError::new(
            path,
            format!("alg {alg_name} needs pem_file"),
        ));
        return None;
    };
    let pem_path = format!("{path}.pem_file");
    let text = read_config_file(base_dir, file, &pem_path, errors)?;
    match pem_key(alg, text.as_bytes()) {
        Ok(key) => Some(JwtKey::new(k.kid.clone(), key, &[alg])),
        Err(reason) => {
            errors.push(ConfigError::new(pem_path, format!("{file}: {reason}")));
            None
        }
    }
}

/// A public key (or certificate) PEM that must fit `alg`.
fn pem_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let wrong = |what: &str, e: jsonwebtoken::errors::Error| {
        format!("alg {alg:?} needs {what} public key or certificate in PEM ({e})")
    };
    match alg {
        a if RSA_ALGS.contains(&a) => {
            DecodingKey::from_rsa_pem(pem).map_err(|e| wrong("an RSA", e))
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let key = DecodingKey::from_ec_pem(pem).map_err(|e| wrong("an EC", e))?;
            let (oid, curve) = if alg == Algorithm::ES256 {
                (P256_OID, "P-256")
            } else {
                (P384_OID, "P-384")
            };
            let der = pem::parse(pem).map_err(|e| e.to_string())?;
            if !der.contents().windows(oid.len()).any(|w| w == oid) {
                return Err(format!("alg {alg:?} needs a key on curve {curve}"));
            }
            Ok(key)
        }
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(|e| wrong("an Ed25519", e)),
        _ => Err(format!("alg {alg:?} takes a secret, not a PEM")),
    }
}

/// One JWKS entry; `Ok(None)` for a key that is not for signatures (`"use": "enc"`).
fn jwks_key(jwk: &Jwk) -> Result<Option<JwtKey>, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &RSA_ALGS,
        AlgorithmParameters::OctetKey(_) => &HMAC_ALGS,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("unsupported curve (use P-256 or P-384)".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err("unsupported curve (use Ed25519)".into()),
        },
    };
    let algs: Vec<Algorithm> = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(ka) => {
            let name = ka.to_string();
            match name.parse::<Algorithm>() {
                Ok(a) if family.contains(&a) => vec![a],
                _ => return Err(format!("alg {name} does not fit this key type")),
            }
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid key: {e}"))?;
    Ok(Some(JwtKey::new(jwk.common.key_id.clone(), key, &algs)))
}
