//! Integrity algorithms (IKEv2 transform type 3): truncated HMACs
//! (RFC 2404, RFC 4868).

use aws_lc_rs::{constant_time, hmac};

/// An IKEv2/ESP integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integ {
    /// AUTH_HMAC_SHA1_96 (2, RFC 2404).
    HmacSha1_96,
    /// AUTH_HMAC_SHA2_256_128 (12, RFC 4868).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (13, RFC 4868).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (14, RFC 4868).
    HmacSha512_256,
}

impl Integ {
    /// The integrity algorithm with this IANA transform ID, if supported.
    pub const fn from_iana(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::HmacSha1_96),
            12 => Some(Self::HmacSha256_128),
            13 => Some(Self::HmacSha384_192),
            14 => Some(Self::HmacSha512_256),
            _ => None,
        }
    }

    /// The IANA transform ID.
    pub const fn iana(self) -> u16 {
        match self {
            Self::HmacSha1_96 => 2,
            Self::HmacSha256_128 => 12,
            Self::HmacSha384_192 => 13,
            Self::HmacSha512_256 => 14,
        }
    }

    /// Key length in bytes (the hash output length, RFC 4868 §2.1.1).
    pub const fn key_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 20,
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }

    /// Length of the truncated ICV in bytes.
    pub const fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256_128 => hmac::HMAC_SHA256,
            Self::HmacSha384_192 => hmac::HMAC_SHA384,
            Self::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }

    /// The truncated ICV of `data`.
    pub fn compute(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        self.compute_parts(key, &[data])
    }

    /// The truncated ICV of `part0 | part1 | ...`.
    pub(crate) fn compute_parts(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign().as_ref()[..self.icv_len()].to_vec()
    }

    /// Whether `icv` is the ICV of `data`, compared in constant time. An ICV
    /// of the wrong length is rejected.
    pub fn verify(&self, key: &[u8], data: &[u8], icv: &[u8]) -> bool {
        self.verify_parts(key, &[data], icv)
    }

    pub(crate) fn verify_parts(self, key: &[u8], parts: &[&[u8]], icv: &[u8]) -> bool {
        let expected = self.compute_parts(key, parts);
        constant_time::verify_slices_are_equal(&expected, icv).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 4868 §2.7.2.1 uses the RFC 4231 vectors truncated; RFC 4231
    // test case 2 ("Jefe"), truncated to each ICV length.
    #[test]
    fn truncated_known_answers() {
        let (key, data) = (
            b"Jefe".as_slice(),
            b"what do ya want for nothing?".as_slice(),
        );
        assert_eq!(
            Integ::HmacSha256_128.compute(key, data),
            hex("5bdcc146bf60754e6a042426089575c7")
        );
        assert_eq!(
            Integ::HmacSha512_256.compute(key, data),
            hex("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554")
        );
        // RFC 2202 test case 2, truncated to 96 bits (RFC 2404).
        assert_eq!(
            Integ::HmacSha1_96.compute(key, data),
            hex("effcdf6ae5eb2fa2d27416d5")
        );
    }

    #[test]
    fn verify_accepts_only_the_exact_icv() {
        for integ in [
            Integ::HmacSha1_96,
            Integ::HmacSha256_128,
            Integ::HmacSha384_192,
            Integ::HmacSha512_256,
        ] {
            assert_eq!(Integ::from_iana(integ.iana()), Some(integ));
            let key = vec![7u8; integ.key_len()];
            let icv = integ.compute(&key, b"message");
            assert_eq!(icv.len(), integ.icv_len());
            assert!(integ.verify(&key, b"message", &icv));
            assert!(!integ.verify(&key, b"messagf", &icv));
            assert!(!integ.verify(&key, b"message", &icv[1..]));
            let mut bad = icv.clone();
            bad[0] ^= 1;
            assert!(!integ.verify(&key, b"message", &bad));
        }
    }
}
