//! The generic payload header (RFC 7296 §3.2), the `Payload` enum and the
//! payload chain.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Each payload names the type of the one after it; the IKE header names
//! the first. The Encrypted payloads (SK, and SKF from RFC 7383) are the
//! exception: their Next Payload names the first payload *inside* the
//! encrypted data, so nothing can follow them and they end the chain.
//!
//! The critical bit is kept only for payloads of unknown type: for a known
//! type RFC 7296 says it is ignored on receipt, and it is sent as zero.

use super::bytes::{Field, be16, fit_u16, need};
use super::{
    Auth, Cert, Config, Delete, Encrypted, EncryptedFragment, Identification, KeyExchange, Notify,
    NotifyType, Proposal, TrafficSelector, WireError,
};

/// Length of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;

mod field {
    use super::Field;

    pub const NEXT_PAYLOAD: usize = 0;
    pub const FLAGS: usize = 1;
    pub const LENGTH: Field = 2..4;
}

const CRITICAL: u8 = 0x80;

codepoint! {
    /// Payload types (IANA "IKEv2 Payload Types"); `None` ends a chain.
    pub enum PayloadType(u8) {
        None = 0 => "NONE",
        Sa = 33 => "SA",
        Ke = 34 => "KE",
        IdI = 35 => "IDi",
        IdR = 36 => "IDr",
        Cert = 37 => "CERT",
        CertReq = 38 => "CERTREQ",
        Auth = 39 => "AUTH",
        Nonce = 40 => "Ni/Nr",
        Notify = 41 => "N",
        Delete = 42 => "D",
        Vendor = 43 => "V",
        TsI = 44 => "TSi",
        TsR = 45 => "TSr",
        Encrypted = 46 => "SK",
        Cp = 47 => "CP",
        Eap = 48 => "EAP",
        /// RFC 7383.
        EncryptedFragment = 53 => "SKF",
    }
}

impl PayloadType {
    /// The structure name used in errors about a payload of this type.
    pub(super) const fn what(self) -> &'static str {
        match self {
            Self::None => "payload of type NONE",
            Self::Sa => "SA payload",
            Self::Ke => "KE payload",
            Self::IdI => "IDi payload",
            Self::IdR => "IDr payload",
            Self::Cert => "CERT payload",
            Self::CertReq => "CERTREQ payload",
            Self::Auth => "AUTH payload",
            Self::Nonce => "Nonce payload",
            Self::Notify => "Notify payload",
            Self::Delete => "Delete payload",
            Self::Vendor => "Vendor ID payload",
            Self::TsI => "TSi payload",
            Self::TsR => "TSr payload",
            Self::Encrypted => "SK payload",
            Self::Cp => "CP payload",
            Self::Eap => "EAP payload",
            Self::EncryptedFragment => "SKF payload",
            Self::Unknown(_) => "payload of unknown type",
        }
    }
}

/// A view over one payload (generic header and body) at the start of
/// `buffer`, which may continue past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PayloadView<T> {
    /// A view without checks: the accessors panic if the buffer is shorter
    /// than the generic header or than the Payload Length field says.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let view = Self::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// `Ok` when the buffer holds the generic header, and the Payload Length
    /// covers at least that header and at most the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        self.check_len_as("payload", 0)
    }

    /// `check_len` with the payload's name and absolute offset for errors.
    pub(super) fn check_len_as(&self, what: &'static str, offset: usize) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        need(bytes, GENERIC_HEADER_LEN, what, offset)?;
        let length = usize::from(self.payload_length());
        if length < GENERIC_HEADER_LEN {
            return Err(WireError::Invalid {
                what,
                offset,
                field: "payload length",
                value: length,
                reason: "shorter than the 4-byte generic payload header",
            });
        }
        need(bytes, length, what, offset)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn next_payload(&self) -> PayloadType {
        self.buffer.as_ref()[field::NEXT_PAYLOAD].into()
    }

    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & CRITICAL != 0
    }

    pub fn payload_length(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The payload after the generic header, `payload_length() - 4` bytes.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[GENERIC_HEADER_LEN..usize::from(self.payload_length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PayloadView<T> {
    pub fn set_next_payload(&mut self, next: PayloadType) {
        self.buffer.as_mut()[field::NEXT_PAYLOAD] = next.into();
    }

    /// Writes the whole flags byte: the reserved bits become zero.
    pub fn set_critical(&mut self, critical: bool) {
        self.buffer.as_mut()[field::FLAGS] = if critical { CRITICAL } else { 0 };
    }

    pub fn set_payload_length(&mut self, length: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&length.to_be_bytes());
    }

    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.payload_length());
        &mut self.buffer.as_mut()[GENERIC_HEADER_LEN..end]
    }
}

