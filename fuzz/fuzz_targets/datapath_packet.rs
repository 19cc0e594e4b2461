//! The userspace datapath's per-packet codecs on arbitrary bytes, none of
//! which may panic:
//!
//! - GRE: `decap` and `GreRepr::parse` agree; whatever parses re-emits in
//!   place to a header that parses to the same repr, payload untouched;
//! - IPv4: the view's accessors; a parsed `Ipv4Repr` emits a header that
//!   parses back to it;
//! - `clamp_mss` on a copy: unchanged unless it reports a change; a change
//!   keeps the IPv4 header, keeps a valid TCP checksum valid, and clamping
//!   again changes nothing;
//! - `frag_needed`: what it builds is IPv4 within 576 bytes with both
//!   checksums right.
#![no_main]

use std::net::Ipv4Addr;

use gateway::datapath::wire::{
    GrePacket, GreRepr, Ipv4Packet, Ipv4Repr, checksum, clamp_mss, decap, frag_needed,
};
use libfuzzer_sys::fuzz_target;

/// The TCP checksum from scratch (pseudo-header and segment): 0 when valid.
fn tcp_checksum(packet: &Ipv4Packet<&[u8]>) -> u16 {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&packet.src().octets());
    bytes.extend_from_slice(&packet.dst().octets());
    bytes.extend_from_slice(&[0, 6]);
    let len = u16::try_from(packet.payload().len()).expect("within Total Length");
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(packet.payload());
    checksum(&bytes)
}

fuzz_target!(|data: &[u8]| {
    // GRE.
    let fast = decap(data);
    match GrePacket::new_checked(data) {
        Err(_) => assert!(fast.is_err(), "decap accepted what the view refused"),
        Ok(packet) => {
            let parsed = GreRepr::parse(&packet);
            assert_eq!(fast, parsed.map(|repr| (repr.protocol, repr.header_len())));
            if let Ok(repr) = parsed {
                let mut out = data.to_vec();
                repr.emit(&mut out).expect("the header fits where it was");
                let view = GrePacket::new_checked(&out[..]).expect("emitted header is whole");
                assert_eq!(GreRepr::parse(&view), Ok(repr), "GRE round trip");
                assert_eq!(view.payload(), packet.payload());
            }
        }
    }

    // IPv4.
    if let Ok(packet) = Ipv4Packet::new_checked(data) {
        let _ = (packet.options(), packet.payload(), packet.frag_offset());
        if let Ok(repr) = Ipv4Repr::parse(&packet) {
            let mut out = vec![0; repr.total_len()];
            repr.emit(&mut out).expect("emit into a buffer of total_len");
            let view = Ipv4Packet::new_checked(&out[..]).expect("emitted header checks");
            assert_eq!(Ipv4Repr::parse(&view), Ok(repr), "IPv4 round trip");
        }
    }

    // MSS clamping, on a copy.
    let mut copy = data.to_vec();
    match clamp_mss(&mut copy, 1360) {
        Ok(false) | Err(_) => assert_eq!(copy, data, "changed without saying so"),
        Ok(true) => {
            let before = Ipv4Packet::new_checked(data).expect("clamped, so it parsed");
            let after = Ipv4Packet::new_checked(&copy[..]).expect("still parses");
            assert_eq!(after.header(), before.header(), "IPv4 header changed");
            if !before.more_frags() && tcp_checksum(&before) == 0 {
                assert_eq!(tcp_checksum(&after), 0, "TCP checksum broken");
            }
            assert_eq!(clamp_mss(&mut copy, 1360), Ok(false), "not idempotent");
        }
    }

    // ICMP fragmentation needed.
    let mut out = [0; 1600];
    if let Some(len) = frag_needed(data, Ipv4Addr::new(10, 1, 1, 1), 1400, &mut out) {
        assert!(len <= 576);
        let packet = Ipv4Packet::new_checked(&out[..len]).expect("built packet checks");
        assert_eq!(usize::from(packet.total_len()), len);
        assert!(packet.verify_checksum());
        assert_eq!(checksum(packet.payload()), 0, "ICMP checksum");
        assert_eq!(packet.payload()[8..], data[..len - 28], "quote");
    }
});
