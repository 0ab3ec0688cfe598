use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::super::{AuthMethod, AuthOutcome, Methods};
use super::*;

pub(super) const SECRET: &str = "top-secret-hmac-key";

pub(super) fn jwt_config(extra: &str) -> String {
    format!(
        r#"
[auth.jwt]
issuer = "https://issuer.test"
audiences = ["api", "admin-api"]
groups_claim = "roles"
{extra}
[auth.jwt.forward_claims]
X-User-Email = "email"
X-Tenant = "tenant"
X-Level = "level"

[[auth.jwt.keys]]
alg = "HS256"
secret = "{SECRET}"

[[consumers]]
name = "svc"
groups = ["internal"]

[policy]
groups = ["admin", "reader"]
"#
    )
}

pub(super) fn claims(sub: &str) -> Value {
    json!({
        "sub": sub,
        "iss": "https://issuer.test",
        "aud": "api",
        "exp": NOW + 600,
        "roles": ["admin", "unknown-role"],
        "email": "svc@example.test",
        "level": 3,
    })
}

pub(super) fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    encode(header, claims, key).unwrap()
}

pub(super) fn hs256(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

pub(super) fn bearer(token: &str) -> RequestHead {
    request("/", &[("Authorization", &format!("Bearer {token}"))])
}

pub(super) fn check(a: &Authenticators, token: &str) -> AuthOutcome {
    a.authenticate(&mut a.new_caches(), &bearer(token), Methods::ALL, NOW)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_valid_hs256_token_gives_consumer_groups_and_forwarded_claims() {
    let a = build_ok(&jwt_config(""));
    let id = expect_ok(check(&a, &hs256(&claims("svc"))));
    assert_eq!(id.method, AuthMethod::Jwt);
    assert_eq!(&id.consumer[..], b"svc");
    assert_eq!(&id.groups_value[..], b"internal,admin,unknown-role");
    let mut names = group_names(&a, &id);
    names.sort();
    assert_eq!(names, ["admin", "internal"]);
    let claims: Vec<(&[u8], &[u8])> = id.claims.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    assert_eq!(
        claims,
        [
            (&b"X-Level"[..], &b"3"[..]),
            (b"X-User-Email", b"svc@example.test")
        ]
    );
}

#[test]
fn a_groups_claim_string_is_split_on_spaces_and_commas() {
    let a = build_ok(&jwt_config(""));
    let mut c = claims("other");
    c["roles"] = json!("reader, admin  reader");
    let id = expect_ok(check(&a, &hs256(&c)));
    assert_eq!(&id.groups_value[..], b"reader,admin");
}

#[test]
fn claims_with_control_characters_are_never_forwarded() {
    let a = build_ok(&jwt_config(""));
    let mut c = claims("svc");
    c["email"] = json!("x@y\r\nX-Injected: 1");
    c["tenant"] = json!("t\u{0}1");
    c["roles"] = json!(["ok", "bad\nrole"]);
    let id = expect_ok(check(&a, &hs256(&c)));
    assert!(
        id.claims.iter().all(|(k, _)| &k[..] == b"X-Level"),
        "{:?}",
        id.claims
    );
    assert_eq!(&id.groups_value[..], b"internal,ok");
}

#[test]
fn a_consumer_claim_that_is_missing_or_not_a_field_value_is_invalid() {
    let a = build_ok(&jwt_config(""));
    let mut c = claims("svc");
    c.as_object_mut().unwrap().remove("sub");
    assert!(is_invalid(&check(&a, &hs256(&c))));
    assert!(is_invalid(&check(&a, &hs256(&claims("svc\r\nX: 1")))));
    let mut c = claims("svc");
    c["sub"] = json!(42);
    assert!(is_invalid(&check(&a, &hs256(&c))));
}

#[test]
fn a_token_signed_with_another_secret_is_invalid() {
    let a = build_ok(&jwt_config(""));
    let token = sign(
        &Header::new(Algorithm::HS256),
        &claims("svc"),
        &EncodingKey::from_secret(b"nope"),
    );
    assert!(matches!(
        check(&a, &token),
        AuthOutcome::Invalid(AuthMethod::Jwt)
    ));
}

#[test]
fn an_alg_none_token_is_rejected() {
    let a = build_ok(&jwt_config(""));
    let payload = serde_json::to_vec(&claims("svc")).unwrap();
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let token = format!("{}.{}.", b64url(header.as_bytes()), b64url(&payload));
        assert!(is_invalid(&check(&a, &token)), "{header}");
    }
}

#[test]
fn a_token_with_an_alg_the_key_is_not_for_is_rejected() {
    let a = build_ok(&jwt_config(""));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = sign(&Header::new(Algorithm::HS512), &claims("svc"), &key);
    assert!(is_invalid(&check(&a, &token)));
}

#[test]
fn a_tampered_payload_is_rejected() {
    let a = build_ok(&jwt_config(""));
    let token = hs256(&claims("svc"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = b64url(&serde_json::to_vec(&claims("admin")).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert!(is_invalid(&check(&a, &tampered)));
}

#[test]
fn an_expired_token_is_rejected_but_the_leeway_applies() {
    let a = build_ok(&jwt_config("leeway = \"30s\""));
    let mut c = claims("svc");
    c["exp"] = json!(NOW - 10);
    expect_ok(check(&a, &hs256(&c)));
    c["exp"] = json!(NOW - 31);
    assert!(is_invalid(&check(&a, &hs256(&c))));
    let strict = build_ok(&jwt_config("leeway = \"0s\""));
    c["exp"] = json!(NOW - 1);
    assert!(is_invalid(&check(&strict, &hs256(&c))));
}

#[test]
fn a_not_yet_valid_token_is_rejected_unless_within_the_leeway() {
    let a = build_ok(&jwt_config("leeway = \"30s\""));
    let mut c = claims("svc");
    c["nbf"] = json!(NOW + 20);
    expect_ok(check(&a, &hs256(&c)));
    c["nbf"] = json!(NOW + 31);
    assert!(is_invalid(&check(&a, &hs256(&c))));
    let strict = build_ok(&jwt_config("leeway = \"0s\""));
    c["nbf"] = json!(NOW + 1);
    assert!(is_invalid(&check(&strict, &hs256(&c))));
}

#[test]
fn times_come_from_the_caller_not_the_clock() {
    let a = build_ok(&jwt_config("leeway = \"0s\""));
    let mut c = claims("svc");
    c["exp"] = json!(1_000);
    let req = bearer(&hs256(&c));
    expect_ok(a.authenticate(&mut a.new_caches(), &req, Methods::ALL, 999));
    assert!(is_invalid(&a.authenticate(
        &mut a.new_caches(),
        &req,
        Methods::ALL,
        1_001
    )));
}

#[test]
fn a_missing_exp_is_rejected_unless_not_required() {
    let mut c = claims("svc");
    c.as_object_mut().unwrap().remove("exp");
    assert!(is_invalid(&check(&build_ok(&jwt_config("")), &hs256(&c))));
    expect_ok(check(
        &build_ok(&jwt_config("require_exp = false")),
        &hs256(&c),
    ));
    c["exp"] = json!("tomorrow");
    assert!(is_invalid(&check(
        &build_ok(&jwt_config("require_exp = false")),
        &hs256(&c)
    )));
}

#[test]
fn a_wrong_issuer_is_rejected() {
    let a = build_ok(&jwt_config(""));
    let mut c = claims("svc");
    c["iss"] = json!("https://evil.test");
    assert!(is_invalid(&check(&a, &hs256(&c))));
    c.as_object_mut().unwrap().remove("iss");
    assert!(is_invalid(&check(&a, &hs256(&c))));
}

#[test]
fn a_wrong_audience_is_rejected_and_any_listed_one_is_accepted() {
    let a = build_ok(&jwt_config(""));
    let mut c = claims("svc");
    c["aud"] = json!("other");
    assert!(is_invalid(&check(&a, &hs256(&c))));
    c["aud"] = json!(["other", "admin-api"]);
    expect_ok(check(&a, &hs256(&c)));
    c.as_object_mut().unwrap().remove("aud");
    assert!(is_invalid(&check(&a, &hs256(&c))));
}

#[test]
fn garbage_and_oversized_tokens_are_invalid_without_panicking() {
    let a = build_ok(&jwt_config(""));
    let big = "a".repeat(8 * 1024 + 1);
    for t in [
        "",
        "a",
        "a.b",
        "a.b.c",
        "...",
        "e30.e30.e30",
        "%%%.%%%.%%%",
        big.as_str(),
    ] {
        assert!(is_invalid(&check(&a, t)), "{t:.20}");
    }
    let raw = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe.\x80.\x81\r\n\r\n";
    let out = a.authenticate(&mut a.new_caches(), &request_bytes(raw), Methods::ALL, NOW);
    assert!(is_invalid(&out));
}

#[test]
fn kid_selects_among_several_keys() {
    let cfg = r#"
[auth.jwt]
[[auth.jwt.keys]]
kid = "one"
alg = "HS256"
secret = "secret-one"
[[auth.jwt.keys]]
kid = "two"
alg = "HS256"
secret = "secret-two"
"#;
    let a = build_ok(cfg);
    let mut c = claims("svc");
    c.as_object_mut().unwrap().remove("aud");
    let with_kid = |kid: Option<&str>, secret: &str| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_string);
        sign(&h, &c, &EncodingKey::from_secret(secret.as_bytes()))
    };
    expect_ok(check(&a, &with_kid(Some("two"), "secret-two")));
    expect_ok(check(&a, &with_kid(Some("one"), "secret-one")));
    assert!(is_invalid(&check(&a, &with_kid(Some("one"), "secret-two"))));
    assert!(is_invalid(&check(
        &a,
        &with_kid(Some("three"), "secret-two")
    )));
    assert!(
        is_invalid(&check(&a, &with_kid(None, "secret-two"))),
        "kid-bound keys need a kid"
    );
}

#[test]
fn a_key_without_kid_matches_any_token_of_its_alg() {
    let a = build_ok(&jwt_config(""));
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("whatever".into());
    let token = sign(
        &h,
        &claims("svc"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    expect_ok(check(&a, &token));
}

#[test]
fn a_cached_token_is_not_verified_again() {
    let a = build_ok(&jwt_config(""));
    let mut caches = a.new_caches();
    let req = bearer(&hs256(&claims("svc")));
    let one = expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
    let two = expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW + 1));
    assert!(std::rc::Rc::ptr_eq(&one, &two));
    let s = caches.stats();
    assert_eq!((s.jwt_verifications, s.jwt_hits), (1, 1));
}

#[test]
fn a_cached_token_expires_with_its_exp_and_leeway() {
    let a = build_ok(&jwt_config("leeway = \"5s\""));
    let mut caches = a.new_caches();
    let req = bearer(&hs256(&claims("svc")));
    expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
    expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW + 605));
    let out = a.authenticate(&mut caches, &req, Methods::ALL, NOW + 606);
    assert!(is_invalid(&out));
    assert_eq!(caches.stats().jwt_hits, 1);
}

