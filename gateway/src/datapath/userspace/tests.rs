//! The per-packet path without sockets: a hub's tables with two spokes,
//! packets sealed by the spokes' side of the SAs, and what the processor
//! makes of them.
#![allow(clippy::unwrap_used)]

mod publish;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
};

use gateway_report::interfaces::{DatapathReport, GlobalCounter, SaCounter, VaCounter};
use tokio::sync::mpsc;

use super::{
    counters::GlobalStats,
    process::{Encap, FromNet, HEADROOM, Processor, TAILROOM},
    tables::{Master, Replica},
};
use crate::net::ETH_P_IPV4;
use crate::{
    datapath::wire::{gre, ipv4},
    esp::sa::{EspCipher, InboundSa, OutboundSa},
    iface::{DatapathError, DatapathEvent, Route, SaLifetime, SaPair, VaId, VirtualAccessSpec},
    ipsec::{Encr, Integ, Mode, SaKeys, SystemRng},
    net::Ipv4Prefix,
};

const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
const GCM: Encr = Encr::AesGcm16 { key_bits: 128 };

fn key(len: usize, seed: u8) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(
        (0..len)
            .map(|i| seed.wrapping_add(u8::try_from(i % 251).unwrap()))
            .collect(),
    )
}

/// One spoke: its outer address, pool address, LAN and the keys.
struct Spoke {
    va: VaId,
    outer: SocketAddrV4,
    inner: Ipv4Addr,
    lan: Ipv4Prefix,
    spi_in: u32,
    spi_out: u32,
    mode: Mode,
    encr: Encr,
    integ: Option<Integ>,
    /// Spoke -> hub and hub -> spoke keys.
    up: SaKeys,
    down: SaKeys,
}

impl Spoke {
    fn new(n: u8, mode: Mode, encr: Encr, integ: Option<Integ>) -> Self {
        let elen = usize::from(encr.key_bits() / 8) + if integ.is_none() { 4 } else { 0 };
        let ilen = integ.map_or(0, Integ::key_len);
        Spoke {
            va: VaId::virtual_access(u32::from(n)),
            outer: SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 10 + n), 4500),
            inner: Ipv4Addr::new(10, 1, 1, 100 + n),
            lan: Ipv4Prefix::new(Ipv4Addr::new(192, 168, n, 0), 24).unwrap(),
            spi_in: 0xc000_0000 | u32::from(n),
            spi_out: 0x5000_0000 | u32::from(n),
            mode,
            encr,
            integ,
            up: SaKeys {
                encr: key(elen, n),
                integ: key(ilen, n + 50),
            },
            down: SaKeys {
                encr: key(elen, n + 100),
                integ: key(ilen, n + 150),
            },
        }
    }

    fn install(&self, m: &mut Master) {
        let routes = [Ipv4Prefix::new(self.inner, 32).unwrap(), self.lan];
        self.install_with(m, Some(1), &routes);
    }

    /// `template: None` is a spoke's static tunnel to its hub.
    fn install_with(&self, m: &mut Master, template: Option<u16>, routes: &[Ipv4Prefix]) {
        m.create_va(&VirtualAccessSpec {
            id: self.va,
            name: self.va.to_string(),
            template,
            unnumbered: Ipv4Addr::new(10, 1, 1, 1),
            mtu: 1400,
            tcp_adjust_mss: Some(1360),
            nhrp_network_id: Some(2),
            peer_inner: Some(self.inner),
            local_outer: SocketAddrV4::new(HUB, 4500),
            remote_outer: self.outer,
        })
        .unwrap();
        m.install_sa(&self.sa_pair()).unwrap();
        for &prefix in routes {
            m.add_route(&Route {
                prefix,
                va: self.va,
                next_hop: None,
            })
            .unwrap();
        }
    }

    /// The hub's side of this spoke's SA pair.
    fn sa_pair(&self) -> SaPair {
        SaPair {
            va: self.va,
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            encr: self.encr,
            integ: self.integ,
            inbound: self.up.clone(),
            outbound: self.down.clone(),
            mode: self.mode,
            encap: Some((4500, 4500)),
            local: HUB,
            remote: *self.outer.ip(),
            esn: false,
            lifetime: SaLifetime::default(),
            defer_outbound: false,
        }
    }

    /// The same spoke after its `n`th CHILD_SA rekey: new SPIs, new keys.
    fn rekeyed(&self, n: u8) -> Spoke {
        let mut next = Spoke::new(
            u8::try_from(self.va.raw()).unwrap(),
            self.mode,
            self.encr,
            self.integ,
        );
        next.spi_in = self.spi_in + (u32::from(n) << 16);
        next.spi_out = self.spi_out + (u32::from(n) << 16);
        let seed = n.wrapping_mul(17);
        next.up.encr = key(self.up.encr.len(), seed);
        next.down.encr = key(self.down.encr.len(), seed.wrapping_add(1));
        next
    }

    /// What the spoke sends: `inner` in GRE (transport) or bare (tunnel), in ESP.
    fn seal(&self, sender: &OutboundSa, inner: &[u8]) -> Vec<u8> {
        let gre_len = if self.mode == Mode::Transport { 4 } else { 0 };
        let at = sender.cipher().payload_offset();
        let payload_len = gre_len + inner.len();
        let mut buf = vec![0u8; at + payload_len + sender.cipher().overhead_after(payload_len)];
        if gre_len > 0 {
            buf[at..at + 4].copy_from_slice(&[0, 0, 0x08, 0x00]);
        }
        buf[at + gre_len..at + payload_len].copy_from_slice(inner);
        let nh = if gre_len > 0 { 47 } else { 4 };
        let n = sender
            .seal(&mut buf, payload_len, nh, &mut SystemRng)
            .unwrap();
        buf.truncate(n);
        buf
    }

    fn uplink(&self) -> OutboundSa {
        OutboundSa::new(
            self.spi_in,
            EspCipher::new(self.encr, self.integ, &self.up.encr, &self.up.integ).unwrap(),
        )
    }

    fn downlink(&self) -> InboundSa {
        InboundSa::new(
            self.spi_out,
            EspCipher::new(self.encr, self.integ, &self.down.encr, &self.down.integ).unwrap(),
        )
    }

    /// A ping from the spoke's LAN to the hub's, sealed with `sender`.
    fn ping(&self, sender: &OutboundSa) -> Vec<u8> {
        let lan = self.lan.addr.octets();
        let src = Ipv4Addr::new(lan[0], lan[1], lan[2], 10);
        self.seal(sender, &icmp_echo(src, Ipv4Addr::new(192, 168, 0, 10), 56))
    }
}

