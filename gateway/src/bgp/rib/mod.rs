//! The routing information bases (RFC 4271 section 3.2): per peer the
//! routes it sent (Adj-RIB-In), the chosen routes (Loc-RIB, best-path
//! selection in `rib/best.rs`), the routes this router originates (`network`,
//! `aggregate-address`, `redistribute`), and what each peer is sent
//! (Adj-RIB-Out) as UPDATEs to encode once and send to many peers.
//!
//! Pure logic: no I/O, no clock, no async. The caller (the BGP task) feeds
//! it the UPDATEs its sessions receive, the peers that come and go and the
//! routing table facts, then calls [`Rib::take_changes`] and sends what it
//! returns.
//!
//! Layout: `adj_in` has the peers and what they sent (Adj-RIBs-In, the
//! inbound checks of `policy`), `loc_rib` the Loc-RIB and its decisions
//! (best-path selection in `best`), `aggregate` and `origin` what this
//! router originates, `adj_out` the update groups with their Adj-RIB-Out
//! and what `take_changes` returns (UPDATEs packed by `pack`, the outbound
//! policy of `policy`, FIB changes); this file, the types they share and
//! the queries.
//!
//! # Using it
//!
//! ```text
//! let mut rib = Rib::new(RibConfig::from_config(&cfg.bgp, router_id));
//! rib.add_peer(id, PeerInfo::for_dynamic(&group, addr, their_id, our_addr))?; // Established
//! rib.update_from(id, &update)?;                                  // each UPDATE received
//! rib.set_route_present(prefix, true);                            // routing table facts
//! let changes = rib.take_changes();                               // then, e.g. each tick
//! for o in &changes.outbound { encode o.update once; send to o.recipients() }
//! for f in &changes.fib { datapath add/remove }
//! rib.remove_peer(id);                                            // session down
//! ```
//!
//! Mutations update the Loc-RIB at once (queries such as [`Rib::best`]
//! and [`Rib::table`] are always current) and note which prefixes changed;
//! [`Rib::take_changes`] turns those into UPDATEs and FIB changes. Calling
//! it after every mutation works; calling it once after a batch of
//! mutations sends fewer, fuller UPDATEs and cancels flaps (a prefix
//! withdrawn and announced again in between sends nothing).
//!
//! # Origination (IOS semantics)
//!
//! - `network P`: advertised while the routing table has P exactly (IOS:
//!   an exact match in the RIB). The caller reports it with
//!   [`Rib::set_route_present`] / [`Rib::set_routes_present`]: connected
//!   and static routes, the spokes' /32s via their virtual-access, routes
//!   pushed by IKE. BGP's own routes do not count, as on IOS, where a
//!   BGP-learned RIB entry does not back a `network`: it would keep the
//!   route alive after its last real source went.
//! - `aggregate-address P summary-only`: the aggregate is in the Loc-RIB
//!   while at least one more specific prefix of P has a path in the Loc-RIB
//!   (learned, `network`, `redistribute`, or a nested aggregate), with
//!   ORIGIN IGP, an empty AS_PATH, ATOMIC_AGGREGATE and AGGREGATOR (our AS,
//!   our router id), next hop self. `summary-only` suppresses every more
//!   specific prefix of P towards all peers except those with `unsuppress`
//!   (IOS `unsuppress-map`); suppressed routes stay in the Loc-RIB (`s` in
//!   `show bgp`) and in the FIB. The aggregate's path goes with its last
//!   contributor.
//! - When `network P` and `aggregate-address P` both name P (the config
//!   sketch in DESIGN.md does), the Loc-RIB holds both local paths and IOS
//!   prefers the `network` one (best-path step 3); P is then advertised
//!   while either source holds, without ATOMIC_AGGREGATE while the
//!   `network` path is best. Note that IOS reads the seed's `network
//!   192.168.0.0` (no mask) as classful, i.e. 192.168.0.0/24 (the
//!   inter-hub LAN), which is a contributor of the /16 aggregate rather than
//!   a second source of it.
//! - `redistribute static|connected`: the prefixes the caller gives
//!   ([`Rib::set_redistributed`]), ORIGIN INCOMPLETE, MED 0.
//! - Locally originated paths have next hop 0.0.0.0 in the Loc-RIB (as
//!   `show bgp` prints them) and are sent with next hop self: the session's
//!   local address ([`PeerInfo::local_address`]) or the neighbor's
//!   `set ip next-hop`.
//! - The FIB gets the best learned routes (next hop and the peer) and a
//!   discard route for an aggregate whose own path is best (IOS installs
//!   the summary to Null0), so traffic to a part of the aggregate no spoke
//!   has is dropped, not sent back out.
//!
//! # What peers are sent (`rib/policy.rs`)
//!
//! iBGP split horizon with route reflection (RFC 4456: from a client to
//! clients and non-clients, from a non-client to clients only; reflected
//! routes get an ORIGINATOR_ID and our cluster id on the CLUSTER_LIST),
//! never back to the peer the route came from, next hop unchanged over
//! iBGP except `set ip next-hop`, next hop self for what we originate,
//! LOCAL_PREF to iBGP peers only, suppression by `summary-only` aggregates
//! unless `unsuppress`, RFC 1997 NO_ADVERTISE / NO_EXPORT honoured. eBGP
//! (cheap, not the main use): our AS prepended, next hop self, a MED from
//! another AS dropped, loop and first-AS checks on receipt.
//!
//! # Data structures and costs
//!
//! Let n be the prefixes in the Loc-RIB, k the paths of one prefix, A the
//! configured aggregates, G the update groups (distinct outbound policies,
//! [`GroupKey`]: in the seed config 2, the spokes and the inter-hub
//! neighbor), m the members of a group, P the peers.
//!
//! - Loc-RIB: a `BTreeMap<Ipv4Prefix, Dest>`, each `Dest` holding the paths
//!   of the prefix (one per source) and the chosen one. The attributes are
//!   behind an `Arc`, shared by all the prefixes of one UPDATE.
//! - Adj-RIB-In: per peer the set of prefixes it has in the Loc-RIB (their
//!   attributes live in the Loc-RIB paths, not twice) and the set it sent
//!   that the inbound checks refused.
//! - Adj-RIB-Out: one per update group, not per peer: prefix -> the
//!   attributes the group's peers are sent and the peer the route came
//!   from. A peer's own Adj-RIB-Out is its group's minus the routes it sent
//!   (the one per-peer rule), so memory is O(G x n), not O(P x n).
//! - A route change (one prefix of one UPDATE): O(log n + k + A) for the
//!   Loc-RIB (best path over k paths; the aggregates covering the prefix
//!   gain or lose a contributor), then in `take_changes` O(G x log n) to
//!   compute and compare the group's attributes, plus the messages: one
//!   UPDATE per group with the member list shared by `Arc` (and at most two
//!   peers named as exceptions or sent their own UPDATE: the peer the old
//!   and the new route came from). Nothing in it is O(P) or O(P x n).
//!   [`Rib::stats`] counts these steps; the scale test checks them.
//! - A peer coming up: O(log P), plus O(n) when it opens a new group.
//!   Its first full table is built in the next `take_changes` from the
//!   group's Adj-RIB-Out, once for all the peers of a group that came up in
//!   the same round (their UPDATEs are shared too). A peer going down:
//!   O(r x (log n + k + A)) for its r routes.
//! - `take_changes` groups the prefixes of a group by identical attributes
//!   and packs them into UPDATEs that fit the 4096-byte limit (`rib/pack.rs`);
//!   each [`Outbound`] is one `Arc<Update>` for many peers. N clients each
//!   reflecting one prefix to the others is N UPDATEs encoded once each,
//!   not N x N.
//!
//! Not done here: per-neighbor route-maps beyond `set ip next-hop` and
//! `unsuppress`, weight and local-preference settings, IGP metric to the
//! next hop, next hop reachability, multipath, `as-set` aggregates,
//! IOS's `send-community` (communities are passed on), graceful restart
//! (End-of-RIB is the session's to send after the first table).

