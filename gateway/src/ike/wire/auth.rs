//! The Authentication payload (RFC 7296 §3.8).
//!
//! ```text
//! +---------------+-----------------------------------------------+
//! | Auth Method   |                RESERVED                       |
//! +---------------+-----------------------------------------------+
//! |                      Authentication Data                      |
//! +---------------------------------------------------------------+
//! ```

use super::WireError;
use super::bytes::need;
use super::payload::Body;

mod field {
    pub const METHOD: usize = 0;
    pub const HEADER_LEN: usize = 4;
}

codepoint! {
    /// Authentication methods (IANA "IKEv2 Authentication Method").
    pub enum AuthMethod(u8) {
        RsaSig = 1 => "RSA Digital Signature",
        SharedKeyMic = 2 => "Shared Key Message Integrity Code",
        DssSig = 3 => "DSS Digital Signature",
        /// RFC 4754.
        Ecdsa256 = 9 => "ECDSA with SHA-256 on the P-256 curve",
        Ecdsa384 = 10 => "ECDSA with SHA-384 on the P-384 curve",
        Ecdsa521 = 11 => "ECDSA with SHA-512 on the P-521 curve",
        /// RFC 7619.
        Null = 13 => "NULL Authentication",
        /// RFC 7427.
        DigitalSignature = 14 => "Digital Signature",
    }
}

/// The body of an AUTH payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub method: AuthMethod,
    pub data: Vec<u8>,
}

impl Body for Auth {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        need(body, field::HEADER_LEN, "AUTH payload", offset)?;
        Ok(Self {
            method: body[field::METHOD].into(),
            data: body[field::HEADER_LEN..].to_vec(),
        })
    }

    fn body_len(&self) -> usize {
        field::HEADER_LEN + self.data.len()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf[field::METHOD] = self.method.into();
        buf[1..field::HEADER_LEN].fill(0);
        buf[field::HEADER_LEN..].copy_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};

    const PSK: [u8; 7] = [0x02, 0, 0, 0, 0xfb, 0x91, 0x0b];

    fn psk() -> Auth {
        Auth {
            method: AuthMethod::SharedKeyMic,
            data: vec![0xfb, 0x91, 0x0b],
        }
    }

    #[test]
    fn deconstruct() {
        let auth = Auth::parse_body(&PSK, 0).unwrap();
        assert_eq!(auth.method, AuthMethod::SharedKeyMic);
        assert_eq!(auth.data, [0xfb, 0x91, 0x0b]);
    }

    #[test]
    fn construct() {
        assert_eq!(emit_into_junk(&psk()), PSK);
    }

    #[test]
    fn parse() {
        assert_eq!(Auth::parse_body(&PSK, 0).unwrap(), psk());
    }

    #[test]
    fn round_trip_into_junk() {
        for method in [1, 2, 3, 9, 10, 11, 13, 14, 250] {
            let auth = Auth {
                method: AuthMethod::from(method),
                data: vec![method; 3],
            };
            assert_eq!(u8::from(auth.method), method);
            let bytes = emit_into_junk(&auth);
            assert_eq!(Auth::parse_body(&bytes, 0).unwrap(), auth);
        }
    }

    #[test]
    fn truncated() {
        // Cutting into the data leaves a shorter AUTH, which is valid.
        every_truncation_fails::<Auth>(&PSK, &[4, 5, 6]);
    }
}