/// An IPv4/ICMP echo request (or any protocol with `payload`).
fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, df: bool, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    if df {
        p[6] = 0x40;
    }
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = ipv4::checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..].copy_from_slice(payload);
    p
}

fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, size: usize) -> Vec<u8> {
    let mut body = vec![0u8; size.max(8)];
    body[0] = 8;
    ip_packet(src, dst, 1, true, &body)
}

/// A TCP SYN with an MSS option of 1460 and a valid checksum.
fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut tcp = vec![0u8; 24];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 6 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    let mut p = ip_packet(src, dst, 6, true, &tcp);
    let sum = tcp_checksum(&p);
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

fn tcp_checksum(p: &[u8]) -> u16 {
    let seg = &p[20..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&u16::try_from(seg.len()).unwrap().to_be_bytes());
    let mut s = seg.to_vec();
    s[16] = 0;
    s[17] = 0;
    pseudo.extend_from_slice(&s);
    ipv4::checksum(&pseudo)
}

struct Hub {
    master: Master,
    replica: Replica,
    processor: Processor,
    global: Arc<GlobalStats>,
    events: mpsc::Receiver<DatapathEvent>,
}

fn hub(spokes: &[&Spoke]) -> Hub {
    let mut m = Master::default();
    for s in spokes {
        s.install(&mut m);
    }
    hub_from(m)
}

fn hub_from(mut master: Master) -> Hub {
    let global = Arc::new(GlobalStats::default());
    let (tx, rx) = mpsc::channel(16);
    let mut processor = Processor::new(global.clone(), Some(tx));
    let mut replica = master.follow();
    processor.sync(&mut replica);
    Hub {
        master,
        replica,
        processor,
        global,
        events: rx,
    }
}

impl Hub {
    /// What changed in the master copy, as a worker picks it up.
    fn publish(&mut self) {
        self.master.publish();
        self.processor.sync(&mut self.replica);
    }

    /// The hub sends a ping to `spoke`'s LAN: the ESP packet and where it
    /// goes, or `None` if it was not sent.
    fn send(&mut self, spoke: &Spoke) -> Option<(Vec<u8>, SocketAddrV4)> {
        let lan = spoke.lan.addr.octets();
        let ping = icmp_echo(
            Ipv4Addr::new(192, 168, 0, 10),
            Ipv4Addr::new(lan[0], lan[1], lan[2], 10),
            56,
        );
        let mut buf = vec![0u8; HEADROOM + ping.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + ping.len()].copy_from_slice(&ping);
        let to = self.replica.tables().vas[&spoke.va].clone();
        let mut scratch = vec![0u8; 2048];
        match self.processor.encapsulate(
            &to,
            &mut buf,
            HEADROOM..HEADROOM + ping.len(),
            &mut scratch,
        ) {
            Encap::Send { packet, dest } => Some((buf[packet].to_vec(), dest)),
            _ => None,
        }
    }

    fn events(&mut self) -> Vec<DatapathEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

fn from(h: &mut Hub, spoke: &Spoke, pkt: &mut [u8]) -> FromNet {
    h.processor
        .from_network(h.replica.tables(), spoke.outer, pkt)
}

#[test]
fn transport_and_tunnel_mode_packets_reach_the_tun_device_and_are_counted() {
    for (mode, encr, integ) in [
        (Mode::Transport, GCM, None),
        (Mode::Tunnel, GCM, None),
        (
            Mode::Transport,
            Encr::AesCbc { key_bits: 128 },
            Some(Integ::HmacSha1_96),
        ),
    ] {
        let s1 = Spoke::new(1, mode, encr, integ);
        let mut h = hub(&[&s1]);
        let ping = icmp_echo(
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(192, 168, 0, 10),
            56,
        );
        let mut wire = s1.seal(&s1.uplink(), &ping);
        let FromNet::ToTun(r) = from(&mut h, &s1, &mut wire) else {
            panic!("{mode:?}: not delivered");
        };
        assert_eq!(&wire[r], &ping[..], "{mode:?}");
        let va = &h.replica.tables().vas[&s1.va];
        assert_eq!(va.stats.get(VaCounter::RxPackets), 1);
        assert_eq!(va.stats.get(VaCounter::RxBytes), ping.len() as u64);
    }
}

#[test]
fn replays_forgeries_and_unknown_spis_are_dropped_and_counted() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let up = s1.uplink();
    let ping = icmp_echo(s1.inner, Ipv4Addr::new(192, 168, 0, 10), 20);
    let sealed = s1.seal(&up, &ping);
    assert!(matches!(
        from(&mut h, &s1, &mut sealed.clone()),
        FromNet::ToTun(_)
    ));
    assert_eq!(from(&mut h, &s1, &mut sealed.clone()), FromNet::Done);
    let out = h.replica.tables().vas[&s1.va].out.clone().unwrap();
    assert_eq!(out.stats.get(SaCounter::Replayed), 1);

    let mut forged = s1.seal(&up, &ping);
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    assert_eq!(from(&mut h, &s1, &mut forged), FromNet::Done);
    assert_eq!(out.stats.get(SaCounter::AuthFailed), 1);

    let mut unknown = s1.seal(&up, &ping);
    unknown[0] ^= 0xff;
    assert_eq!(from(&mut h, &s1, &mut unknown), FromNet::Done);
    assert_eq!(h.global.get(GlobalCounter::UnknownSpi), 1);

    // From elsewhere a replay is still a replay (and no sign of a move).
    let elsewhere = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 99), 4500);
    assert_eq!(
        h.processor
            .from_network(h.replica.tables(), elsewhere, &mut sealed.clone()),
        FromNet::Done
    );
    assert_eq!(out.stats.get(SaCounter::Replayed), 2);
    assert_eq!(h.global.get(GlobalCounter::WrongEndpoint), 0);
    assert!(h.events.try_recv().is_err());

    // IKE behind the marker and keepalives are told apart from ESP.
    let mut ike = vec![0, 0, 0, 0, 1, 2, 3];
    assert_eq!(from(&mut h, &s1, &mut ike), FromNet::Ike(4..7));
    assert_eq!(from(&mut h, &s1, &mut [0xff]), FromNet::Done);
}

