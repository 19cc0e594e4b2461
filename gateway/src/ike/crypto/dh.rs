//! Diffie-Hellman groups (IKEv2 transform type 4) and the KE payload
//! encodings: RFC 7296 §3.4, RFC 3526 (MODP), RFC 5903 (ECP), RFC 8031
//! (Curve25519).

use std::fmt;

use aws_lc_rs::agreement;
use crypto_bigint::modular::{ConstMontyForm, ConstMontyParams};
use crypto_bigint::{U512, U2048, const_monty_params};
use zeroize::Zeroizing;

use super::CryptoError;
use crate::ipsec::Rng;
use crate::ipsec::Secret;

// RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 },
// generator 2.
const_monty_params!(
    Modp2048Prime,
    U2048,
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
     020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
     4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
     EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
     98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
     9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
     E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
     3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    "The 2048-bit MODP group prime (RFC 3526 §3)"
);

type Modp2048 = ConstMontyForm<Modp2048Prime, { U2048::LIMBS }>;

/// MODP-2048 private exponents are 512 bits: RFC 3526 §8 asks for at least
/// twice the group's strength (about 2 x 110-160 bits).
type ModpExponent = U512;

const MODP_LEN: usize = 256;

/// How many draws from the random source a private key may take before we
/// give up (an ECP scalar is rejected when zero or not below the order;
/// with P-256 that is about 2^-32 per draw).
const MAX_DRAWS: usize = 64;

/// A Diffie-Hellman group the hub accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group (14, RFC 3526).
    Modp2048,
    /// 256-bit random ECP group, NIST P-256 (19, RFC 5903).
    Ecp256,
    /// 384-bit random ECP group, NIST P-384 (20, RFC 5903).
    Ecp384,
    /// 521-bit random ECP group, NIST P-521 (21, RFC 5903).
    Ecp521,
    /// Curve25519, X25519 (31, RFC 8031).
    Curve25519,
}

impl DhGroup {
    /// The group with this IANA transform ID, if supported.
    pub const fn from_iana(id: u16) -> Option<Self> {
        match id {
            14 => Some(Self::Modp2048),
            19 => Some(Self::Ecp256),
            20 => Some(Self::Ecp384),
            21 => Some(Self::Ecp521),
            31 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// The IANA transform ID (the DH Group Num of the KE payload).
    pub const fn iana(self) -> u16 {
        match self {
            Self::Modp2048 => 14,
            Self::Ecp256 => 19,
            Self::Ecp384 => 20,
            Self::Ecp521 => 21,
            Self::Curve25519 => 31,
        }
    }

    /// Length of the Key Exchange Data of the KE payload.
    pub const fn public_len(self) -> usize {
        match self {
            Self::Modp2048 => MODP_LEN,
            Self::Ecp256 => 64,
            Self::Ecp384 => 96,
            Self::Ecp521 => 132,
            Self::Curve25519 => 32,
        }
    }

    /// Length of the shared secret g^ir.
    pub const fn shared_len(self) -> usize {
        match self {
            Self::Modp2048 => MODP_LEN,
            Self::Ecp256 | Self::Curve25519 => 32,
            Self::Ecp384 => 48,
            Self::Ecp521 => 66,
        }
    }

    fn agreement_algorithm(self) -> Option<&'static agreement::Algorithm> {
        match self {
            Self::Modp2048 => None,
            Self::Ecp256 => Some(&agreement::ECDH_P256),
            Self::Ecp384 => Some(&agreement::ECDH_P384),
            Self::Ecp521 => Some(&agreement::ECDH_P521),
            Self::Curve25519 => Some(&agreement::X25519),
        }
    }

    /// Length of the private scalar drawn from the random source.
    const fn private_len(self) -> usize {
        match self {
            Self::Modp2048 => ModpExponent::BYTES,
            Self::Ecp521 => 66,
            Self::Ecp384 => 48,
            Self::Ecp256 | Self::Curve25519 => 32,
        }
    }

    /// Generate a private key with bytes from `rng` (so tests can fix them).
    /// ECP scalars that are zero or not below the group order are drawn again.
    pub fn generate(self, rng: &mut dyn Rng) -> Result<DhPrivate, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; self.private_len()]);
        for _ in 0..MAX_DRAWS {
            rng.fill(&mut bytes);
            if let Some(private) = self.private_from_bytes(&mut bytes) {
                return Ok(private);
            }
        }
        Err(CryptoError::Backend(
            "no valid Diffie-Hellman private key after repeated draws",
        ))
    }

    /// A private key from raw bytes, or `None` if they are not a valid
    /// private value for the group.
    fn private_from_bytes(self, bytes: &mut [u8]) -> Option<DhPrivate> {
        match self.agreement_algorithm() {
            None => {
                let x = Zeroizing::new(ModpExponent::from_be_slice(bytes));
                if bool::from(x.is_zero()) {
                    return None;
                }
                let public = Modp2048::new(&U2048::from_u8(2)).pow(&*x).retrieve();
                Some(DhPrivate {
                    group: self,
                    public: public.to_be_bytes().as_ref().to_vec(),
                    key: Key::Modp(x),
                })
            }
            Some(alg) => {
                if self == Self::Ecp521 {
                    // The order is just below 2^521: keep 521 bits so that
                    // nearly every draw is a valid scalar.
                    bytes[0] &= 0x01;
                }
                let key = agreement::PrivateKey::from_private_key(alg, bytes).ok()?;
                let public = key.compute_public_key().ok()?;
                let public = public.as_ref();
                let public = if self == Self::Curve25519 {
                    public.to_vec()
                } else {
                    // SEC1 uncompressed 04 || x || y; IKE sends x || y.
                    debug_assert_eq!(public.first(), Some(&0x04));
                    public.get(1..)?.to_vec()
                };
                if public.len() != self.public_len() {
                    return None;
                }
                Some(DhPrivate {
                    group: self,
                    public,
                    key: Key::Ec(key),
                })
            }
        }
    }
}

