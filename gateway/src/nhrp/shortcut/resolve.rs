//! Resolution (RFC 2332 section 5.2.1, 5.2.2): asking through the hub for
//! a destination the hub redirected us about, answering for our own
//! prefixes over a tunnel to the requester, and installing what the owner
//! answered.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use super::{
    Action, DEFER_DIAL, DIAL_TIMEOUT, RESOLVE_AGAIN_AFTER, Shortcuts, cache::Kind, mask,
    tunnels::Owed,
};
use crate::{
    iface::VaId,
    net::Ipv4Prefix,
    nhrp::{
        CIE_NO_BINDING, FLAG_A, FLAG_Q, HOP_COUNT,
        wire::{Addresses, Cie, Extension, ExtensionBody, Mandatory, Message, NhrpRepr},
    },
};

impl Shortcuts {
    /// Sends a Resolution Request for `dst` through the hub.
    pub(super) fn resolve(&mut self, now: Instant, dst: Ipv4Addr, out: &mut Vec<Action>) {
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
    pub(super) fn request(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        va: VaId,
        out: &mut Vec<Action>,
    ) -> bool {
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

    /// A Resolution Request reached us: answer it if the destination is
    /// ours (section 5.2.2), over a tunnel to the requester.
    pub(super) fn answer(
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

    /// A Resolution Reply: route the answered prefix through the tunnel to
    /// its owner.
    pub(super) fn resolved(
        &mut self,
        now: Instant,
        va: VaId,
        m: &Mandatory,
        out: &mut Vec<Action>,
    ) {
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
}
