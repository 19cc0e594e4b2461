//! A small, blocking rtnetlink client: links up/down and MTU, GRE links
//! (the kernel datapath's virtual-access interfaces), link counters, IPv4
//! addresses, IPv4 routes in the main table (per link for the tunnels, and
//! the whole table for a routing daemon: dump, gateway and blackhole
//! routes, removal of our own only).
//!
//! One request at a time, each acknowledged by the kernel (or answered with
//! NLMSG_DONE for dumps) before the call returns; sequence numbers are
//! checked, and answers to an earlier request that timed out are skipped.
//! Kernel errors become `io::Error`s that name the operation and carry the
//! kernel's extended-ack message when it sends one, e.g. "adding route
//! 10.1.1.100/32 dev gwtun0: File exists (os error 17)", or "adding address
//! 10.1.1.1 peer 10.1.1.100/32 dev gwtun0: File exists (os error 17); kernel
//! says: ipv4: Address already assigned". The socket has a
//! receive timeout ([`Netlink::TIMEOUT`]) so that no call can hang.
//!
//! Messages are built and parsed with `netlink-packet-route`; the socket is
//! `netlink-sys`'s blocking one. The netlink header, ACKs, errors and
//! extended acks are handled here.
//!
//! Routes this module installs carry the protocol [`RTPROT_GATEWAY`] (66,
//! shown by `ip route` as `proto 66`), so that an operator and the
//! gateway itself can tell them from the kernel's and other daemons'.

use std::{
    fmt,
    io::{self, ErrorKind},
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    time::Duration,
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage, AddressScope},
    link::{InfoData, InfoGre, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use zeroize::Zeroizing;

use crate::net::Ipv4Prefix;

/// The route protocol (`rtm_protocol`) of the routes this gateway installs:
/// 66 (0x42), unused by the kernel and by the routing daemons listed in
/// iproute2's `rt_protos`. `ip route show proto 66` lists them; an operator
/// may name it in `/etc/iproute2/rt_protos.d/`.
pub const RTPROT_GATEWAY: u8 = 0x42;

/// `RTPROT_KERNEL`: routes the kernel adds itself, e.g. the connected
/// route of an address.
pub const RTPROT_KERNEL: u8 = 2;

/// `RTPROT_BOOT`: what `ip route add` gives a route when no `proto` is
/// named, i.e. the operator's static routes.
pub const RTPROT_BOOT: u8 = 3;

/// `RTPROT_STATIC`: static routes that say so (`ip route add ... proto
/// static`, networkd and other managers).
pub const RTPROT_STATIC: u8 = 4;

/// `RT_SCOPE_UNIVERSE`: a route via a gateway, or one that does not
/// forward at all (blackhole, unreachable, prohibit).
pub const RT_SCOPE_UNIVERSE: u8 = 0;

/// `RT_SCOPE_LINK`: a destination directly on the link.
pub const RT_SCOPE_LINK: u8 = 253;

/// The main routing table.
const RT_TABLE_MAIN: u8 = RouteHeader::RT_TABLE_MAIN;

/// The size of a `timeval` socket option.
#[allow(clippy::cast_possible_truncation)] // 16 bytes
const TIMEVAL_LEN: libc::socklen_t = std::mem::size_of::<libc::timeval>() as libc::socklen_t;

/// The netlink header's size.
pub(super) const HEADER_LEN: usize = 16;

/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute with the error text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// A route of the main table, as [`Netlink::route_entries`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination prefix.
    pub dst: Ipv4Addr,
    /// Its length.
    pub prefix_len: u8,
    /// The next hop, if any (none for on-link routes).
    pub gateway: Option<Ipv4Addr>,
    /// The preferred source address, if set.
    pub src: Option<Ipv4Addr>,
    /// `rtm_protocol`: [`RTPROT_GATEWAY`] for ours, 2 (kernel) for the
    /// routes the kernel adds with addresses, ...
    pub protocol: u8,
    /// `rtm_scope`: 253 (link) or 0 (universe).
    pub scope: u8,
}

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

/// An IPv4 route of the main table, as [`Netlink::dump_routes`] reports
/// it: what a routing daemon needs to redistribute the kernel's routes and
/// to tell its own ([`RTPROT_GATEWAY`]) from the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// The destination (`0.0.0.0/0` for a default route).
    pub prefix: Ipv4Prefix,
    /// `rtm_protocol`: who installed it ([`RTPROT_KERNEL`],
    /// [`RTPROT_BOOT`], [`RTPROT_STATIC`], [`RTPROT_GATEWAY`], a routing
    /// daemon's, ...).
    pub protocol: u8,
    /// `rtm_scope`: [`RT_SCOPE_LINK`], [`RT_SCOPE_UNIVERSE`], ...
    pub scope: u8,
    /// `rtm_type`.
    pub kind: KernelRouteKind,
    /// The output interface, if the route has exactly one (none for
    /// blackhole-like and multipath routes).
    pub oif: Option<u32>,
    /// The next hop, if the route has exactly one (none for on-link and
    /// multipath routes).
    pub gateway: Option<Ipv4Addr>,
}

impl KernelRoute {
    /// A connected route: the one the kernel adds for an address on an
    /// interface (protocol kernel, scope link).
    pub fn is_connected(&self) -> bool {
        self.protocol == RTPROT_KERNEL && self.scope == RT_SCOPE_LINK
    }

    /// A static route: installed by the operator or a network manager
    /// (protocol boot or static), whatever its type.
    pub fn is_static(&self) -> bool {
        self.protocol == RTPROT_BOOT || self.protocol == RTPROT_STATIC
    }

    /// One of this gateway's own routes (protocol [`RTPROT_GATEWAY`]).
    pub fn is_own(&self) -> bool {
        self.protocol == RTPROT_GATEWAY
    }
}

/// The type of a [`KernelRoute`] (`rtm_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelRouteKind {
    /// Forwarded, via a gateway or on-link.
    Unicast,
    /// Dropped silently.
    Blackhole,
    /// Dropped with ICMP host unreachable.
    Unreachable,
    /// Dropped with ICMP administratively prohibited.
    Prohibit,
    /// Delivered locally.
    Local,
    /// Delivered locally as a broadcast.
    Broadcast,
    /// Any other `rtm_type` (anycast, multicast, throw, ...), as its number.
    Other(u8),
}

impl From<RouteType> for KernelRouteKind {
    fn from(kind: RouteType) -> Self {
        match kind {
            RouteType::Unicast => KernelRouteKind::Unicast,
            RouteType::BlackHole => KernelRouteKind::Blackhole,
            RouteType::Unreachable => KernelRouteKind::Unreachable,
            RouteType::Prohibit => KernelRouteKind::Prohibit,
            RouteType::Local => KernelRouteKind::Local,
            RouteType::Broadcast => KernelRouteKind::Broadcast,
            other => KernelRouteKind::Other(other.into()),
        }
    }
}

/// What [`Netlink::modify_route`] installs.
struct RouteSpec {
    dst: Ipv4Addr,
    prefix_len: u8,
    kind: RouteType,
    oif: Option<u32>,
    gateway: Option<Ipv4Addr>,
    src: Option<Ipv4Addr>,
}

/// A blocking NETLINK_ROUTE socket in the network namespace of the thread
/// that opened it (it stays there, whichever thread uses it later).
pub struct Netlink {
    transport: Transport,
    /// Set while an error message is made after a local failure (e.g. a
    /// timeout): no link-name lookups then, so that they cannot wait too.
    no_lookups: bool,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.transport.socket.as_raw_fd())
            .field("seq", &self.transport.seq)
            .finish_non_exhaustive()
    }
}

