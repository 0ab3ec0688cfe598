//! Strict chunked transfer-coding decoder (RFC 9112 §7.1) and the encoder's framing lines.
//! chunk-size is 1*16HEXDIG, lines end in CRLF only, chunk extensions are parsed per the
//! grammar and dropped, trailer fields are parsed like header fields (framing fields in
//! trailers are an error) and dropped, or handed out one by one by a decoder made
//! `with_trailers`. The decoder is incremental: feed it whatever bytes have
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
    /// One trailer field, `input[start..end]` (`name:value` with the value's whitespace,
    /// without CRLF); `consumed` bytes of input were used up. Only from a decoder made
    /// `with_trailers`.
    Trailer {
        start: usize,
        end: usize,
        consumed: usize,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// chunk-size hex digits.
    #[default]
    Size,
    /// Whitespace after the size, before ';'.
    AfterSize,
    ExtBeforeName,
    ExtName,
    ExtAfterName,
    ExtBeforeValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Right after a closing quote: CRLF, ';' or whitespace may follow.
    ExtAfterQuote,
    ExtAfterValue,
    /// CR of the size line seen.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer line (or of the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Longest trailer name we remember for the forbidden-name check; longer names are none of
/// the forbidden ones.
const NAME_MEMO: usize = 24;

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    remaining: u64,
    line_len: usize,
    max_line: usize,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
    name: [u8; NAME_MEMO],
    name_len: usize,
    /// Hand out trailer fields (`ChunkEvent::Trailer`) instead of dropping them.
    keep_trailers: bool,
    /// Where the trailer line being read starts in the current input.
    line_start: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new(4096, 16 * 1024)
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_qdtext(b: u8) -> bool {
    b == b'\t'
        || b == b' '
        || b == 0x21
        || (0x23..=0x5B).contains(&b)
        || (0x5D..=0x7E).contains(&b)
        || b >= 0x80
}

/// Trailer fields that could change framing or routing if someone merged them.
fn forbidden_trailer(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 4] = [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"content-type",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) || super::head::is_hop_by_hop(name)
}

