//! One pool's leases in memory, without I/O: who holds which address, which
//! addresses were never bound, which idle leases to reclaim first.
//!
//! Every operation is O(log n) in the number of leases (plus the identity
//! hash), so thousands of spokes on a /16 never cost a scan of the range:
//!
//! - `free`: the unbound addresses as disjoint ranges. A fresh /16 is one
//!   range; the lowest unbound address is the first key. It plays the part of
//!   a next-never-leased cursor (its last range runs to the end of the pool)
//!   and of a free set (the holes below it, e.g. leases dropped on open).
//! - `leases`: address -> lease; `by_identity`: identity -> address.
//! - `idle`: (released at, address) of the idle leases, oldest first, for
//!   reclaiming when every address is bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// A binding of one address to one identity. `sessions == 0`: idle (kept for
/// the identity, reclaimable when the pool runs out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub identity: String,
    /// Active: when it became active. Idle: when it was released.
    pub since: u64,
    /// Sessions holding the address: a spoke that reconnects before its old
    /// session died holds it twice, and the old session's release must not
    /// make it idle under the new one. Not persisted (no session survives a
    /// restart).
    pub sessions: u32,
}

impl Lease {
    pub fn is_active(&self) -> bool {
        self.sessions > 0
    }
}

/// How `acquire` found the address, and what to put back if the change
/// cannot be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// The identity's lease was already active (a reconnect before the old
    /// session died): one more session on it; nothing to record.
    Reconnect,
    /// The identity's idle lease, active again.
    Returning { previous: Lease },
    /// The lowest unbound address.
    Fresh,
    /// Every address was bound: the idle lease released longest ago, taken
    /// from its identity.
    Reclaimed { previous: Lease },
}

/// What `release` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// The lease is idle now: a change to record.
    Idle,
    /// Another session still holds the address; it stays active.
    StillHeld,
    /// The lease was idle already.
    AlreadyIdle,
    /// No lease has this address.
    NotLeased,
}

/// Why a lease from the file cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LoadProblem {
    OutOfRange,
    DuplicateAddress { identity: String },
    DuplicateIdentity { address: Ipv4Addr },
}

/// One pool's state.
#[derive(Clone, Debug)]
pub(crate) struct PoolLeases {
    first: u32,
    last: u32,
    free: FreeRanges,
    leases: BTreeMap<u32, Lease>,
    by_identity: HashMap<String, u32>,
    idle: BTreeSet<(u64, u32)>,
    active: u64,
}

