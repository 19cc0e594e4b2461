//! The Security Association payload (RFC 7296 §3.3): proposals, transforms
//! and transform attributes; and the IANA transform IDs the hub negotiates.
//!
//! ```text
//! Proposal substructure                 Transform substructure
//! +---------------+-------+-------+     +---------------+-------+-------+
//! | Last Substruc | RSVD  | Length|     | Last Substruc | RSVD  | Length|
//! +-------+-------+-------+-------+     +-------+-------+-------+-------+
//! | Num   | Proto |SPISize|#Transf|     | Type  | RSVD  |  Transform ID |
//! +-------+-------+-------+-------+     +-------+-------+-------+-------+
//! | SPI (SPI Size bytes) ...      |     | Transform Attributes ...      |
//! | Transforms ...                |     +-------------------------------+
//! +-------------------------------+
//! Attribute: |A|Type(15)| then TV: Value(2) or TLV: Length(2), Value
//! ```
//!
//! Last Substruc must agree with the position (0 on the last proposal or
//! transform, 2 / 3 before another), and the transform count with the
//! transforms present: both are checked, and emit computes them.
//! The key length (attribute 14, TV) gets its own field; every other
//! attribute is kept in `other_attributes`, TV or TLV, and re-emitted after
//! the key length.

use super::WireError;
use super::bytes::{Field, be16, fit_u8, fit_u16, need};
use super::payload::Body;

codepoint! {
    /// Security protocol IDs (IANA "IKEv2 Security Protocol Identifiers").
    pub enum ProtocolId(u8) {
        /// No SPI: a Notify about the IKE SA as a whole sends zero here.
        None = 0 => "NONE",
        Ike = 1 => "IKE",
        Ah = 2 => "AH",
        Esp = 3 => "ESP",
    }
}

codepoint! {
    /// Transform types (IANA "Transform Type Values").
    pub enum TransformType(u8) {
        Encr = 1 => "ENCR",
        Prf = 2 => "PRF",
        Integ = 3 => "INTEG",
        /// Diffie-Hellman group; "Key Exchange Method" in RFC 9370.
        Dh = 4 => "DH",
        /// Extended Sequence Numbers; "Sequence Numbers" since RFC 9827.
        Esn = 5 => "ESN",
    }
}

/// The Key Length transform attribute (TV format, in bits).
pub const ATTRIBUTE_KEY_LENGTH: u16 = 14;

/// IANA transform IDs, by their registry names (RFC 7296 §3.3.2 and the
/// IANA "IKEv2 Transform Type N" registries).
pub mod iana {
    use super::TransformType;

    // Transform type 1: encryption algorithms.
    pub const ENCR_3DES: u16 = 3;
    pub const ENCR_NULL: u16 = 11;
    pub const ENCR_AES_CBC: u16 = 12;
    pub const ENCR_AES_CTR: u16 = 13;
    pub const ENCR_AES_GCM_8: u16 = 18;
    pub const ENCR_AES_GCM_12: u16 = 19;
    pub const ENCR_AES_GCM_16: u16 = 20;
    pub const ENCR_CHACHA20_POLY1305: u16 = 28;

    // Transform type 2: pseudorandom functions.
    pub const PRF_HMAC_MD5: u16 = 1;
    pub const PRF_HMAC_SHA1: u16 = 2;
    pub const PRF_AES128_XCBC: u16 = 4;
    pub const PRF_HMAC_SHA2_256: u16 = 5;
    pub const PRF_HMAC_SHA2_384: u16 = 6;
    pub const PRF_HMAC_SHA2_512: u16 = 7;

    // Transform type 3: integrity algorithms.
    pub const AUTH_NONE: u16 = 0;
    pub const AUTH_HMAC_MD5_96: u16 = 1;
    pub const AUTH_HMAC_SHA1_96: u16 = 2;
    pub const AUTH_AES_XCBC_96: u16 = 5;
    pub const AUTH_HMAC_SHA2_256_128: u16 = 12;
    pub const AUTH_HMAC_SHA2_384_192: u16 = 13;
    pub const AUTH_HMAC_SHA2_512_256: u16 = 14;

