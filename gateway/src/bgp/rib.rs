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

mod best;
mod pack;
mod policy;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bgp::types::{Origin, PathAttributes, Update};
use crate::{config, net::Ipv4Prefix};
pub use best::{DEFAULT_LOCAL_PREF, LOCAL_WEIGHT, Step, as_path_length};
pub use pack::MAX_MESSAGE_LEN;
pub use policy::{Denied, GroupKey, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED};
use policy::{Local, check_inbound, export};

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

/// What the datapath forwards a prefix to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FibRoute {
    /// A learned best route: via the next hop, learned from the peer.
    Forward { next_hop: Ipv4Addr, peer: PeerId },
    /// An aggregate whose own path is best: drop (IOS: summary to Null0).
    Discard,
}

/// A change for the datapath's forwarding table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibChange {
    /// Install or replace the route of the prefix.
    Install {
        prefix: Ipv4Prefix,
        route: FibRoute,
    },
    Remove {
        prefix: Ipv4Prefix,
    },
}

/// One UPDATE for a set of peers: encode `update` once, send the bytes to
/// every peer of [`Outbound::recipients`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub update: Arc<Update>,
    /// Shared between the messages of one group (one allocation per group
    /// and membership change, not per message).
    pub to: Arc<[PeerId]>,
    /// Peers of `to` that do not get this one (at most a few: the peers a
    /// route came from). Sorted.
    pub except: Vec<PeerId>,
}

impl Outbound {
    pub fn recipients(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.to
            .iter()
            .copied()
            .filter(|p| self.except.binary_search(p).is_err())
    }

    pub fn is_for(&self, peer: PeerId) -> bool {
        self.to.contains(&peer) && self.except.binary_search(&peer).is_err()
    }
}

/// What [`Rib::take_changes`] returns: UPDATEs to send, in order, and
/// datapath changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub outbound: Vec<Outbound>,
    pub fib: Vec<FibChange>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.outbound.is_empty() && self.fib.is_empty()
    }

    /// The UPDATEs one peer gets, in order (walks every message: for tests
    /// and logs, not for the send path).
    pub fn for_peer(&self, peer: PeerId) -> Vec<&Update> {
        self.outbound
            .iter()
            .filter(|o| o.is_for(peer))
            .map(|o| &*o.update)
            .collect()
    }
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

// ---------------------------------------------------------------------------
// The Loc-RIB.

/// One prefix of the Loc-RIB.
#[derive(Debug)]
struct Dest {
    /// At most one per source.
    paths: Vec<Path>,
    /// The chosen path as of the last decision, and why.
    best: Option<(Path, Step)>,
    /// Inside a `summary-only` aggregate (static: depends on config only).
    suppressed: bool,
}

#[derive(Debug)]
struct AggState {
    prefix: Ipv4Prefix,
    summary_only: bool,
    /// More specific prefixes with a path in the Loc-RIB.
    contributors: usize,
    attrs: Arc<PathAttributes>,
}

/// Whether `outer` is strictly less specific than `inner` and covers it.
fn covers(outer: Ipv4Prefix, inner: Ipv4Prefix) -> bool {
    outer.len < inner.len && outer.contains(inner.addr)
}

#[derive(Debug)]
struct LocRib {
    local: Local,
    table: BTreeMap<Ipv4Prefix, Dest>,
    aggregates: Vec<AggState>,
    /// IOS "BGP table version": bumped on every best-path change.
    version: u64,
    /// Prefixes whose best path changed since the last `take_changes`.
    changed: BTreeSet<Ipv4Prefix>,
    stats: WorkStats,
}

impl LocRib {
    /// Adds or replaces the path of `path.source` for `prefix`.
    fn set_path(&mut self, prefix: Ipv4Prefix, path: Path) {
        let aggregates = &self.aggregates;
        let dest = self.table.entry(prefix).or_insert_with(|| Dest {
            paths: Vec::with_capacity(1),
            best: None,
            suppressed: aggregates
                .iter()
                .any(|a| a.summary_only && covers(a.prefix, prefix)),
        });
        match dest.paths.iter_mut().find(|p| p.source == path.source) {
            Some(p) => *p = path,
            None => dest.paths.push(path),
        }
    }

    /// Removes the path of `source` for `prefix`; whether there was one.
    fn remove_path(&mut self, prefix: Ipv4Prefix, source: Source) -> bool {
        let Some(dest) = self.table.get_mut(&prefix) else {
            return false;
        };
        let before = dest.paths.len();
        dest.paths.retain(|p| p.source != source);
        before != dest.paths.len()
    }

