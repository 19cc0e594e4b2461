//! Two speakers over loopback TCP: a hub with a listen range and a spoke
//! with the hub as its static neighbor, as in the seed configs, with the
//! real sockets, FSM, codec and RIB. Each test uses its own 127.x.y.z
//! addresses and system-chosen ports, so parallel runs do not meet.

#![allow(clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Speaker, SpeakerConfig, SpeakerTasks};
use crate::{config, net::Ipv4Prefix};

fn prefix(s: &str) -> Ipv4Prefix {
    Ipv4Prefix::parse_host_or_prefix(s).unwrap()
}

fn bgp(text: &str) -> config::Bgp {
    let full = format!("[hub]\nlocal_address = \"172.25.1.1\"\nuplink = \"eth0\"\n{text}");
    config::parse(&full, "test").unwrap().bgp.unwrap()
}

fn start(bgp: config::Bgp, listen: Ipv4Addr, peer_port: u16) -> (Arc<Speaker>, SpeakerTasks) {
    let config = SpeakerConfig {
        router_id: listen,
        listen: SocketAddrV4::new(listen, 0),
        peer_port,
        scan_kernel_table: false,
        bgp,
    };
    Speaker::start(config, None).unwrap()
}

/// A loopback network of its own per test: 127.<a>.<b>.0/24 from the pid
/// and a per-test number.
fn net(test: u8) -> (u8, u8) {
    let pid = std::process::id();
    let byte = |v: u32| u8::try_from(v % 200).unwrap();
    (byte(pid >> 8) + 20, byte(pid) ^ test)
}

async fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hub_bgp(a: u8, b: u8, limit: u32) -> config::Bgp {
    let mut bgp = bgp(&format!(
        r#"
[bgp]
asn = 65001
networks = ["192.168.0.0/24"]
aggregates = [{{ prefix = "192.168.0.0/16", summary_only = true }}]
listen_limit = {limit}
[[bgp.listen_range]]
prefix = "10.1.1.0/25"
peer_group = "Spokes"
[bgp.peer_group.Spokes]
remote_as = 65001
route_reflector_client = true
# Next hop self must be a unicast address (RFC 4271 section 6.3 refuses a
# loopback one): the hub's tunnel address, as IOS's update-source would.
update_source = "10.1.1.1"
"#
    ));
    // The config check wants unicast addresses; the test runs on loopback.
    bgp.listen_range[0].prefix = Ipv4Prefix::new(Ipv4Addr::new(127, a, b, 0), 25).unwrap();
    bgp
}

fn spoke_bgp(hub: Ipv4Addr, me: Ipv4Addr, lan: &str) -> config::Bgp {
    let mut bgp = bgp(&format!(
        r#"
[bgp]
asn = 65001
networks = ["{lan}"]
[[bgp.neighbor]]
address = "10.1.1.1"
remote_as = 65001
"#
    ));
    bgp.neighbor[0].address = hub;
    bgp.neighbor[0].update_source = Some(me);
    // As on the hub: a unicast next hop (the spoke's tunnel address).
    bgp.neighbor[0].next_hop = Some(Ipv4Addr::new(10, 1, 1, me.octets()[3]));
    bgp
}