    // Transform type 4: Diffie-Hellman groups.
    pub const DH_NONE: u16 = 0;
    pub const DH_MODP_1024: u16 = 2;
    pub const DH_MODP_1536: u16 = 5;
    pub const DH_MODP_2048: u16 = 14;
    pub const DH_MODP_3072: u16 = 15;
    pub const DH_MODP_4096: u16 = 16;
    pub const DH_ECP_256: u16 = 19;
    pub const DH_ECP_384: u16 = 20;
    pub const DH_ECP_521: u16 = 21;
    pub const DH_CURVE25519: u16 = 31;
    pub const DH_CURVE448: u16 = 32;

    // Transform type 5: extended sequence numbers.
    pub const ESN_NONE: u16 = 0;
    pub const ESN_ENABLED: u16 = 1;

    /// The registry name of transform `id` of type `kind`, for logs
    /// ("refused ENCR_3DES"); `None` for IDs not listed above.
    pub const fn transform_name(kind: TransformType, id: u16) -> Option<&'static str> {
        Some(match (kind, id) {
            (TransformType::Encr, ENCR_3DES) => "ENCR_3DES",
            (TransformType::Encr, ENCR_NULL) => "ENCR_NULL",
            (TransformType::Encr, ENCR_AES_CBC) => "ENCR_AES_CBC",
            (TransformType::Encr, ENCR_AES_CTR) => "ENCR_AES_CTR",
            (TransformType::Encr, ENCR_AES_GCM_8) => "ENCR_AES_GCM_8",
            (TransformType::Encr, ENCR_AES_GCM_12) => "ENCR_AES_GCM_12",
            (TransformType::Encr, ENCR_AES_GCM_16) => "ENCR_AES_GCM_16",
            (TransformType::Encr, ENCR_CHACHA20_POLY1305) => "ENCR_CHACHA20_POLY1305",
            (TransformType::Prf, PRF_HMAC_MD5) => "PRF_HMAC_MD5",
            (TransformType::Prf, PRF_HMAC_SHA1) => "PRF_HMAC_SHA1",
            (TransformType::Prf, PRF_AES128_XCBC) => "PRF_AES128_XCBC",
            (TransformType::Prf, PRF_HMAC_SHA2_256) => "PRF_HMAC_SHA2_256",
            (TransformType::Prf, PRF_HMAC_SHA2_384) => "PRF_HMAC_SHA2_384",
            (TransformType::Prf, PRF_HMAC_SHA2_512) => "PRF_HMAC_SHA2_512",
            (TransformType::Integ, AUTH_NONE) | (TransformType::Dh, DH_NONE) => "NONE",
            (TransformType::Integ, AUTH_HMAC_MD5_96) => "AUTH_HMAC_MD5_96",
            (TransformType::Integ, AUTH_HMAC_SHA1_96) => "AUTH_HMAC_SHA1_96",
            (TransformType::Integ, AUTH_AES_XCBC_96) => "AUTH_AES_XCBC_96",
            (TransformType::Integ, AUTH_HMAC_SHA2_256_128) => "AUTH_HMAC_SHA2_256_128",
            (TransformType::Integ, AUTH_HMAC_SHA2_384_192) => "AUTH_HMAC_SHA2_384_192",
            (TransformType::Integ, AUTH_HMAC_SHA2_512_256) => "AUTH_HMAC_SHA2_512_256",
            (TransformType::Dh, DH_MODP_1024) => "MODP_1024",
            (TransformType::Dh, DH_MODP_1536) => "MODP_1536",
            (TransformType::Dh, DH_MODP_2048) => "MODP_2048",
            (TransformType::Dh, DH_MODP_3072) => "MODP_3072",
            (TransformType::Dh, DH_MODP_4096) => "MODP_4096",
            (TransformType::Dh, DH_ECP_256) => "ECP_256",
            (TransformType::Dh, DH_ECP_384) => "ECP_384",
            (TransformType::Dh, DH_ECP_521) => "ECP_521",
            (TransformType::Dh, DH_CURVE25519) => "CURVE_25519",
            (TransformType::Dh, DH_CURVE448) => "CURVE_448",
            (TransformType::Esn, ESN_NONE) => "NO_EXT_SEQ",
            (TransformType::Esn, ESN_ENABLED) => "EXT_SEQ",
            _ => return None,
        })
    }
}

mod field {
    use super::Field;

    // Proposal and transform substructures share their first four bytes.
    pub const LAST: usize = 0;
    pub const LENGTH: Field = 2..4;

    pub const PROPOSAL_NUMBER: usize = 4;
    pub const PROTOCOL: usize = 5;
    pub const SPI_SIZE: usize = 6;
    pub const NUM_TRANSFORMS: usize = 7;
    pub const PROPOSAL_HEADER_LEN: usize = 8;

