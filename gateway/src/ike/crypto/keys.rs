//! Key schedules: the IKE SA's SKEYSEED and SK_* keys (RFC 7296 §2.14, and
//! §2.18 when rekeying) and CHILD_SA keying material (§2.17).

use std::fmt;

use super::{CryptoError, Prf, SkCipher};
use crate::ipsec::{Encr, Integ, Secret};

/// The keys of an IKE SA. `sk_ai`/`sk_ar` are empty with an AEAD cipher.
/// `sk_ei`/`sk_er` include the 4-byte salt with AES-GCM.
pub struct IkeKeys {
    /// Key for deriving CHILD_SA keys and rekeyed IKE SAs.
    pub sk_d: Secret,
    /// Integrity key for messages from the initiator.
    pub sk_ai: Secret,
    /// Integrity key for messages from the responder.
    pub sk_ar: Secret,
    /// Encryption key for messages from the initiator.
    pub sk_ei: Secret,
    /// Encryption key for messages from the responder.
    pub sk_er: Secret,
    /// Key for the initiator's AUTH payload.
    pub sk_pi: Secret,
    /// Key for the responder's AUTH payload.
    pub sk_pr: Secret,
}

impl fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeKeys").finish_non_exhaustive()
    }
}

impl IkeKeys {
    /// `SKEYSEED = prf(Ni | Nr, g^ir)` (RFC 7296 §2.14). With the HMAC PRFs
    /// the whole of `Ni | Nr` is the key.
    pub fn skeyseed(prf: Prf, ni: &[u8], nr: &[u8], shared: &[u8]) -> Secret {
        let key = Secret::new([ni, nr].concat());
        Secret::new(prf.prf_parts(&key, &[shared]).as_ref().to_vec())
    }

    /// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` for an IKE SA
    /// rekeyed with CREATE_CHILD_SA (RFC 7296 §2.18). `prf` is the old SA's.
    pub fn skeyseed_rekey(
        prf: Prf,
        old_sk_d: &[u8],
        shared: &[u8],
        ni: &[u8],
        nr: &[u8],
    ) -> Secret {
        Secret::new(prf.prf_parts(old_sk_d, &[shared, ni, nr]).as_ref().to_vec())
    }

    /// Derive all keys of a new IKE SA from the IKE_SA_INIT exchange.
    /// `integ` is `None` with an AEAD cipher.
    #[allow(clippy::too_many_arguments)]
    pub fn derive(
        prf: Prf,
        encr: Encr,
        integ: Option<Integ>,
        ni: &[u8],
        nr: &[u8],
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let skeyseed = Self::skeyseed(prf, ni, nr, shared);
        Self::from_skeyseed(prf, encr, integ, &skeyseed, ni, nr, spi_i, spi_r)
    }

    /// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
    /// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)` (RFC 7296 §2.14). Also for
    /// a rekeyed IKE SA with [`IkeKeys::skeyseed_rekey`], the new SA's
    /// transforms and SPIs.
    #[allow(clippy::too_many_arguments)]
    pub fn from_skeyseed(
        prf: Prf,
        encr: Encr,
        integ: Option<Integ>,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let prf_len = prf.output_len();
        let a_len = integ.map_or(0, Integ::key_len);
        let e_len = encr.key_len();
        let seed = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat();
        let keymat = prf.prf_plus(skeyseed, &seed, 3 * prf_len + 2 * a_len + 2 * e_len);
        let mut rest: &[u8] = &keymat;
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Secret::new(head.to_vec())
        };
        IkeKeys {
            sk_d: take(prf_len),
            sk_ai: take(a_len),
            sk_ar: take(a_len),
            sk_ei: take(e_len),
            sk_er: take(e_len),
            sk_pi: take(prf_len),
            sk_pr: take(prf_len),
        }
    }

    /// The SK payload cipher for messages the initiator sends (SK_ei, SK_ai).
    pub fn initiator_cipher(
        &self,
        encr: Encr,
        integ: Option<Integ>,
    ) -> Result<SkCipher, CryptoError> {
        SkCipher::new(encr, integ, &self.sk_ei, Some(&self.sk_ai))
    }

    /// The SK payload cipher for messages the responder sends (SK_er, SK_ar).
    pub fn responder_cipher(
        &self,
        encr: Encr,
        integ: Option<Integ>,
    ) -> Result<SkCipher, CryptoError> {
        SkCipher::new(encr, integ, &self.sk_er, Some(&self.sk_ar))
    }
}

