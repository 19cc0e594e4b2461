//! What the hub's uplink carries: a capture of its wire
//! ([`FlexLab::capture_hub_uplink`]) and the check that it holds only IKE
//! and ESP-in-UDP ([`check_uplink_capture`]).

use std::{net::Ipv4Addr, path::Path};

use anyhow::{Result, bail};

use crate::capture::{
    Capture, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PcapPacket, read_pcap,
};

use super::FlexLab;

/// Prefixes that only ever appear inside the tunnels: the LANs and the
/// tunnel addresses. On the uplink, an IP header with one of these is
/// cleartext that should have been encrypted.
pub const INNER_PREFIXES: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(10, 1, 1, 0), 24),
];

impl FlexLab {
    /// Starts tcpdump (every packet, no filter) on the wire of the hub's
    /// uplink. It runs on the bridge side of the hub's veth, in the `wan`
    /// namespace: the wire as the WAN sees it, before the hub's XDP program
    /// (which drops some packets before a capture on the hub's side would
    /// see them). The file is `NAME.pcap` in the lab's directory.
    pub fn capture_hub_uplink(&self, name: &str) -> Result<Capture> {
        let path = self.lab.temp_dir().join(format!("{name}.pcap"));
        Capture::start(&self.wan, self.hub_port.name(), "", &path)
    }
}

/// What a capture of the hub's uplink held, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkSummary {
    pub packets: usize,
    /// IKE: UDP 500, and UDP 4500 behind the non-ESP marker.
    pub ike: usize,
    /// ESP in UDP 4500 (RFC 3948).
    pub esp_in_udp: usize,
    /// NAT-T keepalives (a single 0xff on UDP 4500).
    pub nat_keepalives: usize,
    /// Non-first fragments of UDP between outer addresses.
    pub udp_fragments: usize,
    /// ARP, IGMP to 224.0.0.0/24, and IPv6 neighbour discovery / MLD on
    /// link-local addresses.
    pub link_control: usize,
    /// What should not be there, one line per packet (packet number first).
    pub violations: Vec<String>,
}

impl std::fmt::Display for UplinkSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} packets: {} IKE, {} ESP-in-UDP, {} NAT-T keepalives, {} UDP fragments, \
             {} ARP/IGMP/ND, {} not allowed",
            self.packets,
            self.ike,
            self.esp_in_udp,
            self.nat_keepalives,
            self.udp_fragments,
            self.link_control,
            self.violations.len()
        )
    }
}

/// Reads a capture of the hub's uplink ([`FlexLab::capture_hub_uplink`])
/// and fails unless it holds only IKE and ESP-in-UDP (plus NAT-T
/// keepalives, ARP, IGMP and IPv6 link-local control): no ICMP, TCP or other UDP,
/// no raw ESP, no IP header with an inner address ([`INNER_PREFIXES`]) and
/// no ESP payload that looks like a cleartext inner IPv4 header. Returns
/// the summary; check `esp_in_udp > 0` to know traffic was there at all.
pub fn check_uplink_capture(pcap: &Path) -> Result<UplinkSummary> {
    let packets = read_pcap(pcap)?;
    let summary = classify_uplink(&packets, INNER_PREFIXES);
    if summary.violations.is_empty() {
        return Ok(summary);
    }
    let shown: Vec<&str> = summary
        .violations
        .iter()
        .take(20)
        .map(String::as_str)
        .collect();
    bail!(
        "{} carries more than IKE and ESP-in-UDP: {summary}\n{}{}",
        pcap.display(),
        shown.join("\n"),
        if summary.violations.len() > shown.len() {
            format!("\n... and {} more", summary.violations.len() - shown.len())
        } else {
            String::new()
        }
    )
}

const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;

pub(super) fn in_prefixes(a: Ipv4Addr, prefixes: &[(Ipv4Addr, u8)]) -> bool {
    prefixes.iter().any(|&(p, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        u32::from(a) & mask == u32::from(p) & mask
    })
}

/// Sorts each packet of an uplink capture into [`UplinkSummary`]; see
/// [`check_uplink_capture`]. `inner`: prefixes that must never show in an
/// IP header on the uplink.
pub fn classify_uplink(packets: &[PcapPacket], inner: &[(Ipv4Addr, u8)]) -> UplinkSummary {
    let mut s = UplinkSummary {
        packets: packets.len(),
        ..UplinkSummary::default()
    };
    for (i, p) in packets.iter().enumerate() {
        let n = i + 1;
        match p.network_layer() {
            None => s
                .violations
                .push(format!("#{n}: unreadable frame ({} bytes)", p.data.len())),
            Some((ETHERTYPE_ARP, _)) => s.link_control += 1,
            Some((ETHERTYPE_IPV6, ip)) => {
                if ipv6_link_control(ip) {
                    s.link_control += 1;
                } else {
                    s.violations
                        .push(format!("#{n}: IPv6 other than link-local ND/MLD"));
                }
            }
            Some((ETHERTYPE_IPV4, ip)) => classify_ipv4(&mut s, n, ip, inner),
            Some((ethertype, _)) => s
                .violations
                .push(format!("#{n}: ethertype {ethertype:#06x}")),
        }
    }
    s
}

