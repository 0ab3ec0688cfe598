//! Load balancing end to end: each algorithm's distribution over recording origins that
//! answer with their own name, and consistent hashing's stability when a server goes away.

use ringway_test_support::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// An upstream "app" with `extra` fields and a catch-all route to it.
fn config(servers: &[String], extra: &str) -> String {
    let up = format!(
        "[[upstreams]]\nname = \"app\"\nservers = [{}]\n{extra}\n",
        servers.join(", ")
    );
    Config::new()
        .section(&up)
        .route("path_prefix = \"/\"\nupstream = \"app\"")
        .render()
}

fn quoted(origins: &[&Origin]) -> Vec<String> {
    origins
        .iter()
        .map(|o| format!("\"{}\"", o.addr()))
        .collect()
}

fn named(names: &[&'static str]) -> Vec<Origin> {
    names.iter().map(|n| Origin::ok(n)).collect()
}

/// Which origin (by its body) answered each of `n` requests built by `req`.
fn tally(gw: SocketAddr, n: usize, req: impl Fn(usize) -> String) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for i in 0..n {
        let r = roundtrip(gw, req(i).as_bytes()).expect("a response");
        assert_eq!(r.status, 200);
        *seen.entry(r.body_text()).or_insert(0) += 1;
    }
    seen
}

fn plain_get(_: usize) -> String {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_string()
}

fn with_header(i: usize) -> String {
    format!("GET / HTTP/1.1\r\nHost: a\r\nX-User: user-{i}\r\n\r\n")
}

both_drivers! {
    fn round_robin_is_even(d) {
        let o = named(&["a", "b", "c"]);
        let gw = Gateway::start(&config(&quoted(&[&o[0], &o[1], &o[2]]), ""), d);
        let seen = tally(gw.addr(), 30, plain_get);
        for n in ["a", "b", "c"] {
            assert_eq!(seen.get(n), Some(&10), "{seen:?}");
        }
    }

    fn weighted_round_robin_follows_the_weights(d) {
        let o = named(&["a", "b", "c"]);
        let servers = vec![
            format!("{{ address = \"{}\", weight = 3 }}", o[0].addr()),
            format!("\"{}\"", o[1].addr()),
            format!("{{ address = \"{}\", weight = 1 }}", o[2].addr()),
        ];
        let gw = Gateway::start(&config(&servers, "balance = \"weighted_round_robin\""), d);
        let seen = tally(gw.addr(), 50, plain_get);
        assert_eq!(seen.get("a"), Some(&30), "{seen:?}");
        assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
        assert_eq!(seen.get("c"), Some(&10), "{seen:?}");
    }

    fn least_requests_prefers_the_idle_server(d) {
        let slow = Origin::start(|_| Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("slow"))));
        let fast = Origin::ok("fast");
        let gw = Gateway::start(&config(&quoted(&[&slow, &fast]), "balance = \"least_requests\""), d);
        let addr = gw.addr();
        let clients: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || tally(addr, 6, plain_get)))
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for c in clients {
            for (k, v) in c.join().expect("client") {
                *seen.entry(k).or_insert(0) += v;
            }
        }
        let (s, f) = (seen.get("slow").copied().unwrap_or(0), seen.get("fast").copied().unwrap_or(0));
        assert_eq!(s + f, 24);
        // Round-robin would send 12 to each; the slow server is busy whenever it has one.
        assert!(s <= 6, "slow got {s}, fast {f}");
    }

    fn p2c_spreads_over_every_server(d) {
        let o = named(&["a", "b", "c"]);
        let gw = Gateway::start(&config(&quoted(&[&o[0], &o[1], &o[2]]), "balance = \"p2c\""), d);
        let seen = tally(gw.addr(), 90, plain_get);
        for n in ["a", "b", "c"] {
            assert!(seen.get(n).copied().unwrap_or(0) >= 15, "{seen:?}");
        }
    }

    fn hash_on_a_header_keeps_each_key_on_one_server(d) {
        let o = named(&["a", "b", "c"]);
        let extra = "balance = \"hash\"\nhash_on = \"header:X-User\"";
        let gw = Gateway::start(&config(&quoted(&[&o[0], &o[1], &o[2]]), extra), d);
        let mut owner: HashMap<usize, String> = HashMap::new();
        for round in 0..3 {
            for k in 0..30 {
                let r = roundtrip(gw.addr(), with_header(k).as_bytes()).expect("a response");
                let who = r.body_text();
                let first = owner.entry(k).or_insert_with(|| who.clone());
                assert_eq!(*first, who, "key {k} moved in round {round}");
            }
        }
        let used: std::collections::HashSet<_> = owner.values().collect();
        assert_eq!(used.len(), 3, "30 keys use every server: {owner:?}");
    }

    fn hash_on_a_cookie_and_on_the_client_ip_is_sticky(d) {
        let o = named(&["a", "b", "c"]);
        let servers = quoted(&[&o[0], &o[1], &o[2]]);
        let gw = Gateway::start(&config(&servers, "balance = \"hash\"\nhash_on = \"cookie:sid\""), d);
        let cookie = |i: usize| format!("GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; sid=s{}\r\n\r\n", i % 2);
        let seen = tally(gw.addr(), 10, cookie);
        assert!(seen.len() <= 2 && seen.values().all(|&n| n == 5 || n == 10), "{seen:?}");
        drop(gw);
        let gw = Gateway::start(&config(&servers, "balance = \"hash\""), d);
        let seen = tally(gw.addr(), 10, plain_get);
        assert_eq!(seen.len(), 1, "one client address, one server: {seen:?}");
    }

    fn removing_a_server_remaps_only_its_keys(d) {
        let o = named(&["a", "b", "c", "d"]);
        let all = quoted(&[&o[0], &o[1], &o[2], &o[3]]);
        let extra = "balance = \"hash\"\nhash_on = \"header:X-User\"";
        let map = |servers: &[String]| {
            let gw = Gateway::start(&config(servers, extra), d);
            (0..300)
                .map(|k| roundtrip(gw.addr(), with_header(k).as_bytes()).expect("a response").body_text())
                .collect::<Vec<_>>()
        };
        let before = map(&all);
        let after = map(&all[..3]);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == "d" {
                moved += 1;
            } else {
                assert_eq!(a, b, "a key on a remaining server must stay there");
            }
        }
        assert!(moved <= 100, "{moved} of 300 keys moved");
    }
}
