//! The mandatory part of each message type (RFC 2332 section 5.2.0.1),
//! after the fixed header, with the CIEs up to the extensions (or the end):
//!
//! ```text
//! | Src Proto Len | Dst Proto Len |             Flags             |
//! |                          Request ID                           |
//! | Source NBMA Address (ar$shtl) | Source NBMA Subaddress (sstl) |
//! | Source Protocol Address       | Destination Protocol Address  |
//! ```
//!
//! Error Indication (section 5.2.7) replaces Flags and Request ID with
//! `unused(16) | Error Code(16) | Error Offset(16)`, and the CIEs with the
//! packet in error. Cisco's Traffic Indication (type 8, the DMVPN
//! "redirect" of draft-detienne-dmvpn) has the same shape with the Traffic
//! Code in the error code's place (OpenNHRP and FRR nhrpd put it there; the
//! draft calls the other 32 bits unused), then the IP header and first bytes
//! of the packet that caused it.

use std::net::Ipv4Addr;

use super::{
    NhrpError,
    cie::{Cie, cies_len},
    codec::{Reader, Writer, addr_len, check_subaddress},
};

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

    pub(super) fn parse(op_type: u8, shtl: u8, sstl: u8, bytes: &[u8]) -> Result<Self, NhrpError> {
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
    pub(super) fn buffer_len(&self) -> usize {
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
    pub(super) fn shtl_sstl(&self) -> (u8, u8) {
        match self {
            Self::Unknown { shtl, sstl, .. } => (*shtl, *sstl),
            _ => (self.addresses().map_or(0, |a| addr_len(a.src_nbma)), 0),
        }
    }

    pub(super) fn emit(&self, w: &mut Writer<'_>) {
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
