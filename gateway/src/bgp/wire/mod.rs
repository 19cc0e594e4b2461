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
//!
//! Layout: this file frames and dispatches whole messages (`decode`,
//! `encode`, `encoded_len`); `header` is the header view and the stream
//! framing, `open` the OPEN and its capabilities, `update` the UPDATE and
//! its prefix fields, `attributes` the path attributes, `notification`
//! the error codes and which NOTIFICATION each `WireError` asks for.

use std::ops::Range;

use super::types::{Message, Notification};

mod attributes;
mod header;
mod notification;
mod open;
mod update;

pub use attributes::{attr, flag};
pub use header::{Header, frame_len};
pub use notification::{
    WireError, cease_subcode, error_code, fsm_subcode, header_subcode, open_subcode, update_subcode,
};
pub use open::cap;
use open::{emit_open, optional_parameters_len, parse_open};
use update::{emit_update, parse_update, update_body_len};

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

/// Message types (RFC 4271 section 4.1; ROUTE-REFRESH: RFC 2918).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

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

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
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

#[cfg(test)]
mod tests;
