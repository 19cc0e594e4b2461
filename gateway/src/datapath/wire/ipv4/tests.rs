#![allow(clippy::unwrap_used)]

use super::*;
use crate::datapath::wire::testing::{JUNK, XorShift};
use crate::net::IPPROTO_UDP;

/// The example header on Wikipedia's "IPv4 header checksum" page: UDP,
/// 192.168.0.1 -> 192.168.0.199, checksum 0xb861.
pub const HEADER: [u8; 20] = [
    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
    0xc0, 0xa8, 0x00, 0xc7,
];

/// `HEADER` followed by its 0x73 - 20 = 95 bytes of payload.
fn packet() -> Vec<u8> {
    let mut bytes = HEADER.to_vec();
    bytes.extend((0..95).map(|i: u8| i.wrapping_mul(7)));
    bytes
}

fn repr() -> Ipv4Repr {
    Ipv4Repr {
        src: Ipv4Addr::new(192, 168, 0, 1),
        dst: Ipv4Addr::new(192, 168, 0, 199),
        protocol: IPPROTO_UDP,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: 95,
    }
}

#[test]
fn checksum_rfc1071_examples() {
    // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum(&data), !0xddf2);
    // Odd length: the last byte is padded with zero.
    assert_eq!(
        checksum(&data[..7]),
        !fold(0x0001 + 0xf203 + 0xf4f5 + 0xf600)
    );
    assert_eq!(checksum(&[]), 0xffff);
    assert_eq!(checksum(&[0xab]), !0xab00);
    assert_eq!(checksum(&[0xab, 0xcd, 0xef]), !0x9ace);
    // The Wikipedia header: its checksum field holds the right value.
    let mut header = HEADER;
    header[10..12].fill(0);
    assert_eq!(checksum(&header), 0xb861);
    assert_eq!(checksum(&HEADER), 0);
}

/// The word-at-a-time sum agrees with the plain 16-bit definition.
#[test]
fn checksum_matches_reference() {
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !u16::try_from(sum).unwrap()
    }
    let mut rng = XorShift::new(7);
    for len in 0..300 {
        let data: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        assert_eq!(checksum(&data), reference(&data), "{len} bytes");
    }
    assert_eq!(checksum(&[0xff; 1500]), reference(&[0xff; 1500]));
}

#[test]
fn checksum_update_rfc1624_example() {
    // RFC 1624 section 4: m 0x5555 -> 0x3285 with HC 0xdd2f gives
    // 0x0000 by eqn. 3 (eqn. 2 would give the wrong 0xffff).
    assert_eq!(checksum_update(0xdd2f, 0x5555, 0x3285), 0x0000);
}

#[test]
fn checksum_update_matches_recompute() {
    let mut rng = XorShift::new(11);
    for _ in 0..2000 {
        let mut data: Vec<u8> = (0..40).map(|_| rng.byte()).collect();
        data[10..12].fill(0);
        let sum = checksum(&data);
        data[10..12].copy_from_slice(&sum.to_be_bytes());
        // Change one word at an even or an odd offset.
        let at = rng.below(37) + 1;
        let at = if at == 10 || at == 11 || at == 9 {
            12
        } else {
            at
        };
        let old = u16::from_be_bytes([data[at], data[at + 1]]);
        let new = u16::from_be_bytes([rng.byte(), rng.byte()]);
        data[at..at + 2].copy_from_slice(&new.to_be_bytes());
        let updated = if at.is_multiple_of(2) {
            checksum_update(sum, old, new)
        } else {
            checksum_update(sum, old.swap_bytes(), new.swap_bytes())
        };
        data[10..12].copy_from_slice(&updated.to_be_bytes());
        assert_eq!(checksum(&data), 0, "offset {at}");
    }
}

