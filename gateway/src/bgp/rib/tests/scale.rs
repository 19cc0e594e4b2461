//! Scale: a thousand dynamic neighbors, one prefix each. The work per
//! change is counted ([`WorkStats`]), not timed: it must not grow with the
//! number of peers. And a randomized run checking the incremental RIB
//! against a from-scratch computation after every round.

use super::*;

const N: u32 = 1000;
const INTERHUB: PeerId = PeerId(5000);

/// Spoke k's LAN for the scale runs: the k-th /26 of 192.168.0.0/16.
fn lan(k: u32) -> Ipv4Prefix {
    Ipv4Prefix::new(Ipv4Addr::from(u32::from(ip("192.168.0.0")) + (k << 6)), 26).unwrap()
}

fn lan_update(k: u32) -> Update {
    Update {
        nlri: vec![lan(k)],
        ..spoke_update(k)
    }
}

/// A round checking the invariants on a sample of peers (the full check is
/// O(peers x prefixes) itself).
fn sampled_round(rib: &mut Rib, wire: &mut Wire, sample: &[PeerId]) -> Changes {
    let changes = rib.take_changes();
    wire.apply(&changes);
    for &id in sample.iter().filter(|id| rib.peer(**id).is_some()) {
        let sent: BTreeMap<Ipv4Prefix, PathAttributes> = rib
            .advertised(id)
            .into_iter()
            .map(|(p, a)| (p, PathAttributes::clone(&a)))
            .collect();
        assert_eq!(wire.table(id), sent, "{id}");
        assert_eq!(sent, reference_out(rib, id), "{id}");
    }
    changes
}

fn seed_at_scale() -> (Rib, Wire, Vec<PeerId>) {
    let mut rib = Rib::new(hub_config());
    let mut wire = Wire::default();
    for k in 1..=N {
        rib.add_peer(PeerId(k), spoke(k)).unwrap();
    }
    rib.add_peer(INTERHUB, interhub()).unwrap();
    let sample = vec![PeerId(1), PeerId(2), PeerId(N / 2), PeerId(N), INTERHUB];
    assert!(
        sampled_round(&mut rib, &mut wire, &sample)
            .outbound
            .is_empty()
    );
    for k in 1..=N {
        rib.update_from(PeerId(k), &lan_update(k)).unwrap();
    }
    rib.reset_stats();
    let changes = sampled_round(&mut rib, &mut wire, &sample);
    // The spokes: one UPDATE (the summary) for all of them. The inter-hub
    // neighbor: one per spoke prefix (their ORIGINATOR_IDs differ) and the
    // summary.
    let to_spokes: Vec<&Outbound> = changes
        .outbound
        .iter()
        .filter(|o| o.to.len() == N as usize)
        .collect();
    assert_eq!(to_spokes.len(), 1);
    assert_eq!(to_spokes[0].update.nlri, vec![pfx("192.168.0.0/16")]);
    assert_eq!(changes.outbound.len(), 1 + N as usize + 1);
    assert_eq!(changes.fib.len(), N as usize + 1);
    let s = rib.stats();
    assert_eq!(s.best_path_runs, 0, "settled when the UPDATEs came in");
    assert_eq!(s.export_evaluations, 2 * u64::from(N + 1));
    for k in 1..=N {
        assert_eq!(wire.prefixes(PeerId(k)), vec![pfx("192.168.0.0/16")]);
    }
    assert_eq!(wire.table(INTERHUB).len(), N as usize + 1);
    (rib, wire, sample)
}

