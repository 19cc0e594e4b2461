#![allow(clippy::unwrap_used)]

//! The harness: every test drives a [`Rib`], replays what `take_changes`
//! returns into per-peer tables ([`Wire`], what each peer would hold), and
//! after every round checks that those tables equal both the RIB's own
//! Adj-RIB-Out and a from-scratch computation ([`reference_out`]), and that
//! the FIB as told equals `installed_routes`.

mod best_path;
mod inbound;
mod outbound;
mod scale;
mod seed;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::aggregate::covers;
use super::best::select;
use super::policy::{GroupKey, export};
use super::*;
use crate::bgp::types::{AsSegment, Origin, PathAttributes, Update};
use crate::{config::Aggregate, net::Ipv4Prefix};

pub(crate) const HUB_AS: u32 = 65001;

pub(crate) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(crate) fn pfx(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

pub(crate) fn attrs(next_hop: &str) -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: Vec::new(),
        next_hop: ip(next_hop),
        med: None,
        local_pref: None,
        atomic_aggregate: false,
        aggregator: None,
        communities: Vec::new(),
        originator_id: None,
        cluster_list: Vec::new(),
        other: Vec::new(),
    }
}

pub(crate) fn announce(a: &PathAttributes, prefixes: &[&str]) -> Update {
    Update {
        withdrawn: Vec::new(),
        attributes: Some(a.clone()),
        nlri: prefixes.iter().map(|p| pfx(p)).collect(),
    }
}

pub(crate) fn withdraw(prefixes: &[&str]) -> Update {
    Update {
        withdrawn: prefixes.iter().map(|p| pfx(p)).collect(),
        attributes: None,
        nlri: Vec::new(),
    }
}

/// The hub of the seed documents: AS 65001, router id 172.25.1.1,
/// `aggregate-address 192.168.0.0 255.255.0.0 summary-only`.
pub(crate) fn hub_config() -> RibConfig {
    RibConfig {
        asn: HUB_AS,
        router_id: ip("172.25.1.1"),
        cluster_id: None,
        networks: Vec::new(),
        aggregates: vec![Aggregate {
            prefix: pfx("192.168.0.0/16"),
            summary_only: true,
        }],
        redistribute: Vec::new(),
    }
}

/// A plain config: no aggregates, no networks.
pub(crate) fn plain_config() -> RibConfig {
    RibConfig {
        aggregates: Vec::new(),
        ..hub_config()
    }
}

/// Spoke k: pool address 10.1.1.(100+k), router id 192.168.(100+k).1, a
/// dynamic iBGP neighbor of the `Spokes` peer group (not a client).
pub(crate) fn spoke(k: u32) -> PeerInfo {
    PeerInfo {
        address: Ipv4Addr::from(u32::from(ip("10.1.1.100")) + k),
        router_id: Ipv4Addr::from(u32::from(ip("192.168.100.1")) + (k << 8)),
        asn: HUB_AS,
        route_reflector_client: false,
        unsuppress: false,
        next_hop: None,
        local_address: ip("10.1.1.1"),
        dynamic: true,
    }
}

/// Spoke k's LAN: 192.168.(100+k).0/24 (k < 156).
pub(crate) fn spoke_lan(k: u32) -> Ipv4Prefix {
    Ipv4Prefix::new(
        Ipv4Addr::from(u32::from(ip("192.168.100.0")) + (k << 8)),
        24,
    )
    .unwrap()
}

/// What spoke k announces: its LAN with next hop its pool address (IOS
/// `network 192.168.10k.0` on the spoke: MED 0, weight not sent).
pub(crate) fn spoke_update(k: u32) -> Update {
    Update {
        withdrawn: Vec::new(),
        attributes: Some(PathAttributes {
            med: Some(0),
            local_pref: Some(100),
            ..attrs(&spoke(k).address.to_string())
        }),
        nlri: vec![spoke_lan(k)],
    }
}

/// The DMVPN hub of the second seed document as seen from the FlexVPN hub:
/// `neighbor 192.168.0.1 remote-as 65001 / route-reflector-client /
/// unsuppress-map ALL / route-map SET_NEXT_HOP out` (`set ip next-hop
/// 192.168.0.2`).
pub(crate) fn interhub() -> PeerInfo {
    PeerInfo {
        address: ip("192.168.0.1"),
        router_id: ip("172.25.0.1"),
        asn: HUB_AS,
        route_reflector_client: true,
        unsuppress: true,
        next_hop: Some(ip("192.168.0.2")),
        local_address: ip("192.168.0.2"),
        dynamic: false,
    }
}

/// An iBGP peer with the given flags, address 10.9.0.n, router id 9.9.9.n.
pub(crate) fn ibgp_peer(n: u8, rr_client: bool) -> PeerInfo {
    PeerInfo {
        address: Ipv4Addr::new(10, 9, 0, n),
        router_id: Ipv4Addr::new(9, 9, 9, n),
        asn: HUB_AS,
        route_reflector_client: rr_client,
        unsuppress: false,
        next_hop: None,
        local_address: ip("10.9.0.254"),
        dynamic: false,
    }
}

/// An eBGP peer in AS `asn`, address 10.8.0.n.
pub(crate) fn ebgp_peer(n: u8, asn: u32) -> PeerInfo {
    PeerInfo {
        address: Ipv4Addr::new(10, 8, 0, n),
        router_id: Ipv4Addr::new(8, 8, 8, n),
        asn,
        route_reflector_client: false,
        unsuppress: false,
        next_hop: None,
        local_address: ip("10.8.0.254"),
        dynamic: false,
    }
}

