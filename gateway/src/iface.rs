//! Interfaces as the control plane sees them, and the trait both datapaths
//! implement ([`Datapath`]; the implementations live in `crate::datapath`).
//!
//! The contract is shaped after what the Linux kernel does, so that the
//! kernel implementation (XFRM states and policies, an ip_gre link per
//! spoke, routes via rtnetlink) and the userspace one (ESP-in-UDP + GRE +
//! TUN) are interchangeable:
//!
//! - a virtual-access is cloned from a virtual template when a spoke's
//!   session comes up (IOS `Virtual-AccessN`), unnumbered, with the
//!   template's MTU and MSS clamp; a spoke's static tunnel (`TunnelN`)
//!   shares the id space ([`VaId`]);
//! - an SA pair (inbound and outbound ESP) is installed on it;
//! - routes point at it: the spoke's pool address /32 first, then the
//!   prefixes learned from the spoke;
//! - the datapath reports events (hairpins, NHRP packets) and counters
//!   (`gateway_report::interfaces`).
//!
//! `crate::datapath::fake::RecordingDatapath` records the calls for
//! control-plane tests.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
};

use gateway_report::interfaces::DatapathReport;
use serde::{Deserialize, Serialize};

use crate::{
    ipsec::{Encr, Integ, Mode, SaKeys},
    net::Ipv4Prefix,
};

/// An interface handle: a hub's `Virtual-AccessN` (one per session, numbered
/// from 1) or a spoke's static `TunnelN`. Both kinds share one number space,
/// the tunnels at the top of it, so a handle says which it is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct VaId(u32);

impl VaId {
    /// Handles from here up are static tunnels (`TunnelN` is `TUNNEL_BASE +
    /// N`); below it, virtual-access numbers.
    const TUNNEL_BASE: u32 = 0x8000_0000;

    /// `Virtual-Access{n}`.
    pub const fn virtual_access(n: u32) -> Self {
        assert!(n < Self::TUNNEL_BASE, "virtual-access number out of range");
        VaId(n)
    }

    /// `Tunnel{n}`, a spoke's static tunnel to its hub.
    pub const fn tunnel(n: u16) -> Self {
        VaId(Self::TUNNEL_BASE + n as u32)
    }

    /// N of `TunnelN`, if this is a static tunnel.
    pub fn tunnel_number(self) -> Option<u16> {
        // TUNNEL_BASE + u16::MAX is the largest tunnel handle made.
        u16::try_from(self.0.checked_sub(Self::TUNNEL_BASE)?).ok()
    }

    /// The raw handle, for maps keyed by it outside this process's types
    /// and for reports (the kernel's link names use
    /// [`VaId::tunnel_number`] instead).
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The handle a report's raw number names.
    pub const fn from_raw(raw: u32) -> Self {
        VaId(raw)
    }
}

impl fmt::Display for VaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tunnel_number() {
            Some(n) => write!(f, "Tunnel{n}"),
            None => write!(f, "Virtual-Access{}", self.0),
        }
    }
}

/// What a virtual-access is cloned from, and whom it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualAccessSpec {
    pub id: VaId,
    /// The interface name operators see (`Virtual-Access3`, `Tunnel1`).
    pub name: String,
    /// The template it was cloned from (`virtual_template.N`), if any.
    pub template: Option<u16>,
    /// IOS `ip unnumbered`: the address this end uses on the interface (the
    /// source of the ICMP errors it sends).
    pub unnumbered: Ipv4Addr,
    pub mtu: u16,
    /// IOS `ip tcp adjust-mss`: SYNs in both directions are clamped to it.
    pub tcp_adjust_mss: Option<u16>,
    /// IOS `ip nhrp network-id`: hairpin events between two interfaces with
    /// the same id are what NHRP redirects are made of.
    pub nhrp_network_id: Option<u32>,
    /// The peer's address inside the tunnel (its pool address), if it has one.
    pub peer_inner: Option<Ipv4Addr>,
    /// The tunnel's outer endpoints (the ESP and, with NAT-T, UDP ones).
    pub local_outer: SocketAddrV4,
    pub remote_outer: SocketAddrV4,
}