/// What came back for one request.
enum Answer {
    /// An ACK or the end of a dump, with the messages before it.
    Done(Vec<RouteNetlinkMessage>),
    /// A dump that the kernel says was interrupted by a change: retry.
    Interrupted,
}

impl Netlink {
    /// How long one request waits for the kernel's answer.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// Opens a NETLINK_ROUTE socket, bound to a port the kernel picks, with
    /// extended acks asked for.
    pub fn open() -> io::Result<Netlink> {
        let socket = open_socket(NETLINK_ROUTE, "opening a NETLINK_ROUTE socket")?;
        Ok(Netlink {
            transport: Transport::new(socket),
            no_lookups: false,
        })
    }

    /// The index of link `name`; ENODEV (see [`super::raw_os_error`]) when
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
            .map_err(|e| super::context(e, format!("{} (created)", what())))
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

    /// Adds a route to `dst/prefix_len` in the main table, out of `ifindex`,
    /// via `gateway` (scope universe) or on-link (scope link), with an
    /// optional preferred source, protocol [`RTPROT_GATEWAY`]. A route to
    /// the same prefix that exists already fails with EEXIST.
    pub fn add_route(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        ifindex: u32,
        gateway: Option<Ipv4Addr>,
        src: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            kind: RouteType::Unicast,
            oif: Some(ifindex),
            gateway,
            src,
        };
        self.modify_route(&spec, false)
    }

    /// Like [`add_route`](Self::add_route), but replaces a route to the
    /// same prefix (same table, TOS and priority) if there is one
    /// (`ip route replace`).
    pub fn replace_route(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        ifindex: u32,
        gateway: Option<Ipv4Addr>,
        src: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            kind: RouteType::Unicast,
            oif: Some(ifindex),
            gateway,
            src,
        };
        self.modify_route(&spec, true)
    }

    /// Installs or replaces the main-table route to `dst/prefix_len` via
    /// `gateway`, protocol [`RTPROT_GATEWAY`], with no output interface:
    /// the kernel picks it from the route to `gateway`, which must be
    /// on-link (`ip route replace P via G`), as for a BGP next hop. The
    /// kernel refuses a gateway it cannot reach directly (ENETUNREACH).
    ///
    /// Like `ip route replace`, this replaces a route to the same prefix
    /// (same TOS and priority) whoever installed it: callers that must
    /// leave other routes alone check [`dump_routes`](Self::dump_routes)
    /// first.
    pub fn replace_gateway_route(
        &mut self,
        dst: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
    ) -> io::Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            kind: RouteType::Unicast,
            oif: None,
            gateway: Some(gateway),
            src: None,
        };
        self.modify_route(&spec, true)
    }

    /// Installs or replaces a main-table blackhole route to
    /// `dst/prefix_len`, protocol [`RTPROT_GATEWAY`] (`ip route replace
    /// blackhole P`): what a BGP aggregate or a discard route needs. The
    /// same caveat as [`replace_gateway_route`](Self::replace_gateway_route)
    /// applies.
    pub fn replace_blackhole_route(&mut self, dst: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let spec = RouteSpec {
            dst,
            prefix_len,
            kind: RouteType::BlackHole,
            oif: None,
            gateway: None,
            src: None,
        };
        self.modify_route(&spec, true)
    }

    fn modify_route(&mut self, spec: &RouteSpec, replace: bool) -> io::Result<()> {
        let RouteSpec {
            dst,
            prefix_len,
            kind,
            oif,
            gateway,
            src,
        } = *spec;
        let verb = if replace { "replacing" } else { "adding" };
        // As `ip route` prints it: "blackhole 10.0.0.0/8", "10.2.0.0/16 via
        // 10.1.1.100 dev gwtun0 src 10.1.1.1".
        let what = |nl: &mut Netlink| {
            let kind = match kind {
                RouteType::Unicast => String::new(),
                RouteType::BlackHole => "blackhole ".to_owned(),
                other => format!("type {} ", u8::from(other)),
            };
            let via = gateway.map(|gw| format!(" via {gw}")).unwrap_or_default();
            let dev = oif
                .map(|i| format!(" dev {}", nl.dev_name(i)))
                .unwrap_or_default();
            let from = src.map(|src| format!(" src {src}")).unwrap_or_default();
            format!("{verb} route {kind}{dst}/{prefix_len}{via}{dev}{from}")
        };
        check_prefix_len(prefix_len, || format!("{verb} route {dst}/{prefix_len}"))?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::from(RTPROT_GATEWAY);
        // iproute2's defaults: link scope for a unicast route straight out
        // of a device, universe for one via a gateway and for the types
        // that do not forward (blackhole and the like).
        msg.header.scope = if kind == RouteType::Unicast && gateway.is_none() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        msg.header.kind = kind;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        if let Some(ifindex) = oif {
            msg.attributes.push(RouteAttribute::Oif(ifindex));
        }
        if let Some(gw) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(src) = src {
            msg.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
        }
        let flags = NLM_F_CREATE | if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        self.request_with(&RouteNetlinkMessage::NewRoute(msg), flags, what)
            .map(drop)
    }

    /// Removes the main-table route to `dst/prefix_len` out of `ifindex`,
    /// whatever its protocol and next hop. ESRCH (No such process) when
    /// there is none.
    pub fn del_route(&mut self, dst: Ipv4Addr, prefix_len: u8, ifindex: u32) -> io::Result<()> {
        let what = |nl: &mut Netlink| {
            format!(
                "removing route {dst}/{prefix_len} dev {}",
                nl.dev_name(ifindex)
            )
        };
        check_prefix_len(prefix_len, || format!("removing route {dst}/{prefix_len}"))?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RT_TABLE_MAIN;
        // Unspecified protocol and type, scope "nowhere": match any.
        msg.header.scope = RouteScope::NoWhere;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        msg.attributes.push(RouteAttribute::Oif(ifindex));
        self.request_with(&RouteNetlinkMessage::DelRoute(msg), 0, what)
            .map(drop)
    }

    /// Removes the main-table route to `dst/prefix_len` if it is one of
    /// ours (protocol [`RTPROT_GATEWAY`]), whatever its type, next hop and
    /// interface; routes of other protocols to the same prefix stay. ESRCH
    /// (No such process) when there is none of ours.
    pub fn del_own_route(&mut self, dst: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let what = || format!("removing route {dst}/{prefix_len} proto {RTPROT_GATEWAY}");
        check_prefix_len(prefix_len, what)?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = prefix_len;
        msg.header.table = RT_TABLE_MAIN;
        // The kernel matches the protocol when the request names one, so
        // the choice is made atomically there, not by a dump beforehand
        // that could race with another daemon. Unspecified type, scope
        // "nowhere" and no interface: match any of those.
        msg.header.protocol = RouteProtocol::from(RTPROT_GATEWAY);
        msg.header.scope = RouteScope::NoWhere;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        self.request(&RouteNetlinkMessage::DelRoute(msg), 0, &what)
            .map(drop)
    }

    /// The destinations of the main-table IPv4 routes out of `ifindex`
    /// (whoever installed them).
    pub fn routes(&mut self, ifindex: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .route_entries(ifindex)?
            .into_iter()
            .map(|r| (r.dst, r.prefix_len))
            .collect())
    }

    /// The main-table IPv4 routes out of `ifindex`, with next hop, source,
    /// protocol and scope.
    pub fn route_entries(&mut self, ifindex: u32) -> io::Result<Vec<RouteEntry>> {
        let what = || format!("listing the routes of link {ifindex}");
        let mut out = Vec::new();
        for route in self.dump_ipv4_routes(&what)? {
            let mut entry = RouteEntry {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: route.header.destination_prefix_length,
                gateway: None,
                src: None,
                protocol: route.header.protocol.into(),
                scope: route.header.scope.into(),
            };
            let mut table = u32::from(route.header.table);
            let mut oif = None;
            for attr in route.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => entry.dst = a,
                    RouteAttribute::Gateway(RouteAddress::Inet(a)) => entry.gateway = Some(a),
                    RouteAttribute::PrefSource(RouteAddress::Inet(a)) => entry.src = Some(a),
                    RouteAttribute::Oif(i) => oif = Some(i),
                    RouteAttribute::Table(t) => table = t,
                    _ => {}
                }
            }
            if table == u32::from(RT_TABLE_MAIN) && oif == Some(ifindex) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Every IPv4 route of the main table, whoever installed it and
    /// whatever its type (`ip route show table main`). Routes of other
    /// tables, the local table's included, are left out.
    pub fn dump_routes(&mut self) -> io::Result<Vec<KernelRoute>> {
        let what = || "listing the IPv4 routes of the main table".to_owned();
        let mut out = Vec::new();
        for route in self.dump_ipv4_routes(&what)? {
            if let Some(route) = kernel_route(route).map_err(|e| super::context(e, what()))? {
                out.push(route);
            }
        }
        Ok(out)
    }

    /// Every IPv4 route of every table (the kernel ignores a table named in
    /// a dump request unless strict checking is on), the dump retried when
    /// a change interrupts it.
    fn dump_ipv4_routes(&mut self, what: &dyn Fn() -> String) -> io::Result<Vec<RouteMessage>> {
        let mut tries = 0;
        let answers = loop {
            let mut msg = RouteMessage::default();
            msg.header.address_family = AddressFamily::Inet;
            let request = RouteNetlinkMessage::GetRoute(msg);
            match self.exchange(&request, NLM_F_DUMP) {
                Ok(Ok(Answer::Done(answers))) => break answers,
                Ok(Ok(Answer::Interrupted)) if tries < 3 => tries += 1,
                Ok(Ok(Answer::Interrupted)) => {
                    return Err(io::Error::new(
                        ErrorKind::Interrupted,
                        format!("{}: the dump was interrupted by changes 4 times", what()),
                    ));
                }
                Ok(Err(kernel)) => return Err(kernel.into_io(what())),
                Err(local) => return Err(super::context(local, what())),
            }
        };
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(route)
                    if route.header.address_family == AddressFamily::Inet =>
                {
                    Some(route)
                }
                _ => None,
            })
            .collect())
    }

    /// "gwtun0", or "ifindex 7" when the name cannot be had (for messages).
    fn dev_name(&mut self, ifindex: u32) -> String {
        if self.no_lookups {
            return format!("ifindex {ifindex}");
        }
        self.link_name(ifindex)
            .unwrap_or_else(|_| format!("ifindex {ifindex}"))
    }

    /// "link gwtun0", or "link 7" (for messages).
    fn dev_label(&mut self, ifindex: u32) -> String {
        if self.no_lookups {
            return format!("link {ifindex}");
        }
        match self.link_name(ifindex) {
            Ok(name) => format!("link {name}"),
            Err(_) => format!("link {ifindex}"),
        }
    }

    /// One request whose error message is cheap to make.
    fn request(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
        what: &dyn Fn() -> String,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.request_with(msg, flags, |_| what())
    }

    /// One request; `what` makes the error message, and may ask the kernel
    /// for a link's name (only on failure, after the request is over).
    fn request_with(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce(&mut Netlink) -> String,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        match self.exchange(msg, flags) {
            Ok(Ok(Answer::Done(answers))) => Ok(answers),
            Ok(Ok(Answer::Interrupted)) => {
                let what = what(self);
                Err(io::Error::new(
                    ErrorKind::Interrupted,
                    format!("{what}: interrupted by changes"),
                ))
            }
            Ok(Err(kernel)) => {
                let what = what(self);
                Err(kernel.into_io(what))
            }
            Err(local) => {
                self.no_lookups = true;
                let what = what(self);
                self.no_lookups = false;
                Err(super::context(local, what))
            }
        }
    }

    /// Sends `msg` and collects the answer. The outer error is a local one
    /// (socket, timeout, undecodable answer); the inner one is the kernel's.
    fn exchange(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Result<Answer, KernelError>> {
        let mut payload = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut payload);
        let raw = match self.transport.exchange(
            msg.message_type(),
            flags,
            &payload,
            "sending a netlink request",
        )? {
            Ok(raw) => raw,
            Err(kernel) => return Ok(Err(kernel)),
        };
        if raw.interrupted {
            return Ok(Ok(Answer::Interrupted));
        }
        let mut collected = Vec::with_capacity(raw.messages.len());
        for (header, payload) in &raw.messages {
            let parsed = RouteNetlinkMessage::deserialize(header, payload).map_err(|e| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "decoding a netlink answer of type {}: {e}",
                        header.message_type
                    ),
                )
            })?;
            collected.push(parsed);
        }
        Ok(Ok(Answer::Done(collected)))
    }
}