#[test]
fn a_source_the_spoke_does_not_own_is_dropped_and_counted() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let s2 = Spoke::new(2, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1, &s2]);
    let up = s1.uplink();
    for forged_src in [
        Ipv4Addr::new(192, 168, 77, 1),
        s2.inner,
        Ipv4Addr::new(192, 168, 2, 10),
    ] {
        let mut wire = s1.seal(
            &up,
            &icmp_echo(forged_src, Ipv4Addr::new(192, 168, 0, 10), 8),
        );
        assert_eq!(from(&mut h, &s1, &mut wire), FromNet::Done, "{forged_src}");
    }
    let va = &h.replica.tables().vas[&s1.va];
    assert_eq!(va.stats.get(VaCounter::RxSpoofed), 3);
    assert_eq!(va.stats.get(VaCounter::RxPackets), 0);
}

#[test]
fn spoke_to_spoke_hairpins_with_ttl_decremented_and_one_event_per_pair() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let s2 = Spoke::new(2, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1, &s2]);
    let up = s1.uplink();
    let ping = icmp_echo(
        Ipv4Addr::new(192, 168, 1, 10),
        Ipv4Addr::new(192, 168, 2, 10),
        100,
    );
    let mut wire = s1.seal(&up, &ping);
    let FromNet::Hairpin { from: f, to, inner } = from(&mut h, &s1, &mut wire) else {
        panic!("not hairpinned");
    };
    assert_eq!((f, to), (s1.va, s2.va));
    let forwarded = wire[inner].to_vec();
    assert_eq!(forwarded[8], 63, "TTL decremented");
    assert_eq!(
        ipv4::checksum(&forwarded[..20]),
        0,
        "header checksum still valid"
    );

    // Re-encapsulated for spoke 2, which opens it.
    let mut buf = vec![0u8; HEADROOM + forwarded.len() + TAILROOM];
    buf[HEADROOM..HEADROOM + forwarded.len()].copy_from_slice(&forwarded);
    let mut scratch = vec![0u8; 2048];
    let to_va = h.replica.tables().vas[&s2.va].clone();
    let Encap::Send { packet, dest } = h.processor.encapsulate(
        &to_va,
        &mut buf,
        HEADROOM..HEADROOM + forwarded.len(),
        &mut scratch,
    ) else {
        panic!("not encapsulated");
    };
    assert_eq!(dest, s2.outer);
    let mut down = s2.downlink();
    let opened = down.open(&mut buf[packet]).unwrap();
    assert_eq!(opened.next_header, 47);
    assert_eq!(gre::decap(opened.payload).unwrap(), (ETH_P_IPV4, 4));
    assert_eq!(&opened.payload[4..], &forwarded[..]);

    // One hairpin event for the pair, not one per packet.
    let Ok(DatapathEvent::Hairpin(event)) = h.events.try_recv() else {
        panic!("no hairpin event");
    };
    assert_eq!((event.from, event.to), (s1.va, s2.va));
    assert_eq!(event.head(), &forwarded[..event.head().len()][..]);
    assert_eq!(event.src, Ipv4Addr::new(192, 168, 1, 10));
    let mut again = s1.seal(&up, &ping);
    assert!(matches!(
        from(&mut h, &s1, &mut again),
        FromNet::Hairpin { .. }
    ));
    assert!(
        h.events.try_recv().is_err(),
        "second packet of the pair reported again"
    );
    assert_eq!(
        h.replica.tables().vas[&s1.va]
            .stats
            .get(VaCounter::Hairpinned),
        2
    );
}

/// A hairpinned packet whose TTL runs out is dropped and counted, and the
/// count reaches the report, its JSON and `show interfaces virtual-access`.
#[test]
fn spoke_to_spoke_with_ttl_1_is_dropped_and_shown_as_ttl_expired() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let s2 = Spoke::new(2, Mode::Transport, GCM, None);
    let mut m = Master::default();
    s1.install(&mut m);
    s2.install(&mut m);
    let global = Arc::new(GlobalStats::default());
    let mut processor = Processor::new(global.clone(), None);
    let mut replica = m.follow();
    processor.sync(&mut replica);
    let tables = replica.tables();
    let mut ping = icmp_echo(
        Ipv4Addr::new(192, 168, 1, 10),
        Ipv4Addr::new(192, 168, 2, 10),
        20,
    );
    ping[8] = 1;
    ping[10..12].fill(0);
    let sum = ipv4::checksum(&ping[..20]);
    ping[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut wire = s1.seal(&s1.uplink(), &ping);
    assert_eq!(
        processor.from_network(tables, s1.outer, &mut wire),
        FromNet::Done
    );
    assert_eq!(global.get(GlobalCounter::TtlExpired), 1);
    assert_eq!(tables.vas[&s1.va].stats.get(VaCounter::Hairpinned), 0);

    let (virtual_access, sas) = m.counters();
    let mut report = DatapathReport {
        kind: "userspace".into(),
        workers: 1,
        virtual_access,
        sas,
        ..DatapathReport::default()
    };
    global.fill(&mut report.global);
    assert_eq!(report.global.ttl_expired, 1);
    assert_eq!(
        report.virtual_access[0].rx_packets, 1,
        "received, then dropped"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["global"]["ttl_expired"], 1, "{json}");
    let text = crate::datapath::show::render_interfaces(&report);
    assert!(text.contains("1 TTL expired"), "{text}");
}

/// A spoke's tables: the tunnel to its hub (no template) carrying the
/// hub's summary, and a shortcut tunnel (template) to the owner of LAN 2.
fn spoke_with_shortcut() -> (Spoke, Spoke, Hub) {
    let to_hub = Spoke::new(1, Mode::Transport, GCM, None);
    let shortcut = Spoke::new(2, Mode::Transport, GCM, None);
    let mut m = Master::default();
    to_hub.install_with(&mut m, None, &["192.168.0.0/16".parse().unwrap()]);
    shortcut.install(&mut m);
    Spoke::new(3, Mode::Transport, GCM, None).install(&mut m);
    (to_hub, shortcut, hub_from(m))
}

