//! GRE (RFC 2784) with the Key and Sequence Number fields of RFC 2890:
//! a checked view, `GreRepr` to parse and emit, and `decap`, the receive
//! fast path that checks a header without building a repr.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Key (optional)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Sequence Number (optional)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! GRE has no length field: the packet is whatever the outer IPv4 header's
//! Total Length leaves after that header, and the payload runs to its end.
//!
//! Reserved0: RFC 2784 section 2.3 says a receiver MUST discard a packet
//! with any of bits 1-5 set unless it implements RFC 1701; RFC 2890 gives
//! bits 2 and 3 their meaning (K, S). We do not implement RFC 1701 (source
//! routing, recursion control), so bits 1, 4 and 5 set are an error; bits
//! 6-12 are ignored on receipt and sent as zero, as section 2.3 says.

use super::ipv4::{fold, sum_words};

/// The header without optional fields.
pub const BASE_HEADER_LEN: usize = 4;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const FLAGS: Field = 0..2;
    pub const PROTOCOL: Field = 2..4;
    /// Checksum and Reserved1, when C is set.
    pub const CHECKSUM: Field = 4..6;
}

const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
/// Bits 1, 4, 5: RFC 1701's Routing Present, Strict Source Route and the
/// top bit of Recursion Control (RFC 2784 section 2.3: discard).
const MUST_BE_ZERO: u16 = 0x4c00;
/// Bits 6-12: ignored on receipt (RFC 2784 section 2.3).
const IGNORED: u16 = 0x03f8;
const VERSION: u16 = 0x0007;

/// A GRE packet that must be dropped, or a header that cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GreError {
    /// Shorter than the header its flags announce.
    #[error("GRE packet truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// Version other than 0 (RFC 2784 section 2.3.1; version 1 is PPTP's
    /// enhanced GRE, RFC 2637).
    #[error("GRE version {0}, expected 0")]
    Version(u8),
    /// Any of bits 1, 4, 5 set: RFC 1701 routing or recursion, which RFC
    /// 2784 section 2.3 says to discard when RFC 1701 is not implemented.
    #[error("GRE reserved bits {0:#06x} set (RFC 1701 routing or recursion control)")]
    ReservedBits(u16),
    /// C set and the checksum over header and payload does not verify
    /// (RFC 2784 section 2.5).
    #[error("GRE checksum does not verify")]
    BadChecksum,
    /// Emit: the buffer cannot hold the header.
    #[error("GRE emit: needs {needed} bytes, the buffer has {available}")]
    BufferTooSmall { needed: usize, available: usize },
}

/// Header length for the C, K and S bits in `flags`.
const fn header_len_for(flags: u16) -> usize {
    BASE_HEADER_LEN
        + if flags & FLAG_C != 0 { 4 } else { 0 }
        + if flags & FLAG_K != 0 { 4 } else { 0 }
        + if flags & FLAG_S != 0 { 4 } else { 0 }
}

/// The receive fast path: checks the header of the GRE packet `packet` (the
/// outer IPv4 payload, exactly) as `GreRepr::parse` does (length, version,
/// reserved bits, checksum when present) and returns the protocol type and
/// the offset of the payload. Key and sequence number are not looked at.
pub fn decap(packet: &[u8]) -> Result<(u16, usize), GreError> {
    let Some(&[f0, f1, p0, p1]) = packet.first_chunk::<4>() else {
        return Err(GreError::Truncated {
            needed: BASE_HEADER_LEN,
            available: packet.len(),
        });
    };
    let flags = u16::from_be_bytes([f0, f1]);
    if flags & VERSION != 0 {
        return Err(GreError::Version(f1 & 0x07));
    }
    if flags & MUST_BE_ZERO != 0 {
        return Err(GreError::ReservedBits(flags & MUST_BE_ZERO));
    }
    let header_len = header_len_for(flags);
    if packet.len() < header_len {
        return Err(GreError::Truncated {
            needed: header_len,
            available: packet.len(),
        });
    }
    // RFC 2784 section 2.5: over header and payload, the field included.
    if flags & FLAG_C != 0 && fold(sum_words(packet, 0)) != 0xffff {
        return Err(GreError::BadChecksum);
    }
    Ok((u16::from_be_bytes([p0, p1]), header_len))
}

