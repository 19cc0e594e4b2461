//! What is accepted from a peer (inbound checks) and what a peer is sent
//! (outbound rules: split horizon, route reflection, suppression, next hop,
//! attributes).
//!
//! The outbound rules depend only on the best path and on the receiving
//! peer's [`GroupKey`]: every peer with the same key gets the same
//! attributes for a prefix, so the RIB computes them once per key (an
//! "update group", as IOS calls it). The one per-peer rule, never sending a
//! route back to the peer it came from, is applied on top (see
//! `Rib::take_changes`).

use std::net::Ipv4Addr;

use super::{Path, PeerInfo};
use crate::bgp::types::{AsSegment, PathAttributes, RawAttribute};

/// RFC 1997 well-known communities.
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

/// Attribute flags (RFC 4271 section 4.3).
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_PARTIAL: u8 = 0x20;

/// This speaker's identity, as the policies need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Ipv4Addr,
}

/// Why a received route was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Denied {
    /// iBGP: the ORIGINATOR_ID is our router id (RFC 4456 section 8).
    OriginatorIsUs,
    /// iBGP: the CLUSTER_LIST holds our cluster id (RFC 4456 section 8).
    ClusterLoop,
    /// eBGP: our AS is in the AS_PATH (RFC 4271 section 9.1.2).
    AsLoop,
    /// eBGP: the AS_PATH does not start with the peer's AS (RFC 4271
    /// section 6.3; IOS `bgp enforce-first-as`, on by default).
    FirstAsMismatch,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OriginatorIsUs => "ORIGINATOR_ID is our router id (RFC 4456 loop)",
            Self::ClusterLoop => "CLUSTER_LIST holds our cluster id (RFC 4456 loop)",
            Self::AsLoop => "AS_PATH holds our AS (loop)",
            Self::FirstAsMismatch => "AS_PATH does not start with the peer's AS",
        })
    }
}

/// RFC 6793 attribute type codes.
const ATTR_AS4_PATH: u8 = 17;
const ATTR_AS4_AGGREGATOR: u8 = 18;

/// The inbound checks. Returns the attributes as stored in the Adj-RIB-In:
/// for eBGP, with LOCAL_PREF (RFC 4271 5.1.5) and the route reflection
/// attributes (optional non-transitive, meaningless outside the AS)
/// removed; AS4_PATH and AS4_AGGREGATOR removed.
pub fn check_inbound(
    attrs: &PathAttributes,
    peer: &PeerInfo,
    local: &Local,
) -> Result<Option<PathAttributes>, Denied> {
    // RFC 6793 section 4.1: AS4_PATH and AS4_AGGREGATOR between two
    // 4-octet-AS speakers (every session here) are discarded.
    let as4 = |a: &RawAttribute| matches!(a.type_code, ATTR_AS4_PATH | ATTR_AS4_AGGREGATOR);
    if attrs.other.iter().any(as4) {
        let mut a = attrs.clone();
        a.other.retain(|a| !as4(a));
        return Ok(Some(check_inbound(&a, peer, local)?.unwrap_or(a)));
    }
    if peer.asn == local.asn {
        if attrs.originator_id == Some(local.router_id) {
            return Err(Denied::OriginatorIsUs);
        }
        if attrs.cluster_list.contains(&local.cluster_id) {
            return Err(Denied::ClusterLoop);
        }
        return Ok(None);
    }
    let contains_us = attrs.as_path.iter().any(|s| match s {
        AsSegment::Sequence(v) | AsSegment::Set(v) => v.contains(&local.asn),
    });
    if contains_us {
        return Err(Denied::AsLoop);
    }
    match attrs.as_path.first() {
        Some(AsSegment::Sequence(v)) if v.first() == Some(&peer.asn) => {}
        _ => return Err(Denied::FirstAsMismatch),
    }
    if attrs.local_pref.is_none() && attrs.originator_id.is_none() && attrs.cluster_list.is_empty()
    {
        return Ok(None);
    }
    let mut a = attrs.clone();
    a.local_pref = None;
    a.originator_id = None;
    a.cluster_list.clear();
    Ok(Some(a))
}

/// What makes two peers get the same UPDATEs: peers with equal keys share
/// one Adj-RIB-Out and one encoding of every UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub ibgp: bool,
    /// Only meaningful for iBGP (false for eBGP keys).
    pub rr_client: bool,
    pub unsuppress: bool,
    /// `set ip next-hop` on the way out.
    pub next_hop: Option<Ipv4Addr>,
    /// Next-hop-self for locally originated (and, to eBGP, all) routes;
    /// unspecified when `next_hop` overrides it.
    pub local_address: Ipv4Addr,
}

