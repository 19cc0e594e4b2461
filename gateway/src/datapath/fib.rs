//! Longest-prefix match for the userspace datapath: one hash table per
//! prefix length that is in use, searched from the longest. A hub has few
//! distinct lengths (the /32s of the spokes, their LAN /24s, a summary),
//! so a lookup is a handful of hash probes and allocates nothing.

use std::collections::HashMap;

use crate::net::Ipv4Prefix;

#[derive(Clone, Debug)]
pub struct Fib<V> {
    /// `(len, table)`, longest first; tables are keyed by the masked address.
    by_len: Vec<(u8, HashMap<u32, V>)>,
}

impl<V> Default for Fib<V> {
    fn default() -> Self {
        Fib { by_len: Vec::new() }
    }
}

fn masked(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len)))
    }
}

impl<V> Fib<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces; returns the value it replaced.
    pub fn insert(&mut self, prefix: Ipv4Prefix, value: V) -> Option<V> {
        let key = u32::from(prefix.addr);
        let i = match self.by_len.binary_search_by(|(l, _)| prefix.len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.by_len.insert(i, (prefix.len, HashMap::new()));
                i
            }
        };
        self.by_len[i].1.insert(key, value)
    }

    pub fn remove(&mut self, prefix: Ipv4Prefix) -> Option<V> {
        let i = self
            .by_len
            .binary_search_by(|(l, _)| prefix.len.cmp(l))
            .ok()?;
        let removed = self.by_len[i].1.remove(&u32::from(prefix.addr));
        if self.by_len[i].1.is_empty() {
            self.by_len.remove(i);
        }
        removed
    }

    pub fn get(&self, prefix: Ipv4Prefix) -> Option<&V> {
        let i = self
            .by_len
            .binary_search_by(|(l, _)| prefix.len.cmp(l))
            .ok()?;
        self.by_len[i].1.get(&u32::from(prefix.addr))
    }

    /// The most specific entry covering `addr`.
    pub fn lookup(&self, addr: std::net::Ipv4Addr) -> Option<(Ipv4Prefix, &V)> {
        let a = u32::from(addr);
        self.by_len.iter().find_map(|(len, table)| {
            let key = masked(a, *len);
            table.get(&key).map(|v| {
                (
                    Ipv4Prefix {
                        addr: key.into(),
                        len: *len,
                    },
                    v,
                )
            })
        })
    }

    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, t)| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Prefix, &V)> {
        self.by_len.iter().flat_map(|(len, t)| {
            t.iter().map(|(a, v)| {
                (
                    Ipv4Prefix {
                        addr: (*a).into(),
                        len: *len,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    fn at(fib: &Fib<&'static str>, a: &str) -> Option<&'static str> {
        fib.lookup(a.parse().unwrap()).map(|(_, v)| *v)
    }

    #[test]
    fn longest_prefix_wins() {
        let mut fib = Fib::new();
        fib.insert(p("0.0.0.0/0"), "default");
        fib.insert(p("192.168.0.0/16"), "summary");
        fib.insert(p("192.168.1.0/24"), "spoke1-lan");
        fib.insert(p("10.1.1.100/32"), "spoke1");
        assert_eq!(at(&fib, "192.168.1.7"), Some("spoke1-lan"));
        assert_eq!(at(&fib, "192.168.2.7"), Some("summary"));
        assert_eq!(at(&fib, "10.1.1.100"), Some("spoke1"));
        assert_eq!(at(&fib, "10.1.1.101"), Some("default"));
        assert_eq!(
            fib.lookup("192.168.1.1".parse().unwrap()).unwrap().0,
            p("192.168.1.0/24")
        );
        assert_eq!(fib.remove(p("192.168.1.0/24")), Some("spoke1-lan"));
        assert_eq!(at(&fib, "192.168.1.7"), Some("summary"));
        assert_eq!(fib.remove(p("192.168.1.0/24")), None);
        assert_eq!(fib.len(), 3);
    }

    #[test]
    fn empty_lengths_are_dropped_and_replacing_returns_old() {
        let mut fib = Fib::new();
        assert_eq!(fib.insert(p("10.0.0.0/8"), 1), None);
        assert_eq!(fib.insert(p("10.0.0.0/8"), 2), Some(1));
        assert_eq!(fib.get(p("10.0.0.0/8")), Some(&2));
        fib.remove(p("10.0.0.0/8"));
        assert!(fib.is_empty());
        assert_eq!(fib.lookup(Ipv4Addr::new(10, 0, 0, 1)), None);
    }

    /// Against a linear scan over random prefixes and addresses.
    #[test]
    fn matches_a_linear_scan() {
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut fib = Fib::new();
        let mut all = Vec::new();
        for i in 0..500u32 {
            let len = u8::try_from(next() % 33).unwrap();
            // Few distinct high bits so that prefixes nest.
            let addr = (u32::try_from(next() >> 32).unwrap() & 0x0f0f_ffff) | 0x0a00_0000;
            let prefix = Ipv4Prefix {
                addr: masked(addr, len).into(),
                len,
            };
            fib.insert(prefix, i);
            all.retain(|(q, _)| *q != prefix);
            all.push((prefix, i));
        }
        for _ in 0..5000 {
            let a =
                Ipv4Addr::from((u32::try_from(next() >> 32).unwrap() & 0x0f0f_ffff) | 0x0a00_0000);
            let want = all
                .iter()
                .filter(|(q, _)| q.contains(a))
                .max_by_key(|(q, _)| q.len)
                .map(|(q, v)| (*q, *v));
            assert_eq!(fib.lookup(a).map(|(q, v)| (q, *v)), want, "{a}");
        }
    }
}
