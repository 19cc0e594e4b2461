//! The per-packet work of one userspace datapath worker, without I/O: the
//! worker hands in buffers and gets told where their bytes go. Nothing here
//! allocates or locks; the snapshot is read through a plain reference.
//!
//! Buffers are laid out with `HEADROOM` bytes before an inner packet and
//! `TAILROOM` after it, so that GRE, the ESP header and IV go in front and
//! the ESP trailer and ICV behind, in place.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    ops::Range,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use gateway_report::interfaces::{GlobalCounter, SaCounter, VaCounter};
use tokio::sync::mpsc;

use super::counters::GlobalStats;
use super::tables::{InboundSpec, Replica, Tables, Va};
use crate::net::{ETH_P_IPV4, ETH_P_NHRP, IPPROTO_GRE};
use crate::{
    datapath::wire::{Ipv4Packet, gre, icmp, tcp_mss},
    esp::{
        replay::ReplayError,
        sa::{EspError, InboundSa},
    },
    iface::{DatapathEvent, HAIRPIN_HEAD_LEN, Hairpin, VaId},
    ipsec::{Mode, SystemRng},
};

/// Room in front of an inner packet: ESP header (8) + IV (at most 16) +
/// GRE (4), rounded up.
pub const HEADROOM: usize = 64;
/// Room behind it: padding (at most 15) + pad length + next header + ICV
/// (at most 32), rounded up.
pub const TAILROOM: usize = 64;

const NEXT_HEADER_IPV4: u8 = 4;
/// RFC 4303 section 2.6: a dummy packet, to be dropped silently.
const NEXT_HEADER_NONE: u8 = 59;
/// The same spoke pair is reported at most this often per worker; NHRP
/// rate-limits redirects itself, this only keeps the channel quiet.
const HAIRPIN_REPORT_INTERVAL: Duration = Duration::from_millis(500);
const HAIRPIN_SLOTS: usize = 256;

/// What became of a datagram from UDP 4500.
#[derive(Debug, PartialEq, Eq)]
pub enum FromNet {
    /// An IKE message (after the non-ESP marker), for the IKE task.
    Ike(Range<usize>),
    /// Dropped, counted, or handed to the control plane: nothing to send.
    Done,
    /// The inner packet, for the TUN device.
    ToTun(Range<usize>),
    /// The inner packet leaves through another virtual-access.
    Hairpin {
        from: VaId,
        to: VaId,
        inner: Range<usize>,
    },
}

/// An encapsulated packet, ready to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Encap {
    Send {
        packet: Range<usize>,
        dest: SocketAddrV4,
    },
    /// Over the interface MTU with DF set: an ICMP "fragmentation needed"
    /// of this length was written to the scratch buffer, for the sender.
    TooBig {
        icmp_len: usize,
    },
    Dropped,
}

struct InboundState {
    spec: Arc<InboundSpec>,
    sa: InboundSa,
}

pub struct Processor {
    inbound: HashMap<u32, InboundState>,
    rng: SystemRng,
    global: Arc<GlobalStats>,
    events: Option<mpsc::Sender<DatapathEvent>>,
    /// Direct-mapped: hash(src, dst) -> (src, dst, last report).
    hairpin_seen: Box<[(u32, u32, Option<Instant>); HAIRPIN_SLOTS]>,
}

// The accessors below run on packets that passed `ipv4_len` (the wire
// view's length checks); they only read the fixed header.
fn ipv4_src(p: &[u8]) -> Ipv4Addr {
    Ipv4Packet::new_unchecked(p).src()
}

fn ipv4_dst(p: &[u8]) -> Ipv4Addr {
    Ipv4Packet::new_unchecked(p).dst()
}

fn dont_fragment(p: &[u8]) -> bool {
    Ipv4Packet::new_unchecked(p).dont_frag()
}

/// The IPv4 packet's own length, if the buffer holds a plausible one.
fn ipv4_len(p: &[u8]) -> Option<usize> {
    Ipv4Packet::new_checked(p)
        .ok()
        .map(|v| usize::from(v.total_len()))
}

