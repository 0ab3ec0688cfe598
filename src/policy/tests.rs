//! Decisions of `Policy::check` on parsed requests (no I/O). The end-to-end suite
//! (`tests/policy.rs`) drives the same decisions through real sockets.

use std::net::IpAddr;

use bytes::BytesMut;

use super::{Denial, Policy};
use crate::http::{parse_request, Limits, RequestHead};

fn policy(extra: &str) -> Policy {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         [[upstreams]]\nname = \"u\"\nservers = [\"127.0.0.1:1\"]\n{extra}"
    );
    let cfg = crate::config::from_str(&text, "test.toml").unwrap();
    let mut errors = Vec::new();
    let p = Policy::build(&cfg, std::path::Path::new("."), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    p
}

fn head(raw: &str) -> RequestHead {
    let mut buf = BytesMut::from(raw.as_bytes());
    let mut h = RequestHead::default();
    assert!(parse_request(&mut buf, &Limits::default(), &mut h).unwrap());
    h
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn decide(p: &Policy, raw: &str, peer: &str) -> Result<(), Denial> {
    let mut st = p.new_state();
    p.check(&mut st, &head(raw), Some(0), ip(peer), None, 0, 0)
        .map(|_| ())
}

const ROUTE: &str = "[[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\n";

#[test]
fn client_ip_walks_back_past_trusted_proxies_only() {
    let p = policy(ROUTE);
    let h = head(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 1.2.3.4\r\n\
         X-Forwarded-For: 10.0.0.9\r\n\r\n",
    );
    // Untrusted peer: its own address, whatever the field says.
    assert_eq!(p.client_ip(&h, ip("8.8.8.8")), ip("8.8.8.8"));
    // Trusted peer: the rightmost untrusted element (10.0.0.9 is another trusted hop).
    assert_eq!(p.client_ip(&h, ip("10.1.1.1")), ip("1.2.3.4"));
    let junk = head("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4, junk\r\n\r\n");
    assert_eq!(p.client_ip(&junk, ip("10.1.1.1")), ip("10.1.1.1"));
    let v6 = head("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: [2001:db8::7]:443\r\n\r\n");
    assert_eq!(p.client_ip(&v6, ip("10.1.1.1")), ip("2001:db8::7"));

    let f = policy(&format!(
        "[policy]\nclient_ip_from = \"forwarded\"\n{ROUTE}"
    ));
    let h = head(
        "GET / HTTP/1.1\r\nHost: a\r\n\
         Forwarded: for=192.0.2.60;proto=http, for=\"[2001:db8::1]:80\"\r\n\r\n",
    );
    assert_eq!(f.client_ip(&h, ip("10.1.1.1")), ip("2001:db8::1"));
    let hidden = head("GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=_hidden\r\n\r\n");
    assert_eq!(f.client_ip(&hidden, ip("10.1.1.1")), ip("10.1.1.1"));
}

#[test]
fn ip_method_path_header_and_query_rules_decide() {
    let p = policy(&format!(
        "{ROUTE}[routes.rules]\nip_deny = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n\
         methods = [\"GET\", \"POST\"]\n\
         deny_paths = [{{ prefix = \"/internal\" }}, {{ glob = \"/**/*.php\" }}, {{ exact = \"/.env\" }}]\n\
         headers = [{{ name = \"User-Agent\", deny = [\"*sqlmap*\"] }}, {{ name = \"X-Tenant\", required = true }}]\n\
         query = [{{ name = \"debug\", forbidden = true }}, {{ name = \"id\", allow = [\"[0-9]*\", \"n?\"] }}]\n"
    ));
    let ok = "GET /a?id=n1 HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\n\r\n";
    assert_eq!(decide(&p, ok, "1.1.1.1"), Ok(()));
    assert_eq!(decide(&p, ok, "192.0.2.5"), Err(Denial::Status(403)));
    assert_eq!(decide(&p, ok, "2001:db8::5"), Err(Denial::Status(403)));
    assert_eq!(
        decide(
            &p,
            "PUT / HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\n\r\n",
            "1.1.1.1"
        ),
        Err(Denial::MethodNotAllowed("GET, POST".into()))
    );
    for path in ["/INTERNAL/x", "/internal", "/a/b.PHP", "/.env"] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\n\r\n");
        assert_eq!(
            decide(&p, &raw, "1.1.1.1"),
            Err(Denial::Status(403)),
            "{path}"
        );
    }
    for raw in [
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\nUser-Agent: SQLMap/1.0\r\n\r\n",
        "GET /?debug HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\n\r\n",
        "GET /?d%65bug=1 HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\n\r\n",
        "GET /?id=abc HTTP/1.1\r\nHost: a\r\nX-Tenant: t\r\n\r\n",
    ] {
        assert_eq!(
            decide(&p, raw, "1.1.1.1"),
            Err(Denial::Status(403)),
            "{raw}"
        );
    }
}

#[test]
fn route_body_limit_refuses_a_declared_length_above_it() {
    let p = policy(&format!("{ROUTE}[routes.rules]\nmax_body_bytes = 10\n"));
    let small = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
    let big = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(decide(&p, small, "1.1.1.1"), Ok(()));
    assert_eq!(decide(&p, big, "1.1.1.1"), Err(Denial::Status(413)));
}

#[test]
fn rate_limits_count_per_key_and_refill() {
    let p = policy(&format!(
        "{ROUTE}[[routes.rules.rate_limits]]\nkey = \"ip\"\nrate = \"2/s\"\nburst = 2\n"
    ));
    let mut st = p.new_state();
    let h = head("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let run = |st: &mut super::PolicyState, peer: &str, t: u64| {
        p.check(st, &h, Some(0), ip(peer), None, t, 0).map(|_| ())
    };
    assert_eq!(run(&mut st, "1.1.1.1", 0), Ok(()));
    assert_eq!(run(&mut st, "1.1.1.1", 0), Ok(()));
    assert!(matches!(
        run(&mut st, "1.1.1.1", 0),
        Err(Denial::RateLimited {
            limit: 2,
            retry_after: 1,
            ..
        })
    ));
    assert_eq!(run(&mut st, "2.2.2.2", 0), Ok(()));
    // Half a second later one more request is allowed (2/s).
    assert_eq!(run(&mut st, "1.1.1.1", 500_000_000), Ok(()));
    assert!(run(&mut st, "1.1.1.1", 500_000_000).is_err());
}