    /// Runs best-path selection for the `dirty` prefixes, most specific
    /// first, so an aggregate that gains or loses its path in the process
    /// is decided after its contributors.
    fn settle(&mut self, dirty: impl IntoIterator<Item = Ipv4Prefix>) {
        let mut by_len: [BTreeSet<Ipv4Prefix>; 33] = std::array::from_fn(|_| BTreeSet::new());
        for p in dirty {
            by_len[usize::from(p.len.min(32))].insert(p);
        }
        for len in (0..=32).rev() {
            while let Some(p) = by_len[len].pop_first() {
                self.decide(p, &mut by_len);
            }
        }
    }

    fn decide(&mut self, prefix: Ipv4Prefix, by_len: &mut [BTreeSet<Ipv4Prefix>; 33]) {
        self.stats.best_path_runs += 1;
        let Some(dest) = self.table.get_mut(&prefix) else {
            return;
        };
        let new = best::select(
            &dest.paths,
            self.local.router_id,
            &mut self.stats.paths_compared,
        )
        .map(|(i, step)| (dest.paths[i].clone(), step));
        let had = dest.best.is_some();
        let same = match (&dest.best, &new) {
            (Some((a, _)), Some((b, _))) => {
                a.source == b.source
                    && a.peer == b.peer
                    && (Arc::ptr_eq(&a.attrs, &b.attrs) || a.attrs == b.attrs)
            }
            (None, None) => true,
            _ => false,
        };
        let has = new.is_some();
        dest.best = new;
        if !same {
            self.version += 1;
            self.changed.insert(prefix);
        }
        if dest.paths.is_empty() {
            self.table.remove(&prefix);
        }
        if had != has {
            self.contributor(prefix, has, by_len);
        }
    }

    /// `prefix` gained (`has`) or lost its last path: the aggregates
    /// covering it count it; one that gets its first contributor or loses
    /// its last gets or loses its own path.
    fn contributor(
        &mut self,
        prefix: Ipv4Prefix,
        has: bool,
        by_len: &mut [BTreeSet<Ipv4Prefix>; 33],
    ) {
        for i in 0..self.aggregates.len() {
            self.stats.aggregate_checks += 1;
            let agg = &mut self.aggregates[i];
            if !covers(agg.prefix, prefix) {
                continue;
            }
            let before = agg.contributors;
            agg.contributors = if has {
                before + 1
            } else {
                before.saturating_sub(1)
            };
            let (agg_prefix, attrs) = (agg.prefix, Arc::clone(&agg.attrs));
            match (before, has) {
                (0, true) => self.set_path(
                    agg_prefix,
                    Path {
                        source: Source::Aggregate,
                        attrs,
                        peer: None,
                    },
                ),
                (1, false) => {
                    self.remove_path(agg_prefix, Source::Aggregate);
                }
                _ => continue,
            }
            by_len[usize::from(agg_prefix.len)].insert(agg_prefix);
        }
    }
}

