//! IKEv2 cryptography: Diffie-Hellman (`dh`), the PRFs (`prf`), SK payload
//! protection (`cipher`), the key schedules of the IKE SA and of CHILD_SAs
//! (`keys`) and pre-shared-key AUTH (`auth`). The algorithm descriptors
//! shared with ESP (`Encr`, `Integ`, `Secret`) live in `crate::ipsec`.
//!
//! This module does no I/O and holds no sockets. Randomness comes in through
//! the [`crate::ipsec::Rng`] trait so that tests are deterministic;
//! [`crate::ipsec::SystemRng`] is the production source. Secrets (DH results, key material) are held in
//! [`crate::ipsec::Secret`], which zeroes its bytes on drop.
//!
//! Algorithms come from aws-lc-rs (ECDH P-256/384/521, X25519, AES, HMAC);
//! MODP-2048 (group 14), which aws-lc-rs lacks, is done with crypto-bigint's
//! constant-time Montgomery exponentiation.

mod auth;
mod cipher;
mod dh;
mod keys;
mod prf;

#[cfg(test)]
mod tests;

pub use auth::{psk_auth, psk_auth_verify, signed_octets};
pub use cipher::SkCipher;
pub use dh::{DhGroup, DhPrivate};
pub use keys::{ChildKeys, IkeKeys, child_keymat};
pub use prf::Prf;

/// SHA-1, for the NAT detection hashes only (RFC 7296 section 2.23 fixes
/// the algorithm; it is not used for any security property here).
pub fn sha1(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

/// Errors of the IKEv2 cryptography. None of them carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The peer's KE data is not a valid public value for the group (wrong
    /// length, not on the curve, out of range, or a degenerate result).
    #[error("invalid {group:?} public value from the peer: {reason}")]
    InvalidPeerPublic {
        /// The group of the key exchange.
        group: DhGroup,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The ICV (or the AEAD tag) did not verify: the message was altered or
    /// was protected with other keys.
    #[error("integrity check failed")]
    Integrity,
    /// The encrypted body is too short or not a whole number of blocks.
    #[error("malformed encrypted payload: {0}")]
    Malformed(&'static str),
    /// The decrypted padding is inconsistent (pad length beyond the data).
    #[error("invalid padding in the encrypted payload")]
    Padding,
    /// A key has the wrong length for its algorithm.
    #[error("{what}: expected a {expected}-byte key, got {got} bytes")]
    KeyLength {
        /// Which key.
        what: &'static str,
        /// The length the algorithm needs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A combination of transforms that IKEv2 or this implementation does
    /// not allow (e.g. AES-CBC without integrity, AEAD with integrity).
    #[error("unsupported transform combination: {0}")]
    Unsupported(&'static str),
    /// The cryptographic backend failed where it should not (e.g. no valid
    /// private scalar could be drawn from the random source).
    #[error("cryptographic backend failure: {0}")]
    Backend(&'static str),
}
