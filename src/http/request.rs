//! Request head parsing with every strict rule of DESIGN.md §3.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};

use super::head::{
    collect_headers, find_head_end, find_header, first_protocol, framing_fields, is_hop_by_hop_in,
    leading_crlf, list_items, map_httparse, offset_in,
};
use super::path::{normalize_with, TargetParts};
use super::{HeaderIdx, Limits, ParseError, Span, Version};

/// httparse needs a header array; this caps `max_headers` (the config allows at most 256).
pub const MAX_HEADERS_CAP: usize = 256;

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no CL, no TE, or CL: 0).
    None,
    /// Exactly this many bytes follow (> 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Reused across requests on one connection: `parse_request` clears
/// and refills it, so its Vecs keep their capacity.
#[derive(Debug)]
pub struct RequestHead {
    /// The exact head bytes, request line through the final empty line. A copy owned by
    /// the head (not a view of the read buffer), so the read buffer stays uniquely owned
    /// and is reused for the next read without allocating.
    pub buf: Vec<u8>,
    pub method: Span,
    /// The raw request-target as sent.
    pub target: Span,
    pub version: Version,
    /// All fields in order, names and values as sent (values OWS-trimmed).
    pub headers: Vec<HeaderIdx>,
    /// The request's authority (`host[:port]`): the target's in absolute form, else the
    /// Host field's value (in absolute form the Host field's span is moved to the target's
    /// authority too). None only for an HTTP/1.0 request without either.
    pub authority: Option<Span>,
    /// The authority's host, lowercased, without the port: what routing matches. Empty
    /// when there is no authority.
    pub host_lower: Vec<u8>,
    /// Normalised path (see `path::normalize`), always starts with '/'.
    pub path: Vec<u8>,
    /// The query including the leading '?', as a span of `target` bytes in `buf`, if any.
    pub query: Option<Span>,
    pub framing: BodyFraming,
    /// Whether the client wants the connection kept open after this exchange
    /// (1.1 unless `Connection: close`; 1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (any other expectation -> 417 is not done; it is a 400).
    pub expect_continue: bool,
    /// The protocol this request asks to switch to (the first element of its first
    /// `Upgrade` field, like `websocket`), only when it may ask at all: HTTP/1.1, GET, no
    /// body, `upgrade` listed in Connection (RFC 9110 §7.8, RFC 6455 §4.1). Whether it is
    /// tunnelled is the config's call (`server.upgrade_protocols`).
    pub upgrade: Option<Span>,
    /// The target was `*` (an `OPTIONS *` that `server.allow_options_asterisk` lets in): it
    /// is routed and checked as the path `/` and forwarded as `*`.
    pub asterisk: bool,
    /// The value of the `traceparent` field when there is exactly one (found in the same
    /// pass as Host, so the trace context costs no scan of its own).
    pub traceparent: Option<Span>,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            buf: Vec::new(),
            method: Span::default(),
            target: Span::default(),
            version: Version::Http11,
            headers: Vec::new(),
            authority: None,
            host_lower: Vec::new(),
            path: Vec::new(),
            query: None,
            framing: BodyFraming::None,
            keep_alive: true,
            expect_continue: false,
            upgrade: None,
            asterisk: false,
            traceparent: None,
        }
    }
}

impl RequestHead {
    pub fn method(&self) -> &[u8] {
        self.method.get(&self.buf)
    }
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.buf)
    }
    pub fn query(&self) -> &[u8] {
        self.query.map(|q| q.get(&self.buf)).unwrap_or(b"")
    }
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }
    /// Name and value of the i-th field.
    pub fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        let h = &self.headers[i];
        (h.name.get(&self.buf), h.value.get(&self.buf))
    }
    /// First value of the named field (case-insensitive name).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        find_header(&self.buf, &self.headers, name)
    }
    /// A gRPC call: HTTP/2 (gRPC has no other transport) with a gRPC `content-type`.
    pub fn is_grpc(&self) -> bool {
        self.version == Version::Http2
            && self
                .header(b"content-type")
                .is_some_and(super::grpc::is_grpc)
    }
    /// The client said `TE: trailers`: it takes trailer fields in a chunked response.
    pub fn accepts_trailers(&self) -> bool {
        super::head::any_list_contains(&self.buf, &self.headers, b"te", b"trailers")
    }
    /// True if this field must not be forwarded: hop-by-hop by definition, or named in
    /// this request's Connection field.
    pub fn is_hop_by_hop(&self, name: &[u8]) -> bool {
        is_hop_by_hop_in(&self.buf, &self.headers, name)
    }
}

