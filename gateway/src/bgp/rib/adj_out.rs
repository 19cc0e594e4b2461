//! The Adj-RIBs-Out (RFC 4271 section 3.2) and phase 3 of the decision
//! process (section 9.1.3): one Adj-RIB-Out per update group, the changes
//! since the last round as UPDATEs to encode once and send to many peers,
//! the full tables of peers that came up, and the FIB changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Serialize;

use super::policy::{GroupKey, export};
use super::{Path, PeerId, Rib, Source, WorkStats, pack};
use crate::bgp::types::{PathAttributes, Update};
use crate::net::Ipv4Prefix;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct GroupId(u32);

/// One entry of a group's Adj-RIB-Out.
#[derive(Debug)]
pub(super) struct OutRoute {
    pub(super) attrs: Arc<PathAttributes>,
    /// The peer the route came from: it is not sent its own route.
    pub(super) from: Option<PeerId>,
}

/// Peers with the same outbound policy and their shared Adj-RIB-Out.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) key: GroupKey,
    /// Peers that have been sent their first table.
    pub(super) members: BTreeSet<PeerId>,
    /// `members` as sent in [`Outbound::to`]; rebuilt after a change.
    pub(super) members_arc: Option<Arc<[PeerId]>>,
    /// Members and peers waiting for their first table.
    pub(super) peers: usize,
    pub(super) out: BTreeMap<Ipv4Prefix, OutRoute>,
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
pub(super) fn fib_route(best: &Path) -> Option<FibRoute> {
    match best.source {
        Source::Peer(peer) => Some(FibRoute::Forward {
            next_hop: best.attrs.next_hop,
            peer,
        }),
        Source::Aggregate => Some(FibRoute::Discard),
        Source::Network | Source::Redistributed => None,
    }
}

impl Rib {
    /// A new update group, its Adj-RIB-Out filled from the Loc-RIB: O(n).
    pub(super) fn new_group(&mut self, key: GroupKey) -> GroupId {
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
}