#[tokio::test]
async fn spokes_in_the_listen_range_exchange_routes_with_the_hub() {
    let (a, b) = net(1);
    let hub_addr = Ipv4Addr::new(127, a, b, 1);
    let (hub, hub_tasks) = start(hub_bgp(a, b, 10), hub_addr, 0);
    hub.set_routes_present([prefix("192.168.0.0/24")]);
    let port = hub.local_addr().port();
    let mut spokes = Vec::new();
    for k in 1..=2u8 {
        let me = Ipv4Addr::new(127, a, b, 10 + k);
        let lan = format!("192.168.{k}.0/24");
        let (s, t) = start(spoke_bgp(hub_addr, me, &lan), me, port);
        s.set_routes_present([prefix(&lan)]);
        spokes.push((s, t));
    }
    wait("both spokes' prefixes at the hub", || {
        hub.prefix_count() == 4
    })
    .await;
    let summary = hub.summary();
    assert_eq!(summary.neighbors.len(), 2);
    for n in &summary.neighbors {
        assert!(n.dynamic, "{n:?}");
        assert_eq!(n.state, "Established");
        assert_eq!(n.prefixes_received, Some(1));
        assert_eq!(n.peer_group.as_deref(), Some("Spokes"));
    }
    // Each spoke gets the summary only: its own LAN and the aggregate.
    for (s, _) in &spokes {
        wait("the aggregate at the spoke", || {
            s.table().rows.iter().any(|r| r.prefix == "192.168.0.0/16")
        })
        .await;
        let prefixes: Vec<String> = s.table().rows.iter().map(|r| r.prefix.clone()).collect();
        assert_eq!(prefixes.len(), 2, "{prefixes:?}");
        let spoke_summary = s.summary();
        assert_eq!(spoke_summary.neighbors[0].address, hub_addr);
        assert!(!spoke_summary.neighbors[0].dynamic);
        assert_eq!(spoke_summary.neighbors[0].prefixes_received, Some(1));
    }
    // The hub's table marks the more-specifics suppressed.
    let rows = hub.table().rows;
    let one = rows.iter().find(|r| r.prefix == "192.168.1.0/24").unwrap();
    assert!(one.suppressed && one.best, "{one:?}");

    // A spoke's tunnel goes: its session and prefix go at once (no hold
    // timer), and the dynamic neighbor disappears.
    let gone = Ipv4Addr::new(127, a, b, 11);
    hub.routes_removed(&[Ipv4Prefix::new(gone, 32).unwrap()]);
    // The instance takes the event from its channel: soon, not in the
    // same call.
    wait("its prefix withdrawn", || hub.prefix_count() == 3).await;
    wait("the dynamic neighbor removed", || {
        hub.summary().neighbors.iter().all(|n| n.address != gone)
    })
    .await;

    for (s, t) in spokes {
        s.shutdown(t).await;
    }
    hub.shutdown(hub_tasks).await;
}

