//! HTTP/1.1 byte helpers the origin and the client share: finding a needle (a head's end),
//! splitting header lines, looking a header up, decoding a complete chunked body. Lenient on
//! purpose (tests must see malformed bytes, not trip on them); pure functions, no I/O.

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body: (bytes used, payload). None if incomplete.
pub fn decode_chunked(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = find(&buf[pos..], b"\r\n")? + pos;
        let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let e = find(&buf[pos..], b"\r\n")? + pos;
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Some((pos, body));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// The `name: value` lines of a head (the start line already taken), values trimmed; lines
/// without a colon are left out.
pub(crate) fn header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect()
}

/// The first value of header `name` (any case).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