/// How long an SA may be used (RFC 4301 section 4.4.2.1): past a soft
/// limit the datapath reports [`DatapathEvent::SaExpired`] with `hard:
/// false` once (time to rekey); past a hard limit it stops using the SA,
/// removes it and reports `hard: true`. `None` is no limit. Bytes count
/// what the SA carried in either direction (IOS `kilobytes` counts both
/// ways too), as the kernel's XFRM byte limits do for each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaLifetime {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
    pub soft_seconds: Option<u64>,
    pub hard_seconds: Option<u64>,
}

/// An inbound and outbound ESP SA, as IKE negotiated them (RFC 7296
/// section 2.17 for the keys, RFC 3948 for the UDP encapsulation).
#[derive(Clone, Debug)]
pub struct SaPair {
    pub va: VaId,
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub inbound: SaKeys,
    pub outbound: SaKeys,
    /// Transport: GRE between the outer addresses (FlexVPN's GRE mode).
    /// Tunnel: the inner IPv4 packet directly (strongSwan spokes).
    pub mode: Mode,
    /// UDP encapsulation ports (local, remote); `None` is raw ESP.
    pub encap: Option<(u16, u16)>,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    /// Extended (64-bit) sequence numbers (RFC 4303 section 2.2.1): the
    /// high 32 bits are not sent but enter the ICV, and the replay window
    /// follows them (Appendix A). Without ESN the SA must be rekeyed before
    /// the 32-bit counter wraps; the datapath reports a soft expiry when it
    /// nears 2^32 (or 2^64) so that it is.
    pub esn: bool,
    pub lifetime: SaLifetime,
    /// Keep sending on the older pair of the interface until it is removed
    /// (then this one takes over): set on the responder of a rekey, whose
    /// peer installs the new inbound SA only when our response reaches it
    /// (RFC 7296 section 2.8; strongSwan does the same). The initiator's
    /// new pair takes the outbound traffic at once.
    pub defer_outbound: bool,
}

/// Where a route leads: a virtual-access, and the next hop inside it
/// (the spoke's pool address for BGP-learned routes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Prefix,
    pub va: VaId,
    pub next_hop: Option<Ipv4Addr>,
}

/// A packet came in on one virtual-access and left through another with
/// the same NHRP network id: what an NHRP redirect is sent for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hairpin {
    pub from: VaId,
    pub to: VaId,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The start of the inner packet (IP header and the first bytes after
    /// it), which a Traffic Indication carries back. A fixed array: events
    /// are made on the per-packet path, which does not allocate.
    pub head: [u8; HAIRPIN_HEAD_LEN],
    pub head_len: u8,
}

/// How much of a hairpinned packet an event keeps: an IPv4 header with
/// options and the first 8 bytes beyond it (RFC 792 quoting). The tc
/// program copies the same amount.
pub const HAIRPIN_HEAD_LEN: usize = gateway_common::hairpin::HEAD_LEN;

impl Hairpin {
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len).min(HAIRPIN_HEAD_LEN)]
    }
}

/// A virtual-access that reaches another NHRP station, as the sessions
/// report it to NHRP (a spoke's shortcut tunnels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerTunnel {
    pub va: VaId,
    /// The peer's outer address.
    pub nbma: Ipv4Addr,
    /// We dialled it (else the peer did).
    pub initiated: bool,
}

/// IKE datagrams from UDP 4500 (marker removed), with their source.
pub type IkeDatagrams = tokio::sync::mpsc::Receiver<(SocketAddrV4, Vec<u8>)>;

/// What a datapath that owns UDP 4500 for ESP-in-UDP (the userspace one)
/// passes on to IKE: the IKE datagrams that arrived there (marker removed),
/// and the socket to answer on (the caller adds the marker).
pub struct IkeOn4500 {
    pub rx: IkeDatagrams,
    pub tx: std::net::UdpSocket,
}

