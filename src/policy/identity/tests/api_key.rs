use std::rc::Rc;

use super::super::{AuthMethod, AuthOutcome, Methods};
use super::*;

fn keys_config() -> String {
    format!(
        r#"
[auth.api_key]
query = "api_key"

[[consumers]]
name = "alice"
groups = ["ops", "admins"]
api_keys = ["{}"]

[[consumers]]
name = "bob"
api_keys = ["{}"]

[policy]
groups = ["readers"]
"#,
        sha256_ref("alice-key"),
        sha256_ref("bob key/+")
    )
}

#[test]
fn api_key_in_the_header_authenticates_its_consumer_with_groups() {
    let a = build_ok(&keys_config());
    let mut caches = a.new_caches();
    let req = request("/", &[("X-Api-Key", "alice-key")]);
    let id = expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
    assert_eq!(id.method, AuthMethod::ApiKey);
    assert_eq!(&id.consumer[..], b"alice");
    assert_eq!(&id.groups_value[..], b"ops,admins");
    assert_eq!(group_names(&a, &id), ["ops", "admins"]);
    assert!(id.groups.windows(2).all(|w| w[0] < w[1]));
    assert!(id.claims.is_empty());
}

#[test]
fn api_key_in_the_query_is_percent_decoded() {
    let a = build_ok(&keys_config());
    let mut caches = a.new_caches();
    let req = request("/x?a=1&api_key=bob%20key%2F+", &[]);
    let id = expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
    assert_eq!(&id.consumer[..], b"bob");
    assert_eq!(&id.groups_value[..], b"");
}

#[test]
fn a_malformed_escape_in_the_query_key_is_invalid() {
    let a = build_ok(&keys_config());
    let req = request("/x?api_key=bob%2", &[]);
    let out = a.authenticate(&mut a.new_caches(), &req, Methods::ALL, NOW);
    assert!(matches!(out, AuthOutcome::Invalid(AuthMethod::ApiKey)));
}

#[test]
fn an_unknown_api_key_is_invalid() {
    let a = build_ok(&keys_config());
    let req = request("/", &[("X-Api-Key", "alice-key2")]);
    let out = a.authenticate(&mut a.new_caches(), &req, Methods::ALL, NOW);
    assert!(matches!(out, AuthOutcome::Invalid(AuthMethod::ApiKey)));
}

#[test]
fn a_request_without_credentials_is_missing() {
    let a = build_ok(&keys_config());
    let req = request("/?other=1", &[]);
    let out = a.authenticate(&mut a.new_caches(), &req, Methods::ALL, NOW);
    assert!(matches!(out, AuthOutcome::Missing));
}

#[test]
fn a_key_of_a_method_the_route_does_not_allow_is_not_read() {
    let a = build_ok(&keys_config());
    let req = request("/", &[("X-Api-Key", "alice-key")]);
    let jwt_only = Methods::default().with(AuthMethod::Jwt);
    let out = a.authenticate(&mut a.new_caches(), &req, jwt_only, NOW);
    assert!(matches!(out, AuthOutcome::Missing));
}

#[test]
fn every_hit_shares_the_consumers_one_identity() {
    let a = build_ok(&keys_config());
    let mut caches = a.new_caches();
    let req = request("/", &[("X-Api-Key", "alice-key")]);
    let one = expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
    let two = expect_ok(a.authenticate(&mut caches, &req, Methods::ALL, NOW));
    assert!(Rc::ptr_eq(&one, &two));
}

#[test]
fn an_oversized_api_key_is_invalid() {
    let a = build_ok(&keys_config());
    let big = "k".repeat(MAX + 1);
    let req = request("/", &[("X-Api-Key", &big)]);
    let out = a.authenticate(&mut a.new_caches(), &req, Methods::ALL, NOW);
    assert!(is_invalid(&out));
}

const MAX: usize = super::super::MAX_CREDENTIAL_BYTES;

#[test]
fn keys_file_lines_add_keys_and_skip_comments() {
    let dir = TempDir::new();
    dir.write(
        "keys.txt",
        format!(
            "# team keys\n\n{} carol\n  {} dave # not a comment: rejected\n",
            sha256_ref("carol-key"),
            sha256_ref("dave-key")
        ),
    );
    let cfg = r#"
[auth.api_key]
keys_file = "keys.txt"
[[consumers]]
name = "carol"
[[consumers]]
name = "dave"
"#;
    let (a, errors) = build_in(dir.path(), cfg);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "auth.api_key.keys_file");
    assert!(errors[0].reason.contains("line 4"), "{errors:?}");
    let req = request("/", &[("X-Api-Key", "carol-key")]);
    let id = expect_ok(a.authenticate(&mut a.new_caches(), &req, Methods::ALL, NOW));
    assert_eq!(&id.consumer[..], b"carol");
}

#[test]
fn the_api_key_challenge_names_the_field_and_parameter() {
    let a = build_ok(&keys_config());
    let c = a.challenges(Methods::ALL, None);
    assert_eq!(c, [&b"ApiKey header=\"X-Api-Key\", query=\"api_key\""[..]]);
    assert_eq!(a.credential_fields(), [&b"x-api-key"[..]]);
    assert_eq!(a.credential_query_param(), Some(&b"api_key"[..]));
}
