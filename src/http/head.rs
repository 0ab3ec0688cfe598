//! Shared pieces of parsed heads: byte spans into the frozen head buffer, versions, the
//! line scanner that enforces CRLF-only line endings, field checks, and hop-by-hop rules.

use super::ParseError;
pub use crate::grammar::{is_field_value, is_hop_by_hop, is_tchar, is_token};

/// A half-open byte range `start..end` into a head buffer. `u32` keeps headers small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    /// The bytes of this span, or empty if it does not fit `buf` (never panics).
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// One header field as spans into the head buffer. Values are trimmed of OWS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderIdx {
    pub name: Span,
    pub value: Span,
}

/// The HTTP version a message came with. HTTP/1.1 parsing gives only the first two;
/// `Http2` marks a request an HTTP/2 front end built (`request_from_parts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

impl Version {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
            Version::Http2 => b"HTTP/2",
        }
    }
}

/// Iterates the elements of a comma-separated list value, OWS-trimmed, empties skipped.
pub fn list_items(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// True when `list` (a comma-separated field value like Connection's) contains `token`,
/// case-insensitively, ignoring OWS around elements.
pub fn list_contains_token(list: &[u8], token: &[u8]) -> bool {
    list_items(list).any(|e| e.eq_ignore_ascii_case(token))
}

pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Finds the end of a head (index just past the empty line) at the front of `buf`,
/// enforcing CRLF-only line endings. Ok(None) = incomplete so far.
pub fn find_head_end(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        match buf[i] {
            b'\r' => match buf.get(i + 1) {
                None => return Ok(None),
                Some(b'\n') => {
                    if i == line_start && line_start > 0 {
                        return Ok(Some(i + 2));
                    }
                    i += 2;
                    line_start = i;
                }
                Some(_) => return Err(ParseError::Bad("bare CR in head")),
            },
            b'\n' => return Err(ParseError::Bad("bare LF in head")),
            _ => i += 1,
        }
    }
    Ok(None)
}

/// Number of leading CRLF pairs (empty lines before a request line, RFC 9112 §2.2).
pub fn leading_crlf(buf: &[u8]) -> usize {
    let mut n = 0;
    while buf.get(n) == Some(&b'\r') && buf.get(n + 1) == Some(&b'\n') {
        n += 2;
    }
    n
}

/// Offset of `part` (a sub-slice of `base`) within `base`.
pub fn offset_in(base: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize)
}

/// Converts httparse's headers into spans, checking names and values strictly.
pub fn collect_headers(
    base: &[u8],
    parsed: &[httparse::Header<'_>],
    out: &mut Vec<HeaderIdx>,
) -> Result<(), ParseError> {
    out.clear();
    for h in parsed {
        let name = h.name.as_bytes();
        if !is_token(name) {
            return Err(ParseError::Bad("invalid field name"));
        }
        let value = trim_ows(h.value);
        if !is_field_value(value) {
            return Err(ParseError::Bad("invalid byte in field value"));
        }
        let ns = offset_in(base, name);
        let vs = offset_in(base, value);
        out.push(HeaderIdx {
            name: Span::new(ns, ns + name.len()),
            value: Span::new(vs, vs + value.len()),
        });
    }
    Ok(())
}

/// Maps an httparse error to ours.
pub fn map_httparse(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version => ParseError::Bad("unsupported HTTP version"),
        httparse::Error::HeaderName => ParseError::Bad("invalid field name"),
        httparse::Error::HeaderValue => ParseError::Bad("invalid field value"),
        httparse::Error::NewLine => ParseError::Bad("bad line ending"),
        httparse::Error::Status => ParseError::Bad("invalid status"),
        httparse::Error::Token => ParseError::Bad("invalid token"),
    }
}

/// What the framing fields of a head say, checked strictly.
#[derive(Debug, Default)]
pub struct FramingFields {
    pub content_length: Option<u64>,
    /// Transfer-Encoding is present.
    pub has_te: bool,
    /// Transfer-Encoding is exactly one final `chunked`.
    pub chunked: bool,
    pub connection_close: bool,
    pub connection_keep_alive: bool,
    /// Connection lists `upgrade`.
    pub connection_upgrade: bool,
}

/// Parses 1*DIGIT into u64, rejecting anything else and overflow.
pub fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    if v.is_empty() {
        return Err(ParseError::Bad("empty Content-Length"));
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(ParseError::Bad("Content-Length is not 1*DIGIT"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::Bad("Content-Length overflows"))?;
    }
    Ok(n)
}

