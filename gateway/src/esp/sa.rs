//! ESP packet protection in place (RFC 4303): AES-GCM with a 16-byte ICV
//! (RFC 4106) and AES-CBC with HMAC (RFC 3602, RFC 2404, RFC 4868).
//!
//! Per packet nothing is allocated: `seal` writes header, IV, padding,
//! trailer and ICV around a payload the caller already placed in the buffer;
//! `open` checks the replay window, verifies, decrypts in place and returns
//! the inner packet as a slice of the same buffer.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::{
    aead::{Aad, LessSafeKey, Nonce, UnboundKey},
    cipher::{
        DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
    },
    constant_time, hmac,
    iv::FixedLength,
};

use crate::{
    esp::replay::{ReplayError, ReplayWindow},
    ipsec::{Encr, Integ, Rng},
};

/// SPI and sequence number (RFC 4303 section 2).
pub const ESP_HEADER_LEN: usize = 8;
const GCM_IV_LEN: usize = 8;
const GCM_SALT_LEN: usize = 4;
const GCM_ICV_LEN: usize = 16;
const AES_BLOCK: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    #[error("packet too short for ESP with this SA")]
    Truncated,
    #[error("SPI {0:#010x} is not this SA's")]
    WrongSpi(u32),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("integrity check failed")]
    Integrity,
    #[error("bad padding or trailer")]
    Trailer,
    #[error("ciphertext is not a whole number of blocks")]
    NotBlockAligned,
    #[error("the buffer has no room for the trailer and ICV")]
    NoRoom,
    #[error("the 32-bit sequence number space is used up; the SA must be rekeyed")]
    SequenceExhausted,
    #[error("key of {got} bytes for {what}")]
    KeyLength { what: &'static str, got: usize },
}

enum Protection {
    Gcm {
        key: LessSafeKey,
        salt: [u8; GCM_SALT_LEN],
    },
    /// Boxed: the CBC keys are much larger than the GCM ones.
    Cbc(Box<Cbc>),
}

struct Cbc {
    encrypt: EncryptingKey,
    decrypt: DecryptingKey,
    integ: hmac::Key,
    icv_len: usize,
}

/// The keys and algorithms of one direction of a CHILD_SA.
pub struct EspCipher {
    protection: Protection,
}

