//! The PROXY protocol (HAProxy's, versions 1 and 2), sans I/O: the header an L4 balancer
//! puts in front of a connection's bytes to say who the client really is. `parse` looks at
//! the bytes received so far and says: more are needed, or here is the header and how many
//! bytes it took, or this is no valid header (the connection is then closed).
//!
//! Strict and bounded:
//! - v1 is one line of at most 107 bytes, `PROXY TCP4|TCP6|UNKNOWN …\r\n`, with single
//!   spaces, addresses of the named family, and decimal ports without leading zeros.
//! - v2 is the 16-byte head and at most `MAX_V2_BODY` more bytes. The address block must fit
//!   its family. TLVs must fit the header exactly, and so must SSL sub-TLVs. A CRC32C TLV
//!   must match the header. ALPN, authority and the SSL facts are kept, the rest skipped.
//! - `LOCAL` (v2) and `UNKNOWN` (v1), and v2's unspecified family, carry no client address:
//!   the connection's own peer stands.
//!
//! Where it sits: a leaf; the runtime reads the header off a listener's new connections
//! before anything else (the TLS handshake included).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Which versions a listener accepts (`listeners[].proxy_protocol`: "v1", "v2", "any").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Accept {
    V1,
    V2,
    Any,
}

/// The version a header came in, or is sent in (`upstreams[].proxy_protocol`: "v1",
/// "v2").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    V1,
    V2,
}

/// What a header says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub version: Option<Version>,
    /// The client's address and port; None: the connection's own peer stands (v2 `LOCAL`,
    /// an unspecified or Unix family, v1 `UNKNOWN`).
    pub source: Option<SocketAddr>,
    /// The address the client connected to.
    pub destination: Option<SocketAddr>,
    /// v2 TLV `PP2_TYPE_ALPN`: the protocol the client's TLS negotiated with the balancer.
    pub alpn: Option<Vec<u8>>,
    /// v2 TLV `PP2_TYPE_AUTHORITY`: the SNI the client sent the balancer.
    pub authority: Option<Vec<u8>>,
    /// v2 TLV `PP2_TYPE_SSL`: the client spoke TLS to the balancer.
    pub ssl: Option<Ssl>,
}

/// v2's `PP2_TYPE_SSL`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ssl {
    /// `PP2_CLIENT_*` bits (SSL, CERT_CONN, CERT_SESS).
    pub client: u8,
    /// The client's certificate was verified (`verify` field 0).
    pub verified: bool,
    /// `PP2_SUBTYPE_SSL_VERSION`, e.g. "TLSv1.3".
    pub version: Option<Vec<u8>>,
    /// `PP2_SUBTYPE_SSL_CN`: the client certificate's common name.
    pub cn: Option<Vec<u8>>,
}

/// What the bytes so far are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A valid start: read more.
    Incomplete,
    /// The header, and how many bytes of the input it took.
    Done(Header, usize),
}

/// Why the bytes are no acceptable header.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// No PROXY header of an accepted version starts here.
    Missing,
    /// It starts like one but breaks the rules (what rule).
    Invalid(&'static str),
    /// It is longer than ringway takes.
    TooLarge,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Missing => f.write_str("no PROXY protocol header"),
            Error::Invalid(why) => write!(f, "invalid PROXY protocol header: {why}"),
            Error::TooLarge => f.write_str("PROXY protocol header too large"),
        }
    }
}

/// The longest v1 line, CRLF included (the specification's bound).
pub const MAX_V1: usize = 107;
/// The most bytes a v2 header may carry after its 16-byte head (addresses and TLVs).
pub const MAX_V2_BODY: usize = 4096;
/// v2's signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";

/// Looks at the bytes received so far for a header of an accepted version.
pub fn parse(buf: &[u8], accept: Accept) -> Result<Parsed, Error> {
    let v1 = accept != Accept::V2 && could_be(buf, V1_PREFIX);
    let v2 = accept != Accept::V1 && could_be(buf, V2_SIGNATURE);
    if v1 {
        return parse_v1(buf);
    }
    if v2 {
        return parse_v2(buf);
    }
    Err(Error::Missing)
}