/// Reads Content-Length, Transfer-Encoding and Connection from `headers`.
/// TE rules: every coding a token; `chunked` at most once and last; another coding before
/// it is one we do not implement (UnsupportedCoding); no `chunked` at all is ambiguous.
pub fn framing_fields(buf: &[u8], headers: &[HeaderIdx]) -> Result<FramingFields, ParseError> {
    let mut f = FramingFields::default();
    let (mut codings, mut chunked_count, mut last_chunked) = (0usize, 0usize, false);
    for h in headers {
        let name = h.name.get(buf);
        let value = h.value.get(buf);
        if name.eq_ignore_ascii_case(b"content-length") {
            if f.content_length.is_some() {
                return Err(ParseError::Bad("more than one Content-Length"));
            }
            f.content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.has_te = true;
            for item in list_items(value) {
                // A coding may carry parameters (`gzip;q=1` is not valid here, but
                // `chunked` never has any): anything that is not a token is malformed.
                if !is_token(item) {
                    return Err(ParseError::Bad("invalid transfer coding"));
                }
                codings += 1;
                last_chunked = item.eq_ignore_ascii_case(b"chunked");
                chunked_count += usize::from(last_chunked);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for item in list_items(value) {
                if !is_token(item) {
                    return Err(ParseError::Bad("invalid Connection option"));
                }
                if item.eq_ignore_ascii_case(b"close") {
                    f.connection_close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    f.connection_keep_alive = true;
                } else if item.eq_ignore_ascii_case(b"upgrade") {
                    f.connection_upgrade = true;
                }
            }
        }
    }
    if f.has_te {
        if codings == 0 {
            return Err(ParseError::Bad("empty Transfer-Encoding"));
        }
        if chunked_count > 1 {
            return Err(ParseError::Bad("chunked applied more than once"));
        }
        if !last_chunked {
            return Err(ParseError::Bad("chunked is not the final transfer coding"));
        }
        if codings > 1 {
            return Err(ParseError::UnsupportedCoding);
        }
        f.chunked = true;
    }
    Ok(f)
}

/// The first protocol of an `Upgrade` value (`websocket`, `websocket/13`), if any.
pub fn first_protocol(upgrade: &[u8]) -> Option<&[u8]> {
    list_items(upgrade).next()
}

/// True when two `Upgrade` protocols name the same protocol: their names (before any
/// `/version`) are equal, case-insensitively.
pub fn same_protocol(a: &[u8], b: &[u8]) -> bool {
    let name = |p: &'_ [u8]| -> usize { p.iter().position(|&c| c == b'/').unwrap_or(p.len()) };
    a[..name(a)].eq_ignore_ascii_case(&b[..name(b)])
}

/// Case-insensitive lookup of the first value of `name`.
pub fn find_header<'a>(buf: &'a [u8], headers: &[HeaderIdx], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.get(buf))
}

/// True for a field that must never travel as a trailer (RFC 9110 §6.5.1): framing
/// (`Transfer-Encoding`, `Content-Length`, `Trailer`), routing (`Host`), connection
/// management (the hop-by-hop fields), content processing (`Content-Encoding`,
/// `Content-Type`, `Content-Range`), and response control and authentication fields a
/// recipient would act on as if they were in the head.
pub fn is_forbidden_trailer(name: &[u8]) -> bool {
    const FORBIDDEN: [&[u8]; 17] = [
        b"transfer-encoding",
        b"content-length",
        b"trailer",
        b"host",
        b"content-encoding",
        b"content-type",
        b"content-range",
        b"cache-control",
        b"expires",
        b"location",
        b"retry-after",
        b"vary",
        b"set-cookie",
        b"www-authenticate",
        b"proxy-authenticate",
        b"authorization",
        b"age",
    ];
    is_hop_by_hop(name) || FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f))
}

/// True if `name` is hop-by-hop or listed in any Connection field of the head.
pub fn is_hop_by_hop_in(buf: &[u8], headers: &[HeaderIdx], name: &[u8]) -> bool {
    is_hop_by_hop(name) || any_list_contains(buf, headers, b"connection", name)
}

/// True if any `field` of the head lists `token` (comma-separated, case-insensitive).
pub fn any_list_contains(buf: &[u8], headers: &[HeaderIdx], field: &[u8], token: &[u8]) -> bool {
    headers.iter().any(|h| {
        h.name.get(buf).eq_ignore_ascii_case(field) && list_contains_token(h.value.get(buf), token)
    })
}
