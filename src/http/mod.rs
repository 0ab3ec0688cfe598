//! Sans-IO HTTP/1.1: strict parsing of request and response heads (httparse plus our own
//! checks from DESIGN.md §3), body framing, a strict chunked codec, request-target
//! normalisation, and canned error responses.
//!
//! Invariant: nothing in this module does I/O, allocates per call once its reusable buffers
//! are warm, or panics on any input bytes. Every rejection is a typed [`ParseError`].
//!
//! Where it sits: below `policy`, `upstream`, `compiled` and everything that relays; it
//! imports `config` (limits' defaults), `grammar` and `trace` only.

pub mod canned;
pub mod chunked;
pub mod error;
pub mod grpc;
pub mod head;
pub mod path;
pub mod request;
pub mod response;

pub use error::ParseError;
pub use head::{HeaderIdx, Span, Version};
pub use request::{parse_request, request_from_parts, BodyFraming, RequestHead};
pub use response::{parse_response, ResponseFraming, ResponseHead};

/// Limits applied while parsing a head. `Limits::default()` is what the default config
/// compiles to: its values come from `config::defaults`, the one place they are written.
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
        use crate::config::defaults;
        Limits {
            max_header_bytes: defaults::limits::MAX_HEADER_BYTES,
            max_headers: defaults::limits::MAX_HEADERS,
            max_uri_bytes: defaults::limits::MAX_URI_BYTES,
            escaped_slashes: path::EscapedSlashes::from_config(defaults::policy::ESCAPED_SLASHES),
            allow_underscores: defaults::limits::ALLOW_UNDERSCORES_IN_HEADERS,
            allow_options_asterisk: defaults::server::ALLOW_OPTIONS_ASTERISK,
        }
    }
}

#[cfg(test)]
mod tests;
