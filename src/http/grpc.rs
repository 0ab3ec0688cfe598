//! What ringway needs to know of gRPC to answer a gRPC call itself: whether a request is
//! one, and how an HTTP status of ringway's own answer maps to a gRPC status. gRPC clients
//! do not read HTTP error statuses: they expect HTTP 200 and a `grpc-status` (here in a
//! "trailers-only" answer, whose only HEADERS carry it), so a refusal, a missing route or a
//! dead upstream reach them as a gRPC error they can act on instead of an opaque
//! "protocol error".

/// 1 to `max_len` decimal digits, nothing else.
fn decimal(digits: &[u8], max_len: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_len || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A `grpc-status` value as sent: decimal digits, at most 3 of them.
pub fn parse_status(value: &[u8]) -> Option<u16> {
    decimal(value, 3).and_then(|n| u16::try_from(n).ok())
}

/// A `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(value: &[u8]) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (&unit, digits) = value.split_last()?;
    let n = decimal(digits, 8)?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `d` as a `grpc-timeout` value, in the finest unit that fits 8 digits (rounded down).
pub fn encode_timeout(d: std::time::Duration) -> String {
    const MAX: u128 = 99_999_999;
    let micros = d.as_micros();
    if micros <= MAX {
        return format!("{micros}u");
    }
    let millis = d.as_millis();
    if millis <= MAX {
        return format!("{millis}m");
    }
    let secs = u128::from(d.as_secs());
    if secs <= MAX {
        return format!("{secs}S");
    }
    format!("{}H", (secs / 3600).min(MAX))
}

/// True for a gRPC request's `content-type`: `application/grpc`, alone or followed by `+`
/// (`application/grpc+proto`) or `;` (parameters). gRPC-Web (`application/grpc-web…`),
/// which carries its status in the body, is not.
pub fn is_grpc(content_type: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    content_type.len() >= GRPC.len()
        && content_type[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(content_type.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The gRPC status (code and name) of one of ringway's own HTTP answers. Mostly gRPC's
/// "HTTP to gRPC status code mapping", with what ringway knows better: a rate limit or a
/// body too large is RESOURCE_EXHAUSTED (gRPC's table says UNAVAILABLE for 429), an
/// upstream that answered too late is DEADLINE_EXCEEDED. docs/grpc.md has the table.
pub fn status_for(http: u16) -> (u8, &'static str) {
    match http {
        200..=299 => (0, "OK"),
        400 => (13, "INTERNAL"),
        401 => (16, "UNAUTHENTICATED"),
        403 => (7, "PERMISSION_DENIED"),
        404 => (12, "UNIMPLEMENTED"),
        413 | 429 => (8, "RESOURCE_EXHAUSTED"),
        502 | 503 => (14, "UNAVAILABLE"),
        504 => (4, "DEADLINE_EXCEEDED"),
        _ => (2, "UNKNOWN"),
    }
}

/// The gRPC status a client reads from an upstream's non-200 HTTP answer to a gRPC call:
/// gRPC's "HTTP to gRPC status code mapping" exactly (ringway answers it as such, trailers-only,
/// instead of relaying the upstream's body).
pub fn status_for_upstream(http: u16) -> (u8, &'static str) {
    match http {
        400 => (13, "INTERNAL"),
        401 => (16, "UNAUTHENTICATED"),
        403 => (7, "PERMISSION_DENIED"),
        404 => (12, "UNIMPLEMENTED"),
        429 | 502..=504 => (14, "UNAVAILABLE"),
        _ => (2, "UNKNOWN"),
    }
}

/// `grpc-message` for one of ringway's answers: the HTTP status and its reason, e.g.
/// "ringway: 403 Forbidden". Printable ASCII only, so no percent-encoding is needed.
pub fn message_for(http: u16) -> String {
    format!("ringway: {http} {}", super::canned::reason(http))
}

/// `grpc-message` when an upstream answered a gRPC call with HTTP status `http`.
pub fn upstream_message_for(http: u16) -> String {
    format!("ringway: upstream answered HTTP {http}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_told_from_others() {
        for yes in [
            &b"application/grpc"[..],
            b"application/grpc+proto",
            b"application/grpc+json",
            b"Application/GRPC",
            b"application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"application/grpc-web"[..],
            b"application/grpc-web+proto",
            b"application/grpcx",
            b"application/json",
            b"application/grp",
            b"",
        ] {
            assert!(!is_grpc(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn timeouts_parse_in_every_unit_and_encode_in_the_finest_that_fits() {
        use std::time::Duration;
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"200m"), Some(Duration::from_millis(200)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_timeout(b"5n"), Some(Duration::from_nanos(5)));
        for bad in [
            &b""[..],
            b"m",
            b"100",
            b"100x",
            b"123456789m",
            b"-1m",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(parse_timeout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(encode_timeout(Duration::from_millis(150)), "150000u");
        assert_eq!(encode_timeout(Duration::from_secs(200)), "200000m");
        assert_eq!(encode_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(encode_timeout(Duration::ZERO), "0u");
        for d in [1u64, 999, 123_456_789, 98_765_432_100] {
            let d = Duration::from_micros(d);
            let back = parse_timeout(encode_timeout(d).as_bytes()).expect("parses");
            assert!(
                back <= d && d - back < Duration::from_secs(1),
                "{d:?} {back:?}"
            );
        }
    }

    #[test]
    fn status_values_parse_as_sent_or_not_at_all() {
        assert_eq!(parse_status(b"0"), Some(0));
        assert_eq!(parse_status(b"14"), Some(14));
        assert_eq!(parse_status(b"999"), Some(999));
        for bad in [&b""[..], b"1000", b"-1", b" 1", b"x", b"1.0"] {
            assert_eq!(parse_status(bad), None);
        }
        use crate::grammar::GRPC_STATUS_NAMES;
        assert_eq!(GRPC_STATUS_NAMES[7], "PERMISSION_DENIED");
        assert_eq!(GRPC_STATUS_NAMES[16], "UNAUTHENTICATED");
    }

    #[test]
    fn ringways_own_statuses_map_to_the_documented_grpc_statuses() {
        let code = |s| status_for(s).0;
        assert_eq!(
            [400, 401, 403, 404, 413, 429, 502, 503, 504, 200, 500, 405, 431].map(code),
            [13, 16, 7, 12, 8, 8, 14, 14, 4, 0, 2, 2, 2]
        );
        let m = message_for(503);
        assert_eq!(m, "ringway: 503 Service Unavailable");
        assert!(m.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%'));
    }
}