/// A whole request: header (port 0: the kernel fills in ours), then
/// `payload`. Requests other than dumps ask for an ACK. Zeroed on drop:
/// xfrm requests carry keys.
pub(super) fn request_packet(
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &[u8],
) -> io::Result<Zeroizing<Vec<u8>>> {
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
    let len = HEADER_LEN + payload.len();
    let total = u32::try_from(len)
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "netlink request too large"))?;
    let mut packet = Zeroizing::new(Vec::with_capacity(len));
    packet.extend_from_slice(&total.to_ne_bytes());
    packet.extend_from_slice(&kind.to_ne_bytes());
    packet.extend_from_slice(&flags.to_ne_bytes());
    packet.extend_from_slice(&seq.to_ne_bytes());
    packet.extend_from_slice(&0u32.to_ne_bytes());
    packet.extend_from_slice(payload);
    Ok(packet)
}

/// The answers to one request: each message's header and payload, and
/// whether the kernel said a dump was interrupted by changes.
pub(super) struct RawAnswer {
    pub messages: Vec<(NetlinkHeader, Zeroizing<Vec<u8>>)>,
    pub interrupted: bool,
}

/// The request and answer exchange of one blocking netlink socket, shared
/// by rtnetlink (`Netlink`) and xfrm netlink (`xfrm::Xfrm`).
pub(super) struct Transport {
    pub socket: Socket,
    pub seq: u32,
    buf: Vec<u8>,
}

impl Transport {
    pub fn new(socket: Socket) -> Self {
        Transport {
            socket,
            seq: 0,
            buf: vec![0; 32 * 1024],
        }
    }

    /// Sends one request (header, then `payload`; requests other than dumps
    /// ask for an ACK) and collects the answers up to the ACK or
    /// NLMSG_DONE. The outer error is a local one (`sending` names the
    /// send), the inner one the kernel's.
    pub fn exchange(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        sending: &str,
    ) -> io::Result<Result<RawAnswer, KernelError>> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let packet = request_packet(kind, flags, seq, payload)?;
        self.socket
            .send(&packet, 0)
            .map_err(|e| super::context(e, sending))?;

