//! ICMP "fragmentation needed and DF set" (RFC 792 Destination Unreachable
//! code 4, with RFC 1191's Next-Hop MTU): what the datapath sends back when
//! a packet with DF set does not fit the tunnel, so that the sender's path
//! MTU discovery lowers its packet size.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Type = 3    |   Code = 4    |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           unused = 0          |         Next-Hop MTU          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Internet Header + start of the Original Datagram Data    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::net::IPPROTO_ICMP;

pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_SOURCE_QUENCH: u8 = 4;
pub const TYPE_REDIRECT: u8 = 5;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const TYPE_PARAMETER_PROBLEM: u8 = 12;
/// Destination Unreachable: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;

/// Type, code, checksum and the 4-byte rest-of-header.
pub const ICMP_HEADER_LEN: usize = 8;
/// RFC 1812 section 4.3.2.3: an ICMP error's whole IP datagram stays
/// within 576 bytes.
pub const MAX_ERROR_LEN: usize = 576;
/// RFC 792: the quote holds at least the header and 64 bits of data.
const MIN_QUOTED_DATA: usize = 8;
/// RFC 1812 section 4.3.2.5: errors SHOULD go out with precedence 6
/// (internetwork control), DSCP CS6.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
const TTL: u8 = 64;

/// The ICMP types that are errors (RFC 1122 section 3.2.2, RFC 1812
/// section 4.3.2.7): never answered with another error.
pub const fn is_error_type(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        TYPE_DEST_UNREACHABLE
            | TYPE_SOURCE_QUENCH
            | TYPE_REDIRECT
            | TYPE_TIME_EXCEEDED
            | TYPE_PARAMETER_PROBLEM
    )
}

/// `packet` carries an ICMP error: protocol ICMP, first fragment (only it
/// has the ICMP header), and an error type.
pub fn is_icmp_error<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> bool {
    packet.protocol() == IPPROTO_ICMP
        && !packet.is_non_first_fragment()
        && packet
            .payload()
            .first()
            .is_some_and(|&kind| is_error_type(kind))
}

/// An address that names no single host (RFC 1122 section 3.2.2; RFC
/// 1812 sections 4.3.2.7 and 5.3.7): 0/8, 127/8, multicast, class E and
/// the limited broadcast. No error goes to it.
fn is_martian_source(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    first == 0 || addr.is_loopback() || addr.is_multicast() || first >= 240
}