mod adj_in;
mod adj_out;
mod aggregate;
mod best;
mod loc_rib;
mod origin;
mod pack;
mod policy;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bgp::types::{Origin, PathAttributes};
use crate::{config, net::Ipv4Prefix};
use adj_in::Peer;
pub use adj_out::{Changes, FibChange, FibRoute, Outbound};
use adj_out::{Group, GroupId, fib_route};
pub use best::{DEFAULT_LOCAL_PREF, LOCAL_WEIGHT, Step, as_path_length};
use loc_rib::LocRib;
use origin::local_attrs;
pub use pack::MAX_MESSAGE_LEN;
use policy::Local;
pub use policy::{Denied, GroupKey, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED};

/// A peer (one BGP session) as the RIB knows it; the caller assigns the
/// numbers and must not reuse one before `remove_peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerId(pub u32);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// The facts about a peer that decide what it is sent and how its routes
/// rank. Fixed for the life of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The neighbor address (the session's remote address).
    pub address: Ipv4Addr,
    /// Its BGP identifier, from its OPEN.
    pub router_id: Ipv4Addr,
    /// Its AS; equal to ours makes it an iBGP peer.
    pub asn: u32,
    /// IOS `neighbor X route-reflector-client` (iBGP only).
    pub route_reflector_client: bool,
    /// IOS `neighbor X unsuppress-map`: sent the prefixes `summary-only`
    /// aggregates suppress.
    pub unsuppress: bool,
    /// IOS `route-map ... out` with `set ip next-hop A`: every route sent to
    /// this peer carries next hop A.
    pub next_hop: Option<Ipv4Addr>,
    /// Our address on this session: the next hop of the routes we
    /// originate (next-hop-self), and of every route sent over eBGP.
    pub local_address: Ipv4Addr,
    /// Accepted through a listen range (IOS marks it `*` in `show bgp
    /// summary`).
    pub dynamic: bool,
}

