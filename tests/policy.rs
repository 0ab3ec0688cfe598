//! Access control and blocking end to end: client -> ringway -> recording origin on
//! loopback, under both I/O drivers. Each refusal is checked on both sides of the wire: the
//! client gets ringway's own answer and the origin never sees the request.

use ringway_test_support::*;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};

const SECRET: &str = "test-only-hmac-secret-0123456789";

fn sha(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

/// Consumers alice (admins) and bob (readers) with API keys, HS256 JWT, Basic for carol.
fn auth_sections(htpasswd_line: &str) -> String {
    format!(
        r#"[auth.api_key]
header = "X-Api-Key"
query = "api_key"

[auth.jwt]
issuer = "https://issuer.test"
audiences = ["ringway-tests"]
leeway = "5s"
groups_claim = "groups"
forward_claims = {{ "X-User-Email" = "email" }}
keys = [{{ alg = "HS256", secret = "{SECRET}" }}]

[auth.basic]
realm = "tests"
users = ["{htpasswd_line}"]

[policy]
groups = ["token-admins"]

[[consumers]]
name = "alice"
groups = ["admins"]
api_keys = ["{}"]

[[consumers]]
name = "bob"
groups = ["readers"]
api_keys = ["{}"]

[[consumers]]
name = "carol"
groups = ["readers"]
"#,
        sha("alice-key"),
        sha("bob-key"),
    )
}

fn gateway(origin: &Origin, driver: Driver) -> Gateway {
    let hash = bcrypt::hash("carol-pw", 4).expect("bcrypt");
    let cfg = Config::new()
        .section(&auth_sections(&format!("carol:{hash}")))
        .upstream("app", &[origin.addr()])
        .route(
            "path_prefix = \"/admin\"\nupstream = \"app\"\n\
             access = { groups = [\"admins\", \"token-admins\"] }",
        )
        .route(
            "path_prefix = \"/keys-only\"\nupstream = \"app\"\n\
             access = { auth = [\"api_key\"], strip_credentials = false }",
        )
        .route("path_prefix = \"/private\"\nupstream = \"app\"\naccess = {}")
        .route("path_prefix = \"/\"\nupstream = \"app\"")
        .render();
    Gateway::start(&cfg, driver)
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Authorization: Basic {b}\r\n")
}

both_drivers! {
    fn api_keys_identify_consumers_and_are_stripped(driver) {
        let origin = Origin::ok("hello");
        let gw = gateway(&origin, driver);
        let r = ask(gw.addr(), Request::get("/private/x").headers("X-Api-Key: bob-key\r\nX-Consumer: mallory\r\n"));
        assert_eq!(r.status, 200);
        let r = ask(gw.addr(), Request::get("/private/q?a=1&api_key=alice-key&b=2"));
        assert_eq!(r.status, 200);
        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].header("x-consumer"), Some("bob"));
        assert_eq!(seen[0].header_all("x-consumer").len(), 1, "a client's X-Consumer is dropped");
        assert_eq!(seen[0].header("x-consumer-groups"), Some("readers"));
        assert_eq!(seen[0].header("x-api-key"), None, "the key is not forwarded");
        assert_eq!(seen[1].target, "/private/q?a=1&b=2");
        assert_eq!(seen[1].header("x-consumer"), Some("alice"));

        // Missing and wrong keys: 401 with every configured challenge, nothing forwarded.
        let r = ask(gw.addr(), Request::get("/private/x"));
        assert_eq!(r.status, 401);
        let challenges: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert!(challenges.iter().any(|c| c.starts_with("Bearer realm=")), "{challenges:?}");
        assert!(challenges.iter().any(|c| c.starts_with("Basic realm=\"tests\"")), "{challenges:?}");
        assert_eq!(ask(gw.addr(), Request::get("/private/x").headers("X-Api-Key: nope\r\n")).status, 401);
        // A route that keeps credentials forwards the key.
        assert_eq!(ask(gw.addr(), Request::get("/keys-only").headers("X-Api-Key: bob-key\r\n")).status, 200);
        // A route accepting only API keys does not take a valid token.
        let t = hs256(json!({"sub": "alice", "exp": now() + 60, "iss": "https://issuer.test", "aud": "ringway-tests"}));
        let bearer = format!("Authorization: Bearer {t}\r\n");
        assert_eq!(ask(gw.addr(), Request::get("/keys-only").headers(&bearer)).status, 401);
        let seen = origin.wait_requests(3);
        assert_eq!(seen.len(), 3, "refused requests never reach the origin");
        assert_eq!(seen[2].header("x-api-key"), Some("bob-key"));
    }

    fn groups_decide_between_200_and_403(driver) {
        let origin = Origin::ok("ok");
        let gw = gateway(&origin, driver);
        assert_eq!(ask(gw.addr(), Request::get("/admin/panel").headers("X-Api-Key: alice-key\r\n")).status, 200);
        let r = ask(gw.addr(), Request::get("/admin/panel").headers("X-Api-Key: bob-key\r\n"));
        assert_eq!(r.status, 403);
        assert!(r.body_text().contains("403"), "ringway's own body: {}", r.body_text());
        assert_eq!(ask(gw.addr(), Request::get("/admin/panel").headers(&basic("carol", "carol-pw"))).status, 403);
        // A group that only comes from a token.
        let t = hs256(json!({"sub": "dave", "groups": ["token-admins"], "exp": now() + 60,
            "iss": "https://issuer.test", "aud": "ringway-tests"}));
        assert_eq!(ask(gw.addr(), Request::get("/admin/x").headers(&format!("Authorization: Bearer {t}\r\n"))).status, 200);
        let seen = origin.wait_requests(2);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].header("x-consumer"), Some("dave"));
    }

    fn jwt_tokens_are_validated_in_full(driver) {
        let origin = Origin::ok("ok");
        let gw = gateway(&origin, driver);
        let base = json!({"sub": "alice", "email": "a@example.test", "exp": now() + 60,
            "iss": "https://issuer.test", "aud": "ringway-tests"});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = base.clone();
            c[k] = v;
            hs256(c)
        };
        let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
        let good = hs256(base.clone());
        let r = ask(gw.addr(), Request::get("/private").headers(&format!("{}X-User-Email: spoof\r\n", bearer(&good))));
        assert_eq!(r.status, 200);
        // Cached on the second use: still accepted.
        assert_eq!(ask(gw.addr(), Request::get("/private").headers(&bearer(&good))).status, 200);
        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].header("x-consumer"), Some("alice"));
        assert_eq!(seen[0].header("x-consumer-groups"), Some("admins"));
        assert_eq!(seen[0].header_all("x-user-email"), vec!["a@example.test"]);
        assert_eq!(seen[0].header("authorization"), None);

        let expired = with("exp", json!(now() - 60));
        let early = with("nbf", json!(now() + 60));
        let wrong_aud = with("aud", json!("someone-else"));
        let wrong_iss = with("iss", json!("https://evil.test"));
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims = base.clone();
        claims["sub"] = json!("mallory");
        parts[1] = b64.encode(claims.to_string());
        let tampered = parts.join(".");
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(base.to_string())
        );
        let other_key = encode(&Header::new(Algorithm::HS256), &base,
            &EncodingKey::from_secret(b"another-secret-entirely-000000")).unwrap();
        for (what, t) in [("expired", &expired), ("not yet valid", &early),
            ("wrong audience", &wrong_aud), ("wrong issuer", &wrong_iss),
            ("tampered", &tampered), ("alg none", &none), ("other key", &other_key)] {
            let r = ask(gw.addr(), Request::get("/private").headers(&bearer(t)));
            assert_eq!(r.status, 401, "{what}");
            let challenge = r.header("www-authenticate").unwrap_or("");
            assert!(r.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("www-authenticate")
                && v.contains("invalid_token")), "{what}: {challenge}");
        }
        assert_eq!(origin.requests().len(), 2);
    }

    fn basic_auth_checks_bcrypt_passwords(driver) {
        let origin = Origin::ok("ok");
        let gw = gateway(&origin, driver);
        assert_eq!(ask(gw.addr(), Request::get("/private").headers(&basic("carol", "carol-pw"))).status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/private").headers(&basic("carol", "carol-pw"))).status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/private").headers(&basic("carol", "wrong"))).status, 401);
        assert_eq!(ask(gw.addr(), Request::get("/private").headers(&basic("nobody", "carol-pw"))).status, 401);
        let r = ask(gw.addr(), Request::get("/private").headers("Authorization: Basic !!!\r\n"));
        assert_eq!(r.status, 401);
        let seen = origin.wait_requests(2);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].header("x-consumer"), Some("carol"));
        assert_eq!(seen[0].header("authorization"), None);
    }

    fn public_routes_still_pass_without_credentials(driver) {
        let origin = Origin::ok("ok");
        let gw = gateway(&origin, driver);
        let r = ask(gw.addr(), Request::get("/open").headers("Authorization: Bearer not-a-token\r\nX-Consumer: x\r\n"));
        assert_eq!(r.status, 200);
        let seen = origin.wait_requests(1);
        // No access table: credentials are the upstream's business; reserved fields never pass.
        assert_eq!(seen[0].header("authorization"), Some("Bearer not-a-token"));
        assert_eq!(seen[0].header("x-consumer"), None);
    }

    fn path_tricks_do_not_get_around_an_access_rule(driver) {
        let origin = Origin::ok("ok");
        let gw = gateway(&origin, driver);
        for path in ["/admin", "/./admin", "//admin", "/x/../admin", "/%61dmin/",
            "/admin/./x", "/a/b/../../admin/y"] {
            assert_eq!(ask(gw.addr(), Request::get(path)).status, 401, "{path}");
        }
        let abs = roundtrip(gw.addr(), b"GET http://gw/admin HTTP/1.1\r\nHost: gw\r\n\r\n")
            .expect("response");
        assert_eq!(abs.status, 401, "absolute-form");
        // %2F is not a separator by default: "/admin%2Fx" is another path, and with
        // escaped_slashes = "reject" it is refused outright.
        assert_eq!(origin.requests().len(), 0);
    }

    fn case_and_escaped_slash_variants_under_strict_path_settings(driver) {
        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .section("[auth.api_key]\n\n[policy]\ncase_insensitive_paths = true\nescaped_slashes = \"decode\"")
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/admin/\"\nupstream = \"app\"\naccess = {}\nstrip_prefix = true")
            .route("path_prefix = \"/\"\nupstream = \"app\"")
            .render();
        let gw = Gateway::start(&cfg, driver);
        for path in ["/ADMIN/x", "/Admin/./x", "/admin%2Fx", "/x%2F..%2Fadmin/y", "/ADMIN%5cx"] {
            assert_eq!(ask(gw.addr(), Request::get(path)).status, 401, "{path}");
        }
        assert_eq!(ask(gw.addr(), Request::get("/other/Path")).status, 200);
        let seen = origin.wait_requests(1);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].target, "/other/Path", "the path is forwarded as sent");
        drop(gw);

        let cfg = cfg.replace("escaped_slashes = \"decode\"", "escaped_slashes = \"reject\"");
        let gw = Gateway::start(&cfg, driver);
        assert_eq!(ask(gw.addr(), Request::get("/admin%2Fx")).status, 400);
        assert_eq!(ask(gw.addr(), Request::get("/y%5Cz")).status, 400);
        assert_eq!(origin.requests().len(), 1);
    }
}

