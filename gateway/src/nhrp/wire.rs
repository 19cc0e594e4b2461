//! NHRP messages (RFC 2332) for IPv4 over an IPv4 NBMA network (GRE): a
//! checked view of the fixed header, and `NhrpRepr` to parse and emit a
//! whole packet (fixed header, mandatory part, CIEs, extensions).
//!
//! Fixed header (section 5.1), 20 bytes:
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
//!
//! Mandatory part of types 1-6 (section 5.2.0.1), then CIEs to the
//! extensions (or the end):
//!
//! ```text
//! | Src Proto Len | Dst Proto Len |             Flags             |
//! |                          Request ID                           |
//! | Source NBMA Address (ar$shtl) | Source NBMA Subaddress (sstl) |
//! | Source Protocol Address       | Destination Protocol Address  |
//! ```
//!
//! Client Information Entry (section 5.2.0.1), 12 bytes then addresses:
//!
//! ```text
//! |     Code      | Prefix Length |            unused             |
//! |  Maximum Transmission Unit    |        Holding Time           |
//! | Cli Addr T/L  | Cli SAddr T/L | Cli Proto Len |  Preference   |
//! | Client NBMA Address, Subaddress, Client Protocol Address      |
//! ```
//!
//! Error Indication (section 5.2.7) replaces Flags and Request ID with
//! `unused(16) | Error Code(16) | Error Offset(16)`, and the CIEs with the
//! packet in error. Cisco's Traffic Indication (type 8, the DMVPN
//! "redirect" of draft-detienne-dmvpn) has the same shape with the Traffic
//! Code in the error code's place (OpenNHRP and FRR nhrpd put it there; the
//! draft calls the other 32 bits unused), then the IP header and first bytes
//! of the packet that caused it.
//!
//! Extensions (section 5.3): `C|u|Type(14)`, Length(16), value; the list
//! ends with the End extension (type 0, length 0, C set).
//!
//! Scope: IPv4 protocol addresses over IPv4 NBMA addresses (ar$afn 1,
//! ar$pro.type 0x0800, ar$pro.snap zero); every address is 0 or 4 bytes,
//! and NBMA subaddresses (ATM only) are refused. Unknown message types keep
//! their mandatory part as raw bytes; unknown extensions keep their type
//! (with the `u` bit, so they emit unchanged), C bit and value.

use std::net::Ipv4Addr;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// ar$afn of IPv4 NBMA addresses (IANA address family 1).
pub const AFN_IPV4: u16 = 1;
/// ar$pro.type of IPv4 protocol addresses (the EtherType).
pub const ETH_P_IPV4: u16 = 0x0800;
/// ar$op.version of RFC 2332.
pub const VERSION: u8 = 1;
/// Length of a CIE without its addresses.
pub const CIE_HEADER_LEN: usize = 12;
/// The fixed part of every mandatory part (lengths and flags / codes).
const MANDATORY_FIXED_LEN: usize = 8;

/// ar$op.type values.
pub mod op {
    pub const RESOLUTION_REQUEST: u8 = 1;
    pub const RESOLUTION_REPLY: u8 = 2;
    pub const REGISTRATION_REQUEST: u8 = 3;
    pub const REGISTRATION_REPLY: u8 = 4;
    pub const PURGE_REQUEST: u8 = 5;
    pub const PURGE_REPLY: u8 = 6;
    pub const ERROR_INDICATION: u8 = 7;
    /// Cisco's Traffic Indication (draft-detienne-dmvpn).
    pub const TRAFFIC_INDICATION: u8 = 8;
}

/// Extension types (section 5.3, and Cisco's NAT address).
pub mod ext {
    pub const END: u16 = 0;
    pub const RESPONDER_ADDRESS: u16 = 3;
    pub const FORWARD_TRANSIT_NHS: u16 = 4;
    pub const REVERSE_TRANSIT_NHS: u16 = 5;
    pub const AUTHENTICATION: u16 = 7;
    pub const VENDOR_PRIVATE: u16 = 8;
    /// Cisco's NAT address extension (as IOS, OpenNHRP and FRR use it):
    /// CIEs with the peer's address as seen after NAT.
    pub const NAT_ADDRESS: u16 = 9;
    /// The Compulsory bit of the type field.
    pub const COMPULSORY: u16 = 0x8000;
}