        let mut answer = RawAnswer {
            messages: Vec::new(),
            interrupted: false,
        };
        loop {
            let n = self.recv_datagram()?;
            let mut off = 0;
            while off + HEADER_LEN <= n {
                let data = &self.buf[off..n];
                let header = parse_header(data);
                let msg_len = header.length as usize;
                if msg_len < HEADER_LEN || msg_len > data.len() {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "malformed netlink answer: message of {msg_len} bytes in {} left",
                            data.len()
                        ),
                    ));
                }
                let payload = &data[HEADER_LEN..msg_len];
                off += msg_len.next_multiple_of(4);
                if header.sequence_number != seq {
                    // An answer to an earlier request that timed out.
                    continue;
                }
                match header.message_type {
                    NLMSG_ERROR => {
                        let code = read_i32(payload);
                        if code == 0 {
                            return Ok(Ok(answer));
                        }
                        return Ok(Err(KernelError::new(code, payload, header.flags, true)));
                    }
                    NLMSG_DONE => {
                        let code = read_i32(payload);
                        if code != 0 {
                            return Ok(Err(KernelError::new(code, payload, header.flags, false)));
                        }
                        return Ok(Ok(answer));
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        return Err(io::Error::other("netlink answer overrun"));
                    }
                    _ => {
                        if header.flags & NLM_F_DUMP_INTR != 0 {
                            answer.interrupted = true;
                        }
                        answer
                            .messages
                            .push((header, Zeroizing::new(payload.to_vec())));
                    }
                }
            }
        }
    }

    /// Receives one datagram into `self.buf` (grown to fit) and returns its
    /// length.
    fn recv_datagram(&mut self) -> io::Result<usize> {
        loop {
            let peeked = {
                let mut slice: &mut [u8] = &mut self.buf[..];
                self.socket
                    .recv(&mut slice, libc::MSG_PEEK | libc::MSG_TRUNC)
            };
            let size = match peeked {
                Ok(size) => size,
                Err(e) => return Err(recv_error(e)),
            };
            if size > self.buf.len() {
                self.buf.resize(size.next_multiple_of(4096), 0);
            }
            let mut slice: &mut [u8] = &mut self.buf[..];
            match self.socket.recv(&mut slice, 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(recv_error(e)),
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // xfrm answers (GETSA) carry keys.
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

/// A blocking netlink socket of `protocol`, bound to a port the kernel
/// picks and connected to the kernel, with extended and capped acks asked
/// for and a receive timeout of [`Netlink::TIMEOUT`].
pub(super) fn open_socket(protocol: isize, what: &str) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol).map_err(|e| super::context(e, what))?;
    socket.bind_auto().map_err(|e| super::context(e, what))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| super::context(e, what))?;
    // Both are optional: older kernels answer without the error text.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(Netlink::TIMEOUT.as_secs()).unwrap_or(5),
        tv_usec: 0,
    };
    // SAFETY: passes a live timeval and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast::<libc::c_void>(),
            TIMEVAL_LEN,
        )
    };
    if rc < 0 {
        return Err(super::os_error(format!("{what}: setting SO_RCVTIMEO")));
    }
    Ok(socket)
}

pub(super) fn recv_error(e: io::Error) -> io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer from the kernel within {:?}", Netlink::TIMEOUT),
        )
    } else {
        super::context(e, "receiving a netlink answer")
    }
}

pub(super) fn parse_header(data: &[u8]) -> NetlinkHeader {
    let mut h = NetlinkHeader::default();
    h.length = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
    h.message_type = u16::from_ne_bytes([data[4], data[5]]);
    h.flags = u16::from_ne_bytes([data[6], data[7]]);
    h.sequence_number = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
    h.port_number = u32::from_ne_bytes([data[12], data[13], data[14], data[15]]);
    h
}

pub(super) fn read_i32(payload: &[u8]) -> i32 {
    match payload.get(..4) {
        Some(b) => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        // A truncated error message: call it an I/O error, never an ACK.
        None => -libc::EIO,
    }
}

/// The kernel's refusal: a negative errno and the extended-ack text.
#[derive(Debug)]
pub(super) struct KernelError {
    errno: i32,
    message: Option<String>,
}

impl KernelError {
    /// From an NLMSG_ERROR or NLMSG_DONE payload: the code, then for
    /// NLMSG_ERROR the echoed request (only its header when the kernel
    /// says NLM_F_CAPPED, which we ask for), then with NLM_F_ACK_TLVS the
    /// extended-ack attributes.
    pub(super) fn new(code: i32, payload: &[u8], flags: u16, is_error: bool) -> KernelError {
        let errno = code.checked_neg().unwrap_or(libc::EIO).max(1);
        let message = if flags & NLM_F_ACK_TLVS == 0 {
            None
        } else {
            let off = if !is_error {
                4
            } else if flags & NLM_F_CAPPED != 0 {
                4 + HEADER_LEN
            } else {
                let echoed = payload
                    .get(4..8)
                    .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize);
                4 + echoed.next_multiple_of(4)
            };
            find_ext_ack_message(payload.get(off..).unwrap_or_default())
        };
        KernelError { errno, message }
    }

    pub(super) fn into_io(self, what: String) -> io::Error {
        super::context_detail(io::Error::from_raw_os_error(self.errno), what, self.message)
    }
}

/// The text of `NLMSGERR_ATTR_MSG` in a run of netlink attributes.
fn find_ext_ack_message(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &attrs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

/// The [`KernelRoute`] of a dumped IPv4 route, or `None` when it is not in
/// the main table. The table is `rtm_table` unless an `RTA_TABLE` attribute
/// says otherwise (`rtm_table` holds only ids below 256).
fn kernel_route(route: RouteMessage) -> io::Result<Option<KernelRoute>> {
    let len = route.header.destination_prefix_length;
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut table = u32::from(route.header.table);
    let mut oif = None;
    let mut gateway = None;
    for attr in route.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(a),
            RouteAttribute::Oif(i) => oif = Some(i),
            RouteAttribute::Table(t) => table = t,
            _ => {}
        }
    }
    if table != u32::from(RT_TABLE_MAIN) {
        return Ok(None);
    }
    // The kernel refuses IPv4 routes with host bits set, so this is a
    // decoding problem, not a route to skip.
    let prefix = Ipv4Prefix::new(dst, len).ok_or_else(|| {
        io::Error::new(
            ErrorKind::InvalidData,
            format!("the kernel reported a route to {dst}/{len}, not a prefix"),
        )
    })?;
    Ok(Some(KernelRoute {
        prefix,
        protocol: route.header.protocol.into(),
        scope: route.header.scope.into(),
        kind: route.header.kind.into(),
        oif,
        gateway,
    }))
}

fn check_prefix_len(prefix_len: u8, what: impl FnOnce() -> String) -> io::Result<()> {
    if prefix_len > 32 {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{}: an IPv4 prefix length is at most 32", what()),
        ));
    }
    Ok(())
}

fn describe_address(addr: Ipv4Addr, prefix_len: u8, peer: Option<Ipv4Addr>) -> String {
    match peer {
        Some(peer) => format!("{addr} peer {peer}/{prefix_len}"),
        None => format!("{addr}/{prefix_len}"),
    }
}

