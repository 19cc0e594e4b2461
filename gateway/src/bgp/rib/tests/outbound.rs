//! What peers are sent: split horizon, route reflection, never back to the
//! sender, next hop, LOCAL_PREF, eBGP, communities, unknown attributes,
//! sharing and packing of UPDATEs, full tables and refreshes, the FIB.

use super::*;
use crate::bgp::types::RawAttribute;

const P: &str = "10.50.0.0/16";

/// Clients 1, 2, 3 and non-clients 4, 5 (iBGP), eBGP peer 6 (AS 65002).
fn mesh() -> (Rib, Wire) {
    setup(
        plain_config(),
        &[
            (1, ibgp_peer(1, true)),
            (2, ibgp_peer(2, true)),
            (3, ibgp_peer(3, true)),
            (4, ibgp_peer(4, false)),
            (5, ibgp_peer(5, false)),
            (6, ebgp_peer(6, 65002)),
        ],
    )
}

fn who_has(rib: &Rib, wire: &Wire, p: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = rib
        .peer_ids()
        .filter(|&id| wire.table(id).contains_key(&pfx(p)))
        .map(|id| id.0)
        .collect();
    ids.sort_unstable();
    ids
}

/// RFC 4456 section 6 and RFC 4271 9.2: (sender, who gets it).
#[test]
fn split_horizon_and_reflection() {
    let cases = [
        ("from a client: everyone else", 1, vec![2, 3, 4, 5, 6]),
        ("from a non-client: clients and eBGP", 4, vec![1, 2, 3, 6]),
    ];
    for (name, from, want) in cases {
        let (mut rib, mut wire) = mesh();
        let nh = format!("10.9.0.{from}");
        rib.update_from(PeerId(from), &announce(&attrs(&nh), &[P]))
            .unwrap();
        round(&mut rib, &mut wire);
        assert_eq!(who_has(&rib, &wire, P), want, "{name}");
    }
    // From eBGP: every iBGP peer.
    let (mut rib, mut wire) = mesh();
    let a = PathAttributes {
        as_path: vec![AsSegment::Sequence(vec![65002])],
        ..attrs("10.8.0.6")
    };
    rib.update_from(PeerId(6), &announce(&a, &[P])).unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(who_has(&rib, &wire, P), vec![1, 2, 3, 4, 5]);
}

/// Without route reflection (no clients), an iBGP route goes to no other
/// iBGP peer: the spokes' case.
#[test]
fn no_clients_no_ibgp_to_ibgp() {
    let (mut rib, mut wire) = setup(
        plain_config(),
        &[(1, spoke(1)), (2, spoke(2)), (3, spoke(3))],
    );
    rib.update_from(PeerId(1), &spoke_update(1)).unwrap();
    let changes = round(&mut rib, &mut wire);
    assert!(changes.outbound.is_empty());
    assert_eq!(changes.fib.len(), 1);
}

