//! Micro-benchmarks of `Policy::check`, the per-request access decision, on one core's
//! compiled policy and state: an API-key route, a JWT route with the per-core token cache
//! warm and with it off (HMAC-SHA256 and JSON claims on every check), a route denying 1,000
//! generated CIDR blocks (a client in none of them, so every IPv4 prefix length is probed,
//! and one inside a /16), an always-allowing per-IP rate limit with the clock advancing,
//! and a route with no policy at all for reference. Configs, tokens and requests are built,
//! and every decision checked once, before the timed loops.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use sha2::{Digest, Sha256};

use ringway::http::{parse_request, Limits, RequestHead};
use ringway::policy::{Denial, Policy};

const API_KEY: &str = "rw_live_7c1f0a9e5d3b42a8b6e0";
const JWT_SECRET: &str = "bench-hs256-secret-5f2c9e7a41d08b36";
const ROUTE: &str = "[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n";
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

/// The first ROUTE is `routes[0]`: `tail` may add keys to it (`access = {}`, `rules = ...`).
fn policy(auth: &str, tail: &str) -> Policy {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n{auth}{ROUTE}{tail}"
    );
    let cfg = ringway::config::from_str(&text, "bench.toml").expect("bench config parses");
    let mut errors = Vec::new();
    let p = Policy::build(&cfg, Path::new("."), &mut errors);
    assert!(errors.is_empty(), "bench policy builds: {errors:?}");
    p
}

/// A typical API call; `fields` are extra header lines, each ending in CRLF.
fn request(fields: &str) -> RequestHead {
    let raw = format!(
        "GET /v1/orders/42?limit=20 HTTP/1.1\r\nHost: api.example.com\r\n\
         User-Agent: bench/1.0\r\nAccept: application/json\r\n{fields}\r\n"
    );
    let mut buf = BytesMut::from(raw.as_bytes());
    let mut head = RequestHead::default();
    let done = parse_request(&mut buf, &Limits::default(), &mut head);
    assert!(matches!(done, Ok(true)), "bench request parses: {done:?}");
    head
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn hs256_token(now_unix: u64) -> String {
    let claims = serde_json::json!({ "sub": "acme", "iat": now_unix, "exp": now_unix + 3600 });
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token encodes")
}

/// Fixed-seed xorshift64*, so every run denies the same blocks.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// 900 IPv4 blocks cycling through /8../32 (none in 203.0.0.0/8) and 100 IPv6 blocks in
/// 2001:db8::/32 cycling through /32../128 by 8. Also returns an address inside the first
/// /16 block.
fn deny_list() -> (String, IpAddr) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut list = Vec::with_capacity(1000);
    let mut hit = None;
    for i in 0..900u32 {
        let prefix = 8 + i % 25;
        let mut a = (rng.next_u64() >> 32) as u32;
        if a >> 24 == 203 {
            a ^= 1 << 24;
        }
        let net = a & (u32::MAX << (32 - prefix));
        if prefix == 16 && hit.is_none() {
            hit = Some(IpAddr::V4(Ipv4Addr::from(net | 0x1234)));
        }
        list.push(format!("\"{}/{prefix}\"", Ipv4Addr::from(net)));
    }
    for i in 0..100u32 {
        let prefix = 32 + 8 * (i % 13);
        let low = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) >> 32;
        let a = 0x2001_0db8_u128 << 96 | low;
        let net = a & u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        list.push(format!("\"{}/{prefix}\"", Ipv6Addr::from(net)));
    }
    (list.join(", "), hit.expect("a /16 block"))
}

/// Checks the request once (it must decide `want`; this also warms any cache), then times
/// `check` with the same state, clock and client.
fn time_check(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    p: &Policy,
    head: &RequestHead,
    client: IpAddr,
    want: Result<(), Denial>,
) {
    let now_unix = unix_now();
    let mut st = p.new_state();
    let got = p.check(&mut st, head, Some(0), client, None, 0, now_unix);
    assert_eq!(got.map(|_| ()), want, "{id} decides as expected");
    g.bench_function(id, |b| {
        b.iter(|| {
            let got = p.check(
                &mut st,
                black_box(head),
                Some(0),
                black_box(client),
                None,
                0,
                now_unix,
            );
            black_box(got.is_ok())
        })
    });
}

fn api_key(g: &mut BenchmarkGroup<'_, WallTime>) {
    let digest: String = Sha256::digest(API_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = format!(
        "[auth.api_key]\n[[consumers]]\nname = \"acme\"\napi_keys = [\"sha256:{digest}\"]\n"
    );
    let p = policy(&auth, "access = {}\n");
    let head = request(&format!("X-Api-Key: {API_KEY}\r\n"));
    time_check(g, "api_key", &p, &head, PEER, Ok(()));
}

fn jwt(g: &mut BenchmarkGroup<'_, WallTime>) {
    let token = hs256_token(unix_now());
    let head = request(&format!("Authorization: Bearer {token}\r\n"));
    for (id, cache) in [("jwt_cached", ""), ("jwt_uncached", "cache_size = 0\n")] {
        let auth = format!(
            "[auth.jwt]\nkeys = [{{ alg = \"HS256\", secret = \"{JWT_SECRET}\" }}]\n{cache}"
        );
        let p = policy(&auth, "access = {}\n");
        time_check(g, id, &p, &head, PEER, Ok(()));
    }
}

fn cidr(g: &mut BenchmarkGroup<'_, WallTime>) {
    let (list, hit) = deny_list();
    let p = policy("", &format!("rules = {{ ip_deny = [{list}] }}\n"));
    let head = request("");
    let miss = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    time_check(g, "cidr_1000_rules/miss", &p, &head, miss, Ok(()));
    let denied = Err(Denial::Status(403));
    time_check(g, "cidr_1000_rules/hit", &p, &head, hit, denied);
}

fn rate_limit(g: &mut BenchmarkGroup<'_, WallTime>) {
    // 1,000,000/s is one request per µs with a burst of a million: advancing the clock
    // 1 µs per check keeps the key exactly at its rate, so every check is allowed.
    let p = policy(
        "",
        "rules = { rate_limits = [{ key = \"ip\", rate = \"1000000/s\" }] }\n",
    );
    assert!(p.has_rate_limits());
    let head = request("");
    let now_unix = unix_now();
    let mut st = p.new_state();
    let mut now_ns = 0u64;
    for _ in 0..10_000 {
        now_ns += 1_000;
        let got = p.check(&mut st, &head, Some(0), PEER, None, now_ns, now_unix);
        assert!(got.is_ok(), "the rate limit allows every check");
    }
    g.bench_function("rate_limit", |b| {
        b.iter(|| {
            now_ns += 1_000;
            let got = p.check(
                &mut st,
                black_box(&head),
                Some(0),
                PEER,
                None,
                now_ns,
                now_unix,
            );
            black_box(got.is_ok())
        })
    });
}

fn no_policy(g: &mut BenchmarkGroup<'_, WallTime>) {
    let p = policy("", "");
    // The pipeline skips `check` when nothing is configured; timed for reference.
    assert!(!p.is_active());
    let head = request("");
    time_check(g, "no_policy_fast_path", &p, &head, PEER, Ok(()));
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    api_key(&mut g);
    jwt(&mut g);
    cidr(&mut g);
    rate_limit(&mut g);
    no_policy(&mut g);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
