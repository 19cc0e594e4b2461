//! Best-path selection (RFC 4271 section 9.1.2.2, in the order IOS applies
//! it, "BGP Best Path Selection Algorithm", Cisco document 13753).
//!
//! The steps, each one keeping only the candidates that are best on it; the
//! first step that leaves one candidate decides ([`Step`] says which):
//!
//! 1. highest weight (IOS only, not sent on the wire): 32768 for the paths
//!    this router originates (`network`, `aggregate-address`,
//!    `redistribute`), 0 for learned ones; there is no per-neighbor
//!    `weight` setting yet;
//! 2. highest LOCAL_PREF, 100 when absent (IOS `bgp default local-preference`;
//!    RFC 4271 5.1.5: the attribute from an eBGP peer is ignored, so it is
//!    stripped on receipt and eBGP-learned paths count as 100);
//! 3. locally originated over learned, and among those `network` and
//!    `redistribute` over `aggregate-address` (IOS step 4);
//! 4. shortest AS_PATH, an AS_SET counting as one (RFC 4271 9.1.2.2 a);
//! 5. lowest ORIGIN: IGP < EGP < INCOMPLETE (9.1.2.2 b);
//! 6. lowest MULTI_EXIT_DISC, compared only between paths from the same
//!    neighbouring AS (the first AS of the AS_PATH; paths with an empty
//!    AS_PATH come from our own AS and are compared with each other); a
//!    missing MED is 0 (9.1.2.2 c, IOS default without `bgp bestpath med
//!    missing-as-worst`). It is applied as RFC 4271 writes it, eliminating
//!    every path that another path from the same AS beats, so the result
//!    does not depend on the order the paths arrived in (what IOS calls
//!    `bgp deterministic-med`);
//! 7. eBGP-learned over iBGP-learned (9.1.2.2 d);
//! 8. (lowest IGP metric to the NEXT_HOP, 9.1.2.2 e: not applied, this
//!    speaker has no IGP; the overlay's next hops are all one hop away);
//! 9. lowest BGP identifier of the peer, the ORIGINATOR_ID standing in for
//!    it when present (9.1.2.2 f, RFC 4456 section 9); ours for local paths;
//! 10. shortest CLUSTER_LIST (RFC 4456 section 9);
//! 11. lowest neighbor address (9.1.2.2 g); 0.0.0.0 for local paths;
//! 12. if still tied (only local paths can be: a `network` and a
//!     `redistribute` of the same prefix), `network`, then `redistribute`.

use std::cmp::Reverse;
use std::net::Ipv4Addr;

use super::{Path, Source};
use crate::bgp::types::{AsSegment, PathAttributes};

/// The weight IOS gives the paths a router originates.
pub const LOCAL_WEIGHT: u32 = 32768;

/// IOS `bgp default local-preference`.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The step of the selection that picked the best path (see the module
/// docs for the order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// There was only one path.
    Only,
    Weight,
    LocalPref,
    LocallyOriginated,
    AsPathLength,
    Origin,
    Med,
    ExternalOverInternal,
    RouterId,
    ClusterListLength,
    NeighborAddress,
    /// Two local paths of the same prefix: `network` before `redistribute`
    /// before `aggregate-address`.
    SourceKind,
}

impl Step {
    /// The name `show bgp --json` gives the step (what serde writes, in
    /// kebab case).
    pub fn name(self) -> &'static str {
        match self {
            Self::Only => "only",
            Self::Weight => "weight",
            Self::LocalPref => "local-pref",
            Self::LocallyOriginated => "locally-originated",
            Self::AsPathLength => "as-path-length",
            Self::Origin => "origin",
            Self::Med => "med",
            Self::ExternalOverInternal => "external-over-internal",
            Self::RouterId => "router-id",
            Self::ClusterListLength => "cluster-list-length",
            Self::NeighborAddress => "neighbor-address",
            Self::SourceKind => "source-kind",
        }
    }
}

/// The AS_PATH length for best-path selection: an AS_SET counts as one
/// (RFC 4271 9.1.2.2 a).
pub fn as_path_length(path: &[AsSegment]) -> usize {
    path.iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
        })
        .sum()
}

/// The neighbouring AS a path came from for the MED comparison: the first
/// AS of a leading AS_SEQUENCE; `None` (our own AS) for an empty AS_PATH or
/// one that starts with an AS_SET.
fn neighbor_as(a: &PathAttributes) -> Option<u32> {
    match a.as_path.first() {
        Some(AsSegment::Sequence(v)) => v.first().copied(),
        _ => None,
    }
}

