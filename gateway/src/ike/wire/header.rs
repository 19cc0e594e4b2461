//! The IKE header (RFC 7296 §3.1): a checked view over its 28 bytes and the
//! `Header` representation the exchange code works with.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The codec does not judge the version: an IKEv1 or IKEv3 header parses,
//! and the exchange code answers INVALID_MAJOR_VERSION from it.

use super::bytes::{Field, be32, be64, need};
use super::{PayloadType, WireError};

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;

/// The IKEv2 major version.
pub const IKEV2_MAJOR_VERSION: u8 = 2;

mod field {
    use super::Field;

    pub const SPI_I: Field = 0..8;
    pub const SPI_R: Field = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Field = 20..24;
    pub const LENGTH: Field = 24..28;
}

const FLAG_INITIATOR: u8 = 0x08;
const FLAG_VERSION: u8 = 0x10;
const FLAG_RESPONSE: u8 = 0x20;

codepoint! {
    /// Exchange types (IANA "IKEv2 Exchange Types").
    pub enum ExchangeType(u8) {
        IkeSaInit = 34 => "IKE_SA_INIT",
        IkeAuth = 35 => "IKE_AUTH",
        CreateChildSa = 36 => "CREATE_CHILD_SA",
        Informational = 37 => "INFORMATIONAL",
        /// RFC 5723.
        IkeSessionResume = 38 => "IKE_SESSION_RESUME",
        /// RFC 9242.
        IkeIntermediate = 43 => "IKE_INTERMEDIATE",
        /// RFC 9370.
        IkeFollowupKe = 44 => "IKE_FOLLOWUP_KE",
    }
}

/// The header flags. Reserved bits are ignored on receipt and sent as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HeaderFlags {
    /// I (0x08): sent by the original initiator of the IKE SA.
    pub initiator: bool,
    /// R (0x20): this message is a response.
    pub response: bool,
    /// V (0x10): the sender could speak a higher major version.
    pub version: bool,
}

impl HeaderFlags {
    pub const fn from_bits(bits: u8) -> Self {
        Self {
            initiator: bits & FLAG_INITIATOR != 0,
            response: bits & FLAG_RESPONSE != 0,
            version: bits & FLAG_VERSION != 0,
        }
    }

    pub const fn bits(self) -> u8 {
        (if self.initiator { FLAG_INITIATOR } else { 0 })
            | (if self.response { FLAG_RESPONSE } else { 0 })
            | (if self.version { FLAG_VERSION } else { 0 })
    }
}

/// A view over the IKE header at the start of `buffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderView<T> {
    /// A view without a length check: the accessors panic on fewer than
    /// `HEADER_LEN` bytes. Use `new_checked` on received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let view = Self::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// `Ok` when the buffer holds the whole header. It does not compare the
    /// Length field with the buffer: that is `Message::parse`'s check.
    pub fn check_len(&self) -> Result<(), WireError> {
        need(self.buffer.as_ref(), HEADER_LEN, "IKE header", 0)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn spi_i(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SPI_I])
    }

    pub fn spi_r(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SPI_R])
    }

    pub fn next_payload(&self) -> PayloadType {
        self.buffer.as_ref()[field::NEXT_PAYLOAD].into()
    }

    pub fn major_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] >> 4
    }

    pub fn minor_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] & 0x0f
    }

    pub fn exchange(&self) -> ExchangeType {
        self.buffer.as_ref()[field::EXCHANGE].into()
    }

    pub fn flags(&self) -> HeaderFlags {
        HeaderFlags::from_bits(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn message_id(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::MESSAGE_ID])
    }

    pub fn length(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::LENGTH])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HeaderView<T> {
    pub fn set_spi_i(&mut self, spi: u64) {
        self.buffer.as_mut()[field::SPI_I].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_spi_r(&mut self, spi: u64) {
        self.buffer.as_mut()[field::SPI_R].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_next_payload(&mut self, next: PayloadType) {
        self.buffer.as_mut()[field::NEXT_PAYLOAD] = next.into();
    }

    /// Both version nibbles; values above 15 are cut to their low nibble.
    pub fn set_version(&mut self, major: u8, minor: u8) {
        self.buffer.as_mut()[field::VERSION] = (major << 4) | (minor & 0x0f);
    }

    pub fn set_exchange(&mut self, exchange: ExchangeType) {
        self.buffer.as_mut()[field::EXCHANGE] = exchange.into();
    }

    /// Writes the whole flags byte: the reserved bits become zero.
    pub fn set_flags(&mut self, flags: HeaderFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.bits();
    }

    pub fn set_message_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::MESSAGE_ID].copy_from_slice(&id.to_be_bytes());
    }

    pub fn set_length(&mut self, length: u32) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&length.to_be_bytes());
    }
}

