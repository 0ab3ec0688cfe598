//! Strict chunked transfer-coding decoder (RFC 9112 §7.1) and the encoder's framing lines.
//! chunk-size is 1*16HEXDIG, lines end in CRLF only, chunk extensions are parsed per the
//! grammar and dropped, trailer fields are parsed like header fields and dropped (framing
//! fields in trailers are an error). The decoder is incremental: feed it whatever bytes have
//! arrived; it never needs the whole body.

use bytes::BytesMut;

use super::ParseError;

/// One step of decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkEvent {
    /// Need more input; `consumed` bytes of framing were used up (may be 0).
    NeedMore { consumed: usize },
    /// `input[start..end]` is chunk payload; the caller must treat `end` as consumed.
    Data { start: usize, end: usize },
    /// The last chunk and trailers were read; `consumed` bytes of input belong to the body.
    Done { consumed: usize },
}

#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    // private state machine
}

impl ChunkedDecoder {
    /// `max_line` bounds a chunk-size line (with extensions) and each trailer line;
    /// `max_trailer_bytes` bounds the whole trailer section.
    pub fn new(max_line: usize, max_trailer_bytes: usize) -> ChunkedDecoder {
        todo!()
    }

    /// Decodes from the front of `input`. Call repeatedly, advancing past what each event
    /// consumed, until `NeedMore` (then read more) or `Done`.
    pub fn step(&mut self, input: &[u8]) -> Result<ChunkEvent, ParseError> {
        todo!()
    }

    pub fn is_done(&self) -> bool {
        todo!()
    }
}

/// Appends the framing line for a chunk of `len` (> 0) payload bytes: `{hex}\r\n`.
pub fn put_chunk_header(len: usize, out: &mut BytesMut) {
    todo!()
}

/// CRLF that ends every chunk's payload.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last-chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