fn classify_ipv4(s: &mut UplinkSummary, n: usize, ip: &[u8], inner: &[(Ipv4Addr, u8)]) {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        s.violations.push(format!("#{n}: truncated IPv4 header"));
        return;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let protocol = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let what = format!("#{n}: {src} -> {dst} protocol {protocol}");
    if in_prefixes(src, inner) || in_prefixes(dst, inner) {
        s.violations
            .push(format!("{what}: an inner address in cleartext"));
        return;
    }
    let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ihl < 20 || total < ihl {
        s.violations.push(format!("{what}: bad header length"));
        return;
    }
    let payload = &ip[ihl..total];
    // IGMP to the link-local multicast block: what an interface says by
    // itself when it comes up.
    if protocol == 2 && dst.octets()[..3] == [224, 0, 0] {
        s.link_control += 1;
        return;
    }
    match protocol {
        17 if fragment_offset != 0 => s.udp_fragments += 1,
        17 => classify_udp(s, &what, payload, inner),
        1 => s.violations.push(format!("{what}: ICMP")),
        6 => {
            let dport = payload
                .get(2..4)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            s.violations.push(format!("{what}: TCP to port {dport}"));
        }
        50 => s
            .violations
            .push(format!("{what}: raw ESP (expected ESP-in-UDP)")),
        _ => s.violations.push(format!("{what}: not IKE or ESP-in-UDP")),
    }
}

