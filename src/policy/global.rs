//! The local side of global rate limits (`scope = "global"`): per worker, a bounded table
//! of leases, tokens taken from the fleet's shared budget in Redis and spent here without a
//! round trip. Owns: spending, deciding when to ask for more, giving back what was not
//! spent in time. Must not: do I/O. What to ask Redis for is queued in `fetches`; the
//! worker's Redis client (`store`) sends it, and its answer comes back through `granted`
//! or `failed`.
//!
//! Bounds, with `holders` = instances × workers spending a key:
//! - Over-admission: every request admitted spent a token Redis granted, and Redis grants
//!   at most `rate × T + burst` over any T from a fresh key; over a window that starts
//!   later, add the tokens already leased and unspent at its start (at most
//!   `holders × lease`).
//! - Under-admission: at any moment at most `holders × lease` tokens sit unspent in
//!   leases; a lease's unspent tokens are given back after `LEASE_TTL_NS` (checked once
//!   a second).

use std::collections::HashMap;
use std::rc::Rc;

/// Unspent lease tokens are given back once they are this old.
pub const LEASE_TTL_NS: u64 = 1_000_000_000;
/// A lease holds about this much time's worth of the rate.
const LEASE_WINDOW_US: u64 = 50_000;
/// A key at its limit: the next token is taken ahead (reserved) when it comes within this.
pub const RESERVE_US: u64 = 1_000_000;
/// After a failed command, a key is decided without Redis for this long (rather than
/// asking again at once).
const FAIL_HOLD_NS: u64 = 250_000_000;
/// A fetch without an answer for this long is forgotten (the client failed it already,
/// or the answer was lost with a config reload).
const FETCH_STALE_NS: u64 = 5_000_000_000;

/// A global limit's numbers as Redis computes with them (microseconds: Redis TIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub interval_us: u64,
    pub tolerance_us: u64,
    /// Tokens asked for at a time.
    pub lease: u32,
}

/// What Redis answered a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens valid now.
    pub got: i64,
    /// Microseconds until the next token (with `reserved`: until the reserved one is valid).
    pub wait_us: i64,
    /// One token taken ahead, valid after `wait_us`.
    pub reserved: bool,
}

impl Spec {
    /// From the limit's emission interval and burst.
    pub fn new(interval_ns: u64, burst: u32) -> Spec {
        let interval_us = (interval_ns / 1000).max(1);
        let by_rate = LEASE_WINDOW_US.div_ceil(interval_us);
        let cap = u64::from((burst / 4).max(1));
        Spec {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst)),
            lease: by_rate.clamp(1, cap) as u32,
        }
    }
}

/// One command for Redis: take `want` tokens (or give back `-want`) of the key `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The table entry the answer goes to (0: a give-back, whose answer is ignored).
    pub tag: u64,
    pub key: Rc<[u8]>,
    pub spec: Spec,
    pub want: i64,
}

/// What `spend` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    Spent,
    /// The fleet's budget is spent: no token for `wait_ns`.
    Denied {
        wait_ns: u64,
    },
    /// No token here yet: one is being asked for; wait for `granted`/`failed`.
    Wait,
    /// Decide without Redis (`on_store_error`): the table is full of live entries, or a
    /// command for this key just failed.
    Fallback,
}

struct Lease {
    key: Rc<[u8]>,
    spec: Spec,
    tokens: u32,
    denied_until: u64,
    fetching: bool,
    fetch_started: u64,
    granted_at: u64,
    used_at: u64,
    /// Until then, decide without Redis (a command for this key failed).
    failed_until: u64,
    /// A token taken ahead (a key at its limit): spendable from then on.
    reserved_from: Option<u64>,
}

/// A worker's leases, at most `cap` keys.
pub struct Leases {
    map: HashMap<u64, Lease, ahash::RandomState>,
    cap: usize,
    /// Commands to send, drained by the caller after each decision.
    pub fetches: Vec<Fetch>,
    /// Whether the worker's Redis connection is up (set by the caller before deciding).
    pub up: bool,
    /// Decisions taken without Redis (`on_store_error`), drained into the metrics.
    pub fallbacks: u64,
}

impl Leases {
    pub fn new(cap: usize) -> Leases {
        Leases {
            map: HashMap::default(),
            cap: cap.max(1),
            fetches: Vec::new(),
            up: false,
            fallbacks: 0,
        }
    }