enum Key {
    Modp(Zeroizing<ModpExponent>),
    Ec(agreement::PrivateKey),
}

/// Our half of a Diffie-Hellman exchange: the private value and its public
/// value in KE payload format.
pub struct DhPrivate {
    group: DhGroup,
    public: Vec<u8>,
    key: Key,
}

impl fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DhPrivate {
    /// The group of this key.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Our public value as the KE payload's Key Exchange Data: MODP g^x
    /// big-endian left-padded to 256 bytes; ECP x || y (RFC 5903 §7);
    /// X25519 the 32-byte u-coordinate (RFC 8031).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret g^ir from the peer's Key Exchange Data, after
    /// validating it: exact length; ECP the point is on the curve; X25519
    /// the result is not all zero (RFC 8031 §2); MODP 1 < y < p-1.
    /// ECP groups give the x coordinate (RFC 5903 §7), MODP a 256-byte
    /// big-endian value.
    pub fn shared_secret(&self, peer: &[u8]) -> Result<Secret, CryptoError> {
        let group = self.group;
        let invalid = |reason| CryptoError::InvalidPeerPublic { group, reason };
        if peer.len() != group.public_len() {
            return Err(invalid("wrong length"));
        }
        match &self.key {
            Key::Modp(x) => {
                let y = U2048::from_be_slice(peer);
                let p = Modp2048Prime::PARAMS.modulus().as_ref();
                if y <= U2048::ONE || y >= p.wrapping_sub(&U2048::ONE) {
                    return Err(invalid("not in the range 1 < y < p-1"));
                }
                let shared = Modp2048::new(&y).pow(&**x).retrieve();
                let out = Secret::new(shared.to_be_bytes().as_ref().to_vec());
                Ok(out)
            }
            Key::Ec(key) => {
                let mut sec1;
                let peer_bytes = if group == DhGroup::Curve25519 {
                    peer
                } else {
                    sec1 = Vec::with_capacity(1 + peer.len());
                    sec1.push(0x04);
                    sec1.extend_from_slice(peer);
                    &sec1[..]
                };
                let alg = key.algorithm();
                let shared = agreement::agree(
                    key,
                    agreement::UnparsedPublicKey::new(alg, peer_bytes),
                    invalid("not a valid point"),
                    |secret| Ok(Secret::new(secret.to_vec())),
                )?;
                if shared.len() != group.shared_len() {
                    return Err(CryptoError::Backend("unexpected shared secret length"));
                }
                if shared.iter().all(|b| *b == 0) {
                    return Err(invalid("the shared secret is all zero"));
                }
                Ok(shared)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::crypto::tests::{FixedRng, TestRng, hex};

    const ALL: [DhGroup; 5] = [
        DhGroup::Modp2048,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Ecp521,
        DhGroup::Curve25519,
    ];

    struct Zeros;

    impl Rng for Zeros {
        fn fill(&mut self, buf: &mut [u8]) {
            buf.fill(0);
        }
    }

    fn invalid(group: DhGroup, result: Result<Secret, CryptoError>) {
        assert!(
            matches!(result, Err(CryptoError::InvalidPeerPublic { group: g, .. }) if g == group),
            "{group:?}: expected a rejection, got {:?}",
            result.map(|s| s.len())
        );
    }

    #[test]
    fn iana_and_lengths() {
        for group in ALL {
            assert_eq!(DhGroup::from_iana(group.iana()), Some(group));
        }
        assert_eq!(DhGroup::from_iana(2), None); // MODP-1024: refused
        assert_eq!(DhGroup::from_iana(5), None); // MODP-1536: refused
    }

    #[test]
    fn x25519_rfc7748_section_6_1() {
        let alice_private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let alice_public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let bob_private = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
        let bob_public = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

        let alice = DhGroup::Curve25519
            .generate(&mut FixedRng(hex(alice_private)))
            .unwrap();
        let bob = DhGroup::Curve25519
            .generate(&mut FixedRng(hex(bob_private)))
            .unwrap();
        assert_eq!(alice.public_key(), hex(alice_public));
        assert_eq!(bob.public_key(), hex(bob_public));
        assert_eq!(*alice.shared_secret(&hex(bob_public)).unwrap(), shared);
        assert_eq!(*bob.shared_secret(&hex(alice_public)).unwrap(), shared);
    }

    #[test]
    fn x25519_rejects_low_order_points_and_bad_lengths() {
        let ours = DhGroup::Curve25519.generate(&mut TestRng(1)).unwrap();
        // Points of small order (RFC 7748 §6.1: the result is all zero).
        for u in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        ] {
            invalid(DhGroup::Curve25519, ours.shared_secret(&hex(u)));
        }
        invalid(DhGroup::Curve25519, ours.shared_secret(&[9; 31]));
        invalid(DhGroup::Curve25519, ours.shared_secret(&[9; 33]));
    }

    // RFC 5903 §8.1, 256-bit random ECP group.
    const P256_I: &str = "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433";
    const P256_GIX: &str =
        "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180";
    const P256_GIY: &str =
        "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3";
    const P256_R: &str = "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53";
    const P256_GRX: &str =
        "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63";
    const P256_GRY: &str =
        "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB";
    const P256_GIRX: &str =
        "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE";

    #[test]
    fn ecp256_rfc5903_section_8_1() {
        let gi = [hex(P256_GIX), hex(P256_GIY)].concat();
        let gr = [hex(P256_GRX), hex(P256_GRY)].concat();
        let i = DhGroup::Ecp256
            .generate(&mut FixedRng(hex(P256_I)))
            .unwrap();
        let r = DhGroup::Ecp256
            .generate(&mut FixedRng(hex(P256_R)))
            .unwrap();
        assert_eq!(i.public_key(), gi, "KE data is x | y without the 04 prefix");
        assert_eq!(r.public_key(), gr);
        assert_eq!(*i.shared_secret(&gr).unwrap(), hex(P256_GIRX));
        assert_eq!(*r.shared_secret(&gi).unwrap(), hex(P256_GIRX));
    }

    #[test]
    fn ecp_scalars_out_of_range_are_drawn_again() {
        // All ones is above the P-256 order, zero is not a scalar: both are
        // skipped and the third draw is the RFC 5903 key.
        let bytes = [vec![0xff; 32], vec![0; 32], hex(P256_I)].concat();
        let i = DhGroup::Ecp256.generate(&mut FixedRng(bytes)).unwrap();
        assert_eq!(i.public_key(), [hex(P256_GIX), hex(P256_GIY)].concat());
        // A source that never yields a valid key is an error, not a hang.
        for group in [DhGroup::Ecp256, DhGroup::Ecp521, DhGroup::Modp2048] {
            assert!(matches!(
                group.generate(&mut Zeros),
                Err(CryptoError::Backend(_))
            ));
        }
    }

    #[test]
    fn ecp_rejects_points_off_the_curve_and_bad_encodings() {
        for group in [DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521] {
            let ours = group.generate(&mut TestRng(2)).unwrap();
            let peer = group.generate(&mut TestRng(3)).unwrap();
            let good = peer.public_key();
            assert!(ours.shared_secret(good).is_ok());
            // y + 1: off the curve.
            let mut off = good.to_vec();
            *off.last_mut().unwrap() ^= 1;
            invalid(group, ours.shared_secret(&off));
            // The point (0, 0) is not on these curves.
            invalid(group, ours.shared_secret(&vec![0; group.public_len()]));
            // SEC1 encodings are not KE data: 04 | x | y, and compressed.
            invalid(group, ours.shared_secret(&[&[4], good].concat()));
            let half = group.public_len() / 2;
            invalid(group, ours.shared_secret(&[&[2], &good[..half]].concat()));
            invalid(group, ours.shared_secret(&good[1..]));
            invalid(group, ours.shared_secret(&[]));
        }
    }

    #[test]
    fn every_group_agrees_and_is_reproducible() {
        for group in ALL {
            let a = group.generate(&mut TestRng(10)).unwrap();
            let b = group.generate(&mut TestRng(20)).unwrap();
            assert_eq!(a.group(), group);
            assert_eq!(a.public_key().len(), group.public_len(), "{group:?}");
            let ab = a.shared_secret(b.public_key()).unwrap();
            let ba = b.shared_secret(a.public_key()).unwrap();
            assert_eq!(ab, ba, "{group:?}");
            assert_eq!(ab.len(), group.shared_len(), "{group:?}");
            // Same seed, same key.
            let again = group.generate(&mut TestRng(10)).unwrap();
            assert_eq!(again.public_key(), a.public_key(), "{group:?}");
            assert_ne!(a.public_key(), b.public_key(), "{group:?}");
        }
    }

    fn modp_kat() -> std::collections::HashMap<&'static str, Vec<u8>> {
        include_str!("testdata/modp2048_kat.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.split_once(' ').unwrap();
                (name, hex(value))
            })
            .collect()
    }

