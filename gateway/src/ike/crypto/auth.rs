//! The AUTH payload with a pre-shared key (RFC 7296 §2.15, auth method 2,
//! Shared Key Message Integrity Code).

use aws_lc_rs::constant_time;

use super::Prf;
use crate::ipsec::Secret;

/// The pad RFC 7296 §2.15 mixes into the pre-shared key.
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets a party signs or MACs (RFC 7296 §2.15):
/// `message | peer_nonce | prf(SK_px, IDx')`.
///
/// For the initiator: its IKE_SA_INIT request, the responder's nonce Nr
/// (the Nonce Data only), `SK_pi` and the body of its IDi payload (`IDx'`:
/// ID type, three reserved bytes, identification data). For the
/// responder: its IKE_SA_INIT response, Ni, `SK_pr` and its IDr body.
pub fn signed_octets(
    message: &[u8],
    peer_nonce: &[u8],
    prf: Prf,
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let mac_id = prf.prf(sk_p, id_body);
    [message, peer_nonce, &mac_id].concat()
}

/// `AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), octets)`.
pub fn psk_auth(prf: Prf, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    let key = Secret::new(prf.prf(psk, KEY_PAD));
    prf.prf(&key, octets)
}

/// Whether `auth` (the AUTH payload's Authentication Data) is the PSK AUTH
/// of `octets`, compared in constant time.
pub fn psk_auth_verify(prf: Prf, psk: &[u8], octets: &[u8], auth: &[u8]) -> bool {
    let expected = psk_auth(prf, psk, octets);
    constant_time::verify_slices_are_equal(&expected, auth).is_ok()
}
