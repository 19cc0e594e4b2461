//! BGP-4 messages on the wire (RFC 4271 section 4): the codec between bytes
//! and the shared `types`, written by hand in the smoltcp style (a checked
//! header view, field offsets as ranges, parse / `encoded_len` / emit).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                           Marker (16 bytes of 0xff)           +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! What this codec assumes about the session, so that it needs no session
//! context:
//!
//! - 4-octet AS numbers (RFC 6793) everywhere: AS_PATH and AGGREGATOR are
//!   read and written with 4-byte ASNs. The FSM refuses a peer whose OPEN
//!   lacks the 4-octet AS capability (OPEN Message Error / Unsupported
//!   Capability), so a 2-octet session never reaches UPDATE decoding.
//! - No extended messages (RFC 8654): every message is at most 4096 bytes.
//! - IPv4 unicast only: MP_REACH_NLRI / MP_UNREACH_NLRI and every other
//!   attribute this speaker does not interpret are kept as `RawAttribute`,
//!   flags included, so transitive ones can be passed on.
//!
//! Errors are detected as RFC 4271 section 6 describes and each `WireError`
//! says which NOTIFICATION to send (`WireError::notification`).
//!
//! `tests/bgp_netgauze.rs` holds this codec to netgauze-bgp-pkt, an
//! independent implementation: the FRR captures, messages each side
//! encodes for the other, and random UPDATEs must decode alike.
//!
//! Canonical encoding, which captured FRR messages re-encode to byte for
//! byte: all capabilities in one Capabilities optional parameter (RFC
//! 9072's extended format only when they need more than 253 bytes); path
//! attributes in ascending type-code order, the ones this speaker
//! interprets first and `PathAttributes::other` after them in their order,
//! each with a one-byte length unless its value needs two (or a raw
//! attribute came with the Extended Length flag); prefixes in the fewest
//! octets, trailing bits zero.

use std::net::Ipv4Addr;
use std::ops::Range;

use super::types::{
    AsSegment, Capability, Message, Notification, Open, Origin, PathAttributes, RawAttribute,
    Update,
};
use crate::net::Ipv4Prefix;

/// Length of the marker, all ones (RFC 4271 section 4.1).
pub const MARKER_LEN: usize = 16;
/// Length of the message header.
pub const HEADER_LEN: usize = 19;
/// The largest message without the extended message capability.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The BGP version this speaker talks.
pub const BGP_VERSION: u8 = 4;
/// Optional parameter type of Capabilities (RFC 5492).
pub const PARAM_CAPABILITIES: u8 = 2;

/// Smallest lengths per message type, header included (RFC 4271 4.2 - 4.5,
/// RFC 2918).
const MIN_OPEN_LEN: usize = 29;
const MIN_UPDATE_LEN: usize = 23;
const MIN_NOTIFICATION_LEN: usize = 21;
const ROUTE_REFRESH_LEN: usize = 23;

mod field {
    use super::Range;

    pub const MARKER: Range<usize> = 0..16;
    pub const LENGTH: Range<usize> = 16..18;
    pub const TYPE: usize = 18;

    /// OPEN, from the start of the body.
    pub const OPEN_VERSION: usize = 0;
    pub const OPEN_MY_AS: Range<usize> = 1..3;
    pub const OPEN_HOLD_TIME: Range<usize> = 3..5;
    pub const OPEN_BGP_ID: Range<usize> = 5..9;
    pub const OPEN_OPT_PARAM_LEN: usize = 9;
    pub const OPEN_OPT_PARAMS: usize = 10;

    /// ROUTE-REFRESH, from the start of the body.
    pub const RR_AFI: Range<usize> = 0..2;
    pub const RR_SAFI: usize = 3;
}

/// Message types (RFC 4271 section 4.1; ROUTE-REFRESH: RFC 2918).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes this speaker interprets (RFC 4271 section 5,
/// RFC 1997, RFC 4456).
pub mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
}

