//! A spoke's side of NHRP in FlexVPN (IOS `ip nhrp shortcut
//! virtual-template N`):
//!
//! - a Traffic Indication from the hub makes the spoke send a Resolution
//!   Request for the packet's destination through the hub;
//! - the spoke that owns the destination (one of its own prefixes) opens
//!   an IKEv2 session to the requester's NBMA address and answers over the
//!   new tunnel, with its prefix and holding time;
//! - the requester routes the prefix through that tunnel (more specific
//!   than the hub's summary, so traffic moves to it), refreshes the entry
//!   while traffic flows, and lets it expire when it stops; a tunnel left
//!   without entries is closed;
//! - a Purge Request removes entries; `clear ip nhrp` purges and closes
//!   every shortcut tunnel.
//!
//! No I/O: events in, [`Action`]s out; `super::task` carries them out.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use gateway_report::nhrp::{NhrpCleared, NhrpEntryView, NhrpTraffic};

use super::{
    CIE_NO_BINDING, FLAG_A, FLAG_N, FLAG_Q, HOP_COUNT, Station,
    wire::{Addresses, Cie, Extension, ExtensionBody, Mandatory, Message, NhrpRepr},
};
use crate::iface::PeerTunnel;
use crate::{
    iface::{Route, VaId},
    net::Ipv4Prefix,
};

/// The same destination is not asked for again within this time.
const RESOLVE_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// A dial that neither came up nor failed by then is forgotten.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// A tunnel with no entries is closed only after it existed this long:
/// the reply it was opened for arrives just after it comes up.
const IDLE_TUNNEL_GRACE: Duration = Duration::from_secs(5);
/// How long the spoke with the higher NBMA address, itself resolving,
/// waits for the peer's tunnel before dialling (see `answer`).
const DEFER_DIAL: Duration = Duration::from_secs(2);
/// A tunnel the peer dialled carries our packets once we heard from it
/// over the tunnel, or after this long: the peer installs its SAs only
/// when our IKE_AUTH response reaches it.
const ACCEPTED_SETTLE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct SpokeSettings {
    /// Our outer address and, once the hub gave it, our tunnel address.
    pub nbma: Ipv4Addr,
    /// The prefixes this spoke answers for (its LANs: `bgp.networks` and
    /// the profile's `route_set`).
    pub own_prefixes: Vec<Ipv4Prefix>,
    /// Seconds the requester may keep what we answer (IOS `ip nhrp
    /// holdtime`).
    pub holdtime: u16,
    /// Resolve on Traffic Indications (IOS `ip nhrp shortcut`).
    pub shortcut: bool,
    /// The tunnel to the hub, where Resolution Requests go first.
    pub hub_va: VaId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// An NHRP packet out through `va`.
    Send {
        va: VaId,
        packet: Vec<u8>,
    },
    /// Open an IKEv2 session to this NBMA address (we answer over it).
    Dial {
        nbma: Ipv4Addr,
    },
    /// Close the shortcut tunnel on `va`.
    Close {
        va: VaId,
    },
    AddRoute(Route),
    RemoveRoute(Route),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A destination prefix behind a peer (IOS flags `router rib nho`).
    Shortcut,
    /// A peer's own tunnel address (IOS flags `router nhop rib`).
    NextHop,
}

#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    via: Ipv4Addr,
    nbma: Ipv4Addr,
    va: VaId,
    created: Instant,
    expires: Instant,
    holdtime: Duration,
    /// The address asked for, to ask again when refreshing.
    asked: Ipv4Addr,
    /// Traffic went through the entry's tunnel since the last refresh.
    used: bool,
    refresh_sent: Option<Instant>,
}

/// A Resolution Reply we owe a requester, until a tunnel to it is up.
#[derive(Clone, Debug)]
struct Owed {
    nbma: Ipv4Addr,
    reply: Vec<u8>,
    requester: Ipv4Addr,
    holdtime: Duration,
    since: Instant,
}

