//! Per-core rate limiting with GCRA (the generic cell rate algorithm) over a fixed-size,
//! set-associative table of 64-bit key hashes. Owns: parsing a `rate`/`burst` pair, the
//! table, the verdict. Invariant: the table's memory is allocated once in
//! [`Limiter::new`] and never grows, whatever keys arrive, so a client spraying keys cannot
//! grow it. Must not: read a clock (callers pass `now_ns`), allocate in [`Limiter::check`],
//! or do I/O.
//!
//! GCRA keeps one number per key, the theoretical arrival time (TAT). With emission interval
//! `T` (period / rate) and limit `L = T * burst`, a request at `now` computes
//! `new_tat = max(tat, now) + T` and passes iff `new_tat - now <= L`; a pass stores
//! `new_tat`, a denial stores nothing. From a fresh state exactly `burst` requests pass at
//! once, then one more every `T`.

use std::hash::{BuildHasher, Hasher};

use crate::config::Rate;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Entries per set. 8 × 16 bytes = 128 bytes: two cache lines per lookup.
const WAYS: usize = 8;

/// The outcome of one [`Limiter::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `remaining`: further requests that would pass right now; `reset_secs`: seconds, rounded
    /// up, until the key is back to its fresh state (the full burst available).
    Allow { remaining: u32, reset_secs: u64 },
    /// `retry_after_secs`: seconds, rounded up and at least 1, until the next request would
    /// pass; `reset_secs` as in `Allow`.
    Deny {
        retry_after_secs: u64,
        reset_secs: u64,
    },
}

/// One slot. `key == EMPTY` marks a never-used slot; its `tat` of 0 makes it look expired.
#[derive(Clone, Copy, Default)]
struct Entry {
    key: u64,
    tat: u64,
}

const EMPTY: u64 = 0;

#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Set([Entry; WAYS]);

/// Fixed-size table of GCRA states keyed by a 64-bit key hash, shared by every limit of a
/// worker (the limit id is part of the hash).
///
/// Eviction, when a key is new and its set is full: first an entry whose TAT is at or before
/// `now` (such a key is indistinguishable from a fresh one, so nothing is lost), else the
/// entry with the smallest TAT (the one closest to fresh). Under a key flood, a real client
/// can therefore lose its state only when all `WAYS` entries of its set hold keys that are
/// still limited; it then starts again from a fresh state (full burst).
pub struct Limiter {
    sets: Box<[Set]>,
    mask: usize,
}

impl Limiter {
    /// A table for about `capacity` keys, rounded up to a power-of-two number of sets of
    /// 8 entries (16 bytes each); at least one set. The only allocation the limiter makes.
    pub fn new(capacity: usize) -> Limiter {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        Limiter {
            sets: vec![Set::default(); sets].into_boxed_slice(),
            mask: sets - 1,
        }
    }

    /// Applies `rate` to `key` (a 64-bit hash of limit id and key bytes, e.g. from
    /// [`KeyHasher::hash`]) at `now_ns` (a monotonic clock). Never allocates.
    pub fn check(&mut self, key: u64, rate: &Rate, now_ns: u64) -> Verdict {
        let key = if key == EMPTY { 1 } else { key };
        let set = &mut self.sets[(key as usize) & self.mask].0;
        let slot = match set.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                let i = victim(set, now_ns);
                set[i] = Entry { key, tat: 0 };
                i
            }
        };
        let entry = &mut set[slot];
        let t = rate.interval_ns();
        let limit = rate.tolerance_ns();
        let new_tat = entry.tat.max(now_ns).saturating_add(t);
        let ahead = new_tat - now_ns;
        if ahead <= limit {
            entry.tat = new_tat;
            Verdict::Allow {
                remaining: u32::try_from((limit - ahead) / t).unwrap_or(u32::MAX),
                reset_secs: ceil_secs(ahead),
            }
        } else {
            // The next pass needs `new_tat - now' <= limit`, i.e. `ahead - limit` more ns.
            Verdict::Deny {
                retry_after_secs: ceil_secs(ahead - limit).max(1),
                reset_secs: ceil_secs(entry.tat.saturating_sub(now_ns)),
            }
        }
    }

    /// Number of entries (sets × 8), fixed at construction.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Entries that still hold state at `now_ns` (TAT after now). O(capacity): for tests and
    /// metrics, not the request path.
    pub fn live_entries(&self, now_ns: u64) -> usize {
        self.sets
            .iter()
            .flat_map(|s| s.0.iter())
            .filter(|e| e.key != EMPTY && e.tat > now_ns)
            .count()
    }
}

/// The way to overwrite in a full set: an expired (or empty) entry, else the smallest TAT.
fn victim(set: &[Entry; WAYS], now_ns: u64) -> usize {
    if let Some(i) = set.iter().position(|e| e.tat <= now_ns) {
        return i;
    }
    let mut min = 0;
    for (i, e) in set.iter().enumerate() {
        if e.tat < set[min].tat {
            min = i;
        }
    }
    min
}

fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_SEC)
}

/// Hashes (limit id, key bytes) with a seed drawn at random once per `KeyHasher`, so a
/// client cannot choose keys that collide in the table.
pub struct KeyHasher {
    state: ahash::RandomState,
}

impl KeyHasher {
    pub fn new() -> Self {
        KeyHasher {
            state: ahash::RandomState::new(),
        }
    }

    /// The table key for `key` under limit number `limit`. The limit id has a fixed width,
    /// so no (limit, key) pair can spell another.
    pub fn hash(&self, limit: u32, key: &[u8]) -> u64 {
        let mut h = self.state.build_hasher();
        h.write_u32(limit);
        h.write(key);
        h.finish()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
