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
//! The state is [`Shortcuts`]; its concerns are in `resolve` (requests and
//! replies), `cache` (entries, refresh, expiry, purge) and `tunnels` (the
//! shortcut tunnels and the replies that wait for one).

mod cache;
mod resolve;
mod tunnels;

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use gateway_report::nhrp::{NhrpCleared, NhrpTraffic};

use super::{
    FLAG_N, HOP_COUNT, Station,
    wire::{Addresses, Cie, Mandatory, Message, NhrpRepr},
};
use crate::{
    iface::{PeerTunnel, Route, VaId},
    net::Ipv4Prefix,
};
use cache::Entry;
use tunnels::Owed;

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

/// A spoke's NHRP: its cache, its requests and the tunnels they use.
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

    /// Once a second: `active` are the tunnels that carried traffic since
    /// the last tick. Used entries close to expiry are refreshed straight
    /// over their tunnel; expired ones go; tunnels left empty are closed.
    pub fn tick(&mut self, now: Instant, active: &[VaId]) -> Vec<Action> {
        let mut out = Vec::new();
        self.mark_used(active);
        for (asked, va) in self.refresh_due(now) {
            if self.request(now, asked, va, &mut out) {
                self.refresh_sent(now, va);
            }
        }
        self.expire(now, &mut out);
        self.dial_deferred(now, &mut out);
        self.close_idle(now, &mut out);
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
