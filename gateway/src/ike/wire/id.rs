//! The Identification payloads IDi and IDr (RFC 7296 §3.5).
//!
//! ```text
//! +---------------+-----------------------------------------------+
//! |    ID Type    |                 RESERVED                      |
//! +---------------+-----------------------------------------------+
//! |                   Identification Data                         |
//! +---------------------------------------------------------------+
//! ```
//!
//! AUTH is computed over this body exactly as it was received (RFC 7296
//! §2.15, "IDx'"): `Identification::body_bytes` rebuilds it, reserved bytes
//! as zero, which is what every peer sends.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::WireError;
use super::bytes::need;
use super::payload::Body;

mod field {
    pub const ID_TYPE: usize = 0;
    pub const HEADER_LEN: usize = 4;
}

codepoint! {
    /// Identification types (IANA "IKEv2 Identification Payload ID Types").
    pub enum IdType(u8) {
        Ipv4Addr = 1 => "ID_IPV4_ADDR",
        Fqdn = 2 => "ID_FQDN",
        Rfc822Addr = 3 => "ID_RFC822_ADDR",
        Ipv6Addr = 5 => "ID_IPV6_ADDR",
        DerAsn1Dn = 9 => "ID_DER_ASN1_DN",
        DerAsn1Gn = 10 => "ID_DER_ASN1_GN",
        KeyId = 11 => "ID_KEY_ID",
        /// RFC 7619.
        Null = 13 => "ID_NULL",
    }
}

/// The body of an IDi or IDr payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    pub id_type: IdType,
    pub data: Vec<u8>,
}

impl Identification {
    pub fn fqdn(name: &str) -> Self {
        Self {
            id_type: IdType::Fqdn,
            data: name.as_bytes().to_vec(),
        }
    }

    pub fn rfc822(address: &str) -> Self {
        Self {
            id_type: IdType::Rfc822Addr,
            data: address.as_bytes().to_vec(),
        }
    }

    pub fn ipv4(address: Ipv4Addr) -> Self {
        Self {
            id_type: IdType::Ipv4Addr,
            data: address.octets().to_vec(),
        }
    }

    pub fn ipv6(address: Ipv6Addr) -> Self {
        Self {
            id_type: IdType::Ipv6Addr,
            data: address.octets().to_vec(),
        }
    }

    pub fn key_id(key_id: &[u8]) -> Self {
        Self {
            id_type: IdType::KeyId,
            data: key_id.to_vec(),
        }
    }

    /// The payload body as it appears after the generic payload header: ID
    /// type, three reserved bytes, data. AUTH signs or MACs exactly these
    /// bytes (RFC 7296 §2.15).
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.body_len()];
        write(self, &mut bytes);
        bytes
    }
}

fn write(id: &Identification, buf: &mut [u8]) {
    buf[field::ID_TYPE] = id.id_type.into();
    buf[1..field::HEADER_LEN].fill(0);
    buf[field::HEADER_LEN..].copy_from_slice(&id.data);
}

impl Body for Identification {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        need(body, field::HEADER_LEN, "Identification payload", offset)?;
        Ok(Self {
            id_type: body[field::ID_TYPE].into(),
            data: body[field::HEADER_LEN..].to_vec(),
        })
    }

    fn body_len(&self) -> usize {
        field::HEADER_LEN + self.data.len()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        write(self, buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};

    /// IDx' of the captured IKE_AUTH request, as strongSwan logged it.
    const SPOKE1: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, b's', b'p', b'o', b'k', b'e', b'1', b'.', b'e', b'x', b'a', b'm',
        b'p', b'l', b'e',
    ];

    #[test]
    fn deconstruct() {
        let id = Identification::parse_body(&SPOKE1, 0).unwrap();
        assert_eq!(id.id_type, IdType::Fqdn);
        assert_eq!(id.data, b"spoke1.example");
    }

    #[test]
    fn construct() {
        assert_eq!(
            emit_into_junk(&Identification::fqdn("spoke1.example")),
            SPOKE1
        );
        assert_eq!(Identification::fqdn("spoke1.example").body_bytes(), SPOKE1);
    }

    #[test]
    fn parse() {
        assert_eq!(
            Identification::parse_body(&SPOKE1, 0).unwrap(),
            Identification::fqdn("spoke1.example")
        );
    }

    #[test]
    fn round_trip_into_junk() {
        for id in [
            Identification::ipv4(Ipv4Addr::new(172, 25, 1, 2)),
            Identification::ipv6(Ipv6Addr::LOCALHOST),
            Identification::rfc822("ops@example.com"),
            Identification::key_id(&[0xde, 0xad]),
            Identification {
                id_type: IdType::Unknown(200),
                data: vec![],
            },
        ] {
            let bytes = emit_into_junk(&id);
            assert_eq!(bytes, id.body_bytes());
            assert_eq!(Identification::parse_body(&bytes, 0).unwrap(), id);
        }
    }

    #[test]
    fn reserved_bytes_are_ignored() {
        let mut bytes = SPOKE1;
        bytes[1..4].copy_from_slice(&[1, 2, 3]);
        assert_eq!(
            Identification::parse_body(&bytes, 0).unwrap(),
            Identification::fqdn("spoke1.example")
        );
    }

    #[test]
    fn truncated() {
        every_truncation_fails::<Identification>(&SPOKE1, &(4..SPOKE1.len()).collect::<Vec<_>>());
        assert_eq!(
            Identification::parse_body(&SPOKE1[..3], 40),
            Err(WireError::Truncated {
                what: "Identification payload",
                offset: 40,
                needed: 4,
                available: 3
            })
        );
    }
}
