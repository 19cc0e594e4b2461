//! The routes this router originates besides aggregates: `network`
//! (while the routing table has the prefix) and `redistribute` (IOS
//! semantics in the module docs of `rib`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Path, Rib, Source};
use crate::bgp::types::{Origin, PathAttributes};
use crate::net::Ipv4Prefix;

/// The attributes of locally originated paths (IOS `show bgp`: next hop
/// 0.0.0.0, weight 32768).
pub(super) fn local_attrs(origin: Origin, med: Option<u32>) -> PathAttributes {
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

impl Rib {
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
}