#[test]
fn invalid_tokens_are_not_cached() {
    let a = build_ok(&jwt_config(""));
    let mut caches = a.new_caches();
    let mut c = claims("svc");
    c["iss"] = json!("https://evil.test");
    let req = bearer(&hs256(&c));
    for _ in 0..3 {
        assert!(is_invalid(&a.authenticate(
            &mut caches,
            &req,
            Methods::ALL,
            NOW
        )));
    }
    assert_eq!(caches.stats().jwt_verifications, 3);
    assert_eq!(caches.len().0, 0);
}

#[test]
fn the_token_cache_stays_bounded_under_ten_thousand_distinct_tokens() {
    let a = build_ok(&jwt_config("cache_size = 64"));
    let mut caches = a.new_caches();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let header = Header::new(Algorithm::HS256);
    for i in 0..10_000 {
        let mut c = claims("svc");
        c["jti"] = json!(i);
        let req = bearer(&sign(&header, &c, &key));
        expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
        assert!(caches.len().0 <= 64);
    }
    assert!(caches.capacity().0 <= 64);
    assert_eq!(caches.len().0, caches.capacity().0);
}

#[test]
fn bearer_challenges_say_invalid_token_after_a_failure() {
    let a = build_ok(&jwt_config(""));
    assert_eq!(
        a.challenges(Methods::ALL, None),
        [&b"Bearer realm=\"ringway\""[..]]
    );
    assert_eq!(
        a.challenges(Methods::ALL, Some(AuthMethod::Jwt)),
        [&b"Bearer realm=\"ringway\", error=\"invalid_token\""[..]]
    );
    assert!(a
        .challenges(Methods::default().with(AuthMethod::Basic), None)
        .is_empty());
}

#[test]
fn a_basic_header_is_left_to_basic_and_a_bearer_to_jwt() {
    let mut cfg = jwt_config("");
    cfg.push_str("[auth.basic]\nusers = []\n[auth.api_key]\n");
    let a = build_ok(&cfg);
    let basic = request("/", &[("Authorization", "Basic dTpw")]);
    let out = a.authenticate(&mut a.new_caches(), &basic, Methods::ALL, NOW);
    assert!(matches!(out, AuthOutcome::Invalid(AuthMethod::Basic)));
    let out = a.authenticate(&mut a.new_caches(), &bearer("x.y.z"), Methods::ALL, NOW);
    assert!(matches!(out, AuthOutcome::Invalid(AuthMethod::Jwt)));
    assert_eq!(a.configured(), Methods::ALL);
    assert_eq!(a.credential_fields(), [&b"x-api-key"[..], b"authorization"]);
    let c = a.challenges(Methods::ALL, None);
    assert_eq!(c.len(), 3);
}