#[test]
fn a_spokes_hub_tunnel_and_shortcuts_accept_each_others_sources() {
    let (to_hub, shortcut, mut h) = spoke_with_shortcut();
    // LAN 2 -> our LAN still through the hub while LAN 2's shortcut is up.
    let ping = icmp_echo(
        Ipv4Addr::new(192, 168, 2, 10),
        Ipv4Addr::new(192, 168, 5, 10),
        56,
    );
    let mut wire = to_hub.seal(&to_hub.uplink(), &ping);
    assert!(matches!(
        from(&mut h, &to_hub, &mut wire),
        FromNet::ToTun(_)
    ));
    assert_eq!(
        h.replica.tables().vas[&to_hub.va]
            .stats
            .get(VaCounter::RxSpoofed),
        0
    );
    // And the other way: a source still routed via the hub's summary
    // answers through its new shortcut.
    let early = icmp_echo(
        Ipv4Addr::new(192, 168, 9, 10),
        Ipv4Addr::new(192, 168, 5, 10),
        56,
    );
    let from_shortcut = shortcut.uplink();
    let mut wire = shortcut.seal(&from_shortcut, &early);
    assert!(matches!(
        from(&mut h, &shortcut, &mut wire),
        FromNet::ToTun(_)
    ));
    // Between two shortcuts it stays strict: LAN 3 is spoke 3's.
    let forged = icmp_echo(
        Ipv4Addr::new(192, 168, 3, 10),
        Ipv4Addr::new(192, 168, 5, 10),
        56,
    );
    let mut wire = shortcut.seal(&from_shortcut, &forged);
    assert!(matches!(from(&mut h, &shortcut, &mut wire), FromNet::Done));
    assert_eq!(
        h.replica.tables().vas[&shortcut.va]
            .stats
            .get(VaCounter::RxSpoofed),
        1
    );
}

#[test]
fn traffic_from_a_shortcut_to_the_spokes_own_lan_goes_to_the_host() {
    let (_, shortcut, mut h) = spoke_with_shortcut();
    // Our LAN (192.168.5.0/24) is only in the host's table; the datapath's
    // best match is the hub's summary. Hairpinning it to the hub would
    // send it away from its destination.
    let ping = icmp_echo(
        Ipv4Addr::new(192, 168, 2, 10),
        Ipv4Addr::new(192, 168, 5, 10),
        56,
    );
    let mut wire = shortcut.seal(&shortcut.uplink(), &ping);
    assert!(matches!(
        from(&mut h, &shortcut, &mut wire),
        FromNet::ToTun(_)
    ));
}

#[test]
fn no_hairpin_event_toward_a_tunnel_mode_peer_which_cannot_speak_nhrp() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let swan = Spoke::new(2, Mode::Tunnel, GCM, None);
    let mut h = hub(&[&s1, &swan]);
    let ping = icmp_echo(
        Ipv4Addr::new(192, 168, 1, 10),
        Ipv4Addr::new(192, 168, 2, 10),
        100,
    );
    let mut wire = s1.seal(&s1.uplink(), &ping);
    assert!(matches!(
        from(&mut h, &s1, &mut wire),
        FromNet::Hairpin { .. }
    ));
    assert!(h.events.try_recv().is_err(), "no redirect can come of it");
}

#[test]
fn nhrp_in_gre_goes_to_the_control_plane() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let up = s1.uplink();
    let at = up.cipher().payload_offset();
    let nhrp = [0u8, 1, 8, 0, 0, 0, 0, 0, 0, 0];
    let mut buf = vec![0u8; 200];
    buf[at..at + 4].copy_from_slice(&[0, 0, 0x20, 0x01]);
    buf[at + 4..at + 4 + nhrp.len()].copy_from_slice(&nhrp);
    let n = up
        .seal(&mut buf, 4 + nhrp.len(), 47, &mut SystemRng)
        .unwrap();
    assert_eq!(from(&mut h, &s1, &mut buf[..n]), FromNet::Done);
    let Ok(DatapathEvent::Nhrp { va, packet }) = h.events.try_recv() else {
        panic!("no NHRP event");
    };
    assert_eq!((va, packet.as_slice()), (s1.va, &nhrp[..]));
}

#[test]
fn from_the_tun_device_syns_are_clamped_and_big_df_packets_get_icmp() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let mut scratch = vec![0u8; 2048];
    let syn = tcp_syn(
        Ipv4Addr::new(192, 168, 0, 10),
        Ipv4Addr::new(192, 168, 1, 10),
    );
    let mut buf = vec![0u8; 2048 + HEADROOM + TAILROOM];
    buf[HEADROOM..HEADROOM + syn.len()].copy_from_slice(&syn);
    let to = h
        .processor
        .route(h.replica.tables(), &buf[HEADROOM..HEADROOM + syn.len()])
        .unwrap()
        .clone();
    assert_eq!(to.spec.id, s1.va);
    let Encap::Send { packet, .. } =
        h.processor
            .encapsulate(&to, &mut buf, HEADROOM..HEADROOM + syn.len(), &mut scratch)
    else {
        panic!("SYN not sent");
    };
    let mut down = s1.downlink();
    let opened = down.open(&mut buf[packet]).unwrap();
    let inner = &opened.payload[4..];
    assert_eq!(&inner[40..44], &[2, 4, 0x05, 0x50], "MSS 1460 -> 1360");
    assert_eq!(
        tcp_checksum(inner),
        u16::from_be_bytes([inner[36], inner[37]])
    );

    // 1450 bytes with DF over a 1400-byte tunnel: ICMP type 3 code 4, MTU 1400.
    let big = icmp_echo(
        Ipv4Addr::new(192, 168, 0, 10),
        Ipv4Addr::new(192, 168, 1, 10),
        1430,
    );
    buf[HEADROOM..HEADROOM + big.len()].copy_from_slice(&big);
    let Encap::TooBig { icmp_len } =
        h.processor
            .encapsulate(&to, &mut buf, HEADROOM..HEADROOM + big.len(), &mut scratch)
    else {
        panic!("not refused");
    };
    let icmp = &scratch[..icmp_len];
    assert_eq!(&icmp[16..20], &[192, 168, 0, 10], "back to the sender");
    assert_eq!(&icmp[12..16], &[10, 1, 1, 1], "from the unnumbered address");
    assert_eq!((icmp[20], icmp[21]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1400);
    assert_eq!(
        h.replica.tables().vas[&s1.va]
            .stats
            .get(VaCounter::TxTooBig),
        1
    );

    // Without DF it goes (the outer packet may be fragmented).
    let mut no_df = big.clone();
    no_df[6] = 0;
    let sum = {
        no_df[10] = 0;
        no_df[11] = 0;
        ipv4::checksum(&no_df[..20])
    };
    no_df[10..12].copy_from_slice(&sum.to_be_bytes());
    buf[HEADROOM..HEADROOM + no_df.len()].copy_from_slice(&no_df);
    assert!(matches!(
        h.processor.encapsulate(
            &to,
            &mut buf,
            HEADROOM..HEADROOM + no_df.len(),
            &mut scratch
        ),
        Encap::Send { .. }
    ));

    // No route: counted, nothing sent.
    let stray = icmp_echo(Ipv4Addr::new(192, 168, 0, 10), Ipv4Addr::new(8, 8, 8, 8), 8);
    assert!(h.processor.route(h.replica.tables(), &stray).is_none());
    assert_eq!(h.global.get(GlobalCounter::NoRoute), 1);
}