/// Decrements the TTL (incremental checksum, RFC 1624); false when the
/// packet must not be forwarded (RFC 1812 section 5.3.1).
fn decrement_ttl(p: &mut [u8]) -> bool {
    Ipv4Packet::new_unchecked(p).decrement_ttl().is_ok()
}

impl Processor {
    pub fn new(global: Arc<GlobalStats>, events: Option<mpsc::Sender<DatapathEvent>>) -> Self {
        Processor {
            inbound: HashMap::new(),
            rng: SystemRng,
            global,
            events,
            hairpin_seen: Box::new([(0, 0, None); HAIRPIN_SLOTS]),
        }
    }

    /// Brings this worker's tables and inbound SAs (with their replay
    /// windows) up to what was published; costs what changed since.
    pub fn sync(&mut self, replica: &mut Replica) {
        replica.catch_up(|spi, spec| self.set_inbound(spi, spec));
    }

    fn set_inbound(&mut self, spi: u32, spec: Option<&Arc<InboundSpec>>) {
        let Some(spec) = spec else {
            self.inbound.remove(&spi);
            return;
        };
        // An SA whose spec changed only in its peer (NAT rebinding) keeps
        // its replay window: same `shared`, same SA.
        if let Some(ours) = self.inbound.get_mut(&spi)
            && Arc::ptr_eq(&spec.shared, &ours.spec.shared)
        {
            ours.spec = spec.clone();
            return;
        }
        match spec.build() {
            Ok(sa) => {
                self.inbound.insert(
                    spi,
                    InboundState {
                        spec: spec.clone(),
                        sa,
                    },
                );
            }
            Err(e) => {
                self.inbound.remove(&spi);
                tracing::error!(spi = format_args!("{spi:#010x}"), error = %e, "inbound SA not usable");
            }
        }
    }

    /// The inbound SAs this worker has, by SPI.
    #[cfg(test)]
    pub fn inbound_specs(&self) -> impl Iterator<Item = (u32, &Arc<InboundSpec>)> {
        self.inbound.iter().map(|(spi, s)| (*spi, &s.spec))
    }

