//! Test helpers, and the captured strongSwan exchange (`testdata/`): key
//! schedule, SK payloads, AUTH and CHILD_SA keys checked against a real peer.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::{ChildKeys, IkeKeys, Prf, child_keymat, psk_auth, psk_auth_verify, signed_octets};
use crate::ipsec::Rng;
use crate::ipsec::{Encr, Integ};

/// Decode hex (whitespace ignored).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// A deterministic generator (splitmix64) for reproducible tests.
pub(crate) struct TestRng(pub u64);

impl Rng for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

/// Hands out the given bytes in order; panics when they run out.
pub(crate) struct FixedRng(pub Vec<u8>);

impl Rng for FixedRng {
    fn fill(&mut self, buf: &mut [u8]) {
        assert!(self.0.len() >= buf.len(), "FixedRng ran out of bytes");
        let rest = self.0.split_off(buf.len());
        buf.copy_from_slice(&self.0);
        self.0 = rest;
    }
}

// ---------------------------------------------------------------------------
// The captured exchange.

const INIT_REQUEST: &str = include_str!("testdata/ike_sa_init_request.hex");
const INIT_RESPONSE: &str = include_str!("testdata/ike_sa_init_response.hex");
const AUTH_REQUEST: &str = include_str!("testdata/ike_auth_request.hex");
const AUTH_RESPONSE: &str = include_str!("testdata/ike_auth_response.hex");
const ESP_I2R: &str = include_str!("testdata/esp_initiator_to_responder.hex");
const ESP_R2I: &str = include_str!("testdata/esp_responder_to_initiator.hex");
const LOG_VALUES: &str = include_str!("testdata/strongswan_log_values.txt");

const PSK: &[u8] = b"test-psk-0123456789";
const PRF: Prf = Prf::HmacSha256;
const ENCR: Encr = Encr::AesCbc { key_bits: 256 };
const INTEG: Integ = Integ::HmacSha256_128;

const IKE_HEADER_LEN: usize = 28;
const PAYLOAD_KE: u8 = 34;
const PAYLOAD_IDI: u8 = 35;
const PAYLOAD_IDR: u8 = 36;
const PAYLOAD_AUTH: u8 = 39;
const PAYLOAD_NONCE: u8 = 40;
const PAYLOAD_SK: u8 = 46;

fn log_values() -> HashMap<&'static str, Vec<u8>> {
    LOG_VALUES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap();
            (name, hex(value))
        })
        .collect()
}

/// A minimal walk over a chain of generic payloads (the wire codec lives
/// elsewhere): (payload type, body) pairs.
fn payloads(mut first: u8, mut bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while first != 0 {
        let next = bytes[0];
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        out.push((first, &bytes[4..len]));
        bytes = &bytes[len..];
        first = next;
    }
    assert!(bytes.is_empty(), "bytes after the last payload");
    out
}

fn message_payloads(msg: &[u8]) -> Vec<(u8, &[u8])> {
    let len = u32::from_be_bytes(msg[24..28].try_into().unwrap()) as usize;
    assert_eq!(len, msg.len(), "IKE header length");
    payloads(msg[16], &msg[IKE_HEADER_LEN..])
}

fn find<'a>(payloads: &[(u8, &'a [u8])], kind: u8) -> &'a [u8] {
    payloads.iter().find(|(t, _)| *t == kind).unwrap().1
}

struct Capture {
    init_request: &'static [u8],
    init_response: &'static [u8],
    auth_request: &'static [u8],
    auth_response: &'static [u8],
    ni: &'static [u8],
    nr: &'static [u8],
    spi_i: u64,
    spi_r: u64,
    log: HashMap<&'static str, Vec<u8>>,
}

fn leak(s: &str) -> &'static [u8] {
    Vec::leak(hex(s))
}

