//! The Certificate and Certificate Request payloads (RFC 7296 §3.6, §3.7):
//! an encoding byte, then the certificate (or for CERTREQ, the concatenated
//! SHA-1 hashes of trusted CA public keys).

use super::WireError;
use super::bytes::need;
use super::payload::Body;

mod field {
    pub const ENCODING: usize = 0;
    pub const HEADER_LEN: usize = 1;
}

/// Certificate encodings (IANA "IKEv2 Certificate Encodings").
pub mod cert_encoding {
    pub const PKCS7_WRAPPED_X509: u8 = 1;
    pub const X509_CERTIFICATE_SIGNATURE: u8 = 4;
    pub const CRL: u8 = 7;
    pub const HASH_AND_URL_X509_CERTIFICATE: u8 = 12;
    pub const HASH_AND_URL_X509_BUNDLE: u8 = 13;
    /// RFC 4806.
    pub const OCSP_CONTENT: u8 = 14;
    /// RFC 7670.
    pub const RAW_PUBLIC_KEY: u8 = 15;
}

/// The body of a CERT or CERTREQ payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// One of `cert_encoding`.
    pub encoding: u8,
    pub data: Vec<u8>,
}

impl Body for Cert {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        need(body, field::HEADER_LEN, "CERT/CERTREQ payload", offset)?;
        Ok(Self {
            encoding: body[field::ENCODING],
            data: body[field::HEADER_LEN..].to_vec(),
        })
    }

    fn body_len(&self) -> usize {
        field::HEADER_LEN + self.data.len()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf[field::ENCODING] = self.encoding;
        buf[field::HEADER_LEN..].copy_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::emit_into_junk;

    const X509: [u8; 4] = [0x04, 0x30, 0x82, 0x01];

    fn x509() -> Cert {
        Cert {
            encoding: cert_encoding::X509_CERTIFICATE_SIGNATURE,
            data: vec![0x30, 0x82, 0x01],
        }
    }

    #[test]
    fn deconstruct_and_parse() {
        let cert = Cert::parse_body(&X509, 0).unwrap();
        assert_eq!(cert.encoding, 4);
        assert_eq!(cert, x509());
    }

    #[test]
    fn construct_into_junk() {
        assert_eq!(emit_into_junk(&x509()), X509);
    }

    #[test]
    fn round_trip_empty_data() {
        let cert = Cert {
            encoding: 200,
            data: vec![],
        };
        assert_eq!(Cert::parse_body(&emit_into_junk(&cert), 0).unwrap(), cert);
    }

    #[test]
    fn truncated() {
        assert!(matches!(
            Cert::parse_body(&[], 9),
            Err(WireError::Truncated { offset: 9, .. })
        ));
    }
}
