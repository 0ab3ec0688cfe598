//! Upstream response head parsing: the same strictness as requests. Any error here means the
//! client gets 502 and the upstream connection is closed.

use bytes::{Bytes, BytesMut};

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
    pub buf: Bytes,
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
            buf: Bytes::new(),
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
        todo!()
    }
    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.buf)
    }
    /// True if this field must not be forwarded (hop-by-hop or named in Connection).
    pub fn is_hop_by_hop(&self, name: &[u8]) -> bool {
        todo!()
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
    todo!()
}