mod field {
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

/// The Internet checksum's one's complement sum of `data`, folded.
fn ones_complement_sum(data: &[u8]) -> u16 {
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

/// A bounds-checked reader over a slice.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    const fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], NhrpError> {
        let end = self.pos.saturating_add(n);
        let Some(slice) = self.bytes.get(self.pos..end) else {
            return Err(NhrpError::Truncated {
                needed: end,
                available: self.bytes.len(),
            });
        };
        self.pos = end;
        Ok(slice)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        self.pos = self.bytes.len();
        rest
    }

    fn u8(&mut self) -> Result<u8, NhrpError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, NhrpError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, NhrpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An address of type/length `tl` (0: none, 4: IPv4).
    fn addr(&mut self, tl: u8, what: &'static str) -> Result<Option<Ipv4Addr>, NhrpError> {
        match tl {
            0 => Ok(None),
            4 => {
                let b = self.take(4)?;
                Ok(Some(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            value => Err(NhrpError::AddressLength { what, value }),
        }
    }
}

fn check_subaddress(tl: u8, what: &'static str) -> Result<(), NhrpError> {
    if tl == 0 {
        Ok(())
    } else {
        Err(NhrpError::Subaddress { what, value: tl })
    }
}

const fn addr_len(addr: Option<Ipv4Addr>) -> u8 {
    if addr.is_some() { 4 } else { 0 }
}

/// A bounds-checked writer; callers size the buffer with `buffer_len`.
struct Writer<'a> {
    bytes: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, data: &[u8]) {
        self.bytes[self.pos..self.pos + data.len()].copy_from_slice(data);
        self.pos += data.len();
    }

    fn u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    fn u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    fn addr(&mut self, addr: Option<Ipv4Addr>) {
        if let Some(addr) = addr {
            self.put(&addr.octets());
        }
    }
}

/// A Client Information Entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cie {
    /// 0 is success; other values are the CIE codes of section 5.2.
    pub code: u8,
    pub prefix_len: u8,
    pub mtu: u16,
    /// Seconds.
    pub holding_time: u16,
    pub preference: u8,
    pub nbma: Option<Ipv4Addr>,
    pub protocol: Option<Ipv4Addr>,
}

impl Cie {
    fn parse(r: &mut Reader<'_>) -> Result<Self, NhrpError> {
        let code = r.u8()?;
        let prefix_len = r.u8()?;
        let _unused = r.u16()?;
        let mtu = r.u16()?;
        let holding_time = r.u16()?;
        let nbma_tl = r.u8()?;
        let subaddr_tl = r.u8()?;
        let proto_len = r.u8()?;
        let preference = r.u8()?;
        let nbma = r.addr(nbma_tl, "CIE NBMA address")?;
        check_subaddress(subaddr_tl, "CIE NBMA")?;
        let protocol = r.addr(proto_len, "CIE protocol address")?;
        Ok(Self {
            code,
            prefix_len,
            mtu,
            holding_time,
            preference,
            nbma,
            protocol,
        })
    }

    fn parse_list(bytes: &[u8]) -> Result<Vec<Self>, NhrpError> {
        let mut r = Reader::new(bytes);
        let mut cies = Vec::new();
        while !r.is_empty() {
            cies.push(Self::parse(&mut r)?);
        }
        Ok(cies)
    }

    pub const fn buffer_len(&self) -> usize {
        CIE_HEADER_LEN + addr_len(self.nbma) as usize + addr_len(self.protocol) as usize
    }

    fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.code);
        w.u8(self.prefix_len);
        w.u16(0);
        w.u16(self.mtu);
        w.u16(self.holding_time);
        w.u8(addr_len(self.nbma));
        w.u8(0);
        w.u8(addr_len(self.protocol));
        w.u8(self.preference);
        w.addr(self.nbma);
        w.addr(self.protocol);
    }
}

fn cies_len(cies: &[Cie]) -> usize {
    cies.iter().map(Cie::buffer_len).sum()
}

/// The source NBMA and the source and destination protocol addresses that
/// every mandatory part carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Addresses {
    pub src_nbma: Option<Ipv4Addr>,
    pub src_protocol: Option<Ipv4Addr>,
    pub dst_protocol: Option<Ipv4Addr>,
}

