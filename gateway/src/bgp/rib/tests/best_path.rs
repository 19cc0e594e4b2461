//! Best-path selection, step by step: each case differs from its rival in
//! the attribute the step looks at (and everything before it ties).

use super::*;

const ME: &str = "172.25.1.1";

fn learned(id: u32, ibgp: bool, router_id: &str, address: &str, a: PathAttributes) -> Path {
    Path {
        source: Source::Peer(PeerId(id)),
        attrs: Arc::new(a),
        peer: Some(PeerFacts {
            address: ip(address),
            router_id: ip(router_id),
            asn: if ibgp { HUB_AS } else { 65002 },
            ibgp,
            rr_client: false,
        }),
    }
}

fn ibgp(id: u32, a: PathAttributes) -> Path {
    learned(id, true, &format!("9.9.9.{id}"), &format!("10.9.0.{id}"), a)
}

fn local(source: Source, a: PathAttributes) -> Path {
    Path {
        source,
        attrs: Arc::new(a),
        peer: None,
    }
}

fn base() -> PathAttributes {
    attrs("10.0.0.1")
}

fn seq(v: &[u32]) -> AsSegment {
    AsSegment::Sequence(v.to_vec())
}

fn pick(paths: &[Path]) -> (usize, Step) {
    let mut n = 0;
    select(paths, ip(ME), &mut n).unwrap()
}

/// (case, paths, index of the winner, deciding step). The winner is put
/// second wherever that matters, so "first one wins" would fail.
#[allow(clippy::too_many_lines)] // a table
fn cases() -> Vec<(&'static str, Vec<Path>, usize, Step)> {
    vec![
        ("one path", vec![ibgp(1, base())], 0, Step::Only),
        (
            "weight: a network beats a learned path with a higher LOCAL_PREF",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        local_pref: Some(500),
                        ..base()
                    },
                ),
                local(Source::Network, base()),
            ],
            1,
            Step::Weight,
        ),
        (
            "higher LOCAL_PREF",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        local_pref: Some(100),
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        local_pref: Some(200),
                        ..base()
                    },
                ),
            ],
            1,
            Step::LocalPref,
        ),
        (
            "missing LOCAL_PREF counts as 100",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        local_pref: Some(99),
                        ..base()
                    },
                ),
                ibgp(2, base()),
            ],
            1,
            Step::LocalPref,
        ),
        (
            "network over aggregate",
            vec![
                local(Source::Aggregate, base()),
                local(Source::Network, base()),
            ],
            1,
            Step::LocallyOriginated,
        ),
        (
            "redistribute over aggregate",
            vec![
                local(Source::Aggregate, base()),
                local(
                    Source::Redistributed,
                    PathAttributes {
                        origin: Origin::Incomplete,
                        ..base()
                    },
                ),
            ],
            1,
            Step::LocallyOriginated,
        ),
        (
            "shorter AS_PATH",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        as_path: vec![seq(&[65002, 65003])],
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        as_path: vec![seq(&[65004])],
                        ..base()
                    },
                ),
            ],
            1,
            Step::AsPathLength,
        ),
        (
            "an AS_SET counts as one",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        as_path: vec![seq(&[1, 2, 3])],
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        as_path: vec![seq(&[1]), AsSegment::Set(vec![4, 5, 6, 7])],
                        ..base()
                    },
                ),
            ],
            1,
            Step::AsPathLength,
        ),
        (
            "IGP before INCOMPLETE",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        origin: Origin::Incomplete,
                        ..base()
                    },
                ),
                ibgp(2, base()),
            ],
            1,
            Step::Origin,
        ),
        (
            "IGP before EGP",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        origin: Origin::Egp,
                        ..base()
                    },
                ),
                ibgp(2, base()),
            ],
            1,
            Step::Origin,
        ),
        (
            "EGP before INCOMPLETE",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        origin: Origin::Incomplete,
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        origin: Origin::Egp,
                        ..base()
                    },
                ),
            ],
            1,
            Step::Origin,
        ),
        (
            "lower MED from the same neighbouring AS",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        as_path: vec![seq(&[65002])],
                        med: Some(10),
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        as_path: vec![seq(&[65002])],
                        med: Some(5),
                        ..base()
                    },
                ),
            ],
            1,
            Step::Med,
        ),
        (
            "a missing MED is 0",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        med: Some(5),
                        ..base()
                    },
                ),
                ibgp(2, base()),
            ],
            1,
            Step::Med,
        ),
        (
            "MEDs from different ASes are not compared: router id decides",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        as_path: vec![seq(&[65002])],
                        med: Some(10),
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        as_path: vec![seq(&[65003])],
                        med: Some(5),
                        ..base()
                    },
                ),
            ],
            0,
            Step::RouterId,
        ),
        (
            "eBGP over iBGP",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        as_path: vec![seq(&[65002])],
                        ..base()
                    },
                ),
                learned(
                    2,
                    false,
                    "9.9.9.9",
                    "10.8.0.2",
                    PathAttributes {
                        as_path: vec![seq(&[65002])],
                        ..base()
                    },
                ),
            ],
            1,
            Step::ExternalOverInternal,
        ),
        (
            "lower router id",
            vec![ibgp(2, base()), ibgp(1, base())],
            1,
            Step::RouterId,
        ),
        (
            "ORIGINATOR_ID stands in for the router id (RFC 4456 9)",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        originator_id: Some(ip("9.9.9.200")),
                        ..base()
                    },
                ),
                ibgp(2, base()),
            ],
            1,
            Step::RouterId,
        ),
        (
            "shorter CLUSTER_LIST",
            vec![
                ibgp(
                    1,
                    PathAttributes {
                        originator_id: Some(ip("1.1.1.1")),
                        cluster_list: vec![ip("2.2.2.2"), ip("3.3.3.3")],
                        ..base()
                    },
                ),
                ibgp(
                    2,
                    PathAttributes {
                        originator_id: Some(ip("1.1.1.1")),
                        cluster_list: vec![ip("4.4.4.4")],
                        ..base()
                    },
                ),
            ],
            1,
            Step::ClusterListLength,
        ),
        (
            "lower neighbor address",
            vec![
                learned(1, true, "9.9.9.9", "10.9.0.7", base()),
                learned(2, true, "9.9.9.9", "10.9.0.3", base()),
            ],
            1,
            Step::NeighborAddress,
        ),
        (
            "network before redistribute",
            vec![
                local(Source::Redistributed, base()),
                local(Source::Network, base()),
            ],
            1,
            Step::SourceKind,
        ),
    ]
}

