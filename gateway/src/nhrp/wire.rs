//! NHRP messages (RFC 2332) for IPv4 over an IPv4 NBMA network (GRE): a
//! checked view of the fixed header ([`NhrpPacket`]), and [`NhrpRepr`] to
//! parse and emit a whole packet: the fixed header, the mandatory part of
//! the message with its CIEs ([`Message`], [`Cie`]), then the extensions
//! ([`Extension`]). Each part's layout is drawn in its file.
//!
//! Scope: IPv4 protocol addresses over IPv4 NBMA addresses (ar$afn 1,
//! ar$pro.type 0x0800, ar$pro.snap zero); every address is 0 or 4 bytes,
//! and NBMA subaddresses (ATM only) are refused. Unknown message types keep
//! their mandatory part as raw bytes; unknown extensions keep their type
//! (with the `u` bit, so they emit unchanged), C bit and value.

mod cie;
mod codec;
mod extension;
mod header;
mod mandatory;

pub use cie::{CIE_HEADER_LEN, Cie};
pub use extension::{Extension, ExtensionBody, ext};
pub use header::{AFN_IPV4, ETH_P_IPV4, HEADER_LEN, NhrpPacket, VERSION};
pub use mandatory::{Addresses, ErrorIndication, Mandatory, Message, TrafficIndication, op};

use codec::Writer;
use header::{field, ones_complement_sum};

/// An NHRP packet that must be dropped, or a repr that cannot be emitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhrpError {
    /// Shorter than a header or length field announces.
    #[error("NHRP packet truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// ar$pktsz smaller than the fixed header.
    #[error("NHRP ar$pktsz {0} is shorter than the fixed header")]
    PacketSize(u16),
    /// ar$extoff inside the fixed header or past ar$pktsz.
    #[error("NHRP ar$extoff {extoff} out of range (ar$pktsz {pktsz})")]
    ExtensionOffset { extoff: u16, pktsz: u16 },
    /// The checksum over ar$pktsz bytes does not verify.
    #[error("NHRP checksum does not verify")]
    BadChecksum,
    /// ar$afn other than IPv4.
    #[error("NHRP ar$afn {0}, only IPv4 (1) is supported")]
    AddressFamily(u16),
    /// ar$pro.type other than IPv4, or a non-zero ar$pro.snap.
    #[error("NHRP protocol type {0:#06x}, only IPv4 (0x0800) is supported")]
    ProtocolType(u16),
    /// ar$op.version other than 1.
    #[error("NHRP version {0}, expected 1")]
    Version(u8),
    /// An address type/length or length other than 0 or 4 (IPv4).
    #[error("NHRP {what} type/length {value:#04x}, expected 0 or 4")]
    AddressLength { what: &'static str, value: u8 },
    /// A non-empty NBMA subaddress (ATM only).
    #[error("NHRP {what} subaddress type/length {value:#04x}, expected 0")]
    Subaddress { what: &'static str, value: u8 },
    /// Vendor-Private extension shorter than its 3-byte vendor ID.
    #[error("NHRP Vendor-Private extension of {0} bytes, shorter than the vendor ID")]
    VendorPrivate(usize),
    /// Emit: the packet would exceed 65535 bytes.
    #[error("NHRP emit: {0} bytes do not fit ar$pktsz")]
    TooLong(usize),
    /// Emit: the buffer cannot hold the packet.
    #[error("NHRP emit: needs {needed} bytes, the buffer has {available}")]
    BufferTooSmall { needed: usize, available: usize },
}

/// A whole NHRP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NhrpRepr {
    pub hop_count: u8,
    pub message: Message,
    /// Extensions in order, without End (emit appends it when the list is
    /// not empty, and sets ar$extoff to 0 when it is).
    pub extensions: Vec<Extension>,
}

impl NhrpRepr {
    /// Parses and checks a packet: `bytes` holds at least ar$pktsz bytes
    /// (more are ignored), the checksum verifies, and the packet is IPv4
    /// over IPv4 with version 1.
    pub fn parse<T: AsRef<[u8]>>(packet: &NhrpPacket<T>) -> Result<Self, NhrpError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(NhrpError::BadChecksum);
        }
        if packet.afn() != AFN_IPV4 {
            return Err(NhrpError::AddressFamily(packet.afn()));
        }
        if packet.protocol_type() != ETH_P_IPV4 || packet.protocol_snap() != [0; 5] {
            return Err(NhrpError::ProtocolType(packet.protocol_type()));
        }
        if packet.version() != VERSION {
            return Err(NhrpError::Version(packet.version()));
        }
        let message = Message::parse(
            packet.op_type(),
            packet.shtl(),
            packet.sstl(),
            packet.mandatory(),
        )?;
        let extensions = Extension::parse_list(packet.extensions())?;
        Ok(Self {
            hop_count: packet.hop_count(),
            message,
            extensions,
        })
    }

    /// `NhrpPacket::new_checked` and `parse` in one.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, NhrpError> {
        Self::parse(&NhrpPacket::new_checked(bytes)?)
    }

    fn extensions_len(&self) -> usize {
        if self.extensions.is_empty() {
            0
        } else {
            self.extensions
                .iter()
                .map(Extension::buffer_len)
                .sum::<usize>()
                + Extension::HEADER_LEN
        }
    }

    /// The packet's length (ar$pktsz).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.message.buffer_len() + self.extensions_len()
    }

    /// Writes the packet to the start of `buffer` with its checksum and
    /// returns its length.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, NhrpError> {
        let len = self.buffer_len();
        let pktsz = u16::try_from(len).map_err(|_| NhrpError::TooLong(len))?;
        if buffer.len() < len {
            return Err(NhrpError::BufferTooSmall {
                needed: len,
                available: buffer.len(),
            });
        }
        let extoff = if self.extensions.is_empty() {
            0
        } else {
            // At most pktsz, which fits.
            u16::try_from(HEADER_LEN + self.message.buffer_len()).unwrap_or(pktsz)
        };
        let (shtl, sstl) = self.message.shtl_sstl();
        let mut w = Writer::new(&mut buffer[..len]);
        w.u16(AFN_IPV4);
        w.u16(ETH_P_IPV4);
        w.put(&[0; 5]);
        w.u8(self.hop_count);
        w.u16(pktsz);
        w.u16(0);
        w.u16(extoff);
        w.u8(VERSION);
        w.u8(self.message.op_type());
        w.u8(shtl);
        w.u8(sstl);
        self.message.emit(&mut w);
        if !self.extensions.is_empty() {
            for extension in &self.extensions {
                extension.emit(&mut w)?;
            }
            w.u16(ext::COMPULSORY | ext::END);
            w.u16(0);
        }
        debug_assert_eq!(w.position(), len);
        let checksum = !ones_complement_sum(&buffer[..len]);
        buffer[field::CHKSUM].copy_from_slice(&checksum.to_be_bytes());
        Ok(len)
    }

    /// `emit` into a new vector.
    pub fn emit_to_vec(&self) -> Result<Vec<u8>, NhrpError> {
        let mut buffer = vec![0; self.buffer_len()];
        self.emit(&mut buffer)?;
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests;
