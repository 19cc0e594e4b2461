//! The Encrypted payload SK (RFC 7296 §3.14) and the Encrypted Fragment
//! payload SKF (RFC 7383 §2.5).
//!
//! The codec keeps their contents raw (IV || ciphertext || ICV); `crypto`
//! decrypts them and `parse_payloads` reads the plaintext. Their generic
//! header's Next Payload names the first inner payload (`first_inner`), so
//! they are always the last payload of a message.
//!
//! ```text
//! SKF body
//! +-------------------------------+-------------------------------+
//! |        Fragment Number        |        Total Fragments        |
//! +-------------------------------+-------------------------------+
//! |     IV || encrypted content || ICV                            |
//! +---------------------------------------------------------------+
//! ```

use super::bytes::{Field, be16, need};
use super::{PayloadType, WireError};

mod field {
    use super::Field;

    pub const FRAGMENT_NUMBER: Field = 0..2;
    pub const TOTAL_FRAGMENTS: Field = 2..4;
    pub const FRAGMENT_HEADER_LEN: usize = 4;
}

/// An SK payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// The type of the first payload inside (its generic Next Payload).
    pub first_inner: PayloadType,
    /// IV || ciphertext || ICV, not interpreted here.
    pub body: Vec<u8>,
}

/// An SKF payload: one fragment of an SK payload's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFragment {
    /// 1-based; never above `total`.
    pub number: u16,
    pub total: u16,
    /// The first inner payload's type in fragment 1, NONE in the others.
    pub first_inner: PayloadType,
    /// IV || ciphertext || ICV of this fragment.
    pub body: Vec<u8>,
}

impl Encrypted {
    pub(super) fn body_len(&self) -> usize {
        self.body.len()
    }

    pub(super) fn emit_body(&self, buf: &mut [u8]) {
        buf.copy_from_slice(&self.body);
    }
}

impl EncryptedFragment {
    /// The SKF body `body`; `first_inner` comes from its generic header.
    pub(super) fn parse_body(
        first_inner: PayloadType,
        body: &[u8],
        offset: usize,
    ) -> Result<Self, WireError> {
        const WHAT: &str = "SKF payload";
        need(body, field::FRAGMENT_HEADER_LEN, WHAT, offset)?;
        let number = be16(&body[field::FRAGMENT_NUMBER]);
        let total = be16(&body[field::TOTAL_FRAGMENTS]);
        if number == 0 || number > total {
            return Err(WireError::Invalid {
                what: WHAT,
                offset,
                field: "fragment number",
                value: number.into(),
                reason: "fragments are numbered from 1 to Total Fragments",
            });
        }
        Ok(Self {
            number,
            total,
            first_inner,
            body: body[field::FRAGMENT_HEADER_LEN..].to_vec(),
        })
    }

    pub(super) fn body_len(&self) -> usize {
        field::FRAGMENT_HEADER_LEN + self.body.len()
    }

    pub(super) fn emit_body(&self, buf: &mut [u8]) {
        buf[field::FRAGMENT_NUMBER].copy_from_slice(&self.number.to_be_bytes());
        buf[field::TOTAL_FRAGMENTS].copy_from_slice(&self.total.to_be_bytes());
        buf[field::FRAGMENT_HEADER_LEN..].copy_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::JUNK;

    const SECOND_OF_THREE: [u8; 7] = [0x00, 0x02, 0x00, 0x03, 0xaa, 0xbb, 0xcc];

    fn second_of_three() -> EncryptedFragment {
        EncryptedFragment {
            number: 2,
            total: 3,
            first_inner: PayloadType::None,
            body: vec![0xaa, 0xbb, 0xcc],
        }
    }

    #[test]
    fn deconstruct_and_parse() {
        let skf = EncryptedFragment::parse_body(PayloadType::None, &SECOND_OF_THREE, 0).unwrap();
        assert_eq!((skf.number, skf.total), (2, 3));
        assert_eq!(skf, second_of_three());
    }

    #[test]
    fn construct_into_junk() {
        let skf = second_of_three();
        let mut buf = vec![JUNK; skf.body_len()];
        skf.emit_body(&mut buf);
        assert_eq!(buf, SECOND_OF_THREE);
    }

    #[test]
    fn sk_body_into_junk() {
        let sk = Encrypted {
            first_inner: PayloadType::IdI,
            body: vec![1, 2, 3],
        };
        let mut buf = vec![JUNK; sk.body_len()];
        sk.emit_body(&mut buf);
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn malformed() {
        for cut in 0..4 {
            assert!(
                EncryptedFragment::parse_body(PayloadType::None, &SECOND_OF_THREE[..cut], 0)
                    .is_err()
            );
        }
        for (number, total) in [(0, 3), (4, 3), (1, 0)] {
            let mut bytes = SECOND_OF_THREE;
            bytes[0..2].copy_from_slice(&u16::to_be_bytes(number));
            bytes[2..4].copy_from_slice(&u16::to_be_bytes(total));
            assert!(matches!(
                EncryptedFragment::parse_body(PayloadType::None, &bytes, 32),
                Err(WireError::Invalid {
                    what: "SKF payload",
                    offset: 32,
                    field: "fragment number",
                    ..
                })
            ));
        }
    }
}
