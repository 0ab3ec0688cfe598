//! Seeds and mutations. A run has one seed (`RINGWAY_MUTATION_SEED`); every case gets its
//! own seed derived from it and the case number, and draws everything it does from that
//! seed alone, so one case can be replayed on its own (`RINGWAY_MUTATION_CASE_SEED`) and
//! behaves exactly as it did inside the run.

/// The run seed when `RINGWAY_MUTATION_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x5EED_1234_ABCD_0001;

/// Cases per test when `RINGWAY_MUTATION_CASES` is not set.
pub const DEFAULT_CASES: u64 = 100_000;

/// SplitMix64's finaliser: spreads consecutive inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: tiny, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift must never hold 0.
        Rng(mix(seed) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
    /// True with probability 1/n.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// `0x`-prefixed hex or decimal.
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(parse_u64(&v).unwrap_or_else(|| panic!("{name}={v:?} is not a number")))
}

/// What one test runs: `cases` cases from `seed`, or the one case `replay`.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub seed: u64,
    cases: u64,
    pub replay: Option<u64>,
}

impl Run {
    pub fn from_env() -> Run {
        Run {
            seed: env_u64("RINGWAY_MUTATION_SEED").unwrap_or(DEFAULT_SEED),
            cases: env_u64("RINGWAY_MUTATION_CASES").unwrap_or(DEFAULT_CASES),
            replay: env_u64("RINGWAY_MUTATION_CASE_SEED"),
        }
    }

    pub fn cases(&self) -> u64 {
        if self.replay.is_some() {
            1
        } else {
            self.cases
        }
    }

    /// The seed of case `i`: a function of the run seed and `i` only.
    pub fn case_seed(&self, i: u64) -> u64 {
        self.replay.unwrap_or_else(|| mix(self.seed ^ mix(i)))
    }

    /// Names case `i` in a failure: both seeds and the command that replays it alone.
    pub fn describe(&self, test: &str, i: u64) -> String {
        let seed = self.case_seed(i);
        format!(
            "case {i} of run seed {:#018x}, case seed {seed:#018x}\n\
             replay: RINGWAY_MUTATION_CASE_SEED={seed:#018x} cargo test --test mutation {test} -- --nocapture",
            self.seed
        )
    }
}

/// Byte strings that often matter to a parser, spliced in by `mutate`.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b":",
    b"chunked",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffffff",
    b"%2F",
    b"/../",
    b"\t",
    b"HTTP/1.1",
    b"Host: b\r\n",
    b";",
    b"\xff",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
];

/// One to four random edits: flip a bit, delete or insert a byte, splice in a token,
/// truncate, or duplicate a short piece somewhere else.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input.remove(i);
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 => {
                let i = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                let i = rng.below(len);
                input.truncate(i);
            }
            5 if len > 2 => {
                let a = rng.below(len);
                let b = (a + rng.below(32)).min(len);
                let piece = input[a..b].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, piece);
            }
            _ => {}
        }
    }
}
