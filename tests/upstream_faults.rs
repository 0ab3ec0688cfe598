//! Faulty upstreams: the bundled origin (`ringway-origin`) answers one request with a fault
//! mode (`X-Fault`) behind ringway. For every mode: the client gets a correct answer (502 or
//! 504 while nothing was relayed, an aborted connection once the head was), within a bound;
//! ringway gives up every broken upstream connection (the origin sees none left open); and
//! the next request is served on a connection the origin accepted after the fault. Also:
//! a trickle within the timeout arrives whole, stray bytes left on a pooled connection never
//! reach the next request, a request with a body is never replayed, and random faults fail
//! no more requests than they hit.

use ringway_test_support::*;
use std::time::{Duration, Instant};

/// `timeouts.upstream_response` of these tests.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Every faulty request is over (answered or aborted) within this.
const BOUND: Duration = Duration::from_secs(4);
const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// How the client saw one request sent with `Connection: close`.
#[derive(Debug)]
enum Seen {
    /// A complete response, and nothing after it.
    Answer { status: u16, body: Vec<u8> },
    /// The connection ended inside a response: the head's status (None: no whole head)
    /// and the body bytes that came.
    Aborted { status: Option<u16>, body: Vec<u8> },
}

/// What a mode must give the client.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exactly this answer of ringway's own.
    Status(u16),
    /// This status if the break came before anything was relayed (the proxy may read the
    /// origin's parts together), else an aborted 200 carrying only the origin's bytes.
    StatusOrAbort(u16),
}

