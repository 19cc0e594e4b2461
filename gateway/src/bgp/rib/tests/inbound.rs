//! What is accepted from a peer: RFC 4456 loop prevention, eBGP loop and
//! first-AS checks, treat-as-withdraw, counters, errors.

use super::*;

fn one_peer(info: PeerInfo) -> (Rib, Wire) {
    setup(plain_config(), &[(1, info), (2, ibgp_peer(2, true))])
}

/// (case, peer, attributes, accepted?)
fn cases() -> Vec<(&'static str, PeerInfo, PathAttributes, bool)> {
    let c = ibgp_peer(1, true);
    let e = ebgp_peer(1, 65002);
    let from_65002 = |a: PathAttributes| PathAttributes {
        as_path: vec![AsSegment::Sequence(vec![65002, 65010])],
        ..a
    };
    vec![
        ("plain iBGP", c, attrs("10.9.0.1"), true),
        (
            "ORIGINATOR_ID is our router id",
            c,
            PathAttributes {
                originator_id: Some(ip("172.25.1.1")),
                ..attrs("10.9.0.1")
            },
            false,
        ),
        (
            "someone else's ORIGINATOR_ID",
            c,
            PathAttributes {
                originator_id: Some(ip("172.25.9.9")),
                ..attrs("10.9.0.1")
            },
            true,
        ),
        (
            "CLUSTER_LIST holds our cluster id",
            c,
            PathAttributes {
                cluster_list: vec![ip("172.25.2.1"), ip("172.25.1.1")],
                ..attrs("10.9.0.1")
            },
            false,
        ),
        (
            "CLUSTER_LIST of other clusters",
            c,
            PathAttributes {
                cluster_list: vec![ip("172.25.2.1")],
                ..attrs("10.9.0.1")
            },
            true,
        ),
        (
            "iBGP: our AS in the AS_PATH is not an iBGP check",
            c,
            PathAttributes {
                as_path: vec![AsSegment::Sequence(vec![65002, HUB_AS])],
                ..attrs("10.9.0.1")
            },
            true,
        ),
        ("eBGP", e, from_65002(attrs("10.8.0.1")), true),
        (
            "eBGP: our AS in the AS_PATH",
            e,
            PathAttributes {
                as_path: vec![AsSegment::Sequence(vec![65002, HUB_AS, 65010])],
                ..attrs("10.8.0.1")
            },
            false,
        ),
        (
            "eBGP: our AS in an AS_SET",
            e,
            PathAttributes {
                as_path: vec![
                    AsSegment::Sequence(vec![65002]),
                    AsSegment::Set(vec![65010, HUB_AS]),
                ],
                ..attrs("10.8.0.1")
            },
            false,
        ),
        (
            "eBGP: first AS is not the peer's",
            e,
            PathAttributes {
                as_path: vec![AsSegment::Sequence(vec![65003])],
                ..attrs("10.8.0.1")
            },
            false,
        ),
        ("eBGP: empty AS_PATH", e, attrs("10.8.0.1"), false),
    ]
}

#[test]
fn inbound_checks() {
    for (name, peer, a, ok) in cases() {
        let (mut rib, mut wire) = one_peer(peer);
        rib.update_from(PeerId(1), &announce(&a, &["10.50.0.0/16"]))
            .unwrap();
        round(&mut rib, &mut wire);
        let c = rib.counters(PeerId(1)).unwrap();
        assert_eq!(c.received, 1, "{name}");
        assert_eq!(c.accepted, usize::from(ok), "{name}");
        assert_eq!(c.denied_total, u64::from(!ok), "{name}");
        assert_eq!(rib.best(pfx("10.50.0.0/16")).is_some(), ok, "{name}");
        assert_eq!(rib.received(PeerId(1)).len(), usize::from(ok), "{name}");
    }
}