fn rules_gateway(origin: &Origin, driver: Driver, extra: &str) -> Gateway {
    let cfg = Config::new()
        .section(extra)
        .upstream("app", &[origin.addr()])
        .route(
            "path_prefix = \"/api\"\nupstream = \"app\"\n\
             rules = { methods = [\"GET\", \"POST\"], max_body_bytes = 16, \
             deny_paths = [{ prefix = \"/api/internal\" }, { glob = \"/**/*.php\" }, { exact = \"/api/.env\" }], \
             headers = [{ name = \"User-Agent\", deny = [\"*sqlmap*\", \"*nikto*\"] }, { name = \"X-Debug\", forbidden = true }], \
             query = [{ name = \"debug\", forbidden = true }, { name = \"id\", allow = [\"[0-9]\", \"n*\"] }] }",
        )
        .route("path_prefix = \"/\"\nupstream = \"app\"")
        .render();
    Gateway::start(&cfg, driver)
}

both_drivers! {
    fn block_rules_refuse_before_the_upstream(driver) {
        let origin = Origin::ok("ok");
        let gw = rules_gateway(&origin, driver, "");
        assert_eq!(ask(gw.addr(), Request::get("/api/ok?id=n5").headers("User-Agent: curl/8\r\n")).status, 200);
        let r = roundtrip(gw.addr(), b"DELETE /api/x HTTP/1.1\r\nHost: gw\r\n\r\n").unwrap();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, POST"));
        for (path, extra) in [
            ("/api/internal/x", ""),
            ("/api/INTERNAL/x", ""),
            ("/api/a/b/x.php", ""),
            ("/api/.env", ""),
            ("/api/x", "User-Agent: Mozilla/5.0 sqlmap/1.7\r\n"),
            ("/api/x", "User-Agent: Nikto\r\n"),
            ("/api/x", "X-Debug: 1\r\n"),
            ("/api/x?debug=1", ""),
            ("/api/x?id=abc", ""),
        ] {
            assert_eq!(ask(gw.addr(), Request::get(path).headers(extra)).status, 403, "{path} {extra}");
        }
        // Body size: a declared length above the route's limit, and a chunked body that
        // grows past it.
        let r = roundtrip(gw.addr(),
            b"POST /api/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 17\r\n\r\n0123456789abcdefg").unwrap();
        assert_eq!(r.status, 413);
        let r = roundtrip(gw.addr(),
            b"POST /api/up HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.status, 413);
        // Elsewhere the same requests pass.
        assert_eq!(ask(gw.addr(), Request::get("/other/x.php?debug=1").headers("User-Agent: sqlmap\r\n")).status, 200);
        let seen = origin.wait_requests(2);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].target, "/other/x.php?debug=1");
    }

    fn ip_rules_use_the_real_client_address(driver) {
        let origin = Origin::ok("ok");
        // The peer is 127.0.0.1; without trust its X-Forwarded-For is ignored.
        let gw = rules_gateway(&origin, driver, "[rules]\nip_deny = [\"203.0.113.0/24\"]\nip_allow = [\"127.0.0.0/8\", \"198.51.100.0/24\"]");
        assert_eq!(ask(gw.addr(), Request::get("/x").headers("X-Forwarded-For: 203.0.113.7\r\n")).status, 200);
        drop(gw);
        let trusted = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[rules]\nip_deny = [\"203.0.113.0/24\"]\nip_allow = [\"198.51.100.0/24\"]";
        let gw = rules_gateway(&origin, driver, trusted);
        assert_eq!(ask(gw.addr(), Request::get("/x").headers("X-Forwarded-For: 203.0.113.7\r\n")).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/x").headers("X-Forwarded-For: 192.0.2.1\r\n")).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/x").headers("X-Forwarded-For: 203.0.113.7, 198.51.100.9\r\n")).status, 200);
        // No field: the peer itself (127.0.0.1) is not in ip_allow.
        assert_eq!(ask(gw.addr(), Request::get("/x")).status, 403);
        assert_eq!(origin.requests().len(), 2);
    }

    fn ipv6_clients_match_ipv6_blocks(driver) {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        }
        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .section("[server]\nlisten = [\"[::1]:0\"]")
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/\"\nupstream = \"app\"\nrules = { ip_deny = [\"::1/128\"] }")
            .render()
            .replacen("listen = [\"127.0.0.1:0\"]\n", "", 1);
        let gw = Gateway::start(&cfg, driver);
        assert!(gw.addr().is_ipv6());
        assert_eq!(ask(gw.addr(), Request::get("/")).status, 403);
        drop(gw);
        let cfg = cfg.replace("::1/128", "2001:db8::/32");
        let gw = Gateway::start(&cfg, driver);
        assert_eq!(ask(gw.addr(), Request::get("/")).status, 200);
    }
}