    pub const TRANSFORM_TYPE: usize = 4;
    pub const TRANSFORM_ID: Field = 6..8;
    pub const TRANSFORM_HEADER_LEN: usize = 8;

    pub const ATTRIBUTE_TYPE: Field = 0..2;
    /// TV: the value; TLV: the value's length.
    pub const ATTRIBUTE_VALUE_OR_LENGTH: Field = 2..4;
    pub const ATTRIBUTE_HEADER_LEN: usize = 4;
}

const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
/// The Attribute Format bit: set for TV, clear for TLV.
const ATTRIBUTE_TV: u16 = 0x8000;
const ATTRIBUTE_TYPE_MASK: u16 = 0x7fff;

/// One proposal: a protocol, its SPI and the transforms offered for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// 1 for the first proposal; proposals with the same number are an AND.
    pub number: u8,
    pub protocol: ProtocolId,
    /// Empty for an IKE SA's first negotiation, 8 bytes on an IKE rekey,
    /// 4 bytes (the inbound SPI) for ESP and AH.
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// One transform, with its key length split out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub kind: TransformType,
    pub id: u16,
    /// Attribute 14 (TV), in bits, when present.
    pub key_length: Option<u16>,
    pub other_attributes: Vec<TransformAttribute>,
}

/// A transform attribute other than the key length (or a second one).
/// `kind` is the 15-bit attribute type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformAttribute {
    Tv { kind: u16, value: u16 },
    Tlv { kind: u16, value: Vec<u8> },
}

impl Proposal {
    /// An IKE proposal without SPI (IKE_SA_INIT).
    pub fn ike(number: u8, transforms: Vec<Transform>) -> Self {
        Self {
            number,
            protocol: ProtocolId::Ike,
            spi: Vec::new(),
            transforms,
        }
    }

    /// An ESP proposal with our inbound SPI.
    pub fn esp(number: u8, spi: u32, transforms: Vec<Transform>) -> Self {
        Self {
            number,
            protocol: ProtocolId::Esp,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }

    /// The SPI as a 32-bit number, when it has four bytes (ESP, AH).
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// The transforms of one type, in the sender's order of preference.
    pub fn transforms_of(&self, kind: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms.iter().filter(move |t| t.kind == kind)
    }

    pub fn buffer_len(&self) -> usize {
        field::PROPOSAL_HEADER_LEN
            + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::buffer_len)
                .sum::<usize>()
    }

    /// One proposal at the start of `bytes`: the proposal, its length and
    /// whether Last Substruc says another follows.
    fn parse(bytes: &[u8], offset: usize) -> Result<(Self, usize, bool), WireError> {
        const WHAT: &str = "SA proposal";
        need(bytes, field::PROPOSAL_HEADER_LEN, WHAT, offset)?;
        let more = match bytes[field::LAST] {
            LAST => false,
            MORE_PROPOSALS => true,
            other => {
                return Err(WireError::Invalid {
                    what: WHAT,
                    offset,
                    field: "last substructure",
                    value: other.into(),
                    reason: "must be 0 (last proposal) or 2 (more proposals)",
                });
            }
        };
        let length = usize::from(be16(&bytes[field::LENGTH]));
        let spi_size = usize::from(bytes[field::SPI_SIZE]);
        let transforms_at = field::PROPOSAL_HEADER_LEN + spi_size;
        if length < transforms_at {
            return Err(WireError::Invalid {
                what: WHAT,
                offset,
                field: "proposal length",
                value: length,
                reason: "shorter than the proposal header and its SPI",
            });
        }
        need(bytes, length, WHAT, offset)?;
        let bytes = &bytes[..length];
        let num_transforms = bytes[field::NUM_TRANSFORMS];
        let mut transforms = Vec::with_capacity(num_transforms.into());
        let mut pos = transforms_at;
        for index in 0..num_transforms {
            if pos == length {
                return Err(WireError::Invalid {
                    what: WHAT,
                    offset,
                    field: "number of transforms",
                    value: num_transforms.into(),
                    reason: "more than the transforms present",
                });
            }
            let (transform, len, more) = Transform::parse(&bytes[pos..], offset + pos)?;
            if more == (index + 1 == num_transforms) {
                return Err(WireError::Invalid {
                    what: "SA transform",
                    offset: offset + pos,
                    field: "last substructure",
                    value: bytes[pos].into(),
                    reason: "disagrees with the proposal's number of transforms",
                });
            }
            transforms.push(transform);
            pos += len;
        }
        if pos != length {
            return Err(WireError::TrailingBytes {
                what: WHAT,
                offset: offset + pos,
                extra: length - pos,
            });
        }
        let proposal = Self {
            number: bytes[field::PROPOSAL_NUMBER],
            protocol: bytes[field::PROTOCOL].into(),
            spi: bytes[field::PROPOSAL_HEADER_LEN..transforms_at].to_vec(),
            transforms,
        };
        Ok((proposal, length, more))
    }

