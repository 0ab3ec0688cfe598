//! W3C Trace Context (`traceparent`): checking a client's value and making one when the
//! client sent none or an invalid one. Sans-IO and allocation-free: ids come from the
//! per-core request id and a per-core PRNG, never from a syscall per request.
//!
//! Only version `00` is accepted, exactly as the spec's grammar writes it:
//! `00-<32 lowercase hex, not all zero>-<16 lowercase hex, not all zero>-<2 lowercase hex>`.
//!
//! Where it sits: a leaf (it imports nothing of the crate).

/// The field name, lowercase.
pub const FIELD: &[u8] = b"traceparent";
/// Length of a version-00 value.
pub const LEN: usize = 55;

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `v` is a valid version-00 `traceparent` value.
pub fn is_valid(v: &[u8]) -> bool {
    if v.len() != LEN || &v[..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
        return false;
    }
    let (trace, span, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    is_lower_hex(trace)
        && is_lower_hex(span)
        && is_lower_hex(flags)
        && trace.iter().any(|&b| b != b'0')
        && span.iter().any(|&b| b != b'0')
}

/// The trace of one request: the client's valid `traceparent`, passed on as it is, or one
/// ringway made (sent upstream in place of whatever the client sent).
#[derive(Clone, Copy)]
pub struct Trace {
    value: [u8; LEN],
    /// ringway made `value`: the client's fields are replaced by it.
    pub generated: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            value: [b'0'; LEN],
            generated: false,
        }
    }
}

impl Trace {
    /// The client's value if `client` (the value of its only `traceparent` field) is valid,
    /// else a new trace: its id is `request_id` then `random` (so it is unique per worker
    /// and not guessable), its span id `span`, sampled.
    pub fn of(client: Option<&[u8]>, request_id: u64, random: u64, span: u64) -> Trace {
        if let Some(v) = client {
            if is_valid(v) {
                let mut value = [0u8; LEN];
                value.copy_from_slice(v);
                return Trace {
                    value,
                    generated: false,
                };
            }
        }
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-01";
        put_hex16(&mut value[3..19], request_id);
        // Zero ids are invalid: an all-zero trace id or span id (1 in 2^64) gets a 1.
        let random = if request_id == 0 {
            random.max(1)
        } else {
            random
        };
        put_hex16(&mut value[19..35], random);
        put_hex16(&mut value[36..52], span.max(1));
        Trace {
            value,
            generated: true,
        }
    }

    /// The `traceparent` value to send upstream.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &[u8] {
        &self.value[3..35]
    }
}

fn put_hex16(out: &mut [u8], n: u64) {
    out[..16].copy_from_slice(&hex16(n));
}

/// `n` as 16 lowercase hex digits.
pub fn hex16(n: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (pair, byte) in out.chunks_exact_mut(2).zip(n.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    out
}

/// Every byte's two lowercase hex digits: one lookup a byte instead of a shift and a mask
/// a digit.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// A small per-core PRNG (splitmix64): cheap, no syscall, good enough for span ids.
#[derive(Debug)]
pub struct Rng(std::cell::Cell<u64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(std::cell::Cell::new(seed))
    }

    pub fn next(&self) -> u64 {
        let s = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_is_valid_and_broken_variants_are_not() {
        assert!(is_valid(GOOD));
        let bad: [&[u8]; 8] = [
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"garbage",
        ];
        for b in bad {
            assert!(!is_valid(b), "{}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn a_valid_client_value_is_kept_and_anything_else_is_replaced() {
        let kept = Trace::of(Some(GOOD), 1, 2, 3);
        assert!(!kept.generated);
        assert_eq!(kept.value(), GOOD);
        let made = Trace::of(Some(&GOOD[1..]), 0xabc, 0xdef, 0);
        assert!(made.generated);
        assert!(is_valid(made.value()));
        assert_eq!(made.trace_id(), b"0000000000000abc0000000000000def");
        let zeros = Trace::of(None, 0, 0, 0);
        assert!(is_valid(zeros.value()), "never an all-zero id");
    }
}
