//! Shared pieces of parsed heads: byte spans into the frozen head buffer, versions, and
//! field-name helpers (hop-by-hop classification).

/// A half-open byte range `start..end` into a head buffer. `u32` keeps headers small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One header field as spans into the head buffer. Values are trimmed of OWS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderIdx {
    pub name: Span,
    pub value: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// Fields that are hop-by-hop by definition (RFC 9110 §7.6.1) and never forwarded.
/// `Upgrade` is included: ringway does not tunnel yet. Case-insensitive.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    todo!()
}

/// True when `list` (a comma-separated field value like Connection's) contains `token`,
/// case-insensitively, ignoring OWS around elements.
pub fn list_contains_token(list: &[u8], token: &[u8]) -> bool {
    todo!()
}