#[tokio::test]
async fn connections_from_outside_the_ranges_and_over_the_limit_are_refused() {
    let (a, b) = net(2);
    let hub_addr = Ipv4Addr::new(127, a, b, 1);
    let (hub, hub_tasks) = start(hub_bgp(a, b, 1), hub_addr, 0);
    let port = hub.local_addr().port();
    // 127.a.b.200 is outside 127.a.b.0/25.
    let outsider = Ipv4Addr::new(127, a, b, 200);
    let (o, ot) = start(
        spoke_bgp(hub_addr, outsider, "192.168.9.0/24"),
        outsider,
        port,
    );
    let first = Ipv4Addr::new(127, a, b, 11);
    let (s1, t1) = start(spoke_bgp(hub_addr, first, "192.168.1.0/24"), first, port);
    wait("the first spoke Established", || {
        hub.established_count() == 1
    })
    .await;
    let second = Ipv4Addr::new(127, a, b, 12);
    let (s2, t2) = start(spoke_bgp(hub_addr, second, "192.168.2.0/24"), second, port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = hub.summary();
    let addresses: Vec<Ipv4Addr> = summary.neighbors.iter().map(|n| n.address).collect();
    assert_eq!(addresses, vec![first], "limit 1 and the outsider refused");
    assert_ne!(s2.summary().neighbors[0].state, "Established");
    assert_ne!(o.summary().neighbors[0].state, "Established");
    for (s, t) in [(o, ot), (s1, t1), (s2, t2)] {
        s.shutdown(t).await;
    }
    hub.shutdown(hub_tasks).await;
}

#[tokio::test]
async fn a_stopping_hub_sends_cease_and_the_spoke_withdraws_its_routes() {
    let (a, b) = net(3);
    let hub_addr = Ipv4Addr::new(127, a, b, 1);
    let (hub, hub_tasks) = start(hub_bgp(a, b, 10), hub_addr, 0);
    hub.set_routes_present([prefix("192.168.0.0/24")]);
    let me = Ipv4Addr::new(127, a, b, 11);
    let (s, t) = start(
        spoke_bgp(hub_addr, me, "192.168.1.0/24"),
        me,
        hub.local_addr().port(),
    );
    s.set_routes_present([prefix("192.168.1.0/24")]);
    wait("the aggregate at the spoke", || s.prefix_count() == 2).await;
    hub.shutdown(hub_tasks).await;
    // The Cease reaches the spoke now, not after its hold time.
    wait("the hub's routes gone at the spoke", || {
        s.prefix_count() == 1
    })
    .await;
    assert_ne!(s.summary().neighbors[0].state, "Established");
    s.shutdown(t).await;
}

/// A round waits while a session is exchanging OPENs (a bounded time): a
/// peer in the listen range that connects and sends nothing holds a
/// spoke's new route back from the other spokes until it goes.
#[tokio::test]
async fn rounds_wait_while_a_session_exchanges_opens() {
    let (a, b) = net(4);
    let hub_addr = Ipv4Addr::new(127, a, b, 1);
    let (hub, hub_tasks) = start(hub_bgp(a, b, 10), hub_addr, 0);
    let port = hub.local_addr().port();
    let lan = |k: u8| format!("10.77.{k}.0/24");
    let first = Ipv4Addr::new(127, a, b, 11);
    let (s1, t1) = start(spoke_bgp(hub_addr, first, &lan(1)), first, port);
    s1.set_routes_present([prefix(&lan(1))]);
    wait("the first spoke Established", || {
        hub.established_count() == 1
    })
    .await;
    let silent = tokio::net::TcpSocket::new_v4().unwrap();
    silent
        .bind(SocketAddrV4::new(Ipv4Addr::new(127, a, b, 20), 0).into())
        .unwrap();
    let silent = silent
        .connect(SocketAddrV4::new(hub_addr, port).into())
        .await
        .unwrap();
    wait("the silent peer's session in OpenSent", || {
        super::lock(&hub.instance).opening == 1
    })
    .await;
    let second = Ipv4Addr::new(127, a, b, 12);
    let (s2, t2) = start(spoke_bgp(hub_addr, second, &lan(2)), second, port);
    s2.set_routes_present([prefix(&lan(2))]);
    wait("the second spoke's route at the hub", || {
        hub.prefix_count() == 2
    })
    .await;
    let learned = Instant::now();
    let at_first = || s1.table().rows.iter().any(|r| r.prefix == lan(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only meaningful while the hold cannot have run out.
    if learned.elapsed() + Duration::from_millis(100) < super::round::SETUP_HOLD {
        assert!(!at_first(), "sent while a session was exchanging OPENs");
    }
    drop(silent);
    wait("the route at the first spoke", at_first).await;
    for (s, t) in [(s1, t1), (s2, t2)] {
        s.shutdown(t).await;
    }
    hub.shutdown(hub_tasks).await;
}

#[test]
fn the_routing_table_backs_networks_and_feeds_redistribute() {
    use crate::sys::netlink::{
        KernelRoute, KernelRouteKind, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RTPROT_BOOT,
        RTPROT_GATEWAY, RTPROT_KERNEL,
    };
    let route = |p: &str, protocol, scope, kind| KernelRoute {
        prefix: prefix(p),
        protocol,
        scope,
        kind,
        oif: Some(2),
        gateway: None,
    };
    let routes = [
        route(
            "192.168.0.0/24",
            RTPROT_KERNEL,
            RT_SCOPE_LINK,
            KernelRouteKind::Unicast,
        ),
        route(
            "172.16.0.0/16",
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            KernelRouteKind::Unicast,
        ),
        route(
            "10.1.1.100/32",
            RTPROT_GATEWAY,
            RT_SCOPE_LINK,
            KernelRouteKind::Unicast,
        ),
        route(
            "10.9.0.0/16",
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            KernelRouteKind::Blackhole,
        ),
    ];
    let none = super::scan::table_facts(routes.iter(), &[]);
    assert_eq!(
        none.present,
        ["192.168.0.0/24", "172.16.0.0/16", "10.1.1.100/32"]
            .map(prefix)
            .into_iter()
            .collect()
    );
    assert!(none.redistributed.is_empty());
    let connected = super::scan::table_facts(routes.iter(), &[config::Redistribute::Connected]);
    assert_eq!(
        connected.redistributed,
        [prefix("192.168.0.0/24")].into_iter().collect()
    );
    let both = super::scan::table_facts(
        routes.iter(),
        &[
            config::Redistribute::Connected,
            config::Redistribute::Static,
        ],
    );
    assert_eq!(
        both.redistributed,
        ["192.168.0.0/24", "172.16.0.0/16"]
            .map(prefix)
            .into_iter()
            .collect()
    );
}