#[test]
fn deconstruct() {
    let bytes = packet();
    let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.version(), 4);
    assert_eq!(packet.header_len(), 20);
    assert_eq!(packet.dscp_ecn(), 0);
    assert_eq!(packet.total_len(), 0x73);
    assert_eq!(packet.ident(), 0);
    assert!(packet.dont_frag());
    assert!(!packet.more_frags());
    assert!(!packet.reserved_flag());
    assert_eq!(packet.frag_offset(), 0);
    assert!(!packet.is_non_first_fragment());
    assert_eq!(packet.ttl(), 64);
    assert_eq!(packet.protocol(), IPPROTO_UDP);
    assert_eq!(packet.checksum(), 0xb861);
    assert_eq!(packet.src(), Ipv4Addr::new(192, 168, 0, 1));
    assert_eq!(packet.dst(), Ipv4Addr::new(192, 168, 0, 199));
    assert!(packet.options().is_empty());
    assert_eq!(packet.payload(), &bytes[20..]);
    assert!(packet.verify_checksum());
}

#[test]
fn trailing_bytes_ignored() {
    let mut bytes = packet();
    bytes.extend([0xee; 18]);
    let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.payload().len(), 95);
    assert_eq!(packet.packet().len(), 0x73);
    assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr());
}

#[test]
fn options_and_fragments() {
    // IHL 6 with a 4-byte Router Alert option (RFC 2113), MF set and
    // offset 185 * 8 = 1480, no payload.
    let mut bytes = [
        0x46, 0xb8, 0x00, 0x18, 0x12, 0x34, 0x20, 0xb9, 0x01, 0x06, 0x00, 0x00, 10, 0, 0, 1, 10, 0,
        0, 2, 0x94, 0x04, 0x00, 0x00,
    ];
    Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
    let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(packet.header_len(), 24);
    assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
    assert_eq!(packet.dscp_ecn(), 0xb8);
    assert!(packet.more_frags() && !packet.dont_frag());
    assert_eq!(packet.frag_offset(), 1480);
    assert!(packet.is_non_first_fragment());
    assert!(packet.payload().is_empty());
    assert!(packet.verify_checksum());
    let repr = Ipv4Repr::parse(&packet).unwrap();
    assert_eq!((repr.frag_offset, repr.payload_len), (1480, 0));
}

#[test]
fn construct() {
    let mut bytes = vec![JUNK; 20];
    bytes[0] = 0x45;
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
    packet.set_dscp_ecn(0);
    packet.set_total_len(0x73);
    packet.set_ident(0);
    packet.set_flags_frag(0);
    packet.set_dont_frag(true);
    packet.set_more_frags(true);
    packet.set_more_frags(false);
    packet.set_frag_offset(0);
    packet.set_ttl(64);
    packet.set_protocol(IPPROTO_UDP);
    packet.set_src(Ipv4Addr::new(192, 168, 0, 1));
    packet.set_dst(Ipv4Addr::new(192, 168, 0, 199));
    packet.fill_checksum();
    assert_eq!(bytes, HEADER);
}

#[test]
fn parse_and_emit() {
    let bytes = packet();
    let parsed = Ipv4Repr::parse(&Ipv4Packet::new_checked(&bytes[..]).unwrap()).unwrap();
    assert_eq!(parsed, repr());
    let mut buf = vec![JUNK; 0x73];
    repr().emit(&mut buf).unwrap();
    assert_eq!(buf[..20], HEADER);
    assert!(buf[20..].iter().all(|&b| b == JUNK), "payload touched");
}

#[test]
fn emit_errors() {
    assert_eq!(
        repr().emit(&mut [0; 19]),
        Err(Ipv4Error::BufferTooSmall {
            needed: 20,
            available: 19
        })
    );
    let long = Ipv4Repr {
        payload_len: 65516,
        ..repr()
    };
    assert_eq!(long.emit(&mut [0; 20]), Err(Ipv4Error::TooLong(65536)));
}