pub struct Shortcuts {
    settings: SpokeSettings,
    /// Our tunnel address (Tunnel1's, negotiated); NHRP waits for it.
    protocol: Option<Ipv4Addr>,
    entries: BTreeMap<Ipv4Prefix, Entry>,
    /// Outstanding Resolution Requests: id -> the address asked for.
    pending: HashMap<u32, (Ipv4Addr, Instant)>,
    owed: Vec<Owed>,
    dialling: HashMap<Ipv4Addr, Instant>,
    /// The shortcut tunnels that exist, as last told, with when first seen.
    tunnels: Vec<(PeerTunnel, Instant)>,
    /// Tunnels we received NHRP over (the peer has its SAs in place).
    heard: Vec<VaId>,
    /// Dials put off until then, waiting for the peer's (see `answer`).
    deferred: HashMap<Ipv4Addr, Instant>,
    /// Tunnels we asked to close, until they are gone.
    closing: Vec<VaId>,
    next_request_id: u32,
    pub traffic: NhrpTraffic,
}

impl Shortcuts {
    pub fn new(settings: SpokeSettings) -> Self {
        Self {
            settings,
            protocol: None,
            entries: BTreeMap::new(),
            pending: HashMap::new(),
            owed: Vec::new(),
            dialling: HashMap::new(),
            tunnels: Vec::new(),
            heard: Vec::new(),
            deferred: HashMap::new(),
            closing: Vec::new(),
            next_request_id: 1,
            traffic: NhrpTraffic::default(),
        }
    }

    /// Tunnel1's address came (or went) with the session to the hub.
    pub fn set_protocol_address(&mut self, address: Option<Ipv4Addr>) {
        self.protocol = address;
    }

    fn station(&self) -> Option<Station> {
        Some(Station {
            nbma: self.settings.nbma,
            protocol: self.protocol?,
        })
    }

    /// Queues `repr` out through `va`; false if it does not encode.
    fn send(out: &mut Vec<Action>, va: VaId, repr: &NhrpRepr) -> bool {
        let Ok(packet) = repr.emit_to_vec() else {
            return false;
        };
        out.push(Action::Send { va, packet });
        true
    }

