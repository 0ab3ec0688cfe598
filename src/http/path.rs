//! Request-target normalisation: the one path that routing, access rules and forwarding all
//! use (DESIGN.md §3). origin-form and absolute-form are accepted; asterisk-form and
//! authority-form are rejected here (`OPTIONS *` is let in before this when configured;
//! CONNECT is refused before this).

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

/// What an escaped slash (`%2F`, or `%5C`, a backslash) in a path means
/// (`policy.escaped_slashes`; its default is the config's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Kept as an escape: part of a segment, never a separator. A path that would hold a
    /// `.` or `..` segment once they were decoded is refused (400): a backend that decodes
    /// them would resolve it (`/x/..%2Fadmin` is `/admin` to it).
    Keep,
    /// The request is refused (400).
    Reject,
    /// Decoded to '/' before the path is normalised, so routing and rules see the path a
    /// backend that decodes them would see.
    Decode,
}

impl EscapedSlashes {
    /// The mode a validated `policy.escaped_slashes` value names.
    pub fn from_config(value: &str) -> EscapedSlashes {
        match value {
            "reject" => EscapedSlashes::Reject,
            "decode" => EscapedSlashes::Decode,
            _ => EscapedSlashes::Keep,
        }
    }
}

/// Appends `seg` to `out`, decoding escapes of unreserved characters and uppercasing the rest.
fn decode_segment(seg: &[u8], out: &mut Vec<u8>, mode: EscapedSlashes) -> Result<(), ParseError> {
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
            if mode == EscapedSlashes::Reject && (v == b'/' || v == b'\\') {
                return Err(ParseError::Bad("escaped slash in path"));
            }
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
    normalize_with(target, out, EscapedSlashes::Keep)
}

/// `normalize`, with escaped slashes treated as `mode` says.
pub fn normalize_with(
    target: &[u8],
    out: &mut Vec<u8>,
    mode: EscapedSlashes,
) -> Result<TargetParts, ParseError> {
    if mode == EscapedSlashes::Decode {
        let end = target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(target.len());
        if has_escaped_slash(&target[..end]) {
            // Rare: decode them in a copy, normalise that, and give the query's offsets
            // in the original target.
            let mut copy = Vec::with_capacity(target.len());
            let mut i = 0;
            while i < end {
                if is_escaped_slash(&target[i..end]) {
                    copy.push(b'/');
                    i += 3;
                } else {
                    copy.push(target[i]);
                    i += 1;
                }
            }
            if target[end..]
                .iter()
                .any(|&b| b == b'#' || !is_target_byte(b))
            {
                return Err(ParseError::Bad("invalid byte in request target"));
            }
            let mut parts = normalize_inner(&copy, out, EscapedSlashes::Keep)?;
            parts.query = (end < target.len()).then_some((end, target.len()));
            return Ok(parts);
        }
    }
    normalize_inner(target, out, mode)
}

fn is_escaped_slash(s: &[u8]) -> bool {
    matches!(
        s,
        [b'%', b'2', b'f' | b'F', ..] | [b'%', b'5', b'c' | b'C', ..]
    )
}

fn has_escaped_slash(s: &[u8]) -> bool {
    (0..s.len()).any(|i| is_escaped_slash(&s[i..]))
}

fn normalize_inner(
    target: &[u8],
    out: &mut Vec<u8>,
    mode: EscapedSlashes,
) -> Result<TargetParts, ParseError> {
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
            decode_segment(raw, out, mode)?;
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
    if mode == EscapedSlashes::Keep && dot_segment_behind_escape(out) {
        // `/x/..%2Fadmin` stays one segment here, but a backend that decodes `%2F` before
        // it resolves dot-segments (nginx as an origin, many application servers) serves
        // `/admin`: every prefix rule would be walked past.
        return Err(ParseError::Bad(
            "dot-segment behind an escaped slash in path",
        ));
    }
    Ok(parts)
}