impl PeerInfo {
    /// A static neighbor (`[[bgp.neighbor]]`), once Established.
    pub fn for_neighbor(
        n: &config::Neighbor,
        router_id: Ipv4Addr,
        local_address: Ipv4Addr,
    ) -> Self {
        Self {
            address: n.address,
            router_id,
            asn: n.remote_as,
            route_reflector_client: n.route_reflector_client,
            unsuppress: n.unsuppress,
            next_hop: n.next_hop,
            local_address,
            dynamic: false,
        }
    }

    /// A dynamic neighbor a listen range accepted into `group`.
    pub fn for_dynamic(
        group: &config::PeerGroup,
        address: Ipv4Addr,
        router_id: Ipv4Addr,
        local_address: Ipv4Addr,
    ) -> Self {
        Self {
            address,
            router_id,
            asn: group.remote_as,
            route_reflector_client: group.route_reflector_client,
            unsuppress: false,
            next_hop: None,
            local_address,
            dynamic: true,
        }
    }
}

/// The facts of the peer a path was learned from, kept with the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFacts {
    pub address: Ipv4Addr,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub ibgp: bool,
    pub rr_client: bool,
}

/// Where a Loc-RIB path comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// IOS `network`, backed by a route in the routing table.
    Network,
    /// IOS `redistribute static|connected`.
    Redistributed,
    /// IOS `aggregate-address`.
    Aggregate,
    /// Learned from a peer.
    Peer(PeerId),
}

impl Source {
    pub fn peer(self) -> Option<PeerId> {
        match self {
            Self::Peer(id) => Some(id),
            _ => None,
        }
    }
}

/// One path of a prefix in the Loc-RIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub source: Source,
    /// As received (after the inbound checks), or as originated: next hop
    /// 0.0.0.0 for local paths.
    pub attrs: Arc<PathAttributes>,
    /// `Some` for learned paths.
    pub peer: Option<PeerFacts>,
}

/// One path of the Loc-RIB as `show bgp` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry<'a> {
    pub prefix: Ipv4Prefix,
    pub path: &'a Path,
    /// For the best path: the best-path step that chose it.
    pub best: Option<Step>,
    /// Inside a `summary-only` aggregate.
    pub suppressed: bool,
}

