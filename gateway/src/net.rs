//! Address types every module shares: IPv4 prefixes and the protocol
//! numbers and ports of what the gateway carries. The numbers are defined
//! once, in `gateway-common`, so that the XDP and tc programs use the same
//! ones; this module re-exports them for the rest of the daemon.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use gateway_common::proto::{
    ETH_P_IPV4, ETH_P_NHRP, IKE_PORT, IPPROTO_ESP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_TCP,
    IPPROTO_UDP, NATT_PORT,
};

/// BGP's TCP port (RFC 4271 section 8.2.1).
pub const BGP_PORT: u16 = 179;

/// An IPv4 prefix `a.b.c.d/len` with no host bits set (`10.1.1.0/24`, not
/// `10.1.1.1/24`), as IOS writes it in `bgp listen range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    /// The prefix, if `len <= 32` and `addr` has no bits set beyond `len`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        (len <= 32 && u32::from(addr) & !mask(len) == 0).then_some(Self { addr, len })
    }

    /// The netmask, `255.255.255.0` for a /24.
    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.len))
    }

    /// The first and last address the prefix covers.
    pub fn range(self) -> (Ipv4Addr, Ipv4Addr) {
        let first = u32::from(self.addr);
        (self.addr, Ipv4Addr::from(first | !mask(self.len)))
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.len) == u32::from(self.addr)
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(self, other: Self) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// Parses `a.b.c.d` as a /32 as well as `a.b.c.d/len`. `0.0.0.0` alone is
    /// refused: IOS reads `address 0.0.0.0` as "any address", a /32 would
    /// match nothing, so the operator has to say `0.0.0.0/0`.
    pub fn parse_host_or_prefix(s: &str) -> Result<Self, String> {
        if s.contains('/') || s.trim().contains(' ') {
            return s.parse();
        }
        let addr: Ipv4Addr = s.parse().map_err(|_| {
            format!("\"{s}\" is not an IPv4 address or prefix (a.b.c.d or a.b.c.d/len)")
        })?;
        if addr.is_unspecified() {
            return Err(
                "\"0.0.0.0\" would match no peer; for any address write \"0.0.0.0/0\" \
                 (IOS `address 0.0.0.0 0.0.0.0`)"
                    .to_owned(),
            );
        }
        Ok(Self { addr, len: 32 })
    }
}

fn mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l => u32::MAX << (32 - u32::from(l.min(32))),
    }
}

/// The prefix length of a contiguous netmask (`255.255.255.0` -> 24).
fn mask_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then(|| u8::try_from(len).unwrap_or(32))
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // IOS habit: "192.168.0.0 255.255.0.0". Say what to write instead.
        if let Some((a, m)) = s.trim().split_once(' ') {
            if let (Ok(a), Ok(m)) = (a.trim().parse::<Ipv4Addr>(), m.trim().parse::<Ipv4Addr>())
                && let Some(len) = mask_len(m)
            {
                return Err(format!(
                    "\"{s}\" is IOS address-mask notation; write \"{a}/{len}\""
                ));
            }
            return Err(format!(
                "\"{s}\" is not an IPv4 prefix (expected a.b.c.d/len)"
            ));
        }
        let Some((a, l)) = s.split_once('/') else {
            let example = if s.parse::<Ipv4Addr>().is_ok() {
                format!("\"{s}/32\" for the one address")
            } else {
                "\"10.1.1.0/24\"".to_owned()
            };
            return Err(format!(
                "\"{s}\" is not an IPv4 prefix; expected a.b.c.d/len, e.g. {example}"
            ));
        };
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("\"{s}\": \"{a}\" is not an IPv4 address"))?;
        let digits = !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit());
        let len = l
            .parse::<u8>()
            .ok()
            .filter(|n| digits && *n <= 32 && (l.len() == 1 || !l.starts_with('0')))
            .ok_or_else(|| format!("\"{s}\": prefix length \"{l}\" is not a number in 0..=32"))?;
        Self::new(addr, len).ok_or_else(|| {
            let net = Ipv4Addr::from(u32::from(addr) & mask(len));
            format!("\"{s}\" has host bits set; the prefix is \"{net}/{len}\"")
        })
    }
}

impl Serialize for Ipv4Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "an IPv4 prefix (a.b.c.d/len)", str::parse)
    }
}

/// Deserializes a string with `parse`. The parsing happens inside the
/// visitor, so TOML attributes an error to the value itself (an array
/// element, not the whole array) and reports its line.
pub(crate) fn from_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Parse<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }

    impl<T> serde::de::Visitor<'_> for Parse<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            (self.parse)(s).map_err(E::custom)
        }
    }

    d.deserialize_str(Parse { expecting, parse })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p: Ipv4Prefix = "10.1.1.0/24".parse().unwrap();
        assert_eq!(
            p,
            Ipv4Prefix {
                addr: Ipv4Addr::new(10, 1, 1, 0),
                len: 24
            }
        );
        assert_eq!(p.to_string(), "10.1.1.0/24");
        assert_eq!(p.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.range().1, Ipv4Addr::new(10, 1, 1, 255));
        assert!(p.contains(Ipv4Addr::new(10, 1, 1, 77)) && !p.contains(Ipv4Addr::new(10, 1, 2, 0)));
        assert!(p.overlaps("10.0.0.0/8".parse().unwrap()));
        assert!(!p.overlaps("10.1.2.0/24".parse().unwrap()));
        let any: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!("1.2.3.4/32".parse::<Ipv4Prefix>().unwrap().len, 32);

        let e = "10.1.1.1/24".parse::<Ipv4Prefix>().unwrap_err();
        assert!(
            e.contains("host bits set") && e.contains("\"10.1.1.0/24\""),
            "{e}"
        );
        for bad in [
            "10.1.1.0",
            "10.1.1.0/33",
            "10.1.1.0/",
            "10.1.1.0/+8",
            "10.1.1.0/08",
            "10.1.1/24",
            "x/8",
        ] {
            assert!(bad.parse::<Ipv4Prefix>().is_err(), "{bad} accepted");
        }
        assert_eq!(
            Ipv4Prefix::parse_host_or_prefix("172.16.1.1")
                .unwrap()
                .to_string(),
            "172.16.1.1/32"
        );
    }
}