/// A payload body's codec: what follows the generic header.
pub(super) trait Body: Sized {
    /// The body in `body` (exactly the payload's bytes after the generic
    /// header); `offset` is where it starts, for errors.
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError>;

    fn body_len(&self) -> usize;

    /// Writes exactly `body_len()` bytes into `buf`, which has that length.
    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError>;
}

/// Opaque bodies: Nonce, Vendor ID, EAP.
impl Body for Vec<u8> {
    fn parse_body(body: &[u8], _offset: usize) -> Result<Self, WireError> {
        Ok(body.to_vec())
    }

    fn body_len(&self) -> usize {
        self.len()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf.copy_from_slice(self);
        Ok(())
    }
}

/// One payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke(KeyExchange),
    IdI(Identification),
    IdR(Identification),
    Cert(Cert),
    CertReq(Cert),
    Auth(Auth),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    /// Vendor ID data (Cisco's are plain ASCII, see DESIGN.md).
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    Cp(Config),
    Eap(Vec<u8>),
    Encrypted(Encrypted),
    EncryptedFragment(EncryptedFragment),
    /// A payload type this codec does not know, kept whole. `kind` must not
    /// be a known type (0 included) for it to be emitted.
    Unknown {
        kind: u8,
        critical: bool,
        data: Vec<u8>,
    },
}

impl Payload {
    pub fn kind(&self) -> PayloadType {
        match self {
            Self::Sa(_) => PayloadType::Sa,
            Self::Ke(_) => PayloadType::Ke,
            Self::IdI(_) => PayloadType::IdI,
            Self::IdR(_) => PayloadType::IdR,
            Self::Cert(_) => PayloadType::Cert,
            Self::CertReq(_) => PayloadType::CertReq,
            Self::Auth(_) => PayloadType::Auth,
            Self::Nonce(_) => PayloadType::Nonce,
            Self::Notify(_) => PayloadType::Notify,
            Self::Delete(_) => PayloadType::Delete,
            Self::Vendor(_) => PayloadType::Vendor,
            Self::TsI(_) => PayloadType::TsI,
            Self::TsR(_) => PayloadType::TsR,
            Self::Cp(_) => PayloadType::Cp,
            Self::Eap(_) => PayloadType::Eap,
            Self::Encrypted(_) => PayloadType::Encrypted,
            Self::EncryptedFragment(_) => PayloadType::EncryptedFragment,
            Self::Unknown { kind, .. } => PayloadType::from(*kind),
        }
    }

    /// The critical bit as it is sent: set only on an `Unknown` payload
    /// that carries it.
    pub fn critical(&self) -> bool {
        matches!(self, Self::Unknown { critical: true, .. })
    }

