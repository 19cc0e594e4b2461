//! NOTIFICATION codes (RFC 4271 section 4.5 and the RFCs that add
//! subcodes) and the codec's errors, each naming the NOTIFICATION RFC 4271
//! section 6 asks for.

use std::net::Ipv4Addr;

use super::{BGP_VERSION, msg_type};
use crate::bgp::types::Notification;

/// NOTIFICATION error codes (RFC 4271 section 4.5; RFC 7313).
pub mod error_code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Message Header Error subcodes (RFC 4271 section 6.1).
pub mod header_subcode {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (RFC 4271 section 6.2, RFC 5492).
pub mod open_subcode {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
}

/// UPDATE Message Error subcodes (RFC 4271 section 6.3).
pub mod update_subcode {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Finite State Machine Error subcodes (RFC 6608).
pub mod fsm_subcode {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_MESSAGE_IN_OPENSENT: u8 = 1;
    pub const UNEXPECTED_MESSAGE_IN_OPENCONFIRM: u8 = 2;
    pub const UNEXPECTED_MESSAGE_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486).
pub mod cease_subcode {
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
}

/// A message that cannot be decoded, or a representation that cannot be
/// encoded. Decoding errors name the NOTIFICATION RFC 4271 section 6 asks
/// for (`notification`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The marker is not all ones.
    #[error("message header: the marker is not all ones (connection not synchronized)")]
    NotSynchronized,
    /// The Length field is out of range for the message (or its type).
    #[error("message header: Length {length} is not allowed for {}", type_name(*msg_type))]
    BadMessageLength { length: u16, msg_type: Option<u8> },
    /// The buffer handed to `decode` ends before the message does.
    #[error("message truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// The buffer handed to `decode` is longer than its header says.
    #[error("message header: Length {length}, but {available} bytes were handed over")]
    TrailingBytes { length: u16, available: usize },
    #[error("message header: unknown message type {msg_type}")]
    BadMessageType { msg_type: u8 },