/// `buf` is, so far, the start of `prefix` (or starts with all of it).
fn could_be(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let Some(lf) = buf.iter().take(MAX_V1).position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_V1 {
            Err(Error::TooLarge)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = &buf[..lf + 1];
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(Error::Invalid("v1 line does not end with CRLF"));
    };
    let body = &body[V1_PREFIX.len()..];
    let text = std::str::from_utf8(body).map_err(|_| Error::Invalid("v1 line is not ASCII"))?;
    let mut parts = text.split(' ');
    let family = parts.next().unwrap_or_default();
    let header = match family {
        // Whatever follows UNKNOWN is to be ignored.
        "UNKNOWN" => Header {
            version: Some(Version::V1),
            ..Header::default()
        },
        "TCP4" | "TCP6" => {
            let fields: Vec<&str> = parts.collect();
            let [src, dst, sport, dport] = fields[..] else {
                return Err(Error::Invalid("v1 needs two addresses and two ports"));
            };
            let ip = |s: &str| -> Result<IpAddr, Error> {
                let ip = if family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| Error::Invalid("v1 address does not match its family"))
            };
            Header {
                version: Some(Version::V1),
                source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
                ..Header::default()
            }
        }
        _ => return Err(Error::Invalid("v1 family is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Parsed::Done(header, lf + 1))
}

/// A v1 port: 0 to 65535, decimal, no sign, no leading zero.
fn port(s: &str) -> Result<u16, Error> {
    let bad = Error::Invalid("v1 port is not 0 to 65535 in decimal");
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let ver_cmd = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(Error::Invalid("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::Invalid("v2 command is not LOCAL or PROXY")),
    };
    if len > MAX_V2_BODY {
        return Err(Error::TooLarge);
    }
    if buf.len() < 16 + len {
        return Ok(Parsed::Incomplete);
    }
    let whole = &buf[..16 + len];
    let body = &whole[16..];
    // Address block by family (high nibble) and transport (low nibble).
    let addr_len = match family >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(Error::Invalid("v2 address family is unknown")),
    };
    if family & 0x0f > 2 {
        return Err(Error::Invalid("v2 transport is unknown"));
    }
    if body.len() < addr_len {
        return Err(Error::Invalid("v2 address block does not fit"));
    }
    let mut header = Header {
        version: Some(Version::V2),
        ..Header::default()
    };
    // Only a stream over IPv4 or IPv6 names a client ringway can use; LOCAL names none.
    let stream = family & 0x0f == 1;
    if !local && stream {
        let a = &body[..addr_len];
        let v4 = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
        let v6 = |at: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(o))
        };
        // Source, destination, and where the two ports start; Unix sockets name no client.
        let addresses = match family >> 4 {
            1 => Some((v4(0), v4(4), 8)),
            2 => Some((v6(0), v6(16), 32)),
            _ => None,
        };
        if let Some((src, dst, ports)) = addresses {
            let p = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            header.source = Some(SocketAddr::new(src, p(ports)));
            header.destination = Some(SocketAddr::new(dst, p(ports + 2)));
        }
    }
    tlvs(&body[addr_len..], whole, &mut header)?;
    Ok(Parsed::Done(header, whole.len()))
}

/// Reads v2's TLVs into `header`; `whole` is the header, for the CRC32C check.
fn tlvs(mut rest: &[u8], whole: &[u8], header: &mut Header) -> Result<(), Error> {
    while !rest.is_empty() {
        // Where this TLV's value starts in the header.
        let value_at = whole.len() - rest.len() + 3;
        let (kind, value, next) = tlv(rest)?;
        match kind {
            0x01 => header.alpn = Some(value.to_vec()),
            0x02 => header.authority = Some(value.to_vec()),
            0x03 => {
                // CRC32C of the whole header with this value zeroed.
                let [a, b, c, d] = value else {
                    return Err(Error::Invalid("v2 CRC32C is not 4 bytes"));
                };
                let mut copy = whole.to_vec();
                copy[value_at..value_at + 4].fill(0);
                if crc32c(&copy) != u32::from_be_bytes([*a, *b, *c, *d]) {
                    return Err(Error::Invalid("v2 CRC32C does not match"));
                }
            }
            0x20 => header.ssl = Some(ssl(value)?),
            _ => {}
        }
        rest = next;
    }
    Ok(())
}

/// One TLV at the front of `buf`: its type, value, and what follows.
fn tlv(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), Error> {
    if buf.len() < 3 {
        return Err(Error::Invalid("v2 TLV is cut short"));
    }
    let len = usize::from(u16::from_be_bytes([buf[1], buf[2]]));
    let end = 3 + len;
    if buf.len() < end {
        return Err(Error::Invalid("v2 TLV does not fit"));
    }
    Ok((buf[0], &buf[3..end], &buf[end..]))
}

/// `PP2_TYPE_SSL`: client bits, the verify result, then sub-TLVs.
fn ssl(value: &[u8]) -> Result<Ssl, Error> {
    if value.len() < 5 {
        return Err(Error::Invalid("v2 SSL TLV is cut short"));
    }
    let mut out = Ssl {
        client: value[0],
        verified: value[1..5] == [0, 0, 0, 0],
        ..Ssl::default()
    };
    let mut rest = &value[5..];
    while !rest.is_empty() {
        let (kind, v, next) = tlv(rest)?;
        match kind {
            0x21 => out.version = Some(v.to_vec()),
            0x22 => out.cn = Some(v.to_vec()),
            _ => {}
        }
        rest = next;
    }
    Ok(out)
}

