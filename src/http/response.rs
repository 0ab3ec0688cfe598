//! Upstream response head parsing: the same strictness as requests. Any error here means the
//! client gets 502 and the upstream connection is closed.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};

use super::head::{
    collect_headers, find_head_end, find_header, framing_fields, is_hop_by_hop_in, map_httparse,
    offset_in,
};
use super::request::MAX_HEADERS_CAP;
use super::{HeaderIdx, Limits, ParseError, Span, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: 1xx, 204, 304, a response to HEAD, or CL: 0.
    None,
    Length(u64),
    Chunked,
    /// Neither CL nor TE: the body runs until the upstream closes.
    CloseDelimited,
}

#[derive(Debug)]
pub struct ResponseHead {
    /// The exact head bytes, copied out of the read buffer (see `RequestHead::buf`).
    pub buf: Vec<u8>,
    pub version: Version,
    pub status: u16,
    pub reason: Span,
    pub headers: Vec<HeaderIdx>,
    pub framing: ResponseFraming,
    /// The upstream connection may be reused after this response's body is fully read
    /// (1.1 without `Connection: close`, or 1.0 with `keep-alive`; never when close-delimited).
    pub keep_alive: bool,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            buf: Vec::new(),
            version: Version::Http11,
            status: 0,
            reason: Span::default(),
            headers: Vec::new(),
            framing: ResponseFraming::None,
            keep_alive: true,
        }
    }
}

impl ResponseHead {
    pub fn header_at(&self, i: usize) -> (&[u8], &[u8]) {
        let h = &self.headers[i];
        (h.name.get(&self.buf), h.value.get(&self.buf))
    }
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        find_header(&self.buf, &self.headers, name)
    }
    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.buf)
    }
    /// True if this field must not be forwarded (hop-by-hop or named in Connection).
    pub fn is_hop_by_hop(&self, name: &[u8]) -> bool {
        is_hop_by_hop_in(&self.buf, &self.headers, name)
    }
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Parses one response head from the front of `buf`; same contract as `parse_request`.
/// `request_was_head` makes the framing `None` whatever CL/TE say (the fields stay in
/// `headers` so they can be forwarded). 1xx responses parse with framing `None`; the caller
/// decides whether to skip them.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &Limits,
    request_was_head: bool,
    out: &mut ResponseHead,
) -> Result<bool, ParseError> {
    match parse_response_at(buf, limits, request_was_head, out)? {
        Some(end) => {
            buf.advance(end);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `parse_response` without consuming: Ok(Some(n)) when the first `n` bytes of `buf` are a
/// complete head (copied into `out`), Ok(None) when more bytes are needed.
pub fn parse_response_at(
    buf: &[u8],
    limits: &Limits,
    request_was_head: bool,
    out: &mut ResponseHead,
) -> Result<Option<usize>, ParseError> {
    let end = match find_head_end(buf)? {
        Some(end) => end,
        None if buf.len() > limits.max_header_bytes => return Err(ParseError::HeadTooLarge),
        None => return Ok(None),
    };
    if end > limits.max_header_bytes {
        return Err(ParseError::HeadTooLarge);
    }
    let head = &buf[..end];
    // Uninitialised: zeroing 256 entries (8 KiB) cost more than parsing a small head.
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_CAP];
    let n = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        head,
        &mut storage[..n],
    ) {
        Ok(httparse::Status::Complete(len)) if len == end => {}
        Ok(_) => return Err(ParseError::Bad("malformed response head")),
        Err(e) => return Err(map_httparse(e)),
    }
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(ParseError::Bad("malformed status line"));
    };
    let reason = resp.reason.unwrap_or("").as_bytes();
    check_status_line(head, reason)?;
    if !(100..=599).contains(&status) {
        return Err(ParseError::Bad("status out of range"));
    }
    collect_headers(head, resp.headers, &mut out.headers)?;
    let rs = if reason.is_empty() {
        0
    } else {
        offset_in(head, reason)
    };
    out.reason = Span::new(rs, rs + reason.len());
    out.status = status;
    out.version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let f = framing_fields(head, &out.headers)?;
    if f.has_te && f.content_length.is_some() {
        return Err(ParseError::Bad("Content-Length with Transfer-Encoding"));
    }
    if f.has_te && out.version == Version::Http10 {
        return Err(ParseError::Bad("Transfer-Encoding in HTTP/1.0"));
    }
    let bodiless = request_was_head || status < 200 || status == 204 || status == 304;
    out.framing = if bodiless {
        ResponseFraming::None
    } else if f.chunked {
        ResponseFraming::Chunked
    } else {
        match f.content_length {
            Some(0) => ResponseFraming::None,
            Some(n) => ResponseFraming::Length(n),
            None => ResponseFraming::CloseDelimited,
        }
    };
    out.keep_alive = out.framing != ResponseFraming::CloseDelimited
        && match out.version {
            Version::Http11 | Version::Http2 => !f.connection_close,
            Version::Http10 => f.connection_keep_alive && !f.connection_close,
        };
    out.buf.clear();
    out.buf.extend_from_slice(head);
    Ok(Some(end))
}

/// `HTTP/1.x SP 3DIGIT SP reason CRLF` with a reason of HTAB / SP / VCHAR / obs-text.
fn check_status_line(head: &[u8], reason: &[u8]) -> Result<(), ParseError> {
    let version = head.get(..8).unwrap_or_default();
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(ParseError::Bad("unsupported HTTP version"));
    }
    if head.get(8) != Some(&b' ') || head.get(12) != Some(&b' ') && head.get(12) != Some(&b'\r') {
        return Err(ParseError::Bad("malformed status line"));
    }
    if !reason
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        return Err(ParseError::Bad("invalid byte in reason phrase"));
    }
    Ok(())
}