    /// Length on the wire: generic header and body.
    pub fn buffer_len(&self) -> usize {
        GENERIC_HEADER_LEN + self.body_len()
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Sa(proposals) => proposals.body_len(),
            Self::Ke(ke) => ke.body_len(),
            Self::IdI(id) | Self::IdR(id) => id.body_len(),
            Self::Cert(cert) | Self::CertReq(cert) => cert.body_len(),
            Self::Auth(auth) => auth.body_len(),
            Self::Nonce(data)
            | Self::Vendor(data)
            | Self::Eap(data)
            | Self::Unknown { data, .. } => data.body_len(),
            Self::Notify(notify) => notify.body_len(),
            Self::Delete(delete) => delete.body_len(),
            Self::TsI(selectors) | Self::TsR(selectors) => selectors.body_len(),
            Self::Cp(config) => config.body_len(),
            Self::Encrypted(sk) => sk.body_len(),
            Self::EncryptedFragment(skf) => skf.body_len(),
        }
    }

    /// The payload of type `kind` in `view` (already length-checked), which
    /// starts at `offset`.
    fn parse(
        kind: PayloadType,
        view: &PayloadView<&[u8]>,
        offset: usize,
    ) -> Result<Self, WireError> {
        let body = view.body();
        let at = offset + GENERIC_HEADER_LEN;
        Ok(match kind {
            PayloadType::Sa => Self::Sa(Body::parse_body(body, at)?),
            PayloadType::Ke => Self::Ke(Body::parse_body(body, at)?),
            PayloadType::IdI => Self::IdI(Body::parse_body(body, at)?),
            PayloadType::IdR => Self::IdR(Body::parse_body(body, at)?),
            PayloadType::Cert => Self::Cert(Body::parse_body(body, at)?),
            PayloadType::CertReq => Self::CertReq(Body::parse_body(body, at)?),
            PayloadType::Auth => Self::Auth(Body::parse_body(body, at)?),
            PayloadType::Nonce => Self::Nonce(body.to_vec()),
            PayloadType::Notify => Self::Notify(Body::parse_body(body, at)?),
            PayloadType::Delete => Self::Delete(Body::parse_body(body, at)?),
            PayloadType::Vendor => Self::Vendor(body.to_vec()),
            PayloadType::TsI => Self::TsI(Body::parse_body(body, at)?),
            PayloadType::TsR => Self::TsR(Body::parse_body(body, at)?),
            PayloadType::Cp => Self::Cp(Body::parse_body(body, at)?),
            PayloadType::Eap => Self::Eap(body.to_vec()),
            PayloadType::Encrypted => Self::Encrypted(Encrypted {
                first_inner: view.next_payload(),
                body: body.to_vec(),
            }),
            PayloadType::EncryptedFragment => Self::EncryptedFragment(
                EncryptedFragment::parse_body(view.next_payload(), body, at)?,
            ),
            PayloadType::None | PayloadType::Unknown(_) => Self::Unknown {
                kind: kind.into(),
                critical: view.critical(),
                data: body.to_vec(),
            },
        })
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        match self {
            Self::Sa(proposals) => proposals.emit_body(buf),
            Self::Ke(ke) => ke.emit_body(buf),
            Self::IdI(id) | Self::IdR(id) => id.emit_body(buf),
            Self::Cert(cert) | Self::CertReq(cert) => cert.emit_body(buf),
            Self::Auth(auth) => auth.emit_body(buf),
            Self::Nonce(data)
            | Self::Vendor(data)
            | Self::Eap(data)
            | Self::Unknown { data, .. } => data.emit_body(buf),
            Self::Notify(notify) => notify.emit_body(buf),
            Self::Delete(delete) => delete.emit_body(buf),
            Self::TsI(selectors) | Self::TsR(selectors) => selectors.emit_body(buf),
            Self::Cp(config) => config.emit_body(buf),
            Self::Encrypted(sk) => {
                sk.emit_body(buf);
                Ok(())
            }
            Self::EncryptedFragment(skf) => {
                skf.emit_body(buf);
                Ok(())
            }
        }
    }

    /// What goes in this payload's Next Payload field when `following`
    /// comes after it.
    fn next_field(&self, following: Option<&Self>) -> PayloadType {
        match self {
            Self::Encrypted(sk) => sk.first_inner,
            Self::EncryptedFragment(skf) => skf.first_inner,
            _ => following.map_or(PayloadType::None, Self::kind),
        }
    }
}

/// Lookups over a list of payloads: a message's, or the decrypted contents
/// of its SK payload.
pub trait Payloads {
    /// The first payload of type `kind`.
    fn find(&self, kind: PayloadType) -> Option<&Payload>;

    /// Every Notify payload, in order.
    fn notifies(&self) -> impl Iterator<Item = &Notify>;

    /// The first Notify payload of type `kind`.
    fn notify(&self, kind: NotifyType) -> Option<&Notify> {
        self.notifies().find(|notify| notify.kind == kind)
    }

    /// The type of the first payload this codec does not know and whose
    /// sender set the critical bit: RFC 7296 §2.5 says to reject the
    /// message with UNSUPPORTED_CRITICAL_PAYLOAD carrying this type.
    fn unsupported_critical(&self) -> Option<u8>;
}

impl Payloads for [Payload] {
    fn find(&self, kind: PayloadType) -> Option<&Payload> {
        self.iter().find(|payload| payload.kind() == kind)
    }

    fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.iter().filter_map(|payload| match payload {
            Payload::Notify(notify) => Some(notify),
            _ => None,
        })
    }

    fn unsupported_critical(&self) -> Option<u8> {
        self.iter().find_map(|payload| match payload {
            Payload::Unknown {
                kind,
                critical: true,
                ..
            } => Some(*kind),
            _ => None,
        })
    }
}

