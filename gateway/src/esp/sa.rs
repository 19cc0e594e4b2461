//! ESP packet protection in place (RFC 4303): AES-GCM with a 16-byte ICV
//! (RFC 4106) and AES-CBC with HMAC (RFC 3602, RFC 2404, RFC 4868).
//!
//! Per packet nothing is allocated: `seal` writes header, IV, padding,
//! trailer and ICV around a payload the caller already placed in the buffer;
//! `open` checks the replay window, verifies, decrypts in place and returns
//! the inner packet as a slice of the same buffer.
//!
//! Extended sequence numbers (RFC 4303 section 2.2.1): the counter is 64
//! bits, only its low half is sent, and the high half enters the ICV: for
//! AES-GCM as part of the AAD (SPI || seq_hi || seq_lo, RFC 4106 section
//! 5), for HMAC appended to the bytes it covers (RFC 4303 section
//! 3.3.2.2). The receiver infers the high half from its replay window
//! (appendix A2.2).

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
    #[error("the sequence number space is used up; the SA must be rekeyed")]
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

/// The high 32 bits of an extended sequence number, as they enter the ICV.
fn seq_hi(seq: u64) -> [u8; 4] {
    // Truncation intended: the high half of the 64-bit counter.
    #[allow(clippy::cast_possible_truncation)]
    ((seq >> 32) as u32).to_be_bytes()
}

/// The AES-GCM AAD (RFC 4106 section 5): SPI and the 32-bit sequence
/// number, or with ESN SPI, high and low halves; returned with its length.
fn gcm_aad(header: &[u8], seq: u64, esn: bool) -> ([u8; 12], usize) {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&header[..4]);
    if esn {
        aad[4..8].copy_from_slice(&seq_hi(seq));
        aad[8..12].copy_from_slice(&header[4..8]);
        (aad, 12)
    } else {
        aad[4..8].copy_from_slice(&header[4..8]);
        (aad, 8)
    }
}

/// Our outbound half of a CHILD_SA. Shared by the datapath workers: the
/// sequence number is an atomic counter, so sealing takes `&self`.
pub struct OutboundSa {
    spi: u32,
    cipher: EspCipher,
    /// Last sequence number handed out; the first packet carries 1. It
    /// stops at the last one allowed (`limit`), so it never wraps.
    seq: AtomicU64,
    /// Extended (64-bit) sequence numbers were negotiated.
    esn: bool,
}

impl OutboundSa {
    /// Without ESN; see [`OutboundSa::with_esn`].
    pub fn new(spi: u32, cipher: EspCipher) -> Self {
        OutboundSa {
            spi,
            cipher,
            seq: AtomicU64::new(0),
            esn: false,
        }
    }

    /// With extended sequence numbers (RFC 4303 section 2.2.1) if `esn`.
    #[must_use]
    pub fn with_esn(mut self, esn: bool) -> Self {
        self.esn = esn;
        self
    }