impl GroupKey {
    pub fn of(peer: &PeerInfo, local_asn: u32) -> Self {
        let ibgp = peer.asn == local_asn;
        Self {
            ibgp,
            rr_client: ibgp && peer.route_reflector_client,
            unsuppress: peer.unsuppress,
            next_hop: peer.next_hop,
            local_address: if peer.next_hop.is_some() {
                Ipv4Addr::UNSPECIFIED
            } else {
                peer.local_address
            },
        }
    }
}

/// Whether a path may be sent to peers of `key` at all, ignoring which
/// peer it came from.
fn may_send(path: &Path, suppressed: bool, key: &GroupKey) -> bool {
    // `aggregate-address ... summary-only`, lifted per neighbor by IOS
    // `unsuppress-map`.
    if suppressed && !key.unsuppress {
        return false;
    }
    let c = &path.attrs.communities;
    if c.contains(&NO_ADVERTISE) {
        return false;
    }
    if !key.ibgp && (c.contains(&NO_EXPORT) || c.contains(&NO_EXPORT_SUBCONFED)) {
        return false;
    }
    match path.peer {
        // iBGP split horizon (RFC 4271 section 9.2) and route reflection
        // (RFC 4456 section 6): a route from an iBGP peer goes to iBGP
        // peers only when reflected: from a client to clients and
        // non-clients, from a non-client to clients only.
        Some(from) if from.ibgp && key.ibgp => from.rr_client || key.rr_client,
        _ => true,
    }
}

/// The attributes peers of `key` are sent for `path`, or `None` when they
/// are not sent it.
pub fn export(
    path: &Path,
    suppressed: bool,
    key: &GroupKey,
    local: &Local,
) -> Option<PathAttributes> {
    if !may_send(path, suppressed, key) {
        return None;
    }
    let a = &*path.attrs;
    let self_address = key.next_hop.unwrap_or(key.local_address);
    let learned = path.peer;
    let mut out = PathAttributes {
        origin: a.origin,
        as_path: a.as_path.clone(),
        next_hop: a.next_hop,
        med: a.med,
        local_pref: None,
        atomic_aggregate: a.atomic_aggregate,
        aggregator: a.aggregator,
        communities: a.communities.clone(),
        originator_id: None,
        cluster_list: Vec::new(),
        // RFC 4271 section 5 / 9.1: unrecognized optional transitive
        // attributes are passed on with the Partial bit set; optional
        // non-transitive ones are dropped.
        other: a
            .other
            .iter()
            .filter(|r| r.flags & FLAG_TRANSITIVE != 0)
            .map(|r| RawAttribute {
                flags: r.flags | FLAG_PARTIAL,
                type_code: r.type_code,
                value: r.value.clone(),
            })
            .collect(),
    };
    if key.ibgp {
        out.local_pref = Some(path.local_pref());
        // Next hop unchanged over iBGP (RFC 4271 5.1.3), self for what we
        // originate; `set ip next-hop` overrides both, reflected routes
        // included (IOS outbound route-map).
        out.next_hop = match (key.next_hop, learned) {
            (Some(nh), _) => nh,
            (None, Some(_)) => a.next_hop,
            (None, None) => key.local_address,
        };
        if let Some(from) = learned
            && from.ibgp
        {
            // Reflected (RFC 4456 section 8): ORIGINATOR_ID set once, by
            // the first reflector; our cluster id prepended.
            out.originator_id = Some(a.originator_id.unwrap_or(from.router_id));
            out.cluster_list.reserve(a.cluster_list.len() + 1);
            out.cluster_list.push(local.cluster_id);
            out.cluster_list.extend_from_slice(&a.cluster_list);
        }
    } else {
        // eBGP: our AS prepended (RFC 4271 5.1.2), next hop self (5.1.3),
        // a MED learned from another AS not passed on (5.1.4).
        prepend(&mut out.as_path, local.asn);
        out.next_hop = self_address;
        if learned.is_some_and(|p| !p.ibgp) {
            out.med = None;
        }
    }
    Some(out)
}

/// Puts `asn` in front of the AS_PATH (a new AS_SEQUENCE when the path
/// starts with an AS_SET or a full sequence of 255).
fn prepend(path: &mut Vec<AsSegment>, asn: u32) {
    if let Some(AsSegment::Sequence(v)) = path.first_mut()
        && v.len() < 255
    {
        v.insert(0, asn);
        return;
    }
    path.insert(0, AsSegment::Sequence(vec![asn]));
}