/// The payload chain in `bytes`, starting with a payload of type `first`;
/// `offset` is where `bytes` starts, for errors. The chain must fill
/// `bytes` exactly, and an SK/SKF payload must come last.
pub(super) fn parse_chain(
    first: PayloadType,
    bytes: &[u8],
    offset: usize,
) -> Result<Vec<Payload>, WireError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut pos = 0;
    while next != PayloadType::None {
        let at = offset + pos;
        let view = PayloadView::new_unchecked(&bytes[pos..]);
        view.check_len_as(next.what(), at)?;
        let payload = Payload::parse(next, &view, at)?;
        pos += usize::from(view.payload_length());
        if let Payload::Encrypted(_) | Payload::EncryptedFragment(_) = payload {
            if pos != bytes.len() {
                return Err(WireError::EncryptedNotLast {
                    kind: next,
                    offset: at,
                    trailing: bytes.len() - pos,
                });
            }
            next = PayloadType::None;
        } else {
            next = view.next_payload();
        }
        payloads.push(payload);
    }
    if pos != bytes.len() {
        return Err(WireError::TrailingBytes {
            what: "payload chain",
            offset: offset + pos,
            extra: bytes.len() - pos,
        });
    }
    Ok(payloads)
}

/// Length of `payloads` chained.
pub(super) fn chain_len(payloads: &[Payload]) -> usize {
    payloads.iter().map(Payload::buffer_len).sum()
}

