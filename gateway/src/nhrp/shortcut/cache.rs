//! The cache: what the spoke learnt from Resolution Replies (the
//! shortcut to a prefix, and the next hop's own address), each routed
//! through a shortcut tunnel until its holding time runs out; refreshed
//! while traffic uses it, removed by a Purge Request.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use gateway_report::nhrp::NhrpEntryView;

use super::{Action, Shortcuts, mask};
use crate::{
    iface::{Route, VaId},
    net::Ipv4Prefix,
    nhrp::{
        FLAG_N, HOP_COUNT,
        wire::{Mandatory, Message, NhrpRepr},
    },
};

/// What an entry resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A destination prefix behind a peer (IOS flags `router rib nho`).
    Shortcut,
    /// A peer's own tunnel address (IOS flags `router nhop rib`).
    NextHop,
}

/// One cache entry, keyed by its prefix (`Shortcuts::entries`).
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) kind: Kind,
    pub(super) via: Ipv4Addr,
    pub(super) nbma: Ipv4Addr,
    pub(super) va: VaId,
    pub(super) created: Instant,
    pub(super) expires: Instant,
    pub(super) holdtime: Duration,
    /// The address asked for, to ask again when refreshing.
    pub(super) asked: Ipv4Addr,
    /// Traffic went through the entry's tunnel since the last refresh.
    pub(super) used: bool,
    pub(super) refresh_sent: Option<Instant>,
}

impl Shortcuts {
    pub(super) fn covered(&self, addr: Ipv4Addr) -> bool {
        self.entries
            .iter()
            .any(|(p, e)| e.kind == Kind::Shortcut && p.contains(addr))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn install(
        &mut self,
        out: &mut Vec<Action>,
        now: Instant,
        kind: Kind,
        prefix: Ipv4Prefix,
        asked: Ipv4Addr,
        via: Ipv4Addr,
        nbma: Ipv4Addr,
        va: VaId,
        holdtime: Duration,
    ) {
        // Never shadow what we own ourselves.
        if self.owns(prefix.addr).is_some() {
            return;
        }
        match self.entries.get_mut(&prefix) {
            Some(e) if e.va == va => {
                e.expires = now + holdtime;
                e.holdtime = holdtime;
                e.refresh_sent = None;
                if kind == Kind::Shortcut {
                    e.kind = kind;
                }
                return;
            }
            Some(e) => out.push(Action::RemoveRoute(Route {
                prefix,
                va: e.va,
                next_hop: None,
            })),
            None => {}
        }
        out.push(Action::AddRoute(Route {
            prefix,
            va,
            next_hop: None,
        }));
        if kind == Kind::Shortcut {
            self.traffic.shortcuts_installed += 1;
            tracing::info!(
                "%NHRP-5-SHORTCUT: {prefix} via {via} (NBMA {nbma}) on {va}, holdtime {}s",
                holdtime.as_secs()
            );
        }
        self.entries.insert(
            prefix,
            Entry {
                kind,
                via,
                nbma,
                va,
                created: now,
                expires: now + holdtime,
                holdtime,
                asked,
                used: false,
                refresh_sent: None,
            },
        );
    }

    /// A Purge Request (section 5.2.5): the entries it names go, and the
    /// sender hears back unless it said N.
    pub(super) fn purged(
        &mut self,
        va: VaId,
        repr: &NhrpRepr,
        m: &Mandatory,
        out: &mut Vec<Action>,
    ) {
        let mut names: Vec<Ipv4Prefix> = m
            .cies
            .iter()
            .filter_map(|c| {
                c.protocol.map(|a| Ipv4Prefix {
                    addr: mask(a, c.prefix_len.min(32)),
                    len: c.prefix_len.min(32),
                })
            })
            .collect();
        if names.is_empty()
            && let Some(a) = m.addresses.src_protocol
        {
            names.push(Ipv4Prefix { addr: a, len: 32 });
        }
        let doomed: Vec<Ipv4Prefix> = self
            .entries
            .iter()
            .filter(|(p, e)| {
                names
                    .iter()
                    .any(|n| n.contains(p.addr) || **p == *n || n.addr == e.via)
            })
            .map(|(p, _)| *p)
            .collect();
        for prefix in doomed {
            if let Some(e) = self.entries.remove(&prefix) {
                self.traffic.shortcuts_purged += u64::from(e.kind == Kind::Shortcut);
                tracing::info!(target = %prefix, via = %e.via, "NHRP: entry purged by {}", m.addresses.src_protocol.map_or_else(String::new, |a| a.to_string()));
                out.push(Action::RemoveRoute(Route {
                    prefix,
                    va: e.va,
                    next_hop: None,
                }));
            }
        }
        if m.flags & FLAG_N == 0 {
            let reply = NhrpRepr {
                hop_count: HOP_COUNT,
                message: Message::PurgeReply(m.clone()),
                extensions: repr.extensions.clone(),
            };
            Self::send(out, va, &reply);
        }
    }

    /// Entries on the tunnels in `active` carried traffic since the last
    /// tick.
    pub(super) fn mark_used(&mut self, active: &[VaId]) {
        for e in self.entries.values_mut() {
            if active.contains(&e.va) {
                e.used = true;
            }
        }
    }

    /// What to ask again, and over which tunnel: IOS refreshes a used
    /// entry before it expires, here a third of the holding time before
    /// the end, once per period.
    pub(super) fn refresh_due(&self, now: Instant) -> Vec<(Ipv4Addr, VaId)> {
        self.entries
            .values()
            .filter(|e| {
                e.kind == Kind::Shortcut
                    && e.used
                    && e.expires.saturating_duration_since(now) < e.holdtime / 3
                    && e.refresh_sent.is_none_or(|t| {
                        now.duration_since(t) >= (e.holdtime / 6).max(Duration::from_secs(1))
                    })
            })
            .map(|e| (e.asked, e.va))
            .collect()
    }

    /// A refresh went out over `va`: its entries wait for new traffic.
    pub(super) fn refresh_sent(&mut self, now: Instant, va: VaId) {
        for e in self.entries.values_mut().filter(|e| e.va == va) {
            e.refresh_sent = Some(now);
            e.used = false;
        }
    }

    /// Entries whose holding time ran out go, with their routes.
    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let expired: Vec<Ipv4Prefix> = self
            .entries
            .iter()
            .filter(|(_, e)| now >= e.expires)
            .map(|(p, _)| *p)
            .collect();
        for prefix in expired {
            if let Some(e) = self.entries.remove(&prefix) {
                if e.kind == Kind::Shortcut {
                    self.traffic.shortcuts_expired += 1;
                    tracing::info!(target = %prefix, via = %e.via, "NHRP: shortcut expired");
                }
                out.push(Action::RemoveRoute(Route {
                    prefix,
                    va: e.va,
                    next_hop: None,
                }));
            }
        }
    }

    /// Rows for `show ip nhrp`.
    pub fn entries(&self, now: Instant, name: &dyn Fn(VaId) -> String) -> Vec<NhrpEntryView> {
        self.entries
            .iter()
            .map(|(prefix, e)| NhrpEntryView {
                target: prefix.to_string(),
                via: e.via,
                nbma: e.nbma,
                interface: name(e.va),
                created_s: now.duration_since(e.created).as_secs(),
                expires_s: e.expires.saturating_duration_since(now).as_secs(),
                flags: match e.kind {
                    Kind::Shortcut => ["router", "rib", "nho", "dynamic"],
                    Kind::NextHop => ["router", "nhop", "rib", "dynamic"],
                }
                .map(String::from)
                .to_vec(),
            })
            .collect()
    }
}