impl Addresses {
    const fn len(&self) -> usize {
        addr_len(self.src_nbma) as usize
            + addr_len(self.src_protocol) as usize
            + addr_len(self.dst_protocol) as usize
    }
}

/// The mandatory part of Resolution, Registration and Purge messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mandatory {
    pub flags: u16,
    pub request_id: u32,
    pub addresses: Addresses,
    pub cies: Vec<Cie>,
}

/// Error Indication (section 5.2.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorIndication {
    pub code: u16,
    /// Offset in the packet in error of the field that caused it.
    pub offset: u16,
    pub addresses: Addresses,
    /// The NHRP packet in error, as received.
    pub packet: Vec<u8>,
}

/// Cisco's Traffic Indication (type 8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrafficIndication {
    /// 0 is "NHRP traffic redirect/indirection".
    pub code: u16,
    pub addresses: Addresses,
    /// The IP header and first bytes of the packet that caused it.
    pub data: Vec<u8>,
}

/// The message: ar$op.type and the mandatory part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    ResolutionRequest(Mandatory),
    ResolutionReply(Mandatory),
    RegistrationRequest(Mandatory),
    RegistrationReply(Mandatory),
    PurgeRequest(Mandatory),
    PurgeReply(Mandatory),
    ErrorIndication(ErrorIndication),
    TrafficIndication(TrafficIndication),
    /// Another ar$op.type: ar$shtl, ar$sstl and the mandatory part as
    /// received.
    Unknown {
        op_type: u8,
        shtl: u8,
        sstl: u8,
        body: Vec<u8>,
    },
}

impl Message {
    pub const fn op_type(&self) -> u8 {
        match self {
            Self::ResolutionRequest(_) => op::RESOLUTION_REQUEST,
            Self::ResolutionReply(_) => op::RESOLUTION_REPLY,
            Self::RegistrationRequest(_) => op::REGISTRATION_REQUEST,
            Self::RegistrationReply(_) => op::REGISTRATION_REPLY,
            Self::PurgeRequest(_) => op::PURGE_REQUEST,
            Self::PurgeReply(_) => op::PURGE_REPLY,
            Self::ErrorIndication(_) => op::ERROR_INDICATION,
            Self::TrafficIndication(_) => op::TRAFFIC_INDICATION,
            Self::Unknown { op_type, .. } => *op_type,
        }
    }

    const fn addresses(&self) -> Option<&Addresses> {
        match self {
            Self::ResolutionRequest(m)
            | Self::ResolutionReply(m)
            | Self::RegistrationRequest(m)
            | Self::RegistrationReply(m)
            | Self::PurgeRequest(m)
            | Self::PurgeReply(m) => Some(&m.addresses),
            Self::ErrorIndication(e) => Some(&e.addresses),
            Self::TrafficIndication(t) => Some(&t.addresses),
            Self::Unknown { .. } => None,
        }
    }

    fn parse(op_type: u8, shtl: u8, sstl: u8, bytes: &[u8]) -> Result<Self, NhrpError> {
        let known = (op::RESOLUTION_REQUEST..=op::TRAFFIC_INDICATION).contains(&op_type);
        if !known {
            return Ok(Self::Unknown {
                op_type,
                shtl,
                sstl,
                body: bytes.to_vec(),
            });
        }
        let mut r = Reader::new(bytes);
        let src_len = r.u8()?;
        let dst_len = r.u8()?;
        let word = r.u16()?;
        let word2 = r.u32()?;
        let src_nbma = r.addr(shtl, "source NBMA address")?;
        check_subaddress(sstl, "source NBMA")?;
        let addresses = Addresses {
            src_nbma,
            src_protocol: r.addr(src_len, "source protocol address")?,
            dst_protocol: r.addr(dst_len, "destination protocol address")?,
        };
        let rest = r.rest();
        let [code_hi, code_lo, off_hi, off_lo] = word2.to_be_bytes();
        let code = u16::from_be_bytes([code_hi, code_lo]);
        Ok(match op_type {
            op::ERROR_INDICATION => Self::ErrorIndication(ErrorIndication {
                code,
                offset: u16::from_be_bytes([off_hi, off_lo]),
                addresses,
                packet: rest.to_vec(),
            }),
            op::TRAFFIC_INDICATION => Self::TrafficIndication(TrafficIndication {
                code,
                addresses,
                data: rest.to_vec(),
            }),
            _ => {
                let m = Mandatory {
                    flags: word,
                    request_id: word2,
                    addresses,
                    cies: Cie::parse_list(rest)?,
                };
                match op_type {
                    op::RESOLUTION_REQUEST => Self::ResolutionRequest(m),
                    op::RESOLUTION_REPLY => Self::ResolutionReply(m),
                    op::REGISTRATION_REQUEST => Self::RegistrationRequest(m),
                    op::REGISTRATION_REPLY => Self::RegistrationReply(m),
                    op::PURGE_REQUEST => Self::PurgeRequest(m),
                    _ => Self::PurgeReply(m),
                }
            }
        })
    }

