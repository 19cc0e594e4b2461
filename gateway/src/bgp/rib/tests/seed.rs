//! The seed documents' hub: spokes as dynamic iBGP neighbors each
//! announcing their LAN, `aggregate-address 192.168.0.0/16 summary-only`,
//! and (second document) the inter-hub neighbor with
//! `route-reflector-client`, `unsuppress-map` and `set ip next-hop`.

use super::*;

const INTERHUB: PeerId = PeerId(1000);
const AGG: &str = "192.168.0.0/16";

fn spoke_id(k: u32) -> PeerId {
    PeerId(k)
}

/// The hub with spokes 1..=n up and announcing, and the inter-hub session.
fn seed_hub(config: RibConfig, n: u32) -> (Rib, Wire) {
    let mut peers: Vec<(u32, PeerInfo)> = (1..=n).map(|k| (k, spoke(k))).collect();
    peers.push((INTERHUB.0, interhub()));
    let (mut rib, mut wire) = setup(config, &peers);
    for k in 1..=n {
        rib.update_from(spoke_id(k), &spoke_update(k)).unwrap();
    }
    round(&mut rib, &mut wire);
    (rib, wire)
}

/// The summary as the spokes get it: next hop the hub's tunnel address,
/// LOCAL_PREF 100, ATOMIC_AGGREGATE and AGGREGATOR (65001, 172.25.1.1).
fn summary_to_spokes() -> PathAttributes {
    PathAttributes {
        local_pref: Some(100),
        atomic_aggregate: true,
        aggregator: Some((HUB_AS, ip("172.25.1.1"))),
        ..attrs("10.1.1.1")
    }
}

#[test]
fn spokes_get_only_the_summary() {
    let (rib, wire) = seed_hub(hub_config(), 3);
    for k in 1..=3 {
        let t = wire.table(spoke_id(k));
        assert_eq!(
            t.keys().copied().collect::<Vec<_>>(),
            vec![pfx(AGG)],
            "spoke {k}"
        );
        assert_eq!(t[&pfx(AGG)], summary_to_spokes());
    }
    // The Loc-RIB has every /24, suppressed, and the aggregate.
    for k in 1..=3 {
        assert!(rib.is_suppressed(spoke_lan(k)));
        assert_eq!(
            rib.best(spoke_lan(k)).unwrap().0.source,
            Source::Peer(spoke_id(k))
        );
    }
    assert!(!rib.is_suppressed(pfx(AGG)));
    let (agg, step) = rib.best(pfx(AGG)).unwrap();
    assert_eq!((agg.source, step), (Source::Aggregate, Step::Only));
    // PfxRcd 1 per spoke.
    let c = rib.counters(spoke_id(2)).unwrap();
    assert_eq!((c.received, c.accepted, c.updates), (1, 1, 1));
}

#[test]
fn interhub_gets_the_specifics_reflected_with_its_next_hop() {
    let (_, wire) = seed_hub(hub_config(), 3);
    let t = wire.table(INTERHUB);
    let mut want = vec![pfx(AGG)];
    want.extend((1..=3).map(spoke_lan));
    want.sort();
    assert_eq!(t.keys().copied().collect::<Vec<_>>(), want);
    for k in 1..=3 {
        // Reflected from a non-client to a client: ORIGINATOR_ID the
        // spoke's router id, CLUSTER_LIST our cluster id (= router id),
        // next hop rewritten by the route-map.
        assert_eq!(
            t[&spoke_lan(k)],
            PathAttributes {
                med: Some(0),
                local_pref: Some(100),
                originator_id: Some(spoke(k).router_id),
                cluster_list: vec![ip("172.25.1.1")],
                ..attrs("192.168.0.2")
            },
            "spoke {k}"
        );
    }
    // The aggregate is ours: no reflection attributes; next hop rewritten.
    assert_eq!(
        t[&pfx(AGG)],
        PathAttributes {
            next_hop: ip("192.168.0.2"),
            ..summary_to_spokes()
        }
    );
}