/// Each peer's routes as built from the UPDATEs it was sent, and the FIB as
/// told.
#[derive(Default)]
pub(crate) struct Wire {
    pub tables: HashMap<PeerId, BTreeMap<Ipv4Prefix, PathAttributes>>,
    pub fib: BTreeMap<Ipv4Prefix, FibRoute>,
}

impl Wire {
    pub fn apply(&mut self, changes: &Changes) {
        for o in &changes.outbound {
            assert!(o.except.windows(2).all(|w| w[0] < w[1]), "except is sorted");
            assert!(
                o.except.iter().all(|e| o.to.contains(e)),
                "except only names recipients"
            );
            assert!(
                o.recipients().next().is_some(),
                "an UPDATE for nobody: {o:?}"
            );
            let u = &*o.update;
            assert!(
                !u.withdrawn.is_empty() || !u.nlri.is_empty(),
                "empty UPDATE"
            );
            assert_eq!(u.attributes.is_some(), !u.nlri.is_empty());
            for peer in o.recipients() {
                let t = self.tables.entry(peer).or_default();
                for p in &u.withdrawn {
                    t.remove(p);
                }
                for &p in &u.nlri {
                    t.insert(p, u.attributes.clone().unwrap());
                }
            }
        }
        for f in &changes.fib {
            match *f {
                FibChange::Install { prefix, route } => {
                    self.fib.insert(prefix, route);
                }
                FibChange::Remove { prefix } => {
                    assert!(self.fib.remove(&prefix).is_some(), "removed {prefix} twice");
                }
            }
        }
    }

    pub fn table(&self, peer: PeerId) -> BTreeMap<Ipv4Prefix, PathAttributes> {
        self.tables.get(&peer).cloned().unwrap_or_default()
    }

    pub fn prefixes(&self, peer: PeerId) -> Vec<Ipv4Prefix> {
        self.table(peer).into_keys().collect()
    }

    pub fn forget(&mut self, peer: PeerId) {
        self.tables.remove(&peer);
    }
}

/// What `peer` should have, computed from the Loc-RIB from scratch.
pub(crate) fn reference_out(rib: &Rib, peer: PeerId) -> BTreeMap<Ipv4Prefix, PathAttributes> {
    let info = rib.peer(peer).unwrap();
    let key = GroupKey::of(info, rib.asn());
    let mut out = BTreeMap::new();
    for (&p, d) in &rib.loc.table {
        let Some((b, _)) = &d.best else { continue };
        if b.source == Source::Peer(peer) {
            continue;
        }
        if let Some(a) = export(b, d.suppressed, &key, &rib.loc.local) {
            out.insert(p, a);
        }
    }
    out
}

/// Checks the Loc-RIB against a from-scratch computation: best paths and
/// aggregate contributor counts.
pub(crate) fn check_loc_rib(rib: &Rib) {
    let mut compared = 0;
    for (p, d) in &rib.loc.table {
        assert!(!d.paths.is_empty(), "{p}: empty destination kept");
        let (i, _) = select(&d.paths, rib.router_id(), &mut compared).unwrap();
        assert_eq!(d.best.as_ref().map(|b| &b.0), Some(&d.paths[i]), "{p}");
    }
    for a in &rib.loc.aggregates {
        let n = rib
            .loc
            .table
            .iter()
            .filter(|(p, d)| covers(a.prefix, **p) && d.best.is_some())
            .count();
        assert_eq!(a.contributors, n, "contributors of {}", a.prefix);
        let has = rib
            .paths(a.prefix)
            .iter()
            .any(|x| x.source == Source::Aggregate);
        assert_eq!(has, n > 0, "aggregate path of {}", a.prefix);
    }
}

/// One round: take the changes, replay them, check every invariant.
pub(crate) fn round(rib: &mut Rib, wire: &mut Wire) -> Changes {
    let changes = rib.take_changes();
    wire.apply(&changes);
    check_loc_rib(rib);
    for id in rib.peer_ids().collect::<Vec<_>>() {
        let sent: BTreeMap<Ipv4Prefix, PathAttributes> = rib
            .advertised(id)
            .into_iter()
            .map(|(p, a)| (p, PathAttributes::clone(&a)))
            .collect();
        assert_eq!(wire.table(id), sent, "{id}: the wire vs advertised()");
        assert_eq!(
            sent,
            reference_out(rib, id),
            "{id}: advertised() vs reference"
        );
    }
    let fib: BTreeMap<Ipv4Prefix, FibRoute> = rib.installed_routes().into_iter().collect();
    assert_eq!(wire.fib, fib, "FIB as told vs installed_routes()");
    assert!(
        rib.take_changes().is_empty(),
        "a second take_changes is empty"
    );
    changes
}

/// A RIB with the given peers added and a first round done.
pub(crate) fn setup(config: RibConfig, peers: &[(u32, PeerInfo)]) -> (Rib, Wire) {
    let mut rib = Rib::new(config);
    for &(id, info) in peers {
        rib.add_peer(PeerId(id), info).unwrap();
    }
    let mut wire = Wire::default();
    round(&mut rib, &mut wire);
    (rib, wire)
}
