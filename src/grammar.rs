//! RFC 9110's field grammar: tokens, field-value bytes and the hop-by-hop field names, and
//! the names of gRPC's status codes. The one definition that the HTTP parser (`http`) and
//! the config validator (`config`, for the field names and values a user writes, and the
//! gRPC statuses a route retries) both check against. A leaf: it imports nothing of
//! the crate and does no I/O.
//!
//! Where it sits: a leaf, below `config` and `http`.

/// Fields that are hop-by-hop by definition (RFC 9110 §7.6.1) and never forwarded.
/// `Upgrade` is included: a tunnelled upgrade gets `Connection: Upgrade` and its `Upgrade`
/// field written by the forwarding rules themselves, never copied. Case-insensitive.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// RFC 9110 tchar.
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Field value bytes: VCHAR, SP, HTAB, obs-text. No NUL, CR, LF, other CTLs or DEL.
pub fn is_field_value(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// The names of the gRPC status codes, by code (0..=16).
pub const GRPC_STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
