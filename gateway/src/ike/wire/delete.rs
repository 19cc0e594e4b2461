//! The Delete payload (RFC 7296 §3.11).
//!
//! ```text
//! +---------------+---------------+-------------------------------+
//! | Protocol ID   |   SPI Size    |          Num of SPIs          |
//! +---------------+---------------+-------------------------------+
//! |               Security Parameter Index(es) (SPI)              |
//! +---------------------------------------------------------------+
//! ```
//!
//! Deleting the IKE SA: protocol IKE, SPI size 0, no SPIs. Deleting Child
//! SAs: ESP or AH, size 4, the SPIs the sender receives on.

use super::bytes::{Field, be16, fit_u16, need};
use super::payload::Body;
use super::{ProtocolId, WireError};

mod field {
    use super::Field;

    pub const PROTOCOL: usize = 0;
    pub const SPI_SIZE: usize = 1;
    pub const NUM_SPIS: Field = 2..4;
    pub const HEADER_LEN: usize = 4;
}

/// A Delete payload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub protocol: ProtocolId,
    /// Every SPI has this length; kept so that an empty list can say it.
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

impl Delete {
    /// Delete the IKE SA this message travels in.
    pub const fn ike() -> Self {
        Self {
            protocol: ProtocolId::Ike,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Delete ESP SAs by the SPIs the sender receives on.
    pub fn esp(spis: &[u32]) -> Self {
        Self {
            protocol: ProtocolId::Esp,
            spi_size: 4,
            spis: spis.iter().map(|spi| spi.to_be_bytes().to_vec()).collect(),
        }
    }

    /// The SPIs as 32-bit numbers, when they are four bytes (ESP, AH).
    pub fn spis_u32(&self) -> Option<Vec<u32>> {
        self.spis
            .iter()
            .map(|spi| {
                <[u8; 4]>::try_from(spi.as_slice())
                    .ok()
                    .map(u32::from_be_bytes)
            })
            .collect()
    }
}

impl Body for Delete {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        const WHAT: &str = "Delete payload";
        need(body, field::HEADER_LEN, WHAT, offset)?;
        let spi_size = body[field::SPI_SIZE];
        let count = be16(&body[field::NUM_SPIS]);
        if spi_size == 0 && count != 0 {
            return Err(WireError::Invalid {
                what: WHAT,
                offset,
                field: "number of SPIs",
                value: count.into(),
                reason: "SPIs of size 0 cannot be counted",
            });
        }
        let len = field::HEADER_LEN + usize::from(spi_size) * usize::from(count);
        need(body, len, WHAT, offset)?;
        if body.len() != len {
            return Err(WireError::TrailingBytes {
                what: WHAT,
                offset: offset + len,
                extra: body.len() - len,
            });
        }
        let spis = if spi_size == 0 {
            Vec::new()
        } else {
            body[field::HEADER_LEN..]
                .chunks_exact(spi_size.into())
                .map(<[u8]>::to_vec)
                .collect()
        };
        Ok(Self {
            protocol: body[field::PROTOCOL].into(),
            spi_size,
            spis,
        })
    }

    fn body_len(&self) -> usize {
        field::HEADER_LEN + self.spis.iter().map(Vec::len).sum::<usize>()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        const WHAT: &str = "Delete payload";
        if self
            .spis
            .iter()
            .any(|spi| spi.len() != usize::from(self.spi_size))
        {
            return Err(WireError::Unencodable {
                what: WHAT,
                reason: "an SPI's length differs from spi_size",
            });
        }
        let count = fit_u16(self.spis.len(), WHAT, "number of SPIs")?;
        if self.spi_size == 0 && count != 0 {
            return Err(WireError::Unencodable {
                what: WHAT,
                reason: "SPIs of size 0 cannot be counted",
            });
        }
        buf[field::PROTOCOL] = self.protocol.into();
        buf[field::SPI_SIZE] = self.spi_size;
        buf[field::NUM_SPIS].copy_from_slice(&count.to_be_bytes());
        let mut pos = field::HEADER_LEN;
        for spi in &self.spis {
            buf[pos..pos + spi.len()].copy_from_slice(spi);
            pos += spi.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};

    const ESP_TWO: [u8; 12] = [
        0x03, 0x04, 0x00, 0x02, 0x86, 0x10, 0x3b, 0x47, 0x2a, 0x7e, 0xfa, 0xd3,
    ];

    #[test]
    fn deconstruct() {
        let delete = Delete::parse_body(&ESP_TWO, 0).unwrap();
        assert_eq!(delete.protocol, ProtocolId::Esp);
        assert_eq!(delete.spi_size, 4);
        assert_eq!(delete.spis_u32(), Some(vec![0x8610_3b47, 0x2a7e_fad3]));
    }

    #[test]
    fn construct() {
        assert_eq!(
            emit_into_junk(&Delete::esp(&[0x8610_3b47, 0x2a7e_fad3])),
            ESP_TWO
        );
        assert_eq!(emit_into_junk(&Delete::ike()), [1, 0, 0, 0]);
    }

    #[test]
    fn parse() {
        assert_eq!(
            Delete::parse_body(&ESP_TWO, 0).unwrap(),
            Delete::esp(&[0x8610_3b47, 0x2a7e_fad3])
        );
        assert_eq!(Delete::parse_body(&[1, 0, 0, 0], 0).unwrap(), Delete::ike());
    }

    #[test]
    fn round_trip_odd_spi_size_into_junk() {
        let delete = Delete {
            protocol: ProtocolId::Unknown(9),
            spi_size: 3,
            spis: vec![vec![1, 2, 3], vec![4, 5, 6]],
        };
        assert_eq!(
            Delete::parse_body(&emit_into_junk(&delete), 0).unwrap(),
            delete
        );
        assert_eq!(delete.spis_u32(), None);
    }

    #[test]
    fn truncated() {
        every_truncation_fails::<Delete>(&ESP_TWO, &[]);
    }

    #[test]
    fn malformed() {
        // Zero-size SPIs counted: would be a list of nothing.
        assert!(matches!(
            Delete::parse_body(&[1, 0, 0xff, 0xff], 0),
            Err(WireError::Invalid {
                field: "number of SPIs",
                ..
            })
        ));
        let mut bytes = ESP_TWO.to_vec();
        bytes.push(0);
        assert_eq!(
            Delete::parse_body(&bytes, 0),
            Err(WireError::TrailingBytes {
                what: "Delete payload",
                offset: 12,
                extra: 1
            })
        );
        let mismatched = Delete {
            protocol: ProtocolId::Esp,
            spi_size: 4,
            spis: vec![vec![1, 2]],
        };
        let mut buf = vec![0; mismatched.body_len()];
        assert!(mismatched.emit_body(&mut buf).is_err());
    }
}
