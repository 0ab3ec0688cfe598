//! A fixed-size, set-associative cache of verified credentials, one per core.
//!
//! Invariant: it holds at most the capacity it was built with, whatever the traffic — a
//! flood of distinct tokens only evicts (least recently used within a set); it never grows.
//! Keys are stored in full and compared in constant time, so a hash collision can never hand
//! out another credential's identity. The set index comes from a randomly seeded hash, so a
//! client cannot aim its tokens at one set. A hit allocates nothing; a miss that inserts
//! reuses the evicted slot's key buffer.

use subtle::ConstantTimeEq;

/// Entries per set: small enough to scan, large enough that hot keys rarely collide.
const WAYS: usize = 4;

struct Slot<V> {
    key: Vec<u8>,
    /// `None` = empty.
    entry: Option<(V, u64)>,
    last_used: u64,
}

pub(super) struct BoundedCache<V> {
    slots: Vec<Slot<V>>,
    ways: usize,
    sets: usize,
    hasher: ahash::RandomState,
    tick: u64,
}

impl<V: Clone> BoundedCache<V> {
    /// `None` when `capacity` is 0 (caching disabled).
    pub(super) fn new(capacity: usize) -> Option<BoundedCache<V>> {
        if capacity == 0 {
            return None;
        }
        let ways = WAYS.min(capacity);
        let sets = capacity / ways;
        let slots = (0..sets * ways)
            .map(|_| Slot {
                key: Vec::new(),
                entry: None,
                last_used: 0,
            })
            .collect();
        Some(BoundedCache {
            slots,
            ways,
            sets,
            hasher: ahash::RandomState::new(),
            tick: 0,
        })
    }

    fn set_range(&self, key: &[u8]) -> std::ops::Range<usize> {
        // The modulo result is below `sets`, which is a usize.
        let set = (self.hasher.hash_one(key) % self.sets as u64) as usize;
        set * self.ways..(set + 1) * self.ways
    }

    /// The value stored under `key` if it is still valid at `now` (valid while
    /// `now <= valid_until`). An entry found stale is emptied.
    pub(super) fn get(&mut self, key: &[u8], now: u64) -> Option<V> {
        let range = self.set_range(key);
        self.tick += 1;
        let tick = self.tick;
        let slot = self.slots[range].iter_mut().find(|s| {
            s.entry.is_some() && s.key.len() == key.len() && bool::from(s.key.ct_eq(key))
        })?;
        match &slot.entry {
            Some((value, valid_until)) if now <= *valid_until => {
                slot.last_used = tick;
                Some(value.clone())
            }
            _ => {
                slot.entry = None;
                None
            }
        }
    }

    /// Stores `value` under `key` until `valid_until`, replacing the same key, an empty or
    /// stale slot, or else the least recently used entry of the set.
    pub(super) fn insert(&mut self, key: &[u8], value: V, valid_until: u64, now: u64) {
        let range = self.set_range(key);
        self.tick += 1;
        let tick = self.tick;
        let set = &mut self.slots[range];
        let pick = set
            .iter()
            .position(|s| s.entry.is_some() && s.key == key)
            .or_else(|| {
                set.iter().position(|s| match &s.entry {
                    None => true,
                    Some((_, until)) => *until < now,
                })
            })
            .or_else(|| (0..set.len()).min_by_key(|&i| set[i].last_used));
        let Some(i) = pick else { return };
        let slot = &mut set[i];
        slot.key.clear();
        slot.key.extend_from_slice(key);
        slot.entry = Some((value, valid_until));
        slot.last_used = tick;
    }

    /// Entries currently held (stale ones included until they are found or replaced).
    pub(super) fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.entry.is_some()).count()
    }

    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedCache;

    #[test]
    fn zero_capacity_is_no_cache() {
        assert!(BoundedCache::<u32>::new(0).is_none());
    }

    #[test]
    fn a_stored_value_is_found_until_it_goes_stale() {
        let mut c = BoundedCache::new(8).unwrap();
        c.insert(b"token", 7u32, 100, 10);
        assert_eq!(c.get(b"token", 100), Some(7));
        assert_eq!(c.get(b"token", 101), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_prefix_or_longer_key_is_a_miss() {
        let mut c = BoundedCache::new(8).unwrap();
        c.insert(b"token", 1u32, 100, 0);
        assert_eq!(c.get(b"toke", 0), None);
        assert_eq!(c.get(b"tokens", 0), None);
    }

    #[test]
    fn capacity_never_grows_under_ten_thousand_distinct_keys() {
        let mut c = BoundedCache::new(10).unwrap();
        for i in 0..10_000u32 {
            c.insert(format!("key-{i}").as_bytes(), i, u64::MAX, 0);
            assert!(c.len() <= 10);
        }
        assert!(c.capacity() <= 10);
    }

    #[test]
    fn reinserting_a_key_keeps_one_entry() {
        let mut c = BoundedCache::new(4).unwrap();
        c.insert(b"a", 1u32, 10, 0);
        c.insert(b"a", 2u32, 10, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(b"a", 0), Some(2));
    }
}