/// Path attribute flags (RFC 4271 section 4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Capability codes this speaker interprets (RFC 5492 registry).
pub mod cap {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const FOUR_OCTET_AS: u8 = 65;
}

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

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A view over the message header at the start of `buffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// A view without a length check: the accessors panic on fewer than
    /// `HEADER_LEN` bytes. Use `new_checked` on received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// `Ok` when the buffer holds the whole header.
    pub fn check_len(&self) -> Result<(), WireError> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(WireError::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Whether the marker is all ones.
    pub fn marker_ok(&self) -> bool {
        self.buffer.as_ref()[field::MARKER]
            .iter()
            .all(|&b| b == 0xff)
    }

    pub fn length(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
}

/// Splits a TCP stream: given the bytes received so far (starting at a
/// message boundary), the length of the first whole message, `None` when
/// more bytes are needed, or an error for a bad marker or a Length out of
/// 19..=4096 (RFC 4271 section 4.1), seen as soon as those bytes are in.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let marker = &buf[..buf.len().min(MARKER_LEN)];
    if marker.iter().any(|&b| b != 0xff) {
        return Err(WireError::NotSynchronized);
    }
    let Some(length) = buf.get(field::LENGTH).map(be16) else {
        return Ok(None);
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&usize::from(length)) {
        return Err(WireError::BadMessageLength {
            length,
            msg_type: None,
        });
    }
    Ok((buf.len() >= usize::from(length)).then_some(usize::from(length)))
}

/// Decodes one whole message: `buf` holds exactly the bytes its header's
/// Length counts (what `frame_len` found).
pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
    let header = Header::new_checked(buf)?;
    if !header.marker_ok() {
        return Err(WireError::NotSynchronized);
    }
    let length = header.length();
    let msg_type = header.msg_type();
    let len = usize::from(length);
    let bad_length = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(WireError::BadMessageLength {
                length,
                msg_type: Some(msg_type),
            })
        }
    };
    bad_length((HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len))?;
    if buf.len() < len {
        return Err(WireError::Truncated {
            needed: len,
            available: buf.len(),
        });
    }
    if buf.len() > len {
        return Err(WireError::TrailingBytes {
            length,
            available: buf.len(),
        });
    }
    let body = &buf[HEADER_LEN..];
    match msg_type {
        msg_type::OPEN => {
            bad_length(len >= MIN_OPEN_LEN)?;
            parse_open(body).map(Message::Open)
        }
        msg_type::UPDATE => {
            bad_length(len >= MIN_UPDATE_LEN)?;
            parse_update(body).map(Message::Update)
        }
        msg_type::NOTIFICATION => {
            bad_length(len >= MIN_NOTIFICATION_LEN)?;
            Ok(Message::Notification(Notification {
                code: body[0],
                subcode: body[1],
                data: body[2..].to_vec(),
            }))
        }
        msg_type::KEEPALIVE => {
            bad_length(len == HEADER_LEN)?;
            Ok(Message::Keepalive)
        }
        msg_type::ROUTE_REFRESH => {
            // The reserved octet (RFC 7313's subtype) is ignored: this
            // speaker does not advertise enhanced route refresh.
            bad_length(len == ROUTE_REFRESH_LEN)?;
            Ok(Message::RouteRefresh {
                afi: be16(&body[field::RR_AFI]),
                safi: body[field::RR_SAFI],
            })
        }
        other => Err(WireError::BadMessageType { msg_type: other }),
    }
}

/// The number of bytes `encode` writes for `msg` (header included).
pub fn encoded_len(msg: &Message) -> usize {
    HEADER_LEN
        + match msg {
            Message::Open(open) => 10 + optional_parameters_len(&open.capabilities),
            Message::Update(update) => update_body_len(update),
            Message::Notification(n) => 2 + n.data.len(),
            Message::Keepalive => 0,
            Message::RouteRefresh { .. } => 4,
        }
}

/// The encoded length of the body of `update`.
fn update_body_len(update: &Update) -> usize {
    4 + prefixes_len(&update.withdrawn)
        + update.attributes.as_ref().map_or(0, attributes_len)
        + prefixes_len(&update.nlri)
}

/// Appends `msg` to `out`; returns the number of bytes written. On error
/// `out` is left as it was.
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<usize, WireError> {
    let start = out.len();
    let result = emit(msg, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// `encode` into a new vector.
pub fn encode_to_vec(msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(encoded_len(msg));
    encode(msg, &mut out)?;
    Ok(out)
}

fn emit(msg: &Message, out: &mut Vec<u8>, start: usize) -> Result<usize, WireError> {
    let total = encoded_len(msg);
    if total > MAX_MESSAGE_LEN {
        return Err(WireError::TooLarge {
            what: "message",
            value: total,
            max: MAX_MESSAGE_LEN,
        });
    }
    out.reserve(total);
    out.extend_from_slice(&[0xff; MARKER_LEN]);
    put16(out, total, "message length")?;
    match msg {
        Message::Open(open) => {
            out.push(msg_type::OPEN);
            emit_open(open, out)?;
        }
        Message::Update(update) => {
            out.push(msg_type::UPDATE);
            emit_update(update, out)?;
        }
        Message::Notification(n) => {
            out.push(msg_type::NOTIFICATION);
            out.extend_from_slice(&[n.code, n.subcode]);
            out.extend_from_slice(&n.data);
        }
        Message::Keepalive => out.push(msg_type::KEEPALIVE),
        Message::RouteRefresh { afi, safi } => {
            out.push(msg_type::ROUTE_REFRESH);
            out.extend_from_slice(&afi.to_be_bytes());
            out.extend_from_slice(&[0, *safi]);
        }
    }
    debug_assert_eq!(out.len() - start, total, "encoded_len disagrees with emit");
    Ok(total)
}

fn put16(out: &mut Vec<u8>, value: usize, what: &'static str) -> Result<(), WireError> {
    let value = u16::try_from(value).map_err(|_| WireError::TooLarge {
        what,
        value,
        max: u16::MAX.into(),
    })?;
    out.extend_from_slice(&value.to_be_bytes());
    Ok(())
}

fn put8(out: &mut Vec<u8>, value: usize, what: &'static str) -> Result<(), WireError> {
    let value = u8::try_from(value).map_err(|_| WireError::TooLarge {
        what,
        value,
        max: u8::MAX.into(),
    })?;
    out.push(value);
    Ok(())
}

// ---------------------------------------------------------------- OPEN

fn parse_open(body: &[u8]) -> Result<Open, WireError> {
    let version = body[field::OPEN_VERSION];
    if version != BGP_VERSION {
        return Err(WireError::UnsupportedVersion { version });
    }
    let my_as = be16(&body[field::OPEN_MY_AS]);
    let hold_time = be16(&body[field::OPEN_HOLD_TIME]);
    let router_id = Ipv4Addr::from(be32(&body[field::OPEN_BGP_ID]));
    let mut opt_len = usize::from(body[field::OPEN_OPT_PARAM_LEN]);
    let mut params = &body[field::OPEN_OPT_PARAMS..];
    // RFC 9072: Optional Parameters Length 255 and a first parameter type
    // of 255 announce the extended format (two-byte lengths).
    let extended = opt_len == 255 && params.first() == Some(&255);
    if extended {
        let Some(len) = params.get(1..3).map(be16) else {
            return Err(WireError::MalformedOpen {
                reason: "the extended Optional Parameters Length is truncated",
            });
        };
        opt_len = usize::from(len);
        params = &params[3..];
    }
    if params.len() != opt_len {
        return Err(WireError::MalformedOpen {
            reason: "Optional Parameters Length disagrees with the message length",
        });
    }
    let mut capabilities = Vec::new();
    while !params.is_empty() {
        let hlen = if extended { 3 } else { 2 };
        let param_type = params[0];
        let Some(len) = params.get(1..hlen).map(|l| {
            if extended {
                usize::from(be16(l))
            } else {
                usize::from(l[0])
            }
        }) else {
            return Err(WireError::MalformedOpen {
                reason: "an optional parameter header is truncated",
            });
        };
        let Some(value) = params.get(hlen..hlen + len) else {
            return Err(WireError::MalformedOpen {
                reason: "an optional parameter runs past the end of the message",
            });
        };
        if param_type != PARAM_CAPABILITIES {
            return Err(WireError::UnsupportedOptionalParameter { param_type });
        }
        parse_capabilities(value, &mut capabilities)?;
        params = &params[hlen + len..];
    }
    Ok(Open {
        my_as,
        hold_time,
        router_id,
        capabilities,
    })
}

fn parse_capabilities(mut buf: &[u8], out: &mut Vec<Capability>) -> Result<(), WireError> {
    while !buf.is_empty() {
        let code = buf[0];
        let Some(&len) = buf.get(1) else {
            return Err(WireError::MalformedOpen {
                reason: "a capability header is truncated",
            });
        };
        let len = usize::from(len);
        let Some(value) = buf.get(2..2 + len) else {
            return Err(WireError::MalformedOpen {
                reason: "a capability runs past the end of its parameter",
            });
        };
        let malformed = || WireError::MalformedCapability { code, length: len };
        out.push(match code {
            cap::MULTIPROTOCOL => {
                // AFI, reserved, SAFI; the reserved octet is ignored.
                if len != 4 {
                    return Err(malformed());
                }
                Capability::Multiprotocol {
                    afi: be16(value),
                    safi: value[3],
                }
            }
            cap::ROUTE_REFRESH => {
                if len != 0 {
                    return Err(malformed());
                }
                Capability::RouteRefresh
            }
            cap::FOUR_OCTET_AS => {
                if len != 4 {
                    return Err(malformed());
                }
                Capability::FourOctetAs(be32(value))
            }
            _ => Capability::Other {
                code,
                value: value.to_vec(),
            },
        });
        buf = &buf[2 + len..];
    }
    Ok(())
}

fn capability_value_len(capability: &Capability) -> usize {
    match capability {
        Capability::Multiprotocol { .. } | Capability::FourOctetAs(_) => 4,
        Capability::RouteRefresh => 0,
        Capability::Other { value, .. } => value.len(),
    }
}

fn capabilities_len(capabilities: &[Capability]) -> usize {
    capabilities
        .iter()
        .map(|c| 2 + capability_value_len(c))
        .sum()
}

/// The Optional Parameters Length octet excluded: one Capabilities
/// parameter, in the RFC 9072 extended format when it needs two-byte
/// lengths.
fn optional_parameters_len(capabilities: &[Capability]) -> usize {
    match capabilities_len(capabilities) {
        0 => 0,
        caps if caps + 2 <= 255 => 2 + caps,
        caps => 6 + caps,
    }
}

fn emit_open(open: &Open, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.push(BGP_VERSION);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.router_id.octets());
    let caps = capabilities_len(&open.capabilities);
    if caps == 0 {
        out.push(0);
    } else if caps + 2 <= 255 {
        // One Capabilities parameter.
        put8(out, caps + 2, "OPEN Optional Parameters Length")?;
        out.push(PARAM_CAPABILITIES);
        put8(out, caps, "OPEN Capabilities parameter length")?;
    } else {
        // RFC 9072, only when the capabilities need it.
        out.extend_from_slice(&[255, 255]);
        put16(out, caps + 3, "OPEN Extended Optional Parameters Length")?;
        out.push(PARAM_CAPABILITIES);
        put16(out, caps, "OPEN Capabilities parameter length")?;
    }
    for capability in &open.capabilities {
        match capability {
            Capability::Multiprotocol { afi, safi } => {
                out.extend_from_slice(&[cap::MULTIPROTOCOL, 4]);
                out.extend_from_slice(&afi.to_be_bytes());
                out.extend_from_slice(&[0, *safi]);
            }
            Capability::RouteRefresh => out.extend_from_slice(&[cap::ROUTE_REFRESH, 0]),
            Capability::FourOctetAs(asn) => {
                out.extend_from_slice(&[cap::FOUR_OCTET_AS, 4]);
                out.extend_from_slice(&asn.to_be_bytes());
            }
            Capability::Other { code, value } => {
                out.push(*code);
                put8(out, value.len(), "capability length")?;
                out.extend_from_slice(value);
            }
        }
    }
    Ok(())
}

// -------------------------------------------------------------- UPDATE

fn parse_update(body: &[u8]) -> Result<Update, WireError> {
    // The minimum length check guarantees the two length fields' room.
    let withdrawn_len = usize::from(be16(&body[0..2]));
    let Some(attr_len) = body.get(2 + withdrawn_len..4 + withdrawn_len).map(be16) else {
        return Err(WireError::MalformedAttributeList {
            reason: "Withdrawn Routes Length is too large",
        });
    };
    let attrs_at = 4 + withdrawn_len;
    let nlri_at = attrs_at + usize::from(attr_len);
    if nlri_at > body.len() {
        return Err(WireError::MalformedAttributeList {
            reason: "Total Path Attribute Length is too large",
        });
    }
    let withdrawn = parse_prefixes(&body[2..2 + withdrawn_len], "withdrawn routes")?;
    let attributes = parse_attributes(&body[attrs_at..nlri_at])?;
    let nlri = parse_prefixes(&body[nlri_at..], "NLRI")?;
    let attributes = attributes.finish(!nlri.is_empty())?;
    Ok(Update {
        withdrawn,
        attributes,
        nlri,
    })
}

/// Reads a withdrawn routes or NLRI field: (length in bits, the fewest
/// octets) pairs. Trailing bits past the length are ignored (RFC 4271 4.3).
fn parse_prefixes(mut buf: &[u8], field: &'static str) -> Result<Vec<Ipv4Prefix>, WireError> {
    // A /24 takes four bytes: the common case sizes the vector.
    let mut out = Vec::with_capacity(buf.len() / 4);
    while let Some((&len, rest)) = buf.split_first() {
        if len > 32 {
            return Err(WireError::InvalidNetworkField {
                field,
                reason: "a prefix is longer than 32 bits",
            });
        }
        let octets = usize::from(len).div_ceil(8);
        let Some(bytes) = rest.get(..octets) else {
            return Err(WireError::InvalidNetworkField {
                field,
                reason: "a prefix runs past the end of its field",
            });
        };
        let mut addr = [0u8; 4];
        addr[..octets].copy_from_slice(bytes);
        let addr = u32::from_be_bytes(addr) & mask(len);
        out.push(Ipv4Prefix {
            addr: Ipv4Addr::from(addr),
            len,
        });
        buf = &rest[octets..];
    }
    Ok(out)
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn prefixes_len(prefixes: &[Ipv4Prefix]) -> usize {
    prefixes
        .iter()
        .map(|p| 1 + usize::from(p.len).div_ceil(8))
        .sum()
}

fn emit_prefixes(prefixes: &[Ipv4Prefix], out: &mut Vec<u8>) -> Result<(), WireError> {
    for prefix in prefixes {
        if prefix.len > 32 {
            return Err(WireError::Unencodable {
                what: "prefix",
                reason: "longer than 32 bits",
            });
        }
        let octets = usize::from(prefix.len).div_ceil(8);
        let addr = u32::from(prefix.addr) & mask(prefix.len);
        out.push(prefix.len);
        out.extend_from_slice(&addr.to_be_bytes()[..octets]);
    }
    Ok(())
}

/// The attributes of one UPDATE while they are read.
#[derive(Default)]
struct Attributes {
    origin: Option<Origin>,
    as_path: Option<Vec<AsSegment>>,
    next_hop: Option<Ipv4Addr>,
    med: Option<u32>,
    local_pref: Option<u32>,
    atomic_aggregate: bool,
    aggregator: Option<(u32, Ipv4Addr)>,
    communities: Vec<u32>,
    originator_id: Option<Ipv4Addr>,
    cluster_list: Vec<Ipv4Addr>,
    other: Vec<RawAttribute>,
}

impl Attributes {
    /// The three well-known mandatory attributes must be there when the
    /// UPDATE carries NLRI (RFC 4271 section 6.3). Without NLRI the
    /// attributes are kept only if they are complete; an UPDATE that only
    /// withdraws has no use for them.
    fn finish(self, has_nlri: bool) -> Result<Option<PathAttributes>, WireError> {
        let (origin, as_path, next_hop) = match (self.origin, self.as_path, self.next_hop) {
            (Some(origin), Some(as_path), Some(next_hop)) => (origin, as_path, next_hop),
            (origin, as_path, _) if has_nlri => {
                let type_code = if origin.is_none() {
                    attr::ORIGIN
                } else if as_path.is_none() {
                    attr::AS_PATH
                } else {
                    attr::NEXT_HOP
                };
                return Err(WireError::MissingWellKnownAttribute { type_code });
            }
            _ => return Ok(None),
        };
        Ok(Some(PathAttributes {
            origin,
            as_path,
            next_hop,
            med: self.med,
            local_pref: self.local_pref,
            atomic_aggregate: self.atomic_aggregate,
            aggregator: self.aggregator,
            communities: self.communities,
            originator_id: self.originator_id,
            cluster_list: self.cluster_list,
            other: self.other,
        }))
    }
}

/// Flags a recognized attribute must carry: (Optional, Transitive).
fn expected_flags(type_code: u8) -> Option<u8> {
    const WELL_KNOWN: u8 = flag::TRANSITIVE;
    const OPTIONAL_TRANSITIVE: u8 = flag::OPTIONAL | flag::TRANSITIVE;
    const OPTIONAL_NON_TRANSITIVE: u8 = flag::OPTIONAL;
    match type_code {
        attr::ORIGIN
        | attr::AS_PATH
        | attr::NEXT_HOP
        | attr::LOCAL_PREF
        | attr::ATOMIC_AGGREGATE => Some(WELL_KNOWN),
        attr::AGGREGATOR | attr::COMMUNITIES => Some(OPTIONAL_TRANSITIVE),
        attr::MULTI_EXIT_DISC | attr::ORIGINATOR_ID | attr::CLUSTER_LIST => {
            Some(OPTIONAL_NON_TRANSITIVE)
        }
        _ => None,
    }
}

#[allow(clippy::too_many_lines)]
fn parse_attributes(mut buf: &[u8]) -> Result<Attributes, WireError> {
    let mut attrs = Attributes::default();
    let mut seen = [0u64; 4];
    while !buf.is_empty() {
        let flags = buf[0];
        let type_code = buf.get(1).copied().unwrap_or(0);
        let hlen = if flags & flag::EXTENDED_LENGTH == 0 {
            3
        } else {
            4
        };
        let length = match buf.get(2..hlen) {
            Some([len]) => usize::from(*len),
            Some(len) => usize::from(be16(len)),
            None => {
                return Err(WireError::AttributeLength {
                    type_code,
                    length: 0,
                    attribute: buf.to_vec(),
                });
            }
        };
        let Some(raw) = buf.get(..hlen + length) else {
            return Err(WireError::AttributeLength {
                type_code,
                length,
                attribute: buf.to_vec(),
            });
        };
        let value = &raw[hlen..];
        buf = &buf[hlen + length..];

        let (word, bit) = (usize::from(type_code / 64), type_code % 64);
        if seen[word] & (1 << bit) != 0 {
            return Err(WireError::MalformedAttributeList {
                reason: "an attribute appears more than once",
            });
        }
        seen[word] |= 1 << bit;

        let Some(expected) = expected_flags(type_code) else {
            if flags & flag::OPTIONAL == 0 {
                return Err(WireError::UnrecognizedWellKnownAttribute {
                    type_code,
                    attribute: raw.to_vec(),
                });
            }
            // The four low bits are unused: ignored on receipt (RFC 4271 4.3).
            attrs.other.push(RawAttribute {
                flags: flags & 0xf0,
                type_code,
                value: value.to_vec(),
            });
            continue;
        };
        // Optional and Transitive must match the type; Partial may only be
        // set on optional transitive attributes.
        let partial_ok = expected == flag::OPTIONAL | flag::TRANSITIVE;
        let checked = if partial_ok {
            flag::OPTIONAL | flag::TRANSITIVE
        } else {
            flag::OPTIONAL | flag::TRANSITIVE | flag::PARTIAL
        };
        if flags & checked != expected {
            return Err(WireError::AttributeFlags {
                type_code,
                flags,
                attribute: raw.to_vec(),
            });
        }
        let bad_length = || WireError::AttributeLength {
            type_code,
            length,
            attribute: raw.to_vec(),
        };
        let fixed = |want: usize| {
            if length == want {
                Ok(())
            } else {
                Err(bad_length())
            }
        };
        match type_code {
            attr::ORIGIN => {
                fixed(1)?;
                attrs.origin = Some(match value[0] {
                    0 => Origin::Igp,
                    1 => Origin::Egp,
                    2 => Origin::Incomplete,
                    other => {
                        return Err(WireError::InvalidOrigin {
                            value: other,
                            attribute: raw.to_vec(),
                        });
                    }
                });
            }
            attr::AS_PATH => attrs.as_path = Some(parse_as_path(value)?),
            attr::NEXT_HOP => {
                fixed(4)?;
                let next_hop = Ipv4Addr::from(be32(value));
                // Not a host address: 0/8, 127/8, class D and E.
                let first = next_hop.octets()[0];
                if first == 0 || first == 127 || first >= 224 {
                    return Err(WireError::InvalidNextHop {
                        next_hop,
                        attribute: raw.to_vec(),
                    });
                }
                attrs.next_hop = Some(next_hop);
            }
            attr::MULTI_EXIT_DISC => {
                fixed(4)?;
                attrs.med = Some(be32(value));
            }
            attr::LOCAL_PREF => {
                fixed(4)?;
                attrs.local_pref = Some(be32(value));
            }
            attr::ATOMIC_AGGREGATE => {
                fixed(0)?;
                attrs.atomic_aggregate = true;
            }
            attr::AGGREGATOR => {
                // 4-octet AS sessions only: AS (4), router id (4).
                fixed(8)?;
                attrs.aggregator = Some((be32(value), Ipv4Addr::from(be32(&value[4..]))));
            }
            attr::COMMUNITIES => {
                if length % 4 != 0 {
                    return Err(bad_length());
                }
                attrs.communities = value.chunks_exact(4).map(be32).collect();
            }
            attr::ORIGINATOR_ID => {
                fixed(4)?;
                attrs.originator_id = Some(Ipv4Addr::from(be32(value)));
            }
            attr::CLUSTER_LIST => {
                if length % 4 != 0 {
                    return Err(bad_length());
                }
                attrs.cluster_list = value
                    .chunks_exact(4)
                    .map(|id| Ipv4Addr::from(be32(id)))
                    .collect();
            }
            _ => unreachable!("expected_flags knows only the codes above"),
        }
    }
    Ok(attrs)
}

const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;

fn parse_as_path(mut buf: &[u8]) -> Result<Vec<AsSegment>, WireError> {
    let mut segments = Vec::new();
    while !buf.is_empty() {
        let Some(&[seg_type, count]) = buf.get(..2) else {
            return Err(WireError::MalformedAsPath {
                reason: "a segment header is truncated",
            });
        };
        // RFC 7606 section 7.2 (updating RFC 4271 section 6.3): a segment
        // of length zero makes the AS_PATH malformed.
        if count == 0 {
            return Err(WireError::MalformedAsPath {
                reason: "a segment of length zero",
            });
        }
        let Some(asns) = buf.get(2..2 + 4 * usize::from(count)) else {
            return Err(WireError::MalformedAsPath {
                reason: "a segment runs past the end of the attribute",
            });
        };
        let asns = asns.chunks_exact(4).map(be32).collect();
        segments.push(match seg_type {
            AS_SET => AsSegment::Set(asns),
            AS_SEQUENCE => AsSegment::Sequence(asns),
            // Confederation segments (RFC 5065) among others: this speaker
            // is never in a confederation.
            _ => {
                return Err(WireError::MalformedAsPath {
                    reason: "unknown segment type",
                });
            }
        });
        buf = &buf[2 + 4 * usize::from(count)..];
    }
    Ok(segments)
}

fn as_path_len(segments: &[AsSegment]) -> usize {
    segments
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(asns) | AsSegment::Set(asns) => 2 + 4 * asns.len(),
        })
        .sum()
}

/// Header (3 or 4 bytes) plus value.
fn attribute_len(value_len: usize, force_extended: bool) -> usize {
    if force_extended || value_len > 255 {
        4 + value_len
    } else {
        3 + value_len
    }
}

fn attributes_len(attrs: &PathAttributes) -> usize {
    let fixed4 = attribute_len(4, false);
    attribute_len(1, false)
        + attribute_len(as_path_len(&attrs.as_path), false)
        + fixed4
        + attrs.med.map_or(0, |_| fixed4)
        + attrs.local_pref.map_or(0, |_| fixed4)
        + if attrs.atomic_aggregate {
            attribute_len(0, false)
        } else {
            0
        }
        + attrs.aggregator.map_or(0, |_| attribute_len(8, false))
        + if attrs.communities.is_empty() {
            0
        } else {
            attribute_len(4 * attrs.communities.len(), false)
        }
        + attrs.originator_id.map_or(0, |_| fixed4)
        + if attrs.cluster_list.is_empty() {
            0
        } else {
            attribute_len(4 * attrs.cluster_list.len(), false)
        }
        + attrs
            .other
            .iter()
            .map(|a| attribute_len(a.value.len(), a.flags & flag::EXTENDED_LENGTH != 0))
            .sum::<usize>()
}

/// Writes one attribute header: the Extended Length flag is set when the
/// value needs it or `flags` asks for it; the four unused low bits are
/// sent as zero.
fn attribute_header(
    out: &mut Vec<u8>,
    flags: u8,
    type_code: u8,
    value_len: usize,
) -> Result<(), WireError> {
    let extended = flags & flag::EXTENDED_LENGTH != 0 || value_len > 255;
    let flags = flags & 0xe0 | if extended { flag::EXTENDED_LENGTH } else { 0 };
    out.extend_from_slice(&[flags, type_code]);
    if extended {
        put16(out, value_len, "attribute length")
    } else {
        put8(out, value_len, "attribute length")
    }
}

fn emit_update(update: &Update, out: &mut Vec<u8>) -> Result<(), WireError> {
    put16(
        out,
        prefixes_len(&update.withdrawn),
        "Withdrawn Routes Length",
    )?;
    emit_prefixes(&update.withdrawn, out)?;
    match &update.attributes {
        Some(attrs) => {
            put16(out, attributes_len(attrs), "Total Path Attribute Length")?;
            emit_attributes(attrs, out)?;
        }
        None if update.nlri.is_empty() => put16(out, 0, "Total Path Attribute Length")?,
        None => {
            return Err(WireError::Unencodable {
                what: "UPDATE",
                reason: "NLRI without path attributes",
            });
        }
    }
    emit_prefixes(&update.nlri, out)
}

fn emit_attributes(attrs: &PathAttributes, out: &mut Vec<u8>) -> Result<(), WireError> {
    const WELL_KNOWN: u8 = flag::TRANSITIVE;
    const OPT_TRANS: u8 = flag::OPTIONAL | flag::TRANSITIVE;
    const OPT: u8 = flag::OPTIONAL;

    attribute_header(out, WELL_KNOWN, attr::ORIGIN, 1)?;
    out.push(match attrs.origin {
        Origin::Igp => 0,
        Origin::Egp => 1,
        Origin::Incomplete => 2,
    });
    attribute_header(out, WELL_KNOWN, attr::AS_PATH, as_path_len(&attrs.as_path))?;
    for segment in &attrs.as_path {
        let (seg_type, asns) = match segment {
            AsSegment::Set(asns) => (AS_SET, asns),
            AsSegment::Sequence(asns) => (AS_SEQUENCE, asns),
        };
        if asns.is_empty() {
            // What the decoder refuses (RFC 7606 section 7.2).
            return Err(WireError::Unencodable {
                what: "AS_PATH segment",
                reason: "empty",
            });
        }
        out.push(seg_type);
        put8(out, asns.len(), "AS_PATH segment length")?;
        for asn in asns {
            out.extend_from_slice(&asn.to_be_bytes());
        }
    }
    attribute_header(out, WELL_KNOWN, attr::NEXT_HOP, 4)?;
    out.extend_from_slice(&attrs.next_hop.octets());
    if let Some(med) = attrs.med {
        attribute_header(out, OPT, attr::MULTI_EXIT_DISC, 4)?;
        out.extend_from_slice(&med.to_be_bytes());
    }
    if let Some(local_pref) = attrs.local_pref {
        attribute_header(out, WELL_KNOWN, attr::LOCAL_PREF, 4)?;
        out.extend_from_slice(&local_pref.to_be_bytes());
    }
    if attrs.atomic_aggregate {
        attribute_header(out, WELL_KNOWN, attr::ATOMIC_AGGREGATE, 0)?;
    }
    if let Some((asn, id)) = attrs.aggregator {
        attribute_header(out, OPT_TRANS, attr::AGGREGATOR, 8)?;
        out.extend_from_slice(&asn.to_be_bytes());
        out.extend_from_slice(&id.octets());
    }
    if !attrs.communities.is_empty() {
        attribute_header(
            out,
            OPT_TRANS,
            attr::COMMUNITIES,
            4 * attrs.communities.len(),
        )?;
        for community in &attrs.communities {
            out.extend_from_slice(&community.to_be_bytes());
        }
    }
    if let Some(id) = attrs.originator_id {
        attribute_header(out, OPT, attr::ORIGINATOR_ID, 4)?;
        out.extend_from_slice(&id.octets());
    }
    if !attrs.cluster_list.is_empty() {
        attribute_header(out, OPT, attr::CLUSTER_LIST, 4 * attrs.cluster_list.len())?;
        for id in &attrs.cluster_list {
            out.extend_from_slice(&id.octets());
        }
    }
    for raw in &attrs.other {
        if expected_flags(raw.type_code).is_some() {
            return Err(WireError::Unencodable {
                what: "raw attribute",
                reason: "its type code is one this speaker interprets",
            });
        }
        if raw.flags & flag::OPTIONAL == 0 {
            return Err(WireError::Unencodable {
                what: "raw attribute",
                reason: "a well-known attribute this speaker does not know",
            });
        }
        attribute_header(out, raw.flags, raw.type_code, raw.value.len())?;
        out.extend_from_slice(&raw.value);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