/// Parses one request head from the front of `buf`.
///
/// Returns `Ok(false)` when more bytes are needed (nothing consumed; the caller must return
/// 431 itself if `buf.len()` already exceeds `limits.max_header_bytes` — this function does
/// that check too and returns `HeadTooLarge`). On `Ok(true)` the head bytes have been moved
/// from the front of `buf` into `out.buf` (copied into its reused capacity: no allocation
/// once warm, and `buf` never becomes shared) and `out` is fully filled; the body (if any)
/// starts at the new front of `buf`. On `Err` the connection must be closed after the error reply.
///
/// Leading empty lines (CRLF) before a request line are skipped, as RFC 9112 §2.2 allows.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
    out: &mut RequestHead,
) -> Result<bool, ParseError> {
    let skip = leading_crlf(buf);
    if skip > 0 {
        buf.advance(skip);
    }
    let end = match find_head_end(buf)? {
        Some(end) => end,
        None => {
            check_incomplete(buf, limits)?;
            return Ok(false);
        }
    };
    if end > limits.max_header_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    let head = &buf[..end];
    // Uninitialised: zeroing 256 entries (8 KiB) cost more than parsing a small head.
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_CAP];
    let n = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut storage[..n]) {
        Ok(httparse::Status::Complete(len)) if len == end => {}
        Ok(_) => return Err(ParseError::Bad("malformed head")),
        Err(e) => return Err(map_httparse(e)),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Bad("malformed request line"));
    };
    if target.len() > limits.max_uri_bytes {
        return Err(ParseError::UriTooLong);
    }
    check_request_line(head, method.len(), target.len())?;
    if method == "CONNECT" {
        // A tunnel to any host:port is not what a gateway is for (nginx answers 405).
        return Err(ParseError::NotImplemented("CONNECT"));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let ms = offset_in(head, method.as_bytes());
    let ts = offset_in(head, target.as_bytes());
    collect_headers(head, req.headers, &mut out.headers)?;
    if !limits.allow_underscores && out.headers.iter().any(|h| h.name.get(head).contains(&b'_')) {
        // `X_Real_IP` and `X-Real-IP` are one field to some backends (CGI maps both to
        // HTTP_X_REAL_IP): refusing it is safer than silently dropping it, as nginx does.
        return Err(ParseError::Bad("underscore in field name"));
    }
    out.method = Span::new(ms, ms + method.len());
    out.target = Span::new(ts, ts + target.len());
    out.version = version;
    out.asterisk = limits.allow_options_asterisk && method == "OPTIONS" && target == "*";
    let parts = if out.asterisk {
        out.path.clear();
        out.path.push(b'/');
        TargetParts::default()
    } else {
        normalize_with(target.as_bytes(), &mut out.path, limits.escaped_slashes)?
    };
    out.query = parts.query.map(|(a, b)| Span::new(ts + a, ts + b));
    fill_semantics(head, &parts, ts, out)?;
    out.buf.clear();
    out.buf.extend_from_slice(head);
    buf.advance(end);
    Ok(true)
}

/// Builds `out` from protocol-neutral parts, as a front end that does not speak HTTP/1.1
/// on the wire has them (an HTTP/2 stream's `:method`, `:authority`, `:path` and fields):
/// the same head `parse_request` would give for the equivalent HTTP/1.1 request, checked by
/// the same rules (tokens, field bytes, target bytes, normalisation, limits), with
/// `authority` as its Host, `body` as its framing (`Chunked` standing for a body of
/// unknown length) and `Version::Http2` as its version. The caller has already refused what its own protocol forbids (for
/// HTTP/2: connection-specific fields, uppercase names, pseudo-header rules).
pub fn request_from_parts<'a>(
    method: &[u8],
    authority: &[u8],
    target: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    body: BodyFraming,
    limits: &Limits,
    out: &mut RequestHead,
) -> Result<(), ParseError> {
    let mut text = BytesMut::with_capacity(64 + target.len());
    for part in [
        method,
        b" ",
        target,
        b" HTTP/1.1\r\nHost: ",
        authority,
        b"\r\n",
    ] {
        text.extend_from_slice(part);
    }
    for (name, value) in fields {
        let framing = name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"host");
        if framing || value.iter().any(|&b| b == b'\r' || b == b'\n') {
            // Framing is the caller's `body`; the authority is the Host; CR/LF would
            // make the text below say something else than the parts.
            return Err(ParseError::Bad("field not allowed in a request from parts"));
        }
        for part in [name, b": ", value, b"\r\n"] {
            text.extend_from_slice(part);
        }
    }
    text.extend_from_slice(b"\r\n");
    if !parse_request(&mut text, limits, out)? || !text.is_empty() {
        return Err(ParseError::Bad("malformed request from parts"));
    }
    out.framing = body;
    out.keep_alive = true;
    out.version = Version::Http2;
    Ok(())
}

/// While a head is incomplete: bound what a client can make us hold.
fn check_incomplete(buf: &[u8], limits: &Limits) -> Result<(), ParseError> {
    if buf.len() > limits.max_header_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    // The request line alone (method SP target ...) already longer than any allowed target.
    let line_end = buf.iter().position(|&b| b == b'\r').unwrap_or(buf.len());
    let first_sp = buf[..line_end].iter().position(|&b| b == b' ');
    if let Some(sp) = first_sp {
        let target_so_far = buf[sp + 1..line_end]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(line_end - sp - 1);
        if target_so_far > limits.max_uri_bytes {
            return Err(ParseError::UriTooLong);
        }
    }
    Ok(())
}