#[test]
fn a_configured_cluster_id_is_the_one_checked() {
    let config = RibConfig {
        cluster_id: Some(ip("1.2.3.4")),
        ..plain_config()
    };
    let (mut rib, mut wire) = setup(config, &[(1, ibgp_peer(1, true))]);
    let with = |c: &str| PathAttributes {
        cluster_list: vec![ip(c)],
        ..attrs("10.9.0.1")
    };
    rib.update_from(PeerId(1), &announce(&with("172.25.1.1"), &["10.1.0.0/16"]))
        .unwrap();
    rib.update_from(PeerId(1), &announce(&with("1.2.3.4"), &["10.2.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert!(rib.best(pfx("10.1.0.0/16")).is_some());
    assert!(rib.best(pfx("10.2.0.0/16")).is_none());
    assert_eq!(rib.cluster_id(), ip("1.2.3.4"));
}

/// eBGP: LOCAL_PREF is ignored (RFC 4271 5.1.5) and the route reflection
/// attributes are dropped on receipt.
#[test]
fn ebgp_attributes_are_cleaned() {
    let (mut rib, mut wire) = one_peer(ebgp_peer(1, 65002));
    let a = PathAttributes {
        as_path: vec![AsSegment::Sequence(vec![65002])],
        local_pref: Some(900),
        originator_id: Some(ip("1.1.1.1")),
        cluster_list: vec![ip("2.2.2.2")],
        ..attrs("10.8.0.1")
    };
    rib.update_from(PeerId(1), &announce(&a, &["10.50.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    let (best, _) = rib.best(pfx("10.50.0.0/16")).unwrap();
    assert_eq!(
        *best.attrs,
        PathAttributes {
            as_path: vec![AsSegment::Sequence(vec![65002])],
            ..attrs("10.8.0.1")
        }
    );
    // Sent on to the iBGP client with our default LOCAL_PREF, next hop
    // unchanged, and not as reflected (it came over eBGP).
    assert_eq!(
        wire.table(PeerId(2))[&pfx("10.50.0.0/16")],
        PathAttributes {
            local_pref: Some(100),
            ..best.attrs.as_ref().clone()
        }
    );
}

/// A re-announcement that fails the checks withdraws the route the peer
/// had (RFC 7606 treat-as-withdraw); a withdrawal clears a denied prefix.
#[test]
fn denied_reannouncement_withdraws() {
    let (mut rib, mut wire) = one_peer(ibgp_peer(1, true));
    let p = "10.50.0.0/16";
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &[p]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert!(wire.table(PeerId(2)).contains_key(&pfx(p)));
    let looped = PathAttributes {
        originator_id: Some(ip("172.25.1.1")),
        ..attrs("10.9.0.1")
    };
    rib.update_from(PeerId(1), &announce(&looped, &[p]))
        .unwrap();
    let changes = round(&mut rib, &mut wire);
    assert!(wire.table(PeerId(2)).is_empty());
    assert_eq!(changes.fib, vec![FibChange::Remove { prefix: pfx(p) }]);
    let c = rib.counters(PeerId(1)).unwrap();
    assert_eq!((c.received, c.accepted, c.updates), (1, 0, 2));
    rib.update_from(PeerId(1), &withdraw(&[p])).unwrap();
    assert_eq!(rib.counters(PeerId(1)).unwrap().received, 0);
    assert!(round(&mut rib, &mut wire).is_empty());
}

/// A prefix announced again replaces the old path (implicit withdraw); a
/// prefix both withdrawn and announced in one UPDATE ends up announced.
#[test]
fn implicit_withdraw_and_same_update() {
    let (mut rib, mut wire) = one_peer(ibgp_peer(1, true));
    let p = "10.50.0.0/16";
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &[p]))
        .unwrap();
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.7"), &[p]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(rib.paths(pfx(p)).len(), 1);
    assert_eq!(wire.table(PeerId(2))[&pfx(p)].next_hop, ip("10.9.0.7"));
    let both = Update {
        withdrawn: vec![pfx(p)],
        ..announce(&attrs("10.9.0.8"), &[p])
    };
    rib.update_from(PeerId(1), &both).unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(wire.table(PeerId(2))[&pfx(p)].next_hop, ip("10.9.0.8"));
    assert_eq!(rib.counters(PeerId(1)).unwrap().accepted, 1);
}

/// The same route announced again: nothing to send.
#[test]
fn identical_reannouncement_sends_nothing() {
    let (mut rib, mut wire) = one_peer(ibgp_peer(1, true));
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &["10.50.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    let v = rib.table_version();
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &["10.50.0.0/16"]))
        .unwrap();
    assert!(round(&mut rib, &mut wire).is_empty());
    assert_eq!(rib.table_version(), v);
}

#[test]
fn errors() {
    let (mut rib, _) = one_peer(ibgp_peer(1, true));
    assert_eq!(
        rib.add_peer(PeerId(1), ibgp_peer(1, true)),
        Err(RibError::DuplicatePeer(PeerId(1)))
    );
    assert_eq!(
        rib.update_from(PeerId(9), &withdraw(&["10.0.0.0/8"])),
        Err(RibError::UnknownPeer(PeerId(9)))
    );
    assert_eq!(
        rib.route_refresh(PeerId(9)),
        Err(RibError::UnknownPeer(PeerId(9)))
    );
    let no_attrs = Update {
        withdrawn: Vec::new(),
        attributes: None,
        nlri: vec![pfx("10.0.0.0/8")],
    };
    assert_eq!(
        rib.update_from(PeerId(1), &no_attrs),
        Err(RibError::MissingAttributes {
            peer: ip("10.9.0.1")
        })
    );
    assert!(rib.best(pfx("10.0.0.0/8")).is_none());
    assert_eq!(
        RibError::UnknownPeer(PeerId(9)).to_string(),
        "peer#9 is not in the RIB"
    );
}

/// RFC 4271 section 6.3: multicast and reserved prefixes are ignored (and
/// counted), the unicast ones of the same UPDATE taken.
#[test]
fn non_unicast_prefixes_are_ignored() {
    let (mut rib, mut wire) = one_peer(ibgp_peer(1, true));
    rib.update_from(
        PeerId(1),
        &announce(
            &attrs("10.9.0.1"),
            &["10.50.0.0/16", "224.1.0.0/16", "240.0.0.0/8"],
        ),
    )
    .unwrap();
    round(&mut rib, &mut wire);
    let got: Vec<Ipv4Prefix> = wire.table(PeerId(2)).keys().copied().collect();
    assert_eq!(got, vec![pfx("10.50.0.0/16")]);
    let c = rib.counters(PeerId(1)).unwrap();
    assert_eq!((c.received, c.accepted, c.denied_total), (3, 1, 2));
}

/// RFC 6793 section 4.1: AS4_PATH and AS4_AGGREGATOR from a 4-octet-AS
/// speaker are discarded; other unknown attributes are passed on.
#[test]
fn as4_attributes_are_discarded() {
    let (mut rib, mut wire) = one_peer(ibgp_peer(1, true));
    let raw = |type_code: u8| crate::bgp::types::RawAttribute {
        flags: 0xc0,
        type_code,
        value: vec![2, 1, 0, 0, 0xfd, 0xea],
    };
    let with_as4 = PathAttributes {
        other: vec![raw(17), raw(18), raw(99)],
        ..attrs("10.9.0.1")
    };
    rib.update_from(PeerId(1), &announce(&with_as4, &["10.50.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    let table = wire.table(PeerId(2));
    let sent = &table[&pfx("10.50.0.0/16")];
    let codes: Vec<u8> = sent.other.iter().map(|a| a.type_code).collect();
    assert_eq!(codes, vec![99]);
}
