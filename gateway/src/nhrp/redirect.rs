//! The hub's side of NHRP in FlexVPN (IOS `ip nhrp redirect`): a Traffic
//! Indication to the spoke whose traffic hairpinned through the hub, at
//! most once per source and destination pair per redirect timeout; and
//! the forwarding of the spokes' Resolution Requests, replies, purges and
//! error indications along the routed path (RFC 2332 section 5.2: a
//! transit NHS adds itself to the Forward or Reverse Transit NHS Record).
//! The hub installs no cache entries of its own.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use gateway_report::nhrp::NhrpTraffic;

use super::{
    HOP_COUNT, Station, error_code,
    wire::{
        Addresses, Cie, ErrorIndication, Extension, ExtensionBody, Message, NhrpRepr,
        TrafficIndication,
    },
};
use crate::iface::{Hairpin, VaId};

/// The rate-limit table is swept of stale pairs once it holds this many.
const SWEEP_AT: usize = 4096;

/// An NHRP packet to send through a virtual-access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub va: VaId,
    pub packet: Vec<u8>,
}

pub struct Redirector {
    station: Station,
    /// When each (source, destination) pair was last redirected.
    last_sent: HashMap<(Ipv4Addr, Ipv4Addr), Instant>,
    pub traffic: NhrpTraffic,
}

impl Redirector {
    pub fn new(station: Station) -> Self {
        Self {
            station,
            last_sent: HashMap::new(),
            traffic: NhrpTraffic::default(),
        }
    }