    /// Spends a token of `tag` (a hash of the limit and key) at `now_ns`; `key` makes the
    /// Redis key when the entry is new.
    pub fn spend(
        &mut self,
        tag: u64,
        now_ns: u64,
        spec: Spec,
        key: impl FnOnce() -> Rc<[u8]>,
    ) -> Spend {
        let tag = tag.max(1);
        if !self.map.contains_key(&tag) && self.map.len() >= self.cap {
            return Spend::Fallback;
        }
        let e = self.map.entry(tag).or_insert_with(|| Lease {
            key: key(),
            spec,
            tokens: 0,
            denied_until: 0,
            fetching: false,
            fetch_started: 0,
            granted_at: 0,
            used_at: 0,
            failed_until: 0,
            reserved_from: None,
        });
        e.used_at = now_ns;
        if e.fetching && now_ns.saturating_sub(e.fetch_started) > FETCH_STALE_NS {
            e.fetching = false;
        }
        if e.tokens > 0 {
            e.tokens -= 1;
            if e.tokens <= spec.lease / 2
                && !e.fetching
                && e.denied_until <= now_ns
                && e.reserved_from.is_none()
            {
                fetch(&mut self.fetches, tag, e, now_ns);
            }
            return Spend::Spent;
        }
        if let Some(from) = e.reserved_from {
            if from > now_ns {
                return Spend::Denied {
                    wait_ns: from - now_ns,
                };
            }
            // The token taken ahead is due: spend it, and take the next one ahead.
            e.reserved_from = None;
            if !e.fetching {
                fetch(&mut self.fetches, tag, e, now_ns);
            }
            return Spend::Spent;
        }
        if e.denied_until > now_ns {
            return Spend::Denied {
                wait_ns: e.denied_until - now_ns,
            };
        }
        if e.failed_until > now_ns {
            return Spend::Fallback;
        }
        if !e.fetching {
            fetch(&mut self.fetches, tag, e, now_ns);
        }
        Spend::Wait
    }

    /// Redis answered a take for `tag` (a give-back's answer is not passed on).
    pub fn granted(&mut self, tag: u64, g: Grant, now_ns: u64) {
        let Some(e) = self.map.get_mut(&tag) else {
            return;
        };
        e.fetching = false;
        let got = u32::try_from(g.got.max(0)).unwrap_or(u32::MAX);
        let wait_ns = u64::try_from(g.wait_us).unwrap_or(0).saturating_mul(1000);
        if got > 0 {
            e.tokens = e.tokens.saturating_add(got);
            e.granted_at = now_ns;
        }
        if g.reserved && e.reserved_from.is_none() {
            e.reserved_from = Some(now_ns.saturating_add(wait_ns));
            e.granted_at = now_ns;
        } else if e.tokens == 0 && e.reserved_from.is_none() {
            e.denied_until = now_ns.saturating_add(wait_ns.max(1_000_000));
        }
    }

    /// The command for `tag` got no answer (or an error): for a short while the key is
    /// decided without Redis.
    pub fn failed(&mut self, tag: u64, now_ns: u64) {
        if let Some(e) = self.map.get_mut(&tag) {
            e.fetching = false;
            e.failed_until = now_ns.saturating_add(FAIL_HOLD_NS);
        }
    }

    /// Once a second: gives back tokens leased over `LEASE_TTL_NS` ago and not spent, and
    /// forgets keys that hold nothing and were not used for as long.
    pub fn sweep(&mut self, now_ns: u64) {
        let fetches = &mut self.fetches;
        let up = self.up;
        self.map.retain(|_, e| {
            let held = e.tokens + u32::from(e.reserved_from.is_some());
            if held > 0 && now_ns.saturating_sub(e.granted_at) >= LEASE_TTL_NS {
                if up {
                    fetches.push(Fetch {
                        tag: 0,
                        key: e.key.clone(),
                        spec: e.spec,
                        want: -i64::from(held),
                    });
                }
                e.tokens = 0;
                e.reserved_from = None;
            }
            e.tokens > 0
                || e.reserved_from.is_some()
                || e.fetching
                || e.denied_until > now_ns
                || now_ns.saturating_sub(e.used_at) < LEASE_TTL_NS
        });
    }