/// The second document's DMVPN hub redistributes its EIGRP routes: the
/// spokes get them reflected (client to non-clients), so a migrated spoke
/// holds two prefixes, the summary and the DMVPN network. What falls
/// inside the aggregate stays suppressed towards the spokes, and nothing
/// goes back to the DMVPN hub.
#[test]
fn dmvpn_routes_are_reflected_to_the_spokes() {
    let (mut rib, mut wire) = seed_hub(hub_config(), 2);
    let from_dmvpn = PathAttributes {
        origin: Origin::Incomplete,
        med: Some(0),
        local_pref: Some(100),
        ..attrs("192.168.0.1")
    };
    rib.update_from(
        INTERHUB,
        &announce(
            &from_dmvpn,
            &["10.0.0.0/24", "192.168.110.0/24", "192.168.102.0/24"],
        ),
    )
    .unwrap();
    let changes = round(&mut rib, &mut wire);
    for k in 1..=2 {
        let t = wire.table(spoke_id(k));
        assert_eq!(
            t.keys().copied().collect::<Vec<_>>(),
            vec![pfx("10.0.0.0/24"), pfx(AGG)],
            "spoke {k}"
        );
        assert_eq!(
            t[&pfx("10.0.0.0/24")],
            PathAttributes {
                originator_id: Some(ip("172.25.0.1")),
                cluster_list: vec![ip("172.25.1.1")],
                ..from_dmvpn.clone()
            }
        );
    }
    // One UPDATE for all the spokes, none for the inter-hub neighbor.
    assert_eq!(changes.outbound.len(), 1);
    assert_eq!(&*changes.outbound[0].to, &[spoke_id(1), spoke_id(2)]);
    assert!(changes.for_peer(INTERHUB).is_empty());
    // 192.168.110.0/24 (an unmigrated spoke): installed in the FIB towards
    // the DMVPN hub.
    assert_eq!(
        wire.fib[&pfx("192.168.110.0/24")],
        FibRoute::Forward {
            next_hop: ip("192.168.0.1"),
            peer: INTERHUB
        }
    );
    // Spoke 2's LAN, also redistributed by the DMVPN hub (a spoke in
    // migration): the spoke's own route wins (ORIGIN IGP over INCOMPLETE).
    assert_eq!(
        rib.best(spoke_lan(2)).map(|(p, s)| (p.source, s)),
        Some((Source::Peer(spoke_id(2)), Step::Origin))
    );
    assert_eq!(rib.counters(INTERHUB).unwrap().accepted, 3);
}

#[test]
fn a_spoke_going_away_withdraws_its_lan_everywhere() {
    let (mut rib, mut wire) = seed_hub(hub_config(), 3);
    assert!(rib.remove_peer(spoke_id(2)));
    wire.forget(spoke_id(2));
    let changes = round(&mut rib, &mut wire);
    // Only the inter-hub neighbor had it.
    assert_eq!(changes.outbound.len(), 1);
    assert_eq!(&*changes.outbound[0].to, &[INTERHUB]);
    assert_eq!(changes.outbound[0].update.withdrawn, vec![spoke_lan(2)]);
    assert_eq!(
        changes.fib,
        vec![FibChange::Remove {
            prefix: spoke_lan(2)
        }]
    );
    assert!(rib.paths(spoke_lan(2)).is_empty());
    // The aggregate stays: spokes 1 and 3 still contribute.
    assert!(rib.best(pfx(AGG)).is_some());
    assert!(!rib.remove_peer(spoke_id(2)));
}

#[test]
fn the_aggregate_goes_with_its_last_contributor() {
    let (mut rib, mut wire) = seed_hub(hub_config(), 2);
    rib.remove_peer(spoke_id(1));
    wire.forget(spoke_id(1));
    round(&mut rib, &mut wire);
    assert_eq!(wire.prefixes(spoke_id(2)), vec![pfx(AGG)]);
    // The last one withdraws its LAN but stays up: the summary is
    // withdrawn from it and from the inter-hub neighbor.
    rib.update_from(spoke_id(2), &withdraw(&[&spoke_lan(2).to_string()]))
        .unwrap();
    let changes = round(&mut rib, &mut wire);
    assert!(rib.best(pfx(AGG)).is_none());
    assert!(wire.table(spoke_id(2)).is_empty());
    assert!(wire.table(INTERHUB).is_empty());
    assert!(
        changes
            .fib
            .contains(&FibChange::Remove { prefix: pfx(AGG) })
    );
    // And comes back with the first new one.
    rib.update_from(spoke_id(2), &spoke_update(2)).unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(wire.prefixes(spoke_id(2)), vec![pfx(AGG)]);
}

