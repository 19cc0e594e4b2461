//! UPDATE (RFC 4271 section 4.3): withdrawn routes, the path attributes
//! (`attributes`) and the NLRI.

use std::net::Ipv4Addr;

use super::attributes::{attributes_len, emit_attributes, parse_attributes};
use super::{WireError, be16, put16};
use crate::bgp::types::Update;
use crate::net::Ipv4Prefix;

/// The encoded length of the body of `update`.
pub(super) fn update_body_len(update: &Update) -> usize {
    4 + prefixes_len(&update.withdrawn)
        + update.attributes.as_ref().map_or(0, attributes_len)
        + prefixes_len(&update.nlri)
}

pub(super) fn parse_update(body: &[u8]) -> Result<Update, WireError> {
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

pub(super) fn emit_update(update: &Update, out: &mut Vec<u8>) -> Result<(), WireError> {
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