/// Two workers, clients steered by address: a per-IP limit is exact across them.
fn limited_gateway(origin: &Origin, driver: Driver, limit: &str, keys: usize) -> Gateway {
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[policy]\nrate_limit_keys = {keys}\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\n\
         [[routes.rules.rate_limits]]\n{limit}\n",
        origin.addr()
    );
    Gateway::start(&cfg, driver)
}

both_drivers! {
    fn rate_limits_are_exact_across_two_workers(driver) {
        let origin = Origin::ok("ok");
        let gw = limited_gateway(&origin, driver, "key = \"ip\"\nrate = \"10/m\"\nburst = 10", 1024);
        assert!(gw.stderr_text().contains("steered"), "{}", gw.stderr_text());
        // 40 connections, each a fresh one: they would spread over both workers unsteered.
        let mut codes = Vec::new();
        let mut limited = None;
        for _ in 0..40 {
            let r = ask(gw.addr(), Request::get("/"));
            if r.status == 429 && limited.is_none() {
                limited = Some(r.clone());
            }
            codes.push(r.status);
        }
        assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 10, "{codes:?}");
        assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 30, "{codes:?}");
        assert_eq!(origin.requests().len(), 10);
        let r = limited.expect("a 429");
        let retry: u64 = r.header("retry-after").unwrap_or("0").parse().unwrap_or(0);
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        assert_eq!(r.header("ratelimit-limit"), Some("10"));
        assert_eq!(r.header("ratelimit-remaining"), Some("0"));
        assert!(r.has_header("ratelimit-reset"));
    }

    fn header_keyed_limits_count_each_value(driver) {
        let origin = Origin::ok("ok");
        let gw = limited_gateway(&origin, driver, "key = \"header:X-Tenant\"\nrate = \"2/m\"\nburst = 2", 1024);
        let mut r = Reader::new(connect(gw.addr()));
        let mut statuses = Vec::new();
        for tenant in ["a", "a", "a", "b", "b", "b"] {
            r.send(format!("GET / HTTP/1.1\r\nHost: gw\r\nX-Tenant: {tenant}\r\n\r\n").as_bytes());
            statuses.push(r.response().expect("response").status);
        }
        assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429]);
        // Without the field the limit does not apply.
        assert_eq!(ask(gw.addr(), Request::get("/")).status, 200);
    }

    fn a_key_flood_keeps_memory_bounded(driver) {
        let origin = Origin::ok("ok");
        let gw = limited_gateway(&origin, driver, "key = \"header:X-Key\"\nrate = \"1/h\"\nburst = 1", 4096);
        let mut r = Reader::new(connect(gw.addr()));
        let mut flood = |from: usize, to: usize| {
            for i in from..to {
                r.send(format!("GET / HTTP/1.1\r\nHost: gw\r\nX-Key: k{i}\r\n\r\n").as_bytes());
                assert_eq!(r.response().expect("response").status, 200);
            }
        };
        flood(0, 2_000);
        let before = gw.rss_kib();
        flood(2_000, 22_000);
        let after = gw.rss_kib();
        // 20,000 new keys through a 4,096-entry table: no growth beyond noise.
        assert!(after < before + 2048, "RSS grew from {before} KiB to {after} KiB");
    }
}