fn capture() -> Capture {
    let init_request = leak(INIT_REQUEST);
    let init_response = leak(INIT_RESPONSE);
    let request = message_payloads(init_request);
    let response = message_payloads(init_response);
    // Both sides chose Curve25519: KE = group (2) | reserved (2) | 32 bytes.
    for p in [&request, &response] {
        let ke = find(p, PAYLOAD_KE);
        assert_eq!(u16::from_be_bytes([ke[0], ke[1]]), 31);
        assert_eq!(ke.len(), 4 + 32);
    }
    Capture {
        init_request,
        init_response,
        auth_request: leak(AUTH_REQUEST),
        auth_response: leak(AUTH_RESPONSE),
        ni: find(&request, PAYLOAD_NONCE),
        nr: find(&response, PAYLOAD_NONCE),
        spi_i: u64::from_be_bytes(init_response[0..8].try_into().unwrap()),
        spi_r: u64::from_be_bytes(init_response[8..16].try_into().unwrap()),
        log: log_values(),
    }
}

impl Capture {
    fn keys(&self) -> IkeKeys {
        IkeKeys::derive(
            PRF,
            ENCR,
            Some(INTEG),
            self.ni,
            self.nr,
            &self.log["shared_dh_secret"],
            self.spi_i,
            self.spi_r,
        )
    }
}

#[test]
fn strongswan_key_schedule() {
    let c = capture();
    assert_eq!(c.ni.len(), 32);
    assert_eq!(c.nr.len(), 32);
    assert_eq!(c.spi_i, 0xcb74_6d6b_ba53_ff11);
    assert_eq!(c.spi_r, 0xcbd6_cf6a_e18d_11fe);
    let skeyseed = IkeKeys::skeyseed(PRF, c.ni, c.nr, &c.log["shared_dh_secret"]);
    assert_eq!(*skeyseed, c.log["skeyseed"]);
    let keys = c.keys();
    for (name, key) in [
        ("sk_d", &keys.sk_d),
        ("sk_ai", &keys.sk_ai),
        ("sk_ar", &keys.sk_ar),
        ("sk_ei", &keys.sk_ei),
        ("sk_er", &keys.sk_er),
        ("sk_pi", &keys.sk_pi),
        ("sk_pr", &keys.sk_pr),
    ] {
        assert_eq!(**key, c.log[name], "{name}");
    }
}

/// Open the SK payload of a captured IKE_AUTH message: it is the first
/// payload, so the AAD is the IKE header and the SK generic header.
fn open_auth_message(msg: &[u8], cipher: &super::SkCipher) -> (u8, Vec<u8>) {
    assert_eq!(msg[16], PAYLOAD_SK, "the SK payload comes first");
    let sk_len = usize::from(u16::from_be_bytes([msg[30], msg[31]]));
    assert_eq!(IKE_HEADER_LEN + sk_len, msg.len());
    let (aad, body) = msg.split_at(IKE_HEADER_LEN + 4);
    let plaintext = cipher.open(aad, body).unwrap();
    // strongSwan pads to the block like we do (with random padding bytes),
    // so our sealed length for this plaintext is the captured one.
    assert_eq!(cipher.sealed_len(plaintext.len()), body.len());
    (msg[IKE_HEADER_LEN], plaintext)
}

