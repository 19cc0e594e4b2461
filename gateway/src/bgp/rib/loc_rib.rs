//! The Loc-RIB (RFC 4271 section 3.2): per prefix the paths of every
//! source and the chosen one (phase 2 of the decision process, section
//! 9.1.2, in `best`), the table version, and the prefixes whose best path
//! changed since the RIB last reported.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::aggregate::{AggChange, AggState, covers};
use super::best::{self, Step};
use super::policy::Local;
use super::{Path, Source, WorkStats};
use crate::net::Ipv4Prefix;

/// One prefix of the Loc-RIB.
#[derive(Debug)]
pub(super) struct Dest {
    /// At most one per source.
    pub(super) paths: Vec<Path>,
    /// The chosen path as of the last decision, and why.
    pub(super) best: Option<(Path, Step)>,
    /// Inside a `summary-only` aggregate (static: depends on config only).
    pub(super) suppressed: bool,
}

#[derive(Debug)]
pub(super) struct LocRib {
    pub(super) local: Local,
    pub(super) table: BTreeMap<Ipv4Prefix, Dest>,
    pub(super) aggregates: Vec<AggState>,
    /// IOS "BGP table version": bumped on every best-path change.
    pub(super) version: u64,
    /// Prefixes whose best path changed since the last `take_changes`.
    pub(super) changed: BTreeSet<Ipv4Prefix>,
    pub(super) stats: WorkStats,
}

impl LocRib {
    /// Adds or replaces the path of `path.source` for `prefix`.
    pub(super) fn set_path(&mut self, prefix: Ipv4Prefix, path: Path) {
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
    pub(super) fn remove_path(&mut self, prefix: Ipv4Prefix, source: Source) -> bool {
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
    pub(super) fn settle(&mut self, dirty: impl IntoIterator<Item = Ipv4Prefix>) {
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
            let (agg_prefix, attrs) = (agg.prefix, Arc::clone(&agg.attrs));
            match agg.count(has) {
                Some(AggChange::Gained) => self.set_path(
                    agg_prefix,
                    Path {
                        source: Source::Aggregate,
                        attrs,
                        peer: None,
                    },
                ),
                Some(AggChange::Lost) => {
                    self.remove_path(agg_prefix, Source::Aggregate);
                }
                None => continue,
            }
            by_len[usize::from(agg_prefix.len)].insert(agg_prefix);
        }
    }
}
