//! The shortcut tunnels: which exist (from the IKE sessions), which one to
//! keep when both spokes dialled, when one is usable, the dials we asked
//! for, the replies owed until a tunnel to the requester is up, and
//! closing tunnels left without entries.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use super::{
    ACCEPTED_SETTLE, Action, DIAL_TIMEOUT, IDLE_TUNNEL_GRACE, Shortcuts,
    cache::{Entry, Kind},
};
use crate::{
    iface::{PeerTunnel, Route, VaId},
    net::Ipv4Prefix,
};

/// A Resolution Reply we owe a requester, until a tunnel to it is up.
#[derive(Clone, Debug)]
pub(super) struct Owed {
    pub(super) nbma: Ipv4Addr,
    pub(super) reply: Vec<u8>,
    pub(super) requester: Ipv4Addr,
    pub(super) holdtime: Duration,
    pub(super) since: Instant,
}

impl Shortcuts {
    /// The shortcut tunnels that exist now (from the IKE sessions). Entries
    /// through a tunnel that went away are dropped; of two tunnels to the
    /// same peer (both spokes dialled at once) the one dialled by the lower
    /// NBMA address is kept, the other closed by its initiator.
    pub fn tunnels_now(&mut self, now: Instant, tunnels: &[PeerTunnel]) -> Vec<Action> {
        let mut out = Vec::new();
        let mut kept: Vec<(PeerTunnel, Instant)> = Vec::new();
        for t in tunnels {
            let first_seen = self
                .tunnels
                .iter()
                .find(|(old, _)| old == t)
                .map_or(now, |(_, at)| *at);
            kept.push((*t, first_seen));
        }
        self.tunnels = kept;
        self.heard.retain(|va| tunnels.iter().any(|t| t.va == *va));
        for t in tunnels {
            // Our own dial is done once its tunnel shows; the peer's tunnel
            // makes a deferred dial needless.
            if t.initiated {
                self.dialling.remove(&t.nbma);
            }
            self.deferred.remove(&t.nbma);
        }
        // Entries whose tunnel is gone (the peer closed it): the datapath
        // removed their routes with the interface.
        let gone: Vec<Ipv4Prefix> = self
            .entries
            .iter()
            .filter(|(_, e)| !tunnels.iter().any(|t| t.va == e.va && t.nbma == e.nbma))
            .map(|(p, _)| *p)
            .collect();
        for prefix in gone {
            if let Some(e) = self.entries.remove(&prefix) {
                // Another tunnel to the same peer may carry it on.
                if let Some(t) = self.preferred(e.nbma) {
                    self.entries.insert(prefix, Entry { va: t.va, ..e });
                    out.push(Action::AddRoute(Route {
                        prefix,
                        va: t.va,
                        next_hop: None,
                    }));
                } else {
                    tracing::info!(target = %prefix, via = %e.via, "NHRP: entry removed, its tunnel went down");
                }
            }
        }
        // Duplicates: move entries to the preferred tunnel; close ours if
        // it is not the one kept.
        for t in tunnels {
            let Some(best) = self.preferred(t.nbma) else {
                continue;
            };
            if best.va == t.va {
                continue;
            }
            let moved: Vec<Ipv4Prefix> = self
                .entries
                .iter()
                .filter(|(_, e)| e.va == t.va)
                .map(|(p, _)| *p)
                .collect();
            for prefix in moved {
                if let Some(e) = self.entries.get_mut(&prefix) {
                    out.push(Action::RemoveRoute(Route {
                        prefix,
                        va: e.va,
                        next_hop: None,
                    }));
                    e.va = best.va;
                    out.push(Action::AddRoute(Route {
                        prefix,
                        va: best.va,
                        next_hop: None,
                    }));
                }
            }
            // Closed a little later: NHRP packets already sent over it
            // (the reply it was dialled for) still arrive.
            let old_enough = self
                .tunnels
                .iter()
                .any(|(x, seen)| x == t && now.duration_since(*seen) >= IDLE_TUNNEL_GRACE);
            if t.initiated && old_enough && !self.closing.contains(&t.va) {
                self.closing.push(t.va);
                out.push(Action::Close { va: t.va });
            }
        }
        self.closing
            .retain(|va| tunnels.iter().any(|t| t.va == *va));
        self.flush_owed(now, &mut out);
        out
    }