/// The attributes of locally originated paths (IOS `show bgp`: next hop
/// 0.0.0.0, weight 32768).
fn local_attrs(origin: Origin, med: Option<u32>) -> PathAttributes {
    PathAttributes {
        origin,
        as_path: Vec::new(),
        next_hop: Ipv4Addr::UNSPECIFIED,
        med,
        local_pref: None,
        atomic_aggregate: false,
        aggregator: None,
        communities: Vec::new(),
        originator_id: None,
        cluster_list: Vec::new(),
        other: Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Peers and update groups.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct GroupId(u32);

/// One entry of a group's Adj-RIB-Out.
#[derive(Debug)]
struct OutRoute {
    attrs: Arc<PathAttributes>,
    /// The peer the route came from: it is not sent its own route.
    from: Option<PeerId>,
}

/// Peers with the same outbound policy and their shared Adj-RIB-Out.
#[derive(Debug)]
struct Group {
    key: GroupKey,
    /// Peers that have been sent their first table.
    members: BTreeSet<PeerId>,
    /// `members` as sent in [`Outbound::to`]; rebuilt after a change.
    members_arc: Option<Arc<[PeerId]>>,
    /// Members and peers waiting for their first table.
    peers: usize,
    out: BTreeMap<Ipv4Prefix, OutRoute>,
}

impl Group {
    fn members_arc(&mut self) -> Arc<[PeerId]> {
        let members = &self.members;
        Arc::clone(
            self.members_arc
                .get_or_insert_with(|| members.iter().copied().collect()),
        )
    }
}

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    facts: PeerFacts,
    group: GroupId,
    /// In `group.members` (sent its first table).
    member: bool,
    /// Adj-RIB-In: the prefixes it has a path for in the Loc-RIB.
    accepted: BTreeSet<Ipv4Prefix>,
    /// Announced but refused by the inbound checks.
    denied: BTreeSet<Ipv4Prefix>,
    updates: u64,
    denied_total: u64,
}

/// What to send for one prefix: nothing (`None`), a withdrawal
/// (`Some(None)`) or these attributes.
type Action = Option<Option<Arc<PathAttributes>>>;

fn action(old: Option<&Arc<PathAttributes>>, new: Option<&Arc<PathAttributes>>) -> Action {
    match (old, new) {
        (None, None) => None,
        (Some(o), Some(n)) if o == n => None,
        (_, Some(n)) => Some(Some(Arc::clone(n))),
        (Some(_), None) => Some(None),
    }
}

/// Prefixes for one set of recipients, grouped by (exceptions,
/// attributes) in first-seen order.
#[derive(Default)]
struct Batch {
    index: HashMap<BatchKey, usize>,
    lists: Vec<(BatchKey, Vec<Ipv4Prefix>)>,
}

/// The peers left out, and the attributes (`None`: a withdrawal).
type BatchKey = (Vec<PeerId>, Option<Arc<PathAttributes>>);

impl Batch {
    fn add(&mut self, except: Vec<PeerId>, attrs: Option<Arc<PathAttributes>>, p: Ipv4Prefix) {
        let key = (except, attrs);
        if let Some(&i) = self.index.get(&key) {
            self.lists[i].1.push(p);
            return;
        }
        self.index.insert(key.clone(), self.lists.len());
        self.lists.push((key, vec![p]));
    }

    fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Withdrawals first, then announcements.
    fn emit(self, to: &Arc<[PeerId]>, out: &mut Vec<Outbound>, stats: &mut WorkStats) {
        let (withdrawals, announcements): (Vec<_>, Vec<_>) =
            self.lists.into_iter().partition(|l| l.0.1.is_none());
        for ((except, attrs), prefixes) in withdrawals.into_iter().chain(announcements) {
            for update in pack::pack(attrs.as_ref(), &prefixes) {
                stats.updates_built += 1;
                out.push(Outbound {
                    update: Arc::new(update),
                    to: Arc::clone(to),
                    except: except.clone(),
                });
            }
        }
    }
}

/// The datapath route for a best path, if it has one.
fn fib_route(best: &Path) -> Option<FibRoute> {
    match best.source {
        Source::Peer(peer) => Some(FibRoute::Forward {
            next_hop: best.attrs.next_hop,
            peer,
        }),
        Source::Aggregate => Some(FibRoute::Discard),
        Source::Network | Source::Redistributed => None,
    }
}

// ---------------------------------------------------------------------------
// The RIB.

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
        // One aggregate per prefix; `summary-only` if any line says so.
        let mut aggs: BTreeMap<Ipv4Prefix, bool> = BTreeMap::new();
        for a in &config.aggregates {
            *aggs.entry(a.prefix).or_default() |= a.summary_only;
        }
        let aggregates = aggs
            .into_iter()
            .map(|(prefix, summary_only)| AggState {
                prefix,
                summary_only,
                contributors: 0,
                attrs: Arc::new(PathAttributes {
                    atomic_aggregate: true,
                    aggregator: Some((local.asn, local.router_id)),
                    ..local_attrs(Origin::Igp, None)
                }),
            })
            .collect();
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

    // -- peers --------------------------------------------------------------

    /// A session reached Established. The peer gets its full table in the
    /// next [`Rib::take_changes`].
    pub fn add_peer(&mut self, id: PeerId, info: PeerInfo) -> Result<(), RibError> {
        if self.peers.contains_key(&id) {
            return Err(RibError::DuplicatePeer(id));
        }
        let key = GroupKey::of(&info, self.loc.local.asn);
        let gid = match self.group_of_key.get(&key) {
            Some(&g) => g,
            None => self.new_group(key),
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            g.peers += 1;
        }
        let ibgp = info.asn == self.loc.local.asn;
        let facts = PeerFacts {
            address: info.address,
            router_id: info.router_id,
            asn: info.asn,
            ibgp,
            rr_client: ibgp && info.route_reflector_client,
        };
        self.peers.insert(
            id,
            Peer {
                info,
                facts,
                group: gid,
                member: false,
                accepted: BTreeSet::new(),
                denied: BTreeSet::new(),
                updates: 0,
                denied_total: 0,
            },
        );
        self.dumps.insert(id);
        Ok(())
    }

    /// A new update group, its Adj-RIB-Out filled from the Loc-RIB: O(n).
    fn new_group(&mut self, key: GroupKey) -> GroupId {
        let id = GroupId(self.next_group);
        self.next_group += 1;
        let loc = &mut self.loc;
        let mut out = BTreeMap::new();
        for (&p, d) in &loc.table {
            let Some((b, _)) = &d.best else { continue };
            loc.stats.export_evaluations += 1;
            if let Some(a) = export(b, d.suppressed, &key, &loc.local) {
                out.insert(
                    p,
                    OutRoute {
                        attrs: Arc::new(a),
                        from: b.source.peer(),
                    },
                );
            }
        }
        self.groups.insert(
            id,
            Group {
                key,
                members: BTreeSet::new(),
                members_arc: None,
                peers: 0,
                out,
            },
        );
        self.group_of_key.insert(key, id);
        id
    }

    /// The session went down: its routes are withdrawn (sent in the next
    /// `take_changes`), it is sent nothing more. Whether it was known.
    pub fn remove_peer(&mut self, id: PeerId) -> bool {
        let Some(peer) = self.peers.remove(&id) else {
            return false;
        };
        self.dumps.remove(&id);
        if let Some(g) = self.groups.get_mut(&peer.group) {
            if g.members.remove(&id) {
                g.members_arc = None;
            }
            g.peers -= 1;
            if g.peers == 0 {
                self.group_of_key.remove(&g.key);
                self.groups.remove(&peer.group);
            }
        }
        for &p in &peer.accepted {
            self.loc.remove_path(p, Source::Peer(id));
        }
        self.loc.settle(peer.accepted);
        true
    }

    /// RFC 2918 ROUTE-REFRESH: the peer is sent its full table again in the
    /// next `take_changes`.
    pub fn route_refresh(&mut self, id: PeerId) -> Result<(), RibError> {
        if !self.peers.contains_key(&id) {
            return Err(RibError::UnknownPeer(id));
        }
        self.dumps.insert(id);
        Ok(())
    }

    /// An UPDATE received from `id`: withdrawals, then the NLRI, each
    /// through the inbound checks (a refused prefix withdraws what the peer
    /// had for it: RFC 7606's treat-as-withdraw).
    pub fn update_from(&mut self, id: PeerId, update: &Update) -> Result<(), RibError> {
        let peer = self.peers.get_mut(&id).ok_or(RibError::UnknownPeer(id))?;
        peer.updates += 1;
        let source = Source::Peer(id);
        let mut dirty = Vec::with_capacity(update.withdrawn.len() + update.nlri.len());
        for &p in &update.withdrawn {
            peer.denied.remove(&p);
            if peer.accepted.remove(&p) {
                self.loc.remove_path(p, source);
                dirty.push(p);
            }
        }
        if !update.nlri.is_empty() {
            let Some(attrs) = &update.attributes else {
                self.loc.settle(dirty);
                return Err(RibError::MissingAttributes {
                    peer: peer.info.address,
                });
            };
            match check_inbound(attrs, &peer.info, &self.loc.local) {
                Ok(normalized) => {
                    let attrs = Arc::new(normalized.unwrap_or_else(|| attrs.clone()));
                    for &p in &update.nlri {
                        // RFC 4271 section 6.3: a multicast or reserved
                        // (class E) prefix is ignored, not an error.
                        if !is_unicast_prefix(p) {
                            tracing::debug!(peer = %peer.info.address, prefix = %p, "BGP: non-unicast prefix ignored");
                            peer.denied_total += 1;
                            peer.denied.insert(p);
                            if peer.accepted.remove(&p) {
                                self.loc.remove_path(p, source);
                                dirty.push(p);
                            }
                            continue;
                        }
                        peer.denied.remove(&p);
                        peer.accepted.insert(p);
                        self.loc.set_path(
                            p,
                            Path {
                                source,
                                attrs: Arc::clone(&attrs),
                                peer: Some(peer.facts),
                            },
                        );
                        dirty.push(p);
                    }
                }
                Err(why) => {
                    tracing::debug!(
                        peer = %peer.info.address,
                        prefixes = update.nlri.len(),
                        first = %update.nlri[0],
                        %why,
                        "BGP routes denied"
                    );
                    for &p in &update.nlri {
                        peer.denied_total += 1;
                        peer.denied.insert(p);
                        if peer.accepted.remove(&p) {
                            self.loc.remove_path(p, source);
                            dirty.push(p);
                        }
                    }
                }
            }
        }
        self.loc.settle(dirty);
        Ok(())
    }

    // -- routing table facts -------------------------------------------------

    /// Whether the routing table has `prefix` exactly (connected, static,
    /// a spoke's /32, an IKE-pushed route; not BGP's own routes). Only
    /// `network` prefixes matter; others are ignored in O(log networks).
    pub fn set_route_present(&mut self, prefix: Ipv4Prefix, present: bool) {
        let Some(flag) = self.networks.get_mut(&prefix) else {
            return;
        };
        if *flag == present {
            return;
        }
        *flag = present;
        if present {
            self.loc.set_path(
                prefix,
                Path {
                    source: Source::Network,
                    attrs: Arc::clone(&self.network_attrs),
                    peer: None,
                },
            );
        } else {
            self.loc.remove_path(prefix, Source::Network);
        }
        self.loc.settle([prefix]);
    }

    /// The routing table's prefixes, all of them (those not given are
    /// absent). O(given + networks).
    pub fn set_routes_present(&mut self, prefixes: impl IntoIterator<Item = Ipv4Prefix>) {
        let present: BTreeSet<Ipv4Prefix> = prefixes
            .into_iter()
            .filter(|p| self.networks.contains_key(p))
            .collect();
        let nets: Vec<Ipv4Prefix> = self.networks.keys().copied().collect();
        for p in nets {
            self.set_route_present(p, present.contains(&p));
        }
    }

    /// Starts or stops redistributing `prefix` (IOS `redistribute static`
    /// / `connected`: the caller decides which routes those are).
    pub fn set_redistributed(&mut self, prefix: Ipv4Prefix, on: bool) {
        let changed = if on {
            self.redistributed.insert(prefix)
        } else {
            self.redistributed.remove(&prefix)
        };
        if !changed {
            return;
        }
        if on {
            self.loc.set_path(
                prefix,
                Path {
                    source: Source::Redistributed,
                    attrs: Arc::clone(&self.redistribute_attrs),
                    peer: None,
                },
            );
        } else {
            self.loc.remove_path(prefix, Source::Redistributed);
        }
        self.loc.settle([prefix]);
    }

    /// Replaces the whole redistributed set.
    pub fn set_redistributed_routes(&mut self, prefixes: impl IntoIterator<Item = Ipv4Prefix>) {
        let new: BTreeSet<Ipv4Prefix> = prefixes.into_iter().collect();
        let gone: Vec<Ipv4Prefix> = self.redistributed.difference(&new).copied().collect();
        for p in gone {
            self.set_redistributed(p, false);
        }
        for p in new {
            self.set_redistributed(p, true);
        }
    }

    // -- output ----------------------------------------------------------------

    /// The UPDATEs and FIB changes since the last call (see the module
    /// docs for the costs).
    pub fn take_changes(&mut self) -> Changes {
        let changed = std::mem::take(&mut self.loc.changed);
        let mut changes = Changes::default();
        self.fib_changes(&changed, &mut changes.fib);
        self.export_changes(&changed, &mut changes.outbound);
        self.send_dumps(&mut changes.outbound);
        changes
    }

    fn fib_changes(&mut self, changed: &BTreeSet<Ipv4Prefix>, out: &mut Vec<FibChange>) {
        for &prefix in changed {
            let want = self
                .loc
                .table
                .get(&prefix)
                .and_then(|d| d.best.as_ref())
                .and_then(|(b, _)| fib_route(b));
            if want.as_ref() == self.fib.get(&prefix) {
                continue;
            }
            if let Some(route) = want {
                self.fib.insert(prefix, route);
                out.push(FibChange::Install { prefix, route });
            } else {
                self.fib.remove(&prefix);
                out.push(FibChange::Remove { prefix });
            }
        }
    }

    /// For every group and changed prefix: the group's new attributes,
    /// compared with what it was sent. The members all see the same change
    /// except the peers the old and the new route came from (they do not
    /// see their own route), which get their own message when theirs
    /// differs.
    fn export_changes(&mut self, changed: &BTreeSet<Ipv4Prefix>, out: &mut Vec<Outbound>) {
        if changed.is_empty() {
            return;
        }
        let loc = &mut self.loc;
        let mut own: BTreeMap<PeerId, Batch> = BTreeMap::new();
        for group in self.groups.values_mut() {
            let mut batch = Batch::default();
            for &p in changed {
                loc.stats.export_evaluations += 1;
                let new = loc.table.get(&p).and_then(|d| {
                    let (b, _) = d.best.as_ref()?;
                    let a = export(b, d.suppressed, &group.key, &loc.local)?;
                    Some((a, b.source.peer()))
                });
                let old = group.out.get(&p);
                let new = match (old, new) {
                    (None, None) => continue,
                    (Some(o), Some((a, from))) if *o.attrs == a => {
                        if o.from == from {
                            continue;
                        }
                        Some(OutRoute {
                            attrs: Arc::clone(&o.attrs),
                            from,
                        })
                    }
                    (_, new) => new.map(|(a, from)| OutRoute {
                        attrs: Arc::new(a),
                        from,
                    }),
                };
                let (old_attrs, old_from) = (old.map(|o| &o.attrs), old.and_then(|o| o.from));
                let (new_attrs, new_from) = (
                    new.as_ref().map(|o| &o.attrs),
                    new.as_ref().and_then(|o| o.from),
                );
                let common = action(old_attrs, new_attrs);
                let mut except = Vec::new();
                let mut specials = [old_from, new_from];
                if old_from == new_from {
                    specials[1] = None;
                }
                for m in specials.into_iter().flatten() {
                    if !group.members.contains(&m) {
                        continue;
                    }
                    let seen_old = old_attrs.filter(|_| old_from != Some(m));
                    let seen_new = new_attrs.filter(|_| new_from != Some(m));
                    let mine = action(seen_old, seen_new);
                    if mine != common {
                        except.push(m);
                        if let Some(a) = mine {
                            own.entry(m).or_default().add(Vec::new(), a, p);
                        }
                    }
                }
                except.sort_unstable();
                if let Some(a) = common
                    && except.len() < group.members.len()
                {
                    batch.add(except, a, p);
                }
                match new {
                    Some(r) => group.out.insert(p, r),
                    None => group.out.remove(&p),
                };
            }
            if !batch.is_empty() {
                batch.emit(&group.members_arc(), out, &mut loc.stats);
            }
        }
        for (m, batch) in own {
            batch.emit(&Arc::from([m]), out, &mut loc.stats);
        }
    }

    /// Full tables for the peers that came up (or asked for a refresh),
    /// one shared set of UPDATEs per group; they become members.
    fn send_dumps(&mut self, out: &mut Vec<Outbound>) {
        let mut by_group: BTreeMap<GroupId, Vec<PeerId>> = BTreeMap::new();
        for id in std::mem::take(&mut self.dumps) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            by_group.entry(peer.group).or_default().push(id);
            if !peer.member {
                peer.member = true;
                if let Some(g) = self.groups.get_mut(&peer.group) {
                    g.members.insert(id);
                    g.members_arc = None;
                }
            }
        }
        for (gid, joiners) in by_group {
            let Some(group) = self.groups.get(&gid) else {
                continue;
            };
            // Sorted: they came out of a BTreeSet.
            let to: Arc<[PeerId]> = joiners.into();
            let mut batch = Batch::default();
            for (&p, r) in &group.out {
                self.loc.stats.dump_entries += 1;
                let except = match r.from {
                    Some(f) if to.binary_search(&f).is_ok() => vec![f],
                    _ => Vec::new(),
                };
                if except.len() < to.len() {
                    batch.add(except, Some(Arc::clone(&r.attrs)), p);
                }
            }
            batch.emit(&to, out, &mut self.loc.stats);
        }
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

    /// The peer's Adj-RIB-Out as sent so far (`show bgp neighbors X
    /// advertised-routes`): empty until its first table went out.
    /// O(group's Adj-RIB-Out).
    pub fn advertised(&self, id: PeerId) -> Vec<(Ipv4Prefix, Arc<PathAttributes>)> {
        let Some(peer) = self.peers.get(&id).filter(|p| p.member) else {
            return Vec::new();
        };
        let Some(group) = self.groups.get(&peer.group) else {
            return Vec::new();
        };
        group
            .out
            .iter()
            .filter(|(_, r)| r.from != Some(id))
            .map(|(&p, r)| (p, Arc::clone(&r.attrs)))
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

/// Whether `p` starts in unicast address space: not in 224.0.0.0/4
/// (multicast) nor 240.0.0.0/4 (reserved).
fn is_unicast_prefix(p: Ipv4Prefix) -> bool {
    p.addr.octets()[0] < 224
}
