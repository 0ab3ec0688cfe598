//! Byte helpers both sides of the wire share: finding a needle (a head's end) and decoding a
//! complete chunked body. Pure functions over slices; no I/O.

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