    /// A packet from `h.from` left through `h.to`: tell the source spoke,
    /// unless this pair was told within `timeout` (IOS `ip nhrp redirect
    /// timeout`).
    pub fn on_hairpin(&mut self, h: &Hairpin, now: Instant, timeout: Duration) -> Option<Outgoing> {
        let key = (h.src, h.dst);
        if self
            .last_sent
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < timeout)
        {
            self.traffic.redirects_suppressed += 1;
            return None;
        }
        if self.last_sent.len() >= SWEEP_AT {
            self.last_sent
                .retain(|_, t| now.duration_since(*t) < timeout);
        }
        self.last_sent.insert(key, now);
        // draft-detienne-dmvpn: the indication goes to the source of the
        // packet, and carries its header so the spoke knows what to resolve.
        let repr = NhrpRepr {
            hop_count: HOP_COUNT,
            message: Message::TrafficIndication(TrafficIndication {
                code: 0,
                addresses: Addresses {
                    src_nbma: Some(self.station.nbma),
                    src_protocol: Some(self.station.protocol),
                    dst_protocol: Some(h.src),
                },
                data: h.head().to_vec(),
            }),
            extensions: Vec::new(),
        };
        let packet = repr.emit_to_vec().ok()?;
        self.traffic.redirects_sent += 1;
        tracing::info!(
            "%NHRP-5-REDIRECT: traffic {} -> {} hairpinned from {} to {}: Traffic Indication sent to {}",
            h.src,
            h.dst,
            h.from,
            h.to,
            h.from
        );
        Some(Outgoing { va: h.from, packet })
    }

    /// `clear ip nhrp` on a hub: the rate limits start afresh; no session
    /// is touched. Returns how many pairs were forgotten.
    pub fn clear(&mut self) -> usize {
        let n = self.last_sent.len();
        self.last_sent.clear();
        n
    }

    /// An NHRP packet from a spoke. `route` is the datapath's longest
    /// prefix match: the virtual-access an address is reached through.
    pub fn on_packet(
        &mut self,
        from: VaId,
        bytes: &[u8],
        route: &dyn Fn(Ipv4Addr) -> Option<VaId>,
    ) -> Vec<Outgoing> {
        let Ok(mut repr) = NhrpRepr::parse_bytes(bytes) else {
            self.traffic.malformed += 1;
            return Vec::new();
        };
        // Which way the packet travels: requests and purges toward the
        // destination, replies back toward the requester (the source
        // protocol address keeps naming it, section 5.2.2), errors toward
        // the sender of the packet in error.
        let (toward, reverse) = match &repr.message {
            Message::ResolutionRequest(m) => {
                self.traffic.resolution_requests_received += 1;
                (m.addresses.dst_protocol, false)
            }
            Message::ResolutionReply(m) => {
                self.traffic.resolution_replies_received += 1;
                (m.addresses.src_protocol, true)
            }
            Message::PurgeRequest(m) => {
                self.traffic.purge_requests_received += 1;
                (m.addresses.dst_protocol, false)
            }
            Message::PurgeReply(m) => {
                self.traffic.purge_replies_received += 1;
                (m.addresses.src_protocol, true)
            }
            Message::ErrorIndication(e) => {
                self.traffic.error_indications_received += 1;
                (e.addresses.dst_protocol, true)
            }
            Message::TrafficIndication(_) => {
                self.traffic.redirects_received += 1;
                return Vec::new();
            }
            // FlexVPN spokes do not register; nothing else is for a hub.
            _ => {
                self.traffic.malformed += 1;
                return Vec::new();
            }
        };
        let Some(toward) = toward else {
            self.traffic.malformed += 1;
            return Vec::new();
        };
        let is_request = matches!(repr.message, Message::ResolutionRequest(_));
        if repr.hop_count <= 1 {
            return self.error(from, bytes, &repr, error_code::HOP_COUNT_EXCEEDED);
        }
        if self.in_transit_list(&repr) {
            return self.error(from, bytes, &repr, error_code::LOOP_DETECTED);
        }
        let Some(out) = route(toward).filter(|va| *va != from) else {
            tracing::debug!(%toward, interface = %from, "NHRP: no route to forward to");
            if is_request {
                return self.error(from, bytes, &repr, error_code::PROTOCOL_ADDRESS_UNREACHABLE);
            }
            self.traffic.malformed += 1;
            return Vec::new();
        };
        repr.hop_count -= 1;
        if !matches!(repr.message, Message::ErrorIndication(_)) {
            self.add_transit(&mut repr, reverse);
        }
        let Ok(packet) = repr.emit_to_vec() else {
            self.traffic.malformed += 1;
            return Vec::new();
        };
        match repr.message {
            Message::ResolutionRequest(_) => self.traffic.resolution_requests_forwarded += 1,
            Message::ResolutionReply(_) => self.traffic.resolution_replies_forwarded += 1,
            _ => {}
        }
        tracing::debug!(
            op = repr.message.op_type(), %toward, from = %from, to = %out,
            "NHRP forwarded"
        );
        vec![Outgoing { va: out, packet }]
    }

    /// What `on_packet` forwarded could not be sent on (a tunnel-mode peer
    /// has no GRE to carry NHRP): a request gets Protocol Address
    /// Unreachable back toward its sender, through `from`.
    pub fn undeliverable(&mut self, from: VaId, bytes: &[u8]) -> Vec<Outgoing> {
        let Ok(repr) = NhrpRepr::parse_bytes(bytes) else {
            return Vec::new();
        };
        if !matches!(repr.message, Message::ResolutionRequest(_)) {
            return Vec::new();
        }
        self.traffic.resolution_requests_forwarded =
            self.traffic.resolution_requests_forwarded.saturating_sub(1);
        self.error(from, bytes, &repr, error_code::PROTOCOL_ADDRESS_UNREACHABLE)
    }

    fn self_cie(&self) -> Cie {
        Cie {
            prefix_len: 32,
            nbma: Some(self.station.nbma),
            protocol: Some(self.station.protocol),
            ..Cie::default()
        }
    }

    /// Whether this hub already forwarded the packet (RFC 2332 section
    /// 5.3.4: an NHS finding itself in a transit record drops it).
    fn in_transit_list(&self, repr: &NhrpRepr) -> bool {
        repr.extensions.iter().any(|e| match &e.body {
            ExtensionBody::ForwardTransitNhs(cies) | ExtensionBody::ReverseTransitNhs(cies) => cies
                .iter()
                .any(|c| c.protocol == Some(self.station.protocol)),
            _ => false,
        })
    }

    /// Section 5.3.4: a transit NHS appends itself to the Forward (requests)
    /// or Reverse (replies) Transit NHS Record, creating it if absent.
    fn add_transit(&self, repr: &mut NhrpRepr, reverse: bool) {
        let me = self.self_cie();
        for e in &mut repr.extensions {
            match (&mut e.body, reverse) {
                (ExtensionBody::ForwardTransitNhs(cies), false)
                | (ExtensionBody::ReverseTransitNhs(cies), true) => {
                    cies.push(me);
                    return;
                }
                _ => {}
            }
        }
        let body = if reverse {
            ExtensionBody::ReverseTransitNhs(vec![me])
        } else {
            ExtensionBody::ForwardTransitNhs(vec![me])
        };
        repr.extensions.push(Extension {
            compulsory: true,
            body,
        });
    }

    /// An Error Indication back to where `bytes` came from (section 5.2.7).
    fn error(&mut self, to: VaId, bytes: &[u8], repr: &NhrpRepr, code: u16) -> Vec<Outgoing> {
        let source = match &repr.message {
            Message::ResolutionRequest(m)
            | Message::ResolutionReply(m)
            | Message::PurgeRequest(m)
            | Message::PurgeReply(m) => m.addresses.src_protocol,
            _ => None,
        };
        // No error about an error (section 5.2.7).
        if matches!(repr.message, Message::ErrorIndication(_)) {
            return Vec::new();
        }
        let indication = NhrpRepr {
            hop_count: HOP_COUNT,
            message: Message::ErrorIndication(ErrorIndication {
                code,
                offset: 0,
                addresses: Addresses {
                    src_nbma: Some(self.station.nbma),
                    src_protocol: Some(self.station.protocol),
                    dst_protocol: source,
                },
                packet: bytes.to_vec(),
            }),
            extensions: Vec::new(),
        };
        match indication.emit_to_vec() {
            Ok(packet) => {
                self.traffic.error_indications_sent += 1;
                tracing::info!(code, interface = %to, "NHRP: Error Indication sent");
                vec![Outgoing { va: to, packet }]
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
