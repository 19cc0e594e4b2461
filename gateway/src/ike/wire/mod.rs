//! The IKEv2 wire codec: RFC 7296 messages and payloads, RFC 7383
//! fragments (SKF), RFC 3948 non-ESP markers.
//!
//! Shaped like smoltcp's `wire`: checked views over bytes where a layout is
//! worth naming (`HeaderView`, `PayloadView`), field offsets as ranges in a
//! `field` module per file, representations that `parse`, report their
//! `buffer_len` and `emit`, and codepoints as enums whose `Unknown(n)`
//! keeps values this code has no name for. One file per concern: `header`,
//! `payload` (generic header, `Payload`, the chain), then one per payload
//! body.
//!
//! What is checked here: every length, count and Last Substruc field against
//! the bytes, so that no input panics and nothing is read twice or skipped;
//! parsing a message and emitting it gives back the same bytes (reserved
//! fields aside, which are sent as zero). What is not: semantics that need
//! an exchange's context (which payloads a message must carry, proposal
//! numbering, nonce sizes, the major version): the state machine judges
//! those, with the `Notify` it will answer.
//!
//! The SK payload is kept raw: `crypto` decrypts it and `parse_payloads`
//! reads the plaintext; to send, `emit_payloads` builds the plaintext.

#[macro_use]
mod codepoint;

mod auth;
mod bytes;
mod cert;
mod cp;
mod delete;
mod encrypted;
mod error;
mod header;
mod id;
mod ke;
mod notify;
mod payload;
mod sa;
mod ts;

#[cfg(test)]
mod tests;

pub use auth::{Auth, AuthMethod};
pub use cert::{Cert, cert_encoding};
pub use cp::{CfgType, Config, ConfigAttribute, ConfigAttributeType};
pub use delete::Delete;
pub use encrypted::{Encrypted, EncryptedFragment};
pub use error::WireError;
pub use header::{ExchangeType, HEADER_LEN, Header, HeaderFlags, HeaderView, IKEV2_MAJOR_VERSION};
pub use id::{IdType, Identification};
pub use ke::KeyExchange;
pub use notify::{Notify, NotifyType};
pub use payload::{GENERIC_HEADER_LEN, Payload, PayloadType, PayloadView, Payloads};
pub use sa::{
    ATTRIBUTE_KEY_LENGTH, Proposal, ProtocolId, Transform, TransformAttribute, TransformType, iana,
};
pub use ts::{TrafficSelector, TsType};

/// The four zero bytes that start an IKE message on UDP 4500 (RFC 3948
/// §2.2), where ESP would start with its non-zero SPI.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// The IKE message in a UDP 4500 datagram: `Some` when the datagram starts
/// with the non-ESP marker, `None` for ESP (and for anything shorter than
/// the marker, such as the one-byte NAT keepalive).
pub fn strip_non_esp_marker(datagram: &[u8]) -> Option<&[u8]> {
    datagram.strip_prefix(&NON_ESP_MARKER)
}

/// An IKE message: the header and the payload chain, with the SK or SKF
/// payload (if any) last and still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// The message in `datagram`, which must be exactly as long as its
    /// header says (no marker: see `strip_non_esp_marker`).
    pub fn parse(datagram: &[u8]) -> Result<Self, WireError> {
        let header = Header::parse(datagram)?;
        if usize::try_from(header.length).ok() != Some(datagram.len()) {
            return Err(WireError::LengthMismatch {
                header: header.length,
                datagram: datagram.len(),
            });
        }
        let payloads =
            payload::parse_chain(header.next_payload, &datagram[HEADER_LEN..], HEADER_LEN)?;
        Ok(Self { header, payloads })
    }

    /// Length on the wire.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + payload::chain_len(&self.payloads)
    }

    /// The message's bytes. The header's `next_payload` and `length` are
    /// computed here; whatever they held is ignored. Fails only for a
    /// representation with no encoding: a length or count too large for
    /// its field, an SK payload that is not last, an SPI whose size
    /// disagrees with its neighbours', an `Unknown` payload with a known
    /// type.
    pub fn try_emit(&self) -> Result<Vec<u8>, WireError> {
        let len = self.buffer_len();
        let length = u32::try_from(len).map_err(|_| WireError::TooLarge {
            what: "IKE message",
            field: "length",
            value: len,
            max: u32::MAX as usize,
        })?;
        let mut buf = vec![0; len];
        let first = payload::emit_chain(&self.payloads, &mut buf[HEADER_LEN..])?;
        let header = Header {
            next_payload: first,
            length,
            ..self.header
        };
        header.emit(&mut buf);
        Ok(buf)
    }

    /// `try_emit` for messages built by this code, which are encodable by
    /// construction.
    ///
    /// # Panics
    /// When `try_emit` fails: a bug in the code that built the message.
    pub fn emit(&self) -> Vec<u8> {
        match self.try_emit() {
            Ok(bytes) => bytes,
            Err(error) => panic!("IKE message cannot be emitted: {error}"),
        }
    }

    /// See `Payloads::unsupported_critical`.
    pub fn unsupported_critical(&self) -> Option<u8> {
        self.payloads.unsupported_critical()
    }

    /// The first Notify payload of type `kind`.
    pub fn notify(&self, kind: NotifyType) -> Option<&Notify> {
        self.payloads.notify(kind)
    }

    /// The first payload of type `kind`.
    pub fn find(&self, kind: PayloadType) -> Option<&Payload> {
        self.payloads.find(kind)
    }

    /// The SK payload, when the message ends with one.
    pub fn encrypted(&self) -> Option<&Encrypted> {
        match self.payloads.last() {
            Some(Payload::Encrypted(sk)) => Some(sk),
            _ => None,
        }
    }

    /// The SKF payload, when the message ends with one.
    pub fn encrypted_fragment(&self) -> Option<&EncryptedFragment> {
        match self.payloads.last() {
            Some(Payload::EncryptedFragment(skf)) => Some(skf),
            _ => None,
        }
    }
}

/// The payloads in `bytes` (the decrypted contents of an SK payload,
/// padding and pad length removed), the first of type `first` (the SK
/// payload's `first_inner`). Offsets in errors count from `bytes`.
pub fn parse_payloads(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, WireError> {
    payload::parse_chain(first, bytes, 0)
}

/// Appends `payloads`, chained, to `out` (an SK plaintext being built) and
/// returns the type of the first, for the SK payload's `first_inner`. On
/// error `out` is left as it was.
pub fn emit_payloads_into(
    payloads: &[Payload],
    out: &mut Vec<u8>,
) -> Result<PayloadType, WireError> {
    let start = out.len();
    out.resize(start + payload::chain_len(payloads), 0);
    payload::emit_chain(payloads, &mut out[start..]).inspect_err(|_| out.truncate(start))
}

/// `payloads` chained, and the type of the first.
///
/// # Panics
/// When `emit_payloads_into` fails (see `Message::emit`).
pub fn emit_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut bytes = Vec::new();
    match emit_payloads_into(payloads, &mut bytes) {
        Ok(first) => (first, bytes),
        Err(error) => panic!("IKE payloads cannot be emitted: {error}"),
    }
}