    /// Keys held (for tests).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn fetch(fetches: &mut Vec<Fetch>, tag: u64, e: &mut Lease, now_ns: u64) {
    e.fetching = true;
    e.fetch_started = now_ns;
    fetches.push(Fetch {
        tag,
        key: e.key.clone(),
        spec: e.spec,
        want: i64::from(e.spec.lease),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn grant(got: i64, wait_us: i64) -> Grant {
        Grant {
            got,
            wait_us,
            reserved: false,
        }
    }

    fn key() -> Rc<[u8]> {
        Rc::from(&b"ringway:api:1.2.3.4"[..])
    }

    #[test]
    fn lease_sizes_follow_the_rate_within_the_burst() {
        // 100/s: 50 ms is 5 tokens; the burst (100) allows 25.
        assert_eq!(Spec::new(10 * MS, 100).lease, 5);
        // 10000/s with a burst of 8: at most 2 a lease.
        assert_eq!(Spec::new(100_000, 8).lease, 2);
        // 1/s: one at a time.
        assert_eq!(Spec::new(1000 * MS, 1).lease, 1);
        let s = Spec::new(10 * MS, 100);
        assert_eq!((s.interval_us, s.tolerance_us), (10_000, 1_000_000));
    }

    #[test]
    fn a_new_key_waits_for_one_fetch_then_spends_locally_and_prefetches() {
        let spec = Spec::new(10 * MS, 100);
        let mut l = Leases::new(16);
        l.up = true;
        assert_eq!(l.spend(7, 0, spec, key), Spend::Wait);
        assert_eq!(l.spend(7, 1, spec, key), Spend::Wait);
        assert_eq!(l.fetches.len(), 1, "one fetch for any number of waiters");
        let f = l.fetches.pop().unwrap();
        assert_eq!((f.tag, f.want, &f.key[..]), (7, 5, &key()[..]));
        l.granted(7, grant(5, 0), 2);
        for _ in 0..2 {
            assert_eq!(l.spend(7, 3, spec, key), Spend::Spent);
        }
        assert!(l.fetches.is_empty());
        // Down to half a lease: the next one is asked for ahead of need.
        assert_eq!(l.spend(7, 4, spec, key), Spend::Spent);
        assert_eq!(l.fetches.len(), 1);
        assert_eq!(l.spend(7, 5, spec, key), Spend::Spent);
        assert_eq!(l.fetches.len(), 1, "no second fetch while one is out");
    }

    #[test]
    fn an_empty_budget_denies_locally_until_the_next_token() {
        let spec = Spec::new(10 * MS, 100);
        let mut l = Leases::new(16);
        l.up = true;
        assert_eq!(l.spend(9, 0, spec, key), Spend::Wait);
        l.fetches.clear();
        l.granted(9, grant(0, 8_000), 0);
        assert_eq!(l.spend(9, MS, spec, key), Spend::Denied { wait_ns: 7 * MS });
        assert!(l.fetches.is_empty(), "a denial costs no round trip");
        assert_eq!(l.spend(9, 8 * MS, spec, key), Spend::Wait);
        assert_eq!(l.fetches.len(), 1);
        l.failed(9, 9 * MS);
        assert_eq!(
            l.spend(9, 10 * MS, spec, key),
            Spend::Fallback,
            "decided without Redis"
        );
        assert_eq!(l.fetches.len(), 1);
        assert_eq!(l.spend(9, 9 * MS + FAIL_HOLD_NS, spec, key), Spend::Wait);
        assert_eq!(l.fetches.len(), 2, "then asked again");
    }

    #[test]
    fn at_the_limit_the_next_token_is_taken_ahead_and_spent_when_due() {
        let spec = Spec::new(10 * MS, 100);
        let mut l = Leases::new(16);
        l.up = true;
        assert_eq!(l.spend(4, 0, spec, key), Spend::Wait);
        l.fetches.clear();
        // None now; one reserved, valid in 6 ms.
        let ahead = Grant {
            got: 0,
            wait_us: 6_000,
            reserved: true,
        };
        l.granted(4, ahead, 0);
        assert_eq!(l.spend(4, MS, spec, key), Spend::Denied { wait_ns: 5 * MS });
        assert!(l.fetches.is_empty(), "no round trip while it is not due");
        assert_eq!(
            l.spend(4, 6 * MS, spec, key),
            Spend::Spent,
            "due: spent, no wait"
        );
        let next = l.fetches.pop().expect("the next one asked for at once");
        assert_eq!((next.tag, next.want), (4, 5));
        assert_eq!(l.spend(4, 6 * MS, spec, key), Spend::Wait);
        // Unspent reservations go back like unspent tokens.
        l.granted(4, ahead, 7 * MS);
        l.sweep(7 * MS + LEASE_TTL_NS);
        let back = l.fetches.pop().expect("given back");
        assert_eq!((back.tag, back.want), (0, -1));
    }

    #[test]
    fn unspent_tokens_go_back_and_idle_keys_go() {
        let spec = Spec::new(10 * MS, 100);
        let mut l = Leases::new(16);
        l.up = true;
        l.spend(3, 0, spec, key);
        l.fetches.clear();
        l.granted(3, grant(5, 0), 0);
        assert_eq!(l.spend(3, 1, spec, key), Spend::Spent);
        l.sweep(LEASE_TTL_NS / 2);
        assert!(l.fetches.is_empty());
        l.sweep(LEASE_TTL_NS);
        let back = l.fetches.pop().unwrap();
        assert_eq!((back.tag, back.want), (0, -4));
        assert_eq!(l.len(), 1, "used less than a TTL ago");
        l.sweep(3 * LEASE_TTL_NS);
        assert!(l.is_empty());
    }

    #[test]
    fn a_full_table_says_so_instead_of_growing() {
        let spec = Spec::new(10 * MS, 100);
        let mut l = Leases::new(2);
        l.up = true;
        assert_eq!(l.spend(1, 0, spec, key), Spend::Wait);
        assert_eq!(l.spend(2, 0, spec, key), Spend::Wait);
        assert_eq!(l.spend(3, 0, spec, key), Spend::Fallback);
        assert_eq!(l.len(), 2);
    }
}