    /// Writes the proposal into `buf` (exactly `buffer_len()` bytes).
    fn emit(&self, buf: &mut [u8], last: bool) -> Result<(), WireError> {
        const WHAT: &str = "SA proposal";
        let length = fit_u16(self.buffer_len(), WHAT, "proposal length")?;
        buf[field::LAST] = if last { LAST } else { MORE_PROPOSALS };
        buf[1] = 0;
        buf[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        buf[field::PROPOSAL_NUMBER] = self.number;
        buf[field::PROTOCOL] = self.protocol.into();
        buf[field::SPI_SIZE] = fit_u8(self.spi.len(), WHAT, "SPI size")?;
        buf[field::NUM_TRANSFORMS] = fit_u8(self.transforms.len(), WHAT, "number of transforms")?;
        let mut pos = field::PROPOSAL_HEADER_LEN + self.spi.len();
        buf[field::PROPOSAL_HEADER_LEN..pos].copy_from_slice(&self.spi);
        for (index, transform) in self.transforms.iter().enumerate() {
            let len = transform.buffer_len();
            let last = index + 1 == self.transforms.len();
            transform.emit(&mut buf[pos..pos + len], last)?;
            pos += len;
        }
        Ok(())
    }
}

impl Transform {
    pub const fn new(kind: TransformType, id: u16) -> Self {
        Self {
            kind,
            id,
            key_length: None,
            other_attributes: Vec::new(),
        }
    }

    /// A transform with a key length in bits (AES-CBC, AES-GCM).
    pub const fn with_key_length(kind: TransformType, id: u16, bits: u16) -> Self {
        Self {
            kind,
            id,
            key_length: Some(bits),
            other_attributes: Vec::new(),
        }
    }

    pub fn buffer_len(&self) -> usize {
        field::TRANSFORM_HEADER_LEN
            + self.key_length.map_or(0, |_| field::ATTRIBUTE_HEADER_LEN)
            + self
                .other_attributes
                .iter()
                .map(TransformAttribute::buffer_len)
                .sum::<usize>()
    }

    /// One transform at the start of `bytes`: the transform, its length and
    /// whether Last Substruc says another follows.
    fn parse(bytes: &[u8], offset: usize) -> Result<(Self, usize, bool), WireError> {
        const WHAT: &str = "SA transform";
        need(bytes, field::TRANSFORM_HEADER_LEN, WHAT, offset)?;
        let more = match bytes[field::LAST] {
            LAST => false,
            MORE_TRANSFORMS => true,
            other => {
                return Err(WireError::Invalid {
                    what: WHAT,
                    offset,
                    field: "last substructure",
                    value: other.into(),
                    reason: "must be 0 (last transform) or 3 (more transforms)",
                });
            }
        };
        let length = usize::from(be16(&bytes[field::LENGTH]));
        if length < field::TRANSFORM_HEADER_LEN {
            return Err(WireError::Invalid {
                what: WHAT,
                offset,
                field: "transform length",
                value: length,
                reason: "shorter than the 8-byte transform header",
            });
        }
        need(bytes, length, WHAT, offset)?;
        let mut transform = Self::new(
            bytes[field::TRANSFORM_TYPE].into(),
            be16(&bytes[field::TRANSFORM_ID]),
        );
        let mut pos = field::TRANSFORM_HEADER_LEN;
        while pos < length {
            let (attribute, len) = TransformAttribute::parse(&bytes[pos..length], offset + pos)?;
            match attribute {
                TransformAttribute::Tv {
                    kind: ATTRIBUTE_KEY_LENGTH,
                    value,
                } if transform.key_length.is_none() => transform.key_length = Some(value),
                other => transform.other_attributes.push(other),
            }
            pos += len;
        }
        Ok((transform, length, more))
    }

