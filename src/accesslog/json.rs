//! The few JSON pieces an access log line needs, written straight into a byte buffer: a
//! string escaper that is correct for any bytes (quotes, backslashes, control characters,
//! and invalid UTF-8, which becomes U+FFFD), integers and millisecond floats.

pub use crate::http::canned::put_u64;

/// `s` as a JSON string, quotes included.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        put_escaped(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

/// Valid UTF-8, escaped: `"`, `\` and every control character (U+0000..U+001F, U+007F).
fn put_escaped(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        start = i + 1;
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&s[start..]);
}

/// A duration in milliseconds with microsecond precision (`12.345`).
pub fn put_ms(out: &mut Vec<u8>, d: std::time::Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    put_u64(out, micros / 1000);
    out.push(b'.');
    let frac = micros % 1000;
    out.push(b'0' + (frac / 100) as u8);
    out.push(b'0' + (frac / 10 % 10) as u8);
    out.push(b'0' + (frac % 10) as u8);
}

/// `"key":` (the key is a literal the caller knows needs no escaping).
pub fn put_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut out = Vec::new();
        put_str(&mut out, s);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn every_byte_string_escapes_to_json_that_parses_back() {
        let cases: [&[u8]; 7] = [
            b"plain",
            b"q\"uo\\te",
            b"\x00\x01\x1f\x7f\n\r\t",
            "h\u{e9}llo \u{1f600}".as_bytes(),
            b"bad \xff\xfe utf8 \xc3",
            b"",
            b"</script>\x08\x0c",
        ];
        for s in cases {
            let json = esc(s);
            let back: String = serde_json::from_str(&json).expect(&json);
            assert_eq!(back, String::from_utf8_lossy(s), "{json}");
        }
    }

    #[test]
    fn numbers_are_written_like_their_display_forms() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            put_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let mut out = Vec::new();
        put_ms(&mut out, std::time::Duration::from_micros(12_045));
        assert_eq!(out, b"12.045");
    }
}
