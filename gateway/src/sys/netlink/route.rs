//! IPv4 routes of the main table: per link for the tunnels, and the whole
//! table for a routing daemon (dump, gateway and blackhole routes, removal
//! of our own only).

use std::{
    io::{self, ErrorKind},
    net::Ipv4Addr,
};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};

use super::{Answer, Netlink, check_prefix_len};
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
pub(super) const RT_TABLE_MAIN: u8 = RouteHeader::RT_TABLE_MAIN;

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

impl Netlink {
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
            if let Some(route) = kernel_route(route).map_err(|e| crate::sys::context(e, what()))? {
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
                Err(local) => return Err(crate::sys::context(local, what())),
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
}

/// The [`KernelRoute`] of a dumped IPv4 route, or `None` when it is not in
/// the main table. The table is `rtm_table` unless an `RTA_TABLE` attribute
/// says otherwise (`rtm_table` holds only ids below 256).
pub(super) fn kernel_route(route: RouteMessage) -> io::Result<Option<KernelRoute>> {
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