/// The work one change costs, whatever the number of peers: one best-path
/// run, one look at the one aggregate, one export per update group, one
/// UPDATE.
#[test]
fn work_per_change_does_not_grow_with_peers() {
    let (mut rib, mut wire, sample) = seed_at_scale();
    let one_change = WorkStats {
        best_path_runs: 1,
        paths_compared: 1,
        aggregate_checks: 1,
        export_evaluations: 2,
        dump_entries: 0,
        updates_built: 1,
    };
    let k = N / 2;

    // A spoke withdraws its LAN.
    rib.reset_stats();
    rib.update_from(
        PeerId(k),
        &Update {
            withdrawn: vec![lan(k)],
            ..withdraw(&[])
        },
    )
    .unwrap();
    let changes = sampled_round(&mut rib, &mut wire, &sample);
    assert_eq!(
        rib.stats(),
        WorkStats {
            paths_compared: 0,
            ..one_change
        }
    );
    assert_eq!(changes.outbound.len(), 1);
    assert_eq!(&*changes.outbound[0].to, &[INTERHUB]);
    assert_eq!(changes.fib, vec![FibChange::Remove { prefix: lan(k) }]);

    // Announces it again.
    rib.reset_stats();
    rib.update_from(PeerId(k), &lan_update(k)).unwrap();
    let changes = sampled_round(&mut rib, &mut wire, &sample);
    assert_eq!(rib.stats(), one_change);
    assert_eq!(changes.outbound.len(), 1);

    // Its session goes down.
    rib.reset_stats();
    rib.remove_peer(PeerId(k));
    wire.forget(PeerId(k));
    let changes = sampled_round(&mut rib, &mut wire, &sample);
    assert_eq!(
        rib.stats(),
        WorkStats {
            paths_compared: 0,
            ..one_change
        }
    );
    assert_eq!(changes.outbound.len(), 1);

    // It comes back: its first table is the spokes' group table (the
    // summary, one entry), then its LAN goes to the inter-hub neighbor.
    rib.reset_stats();
    rib.add_peer(PeerId(k), spoke(k)).unwrap();
    rib.update_from(PeerId(k), &lan_update(k)).unwrap();
    let changes = sampled_round(&mut rib, &mut wire, &sample);
    assert_eq!(
        rib.stats(),
        WorkStats {
            dump_entries: 1,
            updates_built: 2,
            ..one_change
        }
    );
    assert_eq!(changes.outbound.len(), 2);
    assert_eq!(wire.prefixes(PeerId(k)), vec![pfx("192.168.0.0/16")]);

    // Memory: one Adj-RIB-Out per group, not per peer.
    let sizes: Vec<usize> = rib.groups.values().map(|g| g.out.len()).collect();
    assert_eq!(sizes, vec![1, N as usize + 1]);
}

/// DESIGN.md's FRR figure: N route-reflector clients each reflecting one
/// prefix to all the others is N x (N - 1) sends, but here N UPDATEs built
/// (encoded once each) with one shared member list.
#[test]
fn reflection_to_a_thousand_clients_is_n_updates() {
    let mut rib = Rib::new(plain_config());
    let mut wire = Wire::default();
    for k in 1..=N {
        let mut info = spoke(k);
        info.route_reflector_client = true;
        rib.add_peer(PeerId(k), info).unwrap();
    }
    sampled_round(&mut rib, &mut wire, &[]);
    for k in 1..=N {
        rib.update_from(PeerId(k), &lan_update(k)).unwrap();
    }
    rib.reset_stats();
    // Not replayed into per-peer tables: that would be the N x N sends.
    let changes = rib.take_changes();
    assert_eq!(changes.outbound.len(), N as usize);
    assert_eq!(rib.stats().updates_built, u64::from(N));
    assert_eq!(rib.stats().export_evaluations, u64::from(N));
    let first = &changes.outbound[0].to;
    assert_eq!(first.len(), N as usize);
    assert!(changes.outbound.iter().all(|o| Arc::ptr_eq(&o.to, first)));
    assert!(changes.outbound.iter().all(|o| o.except.len() == 1));
    // Client 7 gets every prefix but its own.
    let to_7 = changes.for_peer(PeerId(7));
    assert_eq!(to_7.len(), N as usize - 1);
    assert!(to_7.iter().all(|u| u.nlri != vec![lan(7)]));
    assert_eq!(rib.advertised(PeerId(7)).len(), N as usize - 1);
}

/// A small linear congruential generator: deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        u32::try_from((self.0 >> 33) % u64::from(n)).unwrap()
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.next(100) < percent
    }

    fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.next(u32::try_from(list.len()).unwrap()) as usize]
    }
}

/// Attributes a peer might send: varied enough to exercise every
/// best-path step, the loop checks and NO_EXPORT.
fn random_attrs(rng: &mut Lcg, info: &PeerInfo) -> PathAttributes {
    let mut a = attrs(&info.address.to_string());
    a.local_pref = rng.pick(&[None, Some(100), Some(200)]);
    a.med = rng.pick(&[None, Some(0), Some(10)]);
    a.origin = rng.pick(&[Origin::Igp, Origin::Incomplete]);
    let mut path = vec![info.asn; rng.next(3) as usize];
    if info.asn != HUB_AS {
        path.insert(0, info.asn);
    }
    if !path.is_empty() {
        a.as_path = vec![AsSegment::Sequence(path)];
    }
    if rng.chance(10) {
        a.originator_id = Some(ip("172.25.1.1"));
    } else if rng.chance(20) {
        a.originator_id = Some(ip("9.9.9.99"));
        a.cluster_list = vec![ip("172.25.9.9")];
    }
    if rng.chance(5) {
        a.communities = vec![NO_EXPORT];
    }
    a
}