/// The header that says a connection comes from `source` and was made to `destination`
/// (for `upstreams[].proxy_protocol`). Mixed families (an IPv4 client on an IPv6
/// listener, say) are sent as `UNKNOWN` (v1) or `LOCAL` (v2): the receiver then keeps its
/// own view.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    let same = source.is_ipv4() == destination.is_ipv4();
    match version {
        Version::V1 => {
            use std::io::Write;
            let _ = match (same, source.ip()) {
                (false, _) => write!(out, "PROXY UNKNOWN\r\n"),
                (true, IpAddr::V4(_)) => write!(
                    out,
                    "PROXY TCP4 {} {} {} {}\r\n",
                    source.ip(),
                    destination.ip(),
                    source.port(),
                    destination.port()
                ),
                (true, IpAddr::V6(_)) => write!(
                    out,
                    "PROXY TCP6 {} {} {} {}\r\n",
                    source.ip(),
                    destination.ip(),
                    source.port(),
                    destination.port()
                ),
            };
        }
        Version::V2 => {
            out.extend_from_slice(V2_SIGNATURE);
            let (cmd, family, len) = match (same, source.ip()) {
                (false, _) => (0x20, 0x00, 0u16),
                (true, IpAddr::V4(_)) => (0x21, 0x11, 12),
                (true, IpAddr::V6(_)) => (0x21, 0x21, 36),
            };
            out.extend_from_slice(&[cmd, family]);
            out.extend_from_slice(&len.to_be_bytes());
            if same {
                for ip in [source.ip(), destination.ip()] {
                    match ip {
                        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                    }
                }
                out.extend_from_slice(&source.port().to_be_bytes());
                out.extend_from_slice(&destination.port().to_be_bytes());
            }
        }
    }
}

