//! OPEN (RFC 4271 section 4.2) with its Capabilities optional parameter
//! (RFC 5492), in the RFC 9072 extended format when it needs it.

use std::net::Ipv4Addr;

use super::{BGP_VERSION, PARAM_CAPABILITIES, WireError, be16, be32, field, put8, put16};
use crate::bgp::types::{Capability, Open};

/// Capability codes this speaker interprets (RFC 5492 registry).
pub mod cap {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const FOUR_OCTET_AS: u8 = 65;
}

pub(super) fn parse_open(body: &[u8]) -> Result<Open, WireError> {
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
pub(super) fn optional_parameters_len(capabilities: &[Capability]) -> usize {
    match capabilities_len(capabilities) {
        0 => 0,
        caps if caps + 2 <= 255 => 2 + caps,
        caps => 6 + caps,
    }
}

pub(super) fn emit_open(open: &Open, out: &mut Vec<u8>) -> Result<(), WireError> {
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