impl PoolLeases {
    /// An empty pool `first..=last` (`first <= last`).
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        let (first, last) = (u32::from(first), u32::from(last));
        debug_assert!(first <= last);
        Self {
            first,
            last,
            free: FreeRanges::full(first, last),
            leases: BTreeMap::new(),
            by_identity: HashMap::new(),
            idle: BTreeSet::new(),
            active: 0,
        }
    }

    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(address))
    }

    /// Addresses in the pool.
    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Active leases.
    pub fn in_use(&self) -> u64 {
        self.active
    }

    /// Idle leases (bound to an identity, no session).
    pub fn idle(&self) -> u64 {
        self.idle.len() as u64
    }

    /// Unbound addresses (never leased, or their lease was dropped).
    pub fn free(&self) -> u64 {
        self.free.count
    }

    /// The leases in address order.
    pub fn leases(&self) -> impl Iterator<Item = (Ipv4Addr, &Lease)> {
        self.leases.iter().map(|(&a, l)| (Ipv4Addr::from(a), l))
    }

    /// The address bound to `identity`, active or idle.
    #[cfg(test)]
    pub fn address_of(&self, identity: &str) -> Option<Ipv4Addr> {
        self.by_identity.get(identity).map(|&a| Ipv4Addr::from(a))
    }

    /// Adds a lease read from the lease file.
    pub fn load(&mut self, address: Ipv4Addr, lease: Lease) -> Result<(), LoadProblem> {
        if !self.contains(address) {
            return Err(LoadProblem::OutOfRange);
        }
        let addr = u32::from(address);
        if let Some(other) = self.leases.get(&addr) {
            return Err(LoadProblem::DuplicateAddress {
                identity: other.identity.clone(),
            });
        }
        if let Some(&other) = self.by_identity.get(&lease.identity) {
            return Err(LoadProblem::DuplicateIdentity {
                address: Ipv4Addr::from(other),
            });
        }
        self.set(addr, Some(lease));
        Ok(())
    }

    /// Puts a lease from the journal on `address`, over what was there (a
    /// journal line is the whole new state of its address).
    pub fn replay(&mut self, address: Ipv4Addr, lease: Lease) -> Result<(), LoadProblem> {
        if !self.contains(address) {
            return Err(LoadProblem::OutOfRange);
        }
        let addr = u32::from(address);
        if let Some(&other) = self.by_identity.get(&lease.identity)
            && other != addr
        {
            return Err(LoadProblem::DuplicateIdentity {
                address: Ipv4Addr::from(other),
            });
        }
        self.set(addr, Some(lease));
        Ok(())
    }

    /// The lease on `address`, if any.
    pub fn lease(&self, address: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&u32::from(address))
    }

    /// Leases, active or idle.
    pub fn bound(&self) -> u64 {
        self.leases.len() as u64
    }

    /// An address for `identity`: its own (active or idle), else the lowest
    /// unbound one, else the idle lease released longest ago. `None`: every
    /// address is active.
    pub fn acquire(&mut self, identity: &str, now: u64) -> Option<(Ipv4Addr, Grant)> {
        if let Some(&addr) = self.by_identity.get(identity) {
            let lease = self.leases.get_mut(&addr).expect("identity index in step");
            if lease.is_active() {
                lease.sessions = lease.sessions.saturating_add(1);
                return Some((Ipv4Addr::from(addr), Grant::Reconnect));
            }
            let previous = lease.clone();
            self.set(addr, Some(active(identity, now)));
            return Some((Ipv4Addr::from(addr), Grant::Returning { previous }));
        }
        if let Some(addr) = self.free.lowest() {
            self.set(addr, Some(active(identity, now)));
            return Some((Ipv4Addr::from(addr), Grant::Fresh));
        }
        let &(_, addr) = self.idle.first()?;
        let previous = self.set(addr, Some(active(identity, now)))?;
        Some((Ipv4Addr::from(addr), Grant::Reclaimed { previous }))
    }

    /// Undoes the `acquire` that returned `(address, grant)`.
    pub fn revert(&mut self, address: Ipv4Addr, grant: &Grant) {
        let addr = u32::from(address);
        match grant {
            Grant::Reconnect => {
                if let Some(lease) = self.leases.get_mut(&addr) {
                    lease.sessions = lease.sessions.saturating_sub(1);
                }
            }
            Grant::Returning { previous } | Grant::Reclaimed { previous } => {
                self.set(addr, Some(previous.clone()));
            }
            Grant::Fresh => {
                self.set(addr, None);
            }
        }
    }

    /// One session on `address` ended.
    pub fn release(&mut self, address: Ipv4Addr, now: u64) -> Released {
        let addr = u32::from(address);
        let Some(lease) = self.leases.get_mut(&addr) else {
            return Released::NotLeased;
        };
        match lease.sessions {
            0 => Released::AlreadyIdle,
            1 => {
                let idle = Lease {
                    identity: lease.identity.clone(),
                    since: now,
                    sessions: 0,
                };
                self.set(addr, Some(idle));
                Released::Idle
            }
            _ => {
                lease.sessions -= 1;
                Released::StillHeld
            }
        }
    }

    /// Makes every active lease idle as of `at` (a restart: no session
    /// survives it). Returns how many were active.
    pub fn idle_all(&mut self, at: u64) -> u64 {
        let active: Vec<u32> = self
            .leases
            .iter()
            .filter(|(_, l)| l.is_active())
            .map(|(&a, _)| a)
            .collect();
        for &addr in &active {
            let lease = &self.leases[&addr];
            let idle = Lease {
                identity: lease.identity.clone(),
                since: lease.since.max(at),
                sessions: 0,
            };
            self.set(addr, Some(idle));
        }
        active.len() as u64
    }

    /// Puts `new` in the slot of `addr` (inside the pool), keeping every index
    /// in step, and returns what was there. `new`'s identity must not be bound
    /// to another address.
    fn set(&mut self, addr: u32, new: Option<Lease>) -> Option<Lease> {
        let old = self.leases.remove(&addr);
        if let Some(o) = &old {
            self.by_identity.remove(&o.identity);
            if o.is_active() {
                self.active -= 1;
            } else {
                self.idle.remove(&(o.since, addr));
            }
        } else {
            let taken = self.free.take(addr);
            debug_assert!(taken, "an address without a lease is free");
        }
        match new {
            Some(n) => {
                let clash = self.by_identity.insert(n.identity.clone(), addr);
                debug_assert!(clash.is_none(), "one address per identity");
                if n.is_active() {
                    self.active += 1;
                } else {
                    self.idle.insert((n.since, addr));
                }
                self.leases.insert(addr, n);
            }
            None => self.free.give(addr),
        }
        old
    }
}

fn active(identity: &str, now: u64) -> Lease {
    Lease {
        identity: identity.to_owned(),
        since: now,
        sessions: 1,
    }
}

/// A set of `u32` as disjoint, non-adjacent inclusive ranges (start -> end).
#[derive(Clone, Debug)]
struct FreeRanges {
    ranges: BTreeMap<u32, u32>,
    count: u64,
}

impl FreeRanges {
    fn full(first: u32, last: u32) -> Self {
        Self {
            ranges: BTreeMap::from([(first, last)]),
            count: u64::from(last - first) + 1,
        }
    }

