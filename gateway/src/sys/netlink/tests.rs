#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use netlink_packet_route::{
    AddressFamily,
    link::{InfoData, InfoGre, LinkAttribute, LinkInfo, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType},
};

use super::{
    link::gre_link_message,
    route::{RT_TABLE_MAIN, kernel_route},
    transport::{NLMSGERR_ATTR_MSG, find_ext_ack_message},
    *,
};
use crate::net::Ipv4Prefix;
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
            err.to_string()
                .starts_with("adding address 10.1.1.1 peer 10.1.1.100/32 dev gwtun0: File exists"),
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
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