    /// Length of the mandatory part (with CIEs or data).
    fn buffer_len(&self) -> usize {
        match self {
            Self::ResolutionRequest(m)
            | Self::ResolutionReply(m)
            | Self::RegistrationRequest(m)
            | Self::RegistrationReply(m)
            | Self::PurgeRequest(m)
            | Self::PurgeReply(m) => MANDATORY_FIXED_LEN + m.addresses.len() + cies_len(&m.cies),
            Self::ErrorIndication(e) => MANDATORY_FIXED_LEN + e.addresses.len() + e.packet.len(),
            Self::TrafficIndication(t) => MANDATORY_FIXED_LEN + t.addresses.len() + t.data.len(),
            Self::Unknown { body, .. } => body.len(),
        }
    }

    /// ar$shtl and ar$sstl.
    fn shtl_sstl(&self) -> (u8, u8) {
        match self {
            Self::Unknown { shtl, sstl, .. } => (*shtl, *sstl),
            _ => (self.addresses().map_or(0, |a| addr_len(a.src_nbma)), 0),
        }
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let emit_fixed = |w: &mut Writer<'_>, a: &Addresses, word: u16, word2: u32| {
            w.u8(addr_len(a.src_protocol));
            w.u8(addr_len(a.dst_protocol));
            w.u16(word);
            w.u32(word2);
            w.addr(a.src_nbma);
            w.addr(a.src_protocol);
            w.addr(a.dst_protocol);
        };
        match self {
            Self::ResolutionRequest(m)
            | Self::ResolutionReply(m)
            | Self::RegistrationRequest(m)
            | Self::RegistrationReply(m)
            | Self::PurgeRequest(m)
            | Self::PurgeReply(m) => {
                emit_fixed(w, &m.addresses, m.flags, m.request_id);
                for cie in &m.cies {
                    cie.emit(w);
                }
            }
            Self::ErrorIndication(e) => {
                let word2 = (u32::from(e.code) << 16) | u32::from(e.offset);
                emit_fixed(w, &e.addresses, 0, word2);
                w.put(&e.packet);
            }
            Self::TrafficIndication(t) => {
                emit_fixed(w, &t.addresses, 0, u32::from(t.code) << 16);
                w.put(&t.data);
            }
            Self::Unknown { body, .. } => w.put(body),
        }
    }
}

/// An extension's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionBody {
    /// Responder Address (type 3): the responder's CIE (none in requests).
    ResponderAddress(Vec<Cie>),
    /// Forward Transit NHS Record (type 4).
    ForwardTransitNhs(Vec<Cie>),
    /// Reverse Transit NHS Record (type 5).
    ReverseTransitNhs(Vec<Cie>),
    /// Authentication (type 7), as received (Cisco: a 4-byte type and the
    /// cleartext secret).
    Authentication(Vec<u8>),
    /// Vendor-Private (type 8): the 24-bit IEEE OUI and the data.
    VendorPrivate { vendor: u32, data: Vec<u8> },
    /// Cisco's NAT address (type 9): CIEs with the addresses after NAT.
    NatAddress(Vec<Cie>),
    /// Any other type (with the `u` bit, 15 bits), value as received. Also
    /// a type 9 value that is not a list of CIEs (RFC 2735 reuses 9 for
    /// device capabilities).
    Unknown { kind: u16, data: Vec<u8> },
}

