//! Path attributes (RFC 4271 sections 4.3, 5 and 6.3; RFC 1997
//! communities; RFC 4456 route reflection), with 4-octet AS numbers
//! (RFC 6793). Attributes this speaker does not interpret are kept raw.

use std::net::Ipv4Addr;

use super::{WireError, be16, be32, put8, put16};
use crate::bgp::types::{AsSegment, Origin, PathAttributes, RawAttribute};

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

/// The attributes of one UPDATE while they are read.
#[derive(Default)]
pub(super) struct Attributes {
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
    pub(super) fn finish(self, has_nlri: bool) -> Result<Option<PathAttributes>, WireError> {
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
pub(super) fn parse_attributes(mut buf: &[u8]) -> Result<Attributes, WireError> {
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

pub(super) fn attributes_len(attrs: &PathAttributes) -> usize {
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

pub(super) fn emit_attributes(attrs: &PathAttributes, out: &mut Vec<u8>) -> Result<(), WireError> {
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