/// The IKE header.
///
/// `next_payload` and `length` describe the bytes that follow; when a whole
/// `Message` is emitted they are computed, whatever they hold here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: PayloadType,
    pub major_version: u8,
    pub minor_version: u8,
    pub exchange: ExchangeType,
    pub flags: HeaderFlags,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// An IKEv2.0 header; `next_payload` and `length` are left for
    /// `Message::emit` to fill in.
    pub const fn new(
        exchange: ExchangeType,
        spi_i: u64,
        spi_r: u64,
        message_id: u32,
        flags: HeaderFlags,
    ) -> Self {
        Self {
            spi_i,
            spi_r,
            next_payload: PayloadType::None,
            major_version: IKEV2_MAJOR_VERSION,
            minor_version: 0,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    /// The header at the start of `bytes` (which may continue past it).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let view = HeaderView::new_checked(bytes)?;
        Ok(Self {
            spi_i: view.spi_i(),
            spi_r: view.spi_r(),
            next_payload: view.next_payload(),
            major_version: view.major_version(),
            minor_version: view.minor_version(),
            exchange: view.exchange(),
            flags: view.flags(),
            message_id: view.message_id(),
            length: view.length(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first `HEADER_LEN` bytes of `buf`, every
    /// byte of them (reserved flag bits as zero).
    ///
    /// # Panics
    /// If `buf` is shorter than `HEADER_LEN`.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut view = HeaderView::new_unchecked(&mut buf[..HEADER_LEN]);
        view.set_spi_i(self.spi_i);
        view.set_spi_r(self.spi_r);
        view.set_next_payload(self.next_payload);
        view.set_version(self.major_version, self.minor_version);
        view.set_exchange(self.exchange);
        view.set_flags(self.flags);
        view.set_message_id(self.message_id);
        view.set_length(self.length);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::JUNK;

    /// The header of the captured IKE_SA_INIT response (strongSwan hub).
    const BYTES: [u8; HEADER_LEN] = [
        0xcb, 0x74, 0x6d, 0x6b, 0xba, 0x53, 0xff, 0x11, // SPIi
        0xcb, 0xd6, 0xcf, 0x6a, 0xe1, 0x8d, 0x11, 0xfe, // SPIr
        0x21, 0x20, 0x22, 0x20, // SA, 2.0, IKE_SA_INIT, R
        0x00, 0x00, 0x00, 0x00, // message ID 0
        0x00, 0x00, 0x00, 0xf8, // length 248
    ];

    fn repr() -> Header {
        Header {
            spi_i: 0xcb74_6d6b_ba53_ff11,
            spi_r: 0xcbd6_cf6a_e18d_11fe,
            next_payload: PayloadType::Sa,
            major_version: 2,
            minor_version: 0,
            exchange: ExchangeType::IkeSaInit,
            flags: HeaderFlags {
                initiator: false,
                response: true,
                version: false,
            },
            message_id: 0,
            length: 248,
        }
    }

    #[test]
    fn deconstruct() {
        let view = HeaderView::new_checked(&BYTES[..]).unwrap();
        assert_eq!(view.spi_i(), 0xcb74_6d6b_ba53_ff11);
        assert_eq!(view.spi_r(), 0xcbd6_cf6a_e18d_11fe);
        assert_eq!(view.next_payload(), PayloadType::Sa);
        assert_eq!((view.major_version(), view.minor_version()), (2, 0));
        assert_eq!(view.exchange(), ExchangeType::IkeSaInit);
        assert_eq!(view.flags().bits(), 0x20);
        assert_eq!(view.message_id(), 0);
        assert_eq!(view.length(), 248);
    }

    #[test]
    fn construct() {
        let mut buf = [JUNK; HEADER_LEN];
        let mut view = HeaderView::new_unchecked(&mut buf[..]);
        view.set_spi_i(0xcb74_6d6b_ba53_ff11);
        view.set_spi_r(0xcbd6_cf6a_e18d_11fe);
        view.set_next_payload(PayloadType::Sa);
        view.set_version(2, 0);
        view.set_exchange(ExchangeType::IkeSaInit);
        view.set_flags(HeaderFlags::from_bits(0x20));
        view.set_message_id(0);
        view.set_length(248);
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn parse() {
        assert_eq!(Header::parse(&BYTES).unwrap(), repr());
    }

    #[test]
    fn emit_into_junk() {
        let mut buf = [JUNK; HEADER_LEN + 3];
        repr().emit(&mut buf);
        assert_eq!(buf[..HEADER_LEN], BYTES);
        assert_eq!(buf[HEADER_LEN..], [JUNK; 3], "wrote past the header");
    }

    #[test]
    fn flags_bits_and_reserved_bits() {
        for (bits, i, r, v) in [
            (0x08, true, false, false),
            (0x20, false, true, false),
            (0x10, false, false, true),
            (0x38, true, true, true),
        ] {
            let flags = HeaderFlags::from_bits(bits);
            assert_eq!((flags.initiator, flags.response, flags.version), (i, r, v));
            assert_eq!(flags.bits(), bits);
        }
        // Reserved bits are ignored on receipt and not sent.
        assert_eq!(HeaderFlags::from_bits(0xc7).bits(), 0);
    }

    #[test]
    fn exchange_codepoints() {
        for (value, kind) in [
            (34, ExchangeType::IkeSaInit),
            (35, ExchangeType::IkeAuth),
            (36, ExchangeType::CreateChildSa),
            (37, ExchangeType::Informational),
        ] {
            assert_eq!(ExchangeType::from(value), kind);
            assert_eq!(u8::from(kind), value);
        }
        assert_eq!(ExchangeType::from(99), ExchangeType::Unknown(99));
        assert_eq!(u8::from(ExchangeType::Unknown(99)), 99);
        assert_eq!(ExchangeType::IkeAuth.to_string(), "IKE_AUTH");
        assert_eq!(ExchangeType::Unknown(99).to_string(), "ExchangeType(99)");
    }

    #[test]
    fn truncated() {
        for cut in 0..HEADER_LEN {
            assert_eq!(
                Header::parse(&BYTES[..cut]),
                Err(WireError::Truncated {
                    what: "IKE header",
                    offset: 0,
                    needed: HEADER_LEN,
                    available: cut
                })
            );
        }
    }
}