#[test]
fn each_step_decides_in_order() {
    for (name, paths, winner, step) in cases() {
        assert_eq!(pick(&paths), (winner, step), "{name}");
        // The result does not depend on the order the paths are listed in.
        let reversed: Vec<Path> = paths.iter().rev().cloned().collect();
        assert_eq!(
            pick(&reversed),
            (paths.len() - 1 - winner, step),
            "{name} (reversed)"
        );
    }
}

#[test]
fn no_paths_no_best() {
    let mut n = 0;
    assert_eq!(select(&[], ip(ME), &mut n), None);
}

/// RFC 4271's MED rule eliminates per neighbouring AS, so the winner is
/// the same whatever the order (IOS needs `bgp deterministic-med` for it).
#[test]
fn med_is_order_independent() {
    let a = |id, asn, med| {
        ibgp(
            id,
            PathAttributes {
                as_path: vec![seq(&[asn])],
                med: Some(med),
                ..base()
            },
        )
    };
    // A (AS 65002, MED 10) loses to C (AS 65002, MED 5); B (AS 65003,
    // MED 0) and C go on to the router id, where C (9.9.9.3) loses to B
    // (9.9.9.2)... unless A were still there (9.9.9.1).
    let paths = [a(1, 65002, 10), a(2, 65003, 0), a(3, 65002, 5)];
    let perms = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for perm in perms {
        let list: Vec<Path> = perm.iter().map(|&i| paths[i].clone()).collect();
        let (i, step) = pick(&list);
        assert_eq!(list[i].source, Source::Peer(PeerId(2)), "{perm:?}");
        assert_eq!(step, Step::RouterId);
    }
}

#[test]
fn as_path_length_counts_sets_once() {
    assert_eq!(as_path_length(&[]), 0);
    assert_eq!(as_path_length(&[seq(&[1, 2, 3])]), 3);
    assert_eq!(
        as_path_length(&[seq(&[1, 2]), AsSegment::Set(vec![3, 4, 5])]),
        3
    );
}

/// In a RIB: a better path replaces the best, the old one stays as an
/// alternative and takes over when the better one goes.
#[test]
fn best_changes_with_paths() {
    let (mut rib, mut wire) = setup(
        plain_config(),
        &[(1, ibgp_peer(1, true)), (2, ibgp_peer(2, true))],
    );
    let p = pfx("10.50.0.0/16");
    rib.update_from(PeerId(1), &announce(&attrs("10.9.0.1"), &["10.50.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(rib.best(p).unwrap().0.source, Source::Peer(PeerId(1)));
    let better = PathAttributes {
        local_pref: Some(200),
        ..attrs("10.9.0.2")
    };
    rib.update_from(PeerId(2), &announce(&better, &["10.50.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(rib.best(p).unwrap(), (&rib.paths(p)[1], Step::LocalPref));
    rib.update_from(PeerId(2), &withdraw(&["10.50.0.0/16"]))
        .unwrap();
    round(&mut rib, &mut wire);
    assert_eq!(rib.best(p).unwrap().0.source, Source::Peer(PeerId(1)));
    assert_eq!(rib.best(p).unwrap().1, Step::Only);
}
