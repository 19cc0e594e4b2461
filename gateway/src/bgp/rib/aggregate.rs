//! `aggregate-address` (IOS semantics in the module docs of `rib`): an
//! aggregate holds a path of its own while at least one more specific
//! prefix has a path in the Loc-RIB; `summary-only` suppresses those.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::origin::local_attrs;
use super::policy::Local;
use crate::bgp::types::{Origin, PathAttributes};
use crate::{config, net::Ipv4Prefix};

/// One configured aggregate and how many more specifics back it.
#[derive(Debug)]
pub(super) struct AggState {
    pub(super) prefix: Ipv4Prefix,
    pub(super) summary_only: bool,
    /// More specific prefixes with a path in the Loc-RIB.
    pub(super) contributors: usize,
    pub(super) attrs: Arc<PathAttributes>,
}

/// What a change of contributors does to the aggregate's own path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AggChange {
    /// Its first contributor: the aggregate gets its path.
    Gained,
    /// Its last contributor went: the aggregate loses its path.
    Lost,
}

impl AggState {
    /// A more specific prefix gained (`has`) or lost its last path.
    pub(super) fn count(&mut self, has: bool) -> Option<AggChange> {
        let before = self.contributors;
        self.contributors = if has {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        match (before, has) {
            (0, true) => Some(AggChange::Gained),
            (1, false) => Some(AggChange::Lost),
            _ => None,
        }
    }
}

/// The configured aggregates, one per prefix (`summary-only` if any line
/// for the prefix says so), with ORIGIN IGP, ATOMIC_AGGREGATE and
/// AGGREGATOR (our AS, our router id): RFC 4271 section 9.2.2.2.
pub(super) fn aggregates(config: &[config::Aggregate], local: &Local) -> Vec<AggState> {
    let mut aggs: BTreeMap<Ipv4Prefix, bool> = BTreeMap::new();
    for a in config {
        *aggs.entry(a.prefix).or_default() |= a.summary_only;
    }
    aggs.into_iter()
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
        .collect()
}

/// Whether `outer` is strictly less specific than `inner` and covers it.
pub(super) fn covers(outer: Ipv4Prefix, inner: Ipv4Prefix) -> bool {
    outer.len < inner.len && outer.contains(inner.addr)
}