/// True when the normalised `path` would hold a `.` or `..` segment once its escaped
/// slashes (`%2F`, `%5C`: uppercase after normalisation) were decoded. Costs one scan for
/// '%' on a path without escapes.
fn dot_segment_behind_escape(path: &[u8]) -> bool {
    if !path.contains(&b'%') {
        return false;
    }
    // Segments bounded by plain slashes alone lost their dot-segments already: any `.` or
    // `..` piece left touches an escaped slash.
    let (mut start, mut i) = (0, 0);
    while i <= path.len() {
        let sep = match path.get(i) {
            None | Some(b'/') => 1,
            Some(b'%') if matches!(path.get(i + 1..i + 3), Some(b"2F" | b"5C")) => 3,
            Some(_) => {
                i += 1;
                continue;
            }
        };
        if matches!(&path[start..i], b"." | b"..") {
            return true;
        }
        i += sep;
        start = i;
    }
    false
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

    #[test]
    fn escaped_slashes_keep_reject_or_decode() {
        let run = |t: &str, mode| {
            let mut out = Vec::new();
            normalize_with(t.as_bytes(), &mut out, mode)
                .map(|p| (String::from_utf8_lossy(&out).into_owned(), p.query))
        };
        use EscapedSlashes::*;
        assert_eq!(run("/a%2fb", Keep).map(|r| r.0).as_deref(), Ok("/a%2Fb"));
        assert!(run("/a%2Fb", Reject).is_err());
        assert!(run("/a%5cb", Reject).is_err());
        assert_eq!(
            run("/a/b?x=%2F", Reject).map(|r| r.0).as_deref(),
            Ok("/a/b")
        );
        let (path, q) = run("/admin%2F..%2Fx%2Fy?k=1", Decode).unwrap();
        assert_eq!(path, "/x/y");
        assert_eq!(q, Some((19, 23)));
        assert_eq!(run("/x%5C%5Cy", Decode).map(|r| r.0).as_deref(), Ok("/x/y"));
        assert!(run("/a%2Fb?x#y", Decode).is_err());
    }

    #[test]
    fn a_dot_segment_behind_an_escaped_slash_is_refused_unless_decoded() {
        use EscapedSlashes::*;
        let run = |t: &str, mode| {
            let mut out = Vec::new();
            normalize_with(t.as_bytes(), &mut out, mode)
                .map(|_| String::from_utf8_lossy(&out).into_owned())
        };
        for t in [
            "/x/..%2fadmin",
            "/x/..%2Fadmin",
            "/x%2f..",
            "/x%2F../y",
            "/.%2fadmin",
            "/%2e%2e%2fadmin",
            "/%2E%2e%2Fadmin",
            "/a/b/..%5cadmin",
            "/a/%2e%5Cb",
            "/a/b%2f.",
            "/a%2f%2e%2e",
            "http://h/x/..%2fadmin?q=1",
        ] {
            assert!(run(t, Keep).is_err(), "{t} (keep)");
            assert!(run(t, Reject).is_err(), "{t} (reject)");
        }
        assert_eq!(run("/x/..%2fadmin", Decode).as_deref(), Ok("/admin"));
        assert_eq!(run("/.%2fadmin", Decode).as_deref(), Ok("/admin"));
        assert_eq!(run("/a%2f%2e%2e", Decode).as_deref(), Ok("/"));
        // Dots that are no whole segment, and escaped slashes without dots, still pass.
        for (t, want) in [
            ("/a%2fb", "/a%2Fb"),
            ("/x/...%2fy", "/x/...%2Fy"),
            ("/x/.a%2F", "/x/.a%2F"),
            ("/x%2F%2Fy", "/x%2F%2Fy"),
            ("/v1.2%2fz", "/v1.2%2Fz"),
            ("/a/..b%2f", "/a/..b%2F"),
            ("/a%25%2e%2e", "/a%25.."),
        ] {
            assert_eq!(run(t, Keep).as_deref(), Ok(want), "{t}");
        }
    }
}