#[test]
fn malformed() {
    let good = packet();
    let with = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        bytes
    };
    let check = |bytes: &[u8]| Ipv4Packet::new_checked(bytes).map(|_| ());
    assert_eq!(check(&with(0, 0x65)), Err(Ipv4Error::Version(6)));
    assert_eq!(check(&with(0, 0x44)), Err(Ipv4Error::HeaderLen(4)));
    assert!(check(&with(0, 0x4f)).is_ok(), "IHL 15 fits in 115 bytes");
    assert_eq!(
        check(&with(3, 0x13)),
        Err(Ipv4Error::TotalLen {
            total_len: 0x13,
            header_len: 20,
            available: 0x73
        })
    );
    assert_eq!(
        check(&with(3, 0x74)),
        Err(Ipv4Error::TotalLen {
            total_len: 0x74,
            header_len: 20,
            available: 0x73
        })
    );
    let bad_sum = with(11, 0x62);
    let packet = Ipv4Packet::new_checked(&bad_sum[..]).unwrap();
    assert!(!packet.verify_checksum());
    assert_eq!(Ipv4Repr::parse(&packet), Err(Ipv4Error::BadChecksum));
    let mut long_header = with(0, 0x46);
    long_header.truncate(23);
    long_header[3] = 23;
    assert_eq!(
        check(&long_header),
        Err(Ipv4Error::Truncated {
            needed: 24,
            available: 23
        })
    );
}

#[test]
fn every_truncation_fails() {
    let bytes = packet();
    for cut in 0..bytes.len() {
        assert!(
            Ipv4Packet::new_checked(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes"
        );
    }
}

#[test]
fn decrement_ttl() {
    let mut bytes = packet();
    let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
    for expected in (1..64).rev() {
        packet.decrement_ttl().unwrap();
        assert_eq!(packet.ttl(), expected);
        assert!(packet.verify_checksum(), "TTL {expected}");
    }
    assert_eq!(packet.decrement_ttl(), Err(Ipv4Error::TtlExpired(1)));
    packet.set_ttl(0);
    packet.fill_checksum();
    assert_eq!(packet.decrement_ttl(), Err(Ipv4Error::TtlExpired(0)));
    assert_eq!(packet.ttl(), 0);
    assert!(packet.verify_checksum());
    // TTL 64 -> 63 on the Wikipedia header: 0xb861 + 0x0100.
    let mut header = HEADER;
    Ipv4Packet::new_unchecked(&mut header[..])
        .decrement_ttl()
        .unwrap();
    assert_eq!(header[10..12], [0xb9, 0x61]);
}

#[test]
fn setters_then_fill_checksum() {
    let mut bytes = packet();
    let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
    packet.set_src(Ipv4Addr::new(10, 1, 1, 100));
    packet.set_dst(Ipv4Addr::new(10, 1, 1, 1));
    assert!(!packet.verify_checksum());
    packet.fill_checksum();
    assert!(packet.verify_checksum());
    packet.payload_mut()[0] = 0x42;
    assert!(packet.options_mut().is_empty());
    assert_eq!(packet.payload()[0], 0x42);
    assert_eq!(packet.src(), Ipv4Addr::new(10, 1, 1, 100));
}

/// Random bytes (with a plausible first byte and Total Length half of
/// the time) never panic; whatever parses as a Repr emits back to the
/// same header when the header is canonical (IHL 5, reserved flag 0).
#[test]
fn random_bytes() {
    let mut rng = XorShift::new(0x1234_5678);
    let mut canonical = 0;
    for _ in 0..50_000 {
        let len = rng.below(80);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        if len >= 20 && rng.below(2) == 0 {
            bytes[0] = 0x45 + u8::try_from(rng.below(3)).unwrap();
            let total = u16::try_from(rng.below(len + 1)).unwrap();
            bytes[2..4].copy_from_slice(&total.to_be_bytes());
            let header_len = usize::from(bytes[0] & 0x0f) * 4;
            if len >= header_len && rng.below(2) == 0 {
                Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
            }
        }
        let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) else {
            continue;
        };
        let _ = (packet.options(), packet.payload(), packet.frag_offset());
        let Ok(repr) = Ipv4Repr::parse(&packet) else {
            continue;
        };
        if packet.header_len() == 20 && !packet.reserved_flag() {
            let mut out = vec![JUNK; 20];
            repr.emit(&mut out).unwrap();
            assert_eq!(out, packet.header());
            canonical += 1;
        }
    }
    assert!(canonical > 500, "only {canonical} canonical headers");
}