#[test]
fn reflection_attributes() {
    let (mut rib, mut wire) = mesh();
    // Reflected once already by another cluster: ORIGINATOR_ID kept, our
    // cluster id in front.
    let a = PathAttributes {
        originator_id: Some(ip("7.7.7.7")),
        cluster_list: vec![ip("172.25.2.1")],
        ..attrs("10.9.0.1")
    };
    rib.update_from(PeerId(1), &announce(&a, &[P])).unwrap();
    rib.update_from(PeerId(4), &announce(&attrs("10.9.0.4"), &["10.60.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    let got = &wire.table(PeerId(2))[&pfx(P)];
    assert_eq!(got.originator_id, Some(ip("7.7.7.7")));
    assert_eq!(got.cluster_list, vec![ip("172.25.1.1"), ip("172.25.2.1")]);
    assert_eq!(got.next_hop, ip("10.9.0.1"));
    // First reflection: ORIGINATOR_ID is the sender's router id.
    let got = &wire.table(PeerId(2))[&pfx("10.60.0.0/16")];
    assert_eq!(got.originator_id, Some(ip("9.9.9.4")));
    assert_eq!(got.cluster_list, vec![ip("172.25.1.1")]);
    // eBGP: no reflection attributes, our AS first, next hop self, no
    // LOCAL_PREF.
    let got = &wire.table(PeerId(6))[&pfx(P)];
    assert_eq!(
        *got,
        PathAttributes {
            as_path: vec![AsSegment::Sequence(vec![HUB_AS])],
            ..attrs("10.8.0.254")
        }
    );
}

#[test]
fn next_hop_and_local_pref() {
    let config = RibConfig {
        redistribute: vec![pfx("10.70.0.0/16")],
        ..plain_config()
    };
    let (mut rib, mut wire) = setup(
        config,
        &[
            (1, ibgp_peer(1, true)),
            (2, ibgp_peer(2, true)),
            (3, interhub()),
            (6, ebgp_peer(6, 65002)),
        ],
    );
    rib.update_from(
        PeerId(1),
        &announce(
            &PathAttributes {
                local_pref: Some(150),
                ..attrs("10.9.0.1")
            },
            &[P],
        ),
    )
    .unwrap();
    round(&mut rib, &mut wire);
    let local = pfx("10.70.0.0/16");
    // Ours: next hop self (the session's local address), ORIGIN
    // INCOMPLETE, MED 0, LOCAL_PREF 100 to iBGP only.
    assert_eq!(
        wire.table(PeerId(1))[&local],
        PathAttributes {
            origin: Origin::Incomplete,
            med: Some(0),
            local_pref: Some(100),
            ..attrs("10.9.0.254")
        }
    );
    assert_eq!(wire.table(PeerId(3))[&local].next_hop, ip("192.168.0.2"));
    assert_eq!(wire.table(PeerId(6))[&local].next_hop, ip("10.8.0.254"));
    assert_eq!(wire.table(PeerId(6))[&local].local_pref, None);
    // Learned over iBGP: next hop unchanged, LOCAL_PREF kept; the
    // route-map's next hop wins over it.
    assert_eq!(wire.table(PeerId(2))[&pfx(P)].next_hop, ip("10.9.0.1"));
    assert_eq!(wire.table(PeerId(2))[&pfx(P)].local_pref, Some(150));
    assert_eq!(wire.table(PeerId(3))[&pfx(P)].next_hop, ip("192.168.0.2"));
    assert_eq!(wire.table(PeerId(6))[&pfx(P)].local_pref, None);
    // Redistribution stops: withdrawn.
    rib.set_redistributed_routes([]);
    round(&mut rib, &mut wire);
    assert!(!wire.table(PeerId(1)).contains_key(&local));
}

/// RFC 4271 5.1.4: a MED from a neighbouring AS is not passed to another;
/// it is kept over iBGP.
#[test]
fn ebgp_med() {
    let (mut rib, mut wire) = setup(
        plain_config(),
        &[
            (1, ibgp_peer(1, true)),
            (6, ebgp_peer(6, 65002)),
            (7, ebgp_peer(7, 65003)),
        ],
    );
    let a = PathAttributes {
        as_path: vec![AsSegment::Sequence(vec![65002])],
        med: Some(42),
        ..attrs("10.8.0.6")
    };
    rib.update_from(PeerId(6), &announce(&a, &[P])).unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(wire.table(PeerId(1))[&pfx(P)].med, Some(42));
    let to_7 = &wire.table(PeerId(7))[&pfx(P)];
    assert_eq!(to_7.med, None);
    assert_eq!(to_7.as_path, vec![AsSegment::Sequence(vec![HUB_AS, 65002])]);
}

#[test]
fn well_known_communities() {
    let cases = [
        ("NO_ADVERTISE: nobody", NO_ADVERTISE, vec![]),
        ("NO_EXPORT: iBGP only", NO_EXPORT, vec![2, 3, 4, 5]),
        (
            "NO_EXPORT_SUBCONFED: iBGP only",
            NO_EXPORT_SUBCONFED,
            vec![2, 3, 4, 5],
        ),
        ("another: everyone", 0xFDE9_0001, vec![2, 3, 4, 5, 6]),
    ];
    for (name, community, want) in cases {
        let (mut rib, mut wire) = mesh();
        let a = PathAttributes {
            communities: vec![community],
            ..attrs("10.9.0.1")
        };
        rib.update_from(PeerId(1), &announce(&a, &[P])).unwrap();
        round(&mut rib, &mut wire);
        assert_eq!(who_has(&rib, &wire, P), want, "{name}");
        assert!(rib.best(pfx(P)).is_some(), "{name}: still in the Loc-RIB");
    }
}

/// RFC 4271 section 5: unrecognized optional transitive attributes go on
/// with the Partial bit; optional non-transitive ones do not.
#[test]
fn unknown_attributes() {
    let (mut rib, mut wire) = mesh();
    let raw = |flags, type_code| RawAttribute {
        flags,
        type_code,
        value: vec![1, 2, 3],
    };
    let a = PathAttributes {
        other: vec![raw(0xC0, 99), raw(0x80, 100)],
        ..attrs("10.9.0.1")
    };
    rib.update_from(PeerId(1), &announce(&a, &[P])).unwrap();
    round(&mut rib, &mut wire);
    for id in [2, 6] {
        assert_eq!(wire.table(PeerId(id))[&pfx(P)].other, vec![raw(0xE0, 99)]);
    }
}

/// Never back to the sender: when the best moves from client 1 to client
/// 2, client 1 gets client 2's route, client 2 gets a withdrawal of client
/// 1's, the others an update. When it moves back, the reverse.
#[test]
fn best_moving_between_senders() {
    let (mut rib, mut wire) = mesh();
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &[P]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(who_has(&rib, &wire, P), vec![2, 3, 4, 5, 6]);
    let better = PathAttributes {
        local_pref: Some(200),
        ..attrs("10.9.0.2")
    };
    rib.update_from(PeerId(2), &announce(&better, &[P]))
        .unwrap();
    let changes = round(&mut rib, &mut wire);
    assert_eq!(who_has(&rib, &wire, P), vec![1, 3, 4, 5, 6]);
    assert_eq!(wire.table(PeerId(1))[&pfx(P)].next_hop, ip("10.9.0.2"));
    let to_2 = changes.for_peer(PeerId(2));
    assert_eq!(to_2.len(), 1);
    assert_eq!(to_2[0].withdrawn, vec![pfx(P)]);
    // The clients' group: one UPDATE to 1 and 3 (2 excepted), then 2's
    // own withdrawal; the non-clients and eBGP peer one each.
    let clients: Vec<&Outbound> = changes
        .outbound
        .iter()
        .filter(|o| o.to.contains(&PeerId(1)))
        .collect();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].except, vec![PeerId(2)]);
    rib.update_from(PeerId(2), &withdraw(&[P])).unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(who_has(&rib, &wire, P), vec![2, 3, 4, 5, 6]);
    // Client 1's route replaced by non-client 4's: the clients and the
    // eBGP peer get it, non-client 5 loses it, 4 is not sent its own.
    rib.update_from(PeerId(1), &withdraw(&[P])).unwrap();
    rib.update_from(PeerId(4), &announce(&attrs("10.9.0.4"), &[P]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(who_has(&rib, &wire, P), vec![1, 2, 3, 6]);
}

/// N clients in one group: a route from one of them is one UPDATE,
/// encoded once, for the group with its sender excepted.
#[test]
fn one_update_for_a_group() {
    let peers: Vec<(u32, PeerInfo)> = (1..=10)
        .map(|n| (n, ibgp_peer(u8::try_from(n).unwrap(), true)))
        .collect();
    let (mut rib, mut wire) = setup(plain_config(), &peers);
    assert_eq!(rib.group_count(), 1);
    rib.update_from(PeerId(3), &announce(&attrs("10.9.0.3"), &[P]))
        .unwrap();
    let changes = round(&mut rib, &mut wire);
    assert_eq!(changes.outbound.len(), 1);
    let o = &changes.outbound[0];
    assert_eq!(o.to.len(), 10);
    assert_eq!(o.except, vec![PeerId(3)]);
    assert_eq!(o.recipients().count(), 9);
    assert!(!o.is_for(PeerId(3)));
    // Every client reflecting its own prefix in the same round: 10
    // UPDATEs (one per prefix: their ORIGINATOR_IDs differ), not 100.
    for n in 1..=10u8 {
        let p = format!("10.{n}.0.0/16");
        rib.update_from(
            PeerId(u32::from(n)),
            &announce(&attrs(&format!("10.9.0.{n}")), &[&p]),
        )
        .unwrap();
    }
    let changes = round(&mut rib, &mut wire);
    assert_eq!(changes.outbound.len(), 10);
    assert!(changes.outbound.iter().all(|o| o.except.len() == 1));
}

/// Peers coming up in the same round share their first table; peers with
/// different policies are in different groups.
#[test]
fn first_tables_are_shared() {
    let config = RibConfig {
        redistribute: vec![pfx("10.70.0.0/16"), pfx("10.71.0.0/16")],
        ..plain_config()
    };
    let (mut rib, mut wire) = setup(config, &[]);
    assert_eq!(rib.group_count(), 0);
    for k in 1..=5 {
        rib.add_peer(PeerId(k), spoke(k)).unwrap();
    }
    let mut other = spoke(6);
    other.local_address = ip("10.1.1.2");
    rib.add_peer(PeerId(6), other).unwrap();
    assert_eq!(rib.group_count(), 2);
    // Not sent anything yet.
    assert!(rib.advertised(PeerId(1)).is_empty());
    let changes = round(&mut rib, &mut wire);
    assert_eq!(changes.outbound.len(), 2);
    assert_eq!(changes.outbound[0].to.len(), 5);
    assert_eq!(changes.outbound[0].update.nlri.len(), 2);
    assert_eq!(&*changes.outbound[1].to, &[PeerId(6)]);
    assert_eq!(
        wire.table(PeerId(6))[&pfx("10.70.0.0/16")].next_hop,
        ip("10.1.1.2")
    );
    // The last peer of a group gone: the group goes.
    rib.remove_peer(PeerId(6));
    assert_eq!(rib.group_count(), 1);
}

/// A peer that sent routes before its first table does not get them back
/// in it.
#[test]
fn first_table_leaves_out_own_routes() {
    let (mut rib, mut wire) = setup(plain_config(), &[(1, ibgp_peer(1, true))]);
    rib.add_peer(PeerId(2), ibgp_peer(2, true)).unwrap();
    rib.add_peer(PeerId(3), ibgp_peer(3, true)).unwrap();
    rib.update_from(PeerId(2), &announce(&attrs("10.9.0.2"), &[P]))
        .unwrap();
    let changes = round(&mut rib, &mut wire);
    assert_eq!(who_has(&rib, &wire, P), vec![1, 3]);
    // Client 1 from the group's change, 3 from the shared first table
    // (2 excepted).
    assert_eq!(changes.outbound.len(), 2);
    assert_eq!(changes.outbound[1].except, vec![PeerId(2)]);
}

#[test]
fn route_refresh_resends_the_table() {
    let (mut rib, mut wire) = mesh();
    rib.update_from(
        PeerId(1),
        &announce(&attrs("10.9.0.1"), &[P, "10.51.0.0/16"]),
    )
    .unwrap();
    round(&mut rib, &mut wire);
    rib.route_refresh(PeerId(4)).unwrap();
    let changes = round(&mut rib, &mut wire);
    assert_eq!(changes.outbound.len(), 1);
    assert_eq!(&*changes.outbound[0].to, &[PeerId(4)]);
    assert_eq!(changes.outbound[0].update.nlri.len(), 2);
}

/// Several changes before one `take_changes`: one UPDATE; a flap in
/// between: nothing.
#[test]
fn batching_and_flaps() {
    let (mut rib, mut wire) = mesh();
    for n in 0..20 {
        let p = format!("10.{n}.0.0/16");
        rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &[&p]))
            .unwrap();
    }
    let changes = round(&mut rib, &mut wire);
    // One per group: clients, non-clients, eBGP.
    assert_eq!(changes.outbound.len(), 3);
    assert!(changes.outbound.iter().all(|o| o.update.nlri.len() == 20));
    rib.update_from(PeerId(1), &withdraw(&["10.3.0.0/16"]))
        .unwrap();
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &["10.3.0.0/16"]))
        .unwrap();
    assert!(round(&mut rib, &mut wire).is_empty());
}

