//! Packing prefixes into UPDATE messages that fit the 4096-byte BGP message
//! limit (RFC 4271 section 4; no extended messages, RFC 8654).
//!
//! The attribute size is bounded from above (every attribute counted with
//! the 4-byte extended-length header, AS_PATH and AGGREGATOR counted twice
//! in case the codec adds AS4_PATH / AS4_AGGREGATOR for a 2-byte-AS peer,
//! RFC 6793), so an UPDATE built here always encodes within the limit.

use std::sync::Arc;

use crate::bgp::types::{AsSegment, PathAttributes, Update};
use crate::net::Ipv4Prefix;

/// RFC 4271 section 4.1.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Marker, length, type.
const HEADER_LEN: usize = 19;
/// Withdrawn Routes Length and Total Path Attribute Length.
const UPDATE_FIXED_LEN: usize = 4;
/// Flags, type code, extended length.
const ATTR_HEADER_MAX: usize = 4;

/// The bytes one prefix takes in NLRI or Withdrawn Routes (section 4.3).
pub fn prefix_wire_len(p: Ipv4Prefix) -> usize {
    1 + usize::from(p.len).div_ceil(8)
}

/// An upper bound of the encoded path attributes.
pub fn attributes_len_bound(a: &PathAttributes) -> usize {
    let h = ATTR_HEADER_MAX;
    let as_path: usize = a
        .as_path
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(v) | AsSegment::Set(v) => 2 + 4 * v.len(),
        })
        .sum();
    let mut n = (h + 1) + 2 * (h + as_path) + (h + 4);
    n += a.med.map_or(0, |_| h + 4);
    n += a.local_pref.map_or(0, |_| h + 4);
    n += if a.atomic_aggregate { h } else { 0 };
    n += a.aggregator.map_or(0, |_| 2 * (h + 8));
    if !a.communities.is_empty() {
        n += h + 4 * a.communities.len();
    }
    n += a.originator_id.map_or(0, |_| h + 4);
    if !a.cluster_list.is_empty() {
        n += h + 4 * a.cluster_list.len();
    }
    n += a.other.iter().map(|r| h + r.value.len()).sum::<usize>();
    n
}

/// Splits `prefixes` into UPDATEs: announcements with `attrs`, or
/// withdrawals when `attrs` is `None`. Each UPDATE carries at least one
/// prefix (even if oversized attributes leave no room: the codec then
/// reports it).
pub fn pack(attrs: Option<&Arc<PathAttributes>>, prefixes: &[Ipv4Prefix]) -> Vec<Update> {
    let budget = (MAX_MESSAGE_LEN - HEADER_LEN - UPDATE_FIXED_LEN)
        .saturating_sub(attrs.map_or(0, |a| attributes_len_bound(a)));
    let mut out = Vec::new();
    let mut chunk: Vec<Ipv4Prefix> = Vec::new();
    let mut used = 0;
    let mut flush = |chunk: &mut Vec<Ipv4Prefix>| {
        let list = std::mem::take(chunk);
        out.push(match attrs {
            Some(a) => Update {
                withdrawn: Vec::new(),
                attributes: Some(PathAttributes::clone(a)),
                nlri: list,
            },
            None => Update {
                withdrawn: list,
                attributes: None,
                nlri: Vec::new(),
            },
        });
    };
    for &p in prefixes {
        let len = prefix_wire_len(p);
        if !chunk.is_empty() && used + len > budget {
            flush(&mut chunk);
            used = 0;
        }
        chunk.push(p);
        used += len;
    }
    if !chunk.is_empty() {
        flush(&mut chunk);
    }
    out
}