#[test]
fn strongswan_ike_auth_sk_payloads_open_and_auth_verifies() {
    let c = capture();
    let keys = c.keys();

    // Initiator -> responder, with SK_ei / SK_ai.
    let from_i = keys.initiator_cipher(ENCR, Some(INTEG)).unwrap();
    let (first, plaintext) = open_auth_message(c.auth_request, &from_i);
    assert_eq!(first, PAYLOAD_IDI);
    let inner = payloads(first, &plaintext);
    let kinds: Vec<u8> = inner.iter().map(|(t, _)| *t).collect();
    // IDi N(INITIAL_CONTACT) IDr AUTH CP SA TSi TSr N N N N N, as logged.
    assert_eq!(kinds, [35, 41, 36, 39, 47, 33, 44, 45, 41, 41, 41, 41, 41]);
    let idi = inner[0].1;
    assert_eq!(idi, c.log["initiator_id_body"]);
    assert_eq!(&idi[4..], b"spoke1.example");
    let auth = inner.iter().find(|(t, _)| *t == PAYLOAD_AUTH).unwrap().1;
    assert_eq!(auth[0], 2, "shared key MIC");
    let auth_data = &auth[4..];

    let octets = signed_octets(c.init_request, c.nr, PRF, &keys.sk_pi, idi);
    assert_eq!(octets.len(), 304);
    assert_eq!(octets, c.log["initiator_auth_octets"]);
    let mac = psk_auth(PRF, PSK, &octets);
    assert_eq!(mac, c.log["initiator_auth"]);
    assert_eq!(mac, auth_data);
    assert!(psk_auth_verify(PRF, PSK, &octets, auth_data));
    assert!(!psk_auth_verify(
        PRF,
        b"test-psk-0123456788",
        &octets,
        auth_data
    ));

    // Responder -> initiator, with SK_er / SK_ar.
    let from_r = keys.responder_cipher(ENCR, Some(INTEG)).unwrap();
    let (first, plaintext) = open_auth_message(c.auth_response, &from_r);
    assert_eq!(first, PAYLOAD_IDR);
    let inner = payloads(first, &plaintext);
    let kinds: Vec<u8> = inner.iter().map(|(t, _)| *t).collect();
    // IDr AUTH CP SA TSi TSr N N, as logged.
    assert_eq!(kinds, [36, 39, 47, 33, 44, 45, 41, 41]);
    let idr = inner[0].1;
    assert_eq!(idr, c.log["responder_id_body"]);
    let auth_data = &find(&inner, PAYLOAD_AUTH)[4..];
    let octets = signed_octets(c.init_response, c.ni, PRF, &keys.sk_pr, idr);
    assert_eq!(octets.len(), 312);
    assert_eq!(octets, c.log["responder_auth_octets"]);
    assert_eq!(psk_auth(PRF, PSK, &octets), c.log["responder_auth"]);
    assert!(psk_auth_verify(PRF, PSK, &octets, auth_data));

    // Each direction's keys only open that direction.
    let (aad, body) = c.auth_request.split_at(IKE_HEADER_LEN + 4);
    assert_eq!(from_r.open(aad, body), Err(super::CryptoError::Integrity));
}

#[test]
fn strongswan_psk_keypad() {
    let c = capture();
    assert_eq!(PRF.prf(PSK, b"Key Pad for IKEv2"), c.log["prf_psk_keypad"]);
}

#[test]
fn strongswan_child_sa_keys() {
    let c = capture();
    let keys = c.keys();
    let esp = Encr::AesGcm16 { key_bits: 256 };
    assert_eq!(ChildKeys::keymat_len(esp, None), 72);
    let child = ChildKeys::derive(PRF, &keys.sk_d, c.ni, c.nr, None, esp, None);
    assert_eq!(*child.encr_i, c.log["esp_encryption_initiator_key"]);
    assert_eq!(*child.encr_r, c.log["esp_encryption_responder_key"]);
    assert!(child.integ_i.is_empty() && child.integ_r.is_empty());
    let keymat = child_keymat(PRF, &keys.sk_d, c.ni, c.nr, None, 72);
    assert_eq!(keymat[..36], *child.encr_i);
    assert_eq!(keymat[36..], *child.encr_r);

    // The keys decrypt the captured ESP packets (RFC 4106: nonce = salt |
    // IV, AAD = SPI | sequence number): pings between the virtual IP
    // 10.1.1.100 and 10.1.2.0/24.
    for (packet, key, src_is_vip) in [
        (hex(ESP_I2R), &child.encr_i, true),
        (hex(ESP_R2I), &child.encr_r, false),
    ] {
        let (aad, rest) = packet.split_at(8);
        let (iv, sealed) = rest.split_at(8);
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key[..32]).unwrap());
        let nonce = Nonce::try_assume_unique_for_key(&[&key[32..], iv].concat()).unwrap();
        let mut buf = sealed.to_vec();
        let plain = aead.open_in_place(nonce, Aad::from(aad), &mut buf).unwrap();
        let next_header = plain[plain.len() - 1];
        assert_eq!(next_header, 4, "IPv4 in tunnel mode");
        let ip = plain;
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[9], 1, "ICMP");
        let (vip, other) = if src_is_vip {
            (&ip[12..16], &ip[16..20])
        } else {
            (&ip[16..20], &ip[12..16])
        };
        assert_eq!(vip, [10, 1, 1, 100]);
        assert_eq!(other[..3], [10, 1, 2]);
    }
}

/// The state machine keeps these in SA state owned by async tasks.
#[test]
fn crypto_state_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<super::SkCipher>();
    send_sync::<super::DhPrivate>();
    send_sync::<IkeKeys>();
    send_sync::<ChildKeys>();
    send_sync::<super::CryptoError>();
}