/// UPDATEs stay within 4096 bytes: 3000 prefixes with one set of
/// attributes are split.
#[test]
fn updates_fit_the_message_limit() {
    let (mut rib, mut wire) = mesh();
    let prefixes: Vec<Ipv4Prefix> = (0..3000u32)
        .map(|i| Ipv4Prefix::new(Ipv4Addr::from(0x0A00_0000 + (i << 8)), 24).unwrap())
        .collect();
    let a = PathAttributes {
        communities: vec![1, 2, 3],
        cluster_list: vec![ip("1.1.1.1"); 4],
        ..attrs("10.9.0.1")
    };
    let update = Update {
        withdrawn: Vec::new(),
        attributes: Some(a),
        nlri: prefixes.clone(),
    };
    rib.update_from(PeerId(1), &update).unwrap();
    let changes = round(&mut rib, &mut wire);
    assert_eq!(wire.table(PeerId(2)).len(), 3000);
    let size = |u: &Update| {
        19 + 4
            + u.attributes
                .as_ref()
                .map_or(0, super::super::pack::attributes_len_bound)
            + u.nlri
                .iter()
                .chain(&u.withdrawn)
                .map(|&p| super::super::pack::prefix_wire_len(p))
                .sum::<usize>()
    };
    let to_2 = changes.for_peer(PeerId(2));
    assert!(to_2.len() >= 3, "{}", to_2.len());
    for u in &to_2 {
        assert!(size(u) <= MAX_MESSAGE_LEN, "{}", size(u));
    }
    // And withdrawn the same way.
    rib.remove_peer(PeerId(1));
    wire.forget(PeerId(1));
    let changes = round(&mut rib, &mut wire);
    assert!(wire.table(PeerId(2)).is_empty());
    for u in changes.for_peer(PeerId(2)) {
        assert!(size(u) <= MAX_MESSAGE_LEN);
        assert!(u.withdrawn.len() > 100);
    }
}

