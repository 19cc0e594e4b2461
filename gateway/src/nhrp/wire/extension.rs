//! Extensions (RFC 2332 section 5.3): `C|u|Type(14)`, Length(16), value;
//! the list ends with the End extension (type 0, length 0, C set).

use super::{
    NhrpError,
    cie::{Cie, cies_len},
    codec::{Reader, Writer},
};

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
    pub(super) const HEADER_LEN: usize = 4;

    /// Parses the extension list up to the End extension (anything after
    /// End is ignored) or the end of `bytes`.
    pub(super) fn parse_list(bytes: &[u8]) -> Result<Vec<Self>, NhrpError> {
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

    pub(super) fn emit(&self, w: &mut Writer<'_>) -> Result<(), NhrpError> {
        let len = self.body.value_len();
        let len16 = u16::try_from(len).map_err(|_| NhrpError::TooLong(len))?;
        let c = if self.compulsory { ext::COMPULSORY } else { 0 };
        w.u16(c | (self.body.kind() & !ext::COMPULSORY));
        w.u16(len16);
        self.body.emit(w);
        Ok(())
    }
}