/// The RIB's configuration: IOS `router bgp` minus the neighbors.
#[derive(Clone, Debug)]
pub struct RibConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// IOS `bgp cluster-id`; default the router id.
    pub cluster_id: Option<Ipv4Addr>,
    /// IOS `network`.
    pub networks: Vec<Ipv4Prefix>,
    /// IOS `aggregate-address`.
    pub aggregates: Vec<config::Aggregate>,
    /// The routes `redistribute` starts with; changed later with
    /// [`Rib::set_redistributed`].
    pub redistribute: Vec<Ipv4Prefix>,
}

impl RibConfig {
    /// From `[bgp]`; `router_id` is `bgp.router_id` or the hub's local
    /// address, resolved by the caller.
    pub fn from_config(bgp: &config::Bgp, router_id: Ipv4Addr) -> Self {
        Self {
            asn: bgp.asn,
            router_id,
            cluster_id: None,
            networks: bgp.networks.clone(),
            aggregates: bgp.aggregates.clone(),
            redistribute: Vec::new(),
        }
    }
}

/// Per-peer counters (`show bgp summary` State/PfxRcd is `accepted`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerCounters {
    /// Prefixes the peer currently announces, accepted or not.
    pub received: usize,
    /// Of those, the ones in its Adj-RIB-In (passed the inbound checks).
    pub accepted: usize,
    /// UPDATE messages received.
    pub updates: u64,
    /// Prefixes refused by the inbound checks, ever.
    pub denied_total: u64,
}

/// Work done, for tests and benchmarks (operation counts, not time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkStats {
    /// Best-path decisions (one per prefix settled).
    pub best_path_runs: u64,
    /// Paths looked at by those decisions.
    pub paths_compared: u64,
    /// Aggregates looked at for a prefix gaining or losing its route.
    pub aggregate_checks: u64,
    /// (prefix, update group) pairs whose outbound attributes were
    /// computed.
    pub export_evaluations: u64,
    /// Adj-RIB-Out entries read to send a peer its full table.
    pub dump_entries: u64,
    /// UPDATE messages built.
    pub updates_built: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RibError {
    #[error("{0} is already in the RIB")]
    DuplicatePeer(PeerId),
    #[error("{0} is not in the RIB")]
    UnknownPeer(PeerId),
    /// The codec should have refused it (RFC 4271 6.3: missing well-known
    /// attributes).
    #[error("UPDATE from {peer} has NLRI but no path attributes")]
    MissingAttributes { peer: Ipv4Addr },
}

/// Adj-RIBs-In, Loc-RIB and Adj-RIBs-Out of this speaker (see the module
/// docs).
#[derive(Debug)]
pub struct Rib {
    loc: LocRib,
    /// `network` prefixes and whether the routing table has them.
    networks: BTreeMap<Ipv4Prefix, bool>,
    redistributed: BTreeSet<Ipv4Prefix>,
    network_attrs: Arc<PathAttributes>,
    redistribute_attrs: Arc<PathAttributes>,
    peers: HashMap<PeerId, Peer>,
    groups: BTreeMap<GroupId, Group>,
    group_of_key: HashMap<GroupKey, GroupId>,
    next_group: u32,
    /// Peers to send their full table in the next `take_changes` (new
    /// ones, and route refresh).
    dumps: BTreeSet<PeerId>,
    /// What the datapath has been told.
    fib: BTreeMap<Ipv4Prefix, FibRoute>,
}

impl Rib {
    pub fn new(config: RibConfig) -> Self {
        let local = Local {
            asn: config.asn,
            router_id: config.router_id,
            cluster_id: config.cluster_id.unwrap_or(config.router_id),
        };
        let aggregates = aggregate::aggregates(&config.aggregates, &local);
        let mut rib = Self {
            loc: LocRib {
                local,
                table: BTreeMap::new(),
                aggregates,
                version: 0,
                changed: BTreeSet::new(),
                stats: WorkStats::default(),
            },
            networks: config.networks.iter().map(|&p| (p, false)).collect(),
            redistributed: BTreeSet::new(),
            network_attrs: Arc::new(local_attrs(Origin::Igp, Some(0))),
            redistribute_attrs: Arc::new(local_attrs(Origin::Incomplete, Some(0))),
            peers: HashMap::new(),
            groups: BTreeMap::new(),
            group_of_key: HashMap::new(),
            next_group: 0,
            dumps: BTreeSet::new(),
            fib: BTreeMap::new(),
        };
        rib.set_redistributed_routes(config.redistribute);
        rib
    }

