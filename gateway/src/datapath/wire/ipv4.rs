//! IPv4 (RFC 791): a checked view over a packet, the in-place edits a
//! router makes (TTL, addresses, header checksum), the Internet checksum
//! (RFC 1071) and its incremental update (RFC 1624), and an `Ipv4Repr` for
//! the headers this gateway builds itself.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP/ECN    |          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

/// Length of a header without options (IHL 5).
pub const HEADER_LEN: usize = 20;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

// RFC 791 section 3.1: bit 0 reserved, bit 1 DF, bit 2 MF.
const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// An IPv4 packet that cannot be parsed or edited, or a header that cannot
/// be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    /// The buffer ends before the fixed header or the header the IHL field
    /// declares.
    #[error("IPv4 packet truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// The version nibble is not 4.
    #[error("IPv4 packet: version {0}, expected 4")]
    Version(u8),
    /// IHL below 5: the header would be shorter than its fixed part.
    #[error("IPv4 packet: IHL {0} is below the minimum of 5")]
    HeaderLen(u8),
    /// Total Length is shorter than the header, or longer than the buffer.
    #[error(
        "IPv4 packet: Total Length {total_len} with a {header_len}-byte header in {available} bytes"
    )]
    TotalLen {
        total_len: u16,
        header_len: usize,
        available: usize,
    },
    /// The header checksum does not verify (RFC 1812 section 5.2.2: discard).
    #[error("IPv4 packet: bad header checksum")]
    BadChecksum,
    /// TTL is 0 or 1: forwarding would send it with TTL 0 (RFC 1812
    /// section 5.3.1: discard, and send Time Exceeded).
    #[error("IPv4 packet: TTL {0} expired in transit")]
    TtlExpired(u8),
    /// Emit: the output buffer is too small.
    #[error("IPv4 emit: needs {needed} bytes, the buffer has {available}")]
    BufferTooSmall { needed: usize, available: usize },
    /// Emit: header and payload longer than the Total Length field allows.
    #[error("IPv4 emit: {0} bytes do not fit Total Length (at most 65535)")]
    TooLong(usize),
}

/// Ones' complement sum of `data` as big-endian 16-bit words (a last odd
/// byte padded with zero, RFC 1071 section 4.1), added to `acc` and not yet
/// folded. Summed four bytes at a time: RFC 1071 section 2(C), the fold at
/// the end makes the wider sum equal to the 16-bit one. The accumulator
/// cannot overflow below 2^32 words (16 GiB).
pub(super) fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        acc += u64::from(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
    }
    acc += match *chunks.remainder() {
        [a, b, c] => u64::from(u32::from_be_bytes([a, b, c, 0])),
        [a, b] => u64::from(u32::from_be_bytes([a, b, 0, 0])),
        [a] => u64::from(u32::from_be_bytes([a, 0, 0, 0])),
        _ => 0,
    };
    acc
}

/// `acc` folded to 16 bits with end-around carry (RFC 1071 section 4.1).
pub(super) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // Folded: fits in 16 bits.
    u16::try_from(acc).unwrap_or(u16::MAX)
}

/// The Internet checksum of `data` (RFC 1071): the ones' complement of the
/// ones' complement sum of its 16-bit words. Over a header whose checksum
/// field is filled, the result is 0 when it verifies.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// The checksum after a 16-bit word covered by it changes from `old` to
/// `new`: RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which (unlike eqn. 2)
/// never turns a valid checksum into the 0xffff form. A word at an odd
/// byte offset in the checksummed data is summed byte-swapped: pass `old`
/// and `new` through `u16::swap_bytes` (RFC 1071 section 2(B)).
pub fn checksum_update(old_sum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!old_sum) + u64::from(!old) + u64::from(new))
}

