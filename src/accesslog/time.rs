//! RFC 3339 timestamps in UTC with milliseconds (`2026-11-25T04:17:35.123Z`), without a date
//! crate: the civil-from-days conversion (H. Hinnant's algorithm) on the Unix time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `t` as `YYYY-MM-DDThh:mm:ss.mmmZ` (times before 1970 print as the epoch).
pub fn put_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let fields: [(u64, usize); 7] = [
        (y as u64, 4),
        (u64::from(m), 2),
        (u64::from(d), 2),
        (rem / 3600, 2),
        (rem / 60 % 60, 2),
        (rem % 60, 2),
        (u64::from(since.subsec_millis()), 3),
    ];
    let seps = [b'-', b'-', b'T', b':', b':', b'.', b'Z'];
    for ((v, width), sep) in fields.into_iter().zip(seps) {
        put_padded(out, v, width);
        out.push(sep);
    }
}

fn put_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut digits = [b'0'; 4];
    let mut v = v;
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// (year, month, day) of the `days`-th day after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        let mut out = Vec::new();
        put_rfc3339(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis),
        );
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn known_instants_format_as_rfc3339_utc_with_milliseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_795_580_255, 123), "2026-11-25T04:17:35.123Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }
}