impl Path {
    /// IOS weight: 32768 for locally originated paths, 0 for learned ones.
    pub fn weight(&self) -> u32 {
        if self.peer.is_some() { 0 } else { LOCAL_WEIGHT }
    }

    /// LOCAL_PREF with the default filled in.
    pub fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }

    /// Step 3: 2 for `network`/`redistribute`, 1 for an aggregate, 0 for
    /// learned paths.
    fn locality(&self) -> u8 {
        match self.source {
            Source::Network | Source::Redistributed => 2,
            Source::Aggregate => 1,
            Source::Peer(_) => 0,
        }
    }

    fn is_ebgp(&self) -> bool {
        self.peer.is_some_and(|p| !p.ibgp)
    }

    /// Step 9: the ORIGINATOR_ID if present, else the peer's BGP identifier;
    /// our router id for local paths.
    fn tie_router_id(&self, local_router_id: Ipv4Addr) -> Ipv4Addr {
        match self.peer {
            Some(p) => self.attrs.originator_id.unwrap_or(p.router_id),
            None => local_router_id,
        }
    }

    fn neighbor_address(&self) -> Ipv4Addr {
        self.peer.map_or(Ipv4Addr::UNSPECIFIED, |p| p.address)
    }

    fn source_rank(&self) -> u8 {
        match self.source {
            Source::Network => 0,
            Source::Redistributed => 1,
            Source::Aggregate => 2,
            Source::Peer(_) => 3,
        }
    }
}

/// The steps in the order they apply.
const ORDER: [Step; 11] = [
    Step::Weight,
    Step::LocalPref,
    Step::LocallyOriginated,
    Step::AsPathLength,
    Step::Origin,
    Step::Med,
    Step::ExternalOverInternal,
    Step::RouterId,
    Step::ClusterListLength,
    Step::NeighborAddress,
    Step::SourceKind,
];

/// Keeps the candidates whose `key` is the smallest.
fn keep_min<K: Ord>(cands: &mut Vec<usize>, paths: &[Path], key: impl Fn(&Path) -> K) {
    if let Some(min) = cands.iter().map(|&i| key(&paths[i])).min() {
        cands.retain(|&i| key(&paths[i]) == min);
    }
}

/// Picks the best of `paths` (all of them are valid: the inbound checks ran
/// when they were stored). Returns its index and the deciding step; `None`
/// for no paths. `compared` counts the candidate evaluations (the RIB's
/// work counters).
pub fn select(
    paths: &[Path],
    local_router_id: Ipv4Addr,
    compared: &mut u64,
) -> Option<(usize, Step)> {
    *compared += paths.len() as u64;
    match paths.len() {
        0 => return None,
        1 => return Some((0, Step::Only)),
        _ => {}
    }
    let mut c: Vec<usize> = (0..paths.len()).collect();
    for step in ORDER {
        match step {
            Step::Weight => keep_min(&mut c, paths, |p| Reverse(p.weight())),
            Step::LocalPref => keep_min(&mut c, paths, |p| Reverse(p.local_pref())),
            Step::LocallyOriginated => keep_min(&mut c, paths, |p| Reverse(p.locality())),
            Step::AsPathLength => keep_min(&mut c, paths, |p| as_path_length(&p.attrs.as_path)),
            Step::Origin => keep_min(&mut c, paths, |p| p.attrs.origin),
            Step::Med => {
                // Out: every path another path from the same neighbouring
                // AS beats (RFC 4271 9.1.2.2 c).
                let med = |i: usize| paths[i].attrs.med.unwrap_or(0);
                let all = c.clone();
                c.retain(|&i| {
                    let asn = neighbor_as(&paths[i].attrs);
                    !all.iter()
                        .any(|&j| neighbor_as(&paths[j].attrs) == asn && med(j) < med(i))
                });
            }
            Step::ExternalOverInternal => keep_min(&mut c, paths, |p| Reverse(p.is_ebgp())),
            Step::RouterId => keep_min(&mut c, paths, |p| p.tie_router_id(local_router_id)),
            Step::ClusterListLength => keep_min(&mut c, paths, |p| p.attrs.cluster_list.len()),
            Step::NeighborAddress => keep_min(&mut c, paths, Path::neighbor_address),
            Step::SourceKind | Step::Only => keep_min(&mut c, paths, Path::source_rank),
        }
        if c.len() == 1 {
            return Some((c[0], step));
        }
    }
    // Only two paths from the same source could tie on everything, and a
    // destination holds at most one path per source.
    c.first().map(|&i| (i, Step::SourceKind))
}
