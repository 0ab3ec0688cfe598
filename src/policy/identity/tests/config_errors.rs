use super::*;

fn one_error(dir: &Path, cfg: &str) -> ConfigError {
    let errors = errors_in(dir, cfg);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn an_unreadable_pem_file_names_the_field_and_the_resolved_path() {
    let dir = TempDir::new();
    let cfg = "[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"HS256\"\nsecret = \"s\"\n\
               [[auth.jwt.keys]]\nalg = \"RS256\"\npem_file = \"keys/missing.pem\"\n";
    let e = one_error(dir.path(), cfg);
    assert_eq!(e.path, "auth.jwt.keys[1].pem_file");
    let resolved = dir.path().join("keys/missing.pem");
    assert!(e.reason.contains(&resolved.display().to_string()), "{e:?}");
    assert!(e.reason.contains("No such file"), "{e:?}");
}

#[test]
fn an_asymmetric_alg_with_a_secret_is_an_error() {
    let e = one_error(
        Path::new("/"),
        "[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"RS256\"\nsecret = \"s\"\n",
    );
    assert_eq!(e.path, "auth.jwt.keys[0].secret");
    assert_eq!(e.reason, "alg RS256 needs pem_file, not secret");
}

#[test]
fn an_hmac_alg_without_a_secret_or_with_a_pem_file_is_an_error() {
    let e = one_error(
        Path::new("/"),
        "[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"HS384\"\n",
    );
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        ("auth.jwt.keys[0]", "alg HS384 needs secret")
    );
    let errors = errors_in(
        Path::new("/"),
        "[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"HS256\"\nsecret = \"s\"\npem_file = \"k.pem\"\n",
    );
    assert_eq!(errors[0].path, "auth.jwt.keys[0].pem_file");
}

#[test]
fn an_unknown_alg_and_alg_none_are_errors() {
    for alg in ["none", "RS1", "hs256"] {
        let cfg = format!("[auth.jwt]\n[[auth.jwt.keys]]\nalg = \"{alg}\"\nsecret = \"s\"\n");
        let e = one_error(Path::new("/"), &cfg);
        assert_eq!(e.path, "auth.jwt.keys[0].alg");
        assert!(e.reason.contains("unknown alg"), "{e:?}");
    }
}

#[test]
fn jwt_without_any_key_is_an_error() {
    let e = one_error(Path::new("/"), "[auth.jwt]\n");
    assert_eq!(e.path, "auth.jwt");
}

#[test]
fn a_malformed_jwks_file_is_an_error() {
    let dir = TempDir::new();
    dir.write("jwks.json", "{\"keys\": [{\"kty\": \"EC\"}]");
    let e = one_error(dir.path(), "[auth.jwt]\njwks_file = \"jwks.json\"\n");
    assert_eq!(e.path, "auth.jwt.jwks_file");
    assert!(e.reason.contains("not a JWKS document"), "{e:?}");
}

#[test]
fn a_bad_sha256_string_names_the_consumer_key() {
    let cfg = format!(
        "[auth.api_key]\n[[consumers]]\nname = \"a\"\napi_keys = [\"{}\", \"plaintext-key\"]\n",
        sha256_ref("k")
    );
    let e = one_error(Path::new("/"), &cfg);
    assert_eq!(e.path, "consumers[0].api_keys[1]");
    assert!(e.reason.contains("sha256:<64 hex digits>"), "{e:?}");
    assert!(
        !e.reason.contains("plaintext-key"),
        "a pasted key is echoed: {e:?}"
    );
}

#[test]
fn the_same_api_key_twice_is_an_error() {
    let key = sha256_ref("k");
    let cfg = format!(
        "[auth.api_key]\n[[consumers]]\nname = \"a\"\napi_keys = [\"{key}\"]\n\
         [[consumers]]\nname = \"b\"\napi_keys = [\"{key}\"]\n"
    );
    assert_eq!(
        one_error(Path::new("/"), &cfg).path,
        "consumers[1].api_keys[0]"
    );
}