impl EspCipher {
    /// `encr_key` includes the 4-byte salt for AES-GCM (RFC 4106 section 8.1),
    /// as the IKE KEYMAT split hands it out.
    pub fn new(
        encr: Encr,
        integ: Option<Integ>,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<Self, EspError> {
        let key_len = usize::from(encr.key_bits() / 8);
        let protection = match encr {
            Encr::AesGcm16 { .. } => {
                if encr_key.len() != key_len + GCM_SALT_LEN {
                    return Err(EspError::KeyLength {
                        what: "AES-GCM (with salt)",
                        got: encr_key.len(),
                    });
                }
                let alg = match key_len {
                    16 => &aws_lc_rs::aead::AES_128_GCM,
                    24 => &aws_lc_rs::aead::AES_192_GCM,
                    _ => &aws_lc_rs::aead::AES_256_GCM,
                };
                let key = UnboundKey::new(alg, &encr_key[..key_len]).map_err(|_| {
                    EspError::KeyLength {
                        what: "AES-GCM",
                        got: key_len,
                    }
                })?;
                let mut salt = [0u8; GCM_SALT_LEN];
                salt.copy_from_slice(&encr_key[key_len..]);
                Protection::Gcm {
                    key: LessSafeKey::new(key),
                    salt,
                }
            }
            Encr::AesCbc { .. } => {
                let alg = match key_len {
                    16 => &aws_lc_rs::cipher::AES_128,
                    24 => &aws_lc_rs::cipher::AES_192,
                    _ => &aws_lc_rs::cipher::AES_256,
                };
                let unbound = || {
                    UnboundCipherKey::new(alg, encr_key).map_err(|_| EspError::KeyLength {
                        what: "AES-CBC",
                        got: encr_key.len(),
                    })
                };
                let integ = integ.ok_or(EspError::KeyLength {
                    what: "HMAC (missing)",
                    got: 0,
                })?;
                let hmac_alg = match integ {
                    Integ::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                    Integ::HmacSha256_128 => hmac::HMAC_SHA256,
                    Integ::HmacSha384_192 => hmac::HMAC_SHA384,
                    Integ::HmacSha512_256 => hmac::HMAC_SHA512,
                };
                if integ_key.len() != integ.key_len() {
                    return Err(EspError::KeyLength {
                        what: "HMAC",
                        got: integ_key.len(),
                    });
                }
                Protection::Cbc(Box::new(Cbc {
                    encrypt: EncryptingKey::cbc(unbound()?).map_err(|_| EspError::KeyLength {
                        what: "AES-CBC",
                        got: encr_key.len(),
                    })?,
                    decrypt: DecryptingKey::cbc(unbound()?).map_err(|_| EspError::KeyLength {
                        what: "AES-CBC",
                        got: encr_key.len(),
                    })?,
                    integ: hmac::Key::new(hmac_alg, integ_key),
                    icv_len: integ.icv_len(),
                }))
            }
        };
        Ok(EspCipher { protection })
    }

    fn iv_len(&self) -> usize {
        match self.protection {
            Protection::Gcm { .. } => GCM_IV_LEN,
            Protection::Cbc(_) => AES_BLOCK,
        }
    }

    fn icv_len(&self) -> usize {
        match self.protection {
            Protection::Gcm { .. } => GCM_ICV_LEN,
            Protection::Cbc(ref cbc) => cbc.icv_len,
        }
    }

    /// Payload + trailer is padded to this (RFC 4303 section 2.4).
    fn block(&self) -> usize {
        match self.protection {
            Protection::Gcm { .. } => 4,
            Protection::Cbc(_) => AES_BLOCK,
        }
    }

    /// Where the caller puts the payload before `seal`.
    pub fn payload_offset(&self) -> usize {
        ESP_HEADER_LEN + self.iv_len()
    }

    /// Bytes `seal` adds after a payload of `payload_len` bytes.
    pub fn overhead_after(&self, payload_len: usize) -> usize {
        let unpadded = payload_len + 2;
        let padded = unpadded.div_ceil(self.block()) * self.block();
        padded - payload_len + self.icv_len()
    }
}

/// Truncated HMAC over `parts`, without allocating.
fn icv(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign()
}

/// Our outbound half of a CHILD_SA. Shared by the datapath workers: the
/// sequence number is an atomic counter, so sealing takes `&self`.
pub struct OutboundSa {
    spi: u32,
    cipher: EspCipher,
    /// Last sequence number handed out; the first packet carries 1.
    seq: AtomicU64,
}

impl OutboundSa {
    pub fn new(spi: u32, cipher: EspCipher) -> Self {
        OutboundSa {
            spi,
            cipher,
            seq: AtomicU64::new(0),
        }
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Sequence numbers used so far (packets sealed, plus any refused for
    /// exhaustion).
    pub fn sequence(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    pub fn cipher(&self) -> &EspCipher {
        &self.cipher
    }

    /// Protects the `payload_len` bytes at `payload_offset()` in `buf`;
    /// returns the ESP packet's length (from `buf[0]`). `rng` supplies the
    /// AES-CBC IV (it must be unpredictable); AES-GCM uses the sequence
    /// number as its IV (unique per key, RFC 4106 section 3.1).
    pub fn seal(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        next_header: u8,
        rng: &mut dyn Rng,
    ) -> Result<usize, EspError> {
        let start = self.cipher.payload_offset();
        let unpadded = payload_len + 2;
        let padded = unpadded.div_ceil(self.cipher.block()) * self.cipher.block();
        let total = start + padded + self.cipher.icv_len();
        if buf.len() < total {
            return Err(EspError::NoRoom);
        }
        // Without ESN the 32-bit counter must not wrap (RFC 4303 section
        // 3.3.3); once past it, every later call fails too.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let seq32 = u32::try_from(seq).map_err(|_| EspError::SequenceExhausted)?;
        buf[..4].copy_from_slice(&self.spi.to_be_bytes());
        buf[4..8].copy_from_slice(&seq32.to_be_bytes());
        // Padding 1, 2, 3 ... (RFC 4303 section 2.4), pad length, next header.
        let pad_len = padded - unpadded;
        for (i, b) in buf[start + payload_len..start + payload_len + pad_len]
            .iter_mut()
            .enumerate()
        {
            *b = u8::try_from(i + 1).unwrap_or(0);
        }
        buf[start + padded - 2] = u8::try_from(pad_len).map_err(|_| EspError::Trailer)?;
        buf[start + padded - 1] = next_header;
        match &self.cipher.protection {
            Protection::Gcm { key, salt } => {
                let iv = seq.to_be_bytes();
                buf[ESP_HEADER_LEN..start].copy_from_slice(&iv);
                let (head, rest) = buf.split_at_mut(start);
                let (body, tail) = rest.split_at_mut(padded);
                let tag = key
                    .seal_in_place_separate_tag(
                        gcm_nonce(*salt, iv),
                        Aad::from(&head[..ESP_HEADER_LEN]),
                        body,
                    )
                    .map_err(|_| EspError::Integrity)?;
                tail[..GCM_ICV_LEN].copy_from_slice(tag.as_ref());
            }
            Protection::Cbc(cbc) => {
                let Cbc {
                    encrypt,
                    integ,
                    icv_len,
                    ..
                } = &**cbc;
                let mut iv = [0u8; AES_BLOCK];
                rng.fill(&mut iv);
                buf[ESP_HEADER_LEN..start].copy_from_slice(&iv);
                encrypt
                    .less_safe_encrypt(
                        &mut buf[start..start + padded],
                        EncryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .map_err(|_| EspError::NotBlockAligned)?;
                let tag = icv(integ, &[&buf[..start + padded]]);
                buf[start + padded..total].copy_from_slice(&tag.as_ref()[..*icv_len]);
            }
        }
        Ok(total)
    }
}

/// Our inbound half of a CHILD_SA.
pub struct InboundSa {
    spi: u32,
    cipher: EspCipher,
    replay: ReplayWindow,
}

/// A verified, decrypted ESP packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub seq: u64,
    /// RFC 4303 next header: 4 = IPv4 (tunnel mode), 47 = GRE (transport).
    pub next_header: u8,
    pub payload: &'a [u8],
}

impl InboundSa {
    pub fn new(spi: u32, cipher: EspCipher) -> Self {
        InboundSa {
            spi,
            cipher,
            replay: ReplayWindow::new(),
        }
    }

    /// Checks, verifies and decrypts `packet` (SPI onwards) in place.
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<Opened<'a>, EspError> {
        let start = self.cipher.payload_offset();
        let icv_len = self.cipher.icv_len();
        if packet.len() < start + self.cipher.block() + icv_len {
            return Err(EspError::Truncated);
        }
        let spi = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        if spi != self.spi {
            return Err(EspError::WrongSpi(spi));
        }
        let seq = u64::from(u32::from_be_bytes([
            packet[4], packet[5], packet[6], packet[7],
        ]));
        // Cheap check first: a replay costs no crypto (section 3.4.3).
        self.replay.check(seq)?;
        let body_end = packet.len() - icv_len;
        let plain_len = match &self.cipher.protection {
            Protection::Gcm { key, salt } => {
                let (head, rest) = packet.split_at_mut(start);
                let iv: [u8; GCM_IV_LEN] = head[ESP_HEADER_LEN..]
                    .try_into()
                    .map_err(|_| EspError::Truncated)?;
                let plain = key
                    .open_in_place(
                        gcm_nonce(*salt, iv),
                        Aad::from(&head[..ESP_HEADER_LEN]),
                        rest,
                    )
                    .map_err(|_| EspError::Integrity)?;
                plain.len()
            }
            Protection::Cbc(cbc) => {
                let Cbc {
                    decrypt,
                    integ,
                    icv_len,
                    ..
                } = &**cbc;
                let tag = icv(integ, &[&packet[..body_end]]);
                constant_time::verify_slices_are_equal(
                    &tag.as_ref()[..*icv_len],
                    &packet[body_end..],
                )
                .map_err(|_| EspError::Integrity)?;
                if !(body_end - start).is_multiple_of(AES_BLOCK) {
                    return Err(EspError::NotBlockAligned);
                }
                let mut iv = [0u8; AES_BLOCK];
                iv.copy_from_slice(&packet[ESP_HEADER_LEN..start]);
                decrypt
                    .decrypt(
                        &mut packet[start..body_end],
                        DecryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .map_err(|_| EspError::Integrity)?;
                body_end - start
            }
        };
        let plain = &packet[start..start + plain_len];
        let next_header = plain[plain_len - 1];
        let pad_len = usize::from(plain[plain_len - 2]);
        if pad_len + 2 > plain_len {
            return Err(EspError::Trailer);
        }
        let payload_len = plain_len - 2 - pad_len;
        // Default padding is 1, 2, 3 ... (section 2.4): anything else is
        // a broken or hostile sender.
        if plain[payload_len..payload_len + pad_len]
            .iter()
            .enumerate()
            .any(|(i, b)| usize::from(*b) != i + 1)
        {
            return Err(EspError::Trailer);
        }
        // Only now, with integrity verified, may the window move.
        self.replay.mark(seq);
        Ok(Opened {
            seq,
            next_header,
            payload: &packet[start..start + payload_len],
        })
    }
}

fn gcm_nonce(salt: [u8; GCM_SALT_LEN], iv: [u8; GCM_IV_LEN]) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[..GCM_SALT_LEN].copy_from_slice(&salt);
    nonce[GCM_SALT_LEN..].copy_from_slice(&iv);
    Nonce::assume_unique_for_key(nonce)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const GCM256: Encr = Encr::AesGcm16 { key_bits: 256 };

    struct Counter(u8);
    impl Rng for Counter {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    /// strongSwan's packets from the captured exchange (aes256gcm16, the
    /// keys from its log) open to the pings they carried, once each; a
    /// forged copy neither opens nor moves the window.
    #[test]
    fn captured_strongswan_esp_opens_and_replays_and_forgeries_are_refused() {
        let key_i = hex("b5e5e95518c55dadf902c7b6bb09a6b7a7f9289d0b35a6435001f62a08d91b000fd35bf1");
        let key_r = hex("4fb0025d36e72224ea3ca053d424538896a5c0e9b89b74a9786dc878bfd45d24f2c7ee90");
        for (text, key) in [
            (
                include_str!("../ike/crypto/testdata/esp_initiator_to_responder.hex"),
                key_i,
            ),
            (
                include_str!("../ike/crypto/testdata/esp_responder_to_initiator.hex"),
                key_r,
            ),
        ] {
            let packet = hex(text);
            let spi = u32::from_be_bytes(packet[..4].try_into().unwrap());
            let mut sa = InboundSa::new(spi, EspCipher::new(GCM256, None, &key, &[]).unwrap());
            let mut forged = packet.clone();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            assert_eq!(sa.open(&mut forged), Err(EspError::Integrity));
            let mut buf = packet.clone();
            let opened = sa.open(&mut buf).unwrap();
            assert_eq!(
                (opened.seq, opened.next_header),
                (1, 4),
                "IPv4 inside, tunnel mode"
            );
            assert_eq!(
                (opened.payload[0], opened.payload[9]),
                (0x45, 1),
                "an ICMP packet"
            );
            let mut again = packet;
            assert_eq!(
                sa.open(&mut again),
                Err(EspError::Replay(ReplayError::Replayed(1)))
            );
        }
    }

    type Keys = (Encr, Option<Integ>, Vec<u8>, Vec<u8>);

    fn pairs() -> Vec<Keys> {
        let mut v = Vec::new();
        for bits in [128u16, 256] {
            let k = vec![7u8; usize::from(bits / 8) + GCM_SALT_LEN];
            v.push((Encr::AesGcm16 { key_bits: bits }, None, k, vec![]));
            for integ in [
                Integ::HmacSha1_96,
                Integ::HmacSha256_128,
                Integ::HmacSha384_192,
                Integ::HmacSha512_256,
            ] {
                v.push((
                    Encr::AesCbc { key_bits: bits },
                    Some(integ),
                    vec![9u8; usize::from(bits / 8)],
                    vec![5u8; integ.key_len()],
                ));
            }
        }
        v
    }

    #[test]
    fn seal_then_open_for_every_cipher_and_size_in_place() {
        for (encr, integ, ek, ik) in pairs() {
            let out = OutboundSa::new(0x1234_5678, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            let mut inb =
                InboundSa::new(0x1234_5678, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            for (n, size) in [0usize, 1, 63, 64, 512, 1400].into_iter().enumerate() {
                let payload: Vec<u8> = (0..size)
                    .map(|i| u8::try_from(i * 7 % 251).unwrap())
                    .collect();
                let at = out.cipher().payload_offset();
                let mut buf = vec![0xa5u8; at + size + out.cipher().overhead_after(size)];
                buf[at..at + size].copy_from_slice(&payload);
                let len = out.seal(&mut buf, size, 47, &mut Counter(0)).unwrap();
                assert_eq!(len, buf.len(), "{encr:?}: overhead_after is exact");
                assert!(
                    size < 16 || buf[at..at + size] != payload[..],
                    "{encr:?}: encrypted"
                );
                let opened = inb.open(&mut buf[..len]).unwrap();
                assert_eq!(opened.seq, n as u64 + 1);
                assert_eq!(opened.next_header, 47);
                assert_eq!(
                    opened.payload,
                    &payload[..],
                    "{encr:?} {integ:?} size {size}"
                );
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        for (encr, integ, ek, ik) in pairs() {
            let out = OutboundSa::new(42, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            let at = out.cipher().payload_offset();
            let mut sealed = vec![0u8; at + 40 + out.cipher().overhead_after(40)];
            let len = out.seal(&mut sealed, 40, 4, &mut Counter(3)).unwrap();
            for byte in 0..len {
                let mut copy = sealed[..len].to_vec();
                copy[byte] ^= 0x10;
                let mut inb = InboundSa::new(42, EspCipher::new(encr, integ, &ek, &ik).unwrap());
                assert!(
                    inb.open(&mut copy).is_err(),
                    "{encr:?} {integ:?}: flip in byte {byte} accepted"
                );
            }
        }
    }

    #[test]
    fn short_buffers_and_packets_are_errors_not_panics() {
        let (encr, integ, ek, ik) = pairs().remove(1);
        let out = OutboundSa::new(9, EspCipher::new(encr, integ, &ek, &ik).unwrap());
        let mut small = vec![0u8; 20];
        assert_eq!(
            out.seal(&mut small, 10, 4, &mut Counter(0)),
            Err(EspError::NoRoom)
        );
        let mut inb = InboundSa::new(9, EspCipher::new(encr, integ, &ek, &ik).unwrap());
        for len in 0..48 {
            let mut junk = vec![0u8; len];
            junk[..len.min(4)].copy_from_slice(&9u32.to_be_bytes()[..len.min(4)]);
            assert!(inb.open(&mut junk).is_err());
        }
    }

    #[test]
    fn the_32_bit_sequence_space_ends_in_an_error_not_a_wrap() {
        let (encr, integ, ek, ik) = pairs().remove(0);
        let mut out = OutboundSa::new(9, EspCipher::new(encr, integ, &ek, &ik).unwrap());
        out.seq = AtomicU64::new(u64::from(u32::MAX) - 1);
        let mut buf = vec![0u8; 64];
        assert!(out.seal(&mut buf, 4, 4, &mut Counter(0)).is_ok());
        assert_eq!(
            out.seal(&mut buf, 4, 4, &mut Counter(0)),
            Err(EspError::SequenceExhausted)
        );
    }
}
