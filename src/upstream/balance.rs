//! Server choice, pure and per core: round-robin, smooth weighted round-robin (nginx's
//! algorithm), least outstanding requests, power of two random choices, and a consistent
//! hash ring. Every function picks among `candidates` (servers that are usable and not yet
//! tried for this request); none allocates, locks or does I/O.

/// Points per weight unit on the hash ring: enough that one server's share is within a few
/// percent of its weight, and removing one of N servers moves about 1/N of the keys.
pub const RING_POINTS_PER_WEIGHT: u32 = 100;

/// A stable 64-bit hash (FNV-1a, then the splitmix64 finaliser for avalanche): the ring and
/// keys must hash the same in every worker and across restarts, so no random seed.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate parts so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A consistent-hash ring: `RING_POINTS_PER_WEIGHT * weight` points per server, placed by
/// hashing the server's configured address, so a server's points do not depend on the
/// other servers and removing one only moves the keys that landed on its points.
#[derive(Debug, Default)]
pub struct Ring {
    /// (point, server index), sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub fn build(addresses: &[String], weights: &[u32]) -> Ring {
        let mut points = Vec::new();
        for (i, (a, w)) in addresses.iter().zip(weights).enumerate() {
            for v in 0..(w * RING_POINTS_PER_WEIGHT) {
                points.push((stable_hash(&[a.as_bytes(), &v.to_le_bytes()]), i as u32));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first server clockwise from `key` for which `ok` holds.
    pub fn lookup(&self, key: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        let start = self.points.partition_point(|(p, _)| *p < key);
        (0..n)
            .map(|k| self.points[(start + k) % n].1 as usize)
            .find(|&s| ok(s))
    }
}

/// Smooth weighted round-robin: each candidate's current weight grows by its weight, the
/// largest wins and gives back the candidates' total. For weights 5,1,1 it yields
/// a a b a c a a: evenly interleaved, never bursts.
pub fn smooth_wrr(
    current: &mut [i64],
    weights: &[u32],
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for i in 0..current.len() {
        if !ok(i) {
            continue;
        }
        let w = i64::from(weights.get(i).copied().unwrap_or(1));
        current[i] += w;
        total += w;
        if !matches!(best, Some(b) if current[b] >= current[i]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

/// True when server `a` is less loaded than `b`, comparing outstanding requests per weight
/// unit (with the request about to be sent counted).
pub fn less_loaded(outstanding: &[u32], weights: &[u32], a: usize, b: usize) -> bool {
    let la = u64::from(outstanding[a]) + 1;
    let lb = u64::from(outstanding[b]) + 1;
    la * u64::from(weights[b]) < lb * u64::from(weights[a])
}

/// Round-robin from `start`: the first candidate at or after it.
pub fn round_robin(n: usize, start: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
}

/// The least loaded candidate; ties go to the first one at or after `start`.
pub fn least(
    outstanding: &[u32],
    weights: &[u32],
    start: usize,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = outstanding.len();
    let mut best: Option<usize> = None;
    for i in (0..n).map(|k| (start + k) % n).filter(|&i| ok(i)) {
        if !matches!(best, Some(b) if !less_loaded(outstanding, weights, i, b)) {
            best = Some(i);
        }
    }
    best
}

/// Two random candidates, the less loaded wins. `r1`, `r2` are random numbers.
pub fn p2c(
    outstanding: &[u32],
    weights: &[u32],
    r1: u64,
    r2: u64,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let count = (0..outstanding.len()).filter(|&i| ok(i)).count();
    if count == 0 {
        return None;
    }
    let nth = |k: usize| (0..outstanding.len()).filter(|&i| ok(i)).nth(k);
    let a = (r1 % count as u64) as usize;
    if count == 1 {
        return nth(0);
    }
    // A second index distinct from the first.
    let b = (a + 1 + (r2 % (count as u64 - 1)) as usize) % count;
    let (a, b) = (nth(a)?, nth(b)?);
    Some(if less_loaded(outstanding, weights, b, a) {
        b
    } else {
        a
    })
}

/// xorshift64*: the per-core random source for p2c.
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_wrr_interleaves_5_1_1_like_nginx() {
        let mut cur = vec![0i64; 3];
        let w = [5, 1, 1];
        let seq: Vec<usize> = (0..7)
            .filter_map(|_| smooth_wrr(&mut cur, &w, |_| true))
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(cur, vec![0, 0, 0], "one full cycle returns to the start");
    }

    #[test]
    fn smooth_wrr_skips_excluded_servers() {
        let mut cur = vec![0i64; 3];
        let w = [3, 1, 1];
        let seq: Vec<usize> = (0..4)
            .filter_map(|_| smooth_wrr(&mut cur, &w, |i| i != 0))
            .collect();
        assert_eq!(seq, vec![1, 2, 1, 2]);
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn removing_one_of_four_servers_remaps_about_a_quarter_of_keys() {
        let four = Ring::build(&addrs(4), &[1; 4]);
        let three = Ring::build(&addrs(3), &[1; 3]);
        let keys = 10_000u64;
        let mut moved = 0;
        for k in 0..keys {
            let key = stable_hash(&[&k.to_le_bytes()]);
            let a = four.lookup(key, |_| true);
            let b = three.lookup(key, |_| true);
            if a != Some(3) {
                assert_eq!(a, b, "a key not on the removed server must stay");
            } else {
                moved += 1;
            }
        }
        // Ideal: 1/4 of the keys ("about 1/N", docs/operations.md); allowed: at most 1/3.
        assert!(
            moved < keys / 3 && moved > keys / 6,
            "{moved} of {keys} moved"
        );
    }

    #[test]
    fn ring_shares_follow_weights() {
        let ring = Ring::build(&addrs(3), &[3, 1, 1]);
        let mut hits = [0u32; 3];
        for k in 0..50_000u64 {
            if let Some(s) = ring.lookup(stable_hash(&[&k.to_le_bytes()]), |_| true) {
                hits[s] += 1;
            }
        }
        let share = f64::from(hits[0]) / 50_000.0;
        assert!((0.5..0.7).contains(&share), "{hits:?}");
    }

    #[test]
    fn ring_lookup_skips_unusable_servers() {
        let ring = Ring::build(&addrs(3), &[1; 3]);
        for k in 0..100u64 {
            let s = ring.lookup(stable_hash(&[&k.to_le_bytes()]), |i| i != 1);
            assert!(matches!(s, Some(0) | Some(2)));
        }
    }

    #[test]
    fn p2c_and_least_prefer_the_idle_server() {
        let out = [5, 0, 5];
        let w = [1, 1, 1];
        assert_eq!(least(&out, &w, 0, |_| true), Some(1));
        let mut seed = 7;
        let mut idle = 0;
        for _ in 0..300 {
            let (r1, r2) = (next_random(&mut seed), next_random(&mut seed));
            if p2c(&out, &w, r1, r2, |_| true) == Some(1) {
                idle += 1;
            }
        }
        // Server 1 wins whenever it is one of the two drawn: 2/3 of the time.
        assert!(idle > 150, "{idle}");
    }
}