    #[error("OPEN: version {version} is not supported (only 4)")]
    UnsupportedVersion { version: u8 },
    #[error("OPEN: {reason}")]
    MalformedOpen { reason: &'static str },
    #[error("OPEN: optional parameter type {param_type} is not supported")]
    UnsupportedOptionalParameter { param_type: u8 },
    #[error("OPEN: capability {code} has a malformed value of {length} bytes")]
    MalformedCapability { code: u8, length: usize },

    #[error("UPDATE: malformed attribute list: {reason}")]
    MalformedAttributeList { reason: &'static str },
    #[error("UPDATE: unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnownAttribute { type_code: u8, attribute: Vec<u8> },
    #[error("UPDATE: missing well-known attribute {type_code}")]
    MissingWellKnownAttribute { type_code: u8 },
    #[error("UPDATE: attribute {type_code}: flags {flags:#04x} conflict with its type")]
    AttributeFlags {
        type_code: u8,
        flags: u8,
        attribute: Vec<u8>,
    },
    #[error("UPDATE: attribute {type_code}: length {length} is wrong for its type")]
    AttributeLength {
        type_code: u8,
        length: usize,
        attribute: Vec<u8>,
    },
    #[error("UPDATE: ORIGIN {value} is undefined")]
    InvalidOrigin { value: u8, attribute: Vec<u8> },
    #[error("UPDATE: NEXT_HOP {next_hop} is not a unicast host address")]
    InvalidNextHop {
        next_hop: Ipv4Addr,
        attribute: Vec<u8>,
    },
    #[error("UPDATE: invalid network field in the {field}: {reason}")]
    InvalidNetworkField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("UPDATE: malformed AS_PATH: {reason}")]
    MalformedAsPath { reason: &'static str },

    /// Encode: a value too large for its field or the message too long.
    #[error("cannot encode {what}: {value} is more than {max}")]
    TooLarge {
        what: &'static str,
        value: usize,
        max: usize,
    },
    /// Encode: a representation with no encoding.
    #[error("cannot encode {what}: {reason}")]
    Unencodable {
        what: &'static str,
        reason: &'static str,
    },
}

fn type_name(msg_type: Option<u8>) -> &'static str {
    match msg_type {
        None => "any message",
        Some(msg_type::OPEN) => "OPEN",
        Some(msg_type::UPDATE) => "UPDATE",
        Some(msg_type::NOTIFICATION) => "NOTIFICATION",
        Some(msg_type::KEEPALIVE) => "KEEPALIVE",
        Some(msg_type::ROUTE_REFRESH) => "ROUTE-REFRESH",
        Some(_) => "an unknown type",
    }
}

impl WireError {
    /// The NOTIFICATION to send the peer for this error (RFC 4271 section
    /// 6: code, subcode and the data each subcode asks for). Encoding
    /// errors are our own; should the session have to close over one, it
    /// says Cease / Out of Resources.
    pub fn notification(&self) -> Notification {
        use error_code as code;
        use header_subcode as hdr;
        use open_subcode as open;
        use update_subcode as upd;
        let (code, subcode, data) = match self {
            Self::NotSynchronized => (
                code::MESSAGE_HEADER,
                hdr::CONNECTION_NOT_SYNCHRONIZED,
                vec![],
            ),
            Self::BadMessageLength { length, .. } | Self::TrailingBytes { length, .. } => (
                code::MESSAGE_HEADER,
                hdr::BAD_MESSAGE_LENGTH,
                length.to_be_bytes().to_vec(),
            ),
            Self::Truncated { .. } => (code::MESSAGE_HEADER, hdr::BAD_MESSAGE_LENGTH, vec![]),
            Self::BadMessageType { msg_type } => {
                (code::MESSAGE_HEADER, hdr::BAD_MESSAGE_TYPE, vec![*msg_type])
            }
            // The data: the largest version we support below the peer's bid.
            Self::UnsupportedVersion { .. } => (
                code::OPEN_MESSAGE,
                open::UNSUPPORTED_VERSION_NUMBER,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            Self::MalformedOpen { .. } | Self::MalformedCapability { .. } => {
                (code::OPEN_MESSAGE, open::UNSPECIFIC, vec![])
            }
            Self::UnsupportedOptionalParameter { .. } => (
                code::OPEN_MESSAGE,
                open::UNSUPPORTED_OPTIONAL_PARAMETER,
                vec![],
            ),
            Self::MalformedAttributeList { .. } => {
                (code::UPDATE_MESSAGE, upd::MALFORMED_ATTRIBUTE_LIST, vec![])
            }
            Self::UnrecognizedWellKnownAttribute { attribute, .. } => (
                code::UPDATE_MESSAGE,
                upd::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                attribute.clone(),
            ),
            Self::MissingWellKnownAttribute { type_code } => (
                code::UPDATE_MESSAGE,
                upd::MISSING_WELL_KNOWN_ATTRIBUTE,
                vec![*type_code],
            ),
            Self::AttributeFlags { attribute, .. } => (
                code::UPDATE_MESSAGE,
                upd::ATTRIBUTE_FLAGS_ERROR,
                attribute.clone(),
            ),
            Self::AttributeLength { attribute, .. } => (
                code::UPDATE_MESSAGE,
                upd::ATTRIBUTE_LENGTH_ERROR,
                attribute.clone(),
            ),
            Self::InvalidOrigin { attribute, .. } => (
                code::UPDATE_MESSAGE,
                upd::INVALID_ORIGIN_ATTRIBUTE,
                attribute.clone(),
            ),
            Self::InvalidNextHop { attribute, .. } => (
                code::UPDATE_MESSAGE,
                upd::INVALID_NEXT_HOP_ATTRIBUTE,
                attribute.clone(),
            ),
            Self::InvalidNetworkField { .. } => {
                (code::UPDATE_MESSAGE, upd::INVALID_NETWORK_FIELD, vec![])
            }
            Self::MalformedAsPath { .. } => (code::UPDATE_MESSAGE, upd::MALFORMED_AS_PATH, vec![]),
            Self::TooLarge { .. } | Self::Unencodable { .. } => {
                (code::CEASE, cease_subcode::OUT_OF_RESOURCES, vec![])
            }
        };
        Notification {
            code,
            subcode,
            data,
        }
    }
}