/// `network 192.168.0.0/16` beside the aggregate (the DESIGN.md config
/// sketch): IOS prefers the `network` path, so while the routing table
/// has 192.168.0.0/16 the prefix is advertised (without ATOMIC_AGGREGATE)
/// whether or not any spoke is up; without the route, only the aggregate
/// can make it.
#[test]
fn network_beside_the_aggregate() {
    let config = RibConfig {
        networks: vec![pfx(AGG)],
        ..hub_config()
    };
    let (mut rib, mut wire) = seed_hub(config, 2);
    // No route in the routing table: the aggregate is the only path.
    assert_eq!(rib.paths(pfx(AGG)).len(), 1);
    assert_eq!(wire.table(spoke_id(1))[&pfx(AGG)], summary_to_spokes());
    // A static to Null0 for 192.168.0.0/16 (seed document 2's EIGRP
    // variant): the network path wins over the aggregate.
    rib.set_route_present(pfx(AGG), true);
    round(&mut rib, &mut wire);
    assert_eq!(
        rib.best(pfx(AGG)).map(|(p, s)| (p.source, s)),
        Some((Source::Network, Step::LocallyOriginated))
    );
    let from_network = PathAttributes {
        med: Some(0),
        local_pref: Some(100),
        ..attrs("10.1.1.1")
    };
    assert_eq!(wire.table(spoke_id(1))[&pfx(AGG)], from_network);
    // All spokes go: the aggregate path goes, the prefix stays.
    rib.remove_peer(spoke_id(1));
    rib.remove_peer(spoke_id(2));
    round(&mut rib, &mut wire);
    assert_eq!(rib.paths(pfx(AGG)).len(), 1);
    assert_eq!(
        wire.table(INTERHUB)[&pfx(AGG)],
        PathAttributes {
            next_hop: ip("192.168.0.2"),
            ..from_network
        }
    );
    // The route goes: so does the prefix.
    rib.set_route_present(pfx(AGG), false);
    round(&mut rib, &mut wire);
    assert!(wire.table(INTERHUB).is_empty());
    assert!(rib.table().is_empty());
}

/// IOS reads the seed's `network 192.168.0.0` (no mask) as classful, a
/// /24: the inter-hub LAN, connected. It is then a contributor of the /16
/// aggregate (which stays up while the LAN is there) and suppressed
/// towards the spokes like their LANs.
#[test]
fn classful_network_is_a_contributor() {
    let config = RibConfig {
        networks: vec![pfx("192.168.0.0/24")],
        ..hub_config()
    };
    let (mut rib, mut wire) = setup(config, &[(1, spoke(1)), (INTERHUB.0, interhub())]);
    assert!(rib.table().is_empty());
    rib.set_routes_present([pfx("192.168.0.0/24"), pfx("10.1.1.101/32")]);
    round(&mut rib, &mut wire);
    assert!(rib.is_suppressed(pfx("192.168.0.0/24")));
    assert_eq!(wire.prefixes(PeerId(1)), vec![pfx(AGG)]);
    assert_eq!(
        wire.prefixes(INTERHUB),
        vec![pfx(AGG), pfx("192.168.0.0/24")]
    );
    // The connected network's path has no FIB entry (the kernel has it);
    // the aggregate's own path gets a discard route.
    assert_eq!(wire.fib.len(), 1);
    assert_eq!(wire.fib[&pfx(AGG)], FibRoute::Discard);
    rib.set_routes_present([]);
    round(&mut rib, &mut wire);
    assert!(wire.table(PeerId(1)).is_empty());
    assert!(wire.fib.is_empty());
}

#[test]
fn show_bgp_flags_on_the_seed_hub() {
    let (rib, _) = seed_hub(hub_config(), 2);
    let rows = rib.table();
    assert_eq!(rows.len(), 3);
    let agg = &rows[0];
    assert_eq!(agg.prefix, pfx(AGG));
    assert!(agg.best.is_some() && !agg.suppressed && agg.path.peer.is_none());
    assert_eq!(
        (
            agg.path.weight(),
            agg.path.attrs.origin,
            agg.path.attrs.next_hop
        ),
        (32768, Origin::Igp, ip("0.0.0.0"))
    );
    for (row, k) in rows[1..].iter().zip(1..) {
        assert_eq!(row.prefix, spoke_lan(k));
        assert!(row.best.is_some() && row.suppressed);
        assert!(row.path.peer.is_some_and(|f| f.ibgp));
        assert_eq!(row.path.attrs.next_hop, spoke(k).address);
        assert_eq!(
            (row.path.attrs.med, row.path.local_pref(), row.path.weight()),
            (Some(0), 100, 0)
        );
        assert_eq!(row.path.source.peer(), Some(spoke_id(k)));
    }
}
