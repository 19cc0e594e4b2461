//! What SAs and policies share: traffic selectors, the mode, lifetimes.

use std::{fmt, io, net::Ipv4Addr};

use super::{
    AF_INET, XFRM_INF,
    codec::{
        get_addr, get_be16, get_u16, get_u64, invalid_data, put_addr, put_be16, put_u16, put_u64,
    },
    layout as l,
};
use crate::net::{IPPROTO_GRE, Ipv4Prefix};

/// Transport or tunnel mode (`XFRM_MODE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XfrmMode {
    /// ESP between the two hosts (GRE over ESP: the hub's virtual-access).
    Transport,
    /// ESP with an inner IP header (a spoke that asks for tunnel mode).
    Tunnel,
}

impl XfrmMode {
    pub(super) fn to_kernel(self) -> u8 {
        match self {
            XfrmMode::Transport => 0,
            XfrmMode::Tunnel => 1,
        }
    }

    pub(super) fn from_kernel(mode: u8) -> io::Result<Self> {
        match mode {
            0 => Ok(XfrmMode::Transport),
            1 => Ok(XfrmMode::Tunnel),
            other => Err(invalid_data(&format!("XFRM mode {other}"))),
        }
    }
}

impl fmt::Display for XfrmMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XfrmMode::Transport => "transport",
            XfrmMode::Tunnel => "tunnel",
        })
    }
}

/// Traffic selector (`struct xfrm_selector`), IPv4: source and destination
/// prefixes, IP protocol (0 for any) and ports (0 for any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmSelector {
    pub src: Ipv4Prefix,
    pub dst: Ipv4Prefix,
    /// IP protocol, 0 for any.
    pub proto: u8,
    /// Source port (TCP/UDP/SCTP), 0 for any.
    pub sport: u16,
    /// Destination port, 0 for any.
    pub dport: u16,
}

impl XfrmSelector {
    /// GRE from `src` to `dst` (both /32): what a transport-mode SA and its
    /// policies carry for a virtual-access (GRE over ESP between the outer
    /// addresses).
    pub fn gre(src: Ipv4Addr, dst: Ipv4Addr) -> XfrmSelector {
        XfrmSelector {
            src: host(src),
            dst: host(dst),
            proto: IPPROTO_GRE,
            sport: 0,
            dport: 0,
        }
    }

    /// Any traffic from `src` to `dst` (a tunnel-mode policy).
    pub fn between(src: Ipv4Prefix, dst: Ipv4Prefix) -> XfrmSelector {
        XfrmSelector {
            src,
            dst,
            proto: 0,
            sport: 0,
            dport: 0,
        }
    }

    pub(super) fn encode(&self, out: &mut [u8]) {
        put_addr(&mut out[l::SEL_DADDR..], self.dst.addr);
        put_addr(&mut out[l::SEL_SADDR..], self.src.addr);
        // A port of 0 means any: mask 0 then, else the whole port.
        let mask = |port: u16| if port == 0 { 0 } else { u16::MAX };
        put_be16(out, l::SEL_DPORT, self.dport);
        put_be16(out, l::SEL_DPORT_MASK, mask(self.dport));
        put_be16(out, l::SEL_SPORT, self.sport);
        put_be16(out, l::SEL_SPORT_MASK, mask(self.sport));
        put_u16(out, l::SEL_FAMILY, AF_INET);
        out[l::SEL_PREFIXLEN_D] = self.dst.len;
        out[l::SEL_PREFIXLEN_S] = self.src.len;
        out[l::SEL_PROTO] = self.proto;
        // ifindex and user stay 0: any.
    }

    pub(super) fn decode(b: &[u8]) -> io::Result<XfrmSelector> {
        let family = get_u16(b, l::SEL_FAMILY);
        if family != AF_INET && family != 0 {
            return Err(invalid_data(&format!(
                "a selector of address family {family}"
            )));
        }
        let prefix = |addr: Ipv4Addr, len: u8| {
            Ipv4Prefix::new(addr, len)
                .ok_or_else(|| invalid_data(&format!("a selector with prefix {addr}/{len}")))
        };
        Ok(XfrmSelector {
            src: prefix(get_addr(b, l::SEL_SADDR), b[l::SEL_PREFIXLEN_S])?,
            dst: prefix(get_addr(b, l::SEL_DADDR), b[l::SEL_PREFIXLEN_D])?,
            proto: b[l::SEL_PROTO],
            sport: get_be16(b, l::SEL_SPORT),
            dport: get_be16(b, l::SEL_DPORT),
        })
    }
}

impl fmt::Display for XfrmSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src {} dst {}", self.src, self.dst)?;
        if self.proto != 0 {
            write!(f, " proto {}", self.proto)?;
        }
        if self.sport != 0 {
            write!(f, " sport {}", self.sport)?;
        }
        if self.dport != 0 {
            write!(f, " dport {}", self.dport)?;
        }
        Ok(())
    }
}

/// An SA's lifetime limits (`struct xfrm_lifetime_cfg`). The kernel sends
/// an expire message at the soft limits and deletes the SA at the hard
/// ones; the IKE daemon rekeys before either, so these are a safety net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XfrmLifetime {
    /// Bytes, [`XFRM_INF`] for no limit.
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    /// Packets, [`XFRM_INF`] for no limit.
    pub soft_packets: u64,
    pub hard_packets: u64,
    /// Seconds since the SA was added, 0 for no limit.
    pub soft_add_seconds: u64,
    pub hard_add_seconds: u64,
}

impl Default for XfrmLifetime {
    /// No limits (what `ip xfrm state add` sets when none are named).
    fn default() -> Self {
        XfrmLifetime {
            soft_bytes: XFRM_INF,
            hard_bytes: XFRM_INF,
            soft_packets: XFRM_INF,
            hard_packets: XFRM_INF,
            soft_add_seconds: 0,
            hard_add_seconds: 0,
        }
    }
}

impl XfrmLifetime {
    /// `struct xfrm_lifetime_cfg`; the use-expires limits stay 0 (none).
    pub(super) fn encode(&self, out: &mut [u8]) {
        let fields = [
            self.soft_bytes,
            self.hard_bytes,
            self.soft_packets,
            self.hard_packets,
            self.soft_add_seconds,
            self.hard_add_seconds,
        ];
        for (i, value) in fields.into_iter().enumerate() {
            put_u64(out, i * 8, value);
        }
    }

    /// From `struct xfrm_lifetime_cfg` (the use-expires limits ignored).
    pub(super) fn decode(b: &[u8]) -> XfrmLifetime {
        XfrmLifetime {
            soft_bytes: get_u64(b, 0),
            hard_bytes: get_u64(b, 8),
            soft_packets: get_u64(b, 16),
            hard_packets: get_u64(b, 24),
            soft_add_seconds: get_u64(b, 32),
            hard_add_seconds: get_u64(b, 40),
        }
    }
}

pub(super) fn host(addr: Ipv4Addr) -> Ipv4Prefix {
    Ipv4Prefix { addr, len: 32 }
}