fn classify_udp(s: &mut UplinkSummary, what: &str, udp: &[u8], inner: &[(Ipv4Addr, u8)]) {
    if udp.len() < 8 {
        s.violations.push(format!("{what}: truncated UDP header"));
        return;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let data = &udp[8..];
    if sport == NATT_PORT || dport == NATT_PORT {
        if data == [0xff] {
            s.nat_keepalives += 1;
        } else if data.len() >= 4 && data[..4] == [0, 0, 0, 0] {
            s.ike += 1;
        } else if data.len() >= 8 {
            if let Some(at) = cleartext_ipv4_at(&data[8..], inner) {
                s.violations.push(format!(
                    "{what}: UDP {sport} -> {dport}: ESP payload holds a cleartext IPv4 header \
                     with inner addresses at byte {at}"
                ));
            } else {
                s.esp_in_udp += 1;
            }
        } else {
            s.violations.push(format!(
                "{what}: UDP {sport} -> {dport}: {} bytes, neither IKE nor ESP",
                data.len()
            ));
        }
    } else if sport == IKE_PORT || dport == IKE_PORT {
        s.ike += 1;
    } else {
        s.violations.push(format!("{what}: UDP {sport} -> {dport}"));
    }
}

/// Where `data` holds something shaped like an IPv4 header (version 4,
/// IHL 5) with both addresses in `inner`: an ESP payload that was not
/// encrypted (ESP-NULL, or a bug). Random ciphertext matches with a chance
/// of about 2^-40 per byte position.
fn cleartext_ipv4_at(data: &[u8], inner: &[(Ipv4Addr, u8)]) -> Option<usize> {
    data.windows(20).position(|w| {
        w[0] == 0x45
            && in_prefixes(Ipv4Addr::new(w[12], w[13], w[14], w[15]), inner)
            && in_prefixes(Ipv4Addr::new(w[16], w[17], w[18], w[19]), inner)
            && ipv4_checksum_ok(w)
    })
}

/// A real header's checksum adds up (RFC 791); ciphertext matching the
/// version and two inner addresses by chance (about once in 2^40 windows,
/// so once in a few thousand runs of a 290,000-packet transfer) does not,
/// but for one time in 65,536 more.
fn ipv4_checksum_ok(header: &[u8]) -> bool {
    let sum: u32 = header
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    (folded & 0xffff) + (folded >> 16) == 0xffff
}

/// IPv6 neighbour discovery (133-137) or MLD (130-132, 143) from a
/// link-local or unspecified source: what a veth says by itself.
fn ipv6_link_control(ip: &[u8]) -> bool {
    if ip.len() < 40 {
        return false;
    }
    let src_ok = ip[8..24].iter().all(|b| *b == 0) || (ip[8] == 0xfe && ip[9] & 0xc0 == 0x80);
    if !src_ok {
        return false;
    }
    let mut next = ip[6];
    let mut at = 40;
    // A hop-by-hop options header (router alert) comes before MLD.
    if next == 0 {
        let Some(&len) = ip.get(at + 1) else {
            return false;
        };
        next = ip[at];
        at += (usize::from(len) + 1) * 8;
    }
    next == 58 && ip.get(at).is_some_and(|t| matches!(t, 130..=137 | 143))
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::capture::{LINKTYPE_ETHERNET, parse_pcap, write_pcap};
    use crate::flex_lab::{HUB_ADDRESS, HUB_LAN_HOST, IPERF_PORT};
    use crate::frame::{self, Ipv4Frame};

    const SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 11);

    fn classify(frames: &[Vec<u8>]) -> UplinkSummary {
        let packets = parse_pcap(&write_pcap(LINKTYPE_ETHERNET, frames)).unwrap();
        classify_uplink(&packets, INNER_PREFIXES)
    }

    fn esp(spi: u32, body: &[u8]) -> Vec<u8> {
        let mut p = spi.to_be_bytes().to_vec();
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(body);
        frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 4500, 4500, &p)
    }

    #[test]
    fn ike_and_esp_in_udp_pass() {
        let ike500 = frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 500, 500, &[1; 28]);
        let mut marked = vec![0, 0, 0, 0];
        marked.extend_from_slice(&[2; 28]);
        let ike4500 = frame::ethernet_ipv4_udp(HUB_ADDRESS, SPOKE, 4500, 4500, &marked);
        let keepalive = frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 4500, 4500, &[0xff]);
        let fragment = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 17)
            .fragment_offset(185)
            .payload(&[9; 100])
            .build();
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        arp.extend_from_slice(&[0; 28]);
        let igmp = Ipv4Frame::new(Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(224, 0, 0, 22), 2)
            .payload(&[0x22; 16])
            .build();
        let s = classify(&[
            igmp,
            ike500,
            ike4500,
            esp(0x1234, &[0x5a; 100]),
            keepalive,
            fragment,
            arp,
        ]);
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(
            (
                s.ike,
                s.esp_in_udp,
                s.nat_keepalives,
                s.udp_fragments,
                s.link_control
            ),
            (2, 1, 1, 1, 2),
            "{s}"
        );
    }

    #[test]
    fn ciphertext_that_only_looks_like_an_inner_header_is_not_a_leak() {
        let inner = [(Ipv4Addr::new(192, 168, 0, 0), 16)];
        let header = Ipv4Frame::new(
            Ipv4Addr::new(192, 168, 1, 10),
            Ipv4Addr::new(192, 168, 2, 10),
            6,
        )
        .payload(&[0; 20])
        .build_ipv4();
        let mut data = vec![0x5a; 1171];
        data.extend_from_slice(&header[..20]);
        assert_eq!(cleartext_ipv4_at(&data, &inner), Some(1171));
        // Same version and addresses, checksum off by one: chance, not a header.
        data[1171 + 10] ^= 1;
        assert_eq!(cleartext_ipv4_at(&data, &inner), None);
    }

    #[test]
    fn cleartext_is_caught() {
        let lan1 = Ipv4Addr::new(192, 168, 1, 10);
        let hub_lan = HUB_LAN_HOST;
        // An inner packet leaked as is, with inner addresses.
        let icmp_inner = Ipv4Frame::new(lan1, hub_lan, 1)
            .payload(&[8, 0, 0, 0])
            .build();
        // ICMP and TCP between outer addresses.
        let icmp_outer = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 1)
            .payload(&[8; 8])
            .build();
        let mut tcp = IPERF_PORT.to_be_bytes().to_vec();
        tcp.splice(0..0, 40000u16.to_be_bytes());
        tcp.extend_from_slice(&[0; 16]);
        let tcp = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 6).payload(&tcp).build();
        // Raw ESP, other UDP, and ESP-NULL carrying GRE + the inner packet.
        let raw_esp = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 50)
            .payload(&[1; 40])
            .build();
        let udp = frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 5000, 53, &[0; 10]);
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(
            &Ipv4Frame::new(lan1, hub_lan, 1)
                .payload(&[8, 0, 0, 0])
                .build_ipv4(),
        );
        let null = esp(0x1234, &gre);
        let s = classify(&[icmp_inner, icmp_outer, tcp, raw_esp, udp, null]);
        assert_eq!(s.violations.len(), 6, "{:#?}", s.violations);
        assert!(
            s.violations[0].contains("inner address"),
            "{}",
            s.violations[0]
        );
        assert!(s.violations[1].contains("ICMP"));
        assert!(
            s.violations[2].contains("TCP to port 5201"),
            "{}",
            s.violations[2]
        );
        assert!(s.violations[3].contains("raw ESP"));
        assert!(s.violations[4].contains("5000 -> 53"));
        assert!(s.violations[5].contains("cleartext IPv4 header"));
        assert_eq!(s.esp_in_udp, 0);
    }

    #[test]
    fn ipv6_link_local_control_is_tolerated_and_other_ipv6_is_not() {
        let v6 = |src0: u8, next: u8, icmp_type: u8| {
            let mut f = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1];
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0, 0, 8, next, 255];
            let mut src = [0u8; 16];
            src[0] = src0;
            src[1] = if src0 == 0xfe { 0x80 } else { 0 };
            ip.extend_from_slice(&src);
            ip.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            if next == 0 {
                // hop-by-hop: next 58, length 0 (8 bytes)
                ip.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
            }
            ip.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
            f.extend_from_slice(&ip);
            f
        };
        let s = classify(&[
            v6(0xfe, 58, 135),
            v6(0xfe, 0, 143),
            v6(0x20, 58, 135),
            v6(0xfe, 58, 128),
        ]);
        assert_eq!(s.link_control, 2, "{s} {:?}", s.violations);
        assert_eq!(s.violations.len(), 2, "{:?}", s.violations);
    }
}