    /// Writes the transform into `buf` (exactly `buffer_len()` bytes).
    fn emit(&self, buf: &mut [u8], last: bool) -> Result<(), WireError> {
        let length = fit_u16(self.buffer_len(), "SA transform", "transform length")?;
        buf[field::LAST] = if last { LAST } else { MORE_TRANSFORMS };
        buf[1] = 0;
        buf[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        buf[field::TRANSFORM_TYPE] = self.kind.into();
        buf[5] = 0;
        buf[field::TRANSFORM_ID].copy_from_slice(&self.id.to_be_bytes());
        let mut pos = field::TRANSFORM_HEADER_LEN;
        let key_length = self.key_length.map(|bits| TransformAttribute::Tv {
            kind: ATTRIBUTE_KEY_LENGTH,
            value: bits,
        });
        for attribute in key_length.iter().chain(&self.other_attributes) {
            let len = attribute.buffer_len();
            attribute.emit(&mut buf[pos..pos + len])?;
            pos += len;
        }
        Ok(())
    }
}

impl TransformAttribute {
    pub fn buffer_len(&self) -> usize {
        field::ATTRIBUTE_HEADER_LEN
            + match self {
                Self::Tv { .. } => 0,
                Self::Tlv { value, .. } => value.len(),
            }
    }

    /// One attribute at the start of `bytes` and its length.
    fn parse(bytes: &[u8], offset: usize) -> Result<(Self, usize), WireError> {
        const WHAT: &str = "transform attribute";
        need(bytes, field::ATTRIBUTE_HEADER_LEN, WHAT, offset)?;
        let format_and_type = be16(&bytes[field::ATTRIBUTE_TYPE]);
        let kind = format_and_type & ATTRIBUTE_TYPE_MASK;
        let value_or_length = be16(&bytes[field::ATTRIBUTE_VALUE_OR_LENGTH]);
        if format_and_type & ATTRIBUTE_TV != 0 {
            let value = value_or_length;
            return Ok((Self::Tv { kind, value }, field::ATTRIBUTE_HEADER_LEN));
        }
        let len = field::ATTRIBUTE_HEADER_LEN + usize::from(value_or_length);
        need(bytes, len, WHAT, offset)?;
        let value = bytes[field::ATTRIBUTE_HEADER_LEN..len].to_vec();
        Ok((Self::Tlv { kind, value }, len))
    }

    /// Writes the attribute into `buf` (exactly `buffer_len()` bytes). The
    /// type is cut to its 15 bits.
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let (format_and_type, value_or_length) = match self {
            Self::Tv { kind, value } => ((kind & ATTRIBUTE_TYPE_MASK) | ATTRIBUTE_TV, *value),
            Self::Tlv { kind, value } => (
                kind & ATTRIBUTE_TYPE_MASK,
                fit_u16(value.len(), "transform attribute", "attribute length")?,
            ),
        };
        buf[field::ATTRIBUTE_TYPE].copy_from_slice(&format_and_type.to_be_bytes());
        buf[field::ATTRIBUTE_VALUE_OR_LENGTH].copy_from_slice(&value_or_length.to_be_bytes());
        if let Self::Tlv { value, .. } = self {
            buf[field::ATTRIBUTE_HEADER_LEN..].copy_from_slice(value);
        }
        Ok(())
    }
}

/// The SA payload body: the proposals, most preferred first.
impl Body for Vec<Proposal> {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        let mut proposals = Vec::new();
        let mut pos = 0;
        let mut more = !body.is_empty();
        while more {
            let (proposal, len, another) = Proposal::parse(&body[pos..], offset + pos)?;
            proposals.push(proposal);
            pos += len;
            more = another;
        }
        if pos != body.len() {
            return Err(WireError::TrailingBytes {
                what: "SA payload",
                offset: offset + pos,
                extra: body.len() - pos,
            });
        }
        Ok(proposals)
    }

