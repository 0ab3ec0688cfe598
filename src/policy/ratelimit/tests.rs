use super::*;

const SEC: u64 = NS_PER_SEC;
/// An arbitrary non-zero start, so no test relies on the clock starting at 0.
const T0: u64 = 1_000 * SEC;

fn rate(r: &str, burst: Option<u32>) -> Rate {
    Rate::parse(r, burst).unwrap()
}

fn allow(remaining: u32, reset_secs: u64) -> Verdict {
    Verdict::Allow {
        remaining,
        reset_secs,
    }
}

fn passes(l: &mut Limiter, key: u64, r: &Rate, now: u64) -> bool {
    matches!(l.check(key, r, now), Verdict::Allow { .. })
}

/// splitmix64: a deterministic stream of well-spread keys.
fn keys(seed: u64) -> impl Iterator<Item = u64> {
    let mut s = seed;
    std::iter::from_fn(move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some(z ^ (z >> 31))
    })
}

// ------------------------------------------------------------------ parse

#[test]
fn parse_reads_the_three_units() {
    assert_eq!(rate("100/s", None).interval_ns(), SEC / 100);
    assert_eq!(rate("600/m", None).interval_ns(), SEC / 10);
    assert_eq!(rate("10000/h", None).interval_ns(), 360_000_000);
}

#[test]
fn default_burst_is_the_per_second_rate_rounded_up_at_least_one() {
    assert_eq!(rate("100/s", None).limit(), 100);
    assert_eq!(rate("600/m", None).limit(), 10);
    assert_eq!(rate("601/m", None).limit(), 11);
    assert_eq!(rate("10000/h", None).limit(), 3);
    assert_eq!(rate("1/h", None).limit(), 1);
    assert_eq!(rate("5/s", Some(20)).limit(), 20);
}

#[test]
fn parse_rejects_bad_rates_and_a_zero_burst() {
    for bad in [
        "0/s",
        "10/x",
        "abc",
        "",
        "/s",
        "10/",
        "10",
        "-1/s",
        "+1/s",
        " 1/s",
        "1/s ",
        "1.5/s",
        "1/sec",
        "99999999999/s",
        "2000000000/s",
    ] {
        assert!(Rate::parse(bad, None).is_err(), "{bad:?} was accepted");
    }
    assert!(Rate::parse("10/s", Some(0)).is_err());
}

// ------------------------------------------------------------------ GCRA

#[test]
fn exactly_burst_requests_pass_at_once_then_denied() {
    let r = rate("10/s", Some(5));
    let mut l = Limiter::new(64);
    for i in 0..5u32 {
        assert_eq!(l.check(7, &r, T0), allow(4 - i, 1));
    }
    assert!(!passes(&mut l, 7, &r, T0));
    assert!(!passes(&mut l, 7, &r, T0));
}

#[test]
fn refills_one_request_per_interval() {
    let r = rate("10/s", Some(3));
    let t = r.interval_ns();
    let mut l = Limiter::new(64);
    for _ in 0..3 {
        assert!(passes(&mut l, 1, &r, T0));
    }
    assert!(!passes(&mut l, 1, &r, T0 + t - 1));
    for k in 1..=50 {
        let now = T0 + k * t;
        assert!(passes(&mut l, 1, &r, now), "step {k}");
        assert!(!passes(&mut l, 1, &r, now), "step {k} twice");
    }
    // Idle for a burst's worth of intervals: the full burst is back, no more.
    let idle = T0 + 50 * t + 3 * t;
    for _ in 0..3 {
        assert!(passes(&mut l, 1, &r, idle));
    }
    assert!(!passes(&mut l, 1, &r, idle));
}

#[test]
fn retry_after_is_exact_and_at_least_one_second() {
    let r = rate("1/m", Some(1));
    let mut l = Limiter::new(64);
    assert!(passes(&mut l, 9, &r, T0));
    let deny = |secs, reset| Verdict::Deny {
        retry_after_secs: secs,
        reset_secs: reset,
    };
    assert_eq!(l.check(9, &r, T0), deny(60, 60));
    assert_eq!(l.check(9, &r, T0 + SEC / 2), deny(60, 60));
    assert_eq!(l.check(9, &r, T0 + 59 * SEC), deny(1, 1));
    assert_eq!(l.check(9, &r, T0 + 60 * SEC - 1), deny(1, 1));
    assert!(passes(&mut l, 9, &r, T0 + 60 * SEC));

    // Sub-second waits still say 1.
    let fast = rate("100/s", Some(1));
    assert!(passes(&mut l, 10, &fast, T0));
    assert_eq!(l.check(10, &fast, T0), deny(1, 1));
}

#[test]
fn allow_reports_remaining_and_reset() {
    let r = rate("1/s", Some(10));
    let mut l = Limiter::new(64);
    assert_eq!(l.check(3, &r, T0), allow(9, 1));
    assert_eq!(l.check(3, &r, T0), allow(8, 2));
}

#[test]
fn distinct_keys_are_independent() {
    let r = rate("1/s", Some(2));
    let mut l = Limiter::new(64);
    assert!(passes(&mut l, 100, &r, T0));
    assert!(passes(&mut l, 100, &r, T0));
    assert!(!passes(&mut l, 100, &r, T0));
    assert!(passes(&mut l, 200, &r, T0));
    assert!(passes(&mut l, 200, &r, T0));
    assert!(!passes(&mut l, 200, &r, T0));
}