/// The randomized run's world: nested aggregates (one `summary-only`),
/// networks inside and outside them, a prefix pool that hits all of
/// them, and one peer of each kind.
fn random_world() -> (RibConfig, Vec<Ipv4Prefix>, [PeerInfo; 8]) {
    let config = RibConfig {
        networks: vec![
            pfx("192.168.0.0/16"),
            pfx("192.168.0.0/24"),
            pfx("10.20.0.0/16"),
        ],
        aggregates: vec![
            Aggregate {
                prefix: pfx("192.168.0.0/16"),
                summary_only: true,
            },
            Aggregate {
                prefix: pfx("192.168.4.0/22"),
                summary_only: false,
            },
            Aggregate {
                prefix: pfx("10.0.0.0/8"),
                summary_only: false,
            },
        ],
        ..hub_config()
    };
    let pool: Vec<Ipv4Prefix> = [
        "192.168.0.0/16",
        "192.168.0.0/24",
        "192.168.1.0/24",
        "192.168.4.0/22",
        "192.168.5.0/24",
        "192.168.6.128/25",
        "10.0.0.0/8",
        "10.20.0.0/16",
        "10.20.1.0/24",
        "172.16.0.0/12",
        "0.0.0.0/0",
    ]
    .iter()
    .map(|p| pfx(p))
    .collect();
    let mut unsuppressed = ibgp_peer(6, true);
    unsuppressed.unsuppress = true;
    unsuppressed.next_hop = Some(ip("192.168.0.2"));
    let kinds = [
        spoke(1),
        spoke(2),
        ibgp_peer(3, true),
        ibgp_peer(4, true),
        ibgp_peer(5, false),
        unsuppressed,
        ebgp_peer(7, 65002),
        ebgp_peer(8, 65003),
    ];
    (config, pool, kinds)
}

/// Random peers, routes, withdrawals, sessions and routing table facts;
/// after each round the wire, the RIB's Adj-RIBs-Out, a from-scratch
/// computation and the FIB all agree ([`round`]).
#[test]
fn randomized_against_from_scratch() {
    let (config, pool, kinds) = random_world();
    for seed in 1..=4u64 {
        let mut rng = Lcg(seed);
        let mut rib = Rib::new(config.clone());
        let mut wire = Wire::default();
        let mut up = [false; 8];
        let (mut updates, mut max_table, mut suppressed) = (0, 0, 0);
        for _ in 0..1500 {
            let i = rng.next(8) as usize;
            let id = PeerId(u32::try_from(i).unwrap() + 1);
            let info = kinds[i];
            match rng.next(12) {
                0 => {
                    if up[i] {
                        rib.remove_peer(id);
                        wire.forget(id);
                    } else {
                        rib.add_peer(id, info).unwrap();
                    }
                    up[i] = !up[i];
                }
                1..=6 if up[i] => {
                    let n = 1 + rng.next(3);
                    let nlri = (0..n).map(|_| rng.pick(&pool)).collect();
                    let attributes = Some(random_attrs(&mut rng, &info));
                    rib.update_from(
                        id,
                        &Update {
                            withdrawn: Vec::new(),
                            attributes,
                            nlri,
                        },
                    )
                    .unwrap();
                }
                7 | 8 if up[i] => {
                    let p = rng.pick(&pool);
                    rib.update_from(
                        id,
                        &Update {
                            withdrawn: vec![p],
                            ..withdraw(&[])
                        },
                    )
                    .unwrap();
                }
                9 => {
                    let p = rng.pick(&pool);
                    rib.set_route_present(p, rng.chance(50));
                }
                10 => {
                    let p = rng.pick(&pool);
                    rib.set_redistributed(p, rng.chance(50));
                }
                11 if up[i] => rib.route_refresh(id).unwrap(),
                _ => {}
            }
            if rng.chance(40) {
                updates += round(&mut rib, &mut wire).outbound.len();
                max_table = max_table.max(rib.table().len());
                suppressed += rib
                    .table()
                    .iter()
                    .filter(|r| r.suppressed && r.best.is_some())
                    .count();
            }
        }
        // The run did exercise the RIB.
        assert!(updates > 300, "seed {seed}: {updates} UPDATEs");
        assert!(max_table > 10, "seed {seed}: {max_table} paths at most");
        assert!(suppressed > 100, "seed {seed}: {suppressed}");
        round(&mut rib, &mut wire);
        // Everyone down, nothing local: the table empties.
        for (i, u) in up.iter().enumerate() {
            if *u {
                rib.remove_peer(PeerId(u32::try_from(i).unwrap() + 1));
            }
        }
        rib.set_routes_present([]);
        rib.set_redistributed_routes([]);
        round(&mut rib, &mut wire);
        assert!(rib.table().is_empty(), "seed {seed}");
        assert_eq!(rib.group_count(), 0);
    }
}
