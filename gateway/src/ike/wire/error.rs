//! `WireError`: what was wrong, in which structure, at which offset.
//!
//! Offsets count from the start of the buffer handed to the parser: the IKE
//! message for `Message::parse`, the decrypted SK contents for
//! `parse_payloads`. `what` names the structure ("SA transform", "Notify
//! payload"), `field` the field inside it, as RFC 7296 §3 names them.

use super::PayloadType;

/// An IKEv2 message or payload that cannot be parsed, or a representation
/// that cannot be emitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end before a fixed-size structure or a declared length.
    #[error("{what} at offset {offset}: truncated: needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// A field holds a value the format does not allow (a length shorter
    /// than its own header, a count that disagrees with the contents).
    #[error("{what} at offset {offset}: {field} {value} is invalid: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        field: &'static str,
        value: usize,
        reason: &'static str,
    },
    /// The IKE header's Length field disagrees with the datagram.
    #[error("IKE header: Length field says {header} bytes, the datagram has {datagram}")]
    LengthMismatch { header: u32, datagram: usize },
    /// Bytes left over after the last element of a counted or chained list.
    #[error("{what} at offset {offset}: {extra} bytes left over after its last element")]
    TrailingBytes {
        what: &'static str,
        offset: usize,
        extra: usize,
    },
    /// An SK or SKF payload that is not the last payload: its Next Payload
    /// field names the first inner payload, so nothing can follow it.
    #[error(
        "{kind} payload at offset {offset} is followed by {trailing} more bytes: \
         an Encrypted payload must be the last payload"
    )]
    EncryptedNotLast {
        kind: PayloadType,
        offset: usize,
        trailing: usize,
    },
    /// Emit: a length or count too large for its field.
    #[error("cannot emit {what}: {field} {value} does not fit its field (at most {max})")]
    TooLarge {
        what: &'static str,
        field: &'static str,
        value: usize,
        max: usize,
    },
    /// Emit: a representation with no encoding (an SK payload that is not
    /// last, an SPI whose size disagrees with the others, ...).
    #[error("cannot emit {what}: {reason}")]
    Unencodable {
        what: &'static str,
        reason: &'static str,
    },
}