    #[test]
    fn modp2048_known_answers() {
        let kat = modp_kat();
        let a = DhGroup::Modp2048
            .generate(&mut FixedRng(kat["x_a"].clone()))
            .unwrap();
        let b = DhGroup::Modp2048
            .generate(&mut FixedRng(kat["x_b"].clone()))
            .unwrap();
        assert_eq!(a.public_key(), kat["g_a"]);
        assert_eq!(b.public_key(), kat["g_b"]);
        assert_eq!(*a.shared_secret(&kat["g_b"]).unwrap(), kat["g_ab"]);
        assert_eq!(*b.shared_secret(&kat["g_a"]).unwrap(), kat["g_ab"]);
    }

    #[test]
    fn modp2048_rejects_out_of_range_values() {
        let ours = DhGroup::Modp2048.generate(&mut TestRng(4)).unwrap();
        let p = Modp2048Prime::PARAMS.modulus().as_ref();
        let be = |v: &U2048| v.to_be_bytes().as_ref().to_vec();
        let zero = vec![0u8; MODP_LEN];
        let one = be(&U2048::ONE);
        let p_minus_1 = be(&p.wrapping_sub(&U2048::ONE));
        let p_bytes = be(p);
        let p_plus_1 = be(&p.wrapping_add(&U2048::ONE));
        let max = vec![0xff; MODP_LEN];
        for y in [&zero, &one, &p_minus_1, &p_bytes, &p_plus_1, &max] {
            invalid(DhGroup::Modp2048, ours.shared_secret(y));
        }
        // 2 and p-2 are the ends of the valid range.
        let two = be(&U2048::from_u8(2));
        let p_minus_2 = be(&p.wrapping_sub(&U2048::from_u8(2)));
        assert!(ours.shared_secret(&two).is_ok());
        assert!(ours.shared_secret(&p_minus_2).is_ok());
        // Exact length: no stripped leading zeros, no extra byte.
        invalid(DhGroup::Modp2048, ours.shared_secret(&two[1..]));
        invalid(
            DhGroup::Modp2048,
            ours.shared_secret(&[&[0], &two[..]].concat()),
        );
    }
}