    pub fn asn(&self) -> u32 {
        self.loc.local.asn
    }

    pub fn router_id(&self) -> Ipv4Addr {
        self.loc.local.router_id
    }

    pub fn cluster_id(&self) -> Ipv4Addr {
        self.loc.local.cluster_id
    }

    /// IOS "BGP table version": bumped on every best-path change.
    pub fn table_version(&self) -> u64 {
        self.loc.version
    }

    // -- queries -----------------------------------------------------------------

    /// The best path of `prefix` and the step that chose it.
    pub fn best(&self, prefix: Ipv4Prefix) -> Option<(&Path, Step)> {
        self.loc
            .table
            .get(&prefix)
            .and_then(|d| d.best.as_ref())
            .map(|(p, s)| (p, *s))
    }

    /// Every path of every prefix (`show bgp`), prefixes in order, the
    /// best path first.
    pub fn table(&self) -> Vec<TableEntry<'_>> {
        let mut rows = Vec::new();
        for (&prefix, d) in &self.loc.table {
            let best = d.best.as_ref();
            if let Some((b, step)) = best {
                rows.push(TableEntry {
                    prefix,
                    path: b,
                    best: Some(*step),
                    suppressed: d.suppressed,
                });
            }
            for p in &d.paths {
                if best.is_some_and(|(b, _)| b.source == p.source) {
                    continue;
                }
                rows.push(TableEntry {
                    prefix,
                    path: p,
                    best: None,
                    suppressed: d.suppressed,
                });
            }
        }
        rows
    }

    /// Every path of `prefix`.
    pub fn paths(&self, prefix: Ipv4Prefix) -> &[Path] {
        self.loc.table.get(&prefix).map_or(&[], |d| &d.paths)
    }

    /// Inside a `summary-only` aggregate (and so sent only to `unsuppress`
    /// peers).
    pub fn is_suppressed(&self, prefix: Ipv4Prefix) -> bool {
        self.loc.table.get(&prefix).is_some_and(|d| d.suppressed)
    }

    /// The prefixes with a path, in order.
    pub fn prefixes(&self) -> impl Iterator<Item = Ipv4Prefix> + '_ {
        self.loc.table.keys().copied()
    }

    /// The routes the datapath should have now (the FIB changes are the
    /// difference between two of these).
    pub fn installed_routes(&self) -> Vec<(Ipv4Prefix, FibRoute)> {
        self.loc
            .table
            .iter()
            .filter_map(|(&p, d)| {
                let (b, _) = d.best.as_ref()?;
                Some((p, fib_route(b)?))
            })
            .collect()
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id).map(|p| &p.info)
    }

    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    pub fn counters(&self, id: PeerId) -> Option<PeerCounters> {
        self.peers.get(&id).map(|p| PeerCounters {
            received: p.accepted.len() + p.denied.len(),
            accepted: p.accepted.len(),
            updates: p.updates,
            denied_total: p.denied_total,
        })
    }

    /// The peer's Adj-RIB-In (`show bgp neighbors X routes`).
    pub fn received(&self, id: PeerId) -> Vec<(Ipv4Prefix, &Path)> {
        let Some(peer) = self.peers.get(&id) else {
            return Vec::new();
        };
        peer.accepted
            .iter()
            .filter_map(|&p| {
                let path = self
                    .loc
                    .table
                    .get(&p)?
                    .paths
                    .iter()
                    .find(|x| x.source == Source::Peer(id))?;
                Some((p, path))
            })
            .collect()
    }

    /// The number of update groups (distinct outbound policies in use).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn stats(&self) -> WorkStats {
        self.loc.stats
    }

    pub fn reset_stats(&mut self) {
        self.loc.stats = WorkStats::default();
    }
}
