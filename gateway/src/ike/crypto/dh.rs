//! Diffie-Hellman groups (IKEv2 transform type 4) and the KE payload
//! encodings: RFC 7296 §3.4, RFC 3526 (MODP), RFC 5903 (ECP), RFC 8031
//! (Curve25519).

use std::fmt;

use aws_lc_rs::agreement;
use crypto_bigint::modular::{ConstMontyForm, ConstMontyParams};
use crypto_bigint::{U512, U2048, const_monty_params};
use zeroize::Zeroizing;

use super::{CryptoError, Rng, Secret};

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
            Self::Ecp256 => 32,
            Self::Ecp384 => 48,
            Self::Ecp521 => 66,
            Self::Curve25519 => 32,
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
            if let Some(private) = self.from_private_bytes(&mut bytes) {
                return Ok(private);
            }
        }
        Err(CryptoError::Backend(
            "no valid Diffie-Hellman private key after repeated draws",
        ))
    }

    /// A private key from raw bytes, or `None` if they are not a valid
    /// private value for the group.
    fn from_private_bytes(self, bytes: &mut [u8]) -> Option<DhPrivate> {
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