    /// The tunnel to keep to `nbma`: the one dialled by the lower address.
    pub(super) fn preferred(&self, nbma: Ipv4Addr) -> Option<PeerTunnel> {
        let ours_wins = self.settings.nbma < nbma;
        let to_peer = || {
            self.tunnels
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| t.nbma == nbma)
        };
        to_peer()
            .find(|t| t.initiated == ours_wins)
            .or_else(|| to_peer().next())
    }

    /// A tunnel we dialled came up.
    pub fn dial_up(&mut self) {
        self.traffic.tunnels_opened += 1;
    }

    /// A dial we asked for failed: the replies owed over it are dropped.
    pub fn dial_failed(&mut self, nbma: Ipv4Addr, reason: &str) {
        self.dialling.remove(&nbma);
        let before = self.owed.len();
        self.owed.retain(|o| o.nbma != nbma);
        tracing::warn!(
            peer = %nbma, dropped = before - self.owed.len(),
            "NHRP: no shortcut tunnel to the requester: {reason}"
        );
    }

    /// The tunnel to send to `nbma` over now, if any: one we dialled (the
    /// peer installed its SAs before answering our IKE_AUTH), or one the
    /// peer dialled once it has spoken over it or had time to settle, and
    /// not while our own dial to it is still under way.
    pub(super) fn usable(&self, now: Instant, nbma: Ipv4Addr) -> Option<PeerTunnel> {
        let ours = self
            .tunnels
            .iter()
            .find(|(t, _)| t.nbma == nbma && t.initiated)
            .map(|(t, _)| *t);
        if ours.is_some() {
            return ours;
        }
        if self.dialling.contains_key(&nbma) {
            return None;
        }
        self.tunnels
            .iter()
            .find(|(t, seen)| {
                t.nbma == nbma
                    && (self.heard.contains(&t.va) || now.duration_since(*seen) >= ACCEPTED_SETTLE)
            })
            .map(|(t, _)| *t)
    }

    pub(super) fn flush_owed(&mut self, now: Instant, out: &mut Vec<Action>) {
        let owed = std::mem::take(&mut self.owed);
        for o in owed {
            match self.usable(now, o.nbma) {
                Some(t) => {
                    out.push(Action::Send {
                        va: t.va,
                        packet: o.reply,
                    });
                    self.traffic.resolution_replies_sent += 1;
                    self.install(
                        out,
                        now,
                        Kind::NextHop,
                        Ipv4Prefix {
                            addr: o.requester,
                            len: 32,
                        },
                        o.requester,
                        o.requester,
                        o.nbma,
                        t.va,
                        o.holdtime,
                    );
                }
                None if now.duration_since(o.since) < DIAL_TIMEOUT => self.owed.push(o),
                None => {}
            }
        }
    }

    pub(super) fn tunnel_on(&self, va: VaId) -> Option<PeerTunnel> {
        self.tunnels.iter().map(|(t, _)| *t).find(|t| t.va == va)
    }

    pub(super) fn dial(&mut self, now: Instant, nbma: Ipv4Addr, out: &mut Vec<Action>) {
        tracing::info!(peer = %nbma, "NHRP: opening a shortcut tunnel to {nbma}");
        self.dialling.insert(nbma, now);
        out.push(Action::Dial { nbma });
    }

    /// Dials that neither came up nor failed in time are forgotten; dials
    /// put off for the peer's own (see `answer`) go out now if we still owe
    /// it a reply and no tunnel came.
    pub(super) fn dial_deferred(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.dialling
            .retain(|_, at| now.duration_since(*at) < DIAL_TIMEOUT);
        let due: Vec<Ipv4Addr> = self
            .deferred
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(n, _)| *n)
            .collect();
        for nbma in due {
            self.deferred.remove(&nbma);
            if self.owed.iter().any(|o| o.nbma == nbma) && self.preferred(nbma).is_none() {
                self.dial(now, nbma, out);
            }
        }
    }

    /// Tunnels with no entries and nothing owed over them close, once past
    /// their grace time.
    pub(super) fn close_idle(&mut self, now: Instant, out: &mut Vec<Action>) {
        let idle: Vec<VaId> = self
            .tunnels
            .iter()
            .filter(|(t, seen)| {
                now.duration_since(*seen) >= IDLE_TUNNEL_GRACE
                    && !self.entries.values().any(|e| e.va == t.va)
                    && !self.owed.iter().any(|o| o.nbma == t.nbma)
            })
            .map(|(t, _)| t.va)
            .collect();
        for va in idle {
            if self.closing.contains(&va) {
                continue;
            }
            tracing::info!(interface = %va, "NHRP: no entries left on the shortcut tunnel: closing it");
            self.closing.push(va);
            out.push(Action::Close { va });
        }
    }
}
