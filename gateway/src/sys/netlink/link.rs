//! Links: lookup by name and index, up/down, MTU, point-to-point GRE
//! links (the kernel datapath's virtual-access interfaces), counters.

use std::{
    io::{self, ErrorKind},
    net::Ipv4Addr,
};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoData, InfoGre, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
};

use super::Netlink;

/// A link's counters (`IFLA_STATS64`), as [`Netlink::link_stats`] reads
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// `IFNAMSIZ` less the terminating NUL: the longest link name.
const MAX_LINK_NAME: usize = 15;

impl Netlink {
    /// The index of link `name`; ENODEV (see [`crate::sys::raw_os_error`]) when
    /// there is none.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let what = || format!("looking up link {name}");
        let answers = self.request(&RouteNetlinkMessage::GetLink(msg), 0, &what)?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{}: no link in the kernel's answer", what()),
                )
            })
    }

    /// The name of link `ifindex`.
    pub fn link_name(&mut self, ifindex: u32) -> io::Result<String> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let what = || format!("looking up link {ifindex}");
        let answers = self.request(&RouteNetlinkMessage::GetLink(msg), 0, &what)?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => {
                    link.attributes.into_iter().find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name),
                        _ => None,
                    })
                }
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{}: no name in the kernel's answer", what()),
                )
            })
    }

    /// Sets the link administratively up (`ip link set dev X up`).
    pub fn set_link_up(&mut self, ifindex: u32) -> io::Result<()> {
        self.set_up_flag(ifindex, true)
    }

    /// Sets the link administratively down.
    pub fn set_link_down(&mut self, ifindex: u32) -> io::Result<()> {
        self.set_up_flag(ifindex, false)
    }

    fn set_up_flag(&mut self, ifindex: u32, up: bool) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Up;
        let state = if up { "up" } else { "down" };
        let what = |nl: &mut Netlink| format!("setting {} {state}", nl.dev_label(ifindex));
        self.request_with(&RouteNetlinkMessage::SetLink(msg), 0, what)
            .map(drop)
    }

    /// Sets the link's MTU.
    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        let what =
            |nl: &mut Netlink| format!("setting the MTU of {} to {mtu}", nl.dev_label(ifindex));
        self.request_with(&RouteNetlinkMessage::SetLink(msg), 0, what)
            .map(drop)
    }

    /// Creates a point-to-point GRE link (`ip link add NAME mtu MTU type
    /// gre local L remote R ttl T pmtudisc`): a virtual-access to one
    /// spoke, whose GRE packets the transport-mode SA between `local` and
    /// `remote` protects. A fixed TTL needs path MTU discovery (the kernel
    /// refuses `nopmtudisc` with one), so the outer header has DF set;
    /// `ttl` 0 inherits the inner packet's. The link is left down. Returns
    /// its index. EEXIST if the name is taken, EOPNOTSUPP ("Unknown device
    /// type") on a kernel without ip_gre.
    pub fn add_gre_link(
        &mut self,
        name: &str,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        ttl: u8,
        mtu: u32,
    ) -> io::Result<u32> {
        let what = || format!("adding GRE link {name} local {local} remote {remote}");
        let msg = gre_link_message(name, local, remote, ttl, mtu)
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{}: {e}", what())))?;
        self.request(
            &RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )?;
        // The ACK carries no index: ask for it by name.
        self.link_index(name)
            .map_err(|e| crate::sys::context(e, format!("{} (created)", what())))
    }

    /// Removes a link (`ip link del dev X`), e.g. a GRE link from
    /// [`add_gre_link`](Self::add_gre_link); its addresses and routes go
    /// with it. ENODEV if there is none.
    pub fn del_link(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let what = |nl: &mut Netlink| format!("removing {}", nl.dev_label(ifindex));
        self.request_with(&RouteNetlinkMessage::DelLink(msg), 0, what)
            .map(drop)
    }

    /// The link's packet and byte counters (`IFLA_STATS64`).
    pub fn link_stats(&mut self, ifindex: u32) -> io::Result<LinkStats> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let what = || format!("reading the counters of link {ifindex}");
        let answers = self.request(&RouteNetlinkMessage::GetLink(msg), 0, &what)?;
        answers
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => {
                    link.attributes.into_iter().find_map(|a| match a {
                        LinkAttribute::Stats64(s) => Some(LinkStats {
                            rx_packets: s.rx_packets,
                            rx_bytes: s.rx_bytes,
                            tx_packets: s.tx_packets,
                            tx_bytes: s.tx_bytes,
                            rx_errors: s.rx_errors,
                            tx_errors: s.tx_errors,
                            rx_dropped: s.rx_dropped,
                            tx_dropped: s.tx_dropped,
                        }),
                        _ => None,
                    })
                }
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{}: no IFLA_STATS64 in the kernel's answer", what()),
                )
            })
    }
}

/// The `RTM_NEWLINK` of [`Netlink::add_gre_link`]: name, MTU, and link
/// info kind "gre" with local, remote, TTL and path MTU discovery (the
/// rest, keys and flags, left at the kernel's defaults: none).
pub(super) fn gre_link_message(
    name: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
    mtu: u32,
) -> Result<LinkMessage, String> {
    if name.is_empty() || name.len() > MAX_LINK_NAME || name.contains(['/', ' ', '\0']) {
        return Err(format!(
            "a link name has 1 to {MAX_LINK_NAME} bytes and no '/', space or NUL"
        ));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::GreTun),
        LinkInfo::Data(InfoData::GreTun(vec![
            InfoGre::Local(local),
            InfoGre::Remote(remote),
            InfoGre::Ttl(ttl),
            InfoGre::PathMTUDiscovery(true),
        ])),
    ]));
    Ok(msg)
}