#[test]
fn api_keys_without_the_api_key_method_are_an_error() {
    let cfg = format!(
        "[[consumers]]\nname = \"a\"\napi_keys = [\"{}\"]\n",
        sha256_ref("k")
    );
    assert_eq!(
        one_error(Path::new("/"), &cfg).path,
        "consumers[0].api_keys"
    );
}

#[test]
fn a_keys_file_line_naming_an_unknown_consumer_is_an_error() {
    let dir = TempDir::new();
    dir.write("keys", format!("{} mallory\n", sha256_ref("k")));
    let cfg = "[auth.api_key]\nkeys_file = \"keys\"\n[[consumers]]\nname = \"a\"\n";
    let e = one_error(dir.path(), cfg);
    assert_eq!(e.path, "auth.api_key.keys_file");
    assert!(
        e.reason.contains("line 1") && e.reason.contains("unknown consumer \"mallory\""),
        "{e:?}"
    );
}

#[test]
fn an_unreadable_keys_file_is_an_error() {
    let dir = TempDir::new();
    let e = one_error(dir.path(), "[auth.api_key]\nkeys_file = \"nope.txt\"\n");
    assert_eq!(e.path, "auth.api_key.keys_file");
    assert!(e.reason.starts_with("cannot read "), "{e:?}");
}

#[test]
fn a_weak_htpasswd_scheme_is_an_error_naming_the_user() {
    let dir = TempDir::new();
    dir.write("users", "ok:$2y$04$e5Vqf4AhVcQ0LSn6pKnnTOZzOjVdb9M5XEcYkzbzfyyKRbvyE3fUS\nold:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    let cfg = "[auth.basic]\nhtpasswd_file = \"users\"\nusers = [\"md5:$apr1$x$y\"]\n";
    let errors = errors_in(dir.path(), cfg);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].path, "auth.basic.users[0]");
    assert!(
        errors[0].reason.contains("\"md5\"") && errors[0].reason.contains("apr1"),
        "{errors:?}"
    );
    assert_eq!(errors[1].path, "auth.basic.htpasswd_file");
    assert!(
        errors[1].reason.contains("line 2") && errors[1].reason.contains("\"old\""),
        "{errors:?}"
    );
}

#[test]
fn a_malformed_bcrypt_or_argon2_hash_is_an_error() {
    let cfg = "[auth.basic]\nusers = [\"a:$2b$04$tooshort\", \"b:$argon2id$v=19$m=8,t=1,p=1\"]\n";
    let errors = errors_in(Path::new("/"), cfg);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].reason.contains("malformed bcrypt"), "{errors:?}");
    assert_eq!(errors[1].path, "auth.basic.users[1]");
}

#[test]
fn duplicate_consumers_and_bad_group_names_are_errors() {
    let cfg = "[[consumers]]\nname = \"a\"\ngroups = [\"x,y\"]\n[[consumers]]\nname = \"a\"\n\
               [policy]\ngroups = [\"ok\", \"\"]\n";
    let errors = errors_in(Path::new("/"), cfg);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "consumers[0].groups[0]",
            "consumers[1].name",
            "policy.groups[1]"
        ]
    );
}

#[test]
fn declared_groups_get_stable_ids() {
    let cfg =
        "[[consumers]]\nname = \"a\"\ngroups = [\"x\", \"y\"]\n[policy]\ngroups = [\"y\", \"z\"]\n";
    let a = build_ok(cfg);
    let d = &a.directory;
    assert_eq!(
        (d.group_id("x"), d.group_id("y"), d.group_id("z")),
        (Some(0), Some(1), Some(2))
    );
    assert_eq!(d.group_id("w"), None);
    assert_eq!(d.group_name(2), "z");
    assert!(d.has_consumer("a") && !d.has_consumer("b"));
}