impl ChunkedDecoder {
    /// `max_line` bounds a chunk-size line (with extensions) and each trailer line;
    /// `max_trailer_bytes` bounds the whole trailer section.
    pub fn new(max_line: usize, max_trailer_bytes: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            line_len: 0,
            max_line,
            trailer_bytes: 0,
            max_trailer_bytes,
            name: [0; NAME_MEMO],
            name_len: 0,
            keep_trailers: false,
            line_start: 0,
        }
    }

    /// Hands out each trailer field as a `ChunkEvent::Trailer` (a field line that has only
    /// partly arrived is left unconsumed until the rest is in, so the caller sees it whole).
    pub fn with_trailers(mut self) -> ChunkedDecoder {
        self.keep_trailers = true;
        self
    }

    /// Decodes from the front of `input`. Call repeatedly, advancing past what each event
    /// consumed, until `NeedMore` (then read more) or `Done`.
    pub fn step(&mut self, input: &[u8]) -> Result<ChunkEvent, ParseError> {
        let mut i = 0;
        loop {
            match self.state {
                State::Done => return Ok(ChunkEvent::Done { consumed: i }),
                State::Data if self.remaining == 0 => self.state = State::DataCr,
                State::Data => {
                    let avail = input.len() - i;
                    if avail == 0 {
                        return Ok(ChunkEvent::NeedMore { consumed: i });
                    }
                    let n = self.remaining.min(avail as u64) as usize;
                    self.remaining -= n as u64;
                    return Ok(ChunkEvent::Data {
                        start: i,
                        end: i + n,
                    });
                }
                _ => {
                    let Some(&b) = input.get(i) else {
                        return Ok(self.need_more(i));
                    };
                    if self.keep_trailers && self.state == State::TrailerStart {
                        self.line_start = i;
                    }
                    let was = self.state;
                    i += 1;
                    self.framing_byte(b)?;
                    if self.keep_trailers && was == State::TrailerLf {
                        return Ok(ChunkEvent::Trailer {
                            start: self.line_start,
                            end: i - 2,
                            consumed: i,
                        });
                    }
                }
            }
        }
    }

    /// The input ran out after `i` bytes. A trailer field that has only partly arrived is
    /// given back, to be read again whole.
    fn need_more(&mut self, i: usize) -> ChunkEvent {
        use State::*;
        if self.keep_trailers && matches!(self.state, TrailerName | TrailerValue | TrailerLf) {
            let partial = i - self.line_start;
            self.trailer_bytes -= partial;
            self.line_len = 0;
            self.name_len = 0;
            self.state = TrailerStart;
            return ChunkEvent::NeedMore {
                consumed: self.line_start,
            };
        }
        ChunkEvent::NeedMore { consumed: i }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes of the current chunk still to come, when the decoder stands inside a
    /// chunk's data; 0 anywhere else.
    pub fn pending_data(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// Counts `n` payload bytes (at most `pending_data()`) as relayed without passing
    /// through the decoder (spliced); the chunk's CRLF is still expected from the input.
    pub fn skip_data(&mut self, n: u64) {
        if self.state == State::Data {
            self.remaining -= n.min(self.remaining);
        }
    }

    fn framing_byte(&mut self, b: u8) -> Result<(), ParseError> {
        use State::*;
        let in_size_line = matches!(
            self.state,
            Size | AfterSize
                | ExtBeforeName
                | ExtName
                | ExtAfterName
                | ExtBeforeValue
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtAfterQuote
                | ExtAfterValue
                | SizeLf
        );
        let in_trailer = matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        );
        if in_size_line || in_trailer {
            self.line_len += 1;
            if self.line_len > self.max_line {
                return Err(ParseError::BadChunk("line too long"));
            }
        }
        if in_trailer {
            self.trailer_bytes += 1;
            if self.trailer_bytes > self.max_trailer_bytes {
                return Err(ParseError::BadChunk("trailer section too large"));
            }
        }
        let err = |why| Err(ParseError::BadChunk(why));
        self.state = match (self.state, b) {
            (Size, _) if b.is_ascii_hexdigit() => {
                self.digits += 1;
                if self.digits > 16 {
                    return err("chunk size too long");
                }
                let v = (b as char).to_digit(16).unwrap_or(0);
                self.size = (self.size << 4) | u64::from(v);
                Size
            }
            (Size, _) if self.digits == 0 => return err("missing chunk size"),
            (Size, b'\r') => SizeLf,
            (Size, b';') => ExtBeforeName,
            (Size, _) if is_ws(b) => AfterSize,
            (AfterSize, _) if is_ws(b) => AfterSize,
            (AfterSize, b';') => ExtBeforeName,
            (ExtBeforeName, _) if is_ws(b) => ExtBeforeName,
            (ExtBeforeName | ExtName, _) if super::head::is_tchar(b) => ExtName,
            (ExtName, b'\r') => SizeLf,
            (ExtName, b';') => ExtBeforeName,
            (ExtName, b'=') => ExtBeforeValue,
            (ExtName | ExtAfterName, _) if is_ws(b) => ExtAfterName,
            (ExtAfterName, b'=') => ExtBeforeValue,
            (ExtAfterName, b';') => ExtBeforeName,
            (ExtBeforeValue, _) if is_ws(b) => ExtBeforeValue,
            (ExtBeforeValue, b'"') => ExtQuoted,
            (ExtBeforeValue | ExtToken, _) if super::head::is_tchar(b) => ExtToken,
            (ExtToken, b'\r') => SizeLf,
            (ExtToken, b';') => ExtBeforeName,
            (ExtToken | ExtAfterValue, _) if is_ws(b) => ExtAfterValue,
            (ExtQuoted, b'"') => ExtAfterQuote,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted, _) if is_qdtext(b) => ExtQuoted,
            (ExtQuotedEscape, _)
                if b == b'\t' || b == b' ' || (0x21..=0x7E).contains(&b) || b >= 0x80 =>
            {
                ExtQuoted
            }
            (ExtAfterQuote, b'\r') => SizeLf,
            (ExtAfterQuote | ExtAfterValue, b';') => ExtBeforeName,
            (ExtAfterQuote, _) if is_ws(b) => ExtAfterValue,
            (SizeLf, b'\n') => {
                self.line_len = 0;
                let size = std::mem::take(&mut self.size);
                self.digits = 0;
                if size == 0 {
                    TrailerStart
                } else {
                    self.remaining = size;
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size,
            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart | TrailerName, _) if super::head::is_tchar(b) => {
                if self.name_len < NAME_MEMO {
                    self.name[self.name_len] = b;
                }
                self.name_len += 1;
                TrailerName
            }
            (TrailerName, b':') => {
                if self.name_len <= NAME_MEMO && forbidden_trailer(&self.name[..self.name_len]) {
                    return err("framing field in trailers");
                }
                self.name_len = 0;
                TrailerValue
            }
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                TrailerValue
            }
            (TrailerLf, b'\n') => {
                self.line_len = 0;
                TrailerStart
            }
            (FinalLf, b'\n') => Done,
            (SizeLf | DataLf | TrailerLf | FinalLf, _) => return err("CR not followed by LF"),
            (_, b'\n') => return err("bare LF"),
            _ => return err("invalid byte in chunked framing"),
        };
        Ok(())
    }
}

/// Appends the framing line for a chunk of `len` (> 0) payload bytes: `{hex}\r\n`.
pub fn put_chunk_header(len: usize, out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 18];
    let mut i = 16;
    let mut v = len;
    loop {
        i -= 1;
        tmp[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    tmp[16] = b'\r';
    tmp[17] = b'\n';
    out.extend_from_slice(&tmp[i..]);
}

/// CRLF that ends every chunk's payload.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last-chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