    /// Handles one UDP 4500 payload in place (RFC 3948 section 2.2 demux).
    #[allow(
        clippy::too_many_lines,
        reason = "one packet's way in, read top to bottom"
    )]
    pub fn from_network(&mut self, tables: &Tables, src: SocketAddrV4, pkt: &mut [u8]) -> FromNet {
        if pkt == [0xff] {
            // NAT-keepalive (RFC 3948 section 2.3).
            return FromNet::Done;
        }
        if pkt.len() >= 4 && pkt[..4] == [0, 0, 0, 0] {
            return FromNet::Ike(4..pkt.len());
        }
        if pkt.len() < 8 {
            self.global.bump(GlobalCounter::Malformed, 1);
            return FromNet::Done;
        }
        let spi = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
        let Some(inbound) = self.inbound.get_mut(&spi) else {
            self.global.bump(GlobalCounter::UnknownSpi, 1);
            return FromNet::Done;
        };
        // Another worker may have received this SA's packets before (the
        // peer's 4-tuple changed): start from where it got to.
        let shared = &inbound.spec.shared;
        let highest = shared.highest.load(Ordering::Relaxed);
        inbound.sa.catch_up(highest);
        let stats = inbound.spec.stats.clone();
        let from_id = inbound.spec.va;
        let esp_len = pkt.len();
        let base = pkt.as_ptr() as usize;
        let (next_header, payload) = match inbound.sa.open(pkt) {
            Ok(opened) => {
                if opened.seq > highest {
                    shared.highest.fetch_max(opened.seq, Ordering::Relaxed);
                }
                let start = opened.payload.as_ptr() as usize - base;
                (opened.next_header, start..start + opened.payload.len())
            }
            Err(EspError::Replay(ReplayError::Replayed(_) | ReplayError::TooOld { .. })) => {
                stats.bump(SaCounter::Replayed, 1);
                return FromNet::Done;
            }
            Err(EspError::Integrity) => {
                stats.bump(SaCounter::AuthFailed, 1);
                return FromNet::Done;
            }
            Err(_) => {
                self.global.bump(GlobalCounter::Malformed, 1);
                return FromNet::Done;
            }
        };
        stats.bump(SaCounter::RxPackets, 1);
        stats.bump(SaCounter::RxBytes, esp_len as u64);
        if inbound.spec.peer != src {
            // Authenticated and not a replay, from elsewhere: the peer's
            // NAT mapping changed (RFC 7296 section 2.23). The packet is
            // genuine, so it is delivered (as the kernel's ESP-in-UDP input
            // does, raising a mapping event); sending moves only when the
            // control plane calls `update_peer`.
            self.global.bump(GlobalCounter::WrongEndpoint, 1);
            if inbound.spec.shared.may_report_move(Instant::now()) {
                let event = DatapathEvent::PeerMoved {
                    va: from_id,
                    spi_in: spi,
                    remote: src,
                };
                send_event(self.events.as_ref(), &self.global, event);
            }
        }
        let Some(from) = tables.vas.get(&from_id) else {
            self.global.bump(GlobalCounter::NoRoute, 1);
            return FromNet::Done;
        };
        let inner = match (next_header, inbound_mode(&inbound.spec)) {
            (IPPROTO_GRE, _) => match gre::decap(&pkt[payload.clone()]) {
                Ok((ETH_P_IPV4, offset)) => payload.start + offset..payload.end,
                Ok((ETH_P_NHRP, offset)) => {
                    self.to_control(from_id, &pkt[payload.start + offset..payload.end]);
                    return FromNet::Done;
                }
                _ => {
                    self.global.bump(GlobalCounter::Malformed, 1);
                    return FromNet::Done;
                }
            },
            (NEXT_HEADER_IPV4, _) => payload,
            (NEXT_HEADER_NONE, _) => return FromNet::Done,
            _ => {
                self.global.bump(GlobalCounter::Malformed, 1);
                return FromNet::Done;
            }
        };
        let Some(len) = ipv4_len(&pkt[inner.clone()]) else {
            self.global.bump(GlobalCounter::Malformed, 1);
            return FromNet::Done;
        };
        let inner = inner.start..inner.start + len;
        let packet = &mut pkt[inner.clone()];
        // Anti-spoofing, strict reverse path (RFC 3704 section 2.2): the
        // source must be routed back through the interface it came in on,
        // which holds the spoke's pool address and the prefixes behind it.
        // On a spoke, its tunnel to the hub (no template) and its shortcut
        // tunnels (of the same NHRP network) accept each other's sources:
        // while shortcuts form, one direction already takes one and the
        // other still comes through the hub (RFC 3704 section 2.3, feasible
        // paths). Between two templated interfaces (a hub's spokes) the
        // check stays strict.
        let src_ok = tables.fib.lookup(ipv4_src(packet)).is_some_and(|(_, va)| {
            va.spec.id == from_id
                || ((from.spec.template.is_none() || va.spec.template.is_none())
                    && from.spec.nhrp_network_id.is_some()
                    && va.spec.nhrp_network_id == from.spec.nhrp_network_id)
        });
        if !src_ok {
            from.stats.bump(VaCounter::RxSpoofed, 1);
            return FromNet::Done;
        }
        from.stats.bump(VaCounter::RxPackets, 1);
        from.stats.bump(VaCounter::RxBytes, len as u64);
        if let Some(mss) = from.spec.tcp_adjust_mss {
            let _ = tcp_mss::clamp_mss(packet, mss);
        }
        let dst = ipv4_dst(packet);
        if tables.local.contains(&dst) {
            return FromNet::ToTun(inner);
        }
        match tables.fib.lookup(dst) {
            None => FromNet::ToTun(inner),
            // Routed back where it came from, or into a spoke's tunnel to
            // its hub: the host decides. On a spoke the hub's summary covers
            // the spoke's own LAN, which only the host's connected route
            // knows about (traffic from a shortcut tunnel meets it); what
            // the host sends back to us goes on to the hub.
            Some((_, to))
                if to.spec.id == from_id
                    || (to.spec.template.is_none() && from.spec.template.is_some()) =>
            {
                FromNet::ToTun(inner)
            }
            Some((_, to)) => {
                if !decrement_ttl(packet) {
                    self.global.bump(GlobalCounter::TtlExpired, 1);
                    return FromNet::Done;
                }
                from.stats.bump(VaCounter::Hairpinned, 1);
                // Only between peers that speak NHRP (GRE, transport
                // mode): a redirect to a tunnel-mode peer cannot be sent,
                // and one about it cannot be resolved.
                if from.spec.nhrp_network_id.is_some()
                    && from.spec.nhrp_network_id == to.spec.nhrp_network_id
                    && carries_gre(from)
                    && carries_gre(to)
                {
                    self.report_hairpin(from, to, packet);
                }
                FromNet::Hairpin {
                    from: from_id,
                    to: to.spec.id,
                    inner,
                }
            }
        }
    }

    fn to_control(&self, va: VaId, packet: &[u8]) {
        self.global.bump(GlobalCounter::NhrpToControl, 1);
        if let Some(events) = &self.events
            && events
                .try_send(DatapathEvent::Nhrp {
                    va,
                    packet: packet.to_vec(),
                })
                .is_err()
        {
            self.global.bump(GlobalCounter::HairpinEventsLost, 1);
        }
    }

    fn report_hairpin(&mut self, from: &Va, to: &Va, packet: &[u8]) {
        let (src, dst) = (ipv4_src(packet), ipv4_dst(packet));
        let (s, d) = (u32::from(src), u32::from(dst));
        let slot =
            (s.wrapping_mul(0x9e37_79b1) ^ d.wrapping_mul(0x85eb_ca6b)) as usize % HAIRPIN_SLOTS;
        let now = Instant::now();
        let entry = &mut self.hairpin_seen[slot];
        if entry.0 == s
            && entry.1 == d
            && entry
                .2
                .is_some_and(|t| now.duration_since(t) < HAIRPIN_REPORT_INTERVAL)
        {
            return;
        }
        *entry = (s, d, Some(now));
        let Some(events) = &self.events else { return };
        let mut head = [0u8; HAIRPIN_HEAD_LEN];
        let n = packet.len().min(HAIRPIN_HEAD_LEN);
        head[..n].copy_from_slice(&packet[..n]);
        let event = DatapathEvent::Hairpin(Hairpin {
            from: from.spec.id,
            to: to.spec.id,
            src,
            dst,
            head,
            head_len: u8::try_from(n).unwrap_or(0),
        });
        if events.try_send(event).is_ok() {
            self.global.bump(GlobalCounter::HairpinEvents, 1);
        } else {
            self.global.bump(GlobalCounter::HairpinEventsLost, 1);
        }
    }

    /// Where a packet from the TUN device goes: the virtual-access its
    /// destination is routed to.
    pub fn route<'t>(&self, tables: &'t Tables, packet: &[u8]) -> Option<&'t Arc<Va>> {
        if ipv4_len(packet).is_none() {
            self.global.bump(GlobalCounter::Malformed, 1);
            return None;
        }
        let found = tables.fib.lookup(ipv4_dst(packet)).map(|(_, va)| va);
        if found.is_none() {
            self.global.bump(GlobalCounter::NoRoute, 1);
        }
        found
    }

    /// Encapsulates the IPv4 packet at `buf[inner]` for `to`: MSS clamp,
    /// MTU check, GRE (transport mode), ESP; in place. `scratch` receives
    /// the ICMP error when the packet is too big and may not be fragmented.
    pub fn encapsulate(
        &mut self,
        to: &Va,
        buf: &mut [u8],
        inner: Range<usize>,
        scratch: &mut [u8],
    ) -> Encap {
        let Some(out) = &to.out else {
            self.global.bump(GlobalCounter::NoRoute, 1);
            return Encap::Dropped;
        };
        let Some(len) = ipv4_len(&buf[inner.clone()]) else {
            self.global.bump(GlobalCounter::Malformed, 1);
            return Encap::Dropped;
        };
        let inner = inner.start..inner.start + len;
        if let Some(mss) = to.spec.tcp_adjust_mss {
            let _ = tcp_mss::clamp_mss(&mut buf[inner.clone()], mss);
        }
        // Without DF an oversized packet goes anyway: the outer packet may
        // be fragmented and the peer reassembles it before decryption
        // (RFC 4303 section 3.4.1).
        if len > usize::from(to.spec.mtu) && dont_fragment(&buf[inner.clone()]) {
            {
                // RFC 1191 section 4: tell the sender the tunnel's MTU.
                to.stats.bump(VaCounter::TxTooBig, 1);
                return match icmp::frag_needed(
                    &buf[inner.clone()],
                    to.spec.unnumbered,
                    to.spec.mtu,
                    scratch,
                ) {
                    Some(icmp_len) => Encap::TooBig { icmp_len },
                    None => Encap::Dropped,
                };
            }
        }
        let (payload_start, next_header) = match out.mode {
            Mode::Transport => {
                let g = inner.start - gre::BASE_HEADER_LEN;
                buf[g..inner.start].copy_from_slice(&[0, 0, 0x08, 0x00]);
                (g, IPPROTO_GRE)
            }
            Mode::Tunnel => (inner.start, NEXT_HEADER_IPV4),
        };
        let offset = out.sa.cipher().payload_offset();
        let Some(start) = payload_start.checked_sub(offset) else {
            self.global.bump(GlobalCounter::Malformed, 1);
            return Encap::Dropped;
        };
        let payload_len = inner.end - payload_start;
        match out
            .sa
            .seal(&mut buf[start..], payload_len, next_header, &mut self.rng)
        {
            Ok(n) => {
                to.stats.bump(VaCounter::TxPackets, 1);
                to.stats.bump(VaCounter::TxBytes, len as u64);
                out.stats.bump(SaCounter::TxPackets, 1);
                out.stats.bump(SaCounter::TxBytes, n as u64);
                Encap::Send {
                    packet: start..start + n,
                    dest: to.dest,
                }
            }
            Err(e) => {
                tracing::debug!(spi = format_args!("{:#010x}", out.sa.spi()), error = %e, "ESP seal failed");
                self.global.bump(GlobalCounter::Malformed, 1);
                Encap::Dropped
            }
        }
    }

    /// Puts a control packet (NHRP, GRE protocol 0x2001) at `buf[HEADROOM..]`
    /// into GRE and ESP for `to`. Only transport-mode SAs carry GRE.
    pub fn encapsulate_nhrp(&mut self, to: &Va, buf: &mut [u8], len: usize) -> Encap {
        let Some(out) = &to.out else {
            return Encap::Dropped;
        };
        if out.mode != Mode::Transport {
            return Encap::Dropped;
        }
        let g = HEADROOM - gre::BASE_HEADER_LEN;
        buf[g..HEADROOM].copy_from_slice(&[0, 0, 0x20, 0x01]);
        let offset = out.sa.cipher().payload_offset();
        let start = g - offset;
        match out.sa.seal(
            &mut buf[start..],
            len + gre::BASE_HEADER_LEN,
            IPPROTO_GRE,
            &mut self.rng,
        ) {
            Ok(n) => Encap::Send {
                packet: start..start + n,
                dest: to.dest,
            },
            Err(_) => Encap::Dropped,
        }
    }

    pub fn global(&self) -> &GlobalStats {
        &self.global
    }
}

/// Hands an event to the control plane without ever waiting: a full queue
/// loses it, counted.
pub fn send_event(
    events: Option<&mpsc::Sender<DatapathEvent>>,
    global: &GlobalStats,
    event: DatapathEvent,
) {
    if let Some(events) = events
        && events.try_send(event).is_err()
    {
        // The report has one counter for lost events, named for the first
        // kind (NHRP packets are counted there too).
        global.bump(GlobalCounter::HairpinEventsLost, 1);
    }
}

/// Whether the peer's SA carries GRE (FlexVPN's transport mode), and with
/// it NHRP.
fn carries_gre(va: &Va) -> bool {
    va.out.as_ref().is_some_and(|o| o.mode == Mode::Transport)
}

fn inbound_mode(spec: &InboundSpec) -> Mode {
    spec.mode
}
