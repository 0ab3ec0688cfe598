//! Asymmetric keys: PEM files and a JWKS file, generated per test (ring for EC and Ed25519,
//! the `openssl` tool for RSA when it is installed).

use std::process::Command;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use super::jwt::{check, claims, sign, SECRET};
use super::*;

/// SubjectPublicKeyInfo DER prefixes: P-256 (then the 65-byte point), Ed25519 (then 32 bytes).
const P256_SPKI: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

struct TestKey {
    signing: EncodingKey,
    public_pem: String,
    /// The raw public key (EC point or Ed25519 bytes).
    public_raw: Vec<u8>,
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn p256_key() -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    TestKey {
        signing: EncodingKey::from_ec_der(pkcs8.as_ref()),
        public_pem: pem(&[P256_SPKI, &point].concat()),
        public_raw: point,
    }
}

fn ed25519_key() -> TestKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    TestKey {
        signing: EncodingKey::from_ed_der(pkcs8.as_ref()),
        public_pem: pem(&[ED25519_SPKI, &public].concat()),
        public_raw: public,
    }
}

/// An RSA key made by `openssl genpkey`; `None` (with a note) when openssl is not installed.
fn rsa_key(dir: &TempDir) -> Option<TestKey> {
    let private = dir.path().join("rsa-private.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .output();
    if !matches!(&made, Ok(o) if o.status.success()) {
        eprintln!("note: openssl is not available; skipping the RSA part of this test");
        return None;
    }
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(public.status.success());
    let private_pem = std::fs::read(&private).unwrap();
    Some(TestKey {
        signing: EncodingKey::from_rsa_pem(&private_pem).unwrap(),
        public_pem: String::from_utf8(public.stdout).unwrap(),
        public_raw: Vec::new(),
    })
}

fn pem_config(alg: &str) -> String {
    format!("[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"{alg}\"\npem_file = \"key.pem\"\n")
}

fn plain_claims() -> serde_json::Value {
    let mut c = claims("svc");
    c.as_object_mut().unwrap().remove("aud");
    c
}

/// A token signed by a fresh key verifies with its public PEM; one from another key does not.
fn pem_key_verifies_its_tokens_only(alg: Algorithm, alg_name: &str, make: fn() -> TestKey) {
    let dir = TempDir::new();
    let key = make();
    dir.write("key.pem", &key.public_pem);
    let a = build_ok_in(dir.path(), &pem_config(alg_name));
    expect_ok(check(
        &a,
        &sign(&Header::new(alg), &plain_claims(), &key.signing),
    ));
    let other = sign(&Header::new(alg), &plain_claims(), &make().signing);
    assert!(is_invalid(&check(&a, &other)));
}

#[test]
fn es256_tokens_verify_with_a_pem_public_key() {
    pem_key_verifies_its_tokens_only(Algorithm::ES256, "ES256", p256_key);
}

#[test]
fn eddsa_tokens_verify_with_a_pem_public_key() {
    pem_key_verifies_its_tokens_only(Algorithm::EdDSA, "EdDSA", ed25519_key);
}

#[test]
fn rs256_and_ps256_tokens_verify_with_their_keys() {
    let dir = TempDir::new();
    let Some(key) = rsa_key(&dir) else { return };
    dir.write("key.pem", &key.public_pem);
    let a = build_ok_in(dir.path(), &pem_config("RS256"));
    expect_ok(check(
        &a,
        &sign(
            &Header::new(Algorithm::RS256),
            &plain_claims(),
            &key.signing,
        ),
    ));
    let ps = sign(
        &Header::new(Algorithm::PS256),
        &plain_claims(),
        &key.signing,
    );
    assert!(
        is_invalid(&check(&a, &ps)),
        "an RS256 key verifies RS256 only"
    );
    let b = build_ok_in(dir.path(), &pem_config("PS256"));
    expect_ok(check(&b, &ps));
}

#[test]
fn an_hs256_token_is_rejected_by_an_rs256_key_even_when_signed_with_the_public_key() {
    let dir = TempDir::new();
    let Some(key) = rsa_key(&dir) else { return };
    dir.write("key.pem", &key.public_pem);
    let a = build_ok_in(dir.path(), &pem_config("RS256"));
    // The classic confusion: the verifier's public key used as the HMAC secret.
    let forged = EncodingKey::from_secret(key.public_pem.as_bytes());
    let token = sign(&Header::new(Algorithm::HS256), &plain_claims(), &forged);
    assert!(is_invalid(&check(&a, &token)));
}

#[test]
fn an_rs256_token_is_rejected_by_an_hs256_key() {
    let dir = TempDir::new();
    let Some(key) = rsa_key(&dir) else { return };
    let cfg = format!("[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"HS256\"\nsecret = \"{SECRET}\"\n");
    let a = build_ok(&cfg);
    let token = sign(
        &Header::new(Algorithm::RS256),
        &plain_claims(),
        &key.signing,
    );
    assert!(is_invalid(&check(&a, &token)));
}

#[test]
fn an_hs256_token_is_rejected_by_an_es256_key() {
    let dir = TempDir::new();
    let key = p256_key();
    dir.write("key.pem", &key.public_pem);
    let a = build_ok_in(dir.path(), &pem_config("ES256"));
    let forged = EncodingKey::from_secret(key.public_pem.as_bytes());
    let token = sign(&Header::new(Algorithm::HS256), &plain_claims(), &forged);
    assert!(is_invalid(&check(&a, &token)));
}

#[test]
fn jwks_keys_are_selected_by_kid() {
    let dir = TempDir::new();
    let (ec, ed) = (p256_key(), ed25519_key());
    let point = &ec.public_raw;
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
         "x": b64url(&point[1..33]), "y": b64url(&point[33..])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "alg": "EdDSA", "x": b64url(&ed.public_raw)},
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"},
    ]});
    dir.write("keys.json", jwks.to_string());
    let a = build_ok_in(dir.path(), "[auth.jwt]\njwks_file = \"keys.json\"\n");
    let signed = |alg, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_string());
        sign(&h, &plain_claims(), key)
    };
    expect_ok(check(&a, &signed(Algorithm::ES256, "ec-1", &ec.signing)));
    expect_ok(check(&a, &signed(Algorithm::EdDSA, "ed-1", &ed.signing)));
    assert!(is_invalid(&check(
        &a,
        &signed(Algorithm::EdDSA, "ec-1", &ed.signing)
    )));
    assert!(is_invalid(&check(
        &a,
        &signed(Algorithm::ES256, "nope", &ec.signing)
    )));
    let no_kid = sign(&Header::new(Algorithm::ES256), &plain_claims(), &ec.signing);
    assert!(is_invalid(&check(&a, &no_kid)));
}

#[test]
fn a_jwks_key_whose_alg_does_not_fit_its_type_is_a_config_error() {
    let dir = TempDir::new();
    let ed = ed25519_key();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "alg": "HS256", "x": b64url(&ed.public_raw)}]});
    dir.write("keys.json", jwks.to_string());
    let errors = errors_in(dir.path(), "[auth.jwt]\njwks_file = \"keys.json\"\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "auth.jwt.jwks_file");
    assert!(
        errors[0].reason.contains("keys[0]") && errors[0].reason.contains("HS256"),
        "{errors:?}"
    );
}

#[test]
fn an_ec_key_given_for_rs256_or_the_wrong_curve_is_a_config_error() {
    let dir = TempDir::new();
    dir.write("key.pem", p256_key().public_pem);
    for alg in ["RS256", "ES384", "EdDSA"] {
        let errors = errors_in(dir.path(), &pem_config(alg));
        assert_eq!(errors.len(), 1, "{alg}: {errors:?}");
        assert_eq!(errors[0].path, "auth.jwt.keys[0].pem_file");
        assert!(errors[0].reason.contains(alg), "{errors:?}");
    }
}
