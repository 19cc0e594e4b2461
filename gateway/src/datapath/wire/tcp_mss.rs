//! TCP MSS clamping, IOS `ip tcp adjust-mss`: lower the MSS option of TCP
//! SYN and SYN-ACK segments crossing a tunnel so that the peers never send
//! segments that would need fragmenting after encapsulation.
//!
//! Only an existing MSS option is lowered; none is inserted (RFC 9293
//! section 3.7.1: without one the peer assumes 536, already small enough).
//! The TCP checksum is updated incrementally (RFC 1624), so a segment that
//! arrived with a wrong checksum still fails at the receiver.
//!
//! Malformed option lists (a length below 2 or past the header, an MSS
//! option whose length is not 4; RFC 9293 section 3.1) are an error and
//! the packet is left exactly as it was: a router has no business
//! rewriting what it cannot parse, and the caller decides whether to
//! forward it (the receiver's TCP will judge it) and counts it.

use super::ipv4::{Ipv4Error, Ipv4Packet, checksum_update};
use crate::net::IPPROTO_TCP;

/// The TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;

mod field {
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: core::ops::Range<usize> = 16..18;
}

const FLAG_SYN: u8 = 0x02;

// RFC 9293 section 3.2: option kinds.
const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const MSS_OPTION_LEN: usize = 4;