#[test]
fn workers_rebuild_their_inbound_sas_when_the_tables_change() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut m = Master::default();
    s1.install(&mut m);
    let global = Arc::new(GlobalStats::default());
    let mut p = Processor::new(global.clone(), None);
    let mut replica = m.follow();
    p.sync(&mut replica);
    let up = s1.uplink();
    let ping = icmp_echo(s1.inner, Ipv4Addr::new(192, 168, 0, 10), 8);
    assert!(matches!(
        p.from_network(replica.tables(), s1.outer, &mut s1.seal(&up, &ping)),
        FromNet::ToTun(_)
    ));
    m.remove_va(s1.va).unwrap();
    m.publish();
    p.sync(&mut replica);
    assert_eq!(
        p.from_network(replica.tables(), s1.outer, &mut s1.seal(&up, &ping)),
        FromNet::Done
    );
    assert_eq!(global.get(GlobalCounter::UnknownSpi), 1);
}

/// On a spoke the hub's pushed 10.1.1.0/24 covers the spoke's own
/// negotiated address: packets for it still go to the host.
#[test]
fn packets_for_our_own_tunnel_address_go_to_the_host_despite_a_covering_route() {
    let hub_side = Spoke::new(1, Mode::Transport, GCM, None);
    let mut m = Master::default();
    m.create_va(&VirtualAccessSpec {
        id: hub_side.va,
        name: "Tunnel1".into(),
        template: None,
        unnumbered: Ipv4Addr::new(10, 1, 1, 100),
        mtu: 1400,
        tcp_adjust_mss: None,
        nhrp_network_id: None,
        peer_inner: None,
        local_outer: SocketAddrV4::new(HUB, 4500),
        remote_outer: hub_side.outer,
    })
    .unwrap();
    m.install_sa(&SaPair {
        va: hub_side.va,
        spi_in: hub_side.spi_in,
        spi_out: hub_side.spi_out,
        encr: GCM,
        integ: None,
        inbound: hub_side.up.clone(),
        outbound: hub_side.down.clone(),
        mode: Mode::Transport,
        encap: Some((4500, 4500)),
        local: HUB,
        remote: *hub_side.outer.ip(),
        esn: false,
        lifetime: SaLifetime::default(),
        defer_outbound: false,
    })
    .unwrap();
    m.add_route(&Route {
        prefix: "10.1.1.0/24".parse().unwrap(),
        va: hub_side.va,
        next_hop: None,
    })
    .unwrap();
    let mut replica = m.follow();
    let mut p = Processor::new(Arc::new(GlobalStats::default()), None);
    p.sync(&mut replica);
    let tables = replica.tables();
    let reply = icmp_echo(Ipv4Addr::new(10, 1, 1, 1), Ipv4Addr::new(10, 1, 1, 100), 8);
    let mut wire = hub_side.seal(&hub_side.uplink(), &reply);
    assert!(matches!(
        p.from_network(tables, hub_side.outer, &mut wire),
        FromNet::ToTun(_)
    ));
}

/// The SPI an ESP packet carries.
fn spi_of(esp: &[u8]) -> u32 {
    u32::from_be_bytes(esp[..4].try_into().unwrap())
}

/// A CHILD_SA rekey, make-before-break (RFC 7296 section 2.8): the new
/// pair takes the outbound traffic at once, the old inbound SA decrypts
/// until it is removed, and the report lists every pair meanwhile.
#[test]
fn a_rekey_responders_new_pair_takes_the_outbound_traffic_only_when_the_old_one_goes() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let s1b = s1.rekeyed(1);
    h.master
        .install_sa(&SaPair {
            defer_outbound: true,
            ..s1b.sa_pair()
        })
        .unwrap();
    h.publish();
    // The peer may not have the new inbound SA yet: the old one sends.
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1.spi_out);
    let new_up = s1b.uplink();
    assert!(
        matches!(from(&mut h, &s1, &mut s1.ping(&new_up)), FromNet::ToTun(_)),
        "the new inbound SA decrypts at once"
    );
    // The old pair's DELETE is done: the new one sends at once, while the
    // old inbound SA still opens what was on its way.
    h.master.retire_sa(s1.va, s1.spi_in).unwrap();
    h.publish();
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1b.spi_out);
    let old_up = s1.uplink();
    assert!(
        matches!(from(&mut h, &s1, &mut s1.ping(&old_up)), FromNet::ToTun(_)),
        "a retired pair still decrypts"
    );
    h.master.remove_sa(s1.va, s1.spi_in).unwrap();
    h.publish();
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1b.spi_out);
}

/// The second rekey a responder answers waits for its DELETE like the
/// first: the pair that itself came deferred, now the only live one, keeps
/// sending meanwhile. (It once lost the echo that fell between the
/// response and the DELETE: both pairs deferred, the newest sent.)
#[test]
fn a_responders_second_rekey_in_a_row_is_deferred_too() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let s1b = s1.rekeyed(1);
    let s1c = s1.rekeyed(2);
    h.master
        .install_sa(&SaPair {
            defer_outbound: true,
            ..s1b.sa_pair()
        })
        .unwrap();
    h.master.retire_sa(s1.va, s1.spi_in).unwrap();
    h.master.remove_sa(s1.va, s1.spi_in).unwrap();
    h.publish();
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1b.spi_out);
    h.master
        .install_sa(&SaPair {
            defer_outbound: true,
            ..s1c.sa_pair()
        })
        .unwrap();
    h.publish();
    assert_eq!(
        spi_of(&h.send(&s1).unwrap().0),
        s1b.spi_out,
        "the peer may not have the newest inbound SA yet"
    );
    h.master.retire_sa(s1.va, s1b.spi_in).unwrap();
    h.publish();
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1c.spi_out);
}