impl ExtensionBody {
    /// The type, without the C bit.
    pub const fn kind(&self) -> u16 {
        match self {
            Self::ResponderAddress(_) => ext::RESPONDER_ADDRESS,
            Self::ForwardTransitNhs(_) => ext::FORWARD_TRANSIT_NHS,
            Self::ReverseTransitNhs(_) => ext::REVERSE_TRANSIT_NHS,
            Self::Authentication(_) => ext::AUTHENTICATION,
            Self::VendorPrivate { .. } => ext::VENDOR_PRIVATE,
            Self::NatAddress(_) => ext::NAT_ADDRESS,
            Self::Unknown { kind, .. } => *kind,
        }
    }

    fn parse(kind: u16, data: &[u8]) -> Result<Self, NhrpError> {
        Ok(match kind {
            ext::RESPONDER_ADDRESS => Self::ResponderAddress(Cie::parse_list(data)?),
            ext::FORWARD_TRANSIT_NHS => Self::ForwardTransitNhs(Cie::parse_list(data)?),
            ext::REVERSE_TRANSIT_NHS => Self::ReverseTransitNhs(Cie::parse_list(data)?),
            ext::AUTHENTICATION => Self::Authentication(data.to_vec()),
            ext::VENDOR_PRIVATE => {
                let Some((oui, rest)) = data.split_first_chunk::<3>() else {
                    return Err(NhrpError::VendorPrivate(data.len()));
                };
                Self::VendorPrivate {
                    vendor: u32::from_be_bytes([0, oui[0], oui[1], oui[2]]),
                    data: rest.to_vec(),
                }
            }
            ext::NAT_ADDRESS => match Cie::parse_list(data) {
                Ok(cies) => Self::NatAddress(cies),
                Err(_) => Self::Unknown {
                    kind,
                    data: data.to_vec(),
                },
            },
            _ => Self::Unknown {
                kind,
                data: data.to_vec(),
            },
        })
    }

    fn value_len(&self) -> usize {
        match self {
            Self::ResponderAddress(cies)
            | Self::ForwardTransitNhs(cies)
            | Self::ReverseTransitNhs(cies)
            | Self::NatAddress(cies) => cies_len(cies),
            Self::Authentication(data) | Self::Unknown { data, .. } => data.len(),
            Self::VendorPrivate { data, .. } => 3 + data.len(),
        }
    }

    fn emit(&self, w: &mut Writer<'_>) {
        match self {
            Self::ResponderAddress(cies)
            | Self::ForwardTransitNhs(cies)
            | Self::ReverseTransitNhs(cies)
            | Self::NatAddress(cies) => {
                for cie in cies {
                    cie.emit(w);
                }
            }
            Self::Authentication(data) | Self::Unknown { data, .. } => w.put(data),
            Self::VendorPrivate { vendor, data } => {
                w.put(&vendor.to_be_bytes()[1..]);
                w.put(data);
            }
        }
    }
}

/// One extension other than End.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The C bit: a receiver that does not know the type must drop the
    /// packet.
    pub compulsory: bool,
    pub body: ExtensionBody,
}

impl Extension {
    const HEADER_LEN: usize = 4;

    /// Parses the extension list up to the End extension (anything after
    /// End is ignored) or the end of `bytes`.
    fn parse_list(bytes: &[u8]) -> Result<Vec<Self>, NhrpError> {
        let mut r = Reader::new(bytes);
        let mut list = Vec::new();
        while !r.is_empty() {
            let type_field = r.u16()?;
            let len = r.u16()?;
            let data = r.take(usize::from(len))?;
            let kind = type_field & !ext::COMPULSORY;
            if kind == ext::END {
                break;
            }
            list.push(Self {
                compulsory: type_field & ext::COMPULSORY != 0,
                body: ExtensionBody::parse(kind, data)?,
            });
        }
        Ok(list)
    }

    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + self.body.value_len()
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), NhrpError> {
        let len = self.body.value_len();
        let len16 = u16::try_from(len).map_err(|_| NhrpError::TooLong(len))?;
        let c = if self.compulsory { ext::COMPULSORY } else { 0 };
        w.u16(c | (self.body.kind() & !ext::COMPULSORY));
        w.u16(len16);
        self.body.emit(w);
        Ok(())
    }
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
        let mut w = Writer {
            bytes: &mut buffer[..len],
            pos: 0,
        };
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
        debug_assert_eq!(w.pos, len);
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
