//! Typed parse errors. Each maps to exactly one HTTP status; after any of them the
//! connection is closed (framing can no longer be trusted).

use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed syntax or ambiguous framing; the &str says which rule (for logs, never
    /// sent to clients verbatim beyond the reason phrase of the status).
    #[error("bad request: {0}")]
    Bad(&'static str),
    #[error("request target too long")]
    UriTooLong,
    #[error("header section too large")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    /// Transfer-Encoding with a coding we do not implement.
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
    /// A method ringway does not implement as a proxy (CONNECT).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// Chunked body syntax error.
    #[error("bad chunked encoding: {0}")]
    BadChunk(&'static str),
}

impl ParseError {
    /// Status sent to a client when its *request* failed with this error.
    /// (A malformed *upstream response* always maps to 502 regardless.)
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Bad(_) | ParseError::BadChunk(_) => 400,
            ParseError::UriTooLong => 414,
            ParseError::HeadTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedCoding | ParseError::NotImplemented(_) => 501,
        }
    }
}