/// A view over an IPv4 packet at the start of `buffer`. The buffer may
/// continue past Total Length (Ethernet padding, a receive buffer): those
/// bytes are not part of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks: the accessors panic on a buffer shorter than
    /// the header or Total Length says. Use `new_checked` on received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, Ipv4Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Ok` when every accessor is safe: version 4 (the IHL means nothing
    /// otherwise), IHL at least 5, the header within the buffer, and Total
    /// Length between the header length and the buffer length. The header
    /// checksum is not checked here (`verify_checksum`).
    pub fn check_len(&self) -> Result<(), Ipv4Error> {
        let bytes = self.buffer.as_ref();
        let Some(&ver_ihl) = bytes.first() else {
            return Err(Ipv4Error::Truncated {
                needed: HEADER_LEN,
                available: 0,
            });
        };
        if ver_ihl >> 4 != 4 {
            return Err(Ipv4Error::Version(ver_ihl >> 4));
        }
        if bytes.len() < HEADER_LEN {
            return Err(Ipv4Error::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let ihl = ver_ihl & 0x0f;
        if ihl < 5 {
            return Err(Ipv4Error::HeaderLen(ihl));
        }
        let header_len = usize::from(ihl) * 4;
        if bytes.len() < header_len {
            return Err(Ipv4Error::Truncated {
                needed: header_len,
                available: bytes.len(),
            });
        }
        let total_len = self.total_len();
        if usize::from(total_len) < header_len || usize::from(total_len) > bytes.len() {
            return Err(Ipv4Error::TotalLen {
                total_len,
                header_len,
                available: bytes.len(),
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::TOTAL_LEN])
    }

    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    fn flags_frag(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FLAGS_FRAG])
    }

    /// The reserved flag (RFC 791: must be zero; RFC 3514 aside).
    pub fn reserved_flag(&self) -> bool {
        self.flags_frag() & FLAG_RESERVED != 0
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFFSET_MASK) << 3
    }

    /// A fragment other than the first: it carries no transport header.
    pub fn is_non_first_fragment(&self) -> bool {
        self.flags_frag() & FRAG_OFFSET_MASK != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn src(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC])
    }

    pub fn dst(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST])
    }

    /// The header: fixed part and options.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The options and padding, possibly empty.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload, up to Total Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// The packet, up to Total Length (trailing bytes cut).
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.total_len())]
    }

    /// The header checksum verifies (RFC 1071: the sum over the header,
    /// checksum field included, is all ones).
    pub fn verify_checksum(&self) -> bool {
        checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_ident(&mut self, ident: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    fn set_flags_frag(&mut self, value: u16) {
        self.buffer.as_mut()[field::FLAGS_FRAG].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        let bits = self.flags_frag() & !FLAG_DF;
        self.set_flags_frag(bits | if value { FLAG_DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        let bits = self.flags_frag() & !FLAG_MF;
        self.set_flags_frag(bits | if value { FLAG_MF } else { 0 });
    }

    /// Fragment offset in bytes; the low three bits are dropped (the field
    /// counts 8-byte units).
    pub fn set_frag_offset(&mut self, offset: u16) {
        let bits = self.flags_frag() & !FRAG_OFFSET_MASK;
        self.set_flags_frag(bits | (offset >> 3));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum from scratch and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum(self.header());
        self.set_checksum(sum);
    }

    /// Forwarding's TTL decrement (RFC 1812 section 5.3.1) with the header
    /// checksum updated incrementally (RFC 1624): TTL and Protocol share
    /// one 16-bit word. A TTL of 0 or 1 is left alone and is an error: the
    /// packet must not be forwarded.
    pub fn decrement_ttl(&mut self) -> Result<(), Ipv4Error> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return Err(Ipv4Error::TtlExpired(ttl));
        }
        let protocol = self.protocol();
        let old = u16::from_be_bytes([ttl, protocol]);
        let new = u16::from_be_bytes([ttl - 1, protocol]);
        let sum = checksum_update(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(sum);
        Ok(())
    }

    /// The options, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// The payload, writable, up to Total Length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

/// An IPv4 header without options, as this gateway emits it (ICMP errors,
/// outer headers of tunnelled packets). Parsing a header with options
/// keeps the rest and drops the options; the reserved flag is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes; a multiple of 8 (emit drops the low three bits).
    pub frag_offset: u16,
    /// Length of the payload: Total Length minus the header.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// The header of a checked packet whose checksum verifies.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self, Ipv4Error> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Ipv4Error::BadChecksum);
        }
        Ok(Self {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            payload_len: packet.payload().len(),
        })
    }

    /// Length of the emitted header: no options.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of the whole packet.
    pub const fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header, checksum filled, into the first `HEADER_LEN`
    /// bytes of `buf`; the payload (after it) is not touched.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Ipv4Error> {
        let total_len =
            u16::try_from(self.total_len()).map_err(|_| Ipv4Error::TooLong(self.total_len()))?;
        let Some(header) = buf.get_mut(..HEADER_LEN) else {
            return Err(Ipv4Error::BufferTooSmall {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        header[field::VER_IHL] = 0x45;
        let mut packet = Ipv4Packet::new_unchecked(header);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_flags_frag(
            if self.dont_frag { FLAG_DF } else { 0 }
                | if self.more_frags { FLAG_MF } else { 0 }
                | (self.frag_offset >> 3),
        );
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
        packet.fill_checksum();
        Ok(())
    }
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn addr(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

#[cfg(test)]
pub(super) mod tests;