    /// Request ids for our requests and purges; never 0.
    fn next_request_id(&mut self) -> u32 {
        let id = self.next_request_id;
        self.next_request_id = id.wrapping_add(1).max(1);
        id
    }

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
    fn preferred(&self, nbma: Ipv4Addr) -> Option<PeerTunnel> {
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
    fn usable(&self, now: Instant, nbma: Ipv4Addr) -> Option<PeerTunnel> {
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

    fn flush_owed(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    /// An NHRP packet arrived on `va`.
    pub fn on_packet(&mut self, now: Instant, va: VaId, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        if self.tunnel_on(va).is_some() && !self.heard.contains(&va) {
            self.heard.push(va);
        }
        let Ok(repr) = NhrpRepr::parse_bytes(bytes) else {
            self.traffic.malformed += 1;
            return out;
        };
        match &repr.message {
            Message::TrafficIndication(ti) => {
                self.traffic.redirects_received += 1;
                // The original packet's destination: IPv4 header bytes 16..20.
                let dst = ti
                    .data
                    .get(16..20)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(Ipv4Addr::from);
                match dst {
                    Some(dst) if self.settings.shortcut => self.resolve(now, dst, &mut out),
                    Some(_) => {}
                    None => self.traffic.malformed += 1,
                }
            }
            Message::ResolutionRequest(m) => {
                self.traffic.resolution_requests_received += 1;
                self.answer(now, va, &repr, m, &mut out);
            }
            Message::ResolutionReply(m) => {
                self.traffic.resolution_replies_received += 1;
                self.resolved(now, va, m, &mut out);
            }
            Message::PurgeRequest(m) => {
                self.traffic.purge_requests_received += 1;
                self.purged(va, &repr, m, &mut out);
            }
            Message::PurgeReply(_) => self.traffic.purge_replies_received += 1,
            Message::ErrorIndication(e) => {
                self.traffic.error_indications_received += 1;
                tracing::info!(code = e.code, from = ?e.addresses.src_protocol, "NHRP: Error Indication received");
            }
            _ => self.traffic.malformed += 1,
        }
        // Hearing from a tunnel may make it usable for what we owe.
        self.flush_owed(now, &mut out);
        out
    }

    fn covered(&self, addr: Ipv4Addr) -> bool {
        self.entries
            .iter()
            .any(|(p, e)| e.kind == Kind::Shortcut && p.contains(addr))
    }

    /// Sends a Resolution Request for `dst` through the hub.
    fn resolve(&mut self, now: Instant, dst: Ipv4Addr, out: &mut Vec<Action>) {
        if self.covered(dst) || self.owns(dst).is_some() {
            return;
        }
        let recent = self
            .pending
            .values()
            .any(|(asked, at)| *asked == dst && now.duration_since(*at) < RESOLVE_AGAIN_AFTER);
        if recent {
            return;
        }
        let hub = self.settings.hub_va;
        if self.request(now, dst, hub, out) {
            tracing::info!(destination = %dst, "NHRP: Traffic Indication from the hub: resolving {dst}");
        }
    }

    /// A Resolution Request for `dst` (section 5.2.1) out through `va`.
    fn request(&mut self, now: Instant, dst: Ipv4Addr, va: VaId, out: &mut Vec<Action>) -> bool {
        let Some(me) = self.station() else {
            return false;
        };
        self.pending
            .retain(|_, (_, at)| now.duration_since(*at) < DIAL_TIMEOUT);
        let id = self.next_request_id();
        let repr = NhrpRepr {
            hop_count: HOP_COUNT,
            message: Message::ResolutionRequest(Mandatory {
                flags: FLAG_Q,
                request_id: id,
                addresses: Addresses {
                    src_nbma: Some(me.nbma),
                    src_protocol: Some(me.protocol),
                    dst_protocol: Some(dst),
                },
                // Our own binding, for the responder to keep as long as
                // our holding time says.
                cies: vec![Cie {
                    prefix_len: 32,
                    holding_time: self.settings.holdtime,
                    ..Cie::default()
                }],
            }),
            extensions: vec![
                Extension {
                    compulsory: true,
                    body: ExtensionBody::ResponderAddress(Vec::new()),
                },
                Extension {
                    compulsory: true,
                    body: ExtensionBody::ForwardTransitNhs(Vec::new()),
                },
                Extension {
                    compulsory: true,
                    body: ExtensionBody::ReverseTransitNhs(Vec::new()),
                },
            ],
        };
        if !Self::send(out, va, &repr) {
            return false;
        }
        self.pending.insert(id, (dst, now));
        self.traffic.resolution_requests_sent += 1;
        true
    }

    /// The own prefix that covers `addr`, most specific first; our tunnel
    /// address counts as a /32.
    fn owns(&self, addr: Ipv4Addr) -> Option<Ipv4Prefix> {
        if Some(addr) == self.protocol {
            return Some(Ipv4Prefix { addr, len: 32 });
        }
        self.settings
            .own_prefixes
            .iter()
            .filter(|p| p.contains(addr))
            .max_by_key(|p| p.len)
            .copied()
    }

    /// A Resolution Request reached us: answer it if the destination is
    /// ours (section 5.2.2), over a tunnel to the requester.
    fn answer(
        &mut self,
        now: Instant,
        va: VaId,
        repr: &NhrpRepr,
        m: &Mandatory,
        out: &mut Vec<Action>,
    ) {
        let (Some(me), Some(requester), Some(requester_nbma), Some(dst)) = (
            self.station(),
            m.addresses.src_protocol,
            m.addresses.src_nbma,
            m.addresses.dst_protocol,
        ) else {
            self.traffic.malformed += 1;
            return;
        };
        let owned = self.owns(dst);
        let cie = Cie {
            code: if owned.is_some() { 0 } else { CIE_NO_BINDING },
            prefix_len: owned.map_or(32, |p| p.len),
            mtu: 0,
            holding_time: self.settings.holdtime,
            preference: 0,
            nbma: Some(me.nbma),
            protocol: Some(me.protocol),
        };
        let mut extensions = repr.extensions.clone();
        for e in &mut extensions {
            if let ExtensionBody::ResponderAddress(cies) = &mut e.body {
                *cies = vec![cie];
            }
        }
        let reply = NhrpRepr {
            hop_count: HOP_COUNT,
            message: Message::ResolutionReply(Mandatory {
                flags: (m.flags & FLAG_Q) | FLAG_A,
                request_id: m.request_id,
                addresses: m.addresses,
                cies: vec![cie],
            }),
            extensions,
        };
        let Ok(bytes) = reply.emit_to_vec() else {
            self.traffic.malformed += 1;
            return;
        };
        if owned.is_none() {
            // Not ours: a negative reply back the way the request came.
            out.push(Action::Send { va, packet: bytes });
            self.traffic.resolution_replies_sent += 1;
            return;
        }
        let holdtime = m
            .cies
            .first()
            .map(|c| c.holding_time)
            .filter(|h| *h > 0)
            .unwrap_or(self.settings.holdtime);
        self.owed.push(Owed {
            nbma: requester_nbma,
            reply: bytes,
            requester,
            holdtime: Duration::from_secs(u64::from(holdtime)),
            since: now,
        });
        let no_tunnel = self.preferred(requester_nbma).is_none()
            && !self.dialling.contains_key(&requester_nbma)
            && !self.deferred.contains_key(&requester_nbma);
        if no_tunnel {
            // Traffic both ways makes both spokes owners and requesters at
            // once, and each would dial the other; two tunnels between the
            // same addresses cannot coexist as kernel GRE links. While it
            // is resolving itself, the spoke with the higher address gives
            // the other's dial a head start.
            let resolving = self
                .pending
                .values()
                .any(|(_, at)| now.duration_since(*at) < RESOLVE_AGAIN_AFTER);
            if resolving && self.settings.nbma > requester_nbma {
                tracing::info!(
                    requester = %requester, nbma = %requester_nbma, destination = %dst,
                    "NHRP: resolution request for our {dst}: waiting briefly for {requester_nbma}'s own shortcut tunnel"
                );
                self.deferred.insert(requester_nbma, now + DEFER_DIAL);
            } else {
                self.dial(now, requester_nbma, out);
            }
        }
        self.flush_owed(now, out);
    }

    fn dial(&mut self, now: Instant, nbma: Ipv4Addr, out: &mut Vec<Action>) {
        tracing::info!(peer = %nbma, "NHRP: opening a shortcut tunnel to {nbma}");
        self.dialling.insert(nbma, now);
        out.push(Action::Dial { nbma });
    }

    /// A Resolution Reply: route the answered prefix through the tunnel to
    /// its owner.
    fn resolved(&mut self, now: Instant, va: VaId, m: &Mandatory, out: &mut Vec<Action>) {
        let asked = self.pending.remove(&m.request_id).map(|(a, _)| a);
        let (Some(asked), Some(cie)) = (asked.or(m.addresses.dst_protocol), m.cies.first()) else {
            self.traffic.malformed += 1;
            return;
        };
        if cie.code != 0 {
            tracing::info!(destination = %asked, code = cie.code, "NHRP: negative Resolution Reply");
            return;
        }
        let (Some(nbma), Some(via)) = (cie.nbma, cie.protocol) else {
            self.traffic.malformed += 1;
            return;
        };
        let Some(tunnel) = self
            .preferred(nbma)
            .or_else(|| self.tunnel_on(va).filter(|t| t.nbma == nbma))
        else {
            tracing::info!(destination = %asked, owner = %nbma, "NHRP: reply without a tunnel to its owner; ignored");
            self.traffic.malformed += 1;
            return;
        };
        let len = cie.prefix_len.min(32);
        let prefix = Ipv4Prefix {
            addr: mask(asked, len),
            len,
        };
        let holdtime = Duration::from_secs(u64::from(cie.holding_time.max(1)));
        self.install(
            out,
            now,
            Kind::Shortcut,
            prefix,
            asked,
            via,
            nbma,
            tunnel.va,
            holdtime,
        );
        self.install(
            out,
            now,
            Kind::NextHop,
            Ipv4Prefix { addr: via, len: 32 },
            via,
            via,
            nbma,
            tunnel.va,
            holdtime,
        );
    }

    fn tunnel_on(&self, va: VaId) -> Option<PeerTunnel> {
        self.tunnels.iter().map(|(t, _)| *t).find(|t| t.va == va)
    }

    #[allow(clippy::too_many_arguments)]
    fn install(
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
    fn purged(&mut self, va: VaId, repr: &NhrpRepr, m: &Mandatory, out: &mut Vec<Action>) {
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

    /// Once a second: `active` are the tunnels that carried traffic since
    /// the last tick. Used entries close to expiry are refreshed straight
    /// over their tunnel; expired ones go; tunnels left empty are closed.
    pub fn tick(&mut self, now: Instant, active: &[VaId]) -> Vec<Action> {
        let mut out = Vec::new();
        for e in self.entries.values_mut() {
            if active.contains(&e.va) {
                e.used = true;
            }
        }
        // Refresh (IOS refreshes a used entry before it expires): a third
        // of the holding time before the end, once per period.
        let due: Vec<(Ipv4Addr, VaId)> = self
            .entries
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
            .collect();
        for (asked, va) in due {
            if self.request(now, asked, va, &mut out) {
                for e in self.entries.values_mut().filter(|e| e.va == va) {
                    e.refresh_sent = Some(now);
                    e.used = false;
                }
            }
        }
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
                self.dial(now, nbma, &mut out);
            }
        }
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
        self.flush_owed(now, &mut out);
        out
    }

    /// `clear ip nhrp` on a spoke: the peers are told to purge what they
    /// learnt from us, our entries go, and every shortcut tunnel closes.
    pub fn clear(&mut self) -> (Vec<Action>, NhrpCleared) {
        let mut out = Vec::new();
        let mut cleared = NhrpCleared::default();
        if let Some(me) = self.station() {
            let mut cies: Vec<Cie> = self
                .settings
                .own_prefixes
                .iter()
                .map(|p| Cie {
                    prefix_len: p.len,
                    nbma: Some(me.nbma),
                    protocol: Some(p.addr),
                    ..Cie::default()
                })
                .collect();
            cies.push(Cie {
                prefix_len: 32,
                nbma: Some(me.nbma),
                protocol: Some(me.protocol),
                ..Cie::default()
            });
            let tunnels: Vec<PeerTunnel> = self.tunnels.iter().map(|(t, _)| *t).collect();
            for t in &tunnels {
                let id = self.next_request_id();
                let purge = NhrpRepr {
                    hop_count: HOP_COUNT,
                    message: Message::PurgeRequest(Mandatory {
                        flags: FLAG_N,
                        request_id: id,
                        addresses: Addresses {
                            src_nbma: Some(me.nbma),
                            src_protocol: Some(me.protocol),
                            dst_protocol: self
                                .entries
                                .values()
                                .find(|e| e.va == t.va)
                                .map(|e| e.via),
                        },
                        cies: cies.clone(),
                    }),
                    extensions: Vec::new(),
                };
                if Self::send(&mut out, t.va, &purge) {
                    self.traffic.purge_requests_sent += 1;
                }
            }
        }
        for (prefix, e) in std::mem::take(&mut self.entries) {
            cleared.entries += 1;
            out.push(Action::RemoveRoute(Route {
                prefix,
                va: e.va,
                next_hop: None,
            }));
        }
        for (t, _) in &self.tunnels {
            cleared.tunnels_closed += 1;
            self.closing.push(t.va);
            out.push(Action::Close { va: t.va });
        }
        self.pending.clear();
        self.owed.clear();
        (out, cleared)
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

fn mask(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(addr);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    Ipv4Addr::from(bits & mask)
}

#[cfg(test)]
mod tests;