both_drivers! {
    /// `config/policy.toml` as shipped, on an ephemeral port in front of a test origin.
    fn the_policy_example_works_as_documented(driver) {
        let origin = Origin::ok("ok");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.toml"))
            .expect("example config")
            .replace("127.0.0.1:8080", "127.0.0.1:0")
            .replace("127.0.0.1:9001", &origin.addr().to_string())
            .replace("[server]\n", "[server]\nworkers = 1\n");
        let gw = Gateway::start(&text, driver);
        let alice = "X-Api-Key: example-key-alice\r\n";
        assert_eq!(ask(gw.addr(), Request::get("/admin/stats").headers(alice)).status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/admin/stats").headers("X-Api-Key: example-key-ci\r\n")).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/admin/stats")).status, 401);
        assert_eq!(ask(gw.addr(), Request::get("/orders/7").headers(&basic("carol", "example-password"))).status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/orders/7?debug=1").headers(alice)).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/.env")).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/x/y.php")).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/admin%2Fstats").headers(alice)).status, 400);
        assert_eq!(ask(gw.addr(), Request::get("/").headers("User-Agent: sqlmap/1.8\r\n")).status, 403);
        assert_eq!(ask(gw.addr(), Request::get("/")).status, 200);
        let r = roundtrip(gw.addr(), b"POST /ingest HTTP/1.1\r\nHost: gw\r\nX-Api-Key: example-key-ci\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r.status, 200);
        let seen = origin.wait_requests(4);
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].header("x-consumer"), Some("alice"));
        assert_eq!(seen[1].header("x-consumer"), Some("carol"));
        assert_eq!(seen[3].header("x-api-key"), Some("example-key-ci"), "ingest keeps the key");
    }
}

