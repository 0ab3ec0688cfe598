//! IPv4/IPv6 CIDR blocks ("10.0.0.0/8", "::1/128", or a bare address).

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR block like \"10.0.0.0/8\"");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                let v: u8 = p.parse().map_err(|_| bad())?;
                if v > max {
                    return Err(format!("{s:?}: prefix length {v} is above {max}"));
                }
                v
            }
            Some(_) => return Err(bad()),
        };
        Ok(Cidr { addr, prefix })
    }

    /// IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ipv4_blocks_match_their_addresses_only() {
        let c = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.9.9")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("valid")
            .contains(ip("8.8.8.8")));
        assert!(Cidr::parse("127.0.0.1")
            .expect("valid")
            .contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("127.0.0.1")
            .expect("valid")
            .contains(ip("127.0.0.2")));
    }

    #[test]
    fn ipv6_blocks_match_their_addresses_only() {
        let c = Cidr::parse("2001:db8::/32").expect("valid");
        assert!(c.contains(ip("2001:db8::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("10.0.0.1")));
    }

    #[test]
    fn malformed_blocks_are_rejected() {
        for s in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(s).is_err(), "{s:?}");
        }
    }
}