/// Writes `payloads` chained into `buf` (exactly `chain_len` bytes) and
/// returns the type of the first, for the field that points at it.
pub(super) fn emit_chain(payloads: &[Payload], buf: &mut [u8]) -> Result<PayloadType, WireError> {
    let mut pos = 0;
    for (index, payload) in payloads.iter().enumerate() {
        let following = payloads.get(index + 1);
        if following.is_some()
            && matches!(
                payload,
                Payload::Encrypted(_) | Payload::EncryptedFragment(_)
            )
        {
            return Err(WireError::Unencodable {
                what: "payload chain",
                reason: "an Encrypted (SK/SKF) payload must be the last payload",
            });
        }
        if let Payload::Unknown { kind, .. } = payload
            && !matches!(PayloadType::from(*kind), PayloadType::Unknown(_))
        {
            return Err(WireError::Unencodable {
                what: "Unknown payload",
                reason: "its type is a known payload type (or NONE); use that variant",
            });
        }
        let len = payload.buffer_len();
        let length = fit_u16(len, payload.kind().what(), "payload length")?;
        let mut view = PayloadView::new_unchecked(&mut buf[pos..pos + len]);
        view.set_next_payload(payload.next_field(following));
        view.set_critical(payload.critical());
        view.set_payload_length(length);
        payload.emit_body(view.body_mut())?;
        pos += len;
    }
    Ok(payloads.first().map_or(PayloadType::None, Payload::kind))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::JUNK;

    /// A Nonce (4 bytes of data) chained to a Vendor ID ("AB").
    const CHAIN: [u8; 14] = [
        0x2b, 0x00, 0x00, 0x08, 0x01, 0x02, 0x03, 0x04, // Nonce, next V
        0x00, 0x00, 0x00, 0x06, b'A', b'B', // V, last
    ];

    fn chain() -> Vec<Payload> {
        vec![
            Payload::Nonce(vec![1, 2, 3, 4]),
            Payload::Vendor(b"AB".to_vec()),
        ]
    }

    #[test]
    fn deconstruct() {
        let view = PayloadView::new_checked(&CHAIN[..]).unwrap();
        assert_eq!(view.next_payload(), PayloadType::Vendor);
        assert!(!view.critical());
        assert_eq!(view.payload_length(), 8);
        assert_eq!(view.body(), [1, 2, 3, 4]);
    }

    #[test]
    fn construct() {
        let mut buf = [JUNK; 8];
        let mut view = PayloadView::new_unchecked(&mut buf[..]);
        view.set_next_payload(PayloadType::Vendor);
        view.set_critical(false);
        view.set_payload_length(8);
        view.body_mut().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(buf, CHAIN[..8]);
    }

    #[test]
    fn parse() {
        assert_eq!(parse_chain(PayloadType::Nonce, &CHAIN, 0).unwrap(), chain());
    }

    #[test]
    fn emit_into_junk() {
        let payloads = chain();
        let mut buf = vec![JUNK; chain_len(&payloads)];
        assert_eq!(emit_chain(&payloads, &mut buf).unwrap(), PayloadType::Nonce);
        assert_eq!(buf, CHAIN);
    }

    #[test]
    fn empty_chain() {
        assert_eq!(parse_chain(PayloadType::None, &[], 0).unwrap(), []);
        assert_eq!(emit_chain(&[], &mut []).unwrap(), PayloadType::None);
    }

    #[test]
    fn unknown_payload_keeps_type_critical_bit_and_data() {
        let bytes = [0x00, 0x80, 0x00, 0x07, 9, 8, 7];
        let payloads = parse_chain(PayloadType::Unknown(200), &bytes, 0).unwrap();
        assert_eq!(
            payloads,
            [Payload::Unknown {
                kind: 200,
                critical: true,
                data: vec![9, 8, 7]
            }]
        );
        assert_eq!(payloads.unsupported_critical(), Some(200));
        let mut buf = [JUNK; 7];
        emit_chain(&payloads, &mut buf).unwrap();
        assert_eq!(buf, bytes);
    }

    #[test]
    fn critical_bit_on_known_payload_is_ignored() {
        let mut bytes = CHAIN;
        bytes[1] = 0x80 | 0x15; // C and reserved bits
        let payloads = parse_chain(PayloadType::Nonce, &bytes, 0).unwrap();
        assert_eq!(payloads, chain());
        assert_eq!(payloads.unsupported_critical(), None);
    }

    #[test]
    fn every_truncation_fails() {
        for cut in 0..CHAIN.len() {
            assert!(parse_chain(PayloadType::Nonce, &CHAIN[..cut], 0).is_err());
        }
    }

    #[test]
    fn payload_length_shorter_than_generic_header() {
        let mut bytes = CHAIN;
        bytes[2..4].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            parse_chain(PayloadType::Nonce, &bytes, 28),
            Err(WireError::Invalid {
                what: "Nonce payload",
                offset: 28,
                field: "payload length",
                value: 3,
                reason: "shorter than the 4-byte generic payload header",
            })
        );
    }

    #[test]
    fn payload_length_past_the_end() {
        let mut bytes = CHAIN;
        bytes[10..12].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            parse_chain(PayloadType::Nonce, &bytes, 0),
            Err(WireError::Truncated {
                what: "Vendor ID payload",
                offset: 8,
                needed: 7,
                available: 6,
            })
        );
    }

    #[test]
    fn bytes_after_the_last_payload() {
        let mut bytes = CHAIN.to_vec();
        bytes.push(0);
        assert_eq!(
            parse_chain(PayloadType::Nonce, &bytes, 0),
            Err(WireError::TrailingBytes {
                what: "payload chain",
                offset: 14,
                extra: 1
            })
        );
    }

    #[test]
    fn encrypted_must_be_last() {
        // SK (first inner IDi, body 1 byte), then a Nonce.
        let bytes = [0x23, 0x00, 0x00, 0x05, 0xee, 0x00, 0x00, 0x00, 0x04];
        assert_eq!(
            parse_chain(PayloadType::Encrypted, &bytes, 28),
            Err(WireError::EncryptedNotLast {
                kind: PayloadType::Encrypted,
                offset: 28,
                trailing: 4
            })
        );
        let payloads = [
            Payload::Encrypted(Encrypted {
                first_inner: PayloadType::IdI,
                body: vec![0xee],
            }),
            Payload::Nonce(vec![]),
        ];
        let mut buf = vec![0; chain_len(&payloads)];
        assert!(matches!(
            emit_chain(&payloads, &mut buf),
            Err(WireError::Unencodable { .. })
        ));
    }

    #[test]
    fn unknown_payload_with_a_known_type_is_not_emitted() {
        for kind in [0, 33, 53] {
            let payloads = [Payload::Unknown {
                kind,
                critical: false,
                data: vec![],
            }];
            let mut buf = vec![0; chain_len(&payloads)];
            assert!(emit_chain(&payloads, &mut buf).is_err(), "kind {kind}");
        }
    }

    #[test]
    fn oversized_payload_is_not_emitted() {
        let payloads = [Payload::Vendor(vec![0; 65_532])];
        let mut buf = vec![0; chain_len(&payloads)];
        assert_eq!(
            emit_chain(&payloads, &mut buf),
            Err(WireError::TooLarge {
                what: "Vendor ID payload",
                field: "payload length",
                value: 65_536,
                max: 65_535
            })
        );
    }

    #[test]
    fn payload_type_codepoints() {
        for value in 0..=u8::MAX {
            let kind = PayloadType::from(value);
            assert_eq!(u8::from(kind), value);
            let named = matches!(value, 0 | 33..=48 | 53);
            assert_eq!(kind.name().is_some(), named, "{value}");
        }
        assert_eq!(PayloadType::IdI.to_string(), "IDi");
        assert_eq!(PayloadType::EncryptedFragment.to_string(), "SKF");
    }
}
