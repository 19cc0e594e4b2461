//! Pseudorandom functions (IKEv2 transform type 2) and prf+ (RFC 7296 §2.13).

use aws_lc_rs::hmac;

use crate::ipsec::Secret;

/// An IKEv2 PRF. Only the HMAC-based ones: AES-XCBC/CMAC PRFs are not
/// offered by the peers the hub talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (2, RFC 2104).
    HmacSha1,
    /// PRF_HMAC_SHA2_256 (5, RFC 4868).
    HmacSha256,
    /// PRF_HMAC_SHA2_384 (6, RFC 4868).
    HmacSha384,
    /// PRF_HMAC_SHA2_512 (7, RFC 4868).
    HmacSha512,
}

impl Prf {
    /// The PRF with this IANA transform ID, if supported.
    pub const fn from_iana(id: u16) -> Option<Self> {
        match id {
            2 => Some(Self::HmacSha1),
            5 => Some(Self::HmacSha256),
            6 => Some(Self::HmacSha384),
            7 => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// The IANA transform ID.
    pub const fn iana(self) -> u16 {
        match self {
            Self::HmacSha1 => 2,
            Self::HmacSha256 => 5,
            Self::HmacSha384 => 6,
            Self::HmacSha512 => 7,
        }
    }

    /// Output length in bytes (also the length of SK_d, SK_pi and SK_pr).
    pub const fn output_len(self) -> usize {
        match self {
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    pub(super) fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha384 => hmac::HMAC_SHA384,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// `prf(key, data)`. HMAC takes keys of any length.
    pub fn prf(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        self.prf_parts(key, &[data]).as_ref().to_vec()
    }

    /// `prf(key, part0 | part1 | ...)` without concatenating the parts.
    pub(super) fn prf_parts(self, key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign()
    }

    /// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 §2.13):
    /// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`.
    ///
    /// # Panics
    /// If `len` exceeds 255 PRF outputs, the most prf+ can produce. Every
    /// key schedule in IKEv2 asks for far less.
    pub fn prf_plus(&self, key: &[u8], seed: &[u8], len: usize) -> Secret {
        assert!(
            len <= 255 * self.output_len(),
            "prf+ cannot produce {len} bytes with {self:?}"
        );
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        let mut out = Secret::new(Vec::with_capacity(len + self.output_len()));
        let mut previous: Option<hmac::Tag> = None;
        let mut counter = 1u8;
        while out.len() < len {
            let mut ctx = hmac::Context::with_key(&key);
            if let Some(t) = &previous {
                ctx.update(t.as_ref());
            }
            ctx.update(seed);
            ctx.update(&[counter]);
            let t = ctx.sign();
            out.extend_from_slice(t.as_ref());
            previous = Some(t);
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::crypto::tests::hex;

    // RFC 4231 §4.2 (test case 1) and §4.3 (test case 2).
    #[test]
    fn hmac_sha2_rfc4231() {
        let key1 = [0x0b; 20];
        let data1 = b"Hi There";
        assert_eq!(
            Prf::HmacSha256.prf(&key1, data1),
            hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            Prf::HmacSha384.prf(&key1, data1),
            hex(
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                 faea9ea9076ede7f4af152e8b2fa9cb6"
            )
        );
        assert_eq!(
            Prf::HmacSha512.prf(&key1, data1),
            hex(
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
            )
        );
        let key2 = b"Jefe";
        let data2 = b"what do ya want for nothing?";
        assert_eq!(
            Prf::HmacSha256.prf(key2, data2),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            Prf::HmacSha512.prf(key2, data2),
            hex(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            )
        );
    }

    // RFC 2202 §3, test cases 1 and 2.
    #[test]
    fn hmac_sha1_rfc2202() {
        assert_eq!(
            Prf::HmacSha1.prf(&[0x0b; 20], b"Hi There"),
            hex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        assert_eq!(
            Prf::HmacSha1.prf(b"Jefe", b"what do ya want for nothing?"),
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
    }

    #[test]
    fn prf_plus_is_the_rfc_7296_iteration() {
        let prf = Prf::HmacSha256;
        let (key, seed) = (b"key".as_slice(), b"seed".as_slice());
        let t1 = prf.prf(key, b"seed\x01");
        let t2 = prf.prf(key, &[t1.as_slice(), b"seed\x02"].concat());
        let t3 = prf.prf(key, &[t2.as_slice(), b"seed\x03"].concat());
        let want = [t1, t2, t3].concat();
        for len in [0, 1, 31, 32, 33, 64, 70, 96] {
            assert_eq!(prf.prf_plus(key, seed, len).as_slice(), &want[..len]);
        }
    }

    #[test]
    fn iana_round_trip() {
        for id in 0..=20 {
            if let Some(p) = Prf::from_iana(id) {
                assert_eq!(p.iana(), id);
                assert_eq!(p.prf(b"k", b"d").len(), p.output_len());
            }
        }
        assert_eq!(Prf::from_iana(4), None); // AES128-XCBC: not offered
    }
}