/// CHILD_SA keying material, `KEYMAT = prf+(SK_d, Ni | Nr)`, or with a
/// (PFS) Diffie-Hellman in CREATE_CHILD_SA `prf+(SK_d, g^ir (new) | Ni | Nr)`
/// (RFC 7296 §2.17).
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    ni: &[u8],
    nr: &[u8],
    shared: Option<&[u8]>,
    len: usize,
) -> Secret {
    let seed = Secret::new([shared.unwrap_or_default(), ni, nr].concat());
    prf.prf_plus(sk_d, &seed, len)
}

/// The keys of one CHILD_SA, in the order RFC 7296 §2.17 takes them from
/// KEYMAT: initiator-to-responder encryption then integrity, then
/// responder-to-initiator. Integrity keys are empty with an AEAD; AES-GCM
/// encryption keys include the 4-byte salt (RFC 4106 §8.1).
#[derive(Clone)]
pub struct ChildKeys {
    /// Encryption key of the SA carrying initiator-to-responder traffic.
    pub encr_i: Secret,
    /// Integrity key of the SA carrying initiator-to-responder traffic.
    pub integ_i: Secret,
    /// Encryption key of the SA carrying responder-to-initiator traffic.
    pub encr_r: Secret,
    /// Integrity key of the SA carrying responder-to-initiator traffic.
    pub integ_r: Secret,
}

impl fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildKeys").finish_non_exhaustive()
    }
}

impl ChildKeys {
    /// Length of KEYMAT needed for these ESP transforms.
    pub fn keymat_len(esp_encr: Encr, esp_integ: Option<Integ>) -> usize {
        2 * (esp_encr.key_len() + esp_integ.map_or(0, Integ::key_len))
    }