/// Builds into `out` the IPv4 packet, from `src` to the source of
/// `original`, carrying the ICMP "fragmentation needed and DF set" error
/// for `original` with `next_hop_mtu` (RFC 1191 section 4), and returns
/// its length.
///
/// The quote is `original` (up to its Total Length) cut where the whole
/// error would exceed 576 bytes (RFC 1812 section 4.3.2.3) or `out`; it
/// holds at least the header and 8 bytes of data (RFC 792). The header:
/// TTL 64, DF clear, precedence 6, Identification copied from `original`
/// (an ID that varies per packet at no cost).
///
/// `None` when no error may be sent (RFC 1122 section 3.2.2, RFC 1812
/// section 4.3.2.7): `original` is malformed (header or its checksum), a
/// non-first fragment, an ICMP error itself, from a source that names no
/// single host, or to a multicast or broadcast address; or `out` is too
/// small for the minimal quote.
pub fn frag_needed(
    original: &[u8],
    src: Ipv4Addr,
    next_hop_mtu: u16,
    out: &mut [u8],
) -> Option<usize> {
    let packet = Ipv4Packet::new_checked(original).ok()?;
    if !packet.verify_checksum()
        || packet.is_non_first_fragment()
        || is_martian_source(packet.src())
        || packet.dst().is_multicast()
        || packet.dst().is_broadcast()
    {
        return None;
    }
    if packet.protocol() == IPPROTO_ICMP {
        // An ICMP packet too short for its type is malformed.
        let kind = *packet.payload().first()?;
        if is_error_type(kind) {
            return None;
        }
    }

    let headers = ipv4::HEADER_LEN + ICMP_HEADER_LEN;
    let room = out.len().min(MAX_ERROR_LEN).checked_sub(headers)?;
    let min_quote = packet.header_len() + packet.payload().len().min(MIN_QUOTED_DATA);
    if room < min_quote {
        return None;
    }
    let quote = &packet.packet()[..packet.packet().len().min(room)];
    let total_len = headers + quote.len();

    Ipv4Repr {
        src,
        dst: packet.src(),
        protocol: IPPROTO_ICMP,
        ttl: TTL,
        dscp_ecn: TOS_INTERNETWORK_CONTROL,
        ident: packet.ident(),
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: ICMP_HEADER_LEN + quote.len(),
    }
    .emit(out)
    .ok()?;
    let icmp = out.get_mut(ipv4::HEADER_LEN..total_len)?;
    icmp[0] = TYPE_DEST_UNREACHABLE;
    icmp[1] = CODE_FRAG_NEEDED;
    icmp[2..6].fill(0);
    icmp[6..8].copy_from_slice(&next_hop_mtu.to_be_bytes());
    icmp[ICMP_HEADER_LEN..].copy_from_slice(quote);
    let sum = ipv4::checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(total_len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::datapath::wire::{
        ipv4::checksum,
        tcp_mss::tests::SYN,
        testing::{JUNK, XorShift},
    };
    use crate::net::IPPROTO_UDP;

    const HUB: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);

    /// `frag_needed(SYN, HUB, 1400)`: the IPv4 header (TOS 0xc0, Total
    /// Length 88, the SYN's ID 0x1c46, TTL 64, ICMP, checksum 0x4739) and
    /// the ICMP header (3/4, checksum 0xc4c9, MTU 1400), then the whole SYN.
    const EXPECTED_HEADERS: [u8; 28] = [
        0x45, 0xc0, 0x00, 0x58, 0x1c, 0x46, 0x00, 0x00, 0x40, 0x01, 0x47, 0x39, 0x0a, 0x01, 0x01,
        0x01, 0x0a, 0x01, 0x01, 0x64, // IPv4
        0x03, 0x04, 0xc4, 0xc9, 0x00, 0x00, 0x05, 0x78, // ICMP
    ];

    /// An IPv4 packet of `len` bytes from `src` with `protocol`, DF set,
    /// checksum filled, data bytes counting up.
    fn original(src: Ipv4Addr, protocol: u8, len: usize) -> Vec<u8> {
        let repr = Ipv4Repr {
            src,
            dst: Ipv4Addr::new(192, 168, 1, 10),
            protocol,
            ttl: 63,
            dscp_ecn: 0,
            ident: 0x4242,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len: len - 20,
        };
        let mut bytes: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        repr.emit(&mut bytes).unwrap();
        bytes
    }

    fn spoke() -> Ipv4Addr {
        Ipv4Addr::new(10, 1, 1, 100)
    }

    /// Checks `out[..len]` from scratch and returns the quote.
    fn check_error(out: &[u8], len: usize, dst: Ipv4Addr, mtu: u16) -> Vec<u8> {
        let packet = Ipv4Packet::new_checked(&out[..len]).unwrap();
        assert_eq!(usize::from(packet.total_len()), len);
        assert_eq!(checksum(&out[..20]), 0, "IP header checksum");
        assert!(packet.verify_checksum());
        assert_eq!(packet.header_len(), 20);
        assert_eq!((packet.src(), packet.dst()), (HUB, dst));
        assert_eq!((packet.protocol(), packet.ttl()), (IPPROTO_ICMP, 64));
        assert!(!packet.dont_frag() && !packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        let icmp = packet.payload();
        assert_eq!(checksum(icmp), 0, "ICMP checksum");
        assert_eq!(icmp[..2], [TYPE_DEST_UNREACHABLE, CODE_FRAG_NEEDED]);
        assert_eq!(icmp[4..6], [0, 0], "unused");
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), mtu);
        assert!(len <= MAX_ERROR_LEN);
        icmp[8..].to_vec()
    }

    #[test]
    fn small_packet_quoted_whole() {
        let mut out = [JUNK; 200];
        let len = frag_needed(&SYN, HUB, 1400, &mut out).unwrap();
        assert_eq!(len, 28 + 60);
        assert_eq!(out[..28], EXPECTED_HEADERS);
        assert_eq!(out[28..len], SYN);
        assert!(out[len..].iter().all(|&b| b == JUNK), "wrote past the end");
        assert_eq!(check_error(&out, len, spoke(), 1400), SYN);
    }

    #[test]
    fn trailing_bytes_not_quoted() {
        let mut bytes = SYN.to_vec();
        bytes.extend([0xee; 30]);
        let mut out = [JUNK; 600];
        assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), Some(88));
        assert_eq!(out[..28], EXPECTED_HEADERS);
    }

    #[test]
    fn large_packet_quote_stops_at_576() {
        let big = original(spoke(), IPPROTO_UDP, 1500);
        let mut out = vec![JUNK; 1600];
        let len = frag_needed(&big, HUB, 1380, &mut out).unwrap();
        assert_eq!(len, MAX_ERROR_LEN);
        let quote = check_error(&out, len, spoke(), 1380);
        assert_eq!(quote, big[..MAX_ERROR_LEN - 28]);
        assert!(out[len..].iter().all(|&b| b == JUNK));
        // Exactly 576 - 28 bytes of original: quoted whole.
        let exact = original(spoke(), IPPROTO_UDP, 548);
        assert_eq!(frag_needed(&exact, HUB, 1380, &mut out), Some(576));
        let one_more = original(spoke(), IPPROTO_UDP, 549);
        let len = frag_needed(&one_more, HUB, 1380, &mut out).unwrap();
        assert_eq!(check_error(&out, len, spoke(), 1380), one_more[..548]);
    }

    #[test]
    fn small_out_buffer() {
        let big = original(spoke(), IPPROTO_UDP, 1500);
        // 28 + 20-byte header + 8 bytes of data is the least that will do.
        let mut out = vec![JUNK; 55];
        assert_eq!(frag_needed(&big, HUB, 1400, &mut out), None);
        assert!(out.iter().all(|&b| b == JUNK), "touched on refusal");
        let mut out = vec![JUNK; 56];
        assert_eq!(frag_needed(&big, HUB, 1400, &mut out), Some(56));
        assert_eq!(check_error(&out, 56, spoke(), 1400), big[..28]);
        let mut out = vec![JUNK; 300];
        assert_eq!(frag_needed(&big, HUB, 1400, &mut out), Some(300));
        assert_eq!(check_error(&out, 300, spoke(), 1400), big[..272]);
        assert_eq!(frag_needed(&big, HUB, 1400, &mut []), None);
    }

    #[test]
    fn header_options_quoted() {
        // IHL 15: 40 bytes of options (NOPs), so at least 68 bytes quoted.
        let mut bytes = original(spoke(), IPPROTO_UDP, 200);
        bytes[0] = 0x4f;
        bytes[20..60].fill(1);
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let mut out = vec![JUNK; 28 + 67];
        assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), None);
        let mut out = vec![JUNK; 28 + 68];
        assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), Some(96));
        assert_eq!(check_error(&out, 96, spoke(), 1400), bytes[..68]);
        // Less than 8 bytes of data: all of it.
        let short = original(spoke(), IPPROTO_UDP, 23);
        let mut out = vec![JUNK; 100];
        assert_eq!(frag_needed(&short, HUB, 1400, &mut out), Some(51));
    }

    #[test]
    fn no_error_about_icmp_errors() {
        let mut out = [JUNK; 600];
        for kind in 0..=255u8 {
            let mut bytes = original(spoke(), IPPROTO_ICMP, 100);
            bytes[20] = kind;
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            let error = [3, 4, 5, 11, 12].contains(&kind);
            assert_eq!(is_icmp_error(&packet), error, "type {kind}");
            assert_eq!(is_error_type(kind), error);
            assert_eq!(
                frag_needed(&bytes, HUB, 1400, &mut out).is_none(),
                error,
                "type {kind}"
            );
        }
        // ICMP without even a type byte: malformed.
        let bytes = original(spoke(), IPPROTO_ICMP, 20);
        assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), None);
    }

    #[test]
    fn fragments() {
        let mut out = [JUNK; 600];
        let mut bytes = original(spoke(), IPPROTO_UDP, 100);
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_frag_offset(1480);
        packet.fill_checksum();
        assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), None);
        // The first fragment (MF set, offset 0) is answered.
        let mut bytes = original(spoke(), IPPROTO_UDP, 100);
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_more_frags(true);
        packet.fill_checksum();
        assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), Some(128));
    }

    #[test]
    fn no_error_to_martians() {
        let mut out = [JUNK; 600];
        for src in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "224.0.0.5",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.254",
            "255.255.255.255",
        ] {
            let bytes = original(src.parse().unwrap(), IPPROTO_UDP, 100);
            assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), None, "{src}");
        }
        for dst in ["224.0.0.9", "255.255.255.255"] {
            let mut bytes = original(spoke(), IPPROTO_UDP, 100);
            let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
            packet.set_dst(dst.parse().unwrap());
            packet.fill_checksum();
            assert_eq!(frag_needed(&bytes, HUB, 1400, &mut out), None, "to {dst}");
        }
        for src in ["1.0.0.1", "126.255.255.255", "128.0.0.1", "223.255.255.255"] {
            let bytes = original(src.parse().unwrap(), IPPROTO_UDP, 100);
            assert!(frag_needed(&bytes, HUB, 1400, &mut out).is_some(), "{src}");
        }
    }

    #[test]
    fn no_error_about_malformed() {
        let mut out = [JUNK; 600];
        let mut bad_sum = SYN;
        bad_sum[11] ^= 1;
        assert_eq!(frag_needed(&bad_sum, HUB, 1400, &mut out), None);
        let mut v6 = SYN;
        v6[0] = 0x65;
        assert_eq!(frag_needed(&v6, HUB, 1400, &mut out), None);
        for cut in 0..SYN.len() {
            assert_eq!(frag_needed(&SYN[..cut], HUB, 1400, &mut out), None, "{cut}");
        }
        assert!(out.iter().all(|&b| b == JUNK));
    }

    /// Random originals and output sizes never panic; whatever is built
    /// verifies.
    #[test]
    fn random_originals() {
        let mut rng = XorShift::new(0x5eed);
        let mut built = 0;
        for _ in 0..20_000 {
            let len = rng.below(700);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if len >= 20 && rng.below(4) != 0 {
                bytes[0] = 0x45;
                let total = u16::try_from(20 + rng.below(len - 19)).unwrap();
                bytes[2..4].copy_from_slice(&total.to_be_bytes());
                bytes[6] &= 0x40;
                bytes[7] = 0;
                bytes[12] = 10;
                Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
            }
            let mut out = vec![JUNK; rng.below(700)];
            if let Some(n) = frag_needed(&bytes, HUB, 1400, &mut out) {
                built += 1;
                let src = Ipv4Packet::new_checked(&bytes[..]).unwrap().src();
                let quote = check_error(&out, n, src, 1400);
                assert_eq!(quote, bytes[..quote.len()]);
            }
        }
        assert!(built > 1000, "only {built} built");
    }
}
