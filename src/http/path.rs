//! Request-target normalisation: the one path that routing, access rules and forwarding all
//! use (DESIGN.md §3). origin-form and absolute-form are accepted; asterisk-form and
//! authority-form are rejected here (CONNECT / OPTIONS * are not supported yet).

use super::ParseError;

/// What `normalize` found besides the path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetParts {
    /// Offsets of the query (including '?') within the target, if any.
    pub query: Option<(usize, usize)>,
    /// Offsets of the authority within the target for absolute-form (`http://host:port/p`).
    pub authority: Option<(usize, usize)>,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 sub-delims.
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// A reg-name byte (RFC 3986 §3.2.2): unreserved, sub-delims, or part of a pct-encoding.
pub fn is_reg_name_byte(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || b == b'%'
}

/// RFC 3986 characters allowed in a request target (fragment excluded by the caller).
fn is_target_byte(b: u8) -> bool {
    is_reg_name_byte(b) || matches!(b, b':' | b'/' | b'?' | b'[' | b']' | b'@')
}

/// The value of one hex digit (either case).
pub fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `seg` to `out`, decoding escapes of unreserved characters and uppercasing the rest.
fn decode_segment(seg: &[u8], out: &mut Vec<u8>) -> Result<(), ParseError> {
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == b'%' {
            let hi = seg.get(i + 1).copied().and_then(hex_val);
            let lo = seg.get(i + 2).copied().and_then(hex_val);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(ParseError::Bad("bad percent-escape in path"));
            };
            let v = hi << 4 | lo;
            if is_unreserved(v) {
                out.push(v);
            } else {
                out.extend_from_slice(&[b'%', HEX_UPPER[hi as usize], HEX_UPPER[lo as usize]]);
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(())
}

/// Normalises `target` into `out` (cleared first):
/// - target bytes must be RFC 3986 characters (unreserved / reserved / '%' HEXDIG HEXDIG);
///   anything else, a fragment ('#'), or a bad percent-escape is `ParseError::Bad`;
/// - absolute-form `http://authority/path?q` (scheme case-insensitive, http or https) is
///   reduced to its path; the authority offsets are returned for the caller to check against
///   Host; an empty path becomes "/";
/// - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded; every other
///   escape is kept with its hex digits uppercased, so `%2F` never becomes a '/';
/// - runs of '/' are merged into one;
/// - dot-segments ("." and "..", also when they came from `%2E`) are removed per RFC 3986
///   §5.2.4; ".." above the root stays at the root;
/// - the query is not part of `out`; it is returned as offsets, untouched.
pub fn normalize(target: &[u8], out: &mut Vec<u8>) -> Result<TargetParts, ParseError> {
    out.clear();
    for &b in target {
        if b == b'#' {
            return Err(ParseError::Bad("fragment in request target"));
        }
        if !is_target_byte(b) {
            return Err(ParseError::Bad("invalid byte in request target"));
        }
    }
    let mut parts = TargetParts::default();
    let path_start = match target.first() {
        Some(b'/') => 0,
        Some(_) => {
            let rest = strip_scheme(target).ok_or(ParseError::Bad("unsupported request target"))?;
            let auth_start = target.len() - rest.len();
            let auth_len = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            let authority = &rest[..auth_len];
            if authority.is_empty() || authority.contains(&b'@') {
                return Err(ParseError::Bad("invalid authority in absolute-form"));
            }
            parts.authority = Some((auth_start, auth_start + auth_len));
            auth_start + auth_len
        }
        None => return Err(ParseError::Bad("empty request target")),
    };
    let q = target[path_start..]
        .iter()
        .position(|&b| b == b'?')
        .map(|p| p + path_start);
    if let Some(q) = q {
        parts.query = Some((q, target.len()));
    }
    let path = &target[path_start..q.unwrap_or(target.len())];
    let mut trailing = false;
    // A path from absolute-form may be empty ("http://h?x"): it means "/".
    let segments = path.strip_prefix(b"/").unwrap_or(path);
    if !path.is_empty() {
        for raw in segments.split(|&b| b == b'/') {
            let mark = out.len();
            out.push(b'/');
            decode_segment(raw, out)?;
            let seg = &out[mark + 1..];
            if seg.is_empty() || seg == b"." {
                out.truncate(mark);
                trailing = true;
            } else if seg == b".." {
                out.truncate(mark);
                let parent = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(parent);
                trailing = true;
            } else {
                trailing = false;
            }
        }
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(parts)
}

/// The target after `http://` or `https://` (case-insensitive), if it starts with either.
fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], &b"https://"[..]] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(t: &str) -> Result<String, ParseError> {
        let mut out = Vec::new();
        normalize(t.as_bytes(), &mut out).map(|_| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn dot_segments_slashes_and_escapes_are_normalised() {
        let cases = [
            ("/", "/"),
            ("/a/../b", "/b"),
            ("/a/%2e%2E/b", "/b"),
            ("//a///b", "/a/b"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/%7euser", "/~user"),
            ("/%41", "/A"),
            ("/../../x", "/x"),
            ("/a/b/", "/a/b/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/./b", "/a/b"),
            ("/public/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a?x=../y", "/a"),
            ("/a%20b", "/a%20b"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn absolute_form_is_reduced_to_its_path() {
        let mut out = Vec::new();
        let t = b"http://Host:80/p/../q?x=1";
        let parts = normalize(t, &mut out).expect("valid");
        assert_eq!(out, b"/q");
        let (a, b) = parts.authority.expect("authority");
        assert_eq!(&t[a..b], b"Host:80");
        let (qa, qb) = parts.query.expect("query");
        assert_eq!(&t[qa..qb], b"?x=1");
        assert_eq!(norm("HTTPS://h").as_deref(), Ok("/"));
        assert_eq!(norm("http://h?x").as_deref(), Ok("/"));
    }

    #[test]
    fn invalid_targets_are_rejected() {
        for t in [
            "/a#b",
            "/a b",
            "/%zz",
            "/%",
            "/%4",
            "*",
            "example.com:443",
            "",
            "http://",
            "http://u@h/",
            "/a\"b",
            "/a<b",
            "/a\\b",
            "ftp://h/x",
        ] {
            assert!(norm(t).is_err(), "{t:?} should be rejected");
        }
        let mut out = Vec::new();
        assert!(normalize(b"/\x80", &mut out).is_err());
        assert!(normalize(b"/a\x00", &mut out).is_err());
    }
}