    fn body_len(&self) -> usize {
        self.iter().map(Proposal::buffer_len).sum()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let mut pos = 0;
        for (index, proposal) in self.iter().enumerate() {
            let len = proposal.buffer_len();
            proposal.emit(&mut buf[pos..pos + len], index + 1 == self.len())?;
            pos += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::iana::*;
    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};

    /// The SA payload body of the captured IKE_SA_INIT request:
    /// IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519.
    const IKE_SA: [u8; 44] = [
        0x00, 0x00, 0x00, 0x2c, 0x01, 0x01, 0x00, 0x04, // last, len 44, #1 IKE, no SPI, 4
        0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x0c, // ENCR AES_CBC
        0x80, 0x0e, 0x01, 0x00, //                         key length 256
        0x03, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x0c, // INTEG SHA2_256_128
        0x03, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x05, // PRF SHA2_256
        0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x1f, // DH 31
    ];

    fn ike_sa() -> Vec<Proposal> {
        vec![Proposal::ike(
            1,
            vec![
                Transform::with_key_length(TransformType::Encr, ENCR_AES_CBC, 256),
                Transform::new(TransformType::Integ, AUTH_HMAC_SHA2_256_128),
                Transform::new(TransformType::Prf, PRF_HMAC_SHA2_256),
                Transform::new(TransformType::Dh, DH_CURVE25519),
            ],
        )]
    }

    /// Two ESP proposals, the second with a transform carrying unknown TV
    /// and TLV attributes.
    fn esp_sa() -> Vec<Proposal> {
        vec![
            Proposal::esp(
                1,
                0x8610_3b47,
                vec![
                    Transform::with_key_length(TransformType::Encr, ENCR_AES_GCM_16, 256),
                    Transform::new(TransformType::Esn, ESN_NONE),
                ],
            ),
            Proposal::esp(
                2,
                0x8610_3b47,
                vec![Transform {
                    kind: TransformType::Unknown(9),
                    id: 77,
                    key_length: Some(128),
                    other_attributes: vec![
                        TransformAttribute::Tv {
                            kind: 99,
                            value: 0xbeef,
                        },
                        TransformAttribute::Tlv {
                            kind: 0x7fff,
                            value: vec![1, 2, 3],
                        },
                    ],
                }],
            ),
        ]
    }

    #[test]
    fn deconstruct() {
        let proposals = Vec::<Proposal>::parse_body(&IKE_SA, 0).unwrap();
        let [proposal] = proposals.as_slice() else {
            panic!("one proposal expected: {proposals:?}");
        };
        assert_eq!(proposal.number, 1);
        assert_eq!(proposal.protocol, ProtocolId::Ike);
        assert!(proposal.spi.is_empty());
        let encr: Vec<_> = proposal.transforms_of(TransformType::Encr).collect();
        assert_eq!(encr.len(), 1);
        assert_eq!((encr[0].id, encr[0].key_length), (ENCR_AES_CBC, Some(256)));
    }

    #[test]
    fn construct() {
        assert_eq!(emit_into_junk(&ike_sa()), IKE_SA);
    }

    #[test]
    fn parse() {
        assert_eq!(Vec::<Proposal>::parse_body(&IKE_SA, 0).unwrap(), ike_sa());
    }

    #[test]
    fn round_trip_with_unknown_attributes_into_junk() {
        let sa = esp_sa();
        let bytes = emit_into_junk(&sa);
        assert_eq!(bytes.len(), sa.body_len());
        // Second proposal's transform: key length first, then TV 99, TLV.
        let tail = &bytes[bytes.len() - 4 - 4 - 7..];
        assert_eq!(
            tail,
            [
                0x80, 0x0e, 0x00, 0x80, 0x80, 0x63, 0xbe, 0xef, 0x7f, 0xff, 0x00, 0x03, 1, 2, 3
            ]
        );
        assert_eq!(Vec::<Proposal>::parse_body(&bytes, 0).unwrap(), sa);
        assert_eq!(sa[0].spi_u32(), Some(0x8610_3b47));
    }

    #[test]
    fn empty_sa_and_proposal_without_transforms() {
        assert_eq!(Vec::<Proposal>::parse_body(&[], 0).unwrap(), []);
        let sa = vec![Proposal::ike(1, vec![])];
        let bytes = emit_into_junk(&sa);
        assert_eq!(bytes, [0, 0, 0, 8, 1, 1, 0, 0]);
        assert_eq!(Vec::<Proposal>::parse_body(&bytes, 0).unwrap(), sa);
    }

    #[test]
    fn truncated() {
        every_truncation_fails::<Vec<Proposal>>(&IKE_SA[..], &[0]);
        every_truncation_fails::<Vec<Proposal>>(&emit_into_junk(&esp_sa()), &[0]);
    }

    #[test]
    fn malformed() {
        let check = |patch: &dyn Fn(&mut [u8]), what: &str, field: &str| {
            let mut bytes = IKE_SA;
            patch(&mut bytes);
            match Vec::<Proposal>::parse_body(&bytes, 40) {
                Err(WireError::Invalid {
                    what: w, field: f, ..
                }) => assert_eq!((w, f), (what, field)),
                other => panic!("{what}/{field}: {other:?}"),
            }
        };
        check(&|b| b[0] = 1, "SA proposal", "last substructure");
        check(&|b| b[3] = 7, "SA proposal", "proposal length");
        check(&|b| b[8] = 2, "SA transform", "last substructure");
        check(&|b| b[11] = 7, "SA transform", "transform length");
        // Five transforms declared, four present, the last saying "more".
        check(
            &|b| {
                b[7] = 5;
                b[36] = 3;
            },
            "SA proposal",
            "number of transforms",
        );
        // Five declared, four present, the fourth saying "last".
        check(&|b| b[7] = 5, "SA transform", "last substructure");
        // Three transforms declared, four present: the third says "more".
        check(&|b| b[7] = 3, "SA transform", "last substructure");
        // The last transform says "more" although the count says last.
        check(&|b| b[36] = 3, "SA transform", "last substructure");
    }

    #[test]
    fn errors_carry_offsets() {
        let mut bytes = IKE_SA;
        bytes[31] = 4; // the third transform (PRF) claims 4 bytes
        assert_eq!(
            Vec::<Proposal>::parse_body(&bytes, 32),
            Err(WireError::Invalid {
                what: "SA transform",
                offset: 32 + 28,
                field: "transform length",
                value: 4,
                reason: "shorter than the 8-byte transform header",
            })
        );
    }

    #[test]
    fn proposal_says_more_but_none_follows() {
        let mut bytes = IKE_SA;
        bytes[0] = 2;
        assert!(matches!(
            Vec::<Proposal>::parse_body(&bytes, 0),
            Err(WireError::Truncated {
                what: "SA proposal",
                offset: 44,
                ..
            })
        ));
    }

    #[test]
    fn tlv_attribute_longer_than_transform() {
        let sa = vec![Proposal::ike(
            1,
            vec![Transform {
                kind: TransformType::Encr,
                id: 1,
                key_length: None,
                other_attributes: vec![TransformAttribute::Tlv {
                    kind: 1,
                    value: vec![0; 4],
                }],
            }],
        )];
        let mut bytes = emit_into_junk(&sa);
        bytes[19] = 5; // TLV length 5 > the 4 bytes left in the transform
        assert!(matches!(
            Vec::<Proposal>::parse_body(&bytes, 0),
            Err(WireError::Truncated {
                what: "transform attribute",
                offset: 16,
                needed: 9,
                available: 8
            })
        ));
    }

    #[test]
    fn second_key_length_is_kept_as_other_attribute() {
        let transform = Transform {
            kind: TransformType::Encr,
            id: ENCR_AES_CBC,
            key_length: Some(128),
            other_attributes: vec![TransformAttribute::Tv {
                kind: ATTRIBUTE_KEY_LENGTH,
                value: 256,
            }],
        };
        let sa = vec![Proposal::ike(1, vec![transform])];
        assert_eq!(
            Vec::<Proposal>::parse_body(&emit_into_junk(&sa), 0).unwrap(),
            sa
        );
    }

    #[test]
    fn too_many_transforms_is_not_emitted() {
        let sa = vec![Proposal::ike(
            1,
            vec![Transform::new(TransformType::Dh, 31); 256],
        )];
        let mut buf = vec![0; sa.body_len()];
        assert!(matches!(
            sa.emit_body(&mut buf),
            Err(WireError::TooLarge {
                field: "number of transforms",
                ..
            })
        ));
    }

    #[test]
    fn transform_names() {
        assert_eq!(
            iana::transform_name(TransformType::Encr, ENCR_AES_GCM_16),
            Some("ENCR_AES_GCM_16")
        );
        assert_eq!(
            iana::transform_name(TransformType::Dh, DH_CURVE25519),
            Some("CURVE_25519")
        );
        assert_eq!(iana::transform_name(TransformType::Prf, 999), None);
        assert_eq!(TransformType::from(4), TransformType::Dh);
        assert_eq!(ProtocolId::from(3), ProtocolId::Esp);
        assert_eq!(ProtocolId::from(0), ProtocolId::None);
    }
}
