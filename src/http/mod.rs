//! Sans-IO HTTP/1.1: strict parsing of request and response heads (httparse plus our own
//! checks from DESIGN.md §3), body framing, a strict chunked codec, request-target
//! normalisation, and canned error responses.
//!
//! Invariant: nothing in this module does I/O, allocates per call once its reusable buffers
//! are warm, or panics on any input bytes. Every rejection is a typed [`ParseError`].

pub mod canned;
pub mod chunked;
pub mod error;
pub mod head;
pub mod path;
pub mod request;
pub mod response;

pub use error::ParseError;
pub use head::{HeaderIdx, Span, Version};
pub use request::{parse_request, BodyFraming, RequestHead};
pub use response::{parse_response, ResponseFraming, ResponseHead};

/// Limits applied while parsing a head. Defaults match `[limits]` in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Max bytes of a whole head (request line + fields + final CRLF). Above -> 431.
    pub max_header_bytes: usize,
    /// Max number of header fields. Above -> 431.
    pub max_headers: usize,
    /// Max bytes of the request target. Above -> 414.
    pub max_uri_bytes: usize,
    /// What `%2F` / `%5C` in a path means (`policy.escaped_slashes`).
    pub escaped_slashes: path::EscapedSlashes,
    /// Field names with '_' are accepted and forwarded (`limits.allow_underscores_in_headers`);
    /// otherwise such a request is refused with 400.
    pub allow_underscores: bool,
    /// `OPTIONS *` is accepted (`server.allow_options_asterisk`); otherwise 400.
    pub allow_options_asterisk: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            escaped_slashes: path::EscapedSlashes::Keep,
            allow_underscores: false,
            allow_options_asterisk: false,
        }
    }
}

#[cfg(test)]
mod tests;