/// A view over a GRE packet: `buffer` is the whole packet, payload to the
/// end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// A view without checks: the accessors panic on a buffer shorter than
    /// the header. Use `new_checked` on received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, GreError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Ok` when the buffer holds the header the C, K and S bits announce,
    /// so that every accessor is safe. Version, reserved bits and checksum
    /// are `GreRepr::parse`'s checks.
    pub fn check_len(&self) -> Result<(), GreError> {
        let available = self.buffer.as_ref().len();
        let needed = if available < BASE_HEADER_LEN {
            BASE_HEADER_LEN
        } else {
            self.header_len()
        };
        if available < needed {
            return Err(GreError::Truncated { needed, available });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u16 {
        let bytes = self.buffer.as_ref();
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    pub fn checksum_present(&self) -> bool {
        self.flags() & FLAG_C != 0
    }

    pub fn key_present(&self) -> bool {
        self.flags() & FLAG_K != 0
    }

    pub fn sequence_present(&self) -> bool {
        self.flags() & FLAG_S != 0
    }

    /// Reserved0: bits 1 and 4-12 of the first word, in place (C, K, S and
    /// the version masked out).
    pub fn reserved0(&self) -> u16 {
        self.flags() & (MUST_BE_ZERO | IGNORED)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[1] & 0x07
    }

    /// The payload's EtherType (`ETH_P_IPV4`, `ETH_P_NHRP`, ...).
    pub fn protocol(&self) -> u16 {
        let bytes = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    pub fn header_len(&self) -> usize {
        header_len_for(self.flags())
    }

    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present().then(|| {
            let bytes = &self.buffer.as_ref()[field::CHECKSUM];
            u16::from_be_bytes([bytes[0], bytes[1]])
        })
    }

    /// Reserved1, present with the checksum (RFC 2784 section 2.6: sent as
    /// zero).
    pub fn reserved1(&self) -> Option<u16> {
        self.checksum_present().then(|| {
            let bytes = self.buffer.as_ref();
            u16::from_be_bytes([bytes[6], bytes[7]])
        })
    }

    fn word_at(&self, offset: usize) -> u32 {
        let bytes = &self.buffer.as_ref()[offset..offset + 4];
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    /// The Key field (RFC 2890 section 2.1).
    pub fn key(&self) -> Option<u32> {
        let offset = BASE_HEADER_LEN + if self.checksum_present() { 4 } else { 0 };
        self.key_present().then(|| self.word_at(offset))
    }

    /// The Sequence Number field (RFC 2890 section 2.2).
    pub fn sequence(&self) -> Option<u32> {
        let offset = self.header_len() - 4;
        self.sequence_present().then(|| self.word_at(offset))
    }

    /// `true` when C is clear, or set and the checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || fold(sum_words(self.buffer.as_ref(), 0)) == 0xffff
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }
}

/// A GRE header. Parsing keeps any protocol type; emitting writes the
/// reserved fields as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GreRepr {
    /// C: a checksum over header and payload is present.
    pub checksum: bool,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
    pub protocol: u16,
}

impl GreRepr {
    /// The header of a packet that `decap` accepts.
    pub fn parse<T: AsRef<[u8]>>(packet: &GrePacket<T>) -> Result<Self, GreError> {
        decap(packet.buffer.as_ref())?;
        Ok(Self {
            checksum: packet.checksum_present(),
            key: packet.key(),
            sequence: packet.sequence(),
            protocol: packet.protocol(),
        })
    }

    pub const fn header_len(&self) -> usize {
        header_len_for(self.flags())
    }

    const fn flags(&self) -> u16 {
        (if self.checksum { FLAG_C } else { 0 })
            | (if self.key.is_some() { FLAG_K } else { 0 })
            | (if self.sequence.is_some() { FLAG_S } else { 0 })
    }

    /// Writes every header field, the checksum as zero, into `header`
    /// (exactly `header_len()` bytes).
    fn write_fields(&self, header: &mut [u8]) {
        header[field::FLAGS].copy_from_slice(&self.flags().to_be_bytes());
        header[field::PROTOCOL].copy_from_slice(&self.protocol.to_be_bytes());
        let mut at = BASE_HEADER_LEN;
        if self.checksum {
            header[at..at + 4].fill(0);
            at += 4;
        }
        for word in [self.key, self.sequence].into_iter().flatten() {
            header[at..at + 4].copy_from_slice(&word.to_be_bytes());
            at += 4;
        }
    }

    fn too_small(&self, available: usize) -> GreError {
        GreError::BufferTooSmall {
            needed: self.header_len(),
            available,
        }
    }

    /// Writes the header in front of a payload already in place: `packet`
    /// is `header_len()` bytes of room followed by the payload, and the
    /// checksum (if any) covers all of it.
    pub fn emit(&self, packet: &mut [u8]) -> Result<(), GreError> {
        let header_len = self.header_len();
        let Some(header) = packet.get_mut(..header_len) else {
            return Err(self.too_small(packet.len()));
        };
        self.write_fields(header);
        if self.checksum {
            let sum = !fold(sum_words(packet, 0));
            packet[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    }

    /// Writes the header into the first `header_len()` bytes of `header`
    /// for a payload held elsewhere (a separate I/O vector); the checksum
    /// covers header and `payload` as if they were contiguous (the header
    /// length is a multiple of 4, so the two sums simply add).
    pub fn emit_header(&self, header: &mut [u8], payload: &[u8]) -> Result<(), GreError> {
        let available = header.len();
        let Some(header) = header.get_mut(..self.header_len()) else {
            return Err(self.too_small(available));
        };
        self.write_fields(header);
        if self.checksum {
            let sum = !fold(sum_words(payload, sum_words(header, 0)));
            header[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::datapath::wire::{
        ipv4::tests::HEADER as INNER,
        testing::{JUNK, XorShift},
    };
    use crate::net::{ETH_P_IPV4, ETH_P_NHRP};

    /// The plainest header: no options, IPv4 inside.
    const PLAIN: [u8; 4] = [0x00, 0x00, 0x08, 0x00];

    /// K set, key 12345 (Cisco `tunnel key 12345`), NHRP inside.
    const KEYED: [u8; 8] = [0x20, 0x00, 0x20, 0x01, 0x00, 0x00, 0x30, 0x39];

    /// C, K and S: checksum 0x47f9 over this header and `INNER` (computed
    /// by hand, and by tshark, which reports "Checksum Status: Good"), key
    /// 1, sequence 5.
    const FULL: [u8; 16] = [
        0xb0, 0x00, 0x08, 0x00, 0x47, 0xf9, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x05,
    ];

    /// C only: checksum 0x77ff over this header and `INNER` (tshark agrees).
    const CHECKSUMMED: [u8; 8] = [0x80, 0x00, 0x08, 0x00, 0x77, 0xff, 0x00, 0x00];

    fn with_inner(header: &[u8]) -> Vec<u8> {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&INNER);
        bytes
    }

    fn full_repr() -> GreRepr {
        GreRepr {
            checksum: true,
            key: Some(1),
            sequence: Some(5),
            protocol: ETH_P_IPV4,
        }
    }

    #[test]
    fn deconstruct_plain() {
        let bytes = with_inner(&PLAIN);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert!(!packet.checksum_present() && !packet.key_present() && !packet.sequence_present());
        assert_eq!((packet.version(), packet.reserved0()), (0, 0));
        assert_eq!(packet.protocol(), ETH_P_IPV4);
        assert_eq!(packet.header_len(), 4);
        assert_eq!(
            (packet.checksum(), packet.key(), packet.sequence()),
            (None, None, None)
        );
        assert_eq!(packet.payload(), INNER);
        assert!(packet.verify_checksum());
        assert_eq!(decap(&bytes), Ok((ETH_P_IPV4, 4)));
    }

    #[test]
    fn deconstruct_keyed() {
        let packet = GrePacket::new_checked(&KEYED[..]).unwrap();
        assert!(packet.key_present() && !packet.checksum_present());
        assert_eq!(packet.key(), Some(12345));
        assert_eq!(packet.protocol(), ETH_P_NHRP);
        assert!(packet.payload().is_empty());
        assert_eq!(
            GreRepr::parse(&packet),
            Ok(GreRepr {
                checksum: false,
                key: Some(12345),
                sequence: None,
                protocol: ETH_P_NHRP,
            })
        );
    }

    #[test]
    fn deconstruct_full() {
        let bytes = with_inner(&FULL);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 16);
        assert_eq!(packet.checksum(), Some(0x47f9));
        assert_eq!(packet.reserved1(), Some(0));
        assert_eq!(packet.key(), Some(1));
        assert_eq!(packet.sequence(), Some(5));
        assert_eq!(packet.payload(), INNER);
        assert!(packet.verify_checksum());
        assert_eq!(GreRepr::parse(&packet), Ok(full_repr()));
        assert_eq!(decap(&bytes), Ok((ETH_P_IPV4, 16)));
    }

    #[test]
    fn sequence_without_key() {
        let bytes = [0x10, 0x00, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x45];
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((packet.key(), packet.sequence()), (None, Some(0xdead_beef)));
        assert_eq!(packet.payload(), [0x45]);
    }

    #[test]
    fn emit_into_junk() {
        for (repr, header) in [
            (GreRepr::default(), &[0, 0, 0, 0][..]),
            (
                GreRepr {
                    protocol: ETH_P_IPV4,
                    ..GreRepr::default()
                },
                &PLAIN[..],
            ),
            (
                GreRepr {
                    key: Some(12345),
                    protocol: ETH_P_NHRP,
                    ..GreRepr::default()
                },
                &KEYED[..],
            ),
            (full_repr(), &FULL[..]),
            (
                GreRepr {
                    checksum: true,
                    protocol: ETH_P_IPV4,
                    ..GreRepr::default()
                },
                &CHECKSUMMED[..],
            ),
        ] {
            let payload: &[u8] = if repr.checksum { &INNER } else { &[] };
            // In place: junk in front of the payload.
            let mut packet = vec![JUNK; repr.header_len()];
            packet.extend_from_slice(payload);
            repr.emit(&mut packet).unwrap();
            assert_eq!(&packet[..repr.header_len()], header, "{repr:?}");
            assert_eq!(&packet[repr.header_len()..], payload);
            // Split: a longer junk header buffer, only its start written.
            let mut split = vec![JUNK; repr.header_len() + 3];
            repr.emit_header(&mut split, payload).unwrap();
            assert_eq!(&split[..repr.header_len()], header, "{repr:?}");
            assert_eq!(split[repr.header_len()..], [JUNK; 3]);
        }
    }

    #[test]
    fn emit_errors() {
        assert_eq!(
            full_repr().emit(&mut [0; 15]),
            Err(GreError::BufferTooSmall {
                needed: 16,
                available: 15
            })
        );
        assert_eq!(
            GreRepr::default().emit_header(&mut [0; 3], &[]),
            Err(GreError::BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
    }

    #[test]
    fn round_trip_with_odd_payloads() {
        let mut rng = XorShift::new(99);
        for len in 0..64 {
            let payload: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            let repr = GreRepr {
                checksum: rng.below(2) == 0,
                key: (rng.below(2) == 0).then(|| u32::try_from(rng.below(1 << 30)).unwrap()),
                sequence: (rng.below(2) == 0).then_some(7),
                protocol: 0x6558,
            };
            let mut packet = vec![JUNK; repr.header_len()];
            packet.extend_from_slice(&payload);
            repr.emit(&mut packet).unwrap();
            let view = GrePacket::new_checked(&packet[..]).unwrap();
            assert_eq!(GreRepr::parse(&view), Ok(repr));
            assert_eq!(view.payload(), payload);
            let mut header = vec![JUNK; repr.header_len()];
            repr.emit_header(&mut header, &payload).unwrap();
            assert_eq!(header, packet[..repr.header_len()]);
        }
    }

    #[test]
    fn version_must_be_zero() {
        for version in 1..8 {
            let bytes = [0x00, version, 0x88, 0x0b];
            assert_eq!(decap(&bytes), Err(GreError::Version(version)));
            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.version(), version);
            assert_eq!(GreRepr::parse(&packet), Err(GreError::Version(version)));
        }
    }

    #[test]
    fn rfc1701_bits_discarded_others_ignored() {
        // Bits 1 (R), 4 (s), 5 (Recur's top bit): discard.
        for bit in [1, 4, 5] {
            let flags = 0x8000_u16 >> bit;
            let mut bytes = PLAIN;
            bytes[..2].copy_from_slice(&flags.to_be_bytes());
            assert_eq!(
                decap(&bytes),
                Err(GreError::ReservedBits(flags)),
                "bit {bit}"
            );
        }
        // Bits 6-12: ignored on receipt, sent as zero.
        for bit in 6..=12 {
            let flags = 0x8000_u16 >> bit;
            let mut bytes = PLAIN;
            bytes[..2].copy_from_slice(&flags.to_be_bytes());
            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.reserved0(), flags);
            let repr = GreRepr::parse(&packet).unwrap();
            let mut out = [JUNK; 4];
            repr.emit(&mut out).unwrap();
            assert_eq!(out, PLAIN, "bit {bit}");
        }
    }

    #[test]
    fn checksum_must_verify() {
        let mut bytes = with_inner(&FULL);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(decap(&bytes), Err(GreError::BadChecksum));
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(GreRepr::parse(&packet), Err(GreError::BadChecksum));
        // Reserved1 is covered by the checksum but its value is not judged.
        let mut bytes = with_inner(&CHECKSUMMED);
        bytes[6..8].copy_from_slice(&[0x12, 0x34]);
        let sum = u16::from_be_bytes([bytes[4], bytes[5]]);
        let fixed = super::super::ipv4::checksum_update(sum, 0, 0x1234);
        bytes[4..6].copy_from_slice(&fixed.to_be_bytes());
        assert_eq!(decap(&bytes), Ok((ETH_P_IPV4, 8)));
    }

    #[test]
    fn unknown_protocol_kept() {
        let bytes = [0x00, 0x00, 0x88, 0xbe, 0xff];
        let repr = GreRepr::parse(&GrePacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.protocol, 0x88be);
        assert_eq!(decap(&bytes), Ok((0x88be, 4)));
    }

    #[test]
    fn every_truncation_fails() {
        // No length field: any cut inside the header fails.
        for whole in [&FULL[..], &CHECKSUMMED[..], &KEYED[..]] {
            for cut in 0..whole.len() {
                let bytes = &whole[..cut];
                let needed = if cut < 4 { 4 } else { whole.len() };
                assert_eq!(
                    decap(bytes),
                    Err(GreError::Truncated {
                        needed,
                        available: cut
                    })
                );
                assert!(GrePacket::new_checked(bytes).is_err(), "{cut} bytes");
            }
        }
        // A cut payload fails the checksum, except a cut that removes
        // exactly the inner IPv4 header: its words, checksum included, sum
        // to -0 (0xffff), which adds nothing.
        for header in [&FULL[..], &CHECKSUMMED[..]] {
            let whole = with_inner(header);
            for cut in header.len()..whole.len() {
                let expected = if cut == header.len() {
                    Ok((ETH_P_IPV4, header.len()))
                } else {
                    Err(GreError::BadChecksum)
                };
                assert_eq!(decap(&whole[..cut]), expected, "{cut} bytes");
            }
        }
    }

    /// Random headers never panic; `decap` and `parse` agree; what parses
    /// emits back to the same bytes when no ignored field is set.
    #[test]
    fn random_bytes() {
        let mut rng = XorShift::new(0xfeed_beef);
        let mut canonical = 0;
        for _ in 0..50_000 {
            let len = rng.below(40);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if len >= 2 && rng.below(4) != 0 {
                // Mostly valid flags: C, K, S in any combination.
                bytes[0] &= 0xb0;
                bytes[1] &= if rng.below(4) == 0 { 0xff } else { 0 };
            }
            if len >= 8 && bytes[0] & 0x80 != 0 && rng.below(2) == 0 {
                bytes[4..6].fill(0);
                let sum = super::super::ipv4::checksum(&bytes);
                bytes[4..6].copy_from_slice(&sum.to_be_bytes());
            }
            let fast = decap(&bytes);
            let Ok(packet) = GrePacket::new_checked(&bytes[..]) else {
                assert!(fast.is_err());
                continue;
            };
            let _ = (
                packet.checksum(),
                packet.key(),
                packet.sequence(),
                packet.payload(),
            );
            let parsed = GreRepr::parse(&packet);
            assert_eq!(
                fast,
                parsed.map(|repr| (repr.protocol, repr.header_len())),
                "{bytes:02x?}"
            );
            let Ok(repr) = parsed else { continue };
            if packet.reserved0() == 0 && packet.reserved1().unwrap_or(0) == 0 {
                let mut out = bytes.clone();
                out[..repr.header_len()].fill(JUNK);
                repr.emit(&mut out).unwrap();
                assert_eq!(out, bytes);
                canonical += 1;
            }
        }
        assert!(canonical > 1000, "only {canonical} canonical packets");
    }
}
