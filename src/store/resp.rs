//! RESP2, the Redis wire protocol, sans I/O: commands are encoded as arrays of bulk
//! strings; replies are parsed incrementally from a buffer with fixed bounds (bulk length,
//! array length, nesting), so a misbehaving server can make ringway drop the connection but
//! never make it buffer without limit.

/// Largest bulk string accepted (a script's SHA is 40 bytes; nothing ringway asks for is
/// long).
pub const MAX_BULK: usize = 64 * 1024;
/// Largest array accepted.
pub const MAX_ARRAY: usize = 16;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 2;
/// Longest line (`+`, `-`, `:` and length headers).
const MAX_LINE: usize = 4 * 1024;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Reply>>),
}

/// The server broke the protocol (or a bound): the connection must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis protocol error: {}", self.0)
    }
}

/// Appends the command `args` (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_num(out, args.len() as u64);
    for a in args {
        out.push(b'$');
        push_num(out, a.len() as u64);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// `n` in decimal, written into `buf` (no allocation): a command's number argument.
pub fn decimal(buf: &mut [u8; 20], n: i64) -> &[u8] {
    let mut rest: &mut [u8] = &mut buf[..];
    if n < 0 {
        bytes::BufMut::put_u8(&mut rest, b'-');
    }
    crate::http::canned::put_u64(&mut rest, n.unsigned_abs());
    let len = 20 - rest.len();
    &buf[..len]
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    crate::http::canned::put_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Parses one reply from the front of `buf`: `Ok(Some((reply, used)))`, `Ok(None)` when
/// more bytes are needed, or an error when the bytes cannot be a valid reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some((line, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let Some((&kind, rest)) = line.split_first() else {
        return Err(ProtocolError("empty line"));
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(rest.to_vec()), next))),
        b'-' => Ok(Some((Reply::Error(rest.to_vec()), next))),
        b':' => Ok(Some((Reply::Int(int(rest)?), next))),
        b'$' => {
            let Some(n) = length(rest, MAX_BULK, "bulk string too long")? else {
                return Ok(Some((Reply::Bulk(None), next)));
            };
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string without CRLF"));
            }
            Ok(Some((Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let Some(n) = length(rest, MAX_ARRAY, "array too long")? else {
                return Ok(Some((Reply::Array(None), next)));
            };
            if depth >= MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deep"));
            }
            let mut items = Vec::with_capacity(n);
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    Some((r, used)) => {
                        items.push(r);
                        at = used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(ProtocolError("unknown reply type")),
    }
}

/// The line starting at `at` (without CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i <= MAX_LINE => Ok(Some((&rest[..i], at + i + 2))),
        Some(_) => Err(ProtocolError("line too long")),
        None if rest.len() > MAX_LINE => Err(ProtocolError("line too long")),
        None => Ok(None),
    }
}

/// A bulk string's or an array's length: None for -1 (null), else at most `max`
/// (`too_long` says what went over).
fn length(s: &[u8], max: usize, too_long: &'static str) -> Result<Option<usize>, ProtocolError> {
    match int(s)? {
        -1 => Ok(None),
        n => match usize::try_from(n) {
            Ok(n) if n <= max => Ok(Some(n)),
            Ok(_) => Err(ProtocolError(too_long)),
            Err(_) => Err(ProtocolError("bad length")),
        },
    }
}

fn int(s: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"EVALSHA", b"ab", b"1", b""]);
        assert_eq!(
            out,
            b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(&mut b, 0), b"0");
        assert_eq!(decimal(&mut b, -250_000), b"-250000");
        assert_eq!(decimal(&mut b, i64::MIN), b"-9223372036854775808");
        assert_eq!(decimal(&mut b, i64::MAX), b"9223372036854775807");
    }

    #[test]
    fn replies_parse_whole_or_ask_for_more() {
        let full = b"*2\r\n:3\r\n:-250000\r\n+OK\r\n";
        let (r, used) = parse(full).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![Reply::Int(3), Reply::Int(-250000)]))
        );
        assert_eq!(
            parse(&full[used..]).unwrap(),
            Some((Reply::Simple(b"OK".to_vec()), 5))
        );
        for cut in 0..used {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            parse(b"$3\r\nabc\r\n").unwrap(),
            Some((Reply::Bulk(Some(b"abc".to_vec())), 9))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Reply::Bulk(None), 5)));
        assert_eq!(
            parse(b"-NOSCRIPT No matching script\r\n")
                .unwrap()
                .unwrap()
                .0,
            Reply::Error(b"NOSCRIPT No matching script".to_vec())
        );
    }

    #[test]
    fn bad_or_oversized_replies_are_errors() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$99999999\r\n",
            b"*100\r\n",
            b"*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$3\r\nabcde",
            b"\r\n",
            b"$-2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(parse(&long).is_err());
    }
}