#[test]
fn key_zero_is_a_key_like_any_other() {
    let r = rate("1/s", Some(1));
    let mut l = Limiter::new(64);
    assert!(passes(&mut l, 0, &r, T0));
    assert!(!passes(&mut l, 0, &r, T0));
    assert_eq!(l.live_entries(T0), 1);
}

#[test]
fn a_huge_burst_at_a_slow_rate_saturates_instead_of_overflowing() {
    let r = rate("1/h", Some(u32::MAX));
    let mut l = Limiter::new(8);
    assert!(matches!(
        l.check(1, &r, u64::MAX - 5),
        Verdict::Allow { .. }
    ));
}

// ------------------------------------------------------------------ fixed memory

#[test]
fn capacity_rounds_to_a_power_of_two_number_of_sets() {
    assert_eq!(Limiter::new(0).capacity(), 8);
    assert_eq!(Limiter::new(65_536).capacity(), 65_536);
    assert_eq!(Limiter::new(65_537).capacity(), 131_072);
    assert_eq!(Limiter::new(100).capacity(), 128);
}

#[test]
fn a_million_distinct_keys_never_grow_the_table() {
    let r = rate("10/s", None);
    let mut l = Limiter::new(65_536);
    let (len, ptr) = (l.sets.len(), l.sets.as_ptr());
    for (i, k) in keys(1).take(1_000_000).enumerate() {
        l.check(k, &r, T0 + i as u64);
    }
    assert_eq!(l.capacity(), 65_536);
    assert_eq!((l.sets.len(), l.sets.as_ptr()), (len, ptr));
    assert!(l.live_entries(T0 + 1_000_000) <= 65_536);
}

/// A key limited at 1/m, then `count` fresh keys at 100/s arriving `step_ns` apart into a
/// 65,536-entry table. Returns the table and whether the limited key is still denied.
fn flood_around_a_limited_key(count: usize, step_ns: u64, seed: u64) -> (Limiter, bool) {
    let slow = rate("1/m", Some(1));
    let flood = rate("100/s", None);
    let mut l = Limiter::new(65_536);
    let limited = 0xDEAD_BEEF_u64;
    assert!(passes(&mut l, limited, &slow, T0));
    for (i, k) in keys(seed).take(count).enumerate() {
        l.check(k, &flood, T0 + i as u64 * step_ns);
    }
    let kept = !passes(&mut l, limited, &slow, T0 + SEC);
    (l, kept)
}

#[test]
fn a_limited_key_keeps_its_state_under_a_moderate_flood() {
    // 20,000 keys (about 2.4 per set) within 1 ms: no set fills up with live keys.
    let (_, kept) = flood_around_a_limited_key(20_000, 50, 42);
    assert!(kept);
}

#[test]
fn a_heavy_flood_of_fresh_keys_does_not_evict_a_key_limited_further_ahead() {
    // 200,000 keys (about 24 per set) within 2 ms: every set overflows with live keys, but
    // a fresh flood key's TAT (now + 10 ms) is below the limited key's (T0 + 60 s).
    let (l, kept) = flood_around_a_limited_key(200_000, 10, 7);
    assert_eq!(l.live_entries(T0 + 2_000_000), 65_536);
    assert!(kept);
}

/// Keys that all land in the set of `base`.
fn same_set(l: &Limiter, base: u64, n: u64) -> Vec<u64> {
    let sets = (l.mask + 1) as u64;
    (1..=n).map(|i| base + i * sets).collect()
}

#[test]
fn expired_entries_are_evicted_before_a_live_one() {
    let slow = rate("1/m", Some(1));
    let fast = rate("1000/s", Some(1));
    let mut l = Limiter::new(64);
    let limited = 5;
    assert!(passes(&mut l, limited, &slow, T0));
    // Fill the rest of the set, let those entries expire, then push many more new keys in.
    for k in same_set(&l, limited, 7) {
        assert!(passes(&mut l, k, &fast, T0));
    }
    for (i, k) in same_set(&l, limited + 7 * 64, 100).into_iter().enumerate() {
        // One new key per interval: each evicts an expired entry, never the limited key.
        assert!(passes(&mut l, k, &fast, T0 + (i as u64 + 1) * SEC / 1000));
    }
    assert!(!passes(&mut l, limited, &slow, T0 + SEC));
}

#[test]
fn a_set_full_of_live_keys_evicts_the_smallest_tat() {
    let r = rate("1/s", Some(100));
    let mut l = Limiter::new(8);
    let ks = same_set(&l, 0, 9);
    // Key ks[i] gets i + 1 requests, so ks[0] has the smallest TAT.
    for (i, &k) in ks.iter().take(8).enumerate() {
        for _ in 0..=i {
            assert!(passes(&mut l, k, &r, T0));
        }
    }
    assert!(passes(&mut l, ks[8], &r, T0));
    assert_eq!(l.live_entries(T0), 8);
    // ks[0] was evicted and starts fresh; ks[2] kept its 3 used requests.
    assert_eq!(l.check(ks[0], &r, T0), allow(99, 1));
    assert_eq!(l.check(ks[2], &r, T0), allow(96, 4));
}

// ------------------------------------------------------------------ hashing

#[test]
fn key_hasher_separates_limits_and_is_stable() {
    let h = KeyHasher::new();
    assert_eq!(h.hash(1, b"10.0.0.1"), h.hash(1, b"10.0.0.1"));
    assert_ne!(h.hash(1, b"10.0.0.1"), h.hash(2, b"10.0.0.1"));
    assert_ne!(h.hash(1, b"10.0.0.1"), h.hash(1, b"10.0.0.2"));
}