/// Exactly `method SP target SP HTTP/1.x CRLF`: httparse tolerates some of this away.
fn check_request_line(head: &[u8], method_len: usize, target_len: usize) -> Result<(), ParseError> {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    if line_end != method_len + 1 + target_len + 1 + 8 {
        return Err(ParseError::Bad("malformed request line"));
    }
    let version = &head[line_end - 8..line_end];
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(ParseError::Bad("unsupported HTTP version"));
    }
    Ok(())
}

/// Host, framing, keep-alive and Expect rules once the syntax is known good.
fn fill_semantics(
    head: &[u8],
    parts: &super::path::TargetParts,
    target_start: usize,
    out: &mut RequestHead,
) -> Result<(), ParseError> {
    let mut host: Option<usize> = None;
    let mut expect_continue = false;
    let mut upgrade = None;
    let (mut traceparent, mut traceparents) = (None, 0);
    for (i, h) in out.headers.iter().enumerate() {
        let name = h.name.get(head);
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err(ParseError::Bad("more than one Host"));
            }
            host = Some(i);
        } else if name.eq_ignore_ascii_case(b"expect") {
            for item in list_items(h.value.get(head)) {
                if item.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(ParseError::Bad("unsupported expectation"));
                }
            }
        } else if upgrade.is_none() && name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = Some(first_protocol(h.value.get(head)).map(|p| {
                let at = offset_in(head, p);
                Span::new(at, at + p.len())
            }));
        } else if name.eq_ignore_ascii_case(crate::trace::FIELD) {
            traceparents += 1;
            traceparent = Some(h.value);
        }
    }
    out.traceparent = traceparent.filter(|_| traceparents == 1);
    if host.is_none() && out.version == Version::Http11 {
        return Err(ParseError::Bad("missing Host"));
    }
    // The authority requests are routed by and forwarded with: the target's own in
    // absolute form (RFC 9112 §3.2.2: the received Host is ignored and replaced by it),
    // else Host's. Either must be a valid host[:port].
    let host_span = host.map(|i| out.headers[i].value);
    if let Some(span) = host_span {
        split_host(span.get(head))?;
    }
    let authority = match parts.authority {
        Some((a, b)) => Some(Span::new(target_start + a, target_start + b)),
        None => host_span,
    };
    if let (Some(i), Some(a)) = (host, parts.authority.and(authority)) {
        // Everything that reads Host from here on (routing, rules, forwarding,
        // X-Forwarded-Host) sees the target's authority.
        out.headers[i].value = a;
    }
    out.authority = authority;
    out.host_lower.clear();
    if let Some(a) = authority {
        let (name, _) = split_host(a.get(head))?;
        out.host_lower
            .extend(name.iter().map(u8::to_ascii_lowercase));
    }
    let f = framing_fields(head, &out.headers)?;
    if f.has_te && out.version == Version::Http10 {
        return Err(ParseError::Bad("Transfer-Encoding in HTTP/1.0"));
    }
    if f.has_te && f.content_length.is_some() {
        return Err(ParseError::Bad("Content-Length with Transfer-Encoding"));
    }
    out.framing = if f.chunked {
        BodyFraming::Chunked
    } else {
        match f.content_length {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        }
    };
    out.keep_alive = match out.version {
        Version::Http11 | Version::Http2 => !f.connection_close,
        Version::Http10 => f.connection_keep_alive && !f.connection_close,
    };
    out.expect_continue = expect_continue;
    out.upgrade = upgrade.flatten().filter(|_| {
        f.connection_upgrade
            && out.version == Version::Http11
            && out.framing == BodyFraming::None
            && out.method.get(head) == b"GET"
    });
    Ok(())
}

/// Splits `host[:port]` (IPv6 in brackets), validating both parts.
pub fn split_host(h: &[u8]) -> Result<(&[u8], Option<u16>), ParseError> {
    let bad = ParseError::Bad("invalid Host");
    if h.is_empty() {
        return Err(bad);
    }
    let (name, port) = if h[0] == b'[' {
        let close = h.iter().position(|&b| b == b']').ok_or(bad)?;
        let name = &h[..=close];
        let inner = &name[1..name.len() - 1];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad);
        }
        match &h[close + 1..] {
            [] => (name, None),
            [b':', port @ ..] => (name, Some(port)),
            _ => return Err(bad),
        }
    } else {
        match h.iter().position(|&b| b == b':') {
            Some(c) => (&h[..c], Some(&h[c + 1..])),
            None => (h, None),
        }
    };
    if h[0] != b'[' {
        let ok = name.iter().all(|&b| super::path::is_reg_name_byte(b));
        if name.is_empty() || !ok {
            return Err(bad);
        }
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit) => {
            let v = p
                .iter()
                .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
            Some(u16::try_from(v).map_err(|_| bad)?)
        }
        Some(_) => return Err(bad),
    };
    Ok((name, port))
}
