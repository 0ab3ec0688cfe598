//! An HTTP/2 request, as the `h2` codec decoded it, checked against RFC 9113 §8.1.1, §8.2
//! and §8.3 and turned into the protocol-neutral `RequestHead` (through
//! `http::request_from_parts`, which applies every HTTP/1.1 rule that means anything here:
//! target bytes, normalisation, escaped slashes, field syntax, limits). What cannot be
//! said in HTTP/1.1 without changing its meaning is refused before anything is forwarded:
//! connection-specific fields, values with CR, LF, NUL or surrounding whitespace, a
//! `:path` that is not origin-form, a Host that names another authority. Cookie crumbs are
//! joined with `; `; `:authority` becomes Host; `content-length` becomes the body's framing.

use bytes::Bytes;
use http::request::Parts;
use http::Method;

use crate::compiled::Compiled;
use crate::http::head::parse_content_length;
use crate::http::{request_from_parts, BodyFraming, ParseError, RequestHead};
use crate::pipeline::ClientFault;

fn bad(why: &'static str) -> ClientFault {
    ClientFault::Head(ParseError::Bad(why))
}

/// Fields that only mean something on one HTTP/1.1 connection (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Checks the request in `parts` (its body ends with the HEADERS frame when `end_stream`)
/// and fills `out`; the fault says why not.
pub fn translate(
    parts: &Parts,
    end_stream: bool,
    cfg: &Compiled,
    out: &mut RequestHead,
    scratch: &mut Vec<(Bytes, Bytes)>,
) -> Result<(), ClientFault> {
    if parts.method == Method::CONNECT {
        return Err(ClientFault::Head(ParseError::NotImplemented("CONNECT")));
    }
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    if path.is_empty() || !(path.starts_with('/') || path == "*") {
        return Err(bad(":path is not origin-form"));
    }
    let authority = parts.uri.authority().map(|a| a.as_str());
    let mut host: Option<&[u8]> = None;
    let mut content_length: Option<u64> = None;
    let mut cookie: Vec<u8> = Vec::new();
    scratch.clear();
    for (name, value) in &parts.headers {
        let n = name.as_str();
        let v = value.as_bytes();
        if v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
            || matches!(v.first(), Some(b' ' | b'\t'))
            || matches!(v.last(), Some(b' ' | b'\t'))
        {
            return Err(bad(
                "field value with CR, LF, NUL or surrounding whitespace",
            ));
        }
        if CONNECTION_SPECIFIC.contains(&n) {
            return Err(bad("connection-specific field in HTTP/2"));
        }
        match n {
            "te" if !v.eq_ignore_ascii_case(b"trailers") => {
                return Err(bad("TE other than trailers in HTTP/2"));
            }
            // Meaningful hop by hop only: dropped like HTTP/1.1's.
            "te" => {}
            "host" => {
                if host.is_some() {
                    return Err(bad("more than one Host"));
                }
                host = Some(v);
            }
            "content-length" => {
                if content_length.is_some() {
                    return Err(bad("more than one content-length"));
                }
                content_length = Some(parse_content_length(v).map_err(ClientFault::Head)?);
            }
            "cookie" => {
                if !cookie.is_empty() {
                    cookie.extend_from_slice(b"; ");
                }
                cookie.extend_from_slice(v);
            }
            _ => scratch.push((
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(v),
            )),
        }
    }
    let authority: &[u8] = match (authority, host) {
        (Some(a), Some(h)) if !a.as_bytes().eq_ignore_ascii_case(h) => {
            return Err(bad("Host differs from :authority"));
        }
        (Some(a), _) => a.as_bytes(),
        (None, Some(h)) => h,
        (None, None) => return Err(bad("no :authority and no Host")),
    };
    if !cookie.is_empty() {
        scratch.push((Bytes::from_static(b"cookie"), Bytes::from(cookie)));
    }
    let framing = match (end_stream, content_length) {
        (true, Some(n)) if n > 0 => return Err(bad("content-length with an empty body")),
        (true, _) | (false, Some(0)) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
        (false, None) => BodyFraming::Chunked,
    };
    let fields = scratch.iter().map(|(n, v)| (&n[..], &v[..]));
    request_from_parts(
        parts.method.as_str().as_bytes(),
        authority,
        path.as_bytes(),
        fields,
        framing,
        &cfg.limits,
        out,
    )
    .map_err(ClientFault::Head)
}
