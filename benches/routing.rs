//! Micro-benchmarks of route lookup (`Compiled::route`) in tables of 10 and 1,000 routes.
//! The config text is generated: a mix of exact hosts, wildcard hosts, host-less path
//! prefixes and exact paths, several routes per host, ending in a catch-all `path_prefix =
//! "/"`. Two requests per table: one that hits an exact-host route generated late in the
//! table under a host shared with other routes (so the path trie has siblings), and one that
//! misses every host and prefix and falls through to the catch-all (exact-host miss,
//! wildcard-suffix misses, then a partial trie walk and a climb back to "/"). Tables and
//! requests are built and checked before the timed loops.

use std::fmt::Write as _;
use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use ringway::compiled::Compiled;
use ringway::http::{parse_request, Limits, RequestHead};

/// `n` routes (the last one the catch-all) cycling through four kinds. Hosts are shared by
/// about 10 routes each, so per-host tries hold several paths.
fn config_text(n: usize) -> String {
    assert!(n >= 5, "need room for every kind plus the catch-all");
    let hosts = (n / 40).max(1);
    let mut s = String::from(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n",
    );
    for i in 0..n - 1 {
        s.push_str("[[routes]]\n");
        let h = i % hosts;
        let _ = match i % 4 {
            0 => writeln!(
                s,
                "host = \"svc{h}.example.com\"\npath_prefix = \"/api/v{i}/\"\nstrip_prefix = true\nupstream = \"app\""
            ),
            1 => writeln!(
                s,
                "host = \"*.tenant{h}.example.net\"\npath_prefix = \"/t/{i}/\"\nupstream = \"app\""
            ),
            2 => writeln!(s, "path_prefix = \"/p/{i}/\"\nupstream = \"app\""),
            _ => writeln!(s, "path = \"/exact/{i}\"\nrespond = {{ status = 200 }}"),
        };
    }
    s.push_str("[[routes]]\nname = \"catch-all\"\npath_prefix = \"/\"\nupstream = \"app\"\n");
    s
}

fn table(n: usize) -> Compiled {
    let text = config_text(n);
    let cfg = ringway::config::from_str(&text, "bench.toml").expect("generated config parses");
    assert_eq!(cfg.routes.len(), n);
    Compiled::build(&cfg, "bench.toml").expect("generated config builds")
}

fn request(host: &str, target: &str) -> RequestHead {
    let raw = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n"
    );
    let mut buf = BytesMut::from(raw.as_bytes());
    let mut head = RequestHead::default();
    let done = parse_request(&mut buf, &Limits::default(), &mut head);
    assert!(matches!(done, Ok(true)), "bench request parses: {done:?}");
    head
}

/// The last exact-host route of the table and a request that hits it.
fn deep_hit(n: usize) -> (RequestHead, String) {
    let i = (0..n - 1)
        .rev()
        .find(|i| i % 4 == 0)
        .expect("an exact-host route");
    let h = i % (n / 40).max(1);
    let head = request(
        &format!("svc{h}.example.com"),
        &format!("/api/v{i}/users/42/orders?limit=20"),
    );
    (head, format!("routes[{i}]"))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for n in [10, 1000] {
        let cfg = table(n);
        let (hit, want) = deep_hit(n);
        let route = cfg.route(&hit).expect("deep request routes");
        assert_eq!(route.name, want, "deep request hits its route");
        let miss = request("www.example.org", "/p/none/index.html");
        let route = cfg.route(&miss).expect("miss request routes");
        assert_eq!(route.name, "catch-all", "miss request falls through");

        let id = format!("{n}_routes");
        g.bench_with_input(BenchmarkId::new(&id, "deep_hit"), &hit, |b, head| {
            b.iter(|| black_box(cfg.route(black_box(head)).is_some()))
        });
        g.bench_with_input(BenchmarkId::new(&id, "catch_all"), &miss, |b, head| {
            b.iter(|| black_box(cfg.route(black_box(head)).is_some()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
