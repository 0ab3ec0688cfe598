//! Blocking rules, compiled: CIDR sets, globs, path patterns, header and query-parameter
//! rules. Every matcher is allocation-free and bounded: a glob runs as a bit-parallel NFA
//! (no backtracking), a CIDR set costs one hash probe per distinct prefix length.

use std::net::IpAddr;

use ahash::AHashSet;
use bytes::Bytes;

use crate::config::{Cidr, Glob};

/// CIDR blocks grouped by prefix length: a lookup is one hash probe per distinct length.
#[derive(Debug, Default)]
pub struct CidrSet {
    v4: Vec<(u8, AHashSet<u32>)>,
    v6: Vec<(u8, AHashSet<u128>)>,
}

impl CidrSet {
    pub fn build(cidrs: &[Cidr]) -> CidrSet {
        let mut set = CidrSet::default();
        for c in cidrs {
            match c.addr {
                IpAddr::V4(a) => {
                    let m = mask4(c.prefix);
                    entry(&mut set.v4, c.prefix).insert(u32::from(a) & m);
                }
                IpAddr::V6(a) => {
                    let m = mask6(c.prefix);
                    entry(&mut set.v6, c.prefix).insert(u128::from(a) & m);
                }
            }
        }
        // Longest prefixes first: more specific blocks are the likelier hits.
        set.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
        set.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
        set
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|(p, s)| s.contains(&(a & mask4(*p))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|(p, s)| s.contains(&(a & mask6(*p))))
            }
        }
    }
}

fn entry<T>(v: &mut Vec<(u8, AHashSet<T>)>, prefix: u8) -> &mut AHashSet<T> {
    let i = match v.iter().position(|(p, _)| *p == prefix) {
        Some(i) => i,
        None => {
            v.push((prefix, AHashSet::default()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// A denied-path pattern.
#[derive(Debug, Clone)]
pub enum PathPattern {
    Exact { path: Vec<u8>, fold: bool },
    Prefix { prefix: Vec<u8>, fold: bool },
    Glob(Glob),
}

impl PathPattern {
    pub fn is_match(&self, path: &[u8]) -> bool {
        match self {
            PathPattern::Exact { path: p, fold } => eq(p, path, *fold),
            PathPattern::Prefix { prefix, fold } => {
                path.len() >= prefix.len() && eq(prefix, &path[..prefix.len()], *fold)
            }
            PathPattern::Glob(g) => g.is_match(path),
        }
    }
}

fn eq(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// A rule on one header field (all its occurrences) or one query parameter.
#[derive(Debug, Clone)]
pub struct FieldRule {
    /// Lowercase for headers; as written for query parameters (their names are
    /// case-sensitive).
    pub name: Bytes,
    pub required: bool,
    pub forbidden: bool,
    pub allow: Vec<Glob>,
    pub deny: Vec<Glob>,
}

impl FieldRule {
    /// True when the values seen (each passed to `value_ok` in turn by the caller) and
    /// their count satisfy the rule.
    pub fn presence_ok(&self, count: usize) -> bool {
        !(self.required && count == 0 || self.forbidden && count > 0)
    }

    pub fn value_ok(&self, v: &[u8]) -> bool {
        if self.deny.iter().any(|g| g.is_match(v)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|g| g.is_match(v))
    }
}

/// Iterates `name=value` pairs of a raw query (with or without the leading '?'); a pair
/// without '=' has an empty value. Bytes are raw (still percent-encoded).
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let q = query.strip_prefix(b"?").unwrap_or(query);
    q.split(|&b| b == b'&').filter(|p| !p.is_empty()).map(|p| {
        match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &p[p.len()..]),
        }
    })
}

/// Percent-decodes `raw` into `out` (cleared first), '+' as space; a malformed escape is
/// kept as is.
pub fn percent_decode(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                raw.get(i + 1).and_then(|c| hex(*c)),
                raw.get(i + 2).and_then(|c| hex(*c)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_sets_match_v4_v6_and_mapped_addresses() {
        let cidrs: Vec<Cidr> = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]
            .iter()
            .map(|c| Cidr::parse(c).unwrap())
            .collect();
        let s = CidrSet::build(&cidrs);
        let yes = [
            "10.1.2.3",
            "192.168.1.7",
            "2001:db8::5",
            "::1",
            "::ffff:10.9.9.9",
        ];
        let no = ["11.0.0.1", "192.168.1.8", "2001:db9::1", "::2", "127.0.0.1"];
        for a in yes {
            assert!(s.contains(a.parse().unwrap()), "{a}");
        }
        for a in no {
            assert!(!s.contains(a.parse().unwrap()), "{a}");
        }
        assert!(!CidrSet::default().contains("1.2.3.4".parse().unwrap()));
        let all = CidrSet::build(&[Cidr::parse("0.0.0.0/0").unwrap()]);
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn path_patterns_fold_case_unless_told() {
        let p = PathPattern::Prefix {
            prefix: b"/internal".to_vec(),
            fold: true,
        };
        assert!(p.is_match(b"/INTERNAL/x"));
        assert!(!p.is_match(b"/intern"));
        let e = PathPattern::Exact {
            path: b"/.env".to_vec(),
            fold: false,
        };
        assert!(e.is_match(b"/.env"));
        assert!(!e.is_match(b"/.ENV"));
    }

    #[test]
    fn query_pairs_and_decoding() {
        let v: Vec<_> = query_pairs(b"?a=1&&b&c=x%20y+z").collect();
        assert_eq!(
            v,
            vec![
                (&b"a"[..], &b"1"[..]),
                (&b"b"[..], &b""[..]),
                (&b"c"[..], &b"x%20y+z"[..])
            ]
        );
        let mut out = Vec::new();
        percent_decode(b"x%20y+z%zz%4", &mut out);
        assert_eq!(out, b"x y z%zz%4");
    }
}