/// The `RTM_NEWLINK` of [`Netlink::add_gre_link`]: name, MTU, and link
/// info kind "gre" with local, remote, TTL and path MTU discovery (the
/// rest, keys and flags, left at the kernel's defaults: none).
fn gre_link_message(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sys::{
        raw_os_error,
        tests::{in_netns, in_netns_with},
        tun::Tun,
    };

    const HUB: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
    const SPOKE: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);

    fn ip_routes(ns: &integration::Netns) -> String {
        String::from_utf8(ns.ip(["route", "show", "table", "main"]).unwrap().stdout).unwrap()
    }

    #[test]
    fn routes_add_replace_dump_delete() {
        in_netns_with("nlroute", |ns| {
            let tun = Tun::create("gwtun0", 1).unwrap();
            let mut nl = Netlink::open().unwrap();
            let idx = tun.ifindex();
            nl.add_address(idx, HUB, 32, Some(SPOKE)).unwrap();
            nl.set_link_up(idx).unwrap();

            let net = Ipv4Addr::new(10, 2, 0, 0);
            nl.add_route(net, 16, idx, None, None).unwrap();
            let shown = ip_routes(ns);
            assert!(
                shown.contains("10.2.0.0/16 dev gwtun0 proto 66 scope link"),
                "{shown}"
            );
            assert!(nl.routes(idx).unwrap().contains(&(net, 16)));

            // Twice: a clear error.
            let err = nl.add_route(net, 16, idx, None, None).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(raw_os_error(&err), Some(libc::EEXIST));
            assert!(
                err.to_string()
                    .starts_with("adding route 10.2.0.0/16 dev gwtun0: File exists"),
                "{err}"
            );

            // Replace: now with a source address.
            nl.replace_route(net, 16, idx, None, Some(HUB)).unwrap();
            let shown = ip_routes(ns);
            assert!(
                shown.contains("10.2.0.0/16 dev gwtun0 proto 66 scope link src 10.1.1.1"),
                "{shown}"
            );
            // And via a gateway.
            let other = Ipv4Addr::new(10, 3, 0, 0);
            nl.replace_route(other, 16, idx, Some(SPOKE), None).unwrap();
            let shown = ip_routes(ns);
            assert!(
                shown.contains("10.3.0.0/16 via 10.1.1.100 dev gwtun0 proto 66"),
                "{shown}"
            );

            let mut entries = nl.route_entries(idx).unwrap();
            entries.sort_by_key(|e| (e.dst, e.prefix_len));
            assert_eq!(
                entries,
                vec![
                    RouteEntry {
                        dst: SPOKE,
                        prefix_len: 32,
                        gateway: None,
                        src: Some(HUB),
                        protocol: 2, // the kernel's, for the peer address
                        scope: 253,
                    },
                    RouteEntry {
                        dst: net,
                        prefix_len: 16,
                        gateway: None,
                        src: Some(HUB),
                        protocol: RTPROT_GATEWAY,
                        scope: 253,
                    },
                    RouteEntry {
                        dst: other,
                        prefix_len: 16,
                        gateway: Some(SPOKE),
                        src: None,
                        protocol: RTPROT_GATEWAY,
                        scope: 0,
                    },
                ]
            );

            nl.del_route(net, 16, idx).unwrap();
            nl.del_route(other, 16, idx).unwrap();
            let shown = ip_routes(ns);
            assert!(
                !shown.contains("10.2.0.0") && !shown.contains("10.3.0.0"),
                "{shown}"
            );
            assert_eq!(nl.routes(idx).unwrap(), vec![(SPOKE, 32)]);

            let err = nl.del_route(net, 16, idx).unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::ESRCH));
            assert!(
                err.to_string()
                    .starts_with("removing route 10.2.0.0/16 dev gwtun0: "),
                "{err}"
            );
        });
    }

    #[test]
    fn kernel_error_text_is_kept() {
        in_netns("nlextack", || {
            let tun = Tun::create("gwtun0", 1).unwrap();
            let mut nl = Netlink::open().unwrap();
            let idx = tun.ifindex();
            nl.set_link_up(idx).unwrap();
            // Host bits set under the prefix length: EINVAL, and the kernel
            // says why.
            let err = nl
                .add_route(Ipv4Addr::new(10, 2, 0, 1), 16, idx, None, None)
                .unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::EINVAL));
            let text = err.to_string();
            assert!(
                text.starts_with("adding route 10.2.0.1/16 dev gwtun0"),
                "{text}"
            );
            assert!(
                text.contains(": Invalid argument (os error 22); kernel says: "),
                "{text}"
            );
            assert!(text.contains("prefix"), "{text}");

            let err = nl
                .add_route(Ipv4Addr::new(10, 2, 0, 0), 33, idx, None, None)
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        });
    }

    #[test]
    fn links_and_addresses() {
        in_netns_with("nllink", |ns| {
            let tun = Tun::create("gwtun0", 1).unwrap();
            let mut nl = Netlink::open().unwrap();
            let idx = nl.link_index("gwtun0").unwrap();
            assert_eq!(idx, tun.ifindex());
            assert_eq!(nl.link_name(idx).unwrap(), "gwtun0");
            assert_eq!(nl.link_index("lo").unwrap(), 1);

            let err = nl.link_index("nosuchlink").unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::ENODEV));
            assert!(
                err.to_string().starts_with("looking up link nosuchlink: "),
                "{err}"
            );

            let show = |ns: &integration::Netns| {
                String::from_utf8(
                    ns.ip(["-o", "addr", "show", "dev", "gwtun0"])
                        .unwrap()
                        .stdout,
                )
                .unwrap()
            };
            let link = |ns: &integration::Netns| {
                String::from_utf8(
                    ns.ip(["-o", "link", "show", "dev", "gwtun0"])
                        .unwrap()
                        .stdout,
                )
                .unwrap()
            };
            nl.set_mtu(idx, 1400).unwrap();
            nl.set_link_up(idx).unwrap();
            let l = link(ns);
            assert!(
                l.contains("mtu 1400") && l.contains("<POINTOPOINT,MULTICAST,NOARP,UP"),
                "{l}"
            );
            nl.set_link_down(idx).unwrap();
            assert!(!link(ns).contains(",UP"), "{}", link(ns));

            nl.add_address(idx, HUB, 32, Some(SPOKE)).unwrap();
            nl.add_address(idx, Ipv4Addr::new(10, 9, 0, 1), 24, None)
                .unwrap();
            let a = show(ns);
            assert!(a.contains("inet 10.1.1.1 peer 10.1.1.100/32"), "{a}");
            assert!(a.contains("inet 10.9.0.1/24"), "{a}");
            let err = nl.add_address(idx, HUB, 32, Some(SPOKE)).unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::EEXIST));
            assert!(
                err.to_string().starts_with(
                    "adding address 10.1.1.1 peer 10.1.1.100/32 dev gwtun0: File exists"
                ),
                "{err}"
            );
            nl.del_address(idx, HUB, 32, Some(SPOKE)).unwrap();
            nl.del_address(idx, Ipv4Addr::new(10, 9, 0, 1), 24, None)
                .unwrap();
            assert!(!show(ns).contains("inet "), "{}", show(ns));
            let err = nl.del_address(idx, HUB, 32, Some(SPOKE)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("removing address 10.1.1.1 peer"),
                "{err}"
            );

            let err = nl.set_mtu(idx, 10).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("setting the MTU of link gwtun0 to 10: "),
                "{err}"
            );
            let err = nl.set_link_up(999).unwrap_err();
            assert!(
                err.to_string().starts_with("setting link 999 up: "),
                "{err}"
            );
        });
    }

    /// A veth pair inside the test's own namespace (so the names cannot
    /// collide with other tests), both ends up, `nlv0` at 10.20.0.1/24;
    /// returns `nlv0`'s index. `nlv1` has no address: one would be a second
    /// connected /24 and a local address, not an on-link next hop.
    fn veth_lan(ns: &integration::Netns) -> u32 {
        ns.ip([
            "link", "add", "nlv0", "type", "veth", "peer", "name", "nlv1",
        ])
        .unwrap();
        ns.add_addr("nlv0", "10.20.0.1/24").unwrap();
        ns.set_link_up("nlv0").unwrap();
        ns.set_link_up("nlv1").unwrap();
        Netlink::open().unwrap().link_index("nlv0").unwrap()
    }

    fn prefix(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    /// The one dumped route to `p` in the main table, failing the test if
    /// there are none or several.
    fn only_route(routes: &[KernelRoute], p: &str) -> KernelRoute {
        let found: Vec<_> = routes.iter().filter(|r| r.prefix == prefix(p)).collect();
        assert_eq!(found.len(), 1, "{p} in {routes:#?}");
        *found[0]
    }

    const LAN_PEER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);

    #[test]
    fn dump_classifies_connected_static_and_kinds() {
        in_netns_with("nldump", |ns| {
            let idx = veth_lan(ns);
            ns.ip([
                "route",
                "add",
                "10.30.0.0/16",
                "via",
                "10.20.0.2",
                "proto",
                "static",
            ])
            .unwrap();
            // No proto: iproute2 says boot.
            ns.ip(["route", "add", "default", "via", "10.20.0.2"])
                .unwrap();
            ns.ip(["route", "add", "unreachable", "10.50.0.0/16"])
                .unwrap();
            ns.ip(["route", "add", "prohibit", "10.51.0.0/16"]).unwrap();
            ns.ip(["route", "add", "throw", "10.52.0.0/16"]).unwrap();
            ns.ip([
                "route",
                "add",
                "local",
                "10.53.0.1",
                "dev",
                "nlv0",
                "table",
                "main",
            ])
            .unwrap();
            // Other tables: one that fits rtm_table, one only in RTA_TABLE.
            for table in ["100", "1000"] {
                ns.ip([
                    "route",
                    "add",
                    "10.60.0.0/16",
                    "dev",
                    "nlv0",
                    "table",
                    table,
                ])
                .unwrap();
            }

            let routes = Netlink::open().unwrap().dump_routes().unwrap();
            // Every route of the main table, and only those.
            let shown = ip_routes(ns);
            assert_eq!(routes.len(), shown.lines().count(), "{shown}\n{routes:#?}");
            assert!(
                routes.iter().all(|r| r.prefix != prefix("10.60.0.0/16")),
                "{routes:#?}"
            );
            // The local table's address route is not the main table's.
            assert!(
                routes.iter().all(|r| r.prefix != prefix("10.20.0.1/32")),
                "{routes:#?}"
            );

            let connected = only_route(&routes, "10.20.0.0/24");
            assert_eq!(
                connected,
                KernelRoute {
                    prefix: prefix("10.20.0.0/24"),
                    protocol: RTPROT_KERNEL,
                    scope: RT_SCOPE_LINK,
                    kind: KernelRouteKind::Unicast,
                    oif: Some(idx),
                    gateway: None,
                }
            );
            assert!(connected.is_connected() && !connected.is_static() && !connected.is_own());

            let fixed = only_route(&routes, "10.30.0.0/16");
            assert_eq!(
                fixed,
                KernelRoute {
                    prefix: prefix("10.30.0.0/16"),
                    protocol: RTPROT_STATIC,
                    scope: RT_SCOPE_UNIVERSE,
                    kind: KernelRouteKind::Unicast,
                    oif: Some(idx),
                    gateway: Some(LAN_PEER),
                }
            );
            assert!(fixed.is_static() && !fixed.is_connected() && !fixed.is_own());

            let default = only_route(&routes, "0.0.0.0/0");
            assert_eq!(default.protocol, RTPROT_BOOT);
            assert_eq!(default.gateway, Some(LAN_PEER));
            assert!(default.is_static() && !default.is_connected());

            let kind = |p| only_route(&routes, p).kind;
            assert_eq!(kind("10.50.0.0/16"), KernelRouteKind::Unreachable);
            assert_eq!(kind("10.51.0.0/16"), KernelRouteKind::Prohibit);
            assert_eq!(kind("10.52.0.0/16"), KernelRouteKind::Other(9)); // throw
            assert_eq!(kind("10.53.0.1/32"), KernelRouteKind::Local);
            let unreachable = only_route(&routes, "10.50.0.0/16");
            assert_eq!((unreachable.oif, unreachable.gateway), (None, None));
        });
    }

    #[test]
    fn dump_reads_the_table_from_rta_table() {
        let route = |rtm_table: u8, rta_table: Option<u32>| {
            let mut msg = RouteMessage::default();
            msg.header.address_family = AddressFamily::Inet;
            msg.header.destination_prefix_length = 16;
            msg.header.table = rtm_table;
            msg.header.protocol = RouteProtocol::from(RTPROT_GATEWAY);
            msg.header.kind = RouteType::BlackHole;
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    Ipv4Addr::new(10, 7, 0, 0),
                )));
            if let Some(t) = rta_table {
                msg.attributes.push(RouteAttribute::Table(t));
            }
            kernel_route(msg).unwrap()
        };
        // RT_TABLE_COMPAT: what rtm_table says for ids above 255.
        let compat = 252;
        let main = Some(KernelRoute {
            prefix: prefix("10.7.0.0/16"),
            protocol: RTPROT_GATEWAY,
            scope: RT_SCOPE_UNIVERSE,
            kind: KernelRouteKind::Blackhole,
            oif: None,
            gateway: None,
        });
        assert_eq!(route(RT_TABLE_MAIN, None), main);
        assert_eq!(route(RT_TABLE_MAIN, Some(254)), main);
        assert_eq!(route(compat, Some(254)), main);
        // RTA_TABLE wins over rtm_table.
        assert_eq!(route(RT_TABLE_MAIN, Some(1000)), None);
        assert_eq!(route(compat, Some(1000)), None);
        assert_eq!(route(100, None), None);

        // Host bits set: a decoding error, not a silently wrong prefix.
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 16;
        msg.header.table = RT_TABLE_MAIN;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(10, 7, 0, 1),
            )));
        let err = kernel_route(msg).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn gateway_route_without_interface() {
        in_netns_with("nlgwroute", |ns| {
            let idx = veth_lan(ns);
            let mut nl = Netlink::open().unwrap();
            let net = Ipv4Addr::new(10, 80, 0, 0);
            nl.replace_gateway_route(net, 16, LAN_PEER).unwrap();
            let shown = ip_routes(ns);
            assert!(
                shown.contains("10.80.0.0/16 via 10.20.0.2 dev nlv0 proto 66"),
                "{shown}"
            );
            let expected = KernelRoute {
                prefix: prefix("10.80.0.0/16"),
                protocol: RTPROT_GATEWAY,
                scope: RT_SCOPE_UNIVERSE,
                kind: KernelRouteKind::Unicast,
                // Resolved by the kernel from the connected route.
                oif: Some(idx),
                gateway: Some(LAN_PEER),
            };
            let routes = nl.dump_routes().unwrap();
            let ours = only_route(&routes, "10.80.0.0/16");
            assert_eq!(ours, expected);
            assert!(ours.is_own() && !ours.is_static() && !ours.is_connected());

            // Replaced in place: still one route, with the new next hop.
            let other_peer = Ipv4Addr::new(10, 20, 0, 3);
            nl.replace_gateway_route(net, 16, other_peer).unwrap();
            let routes = nl.dump_routes().unwrap();
            assert_eq!(
                only_route(&routes, "10.80.0.0/16").gateway,
                Some(other_peer)
            );

            // A next hop that is not on-link: the kernel's error, with
            // what was asked.
            let err = nl
                .replace_gateway_route(Ipv4Addr::new(10, 81, 0, 0), 16, Ipv4Addr::new(10, 99, 0, 1))
                .unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::ENETUNREACH), "{err}");
            assert!(
                err.to_string()
                    .starts_with("replacing route 10.81.0.0/16 via 10.99.0.1: "),
                "{err}"
            );
            let err = nl.replace_gateway_route(net, 33, LAN_PEER).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        });
    }

    #[test]
    fn blackhole_route() {
        in_netns_with("nlblackhole", |ns| {
            veth_lan(ns);
            let mut nl = Netlink::open().unwrap();
            let net = Ipv4Addr::new(10, 90, 0, 0);
            nl.replace_blackhole_route(net, 16).unwrap();
            let shown = ip_routes(ns);
            assert!(shown.contains("blackhole 10.90.0.0/16 proto 66"), "{shown}");
            let expected = KernelRoute {
                prefix: prefix("10.90.0.0/16"),
                protocol: RTPROT_GATEWAY,
                scope: RT_SCOPE_UNIVERSE,
                kind: KernelRouteKind::Blackhole,
                oif: None,
                gateway: None,
            };
            assert_eq!(
                only_route(&nl.dump_routes().unwrap(), "10.90.0.0/16"),
                expected
            );
            // Twice is fine (replace).
            nl.replace_blackhole_route(net, 16).unwrap();
            assert_eq!(
                only_route(&nl.dump_routes().unwrap(), "10.90.0.0/16"),
                expected
            );

            // A gateway route to the same prefix replaces it, and back.
            nl.replace_gateway_route(net, 16, LAN_PEER).unwrap();
            let routes = nl.dump_routes().unwrap();
            assert_eq!(
                only_route(&routes, "10.90.0.0/16").kind,
                KernelRouteKind::Unicast
            );
            nl.replace_blackhole_route(net, 16).unwrap();
            assert_eq!(
                only_route(&nl.dump_routes().unwrap(), "10.90.0.0/16"),
                expected
            );

            let err = nl
                .replace_blackhole_route(Ipv4Addr::new(10, 90, 0, 1), 16)
                .unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::EINVAL), "{err}");
            assert!(
                err.to_string()
                    .starts_with("replacing route blackhole 10.90.0.1/16: "),
                "{err}"
            );
        });
    }

    #[test]
    fn del_own_route_leaves_other_protocols() {
        in_netns_with("nldelown", |ns| {
            veth_lan(ns);
            let mut nl = Netlink::open().unwrap();
            let gw_net = Ipv4Addr::new(10, 80, 0, 0);
            let bh_net = Ipv4Addr::new(10, 90, 0, 0);
            nl.replace_gateway_route(gw_net, 16, LAN_PEER).unwrap();
            nl.replace_blackhole_route(bh_net, 16).unwrap();
            // Someone else's route to a prefix of ours (another metric, so
            // both exist), and one to a prefix we have nothing for.
            ns.ip([
                "route",
                "add",
                "10.80.0.0/16",
                "via",
                "10.20.0.2",
                "proto",
                "static",
                "metric",
                "100",
            ])
            .unwrap();
            ns.ip([
                "route",
                "add",
                "10.30.0.0/16",
                "via",
                "10.20.0.2",
                "proto",
                "static",
            ])
            .unwrap();

            nl.del_own_route(gw_net, 16).unwrap();
            nl.del_own_route(bh_net, 16).unwrap();
            let routes = nl.dump_routes().unwrap();
            assert!(routes.iter().all(|r| !r.is_own()), "{routes:#?}");
            assert!(
                routes.iter().all(|r| r.prefix != prefix("10.90.0.0/16")),
                "{routes:#?}"
            );
            assert!(only_route(&routes, "10.80.0.0/16").is_static());

            // Not ours: refused, and left in place.
            for (net, p) in [
                (gw_net, "10.80.0.0/16"),
                (Ipv4Addr::new(10, 30, 0, 0), "10.30.0.0/16"),
            ] {
                let err = nl.del_own_route(net, 16).unwrap_err();
                assert_eq!(raw_os_error(&err), Some(libc::ESRCH), "{err}");
                assert!(
                    err.to_string()
                        .starts_with(&format!("removing route {p} proto 66: No such process")),
                    "{err}"
                );
                assert!(only_route(&nl.dump_routes().unwrap(), p).is_static());
            }
            let shown = ip_routes(ns);
            assert!(
                shown.contains("10.80.0.0/16 via 10.20.0.2 dev nlv0 proto static metric 100"),
                "{shown}"
            );
            assert!(
                shown.contains("10.30.0.0/16 via 10.20.0.2 dev nlv0 proto static"),
                "{shown}"
            );
            assert!(!shown.contains("proto 66"), "{shown}");
        });
    }

    /// `ip link add gwva1 mtu 1400 type gre local 192.0.2.1 remote
    /// 198.51.100.7 ttl 64 pmtudisc`, as iproute2 6.x sent it (strace, on a
    /// kernel without ip_gre): the payload after the netlink header.
    const IPROUTE2_NEWLINK_GRE: &str = "\
        00000000000000000000000000000000080004007805000\
        00a00030067777661310000008000120007000100677265\
        0074000200080004000000000008000500000000000600\
        020000000000060003000000000008000600c000020108\
        000700c633640705000a00010000000500090000000000\
        0500080040000000080014000000000006000e00000000\
        0006000f000000000006001000000000000600110000000000";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn gre_attrs(msg: &LinkMessage) -> Vec<InfoGre> {
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Data(InfoData::GreTun(gre)) => Some(gre.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn gre_link_request_agrees_with_iproute2() {
        use netlink_packet_core::{Emitable, Parseable};

        let local = Ipv4Addr::new(192, 0, 2, 1);
        let remote = Ipv4Addr::new(198, 51, 100, 7);
        let ours = gre_link_message("gwva1", local, remote, 64, 1400).unwrap();
        let mut bytes = vec![0u8; ours.buffer_len()];
        ours.emit(&mut bytes);
        let theirs = hex(IPROUTE2_NEWLINK_GRE);
        let theirs = LinkMessage::parse(&theirs[..]).unwrap();

        // Same header (index 0, no flags), same name, MTU and kind; GRE
        // data: ours is iproute2's without the attributes at their
        // defaults (keys, flags, TOS, encapsulation: 0).
        let parsed = LinkMessage::parse(&bytes[..]).unwrap();
        assert_eq!(parsed.header, theirs.header);
        for attr in &parsed.attributes {
            if !matches!(attr, LinkAttribute::LinkInfo(_)) {
                assert!(theirs.attributes.contains(attr), "{attr:?}");
            }
        }
        let our_gre = gre_attrs(&parsed);
        let their_gre = gre_attrs(&theirs);
        assert_eq!(
            our_gre,
            vec![
                InfoGre::Local(local),
                InfoGre::Remote(remote),
                InfoGre::Ttl(64),
                InfoGre::PathMTUDiscovery(true),
            ]
        );
        for attr in &our_gre {
            assert!(their_gre.contains(attr), "{attr:?} not in {their_gre:?}");
        }
        // The bytes of IFLA_LINKINFO: kind "gre", then IFLA_GRE_LOCAL (6),
        // IFLA_GRE_REMOTE (7), IFLA_GRE_TTL (8), IFLA_GRE_PMTUDISC (10).
        let linkinfo = [
            0x30, 0, 0x12, 0, // IFLA_LINKINFO (no NLA_F_NESTED, as iproute2)
            8, 0, 1, 0, b'g', b'r', b'e', 0, // IFLA_INFO_KIND
            0x24, 0, 2, 0, // IFLA_INFO_DATA
            8, 0, 6, 0, 192, 0, 2, 1, // local
            8, 0, 7, 0, 198, 51, 100, 7, // remote
            5, 0, 8, 0, 64, 0, 0, 0, // ttl
            5, 0, 10, 0, 1, 0, 0, 0, // pmtudisc
        ];
        assert!(
            bytes.ends_with(&linkinfo),
            "{:02x?}",
            &bytes[bytes.len().saturating_sub(linkinfo.len())..]
        );
    }

    #[test]
    fn gre_link_names_are_checked() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        for bad in ["", "a-name-too-long1", "a/b", "a b"] {
            assert!(gre_link_message(bad, a, a, 64, 1400).is_err(), "{bad:?}");
        }
        assert!(gre_link_message("va-123456789012", a, a, 64, 1400).is_ok());
        in_netns("nlgrename", || {
            let err = Netlink::open()
                .unwrap()
                .add_gre_link("a/b", a, a, 64, 1400)
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(
                err.to_string()
                    .starts_with("adding GRE link a/b local 192.0.2.1 remote 192.0.2.1: "),
                "{err}"
            );
        });
    }

    #[test]
    fn gre_link_when_the_kernel_has_ip_gre() {
        const TEST: &str = "gre_link_when_the_kernel_has_ip_gre";
        in_netns_with("nlgre", |ns| {
            let mut nl = Netlink::open().unwrap();
            let local = Ipv4Addr::new(192, 0, 2, 1);
            let remote = Ipv4Addr::new(198, 51, 100, 7);
            let idx = match nl.add_gre_link("gwva1", local, remote, 64, 1400) {
                Ok(idx) => idx,
                Err(e) if raw_os_error(&e) == Some(libc::EOPNOTSUPP) => {
                    crate::sys::tests::skip(TEST, "GRE (ip_gre, CONFIG_NET_IPGRE)", &e);
                    return;
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(nl.link_index("gwva1").unwrap(), idx);
            let shown = String::from_utf8(
                ns.ip(["-d", "-o", "link", "show", "dev", "gwva1"])
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            assert!(shown.contains("<POINTOPOINT,NOARP>"), "{shown}");
            assert!(shown.contains("mtu 1400"), "{shown}");
            assert!(
                shown.contains("gre remote 198.51.100.7 local 192.0.2.1 ttl 64"),
                "{shown}"
            );
            assert!(!shown.contains("nopmtudisc"), "{shown}");

            nl.add_address_peer(idx, HUB, SPOKE).unwrap();
            nl.set_link_up(idx).unwrap();
            let addrs = String::from_utf8(
                ns.ip(["-o", "addr", "show", "dev", "gwva1"])
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            assert!(
                addrs.contains("inet 10.1.1.1 peer 10.1.1.100/32"),
                "{addrs}"
            );
            assert_eq!(nl.link_stats(idx).unwrap().rx_packets, 0);

            let err = nl
                .add_gre_link("gwva1", local, remote, 64, 1400)
                .unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::EEXIST), "{err}");
            nl.del_link(idx).unwrap();
            let err = nl.link_index("gwva1").unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::ENODEV), "{err}");
        });
    }

    /// An IPv4/UDP packet from `src` to `dst` port 9 with a valid header
    /// checksum.
    fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(28 + payload.len()).unwrap();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let sum = p
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = !u16::try_from((sum & 0xffff) + (sum >> 16)).unwrap();
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&9u16.to_be_bytes());
        p.extend_from_slice(&9u16.to_be_bytes());
        p.extend_from_slice(&(total - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]); // no UDP checksum
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn link_counters_and_removal() {
        in_netns_with("nlstats", |ns| {
            let tun = Tun::create("gwtun0", 1).unwrap();
            let mut nl = Netlink::open().unwrap();
            let idx = tun.ifindex();
            nl.add_address_peer(idx, HUB, SPOKE).unwrap();
            nl.set_link_up(idx).unwrap();
            let before = nl.link_stats(idx).unwrap();

            // In through the device: counted as received.
            let packet = udp_packet(SPOKE, HUB, b"hello");
            tun.queues()[0].write(&packet).unwrap();
            // Out through it (to the peer), read off the queue.
            let socket = std::net::UdpSocket::bind((HUB, 0)).unwrap();
            socket.send_to(b"out", (SPOKE, 9)).unwrap();
            let mut buf = [0u8; 2048];
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                let n = tun.queues()[0].read(&mut buf).unwrap_or(0);
                // Skip anything but our IPv4/UDP packet.
                if n >= 28 && buf[0] >> 4 == 4 && buf[9] == 17 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "no packet out");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let after = nl.link_stats(idx).unwrap();
            assert_eq!(after.rx_packets - before.rx_packets, 1, "{after:?}");
            assert_eq!(
                after.rx_bytes - before.rx_bytes,
                packet.len() as u64,
                "{after:?}"
            );
            assert!(after.tx_packets > before.tx_packets, "{after:?}");
            assert!(after.tx_bytes >= before.tx_bytes + 31, "{after:?}");
            let shown = String::from_utf8(
                ns.ip(["-s", "-o", "link", "show", "dev", "gwtun0"])
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            assert!(shown.contains(&format!("{} ", after.rx_bytes)), "{shown}");

            let err = nl.link_stats(9999).unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::ENODEV), "{err}");

            // Removal, on a veth pair (TUN links go with their descriptor).
            let v = veth_lan(ns);
            nl.del_link(v).unwrap();
            assert_eq!(
                raw_os_error(&nl.link_index("nlv0").unwrap_err()),
                Some(libc::ENODEV)
            );
            // The peer went with it.
            assert_eq!(
                raw_os_error(&nl.link_index("nlv1").unwrap_err()),
                Some(libc::ENODEV)
            );
            let err = nl.del_link(v).unwrap_err();
            assert_eq!(raw_os_error(&err), Some(libc::ENODEV), "{err}");
            assert!(
                err.to_string().starts_with(&format!("removing link {v}: ")),
                "{err}"
            );
        });
    }

    #[test]
    fn ext_ack_attributes_are_found() {
        let mut attrs = Vec::new();
        // An unrelated attribute first (type 2, 8 bytes), then the message.
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&2u16.to_ne_bytes());
        attrs.extend_from_slice(&[0; 4]);
        let text = b"Invalid prefix\0";
        attrs.extend_from_slice(&u16::try_from(4 + text.len()).unwrap().to_ne_bytes());
        attrs.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        attrs.extend_from_slice(text);
        assert_eq!(
            find_ext_ack_message(&attrs).as_deref(),
            Some("Invalid prefix")
        );
        assert_eq!(find_ext_ack_message(&attrs[..10]), None);
        assert_eq!(find_ext_ack_message(&[]), None);
    }
}