// ------------------------------------------------------------------ asymmetric keys

const ED25519_SPKI: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn public_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

both_drivers! {
    /// ES256 keys from a JWKS file (selected by kid), an EdDSA key from a PEM file (both
    /// relative to the config file), and an argon2 Basic user.
    fn asymmetric_tokens_and_argon2_passwords(driver) {
        use argon2::password_hash::PasswordHasher;
        use ring::rand::SystemRandom;
        use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = SystemRandom::new();
        let ec8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec8.as_ref(), &rng).unwrap();
        let point = ec.public_key().as_ref().to_vec();
        let ed8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(ed8.as_ref()).unwrap();

        let tag = format!("{}-{}", std::process::id(), driver.env());
        let dir = std::env::temp_dir();
        let jwks_name = format!("ringway-test-jwks-{tag}.json");
        let pem_name = format!("ringway-test-ed25519-{tag}.pem");
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
            "x": b64url(&point[1..33]), "y": b64url(&point[33..])}]});
        std::fs::write(dir.join(&jwks_name), jwks.to_string()).unwrap();
        std::fs::write(dir.join(&pem_name), public_pem(&[ED25519_SPKI, ed.public_key().as_ref()].concat())).unwrap();

        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = argon.hash_password_with_salt(b"erin-pw", b"0123456789abcdef").unwrap();

        let origin = Origin::ok("ok");
        let cfg = Config::new()
            .section(&format!(
                "[auth.jwt]\njwks_file = \"{jwks_name}\"\nkeys = [{{ kid = \"ed-1\", alg = \"EdDSA\", pem_file = \"{pem_name}\" }}]\n\n\
                 [auth.basic]\nusers = [\"erin:{hash}\"]"
            ))
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/\"\nupstream = \"app\"\naccess = {}")
            .render();
        let gw = Gateway::start(&cfg, driver);
        let claims = json!({"sub": "svc", "exp": now() + 60});
        let signed = |alg: Algorithm, kid: &str, key: &EncodingKey| {
            let mut h = Header::new(alg);
            h.kid = Some(kid.to_string());
            format!("Authorization: Bearer {}\r\n", encode(&h, &claims, key).unwrap())
        };
        let es = EncodingKey::from_ec_der(ec8.as_ref());
        let eddsa = EncodingKey::from_ed_der(ed8.as_ref());
        assert_eq!(ask(gw.addr(), Request::get("/").headers(&signed(Algorithm::ES256, "ec-1", &es))).status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/").headers(&signed(Algorithm::EdDSA, "ed-1", &eddsa))).status, 200);
        // The right key, the wrong kid or algorithm: refused.
        assert_eq!(ask(gw.addr(), Request::get("/").headers(&signed(Algorithm::ES256, "ed-1", &es))).status, 401);
        assert_eq!(ask(gw.addr(), Request::get("/").headers(&signed(Algorithm::ES256, "nope", &es))).status, 401);
        assert_eq!(ask(gw.addr(), Request::get("/").headers(&basic("erin", "erin-pw"))).status, 200);
        assert_eq!(ask(gw.addr(), Request::get("/").headers(&basic("erin", "nope"))).status, 401);
        let seen = origin.wait_requests(3);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].header("x-consumer"), Some("erin"));
        let _ = std::fs::remove_file(dir.join(&jwks_name));
        let _ = std::fs::remove_file(dir.join(&pem_name));
    }
}