#[test]
fn make_before_break_outbound_moves_at_once_and_the_old_inbound_drains_until_removed() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let old_up = s1.uplink();
    assert!(matches!(
        from(&mut h, &s1, &mut s1.ping(&old_up)),
        FromNet::ToTun(_)
    ));
    let (esp, _) = h.send(&s1).unwrap();
    assert_eq!(spi_of(&esp), s1.spi_out);

    let s1b = s1.rekeyed(1);
    h.master.install_sa(&s1b.sa_pair()).unwrap();
    h.publish();
    let (mut esp, dest) = h.send(&s1).unwrap();
    assert_eq!(
        spi_of(&esp),
        s1b.spi_out,
        "outbound on the new pair at once"
    );
    assert_eq!(dest, s1.outer);
    assert_eq!(s1b.downlink().open(&mut esp).unwrap().seq, 1);
    // Both inbound SAs decrypt: the peer may still send on the old one.
    let new_up = s1b.uplink();
    for _ in 0..2 {
        assert!(matches!(
            from(&mut h, &s1, &mut s1.ping(&old_up)),
            FromNet::ToTun(_)
        ));
        assert!(matches!(
            from(&mut h, &s1, &mut s1.ping(&new_up)),
            FromNet::ToTun(_)
        ));
    }
    let (_, sas) = h.master.counters();
    let listed: Vec<(u32, u32, u64, u64)> = sas
        .iter()
        .map(|c| (c.spi_in, c.spi_out, c.rx_packets, c.tx_packets))
        .collect();
    assert_eq!(
        listed,
        [
            (s1.spi_in, s1.spi_out, 3, 1),
            (s1b.spi_in, s1b.spi_out, 2, 1)
        ],
        "the report lists both pairs with their counters"
    );

    // The old pair's DELETE: its ESP is now an unknown SPI.
    h.master.remove_sa(s1.va, s1.spi_in).unwrap();
    h.publish();
    assert_eq!(from(&mut h, &s1, &mut s1.ping(&old_up)), FromNet::Done);
    assert_eq!(h.global.get(GlobalCounter::UnknownSpi), 1);
    assert!(matches!(
        from(&mut h, &s1, &mut s1.ping(&new_up)),
        FromNet::ToTun(_)
    ));
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1b.spi_out);
    assert!(matches!(
        h.master.remove_sa(s1.va, s1.spi_in),
        Err(DatapathError::NoSuchSa(_))
    ));
    let (_, sas) = h.master.counters();
    assert_eq!(sas.len(), 1);

    // Removing the newest pair hands outbound back to the newest left.
    let s1c = s1.rekeyed(2);
    h.master.install_sa(&s1c.sa_pair()).unwrap();
    h.publish();
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1c.spi_out);
    h.master.remove_sa(s1.va, s1c.spi_in).unwrap();
    h.publish();
    let (mut esp, _) = h.send(&s1).unwrap();
    assert_eq!(spi_of(&esp), s1b.spi_out, "back on pair 2");
    let mut down = s1b.downlink();
    down.catch_up(2);
    assert_eq!(down.open(&mut esp).unwrap().seq, 3, "its counter went on");
    // The last pair gone: nothing to send with.
    h.master.remove_sa(s1.va, s1b.spi_in).unwrap();
    h.publish();
    assert!(h.send(&s1).is_none());
}

/// The pair with `lifetime`, installed at `at` on a fresh hub for `s`.
fn hub_with_lifetime(s: &Spoke, lifetime: SaLifetime, at: std::time::Instant) -> Hub {
    let mut m = Master::default();
    s.install_with(&mut m, Some(1), &[s.lan]);
    m.remove_sa(s.va, s.spi_in).unwrap();
    let mut pair = s.sa_pair();
    pair.lifetime = lifetime;
    m.install_sa_starting_at(&pair, 1, at).unwrap();
    hub_from(m)
}

fn expired(va: VaId, spi_in: u32, hard: bool) -> DatapathEvent {
    DatapathEvent::SaExpired { va, spi_in, hard }
}

/// Bytes count both directions; the soft limit is reported once, the hard
/// one removes the SA first and is reported then.
#[test]
fn byte_lifetimes_report_soft_once_and_hard_after_removing_the_sa() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let now = std::time::Instant::now();
    let lifetime = SaLifetime {
        soft_bytes: Some(500),
        hard_bytes: Some(1000),
        ..SaLifetime::default()
    };
    let mut h = hub_with_lifetime(&s1, lifetime, now);
    let up = s1.uplink();
    let bytes = |h: &Hub| {
        h.master
            .counters()
            .1
            .first()
            .map_or((0, 0), |c| (c.rx_bytes, c.tx_bytes))
    };
    // Pings both ways, the limits checked after each packet: each event
    // comes at the first check past its limit, counting both directions.
    let (mut before, mut soft, mut hard) = (0, None, None);
    for i in 0..40 {
        if i % 2 == 0 {
            assert!(matches!(
                from(&mut h, &s1, &mut s1.ping(&up)),
                FromNet::ToTun(_)
            ));
        } else {
            h.send(&s1).unwrap();
        }
        let (rx, tx) = bytes(&h);
        let e = h.master.expire(now);
        for event in &e.events {
            match event {
                DatapathEvent::SaExpired { hard: false, .. } => {
                    assert!(soft.is_none(), "soft once only");
                    assert!(before < 500 && rx + tx >= 500, "{before} -> {rx}+{tx}");
                    assert!(rx > 0 && tx > 0);
                    soft = Some(event.clone());
                }
                DatapathEvent::SaExpired { hard: true, .. } => {
                    assert!(before < 1000 && rx + tx >= 1000, "{before} -> {rx}+{tx}");
                    assert!(e.removed);
                    hard = Some(event.clone());
                }
                other => panic!("{other:?}"),
            }
        }
        before = rx + tx;
        if hard.is_some() {
            break;
        }
    }
    assert_eq!(soft, Some(expired(s1.va, s1.spi_in, false)));
    assert_eq!(hard, Some(expired(s1.va, s1.spi_in, true)));
    assert!(h.master.counters().1.is_empty(), "gone from the report");
    h.publish();
    assert_eq!(from(&mut h, &s1, &mut s1.ping(&up)), FromNet::Done);
    assert_eq!(h.global.get(GlobalCounter::UnknownSpi), 1);
    assert!(h.send(&s1).is_none());
    assert!(h.master.expire(now).events.is_empty(), "hard once only");
}

/// Time limits count from the install, per pair: a rekeyed pair has its
/// own clock, and the old one's hard expiry leaves it carrying traffic.
#[test]
fn time_lifetimes_are_per_pair_and_counted_from_the_install() {
    use std::time::Duration;
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let t0 = std::time::Instant::now();
    let lifetime = SaLifetime {
        soft_seconds: Some(10),
        hard_seconds: Some(20),
        ..SaLifetime::default()
    };
    let mut h = hub_with_lifetime(&s1, lifetime, t0);
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert!(h.master.expire(at(9)).events.is_empty());
    assert_eq!(
        h.master.expire(at(10)).events,
        [expired(s1.va, s1.spi_in, false)]
    );
    // The rekey, with the same lifetimes, 12 s in.
    let s1b = s1.rekeyed(1);
    let mut pair = s1b.sa_pair();
    pair.lifetime = lifetime;
    h.master.install_sa_starting_at(&pair, 1, at(12)).unwrap();
    assert!(h.master.expire(at(19)).events.is_empty());
    let e = h.master.expire(at(20));
    assert_eq!(e.events, [expired(s1.va, s1.spi_in, true)]);
    h.publish();
    assert_eq!(spi_of(&h.send(&s1).unwrap().0), s1b.spi_out);
    assert!(matches!(
        from(&mut h, &s1, &mut s1.ping(&s1b.uplink())),
        FromNet::ToTun(_)
    ));
    assert_eq!(
        h.master.expire(at(22)).events,
        [expired(s1.va, s1b.spi_in, false)]
    );
    assert_eq!(
        h.master.expire(at(32)).events,
        [expired(s1.va, s1b.spi_in, true)]
    );
}

