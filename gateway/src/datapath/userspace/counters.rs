//! The counters as the packet path keeps them: one relaxed atomic per
//! counter of a set declared in `gateway_report::interfaces`, indexed by
//! its id. Reports are filled by iterating the set, so every counter
//! counted here is reported (and shown).

use std::{
    marker::PhantomData,
    sync::atomic::{AtomicU64, Ordering},
};

use gateway_report::{
    counters::{Counter, Counters},
    interfaces::{GlobalCounter, SaCounter, VaCounter},
};

/// The slots of counter set `C` (`N` is `C::COUNT`). No locks, no
/// allocation: a counter is one `fetch_add` with relaxed ordering (each is
/// independent; readers want totals, not a consistent snapshot).
pub struct Slots<C: Counter, const N: usize> {
    slots: [AtomicU64; N],
    set: PhantomData<fn() -> C>,
}

/// Datapath-wide drops and events.
pub type GlobalStats = Slots<GlobalCounter, { GlobalCounter::COUNT }>;
/// One virtual-access.
pub type VaStats = Slots<VaCounter, { VaCounter::COUNT }>;
/// One SA pair.
pub type SaStats = Slots<SaCounter, { SaCounter::COUNT }>;

impl<C: Counter, const N: usize> Default for Slots<C, N> {
    fn default() -> Self {
        const { assert!(N == C::ALL.len(), "one slot per counter of the set") };
        Slots {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            set: PhantomData,
        }
    }
}

impl<C: Counter, const N: usize> Slots<C, N> {
    #[inline]
    pub fn bump(&self, counter: C, by: u64) {
        self.slots[counter.index()].fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self, counter: C) -> u64 {
        self.slots[counter.index()].load(Ordering::Relaxed)
    }

    /// Writes every counter of the set into `report`.
    pub fn fill<R: Counters<Id = C>>(&self, report: &mut R) {
        for &counter in C::ALL {
            report.set(counter, self.get(counter));
        }
    }
}

impl<C: Counter, const N: usize> std::fmt::Debug for Slots<C, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(C::ALL.iter().map(|&c| (c.name(), self.get(c))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use gateway_report::interfaces::GlobalCounters;

    use super::*;

    #[test]
    fn every_slot_reaches_its_report_field() {
        let stats = GlobalStats::default();
        for (by, &c) in (1..).zip(GlobalCounter::ALL) {
            stats.bump(c, by);
            stats.bump(c, by);
        }
        let mut report = GlobalCounters::default();
        stats.fill(&mut report);
        for (by, &c) in (1..).zip(GlobalCounter::ALL) {
            assert_eq!(report.get(c), 2 * by, "{c:?}");
        }
        assert_eq!(report.ttl_expired, 2 * GlobalCounter::COUNT as u64);
    }
}
