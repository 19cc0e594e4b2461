//! The fixed header (RFC 2332 section 5.1), 20 bytes, and a checked view
//! over a packet that starts with it:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            ar$afn             |          ar$pro.type          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          ar$pro.snap                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  ar$pro.snap  |   ar$hopcnt   |            ar$pktsz           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           ar$chksum           |            ar$extoff          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | ar$op.version |   ar$op.type  |    ar$shtl    |    ar$sstl    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::NhrpError;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// ar$afn of IPv4 NBMA addresses (IANA address family 1).
pub const AFN_IPV4: u16 = 1;
/// ar$pro.type of IPv4 protocol addresses (the EtherType).
pub const ETH_P_IPV4: u16 = 0x0800;
/// ar$op.version of RFC 2332.
pub const VERSION: u8 = 1;

/// Offsets of the fixed header's fields.
pub(super) mod field {
    pub type Field = core::ops::Range<usize>;

    pub const AFN: Field = 0..2;
    pub const PRO_TYPE: Field = 2..4;
    pub const PRO_SNAP: Field = 4..9;
    pub const HOPCNT: usize = 9;
    pub const PKTSZ: Field = 10..12;
    pub const CHKSUM: Field = 12..14;
    pub const EXTOFF: Field = 14..16;
    pub const OP_VERSION: usize = 16;
    pub const OP_TYPE: usize = 17;
    pub const SHTL: usize = 18;
    pub const SSTL: usize = 19;
}

/// The Internet checksum's one's complement sum of `data`, folded.
pub(super) fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // At most 0xffff after folding.
    u16::try_from(acc).unwrap_or(u16::MAX)
}

/// A view over an NHRP packet's fixed header; `buffer` may run past
/// ar$pktsz (the rest is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhrpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NhrpPacket<T> {
    /// A view without checks: accessors panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, NhrpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Ok` when the buffer holds the fixed header and ar$pktsz bytes, and
    /// ar$extoff is 0 or lies between the fixed header and ar$pktsz.
    pub fn check_len(&self) -> Result<(), NhrpError> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(NhrpError::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        let pktsz = self.packet_size();
        if usize::from(pktsz) < HEADER_LEN {
            return Err(NhrpError::PacketSize(pktsz));
        }
        if available < usize::from(pktsz) {
            return Err(NhrpError::Truncated {
                needed: usize::from(pktsz),
                available,
            });
        }
        let extoff = self.extension_offset();
        if extoff != 0 && (usize::from(extoff) < HEADER_LEN || extoff > pktsz) {
            return Err(NhrpError::ExtensionOffset { extoff, pktsz });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, range: field::Field) -> u16 {
        let bytes = &self.buffer.as_ref()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    pub fn afn(&self) -> u16 {
        self.u16_at(field::AFN)
    }

    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PRO_TYPE)
    }

    pub fn protocol_snap(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PRO_SNAP]
    }

    pub fn hop_count(&self) -> u8 {
        self.buffer.as_ref()[field::HOPCNT]
    }

    pub fn packet_size(&self) -> u16 {
        self.u16_at(field::PKTSZ)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHKSUM)
    }

    pub fn extension_offset(&self) -> u16 {
        self.u16_at(field::EXTOFF)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::OP_VERSION]
    }

    pub fn op_type(&self) -> u8 {
        self.buffer.as_ref()[field::OP_TYPE]
    }

    pub fn shtl(&self) -> u8 {
        self.buffer.as_ref()[field::SHTL]
    }

    pub fn sstl(&self) -> u8 {
        self.buffer.as_ref()[field::SSTL]
    }

    /// The packet, ar$pktsz bytes.
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.packet_size())]
    }

    /// `true` when the checksum over ar$pktsz bytes verifies.
    pub fn verify_checksum(&self) -> bool {
        ones_complement_sum(self.packet()) == 0xffff
    }

    /// The mandatory part: after the fixed header, up to the extensions.
    pub fn mandatory(&self) -> &[u8] {
        let end = match self.extension_offset() {
            0 => self.packet_size(),
            extoff => extoff,
        };
        &self.buffer.as_ref()[HEADER_LEN..usize::from(end)]
    }

    /// The extensions, empty when ar$extoff is 0.
    pub fn extensions(&self) -> &[u8] {
        match self.extension_offset() {
            0 => &[],
            extoff => &self.buffer.as_ref()[usize::from(extoff)..usize::from(self.packet_size())],
        }
    }
}
