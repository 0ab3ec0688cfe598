use argon2::password_hash::PasswordHasher;
use base64::Engine;

use super::super::{AuthMethod, AuthOutcome, Methods};
use super::*;

fn bcrypt_line(user: &str, password: &str) -> String {
    format!("{user}:{}", bcrypt::hash(password, 4).unwrap())
}

fn argon2_line(user: &str, password: &str) -> String {
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = hasher
        .hash_password_with_salt(password.as_bytes(), b"0123456789abcdef")
        .unwrap();
    format!("{user}:{hash}")
}

fn basic_config(lines: &[String], extra: &str) -> String {
    let users: Vec<String> = lines.iter().map(|l| format!("{l:?}")).collect();
    format!(
        "[auth.basic]\nrealm = \"Team \\\"A\\\"\"\nusers = [{}]\n{extra}\n\
         [[consumers]]\nname = \"ann\"\ngroups = [\"staff\"]\n",
        users.join(", ")
    )
}

fn basic_request(user_pass: &[u8]) -> RequestHead {
    let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
    request("/", &[("Authorization", &format!("Basic {b64}"))])
}

#[test]
fn a_bcrypt_user_authenticates_with_its_consumer_groups() {
    let a = build_ok(&basic_config(&[bcrypt_line("ann", "s3cret")], ""));
    let id = expect_ok(a.authenticate(
        &mut a.new_caches(),
        &basic_request(b"ann:s3cret"),
        Methods::ALL,
        NOW,
    ));
    assert_eq!(id.method, AuthMethod::Basic);
    assert_eq!(&id.consumer[..], b"ann");
    assert_eq!(&id.groups_value[..], b"staff");
}

#[test]
fn an_argon2_user_authenticates() {
    let a = build_ok(&basic_config(&[argon2_line("ben", "pa:ss")], ""));
    let id = expect_ok(a.authenticate(
        &mut a.new_caches(),
        &basic_request(b"ben:pa:ss"),
        Methods::ALL,
        NOW,
    ));
    assert_eq!(&id.consumer[..], b"ben");
}

#[test]
fn a_wrong_password_or_unknown_user_is_invalid() {
    let a = build_ok(&basic_config(
        &[bcrypt_line("ann", "s3cret"), argon2_line("ben", "pw")],
        "",
    ));
    let mut caches = a.new_caches();
    for cred in [
        &b"ann:wrong"[..],
        b"ben:wrong",
        b"zed:s3cret",
        b"no-colon",
        b"ann:\xff\x00",
    ] {
        let out = a.authenticate(&mut caches, &basic_request(cred), Methods::ALL, NOW);
        assert!(
            matches!(out, AuthOutcome::Invalid(AuthMethod::Basic)),
            "{cred:?}"
        );
    }
    assert_eq!(caches.len(), (0, 0), "failures are not cached");
}

#[test]
fn malformed_base64_is_invalid_not_a_panic() {
    let a = build_ok(&basic_config(&[bcrypt_line("ann", "s3cret")], ""));
    let big = "A".repeat(9000);
    for v in ["Basic !!!!", "Basic ", "basic YW5u", big.as_str()] {
        let value = if v.starts_with(['B', 'b']) {
            v.to_string()
        } else {
            format!("Basic {v}")
        };
        let req = request("/", &[("Authorization", &value)]);
        let out = a.authenticate(&mut a.new_caches(), &req, Methods::ALL, NOW);
        assert!(is_invalid(&out), "{v:.20}");
    }
}

#[test]
fn a_cached_credential_is_not_verified_again_until_its_ttl_ends() {
    let a = build_ok(&basic_config(
        &[bcrypt_line("ann", "s3cret")],
        "cache_ttl = \"60s\"",
    ));
    let mut caches = a.new_caches();
    let req = basic_request(b"ann:s3cret");
    for t in [NOW, NOW + 1, NOW + 59] {
        expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, t));
    }
    let s = caches.stats();
    assert_eq!((s.basic_verifications, s.basic_hits), (1, 2));
    expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW + 60));
    assert_eq!(caches.stats().basic_verifications, 2);
}

#[test]
fn a_wrong_password_is_verified_every_time_even_after_a_cached_success() {
    let a = build_ok(&basic_config(&[bcrypt_line("ann", "s3cret")], ""));
    let mut caches = a.new_caches();
    expect_ok(a.authenticate(
        &mut caches,
        &basic_request(b"ann:s3cret"),
        Methods::ALL,
        NOW,
    ));
    for _ in 0..2 {
        let out = a.authenticate(
            &mut caches,
            &basic_request(b"ann:s3creT"),
            Methods::ALL,
            NOW,
        );
        assert!(is_invalid(&out));
    }
    assert_eq!(caches.stats().basic_verifications, 3);
}

#[test]
fn cache_size_zero_verifies_every_request() {
    let a = build_ok(&basic_config(
        &[bcrypt_line("ann", "s3cret")],
        "cache_size = 0",
    ));
    let mut caches = a.new_caches();
    for _ in 0..2 {
        expect_ok(a.authenticate(
            &mut caches,
            &basic_request(b"ann:s3cret"),
            Methods::ALL,
            NOW,
        ));
    }
    assert_eq!(caches.stats().basic_verifications, 2);
}

#[test]
fn htpasswd_file_users_are_added() {
    let dir = TempDir::new();
    dir.write(
        "users.htpasswd",
        format!("# users\n{}\n", bcrypt_line("cy", "pw")),
    );
    let cfg = "[auth.basic]\nhtpasswd_file = \"users.htpasswd\"\n";
    let a = build_ok_in(dir.path(), cfg);
    let id = expect_ok(a.authenticate(
        &mut a.new_caches(),
        &basic_request(b"cy:pw"),
        Methods::ALL,
        NOW,
    ));
    assert_eq!(&id.consumer[..], b"cy");
}

#[test]
fn the_basic_challenge_quotes_the_realm() {
    let a = build_ok(&basic_config(&[bcrypt_line("ann", "s3cret")], ""));
    let c = a.challenges(Methods::ALL, Some(AuthMethod::Basic));
    assert_eq!(
        c,
        [&b"Basic realm=\"Team \\\"A\\\"\", charset=\"UTF-8\""[..]]
    );
    assert_eq!(a.credential_fields(), [&b"authorization"[..]]);
    assert_eq!(a.credential_query_param(), None);
}

#[test]
fn an_unknown_user_costs_a_hash_verification_like_a_known_one() {
    let a = build_ok(&basic_config(&[bcrypt_line("ann", "s3cret")], ""));
    let mut caches = a.new_caches();
    let out = a.authenticate(
        &mut caches,
        &basic_request(b"nobody:s3cret"),
        Methods::ALL,
        NOW,
    );
    assert!(is_invalid(&out));
    assert_eq!(caches.stats().basic_verifications, 1);
}
