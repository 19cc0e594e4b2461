//! The Adj-RIBs-In (RFC 4271 section 3.2): the peers as the RIB knows
//! them, what each has in the Loc-RIB and what the inbound checks refused,
//! and phase 1 of the decision process for what they send (section 9.1.1:
//! the checks in `policy`, then into the Loc-RIB).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::adj_out::GroupId;
use super::policy::{GroupKey, check_inbound};
use super::{Path, PeerFacts, PeerId, PeerInfo, Rib, RibError, Source};
use crate::bgp::types::Update;
use crate::net::Ipv4Prefix;

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) info: PeerInfo,
    pub(super) facts: PeerFacts,
    pub(super) group: GroupId,
    /// In `group.members` (sent its first table).
    pub(super) member: bool,
    /// Adj-RIB-In: the prefixes it has a path for in the Loc-RIB.
    pub(super) accepted: BTreeSet<Ipv4Prefix>,
    /// Announced but refused by the inbound checks.
    pub(super) denied: BTreeSet<Ipv4Prefix>,
    pub(super) updates: u64,
    pub(super) denied_total: u64,
}

impl Rib {
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
}

/// Whether `p` starts in unicast address space: not in 224.0.0.0/4
/// (multicast) nor 240.0.0.0/4 (reserved).
fn is_unicast_prefix(p: Ipv4Prefix) -> bool {
    p.addr.octets()[0] < 224
}