/// Without ESN an SA is reported for rekey 2^20 packets before its 32-bit
/// counter ends, and past the end it sends nothing; with ESN the same
/// number is nowhere near its end.
#[test]
fn a_sequence_number_near_its_end_asks_for_a_rekey_and_never_wraps() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let now = std::time::Instant::now();
    for esn in [false, true] {
        let mut m = Master::default();
        s1.install_with(&mut m, Some(1), &[s1.lan]);
        m.remove_sa(s1.va, s1.spi_in).unwrap();
        let mut pair = s1.sa_pair();
        pair.esn = esn;
        let start = (1u64 << 32) - (1 << 20) - 2;
        m.install_sa_starting_at(&pair, start, now).unwrap();
        let mut h = hub_from(m);
        h.send(&s1).unwrap();
        assert!(h.master.expire(now).events.is_empty(), "esn {esn}");
        h.send(&s1).unwrap();
        let events = h.master.expire(now).events;
        if esn {
            assert!(events.is_empty());
        } else {
            assert_eq!(events, [expired(s1.va, s1.spi_in, false)]);
        }
    }
    // At the very end: the last number goes, then nothing.
    let mut m = Master::default();
    s1.install_with(&mut m, Some(1), &[s1.lan]);
    m.remove_sa(s1.va, s1.spi_in).unwrap();
    m.install_sa_starting_at(&s1.sa_pair(), u64::from(u32::MAX), now)
        .unwrap();
    let mut h = hub_from(m);
    let (esp, _) = h.send(&s1).unwrap();
    assert_eq!(&esp[4..8], &[0xff; 4]);
    assert!(h.send(&s1).is_none(), "no wrap to 0");
}

/// ESN through the datapath: a pair started just below 2^32 carries
/// traffic across the boundary both ways.
#[test]
fn an_esn_pair_started_below_2_32_carries_traffic_across_it_both_ways() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let start = (1u64 << 32) - 3;
    let mut m = Master::default();
    s1.install_with(&mut m, Some(1), &[s1.lan]);
    m.remove_sa(s1.va, s1.spi_in).unwrap();
    let mut pair = s1.sa_pair();
    pair.esn = true;
    m.install_sa_starting_at(&pair, start, std::time::Instant::now())
        .unwrap();
    let mut h = hub_from(m);
    let up = s1.uplink().with_esn(true).starting_at(start);
    let mut down = s1.downlink().with_esn(true);
    for i in 0..6 {
        let mut esp = s1.ping(&up);
        assert!(
            matches!(from(&mut h, &s1, &mut esp), FromNet::ToTun(_)),
            "inbound packet {i}"
        );
        let (mut esp, _) = h.send(&s1).unwrap();
        assert_eq!(down.open(&mut esp).unwrap().seq, start + i);
    }
    let out = h.replica.tables().vas[&s1.va].out.clone().unwrap();
    assert_eq!(out.stats.get(SaCounter::RxPackets), 6);
    assert_eq!(out.stats.get(SaCounter::AuthFailed), 0);
    assert_eq!(out.sa.sequence(), (1 << 32) + 2);
    // The same pair without ESN on our side would fail the ICV past 2^32.
    let mut m = Master::default();
    s1.install(&mut m);
    let mut plain = hub_from(m);
    let late = s1.uplink().with_esn(true).starting_at((1 << 32) + 5);
    assert_eq!(from(&mut plain, &s1, &mut s1.ping(&late)), FromNet::Done);
    let out = plain.replica.tables().vas[&s1.va].out.clone().unwrap();
    assert_eq!(out.stats.get(SaCounter::AuthFailed), 1);
}

/// NAT rebinding (RFC 7296 section 2.23): authenticated ESP from a new
/// endpoint is delivered and reported (at most once a second per SA);
/// forgeries and replays from there are not. Sending moves only with
/// `update_peer`, for every pair of the interface, and the replay window
/// survives it.
#[test]
fn peer_moved_is_reported_for_authenticated_esp_only_and_update_peer_moves_all_pairs() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut h = hub(&[&s1]);
    let up = s1.uplink();
    let first = s1.ping(&up);
    assert!(matches!(
        from(&mut h, &s1, &mut first.clone()),
        FromNet::ToTun(_)
    ));
    let s1b = s1.rekeyed(1);
    h.master.install_sa(&s1b.sa_pair()).unwrap();
    h.publish();
    let moved = SocketAddrV4::new(*s1.outer.ip(), 31_000);
    let mut forged = s1.ping(&up);
    forged[20] ^= 1;
    assert_eq!(
        h.processor
            .from_network(h.replica.tables(), moved, &mut forged),
        FromNet::Done
    );
    assert_eq!(
        h.processor
            .from_network(h.replica.tables(), moved, &mut first.clone()),
        FromNet::Done,
        "a replay"
    );
    assert!(h.events().is_empty(), "nothing authenticated yet");
    assert_eq!(h.global.get(GlobalCounter::WrongEndpoint), 0);

    // Sealed now, delivered only after the move (reordered on the way).
    let held = s1.ping(&up);
    let started = std::time::Instant::now();
    assert!(matches!(
        h.processor
            .from_network(h.replica.tables(), moved, &mut s1.ping(&up)),
        FromNet::ToTun(_)
    ));
    assert_eq!(
        h.events(),
        [DatapathEvent::PeerMoved {
            va: s1.va,
            spi_in: s1.spi_in,
            remote: moved,
        }]
    );
    for _ in 0..20 {
        assert!(matches!(
            h.processor
                .from_network(h.replica.tables(), moved, &mut s1.ping(&up)),
            FromNet::ToTun(_)
        ));
    }
    let again = h.events().len() as u64;
    assert!(
        again <= started.elapsed().as_secs(),
        "{again} more reports within {:?}",
        started.elapsed()
    );
    assert_eq!(h.global.get(GlobalCounter::WrongEndpoint), 21);
    assert_eq!(h.send(&s1).unwrap().1, s1.outer, "not moved by itself");

    h.master.update_peer(s1.va, moved).unwrap();
    h.publish();
    let (esp, dest) = h.send(&s1).unwrap();
    assert_eq!((spi_of(&esp), dest), (s1b.spi_out, moved));
    for sender in [&up, &s1b.uplink()] {
        assert!(matches!(
            h.processor
                .from_network(h.replica.tables(), moved, &mut s1.ping(sender)),
            FromNet::ToTun(_)
        ));
    }
    assert_eq!(
        h.global.get(GlobalCounter::WrongEndpoint),
        21,
        "both pairs take the new endpoint"
    );
    assert!(h.events().is_empty());
    assert_eq!(
        h.processor
            .from_network(h.replica.tables(), moved, &mut first.clone()),
        FromNet::Done,
        "the replay window outlived the move"
    );
    assert!(
        matches!(
            h.processor
                .from_network(h.replica.tables(), moved, &mut held.clone()),
            FromNet::ToTun(_)
        ),
        "with what it had not seen yet"
    );
    let (vas, _) = h.master.counters();
    assert_eq!(vas[0].remote_outer, moved.to_string());
    assert!(matches!(
        h.master.update_peer(VaId::virtual_access(99), moved),
        Err(DatapathError::NoSuchInterface(_))
    ));
}

