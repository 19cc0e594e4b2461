//! The Key Exchange payload (RFC 7296 §3.4).
//!
//! ```text
//! +-------------------------------+-------------------------------+
//! |   Diffie-Hellman Group Num    |           RESERVED            |
//! +-------------------------------+-------------------------------+
//! |                       Key Exchange Data                       |
//! +---------------------------------------------------------------+
//! ```

use super::WireError;
use super::bytes::{Field, be16, need};
use super::payload::Body;

mod field {
    use super::Field;

    pub const GROUP: Field = 0..2;
    pub const HEADER_LEN: usize = 4;
}

/// The body of a KE payload: the group (an `iana::DH_*` value) and the
/// public value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchange {
    pub group: u16,
    pub data: Vec<u8>,
}

impl Body for KeyExchange {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        need(body, field::HEADER_LEN, "KE payload", offset)?;
        Ok(Self {
            group: be16(&body[field::GROUP]),
            data: body[field::HEADER_LEN..].to_vec(),
        })
    }

    fn body_len(&self) -> usize {
        field::HEADER_LEN + self.data.len()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf[field::GROUP].copy_from_slice(&self.group.to_be_bytes());
        buf[2..field::HEADER_LEN].fill(0);
        buf[field::HEADER_LEN..].copy_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};
    use crate::ike::wire::iana::DH_CURVE25519;

    const X25519: [u8; 7] = [0x00, 0x1f, 0x00, 0x00, 0xff, 0xde, 0x58];

    fn x25519() -> KeyExchange {
        KeyExchange {
            group: DH_CURVE25519,
            data: vec![0xff, 0xde, 0x58],
        }
    }

    #[test]
    fn deconstruct() {
        let ke = KeyExchange::parse_body(&X25519, 0).unwrap();
        assert_eq!(ke.group, 31);
        assert_eq!(ke.data, [0xff, 0xde, 0x58]);
    }

    #[test]
    fn construct_into_junk() {
        assert_eq!(emit_into_junk(&x25519()), X25519);
    }

    #[test]
    fn parse() {
        assert_eq!(KeyExchange::parse_body(&X25519, 0).unwrap(), x25519());
    }

    #[test]
    fn truncated() {
        every_truncation_fails::<KeyExchange>(&X25519, &[4, 5, 6]);
    }
}
