//! IPv4 addresses on links, plain or point-to-point (unnumbered).

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage, AddressScope},
};

use super::{Netlink, check_prefix_len};

impl Netlink {
    /// Adds an IPv4 address (`ip addr add ADDR/LEN dev X`), or with `peer`
    /// a point-to-point one (`ip addr add ADDR peer PEER/LEN dev X`: the
    /// kernel then routes PEER/LEN to the device). Adding an address that
    /// is there already fails with EEXIST.
    pub fn add_address(
        &mut self,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        peer: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let msg = address_message(ifindex, addr, prefix_len, peer)?;
        let what = |nl: &mut Netlink| {
            format!(
                "adding address {} dev {}",
                describe_address(addr, prefix_len, peer),
                nl.dev_name(ifindex)
            )
        };
        self.request_with(
            &RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )
        .map(drop)
    }

    /// An unnumbered point-to-point address (`ip addr add LOCAL peer
    /// PEER/32 dev X`): the virtual template's address on a
    /// virtual-access, with the spoke's pool address as the peer, so that
    /// the kernel routes PEER/32 to the link.
    pub fn add_address_peer(
        &mut self,
        ifindex: u32,
        local: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> io::Result<()> {
        self.add_address(ifindex, local, 32, Some(peer))
    }

    /// Removes an address added by [`add_address`](Self::add_address)
    /// (the same arguments).
    pub fn del_address(
        &mut self,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        peer: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let msg = address_message(ifindex, addr, prefix_len, peer)?;
        let what = |nl: &mut Netlink| {
            format!(
                "removing address {} dev {}",
                describe_address(addr, prefix_len, peer),
                nl.dev_name(ifindex)
            )
        };
        self.request_with(&RouteNetlinkMessage::DelAddress(msg), 0, what)
            .map(drop)
    }
}

fn describe_address(addr: Ipv4Addr, prefix_len: u8, peer: Option<Ipv4Addr>) -> String {
    match peer {
        Some(peer) => format!("{addr} peer {peer}/{prefix_len}"),
        None => format!("{addr}/{prefix_len}"),
    }
}

fn address_message(
    ifindex: u32,
    addr: Ipv4Addr,
    prefix_len: u8,
    peer: Option<Ipv4Addr>,
) -> io::Result<AddressMessage> {
    check_prefix_len(prefix_len, || {
        format!("address {}", describe_address(addr, prefix_len, peer))
    })?;
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix_len;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = ifindex;
    // IFA_LOCAL is the address itself; IFA_ADDRESS the peer's on a
    // point-to-point link, the same address otherwise (as iproute2 does).
    msg.attributes
        .push(AddressAttribute::Local(IpAddr::V4(addr)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(peer.unwrap_or(addr))));
    Ok(msg)
}