/// After a NAT rebinding the kernel may hand the peer's packets to another
/// worker: it starts from where the first one got to, so what that one
/// accepted is refused, and ESN inference starts in the right subspace.
#[test]
fn a_worker_that_gets_an_sa_late_refuses_what_another_accepted_and_infers_esn_right() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let start = (1u64 << 32) - 2;
    let mut m = Master::default();
    s1.install_with(&mut m, Some(1), &[s1.lan]);
    m.remove_sa(s1.va, s1.spi_in).unwrap();
    let mut pair = s1.sa_pair();
    pair.esn = true;
    m.install_sa_starting_at(&pair, 1, std::time::Instant::now())
        .unwrap();
    let (mut ra, mut rb) = (m.follow(), m.follow());
    let global = Arc::new(GlobalStats::default());
    let mut a = Processor::new(global.clone(), None);
    let mut b = Processor::new(global.clone(), None);
    a.sync(&mut ra);
    b.sync(&mut rb);
    let tables = ra.tables();
    let up = s1.uplink().with_esn(true).starting_at(start);
    let seen: Vec<Vec<u8>> = (0..4).map(|_| s1.ping(&up)).collect();
    for p in &seen {
        assert!(matches!(
            a.from_network(tables, s1.outer, &mut p.clone()),
            FromNet::ToTun(_)
        ));
    }
    let moved = SocketAddrV4::new(*s1.outer.ip(), 31_000);
    for p in &seen {
        assert_eq!(b.from_network(tables, moved, &mut p.clone()), FromNet::Done);
    }
    let out = tables.vas[&s1.va].out.clone().unwrap();
    assert_eq!(out.stats.get(SaCounter::Replayed), 4);
    // 2^32 + 2 arrives as low half 2: B infers the high half 1.
    assert!(matches!(
        b.from_network(tables, moved, &mut s1.ping(&up)),
        FromNet::ToTun(_)
    ));
    assert_eq!(out.stats.get(SaCounter::AuthFailed), 0);
}

/// The housekeeping thread applies lifetimes on its own, once a second:
/// soft, then hard with the SA gone from the workers' tables. Bounded
/// waits, wide margins.
#[test]
fn the_housekeeping_thread_reports_soft_then_hard_and_removes_the_sa() {
    use super::housekeeping::Housekeeping;
    use std::sync::{Mutex, atomic::AtomicBool};
    use std::time::{Duration, Instant};

    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut m = Master::default();
    s1.install_with(&mut m, Some(1), &[s1.lan]);
    m.remove_sa(s1.va, s1.spi_in).unwrap();
    let mut pair = s1.sa_pair();
    pair.lifetime = SaLifetime {
        soft_seconds: Some(1),
        hard_seconds: Some(2),
        ..SaLifetime::default()
    };
    m.install_sa(&pair).unwrap();
    let mut replica = m.follow();
    let (tx, mut rx) = mpsc::channel(16);
    let global = Arc::new(GlobalStats::default());
    let mut worker = Processor::new(global.clone(), None);
    worker.sync(&mut replica);
    assert!(worker.inbound_specs().any(|(spi, _)| spi == s1.spi_in));
    let hk = Housekeeping {
        master: Arc::new(Mutex::new(m)),
        events: Some(tx),
        global: global.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || hk.run(&stop))
    };
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < 2 && started.elapsed() < Duration::from_secs(30) {
        match rx.try_recv() {
            Ok(e) => got.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    println!("soft and hard expiry after {:?}", started.elapsed());
    assert_eq!(
        got,
        [
            expired(s1.va, s1.spi_in, false),
            expired(s1.va, s1.spi_in, true)
        ]
    );
    worker.sync(&mut replica);
    assert_eq!(worker.inbound_specs().count(), 0);
    assert!(replica.tables().vas[&s1.va].out.is_none());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.thread().unpark();
    thread.join().unwrap();
}

/// A full event queue never blocks housekeeping: the event is lost and
/// counted.
#[test]
fn expiry_events_that_find_the_queue_full_are_counted_not_waited_for() {
    use super::housekeeping::Housekeeping;
    use std::sync::Mutex;

    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let t0 = std::time::Instant::now();
    let lifetime = SaLifetime {
        hard_seconds: Some(5),
        ..SaLifetime::default()
    };
    let Hub {
        master,
        mut replica,
        mut processor,
        ..
    } = hub_with_lifetime(&s1, lifetime, t0);
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(expired(s1.va, 1, false)).unwrap();
    let global = Arc::new(GlobalStats::default());
    let hk = Housekeeping {
        master: Arc::new(Mutex::new(master)),
        events: Some(tx),
        global: global.clone(),
    };
    hk.tick(t0 + std::time::Duration::from_secs(5));
    assert_eq!(global.get(GlobalCounter::HairpinEventsLost), 1);
    processor.sync(&mut replica);
    assert!(
        processor.inbound_specs().count() == 0 && replica.tables().vas.contains_key(&s1.va),
        "published without the SA"
    );
    assert_eq!(rx.try_recv().unwrap(), expired(s1.va, 1, false));
}