#[test]
fn fib_follows_the_best_learned_route() {
    let (mut rib, mut wire) = mesh();
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &[P]))
        .unwrap();
    let c = round(&mut rib, &mut wire);
    assert_eq!(
        c.fib,
        vec![FibChange::Install {
            prefix: pfx(P),
            route: FibRoute::Forward {
                next_hop: ip("10.9.0.1"),
                peer: PeerId(1)
            }
        }]
    );
    let better = PathAttributes {
        local_pref: Some(200),
        ..attrs("10.9.0.2")
    };
    rib.update_from(PeerId(2), &announce(&better, &[P]))
        .unwrap();
    let c = round(&mut rib, &mut wire);
    assert_eq!(
        c.fib,
        vec![FibChange::Install {
            prefix: pfx(P),
            route: FibRoute::Forward {
                next_hop: ip("10.9.0.2"),
                peer: PeerId(2)
            }
        }]
    );
    // A locally originated path takes over: out of the FIB (the routing
    // table has the route already).
    rib.set_redistributed(pfx(P), true);
    let c = round(&mut rib, &mut wire);
    assert_eq!(c.fib, vec![FibChange::Remove { prefix: pfx(P) }]);
    assert!(rib.installed_routes().is_empty());
}

#[test]
fn ebgp_prepend_forms() {
    let (mut rib, mut wire) = setup(
        plain_config(),
        &[(6, ebgp_peer(6, 65002)), (7, ebgp_peer(7, 65003))],
    );
    let long: Vec<u32> = std::iter::once(65002).chain(1..255).collect();
    let cases = [
        (
            "10.1.0.0/16",
            vec![AsSegment::Sequence(vec![65002]), AsSegment::Set(vec![1, 2])],
            vec![
                AsSegment::Sequence(vec![HUB_AS, 65002]),
                AsSegment::Set(vec![1, 2]),
            ],
        ),
        (
            "10.2.0.0/16",
            vec![AsSegment::Sequence(long.clone())],
            vec![AsSegment::Sequence(vec![HUB_AS]), AsSegment::Sequence(long)],
        ),
    ];
    for (p, path, _) in &cases {
        let a = PathAttributes {
            as_path: path.clone(),
            ..attrs("10.8.0.6")
        };
        rib.update_from(PeerId(6), &announce(&a, &[p])).unwrap();
    }
    round(&mut rib, &mut wire);
    for (p, _, want) in cases {
        assert_eq!(wire.table(PeerId(7))[&pfx(p)].as_path, want, "{p}");
    }
}
