//! Request head parsing with every strict rule of DESIGN.md §3.

use bytes::{Bytes, BytesMut};

use super::{HeaderIdx, Limits, ParseError, Span, Version};

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
    /// The exact head bytes, request line through the final empty line.
    pub buf: Bytes,
    pub method: Span,
    /// The raw request-target as sent.
    pub target: Span,
    pub version: Version,
    /// All fields in order, names and values as sent (values OWS-trimmed).
    pub headers: Vec<HeaderIdx>,
    /// Authority for routing: the Host field value, lowercased copy in `host_lower`
    /// with any port removed. Empty when absent (only allowed for HTTP/1.0).
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
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            buf: Bytes::new(),
            method: Span::default(),
            target: Span::default(),
            version: Version::Http11,
            headers: Vec::new(),
            host_lower: Vec::new(),
            path: Vec::new(),
            query: None,
            framing: BodyFraming::None,
            keep_alive: true,
            expect_continue: false,
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
        todo!()
    }
    /// True if this field must not be forwarded: hop-by-hop by definition, or named in
    /// this request's Connection field.
    pub fn is_hop_by_hop(&self, name: &[u8]) -> bool {
        todo!()
    }
}

/// Parses one request head from the front of `buf`.
///
/// Returns `Ok(false)` when more bytes are needed (nothing consumed; the caller must return
/// 431 itself if `buf.len()` already exceeds `limits.max_header_bytes` — this function does
/// that check too and returns `HeadTooLarge`). On `Ok(true)` the head bytes have been split
/// off the front of `buf` into `out.buf` and `out` is fully filled; the body (if any) starts
/// at the new front of `buf`. On `Err` the connection must be closed after the error reply.
///
/// Leading empty lines (CRLF) before a request line are skipped, as RFC 9112 §2.2 allows.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
    out: &mut RequestHead,
) -> Result<bool, ParseError> {
    todo!()
}