    /// The first packet carries sequence number `next` instead of 1 (at
    /// least 1). Only for a fresh SA: sequence numbers must never repeat
    /// under a key, so this consumes the SA before any packet was sealed.
    /// Tests use it to cross the 2^32 boundary without 2^32 packets.
    #[must_use]
    pub fn starting_at(self, next: u64) -> Self {
        self.seq.store(next.max(1) - 1, Ordering::Relaxed);
        self
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn esn(&self) -> bool {
        self.esn
    }

    /// The last sequence number handed out (0: none yet); once the space
    /// is used up it stays at [`OutboundSa::limit`].
    pub fn sequence(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// The last sequence number this SA may send: 2^32 - 1, or with ESN
    /// 2^64 - 1 (RFC 4303 section 3.3.3: the counter must not cycle).
    pub fn limit(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
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
        // The counter must not cycle (RFC 4303 section 3.3.3): it stops at
        // the limit and every later call fails. A compare-and-swap loop,
        // not a lock: workers sealing for the same SA retry, never wait.
        let limit = self.limit();
        let seq = self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                s.checked_add(1).filter(|n| *n <= limit)
            })
            .map_err(|_| EspError::SequenceExhausted)?
            + 1;
        buf[..4].copy_from_slice(&self.spi.to_be_bytes());
        // Only the low half is sent (RFC 4303 section 2.2.1).
        #[allow(clippy::cast_possible_truncation)]
        buf[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
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
                // The 64-bit counter is the IV: unique per key (RFC 4106
                // section 3.1), with or without ESN.
                let iv = seq.to_be_bytes();
                buf[ESP_HEADER_LEN..start].copy_from_slice(&iv);
                let (aad, aad_len) = gcm_aad(buf, seq, self.esn);
                let (_, rest) = buf.split_at_mut(start);
                let (body, tail) = rest.split_at_mut(padded);
                let tag = key
                    .seal_in_place_separate_tag(
                        gcm_nonce(*salt, iv),
                        Aad::from(&aad[..aad_len]),
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
                // With ESN the high half is appended to what the ICV
                // covers, but not sent (RFC 4303 section 3.3.2.2).
                let hi = seq_hi(seq);
                let extra: &[u8] = if self.esn { &hi } else { &[] };
                let tag = icv(integ, &[&buf[..start + padded], extra]);
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
    esn: bool,
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
            esn: false,
        }
    }

    /// With extended sequence numbers (RFC 4303 section 2.2.1) if `esn`.
    #[must_use]
    pub fn with_esn(mut self, esn: bool) -> Self {
        self.esn = esn;
        self
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The highest sequence number accepted so far (0: none).
    pub fn highest(&self) -> u64 {
        self.replay.highest()
    }

    /// Treats everything up to `seq` as received (see
    /// [`ReplayWindow::fast_forward`]): when another receiver of the same
    /// SA got that far already.
    pub fn catch_up(&mut self, seq: u64) {
        self.replay.fast_forward(seq);
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
        let seq_lo = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let seq = if self.esn {
            self.replay.infer(seq_lo)
        } else {
            u64::from(seq_lo)
        };
        // Cheap check first: a replay costs no crypto (section 3.4.3).
        self.replay.check(seq)?;
        let body_end = packet.len() - icv_len;
        let plain_len = match &self.cipher.protection {
            Protection::Gcm { key, salt } => {
                let (aad, aad_len) = gcm_aad(packet, seq, self.esn);
                let (head, rest) = packet.split_at_mut(start);
                let iv: [u8; GCM_IV_LEN] = head[ESP_HEADER_LEN..]
                    .try_into()
                    .map_err(|_| EspError::Truncated)?;
                let plain = key
                    .open_in_place(gcm_nonce(*salt, iv), Aad::from(&aad[..aad_len]), rest)
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
                // The inferred high half enters the ICV (RFC 4303 section
                // 3.3.2.2): a wrong guess fails here (appendix A2.2).
                let hi = seq_hi(seq);
                let extra: &[u8] = if self.esn { &hi } else { &[] };
                let tag = icv(integ, &[&packet[..body_end], extra]);
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
        let out = OutboundSa::new(9, EspCipher::new(encr, integ, &ek, &ik).unwrap())
            .starting_at(u64::from(u32::MAX));
        let mut buf = vec![0u8; 64];
        assert!(out.seal(&mut buf, 4, 4, &mut Counter(0)).is_ok());
        assert_eq!(&buf[4..8], &[0xff; 4], "2^32 - 1 is the last one sent");
        for _ in 0..3 {
            assert_eq!(
                out.seal(&mut buf, 4, 4, &mut Counter(0)),
                Err(EspError::SequenceExhausted)
            );
        }
        assert_eq!(out.sequence(), out.limit(), "the counter stays at the end");
    }

    #[test]
    fn with_esn_the_64_bit_space_ends_in_an_error_not_a_wrap() {
        let (encr, integ, ek, ik) = pairs().remove(0);
        let out = OutboundSa::new(9, EspCipher::new(encr, integ, &ek, &ik).unwrap())
            .with_esn(true)
            .starting_at(u64::MAX - 1);
        let mut buf = vec![0u8; 64];
        assert!(out.seal(&mut buf, 4, 4, &mut Counter(0)).is_ok());
        assert!(out.seal(&mut buf, 4, 4, &mut Counter(0)).is_ok());
        assert_eq!(
            out.seal(&mut buf, 4, 4, &mut Counter(0)),
            Err(EspError::SequenceExhausted)
        );
        assert_eq!(out.sequence(), u64::MAX);
    }

    /// Seals a `size`-byte payload with `out`; the ESP packet.
    fn seal_one(out: &OutboundSa, size: usize) -> Vec<u8> {
        let at = out.cipher().payload_offset();
        let mut buf = vec![0u8; at + size + out.cipher().overhead_after(size)];
        for (i, b) in buf[at..at + size].iter_mut().enumerate() {
            *b = u8::try_from(i % 256).unwrap();
        }
        let n = out.seal(&mut buf, size, 4, &mut Counter(1)).unwrap();
        buf.truncate(n);
        buf
    }

    /// An SA started just below 2^32 carries traffic across the boundary
    /// with ESN, every cipher: the wire carries the low half (which wraps
    /// to 0), the receiver infers the high half, and packets from before
    /// the boundary that arrive late are still accepted once.
    #[test]
    fn esn_carries_traffic_across_2_32_for_every_cipher() {
        let start = (1u64 << 32) - 3;
        for (encr, integ, ek, ik) in pairs() {
            let out = OutboundSa::new(0x77, EspCipher::new(encr, integ, &ek, &ik).unwrap())
                .with_esn(true)
                .starting_at(start);
            let mut inb =
                InboundSa::new(0x77, EspCipher::new(encr, integ, &ek, &ik).unwrap()).with_esn(true);
            let packets: Vec<Vec<u8>> = (0..8).map(|_| seal_one(&out, 40)).collect();
            // Hold the one sealed at 2^32 - 2 back: it comes after the wrap.
            let late = packets[1].clone();
            for (i, p) in packets.iter().enumerate() {
                if i == 1 {
                    continue;
                }
                let seq = start + i as u64;
                #[allow(clippy::cast_possible_truncation)]
                let low = (seq as u32).to_be_bytes();
                assert_eq!(&p[4..8], &low, "{encr:?}: the low half on the wire");
                let mut copy = p.clone();
                let opened = inb.open(&mut copy).unwrap();
                assert_eq!(opened.seq, seq, "{encr:?} {integ:?}");
                assert_eq!(opened.payload.len(), 40);
            }
            assert_eq!(inb.highest(), start + 7);
            let mut copy = late.clone();
            let opened = inb.open(&mut copy).unwrap();
            assert_eq!(opened.seq, (1 << 32) - 2, "{encr:?}: late, from below 2^32");
            // Replays from either side of the boundary are refused.
            assert_eq!(
                inb.open(&mut late.clone()),
                Err(EspError::Replay(ReplayError::Replayed((1 << 32) - 2)))
            );
            assert_eq!(
                inb.open(&mut packets[3].clone()),
                Err(EspError::Replay(ReplayError::Replayed(1 << 32)))
            );
        }
    }

    /// The high half enters the ICV exactly as the RFCs place it, checked
    /// against the primitives directly: AES-GCM's AAD is SPI || seq_hi ||
    /// seq_lo (RFC 4106 section 5), HMAC covers the packet then seq_hi
    /// (RFC 4303 section 3.3.2.2). A receiver without ESN, or one whose
    /// window points at the wrong 2^32 subspace, fails the ICV.
    #[test]
    fn the_esn_high_half_enters_the_icv_where_the_rfcs_put_it() {
        let seq = (5u64 << 32) | 7;
        for (encr, integ, ek, ik) in pairs() {
            let out = OutboundSa::new(0x0102_0304, EspCipher::new(encr, integ, &ek, &ik).unwrap())
                .with_esn(true)
                .starting_at(seq);
            let packet = seal_one(&out, 33);
            assert_eq!(&packet[..8], &[1, 2, 3, 4, 0, 0, 0, 7]);
            let key_len = usize::from(encr.key_bits() / 8);
            match integ {
                None => {
                    let alg = if key_len == 16 {
                        &aws_lc_rs::aead::AES_128_GCM
                    } else {
                        &aws_lc_rs::aead::AES_256_GCM
                    };
                    let key = LessSafeKey::new(UnboundKey::new(alg, &ek[..key_len]).unwrap());
                    let mut nonce = [0u8; 12];
                    nonce[..4].copy_from_slice(&ek[key_len..]);
                    nonce[4..].copy_from_slice(&packet[8..16]);
                    assert_eq!(&packet[8..16], &seq.to_be_bytes(), "IV = 64-bit counter");
                    let aad = [1, 2, 3, 4, 0, 0, 0, 5, 0, 0, 0, 7];
                    let mut body = packet[16..].to_vec();
                    assert!(
                        key.open_in_place(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(aad),
                            &mut body
                        )
                        .is_ok()
                    );
                }
                Some(integ) => {
                    let alg = match integ {
                        Integ::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                        Integ::HmacSha256_128 => hmac::HMAC_SHA256,
                        Integ::HmacSha384_192 => hmac::HMAC_SHA384,
                        Integ::HmacSha512_256 => hmac::HMAC_SHA512,
                    };
                    let body_end = packet.len() - integ.icv_len();
                    let mut covered = packet[..body_end].to_vec();
                    covered.extend_from_slice(&[0, 0, 0, 5]);
                    let tag = hmac::sign(&hmac::Key::new(alg, &ik), &covered);
                    assert_eq!(&tag.as_ref()[..integ.icv_len()], &packet[body_end..]);
                }
            }
            let plain = InboundSa::new(0x0102_0304, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            let mut copy = packet.clone();
            assert_eq!(
                { plain }.open(&mut copy),
                Err(EspError::Integrity),
                "{encr:?}: without ESN the high half is missing"
            );
            // A fresh ESN receiver infers subspace 0: wrong, refused.
            let mut fresh =
                InboundSa::new(0x0102_0304, EspCipher::new(encr, integ, &ek, &ik).unwrap())
                    .with_esn(true);
            assert_eq!(fresh.open(&mut packet.clone()), Err(EspError::Integrity));
            assert_eq!(fresh.highest(), 0, "a failed ICV does not move the window");
            // Caught up to where the sender is, it opens.
            fresh.catch_up(seq - 1);
            assert_eq!(fresh.open(&mut packet.clone()).unwrap().seq, seq);
        }
    }
}