/// What the datapath hands to the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatapathEvent {
    Hairpin(Hairpin),
    /// A GRE packet with protocol 0x2001 (NHRP) from a virtual-access.
    Nhrp {
        va: VaId,
        packet: Vec<u8>,
    },
    /// The SA pair with inbound SPI `spi_in` reached a soft limit (`hard:
    /// false`: rekey it; also sent when its sequence number nears the
    /// wrap) or a hard one (`hard: true`: the datapath has removed it). Each
    /// is reported once per SA.
    SaExpired {
        va: VaId,
        spi_in: u32,
        hard: bool,
    },
    /// Authenticated ESP for `spi_in` came from `remote`, which is not the
    /// SA's peer endpoint: the peer's NAT mapping changed (RFC 7296 section
    /// 2.23, RFC 3948). The datapath keeps sending to the old endpoint
    /// until the control plane calls [`Datapath::update_peer`]. Reported at
    /// most once a second per SA while it lasts.
    PeerMoved {
        va: VaId,
        spi_in: u32,
        remote: SocketAddrV4,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{0} does not exist")]
    NoSuchInterface(VaId),
    #[error("{0} already exists")]
    InterfaceExists(VaId),
    #[error("SPI {0:#010x} is already installed")]
    SpiInUse(u32),
    #[error("no SA with inbound SPI {0:#010x}")]
    NoSuchSa(u32),
    #[error("no route {0}")]
    NoSuchRoute(Ipv4Prefix),
    #[error("ESP keys: {0}")]
    Keys(String),
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// The datapath as the control plane sees it. Calls are rare (a session
/// coming or going) and may block briefly (netlink); the packets themselves
/// never pass through this trait.
pub trait Datapath: Send + Sync {
    /// `kernel` or `userspace`, for logs and `show`.
    fn kind(&self) -> &'static str;

    fn create_virtual_access(&self, spec: &VirtualAccessSpec) -> Result<(), DatapathError>;

    /// Removes the interface with its SAs and routes.
    fn remove_virtual_access(&self, id: VaId) -> Result<(), DatapathError>;

    /// Installs an SA pair on `va`. If `va` already has pairs (a rekey,
    /// RFC 7296 section 2.8) the new one is added beside them: outbound
    /// traffic moves to the newest pair at once, and the older inbound SAs
    /// keep decrypting until `remove_sa` names them (make-before-break).
    fn install_sa(&self, sa: &SaPair) -> Result<(), DatapathError>;

    /// Removes the pair whose inbound SPI is `spi_in`, and only it. If it
    /// carried the outbound traffic, the newest remaining pair does.
    fn remove_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError>;

    /// The pair whose inbound SPI is `spi_in` was deleted after a rekey but
    /// lingers: it sends no more (the newest other pair does, deferred or
    /// not) and keeps decrypting until `remove_sa` names it.
    fn retire_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError>;

    /// The peer's outer endpoint moved (NAT rebinding, RFC 7296 section
    /// 2.23): the interface and all its SAs now send to `remote` (and, with
    /// UDP encapsulation, accept it as the source). A datapath that cannot
    /// move an address (the kernel's XFRM states name it) says so with
    /// `Unsupported`; a port change it must support.
    fn update_peer(&self, va: VaId, remote: SocketAddrV4) -> Result<(), DatapathError>;

    fn add_route(&self, route: &Route) -> Result<(), DatapathError>;

    fn remove_route(&self, route: &Route) -> Result<(), DatapathError>;

    /// The route the datapath would forward `addr` by (longest prefix
    /// match), e.g. to resolve a BGP next hop to the virtual-access that
    /// reaches it.
    fn lookup(&self, addr: Ipv4Addr) -> Option<Route>;

    /// Sends an NHRP packet (GRE protocol 0x2001) to the peer of `va`.
    fn send_nhrp(&self, va: VaId, packet: &[u8]) -> Result<(), DatapathError>;

    /// Interfaces, SAs and counters, for `show interfaces virtual-access`.
    fn report(&self) -> DatapathReport;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn interface_handles_say_what_they_are() {
        let va = VaId::virtual_access(7);
        assert_eq!(va.tunnel_number(), None);
        assert_eq!(va.to_string(), "Virtual-Access7");
        let t = VaId::tunnel(1);
        assert_eq!(t.tunnel_number(), Some(1));
        assert_eq!(t.to_string(), "Tunnel1");
        assert_eq!(VaId::tunnel(u16::MAX).tunnel_number(), Some(u16::MAX));
        assert!(va < t, "virtual-access numbers sort before the tunnels");
        // Reports carry the raw number.
        assert_eq!(serde_json::to_string(&va).unwrap(), "7");
    }
}
