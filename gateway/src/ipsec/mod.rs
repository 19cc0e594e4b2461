//! IPsec parameters that IKE negotiates and the datapaths apply: the mode,
//! the ESP algorithms, key material. One home, imported by `ike` (which
//! chooses and derives them), `esp` and `datapath` (which use them), so
//! neither side depends on the other.

mod integ;

use serde::{Deserialize, Serialize};

pub use integ::Integ;

/// AES block size (RFC 3602).
pub(crate) const AES_BLOCK: usize = 16;
/// The salt after an AES-GCM key in the keying material (RFC 4106 §8.1).
pub(crate) const GCM_SALT_LEN: usize = 4;
/// The explicit IV in front of AES-GCM ciphertext (RFC 4106 §3.1).
pub(crate) const GCM_IV_LEN: usize = 8;

/// Secret bytes (key material, DH results): zeroed when dropped.
pub type Secret = zeroize::Zeroizing<Vec<u8>>;

/// A source of random bytes. Production code uses [`SystemRng`]; tests pass
/// deterministic sources so that keys, IVs and nonces are reproducible.
pub trait Rng {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's cryptographically secure generator
/// (aws-lc-rs `SystemRandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRng;

impl Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        use aws_lc_rs::rand::SecureRandom as _;
        // The system generator does not fail on Linux once seeded; if it
        // ever does, continuing without randomness would be worse.
        aws_lc_rs::rand::SystemRandom::new()
            .fill(buf)
            .expect("the system random generator failed");
    }
}

/// ESP encapsulation mode (RFC 4303 section 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The inner IPv4 packet directly (strongSwan spokes without GRE).
    Tunnel,
    /// GRE between the outer addresses (FlexVPN's GRE mode).
    Transport,
}

/// ESP algorithms and keys of one direction.
#[derive(Clone, Debug)]
pub struct SaKeys {
    /// Includes the 4-byte salt for AES-GCM (RFC 4106 section 8.1).
    pub encr: Secret,
    pub integ: Secret,
}

/// An encryption algorithm with its key length, for the IKE SA and ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encr {
    /// ENCR_AES_CBC (12, RFC 3602), key of 128, 192 or 256 bits.
    AesCbc {
        /// Key length in bits (the Key Length attribute).
        key_bits: u16,
    },
    /// ENCR_AES_GCM_16 (20, RFC 4106 / RFC 5282), 16-byte ICV, key of 128,
    /// 192 or 256 bits plus a 4-byte salt.
    AesGcm16 {
        /// Key length in bits (the Key Length attribute), without the salt.
        key_bits: u16,
    },
}

impl Encr {
    /// The algorithm for this IANA transform ID and Key Length attribute.
    /// AES needs the attribute (RFC 7296 §3.3.5); 128, 192 and 256 bits are
    /// accepted.
    pub const fn from_iana(id: u16, key_length: Option<u16>) -> Option<Self> {
        let Some(key_bits) = key_length else {
            return None;
        };
        if !matches!(key_bits, 128 | 192 | 256) {
            return None;
        }
        match id {
            12 => Some(Self::AesCbc { key_bits }),
            20 => Some(Self::AesGcm16 { key_bits }),
            _ => None,
        }
    }

    /// The IANA transform ID.
    pub const fn iana(self) -> u16 {
        match self {
            Self::AesCbc { .. } => 12,
            Self::AesGcm16 { .. } => 20,
        }
    }

    /// The Key Length attribute, in bits.
    pub const fn key_bits(self) -> u16 {
        match self {
            Self::AesCbc { key_bits } | Self::AesGcm16 { key_bits } => key_bits,
        }
    }

    /// Length of the keying material taken from prf+ (SK_e, ESP keys): the
    /// AES key, and for GCM the 4-byte salt after it (RFC 5282 §7.1,
    /// RFC 4106 §8.1).
    pub const fn key_len(self) -> usize {
        match self {
            Self::AesCbc { key_bits } => key_bits as usize / 8,
            Self::AesGcm16 { key_bits } => key_bits as usize / 8 + GCM_SALT_LEN,
        }
    }

    /// Whether the algorithm is an AEAD (then no integrity transform).
    pub const fn is_aead(self) -> bool {
        matches!(self, Self::AesGcm16 { .. })
    }

    /// Length of the IV sent in front of the ciphertext.
    pub const fn iv_len(self) -> usize {
        match self {
            Self::AesCbc { .. } => AES_BLOCK,
            Self::AesGcm16 { .. } => GCM_IV_LEN,
        }
    }

    /// The block size padding aligns to (1 for GCM, RFC 5282 §3).
    pub const fn block_len(self) -> usize {
        match self {
            Self::AesCbc { .. } => AES_BLOCK,
            Self::AesGcm16 { .. } => 1,
        }
    }
}