/// CRC32C (Castagnoli), bit by bit: headers are small and rarely carry one.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8], accept: Accept) -> (Header, usize) {
        match parse(buf, accept) {
            Ok(Parsed::Done(h, n)) => (h, n),
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(cmd);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn v4_block() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_lines_give_the_client_and_the_bytes_they_took() {
        let (h, n) = done(
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n",
            Accept::V1,
        );
        assert_eq!(n, 41);
        assert_eq!(h.source, Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(h.destination, Some("10.0.0.1:443".parse().unwrap()));
        let (h, _) = done(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n",
            Accept::Any,
        );
        assert_eq!(h.source, Some("[2001:db8::7]:1".parse().unwrap()));
        let (h, n) = done(b"PROXY UNKNOWN ffff::1 whatever\r\n", Accept::V1);
        assert_eq!((h.source, n), (None, 32));
        assert_eq!(h.version, Some(Version::V1));
    }

    #[test]
    fn v1_waits_for_its_line_and_refuses_what_breaks_the_rules() {
        for part in [
            &b"P"[..],
            b"PROXY",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 44",
        ] {
            assert_eq!(parse(part, Accept::V1), Ok(Parsed::Incomplete), "{part:?}");
        }
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\n"[..],
            b"PROXY TCP4 192.0.2.7  10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 51234 443\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 51234 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 0443 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443 9\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 51234 443\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(
                matches!(parse(bad, Accept::V1), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(parse(&long, Accept::V1), Err(Error::TooLarge));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n", Accept::Any),
            Err(Error::Missing)
        );
        assert_eq!(parse(b"PROXY TCP4 ", Accept::V2), Err(Error::Missing));
    }

    #[test]
    fn v2_headers_give_addresses_and_tlvs() {
        let (h, n) = done(&v2(0x21, 0x11, &v4_block()), Accept::V2);
        assert_eq!(n, 28);
        assert_eq!(h.source, Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(h.destination, Some("10.0.0.1:443".parse().unwrap()));
        let mut six = Vec::new();
        six.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&[0, 80, 1, 187]);
        let (h, _) = done(&v2(0x21, 0x21, &six), Accept::Any);
        assert_eq!(h.source, Some("[2001:db8::7]:80".parse().unwrap()));
        // LOCAL: the balancer's own connection (a health check): no client.
        let (h, n) = done(&v2(0x20, 0x00, &[]), Accept::V2);
        assert_eq!((h.source, n), (None, 16));
        // TLVs: ALPN, authority, SSL with its sub-TLVs, a NOOP; then the request bytes.
        let mut body = v4_block();
        body.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        body.extend_from_slice(&[0x02, 0, 11]);
        body.extend_from_slice(b"api.example");
        let mut ssl = vec![0x01, 0, 0, 0, 0];
        ssl.extend_from_slice(&[0x21, 0, 7]);
        ssl.extend_from_slice(b"TLSv1.3");
        ssl.extend_from_slice(&[0x22, 0, 3]);
        ssl.extend_from_slice(b"bob");
        body.extend_from_slice(&[0x20, 0, ssl.len() as u8]);
        body.extend_from_slice(&ssl);
        body.extend_from_slice(&[0x04, 0, 1, 0]);
        let mut wire = v2(0x21, 0x11, &body);
        let header_len = wire.len();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (h, n) = done(&wire, Accept::V2);
        assert_eq!(n, header_len);
        assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(h.authority.as_deref(), Some(&b"api.example"[..]));
        let s = h.ssl.expect("ssl");
        assert_eq!((s.client, s.verified), (1, true));
        assert_eq!(s.version.as_deref(), Some(&b"TLSv1.3"[..]));
        assert_eq!(s.cn.as_deref(), Some(&b"bob"[..]));
    }

    #[test]
    fn v2_checks_its_crc32c() {
        let mut body = v4_block();
        body.extend_from_slice(&[0x03, 0, 4, 0, 0, 0, 0]);
        let mut wire = v2(0x21, 0x11, &body);
        let crc = crc32c(&wire);
        let at = wire.len() - 4;
        wire[at..].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(parse(&wire, Accept::V2), Ok(Parsed::Done(..))));
        wire[20] ^= 1;
        assert_eq!(
            parse(&wire, Accept::V2),
            Err(Error::Invalid("v2 CRC32C does not match"))
        );
        // The check value of CRC32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn v2_waits_for_all_of_it_and_refuses_what_breaks_the_rules() {
        let wire = v2(0x21, 0x11, &v4_block());
        for n in 0..wire.len() {
            assert_eq!(parse(&wire[..n], Accept::V2), Ok(Parsed::Incomplete), "{n}");
        }
        let bad_tlv = [v4_block(), vec![0x01, 0, 9, b'h']].concat();
        let bad_ssl = [v4_block(), vec![0x20, 0, 8, 1, 0, 0, 0, 0, 0x21, 0, 9]].concat();
        for (wire, why) in [
            (v2(0x11, 0x11, &v4_block()), "version"),
            (v2(0x22, 0x11, &v4_block()), "command"),
            (v2(0x21, 0x41, &v4_block()), "family"),
            (v2(0x21, 0x13, &v4_block()), "transport"),
            (v2(0x21, 0x21, &v4_block()), "an IPv6 block in 12 bytes"),
            (v2(0x21, 0x11, &bad_tlv), "a TLV longer than the header"),
            (
                v2(0x21, 0x11, &bad_ssl),
                "an SSL sub-TLV longer than its TLV",
            ),
            (
                v2(0x21, 0x11, &[v4_block(), vec![0x01, 0]].concat()),
                "a cut TLV",
            ),
        ] {
            assert!(
                matches!(parse(&wire, Accept::V2), Err(Error::Invalid(_))),
                "{why}"
            );
        }
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge, Accept::Any), Err(Error::TooLarge));
        assert_eq!(parse(&wire, Accept::V1), Err(Error::Missing));
    }

    #[test]
    fn encoded_headers_parse_back_to_what_was_said() {
        let pairs = [
            ("192.0.2.7:51234", "10.0.0.1:443"),
            ("[2001:db8::7]:1", "[2001:db8::1]:65535"),
        ];
        for (src, dst) in pairs {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            for version in [Version::V1, Version::V2] {
                let mut out = Vec::new();
                encode(version, src, dst, &mut out);
                let (h, n) = done(&out, Accept::Any);
                assert_eq!(
                    (h.source, h.destination, n),
                    (Some(src), Some(dst), out.len())
                );
                assert_eq!(h.version, Some(version));
            }
        }
        // Mixed families: no address, the receiver keeps its own.
        let (src, dst) = ("192.0.2.7:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        for version in [Version::V1, Version::V2] {
            let mut out = Vec::new();
            encode(version, src, dst, &mut out);
            assert_eq!(done(&out, Accept::Any).0.source, None);
        }
    }

    #[test]
    fn no_input_prefix_panics_or_is_taken_for_more_than_it_is() {
        // Every prefix of valid and mutated headers: never a panic, and a Done never
        // claims more bytes than there are.
        let mut seeds = vec![
            v2(0x21, 0x11, &v4_block()),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n".to_vec(),
        ];
        let base = seeds[0].clone();
        for i in 0..base.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut m = base.clone();
                m[i] ^= flip;
                seeds.push(m);
            }
        }
        for s in &seeds {
            for n in 0..=s.len() {
                if let Ok(Parsed::Done(_, used)) = parse(&s[..n], Accept::Any) {
                    assert!(used <= n);
                }
            }
        }
    }
}