/// A packet `clamp_mss` left alone because it could not read it. The
/// packet is unchanged whenever this is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MssError {
    /// The IPv4 header is malformed.
    #[error("MSS clamp: {0}")]
    Ip(#[from] Ipv4Error),
    /// The (first-fragment) segment ends inside the TCP header.
    #[error("MSS clamp: TCP header truncated: needs {needed} bytes, the segment has {available}")]
    TcpTruncated { needed: usize, available: usize },
    /// Data Offset below 5 words.
    #[error("MSS clamp: TCP data offset {0} is below 5")]
    DataOffset(u8),
    /// A malformed option; `offset` counts from the start of the TCP header.
    #[error("MSS clamp: malformed TCP option at offset {offset}: {reason}")]
    MalformedOption { offset: usize, reason: &'static str },
}

/// Lowers the MSS option of the IPv4 TCP SYN (or SYN-ACK) segment in
/// `ip_packet` to `max_mss` when it is larger, fixing the TCP checksum.
/// Returns whether the packet changed. `Ok(false)` for anything else: not
/// TCP, not SYN, a non-first fragment (no TCP header), no MSS option or one
/// already small enough. On error the packet is unchanged.
pub fn clamp_mss(ip_packet: &mut [u8], max_mss: u16) -> Result<bool, MssError> {
    let mut packet = Ipv4Packet::new_checked(ip_packet)?;
    if packet.protocol() != IPPROTO_TCP || packet.is_non_first_fragment() {
        return Ok(false);
    }
    let segment = packet.payload_mut();
    if segment.len() < TCP_HEADER_LEN {
        return Err(MssError::TcpTruncated {
            needed: TCP_HEADER_LEN,
            available: segment.len(),
        });
    }
    if segment[field::FLAGS] & FLAG_SYN == 0 {
        return Ok(false);
    }
    let data_offset = segment[field::DATA_OFFSET] >> 4;
    if data_offset < 5 {
        return Err(MssError::DataOffset(data_offset));
    }
    let header_len = usize::from(data_offset) * 4;
    if segment.len() < header_len {
        return Err(MssError::TcpTruncated {
            needed: header_len,
            available: segment.len(),
        });
    }

    // First pass: the whole list must parse before anything is written.
    let options = TCP_HEADER_LEN..header_len;
    let mut at = 0;
    while let Some((_, len)) = option_at(&segment[options.clone()], at)? {
        at += len;
    }

    // Second pass: clamp every MSS option (RFC 9293 does not say which of
    // several a receiver uses).
    let sum = &segment[field::CHECKSUM];
    let mut sum = u16::from_be_bytes([sum[0], sum[1]]);
    let mut changed = false;
    let mut at = 0;
    while let Some((kind, len)) = option_at(&segment[options.clone()], at)? {
        if kind != OPT_MSS {
            at += len;
            continue;
        }
        // `option_at` checked that the 4-byte option is within the header.
        let value = TCP_HEADER_LEN + at + 2;
        let mss = u16::from_be_bytes([segment[value], segment[value + 1]]);
        if mss > max_mss {
            segment[value..value + 2].copy_from_slice(&max_mss.to_be_bytes());
            // An odd offset straddles two checksum words: the value is
            // summed byte-swapped (RFC 1071 section 2(B)).
            sum = if value.is_multiple_of(2) {
                checksum_update(sum, mss, max_mss)
            } else {
                checksum_update(sum, mss.swap_bytes(), max_mss.swap_bytes())
            };
            changed = true;
        }
        at += len;
    }
    segment[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    Ok(changed)
}

/// The kind and length of the option at `at` in `options` (the bytes after
/// the fixed TCP header); `None` at End of Option List or the end of the
/// bytes. A returned MSS option is 4 bytes long.
fn option_at(options: &[u8], at: usize) -> Result<Option<(u8, usize)>, MssError> {
    let malformed = |reason| MssError::MalformedOption {
        offset: TCP_HEADER_LEN + at,
        reason,
    };
    match options.get(at) {
        None | Some(&OPT_EOL) => Ok(None),
        Some(&OPT_NOP) => Ok(Some((OPT_NOP, 1))),
        Some(&kind) => {
            let Some(&len) = options.get(at + 1) else {
                return Err(malformed("no length byte"));
            };
            let len = usize::from(len);
            if len < 2 {
                Err(malformed("length below 2"))
            } else if at + len > options.len() {
                Err(malformed("runs past the TCP header"))
            } else if kind == OPT_MSS && len != MSS_OPTION_LEN {
                Err(malformed("MSS option length is not 4"))
            } else {
                Ok(Some((kind, len)))
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;
    use crate::datapath::wire::{
        ipv4::{Ipv4Repr, checksum},
        testing::XorShift,
    };
    use crate::net::IPPROTO_UDP;

    /// A Linux SYN, 10.1.1.100:41170 -> 192.168.1.10:22, options MSS 1460,
    /// SACK permitted, timestamps, NOP, window scale 7. Checksums verified
    /// by `syn_checksums_verify` (and by tshark, see `super::super::tests`).
    pub const SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x51, 0x5f, 0x0a, 0x01, 0x01,
        0x64, 0xc0, 0xa8, 0x01, 0x0a, // IPv4
        0xa0, 0xd2, 0x00, 0x16, 0x6e, 0x1e, 0x4c, 0x1b, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0xe8, 0x5d, 0x00, 0x00, // TCP, checksum 0xe85d
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x1b, 0x3c, 0x5d, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// The TCP checksum, from scratch: pseudo-header (RFC 9293 section
    /// 3.1) and segment, the checksum field included; 0 when it verifies.
    pub fn tcp_checksum(ip_packet: &[u8]) -> u16 {
        let packet = Ipv4Packet::new_checked(ip_packet).unwrap();
        let segment = packet.payload();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&packet.src().octets());
        bytes.extend_from_slice(&packet.dst().octets());
        bytes.extend_from_slice(&[0, IPPROTO_TCP]);
        bytes.extend_from_slice(&u16::try_from(segment.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(segment);
        checksum(&bytes)
    }

    /// An IPv4 TCP segment with `flags` and `options` (padded with EOL to
    /// a multiple of 4), both checksums filled.
    fn segment(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let options_len = options.len().div_ceil(4) * 4;
        let tcp_len = TCP_HEADER_LEN + options_len;
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 1, 1, 100),
            dst: Ipv4Addr::new(192, 168, 1, 10),
            protocol: IPPROTO_TCP,
            ttl: 64,
            dscp_ecn: 0,
            ident: 7,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len: tcp_len + payload.len(),
        };
        let mut bytes = vec![0; repr.total_len()];
        repr.emit(&mut bytes).unwrap();
        let tcp = &mut bytes[20..];
        tcp[..4].copy_from_slice(&[0x01, 0xbb, 0xc3, 0x50]);
        tcp[12] = u8::try_from(tcp_len / 4).unwrap() << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&[0xff, 0xff]);
        tcp[20..20 + options.len()].copy_from_slice(options);
        tcp[tcp_len..].copy_from_slice(payload);
        let sum = tcp_checksum(&bytes);
        bytes[36..38].copy_from_slice(&sum.to_be_bytes());
        bytes
    }

    const SYN_FLAG: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;

    fn mss_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }

    #[test]
    fn syn_checksums_verify() {
        assert_eq!(checksum(&SYN[..20]), 0);
        assert_eq!(tcp_checksum(&SYN), 0);
    }

    #[test]
    fn syn_clamped_1460_to_1360() {
        let mut bytes = SYN;
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(true));
        assert_eq!(mss_at(&bytes, 42), 1360);
        // Only the MSS value and the TCP checksum changed.
        assert_eq!(bytes[36..38], [0xe8, 0xc1]);
        let mut expected = SYN;
        expected[36..38].copy_from_slice(&[0xe8, 0xc1]);
        expected[42..44].copy_from_slice(&1360u16.to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(tcp_checksum(&bytes), 0);
        assert_eq!(checksum(&bytes[..20]), 0);
        // Idempotent.
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(false));
        assert_eq!(bytes, expected);
    }

    #[test]
    fn small_mss_untouched() {
        let mut bytes = segment(SYN_FLAG, &[2, 4, 0x04, 0xb0], &[]);
        let before = bytes.clone();
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(false));
        assert_eq!(bytes, before);
        assert_eq!(
            clamp_mss(&mut bytes, 1200),
            Ok(false),
            "equal is not larger"
        );
        assert_eq!(bytes, before);
    }

    #[test]
    fn syn_ack_clamped() {
        let mut bytes = segment(SYN_ACK, &[2, 4, 0x05, 0xb4, 1, 3, 3, 7], &[]);
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(true));
        assert_eq!(mss_at(&bytes, 42), 1360);
        assert_eq!(tcp_checksum(&bytes), 0);
    }

    #[test]
    fn odd_offset_mss_clamped() {
        // NOP first: the MSS value sits at an odd offset and straddles two
        // checksum words.
        for max in [1360, 536, 1, 0x1234, 0x00ff, 0xff00] {
            let mut bytes = segment(SYN_FLAG, &[1, 2, 4, 0xff, 0xff, 1, 1, 0], b"data");
            assert_eq!(clamp_mss(&mut bytes, max), Ok(true));
            assert_eq!(mss_at(&bytes, 43), max);
            assert_eq!(tcp_checksum(&bytes), 0, "max {max}");
        }
    }

    #[test]
    fn every_mss_option_clamped() {
        let mut bytes = segment(SYN_FLAG, &[2, 4, 0x05, 0xb4, 1, 2, 4, 0x23, 0x28], &[]);
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(true));
        assert_eq!((mss_at(&bytes, 42), mss_at(&bytes, 47)), (1360, 1360));
        assert_eq!(tcp_checksum(&bytes), 0);
    }

    #[test]
    fn left_alone() {
        for (what, mut bytes) in [
            ("ACK", segment(ACK, &[2, 4, 0x05, 0xb4], &[])),
            ("no MSS option", segment(SYN_FLAG, &[1, 1, 4, 2], &[])),
            ("no options", segment(SYN_FLAG, &[], &[])),
            (
                "MSS after EOL",
                segment(SYN_FLAG, &[0, 0, 0, 0, 2, 4, 5, 0xb4], &[]),
            ),
        ] {
            let before = bytes.clone();
            assert_eq!(clamp_mss(&mut bytes, 1360), Ok(false), "{what}");
            assert_eq!(bytes, before, "{what}");
        }
        // Not TCP: UDP with bytes that would read as a SYN with MSS 1460.
        let mut bytes = SYN;
        bytes[9] = IPPROTO_UDP;
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(false));
        assert_eq!(bytes[..9], SYN[..9]);
    }

    #[test]
    fn malformed_options_untouched() {
        for (options, offset, reason) in [
            (&[2, 4, 5, 0xb4, 8, 0][..], 24, "length below 2"),
            (&[2, 4, 5, 0xb4, 8, 1][..], 24, "length below 2"),
            (&[2, 4, 5, 0xb4, 1, 1, 1, 8][..], 27, "no length byte"),
            (
                &[2, 4, 5, 0xb4, 1, 1, 8, 3][..],
                26,
                "runs past the TCP header",
            ),
            (&[2, 3, 5, 1][..], 20, "MSS option length is not 4"),
            (
                &[2, 6, 5, 0xb4, 0, 0, 0, 0][..],
                20,
                "MSS option length is not 4",
            ),
        ] {
            let mut bytes = segment(SYN_FLAG, options, &[]);
            let before = bytes.clone();
            assert_eq!(
                clamp_mss(&mut bytes, 1360),
                Err(MssError::MalformedOption { offset, reason }),
                "{options:?}"
            );
            assert_eq!(bytes, before);
        }
    }

    #[test]
    fn malformed_headers_untouched() {
        let mut bytes = SYN;
        bytes[32] = 0x40;
        assert_eq!(clamp_mss(&mut bytes, 1360), Err(MssError::DataOffset(4)));
        let mut bytes = SYN;
        bytes[32] = 0xf0;
        assert_eq!(
            clamp_mss(&mut bytes, 1360),
            Err(MssError::TcpTruncated {
                needed: 60,
                available: 40
            })
        );
        let mut bytes = SYN;
        bytes[0] = 0x55;
        assert!(matches!(clamp_mss(&mut bytes, 1360), Err(MssError::Ip(_))));
    }

    #[test]
    fn fragments() {
        // Non-first fragment: its bytes are not a TCP header.
        let mut bytes = SYN;
        bytes[6..8].copy_from_slice(&[0x00, 0xb9]);
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let before = bytes;
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(false));
        assert_eq!(bytes, before);
        // First fragment (MF, offset 0) with the whole TCP header: clamped;
        // the incremental update stays right for the reassembled segment.
        let mut bytes = SYN;
        bytes[6] = 0x20;
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        assert_eq!(clamp_mss(&mut bytes, 1360), Ok(true));
        assert_eq!(tcp_checksum(&bytes), 0);
        // First fragment cut inside the TCP header: an error, untouched.
        let mut bytes = SYN[..52].to_vec();
        bytes[2..4].copy_from_slice(&52u16.to_be_bytes());
        bytes[6] = 0x20;
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let before = bytes.clone();
        assert_eq!(
            clamp_mss(&mut bytes, 1360),
            Err(MssError::TcpTruncated {
                needed: 40,
                available: 32
            })
        );
        assert_eq!(bytes, before);
    }

    #[test]
    fn every_truncation() {
        for cut in 0..SYN.len() {
            let mut bytes = SYN[..cut].to_vec();
            if cut >= 20 {
                // Keep Total Length honest so the cut reaches TCP.
                bytes[2..4].copy_from_slice(&u16::try_from(cut).unwrap().to_be_bytes());
            }
            let before = bytes.clone();
            assert!(clamp_mss(&mut bytes, 1360).is_err(), "{cut} bytes");
            assert_eq!(bytes, before);
        }
    }

    /// Random option lists never panic; an error leaves the packet as it
    /// was; a change keeps the checksum valid and lowers every MSS.
    #[test]
    fn random_options() {
        let mut rng = XorShift::new(0xabcd);
        let mut clamped = 0;
        for _ in 0..20_000 {
            // Mostly well-formed options, now and then a random byte.
            let mut options = Vec::new();
            while options.len() < 40 && rng.below(8) != 0 {
                match rng.below(8) {
                    0 | 1 => options.push(1),
                    2 | 3 => options.extend([2, 4, rng.byte(), rng.byte()]),
                    4 => options.extend([4, 2]),
                    5 => options.extend([3, 3, 7]),
                    6 => options.extend([8, 10, 1, 2, 3, 4, 5, 6, 7, 8]),
                    _ => options.push(rng.byte()),
                }
            }
            options.truncate(40);
            let flags = if rng.below(4) == 0 { ACK } else { SYN_FLAG };
            let mut bytes = segment(flags, &options, b"xy");
            let before = bytes.clone();
            let max = u16::try_from(rng.below(2000)).unwrap();
            match clamp_mss(&mut bytes, max) {
                Ok(true) => {
                    clamped += 1;
                    assert_eq!(tcp_checksum(&bytes), 0, "{options:02x?}");
                    assert_eq!(clamp_mss(&mut bytes, max), Ok(false));
                }
                Ok(false) | Err(_) => assert_eq!(bytes, before),
            }
        }
        assert!(clamped > 100, "only {clamped} clamped");
    }
}