    fn lowest(&self) -> Option<u32> {
        self.ranges.first_key_value().map(|(&start, _)| start)
    }

    /// Removes `a`; false if it was not in the set.
    fn take(&mut self, a: u32) -> bool {
        let Some((&start, &end)) = self.ranges.range(..=a).next_back() else {
            return false;
        };
        if a > end {
            return false;
        }
        self.ranges.remove(&start);
        if start < a {
            self.ranges.insert(start, a - 1);
        }
        if a < end {
            self.ranges.insert(a + 1, end);
        }
        self.count -= 1;
        true
    }

    /// Adds `a`, which is not in the set, merging with its neighbours.
    fn give(&mut self, a: u32) {
        let mut start = a;
        let mut end = a;
        if let Some((&s, &e)) = self.ranges.range(..a).next_back() {
            debug_assert!(e < a, "{a} already free");
            if a.checked_sub(1) == Some(e) {
                self.ranges.remove(&s);
                start = s;
            }
        }
        if let Some(next) = a.checked_add(1)
            && let Some(e) = self.ranges.remove(&next)
        {
            end = e;
        }
        self.ranges.insert(start, end);
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ranges(f: &FreeRanges) -> Vec<(u32, u32)> {
        f.ranges.iter().map(|(&s, &e)| (s, e)).collect()
    }

    #[test]
    fn free_ranges_split_and_merge() {
        let mut f = FreeRanges::full(10, 20);
        assert_eq!(f.count, 11);
        assert!(f.take(10));
        assert!(f.take(15));
        assert!(f.take(20));
        assert!(!f.take(15));
        assert!(!f.take(9));
        assert!(!f.take(21));
        assert_eq!(ranges(&f), [(11, 14), (16, 19)]);
        assert_eq!(f.count, 8);
        f.give(15);
        assert_eq!(ranges(&f), [(11, 19)]);
        f.give(10);
        f.give(20);
        assert_eq!(ranges(&f), [(10, 20)]);
        assert_eq!(f.count, 11);
        assert_eq!(f.lowest(), Some(10));
    }

    #[test]
    fn free_ranges_at_the_ends_of_the_address_space() {
        let mut f = FreeRanges::full(u32::MAX - 1, u32::MAX);
        assert!(f.take(u32::MAX));
        f.give(u32::MAX);
        assert_eq!(ranges(&f), [(u32::MAX - 1, u32::MAX)]);
        let mut f = FreeRanges::full(0, 1);
        assert!(f.take(0));
        f.give(0);
        assert_eq!(ranges(&f), [(0, 1)]);
    }

    #[test]
    fn reconnect_then_old_session_release_keeps_it_active() {
        let mut p = PoolLeases::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 1));
        let (a, g) = p.acquire("s1", 1).unwrap();
        assert_eq!(g, Grant::Fresh);
        assert_eq!(p.acquire("s1", 2).unwrap(), (a, Grant::Reconnect));
        assert_eq!(p.release(a, 3), Released::StillHeld);
        // Still active: another identity cannot take it.
        assert!(p.acquire("s2", 4).is_none());
        assert_eq!(p.release(a, 5), Released::Idle);
        assert_eq!(p.release(a, 6), Released::AlreadyIdle);
        assert_eq!(
            p.release(Ipv4Addr::new(10, 0, 0, 2), 6),
            Released::NotLeased
        );
    }

    #[test]
    fn revert_restores_every_index() {
        let mut p = PoolLeases::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (a1, _) = p.acquire("s1", 1).unwrap();
        let (a2, _) = p.acquire("s2", 1).unwrap();
        p.release(a1, 2);
        p.release(a2, 3);

        // Reclaim s1's address for s3, then undo: s1 is back, idle.
        let (a, g) = p.acquire("s3", 4).unwrap();
        assert_eq!(a, a1);
        assert!(matches!(g, Grant::Reclaimed { .. }));
        p.revert(a, &g);
        assert_eq!(p.address_of("s1"), Some(a1));
        assert_eq!(p.address_of("s3"), None);
        assert_eq!((p.in_use(), p.idle(), p.free()), (0, 2, 0));

        // Returning, undone: idle again with its old release time.
        let (a, g) = p.acquire("s2", 5).unwrap();
        p.revert(a, &g);
        assert_eq!(p.leases().nth(1).unwrap().1.since, 3);
        assert_eq!((p.in_use(), p.idle(), p.free()), (0, 2, 0));

        // Fresh, undone: the address is free again.
        let mut p = PoolLeases::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 9));
        let (a, g) = p.acquire("s1", 1).unwrap();
        p.revert(a, &g);
        assert_eq!((p.in_use(), p.idle(), p.free()), (0, 0, 9));
        assert_eq!(p.acquire("s2", 1).unwrap().0, a);
    }
}