/// Classifies everything received on a connection up to its end.
fn seen(raw: &[u8]) -> Seen {
    let Some(end) = find(raw, b"\r\n\r\n").map(|p| p + 4) else {
        return Seen::Aborted {
            status: None,
            body: Vec::new(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let rest = &raw[end..];
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let complete = if field("transfer-encoding:").as_deref() == Some("chunked") {
        decode_chunked(rest)
    } else {
        let cl: usize = field("content-length:")
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length or chunked response");
        (rest.len() >= cl).then(|| (cl, rest[..cl].to_vec()))
    };
    match complete {
        Some((used, body)) => {
            assert_eq!(&rest[used..], b"", "nothing may follow the response");
            Seen::Answer { status, body }
        }
        None => Seen::Aborted {
            status: Some(status),
            body: match decode_partial_chunked(rest, &head) {
                Some(b) => b,
                None => rest.to_vec(),
            },
        },
    }
}

/// The payload of a chunked body cut short (its complete chunks), if it is chunked.
fn decode_partial_chunked(rest: &[u8], head: &str) -> Option<Vec<u8>> {
    if !head.contains("transfer-encoding: chunked") {
        return None;
    }
    let mut body = Vec::new();
    let mut pos = 0;
    while let Some(line_end) = find(&rest[pos..], b"\r\n").map(|p| p + pos) {
        let size = std::str::from_utf8(&rest[pos..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())?;
        let start = line_end + 2;
        if size == 0 || rest.len() < start + size + 2 {
            break;
        }
        body.extend_from_slice(&rest[start..start + size]);
        pos = start + size + 2;
    }
    Some(body)
}

/// True if `body` is a prefix of the origin's `a..z` body pattern.
fn is_pattern(body: &[u8]) -> bool {
    body.iter()
        .enumerate()
        .all(|(i, &b)| b == PATTERN[i % PATTERN.len()])
}

/// A gateway in front of a fresh bundled origin, with this response timeout.
fn setup(d: Driver, response_timeout: Duration) -> (BundledOrigin, Gateway) {
    let origin = BundledOrigin::start();
    let timeout = format!(
        "[timeouts]\nupstream_response = \"{}ms\"",
        response_timeout.as_millis()
    );
    let cfg = Config::proxy_all(origin.addr).section(&timeout);
    let gw = Gateway::start(&cfg.render(), d);
    (origin, gw)
}

/// Sends `GET path` with `X-Fault: fault` on a new client connection (which closes after
/// it) and returns what came back and how long it took.
fn faulty_get(gw: &Gateway, fault: &str, path: &str) -> (Seen, Duration) {
    let started = Instant::now();
    let mut c = Reader::new(connect(gw.addr()));
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Fault: {fault}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let raw = c.read_to_close();
    (seen(&raw), started.elapsed())
}

/// The whole check for one fault mode (see the module docs). The fault goes out on the
/// pooled connection of a first, healthy request, so a broken pooled connection is what
/// ringway must give up.
fn fault_is_contained(d: Driver, fault: &str, body: usize, expect: Expect) -> Duration {
    let (origin, gw) = setup(d, RESPONSE_TIMEOUT);
    let warm = get(gw.addr(), "/small");
    assert_eq!(warm.status, 200);
    let (seen, took) = faulty_get(&gw, fault, &format!("/bytes/{body}"));
    assert!(took < BOUND, "{fault}: took {took:?}");
    match (&seen, expect) {
        (Seen::Answer { status, body }, Expect::Status(s) | Expect::StatusOrAbort(s)) => {
            assert_eq!(*status, s, "{fault}: {seen:?}");
            assert_eq!(
                String::from_utf8_lossy(body),
                format!(
                    "{s} {}\n",
                    if s == 502 {
                        "Bad Gateway"
                    } else {
                        "Gateway Timeout"
                    }
                ),
                "{fault}: ringway's own page, nothing of the origin's"
            );
        }
        (Seen::Aborted { status, body }, Expect::StatusOrAbort(_)) => {
            assert_eq!(*status, Some(200), "{fault}: {seen:?}");
            assert!(
                is_pattern(body),
                "{fault}: only the origin's bytes: {seen:?}"
            );
        }
        _ => panic!("{fault}: expected {expect:?}, got {seen:?}"),
    }
    assert!(
        origin.wait_open(0),
        "{fault}: ringway must close every broken upstream connection ({:?})",
        origin.stats()
    );
    next_request_goes_on_a_fresh_connection(&origin, &gw, fault);
    took
}

/// A healthy request through `gw` now succeeds, on an origin connection accepted after
/// everything that came before (`fault` names the case in messages).
fn next_request_goes_on_a_fresh_connection(origin: &BundledOrigin, gw: &Gateway, fault: &str) {
    let accepted = origin.stat("connections");
    let next = get(gw.addr(), "/small");
    assert_eq!(
        next.status,
        200,
        "{fault}: the next request succeeds: {}",
        next.body_text()
    );
    assert_eq!(next.body, PATTERN.repeat(4)[..100].to_vec());
    let id: u64 = next
        .header("x-conn-id")
        .and_then(|v| v.parse().ok())
        .expect("X-Conn-Id");
    assert!(
        id > accepted,
        "{fault}: the next request went out on connection {id}, accepted before the fault ({accepted})"
    );
}

both_drivers! {
    fn an_upstream_closing_before_its_head_is_502(d) {
        fault_is_contained(d, "close-before-head", 100, Expect::Status(502));
    }

    fn an_upstream_closing_mid_head_is_502(d) {
        fault_is_contained(d, "close-mid-head", 100, Expect::Status(502));
    }

    fn an_upstream_closing_mid_body_aborts_the_client(d) {
        fault_is_contained(d, "close-mid-body", 40_000, Expect::StatusOrAbort(502));
    }

    fn an_upstream_reset_before_its_head_is_502(d) {
        fault_is_contained(d, "reset", 100, Expect::Status(502));
    }

    fn an_upstream_reset_mid_body_aborts_the_client(d) {
        fault_is_contained(d, "reset-mid-body", 40_000, Expect::StatusOrAbort(502));
    }

    fn garbage_instead_of_a_response_is_502(d) {
        fault_is_contained(d, "garbage", 100, Expect::Status(502));
    }

    fn a_huge_response_head_is_502(d) {
        fault_is_contained(d, "huge-head", 100, Expect::Status(502));
    }

    fn a_content_length_beyond_the_body_is_504_after_upstream_response(d) {
        let took = fault_is_contained(d, "length-too-long", 100, Expect::StatusOrAbort(504));
        assert!(took >= RESPONSE_TIMEOUT - Duration::from_millis(100), "{took:?}");
    }

    fn bytes_beyond_the_content_length_are_502(d) {
        fault_is_contained(d, "length-too-short", 100, Expect::Status(502));
    }

    fn conflicting_content_lengths_are_502(d) {
        fault_is_contained(d, "conflicting-length", 100, Expect::Status(502));
    }

    fn bad_chunking_after_a_relayed_chunk_aborts_the_client(d) {
        fault_is_contained(d, "bad-chunking", 100, Expect::StatusOrAbort(502));
    }

    fn a_1xx_storm_is_502(d) {
        fault_is_contained(d, "1xx-storm", 100, Expect::Status(502));
    }

    fn a_silent_upstream_is_504_after_upstream_response(d) {
        let took = fault_is_contained(d, "never-answer", 100, Expect::Status(504));
        assert!(took >= RESPONSE_TIMEOUT - Duration::from_millis(100), "{took:?}");
    }

    fn a_trickled_head_past_upstream_response_is_504(d) {
        // About 200 head bytes at one per 20 ms: the head deadline is total, not per read.
        let took = fault_is_contained(d, "trickle:20", 100, Expect::Status(504));
        assert!(took >= RESPONSE_TIMEOUT - Duration::from_millis(100), "{took:?}");
    }

    fn a_trickle_within_upstream_response_arrives_whole(d) {
        // About 250 bytes, one every 2 ms: well within the response timeout.
        let timeout = Duration::from_secs(5);
        let (origin, gw) = setup(d, timeout);
        let (seen, took) = faulty_get(&gw, "trickle:2", "/bytes/60");
        assert!(took >= Duration::from_millis(400) && took < timeout, "{took:?}");
        let Seen::Answer { status: 200, body } = seen else {
            panic!("a complete 200, got {seen:?}");
        };
        assert_eq!(body.len(), 60);
        assert!(is_pattern(&body), "{}", String::from_utf8_lossy(&body));
        assert_eq!(origin.stat("trickle"), 1, "the origin trickled it");
    }

    fn stray_bytes_after_a_complete_response_never_reach_the_next_request(d) {
        let (origin, gw) = setup(d, RESPONSE_TIMEOUT);
        let (seen, _) = faulty_get(&gw, "stray-after-body", "/bytes/100");
        let Seen::Answer { status: 200, body } = seen else {
            panic!("a complete 200, got {seen:?}");
        };
        assert!(body.len() == 100 && is_pattern(&body));
        // The stray bytes reach the pooled connection after its response was complete.
        eventually("the origin to finish the fault").until(|| origin.stat("faults_done") >= 1);
        next_request_goes_on_a_fresh_connection(&origin, &gw, "stray-after-body");
        assert!(origin.wait_open(1), "only the fresh connection is left: {:?}", origin.stats());
    }

    fn a_request_with_a_body_is_never_replayed_after_a_fault(d) {
        let (origin, gw) = setup(d, RESPONSE_TIMEOUT);
        assert_eq!(get(gw.addr(), "/small").status, 200);
        // The origin reads the body, then closes before answering: on this reused
        // connection a GET would be replayed on a fresh one, a POST never is.
        let before = origin.stat("requests");
        let r = roundtrip(
            gw.addr(),
            b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Fault: close-before-head\r\nContent-Length: 5\r\n\r\nhello",
        )
        .expect("a response");
        assert_eq!(r.status, 502);
        // The POST once, and the stats request itself.
        assert_eq!(origin.stat("requests") - before, 2, "the POST went upstream once");
        assert!(origin.wait_open(0), "{:?}", origin.stats());
        next_request_goes_on_a_fresh_connection(&origin, &gw, "close-before-head (POST)");
    }

    fn random_faults_fail_no_more_requests_than_they_hit(d) {
        // Every quick mode (none that waits for a timeout), on a fifth of the requests.
        let modes = "close-before-head,close-mid-head,close-mid-body,reset,reset-mid-body,garbage,\
                     huge-head,length-too-short,stray-after-body,conflicting-length,bad-chunking,1xx-storm";
        let origin = BundledOrigin::start_with(&["--fault-rate", "0.2", "--fault-modes", modes, "--fault-seed", "7"]);
        let gw = Gateway::start(&Config::proxy_all(origin.addr).render(), d);
        let (mut ok, mut failed) = (0u64, 0u64);
        let mut c = Reader::new(connect(gw.addr()));
        for _ in 0..150 {
            c.send(b"GET /bytes/2000 HTTP/1.1\r\nHost: a\r\n\r\n");
            match c.response() {
                Some(r) if r.status == 200 => {
                    assert!(r.body.len() == 2000 && is_pattern(&r.body), "a healthy body, whole");
                    ok += 1;
                }
                Some(r) => {
                    assert_eq!(r.status, 502, "{}", r.body_text());
                    failed += 1;
                }
                None => {
                    // Aborted mid-response: this client connection is over.
                    failed += 1;
                    c = Reader::new(connect(gw.addr()));
                }
            }
        }
        let faults = origin.stat("faults");
        assert!(faults > 0 && failed <= faults, "{failed} failed, {faults} faults injected");
        assert_eq!(ok + failed, 150);
        // No broken connection is left behind: after one more request only its (pooled)
        // connection stays open.
        let r = roundtrip(gw.addr(), b"GET /small HTTP/1.1\r\nHost: a\r\nX-Fault: none\r\n\r\n");
        assert_eq!(r.expect("a response").status, 200);
        assert!(origin.wait_open(1), "{:?}", origin.stats());
    }
}