    /// Split KEYMAT into the four keys.
    pub fn split(
        keymat: &[u8],
        esp_encr: Encr,
        esp_integ: Option<Integ>,
    ) -> Result<ChildKeys, CryptoError> {
        let need = Self::keymat_len(esp_encr, esp_integ);
        if keymat.len() < need {
            return Err(CryptoError::KeyLength {
                what: "CHILD_SA KEYMAT",
                expected: need,
                got: keymat.len(),
            });
        }
        let e_len = esp_encr.key_len();
        let a_len = esp_integ.map_or(0, Integ::key_len);
        let mut rest = keymat;
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Secret::new(head.to_vec())
        };
        Ok(ChildKeys {
            encr_i: take(e_len),
            integ_i: take(a_len),
            encr_r: take(e_len),
            integ_r: take(a_len),
        })
    }

    /// Derive a CHILD_SA's keys: [`child_keymat`] then [`ChildKeys::split`].
    pub fn derive(
        prf: Prf,
        sk_d: &[u8],
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        esp_encr: Encr,
        esp_integ: Option<Integ>,
    ) -> ChildKeys {
        let len = Self::keymat_len(esp_encr, esp_integ);
        let keymat = child_keymat(prf, sk_d, ni, nr, shared, len);
        // KEYMAT has exactly the length split needs.
        match Self::split(&keymat, esp_encr, esp_integ) {
            Ok(keys) => keys,
            Err(e) => unreachable!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::crypto::tests::TestRng;
    use crate::{ike::crypto::Prf, ipsec::Rng};

    const NI: &[u8] = &[0x11; 32];
    const NR: &[u8] = &[0x22; 32];
    const SHARED: &[u8] = &[0x33; 32];

    #[test]
    fn key_lengths_and_order_follow_rfc_7296() {
        for prf in [
            Prf::HmacSha1,
            Prf::HmacSha256,
            Prf::HmacSha384,
            Prf::HmacSha512,
        ] {
            for (encr, integ) in [
                (Encr::AesCbc { key_bits: 128 }, Some(Integ::HmacSha1_96)),
                (Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha512_256)),
                (Encr::AesGcm16 { key_bits: 256 }, None),
            ] {
                let keys = IkeKeys::derive(prf, encr, integ, NI, NR, SHARED, 1, 2);
                let a_len = integ.map_or(0, Integ::key_len);
                let skeyseed = IkeKeys::skeyseed(prf, NI, NR, SHARED);
                assert_eq!(*skeyseed, prf.prf(&[NI, NR].concat(), SHARED));
                let seed = [NI, NR, &1u64.to_be_bytes(), &2u64.to_be_bytes()].concat();
                let n = prf.output_len();
                let e = encr.key_len();
                let stream = prf.prf_plus(&skeyseed, &seed, 3 * n + 2 * a_len + 2 * e);
                let want = [
                    &keys.sk_d[..],
                    &keys.sk_ai,
                    &keys.sk_ar,
                    &keys.sk_ei,
                    &keys.sk_er,
                    &keys.sk_pi,
                    &keys.sk_pr,
                ]
                .concat();
                assert_eq!(*stream, want);
                assert_eq!(keys.sk_d.len(), n);
                assert_eq!(keys.sk_pi.len(), n);
                assert_eq!(keys.sk_ai.len(), a_len);
                assert_eq!(keys.sk_ei.len(), e);
                // The two directions are distinct and each opens only its own.
                let i = keys.initiator_cipher(encr, integ).unwrap();
                let r = keys.responder_cipher(encr, integ).unwrap();
                let sealed = i.seal(b"header", b"payloads", &mut TestRng(1));
                assert_eq!(i.open(b"header", &sealed).unwrap(), b"payloads");
                assert_eq!(r.open(b"header", &sealed), Err(CryptoError::Integrity));
            }
        }
    }

    #[test]
    fn rekey_skeyseed() {
        let prf = Prf::HmacSha256;
        let old_sk_d = [0x44; 32];
        assert_eq!(
            *IkeKeys::skeyseed_rekey(prf, &old_sk_d, SHARED, NI, NR),
            prf.prf(&old_sk_d, &[SHARED, NI, NR].concat())
        );
    }

    #[test]
    fn child_keys_split_in_rfc_order() {
        let prf = Prf::HmacSha384;
        let mut sk_d = vec![0; prf.output_len()];
        TestRng(8).fill(&mut sk_d);
        let esp = Encr::AesCbc { key_bits: 128 };
        let integ = Some(Integ::HmacSha1_96);
        assert_eq!(ChildKeys::keymat_len(esp, integ), 2 * (16 + 20));
        for shared in [None, Some(SHARED)] {
            let keymat = child_keymat(prf, &sk_d, NI, NR, shared, 72);
            let seed = [shared.unwrap_or_default(), NI, NR].concat();
            assert_eq!(*keymat, *prf.prf_plus(&sk_d, &seed, 72));
            let keys = ChildKeys::derive(prf, &sk_d, NI, NR, shared, esp, integ);
            assert_eq!(*keys.encr_i, keymat[..16]);
            assert_eq!(*keys.integ_i, keymat[16..36]);
            assert_eq!(*keys.encr_r, keymat[36..52]);
            assert_eq!(*keys.integ_r, keymat[52..72]);
        }
        assert!(matches!(
            ChildKeys::split(&[0; 71], esp, integ),
            Err(CryptoError::KeyLength { .. })
        ));
    }
}
