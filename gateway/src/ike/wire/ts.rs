//! The Traffic Selector payloads TSi and TSr (RFC 7296 §3.13).
//!
//! ```text
//! Payload body                          Traffic selector
//! +-------+-----------------------+     +-------+-------+---------------+
//! |Num TSs|       RESERVED        |     |TS Type|IP Prot|Selector Length|
//! +-------+-----------------------+     +-------+-------+---------------+
//! | Traffic Selectors ...         |     |  Start Port   |   End Port    |
//! +-------------------------------+     +---------------+---------------+
//!                                       | Starting Address ...          |
//!                                       | Ending Address ...            |
//!                                       +-------------------------------+
//! ```
//!
//! IPv4 selectors are 16 bytes and IPv6 ones 40, exactly. A selector of
//! unknown type is read with the same layout (ports, then two addresses of
//! equal length), which keeps every byte of it for re-emission.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use super::WireError;
use super::bytes::{Field, be16, fit_u8, fit_u16, need};
use super::payload::Body;

mod field {
    use super::Field;

    pub const NUM_TS: usize = 0;
    pub const PAYLOAD_HEADER_LEN: usize = 4;

    pub const TS_TYPE: usize = 0;
    pub const IP_PROTOCOL: usize = 1;
    pub const SELECTOR_LENGTH: Field = 2..4;
    pub const START_PORT: Field = 4..6;
    pub const END_PORT: Field = 6..8;
    pub const SELECTOR_HEADER_LEN: usize = 8;
}

const IPV4_SELECTOR_LEN: usize = field::SELECTOR_HEADER_LEN + 2 * 4;
const IPV6_SELECTOR_LEN: usize = field::SELECTOR_HEADER_LEN + 2 * 16;

codepoint! {
    /// Traffic selector types (IANA "IKEv2 Traffic Selector Types").
    pub enum TsType(u8) {
        Ipv4AddrRange = 7 => "TS_IPV4_ADDR_RANGE",
        Ipv6AddrRange = 8 => "TS_IPV6_ADDR_RANGE",
    }
}

impl TsType {
    /// The selector length this type requires, when it is known.
    const fn selector_len(self) -> Option<usize> {
        match self {
            Self::Ipv4AddrRange => Some(IPV4_SELECTOR_LEN),
            Self::Ipv6AddrRange => Some(IPV6_SELECTOR_LEN),
            Self::Unknown(_) => None,
        }
    }
}

/// One traffic selector: an address range, a protocol (0 = any) and a port
/// range (0-65535 = any; for ICMP, type and code).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    pub ts_type: TsType,
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: Vec<u8>,
    pub end_addr: Vec<u8>,
}

impl TrafficSelector {
    pub fn ipv4(
        ip_protocol: u8,
        ports: RangeInclusive<u16>,
        start: Ipv4Addr,
        end: Ipv4Addr,
    ) -> Self {
        Self {
            ts_type: TsType::Ipv4AddrRange,
            ip_protocol,
            start_port: *ports.start(),
            end_port: *ports.end(),
            start_addr: start.octets().to_vec(),
            end_addr: end.octets().to_vec(),
        }
    }

    pub fn ipv6(
        ip_protocol: u8,
        ports: RangeInclusive<u16>,
        start: Ipv6Addr,
        end: Ipv6Addr,
    ) -> Self {
        Self {
            ts_type: TsType::Ipv6AddrRange,
            ip_protocol,
            start_port: *ports.start(),
            end_port: *ports.end(),
            start_addr: start.octets().to_vec(),
            end_addr: end.octets().to_vec(),
        }
    }

    /// The address range of an IPv4 selector.
    pub fn as_ipv4(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        if self.ts_type != TsType::Ipv4AddrRange {
            return None;
        }
        let start = <[u8; 4]>::try_from(self.start_addr.as_slice()).ok()?;
        let end = <[u8; 4]>::try_from(self.end_addr.as_slice()).ok()?;
        Some((start.into(), end.into()))
    }

    /// The address range of an IPv6 selector.
    pub fn as_ipv6(&self) -> Option<(Ipv6Addr, Ipv6Addr)> {
        if self.ts_type != TsType::Ipv6AddrRange {
            return None;
        }
        let start = <[u8; 16]>::try_from(self.start_addr.as_slice()).ok()?;
        let end = <[u8; 16]>::try_from(self.end_addr.as_slice()).ok()?;
        Some((start.into(), end.into()))
    }

    pub fn ports(&self) -> RangeInclusive<u16> {
        self.start_port..=self.end_port
    }

    pub fn buffer_len(&self) -> usize {
        field::SELECTOR_HEADER_LEN + self.start_addr.len() + self.end_addr.len()
    }

    /// One selector at the start of `bytes` and its length.
    fn parse(bytes: &[u8], offset: usize) -> Result<(Self, usize), WireError> {
        const WHAT: &str = "traffic selector";
        need(bytes, field::SELECTOR_HEADER_LEN, WHAT, offset)?;
        let ts_type = TsType::from(bytes[field::TS_TYPE]);
        let length = usize::from(be16(&bytes[field::SELECTOR_LENGTH]));
        let invalid = |reason| WireError::Invalid {
            what: WHAT,
            offset,
            field: "selector length",
            value: length,
            reason,
        };
        match ts_type.selector_len() {
            Some(required) if length != required => {
                return Err(invalid(
                    "not the length of this selector type (16 for IPv4, 40 for IPv6)",
                ));
            }
            None if length < field::SELECTOR_HEADER_LEN => {
                return Err(invalid("shorter than the 8-byte selector header"));
            }
            None if !(length - field::SELECTOR_HEADER_LEN).is_multiple_of(2) => {
                return Err(invalid("leaves an odd number of bytes for two addresses"));
            }
            _ => {}
        }
        need(bytes, length, WHAT, offset)?;
        let addr_len = (length - field::SELECTOR_HEADER_LEN) / 2;
        let end_at = field::SELECTOR_HEADER_LEN + addr_len;
        let selector = Self {
            ts_type,
            ip_protocol: bytes[field::IP_PROTOCOL],
            start_port: be16(&bytes[field::START_PORT]),
            end_port: be16(&bytes[field::END_PORT]),
            start_addr: bytes[field::SELECTOR_HEADER_LEN..end_at].to_vec(),
            end_addr: bytes[end_at..length].to_vec(),
        };
        Ok((selector, length))
    }

    /// Writes the selector into `buf` (exactly `buffer_len()` bytes).
    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        const WHAT: &str = "traffic selector";
        let length = self.buffer_len();
        if self.start_addr.len() != self.end_addr.len() {
            return Err(WireError::Unencodable {
                what: WHAT,
                reason: "its start and end addresses differ in length",
            });
        }
        if self
            .ts_type
            .selector_len()
            .is_some_and(|required| required != length)
        {
            return Err(WireError::Unencodable {
                what: WHAT,
                reason: "its addresses are not the size its type requires",
            });
        }
        buf[field::TS_TYPE] = self.ts_type.into();
        buf[field::IP_PROTOCOL] = self.ip_protocol;
        buf[field::SELECTOR_LENGTH]
            .copy_from_slice(&fit_u16(length, WHAT, "selector length")?.to_be_bytes());
        buf[field::START_PORT].copy_from_slice(&self.start_port.to_be_bytes());
        buf[field::END_PORT].copy_from_slice(&self.end_port.to_be_bytes());
        let end_at = field::SELECTOR_HEADER_LEN + self.start_addr.len();
        buf[field::SELECTOR_HEADER_LEN..end_at].copy_from_slice(&self.start_addr);
        buf[end_at..].copy_from_slice(&self.end_addr);
        Ok(())
    }
}

/// The TSi / TSr payload body: the selectors.
impl Body for Vec<TrafficSelector> {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        const WHAT: &str = "TS payload";
        need(body, field::PAYLOAD_HEADER_LEN, WHAT, offset)?;
        let count = body[field::NUM_TS];
        let mut selectors = Vec::with_capacity(count.into());
        let mut pos = field::PAYLOAD_HEADER_LEN;
        for _ in 0..count {
            let (selector, len) = TrafficSelector::parse(&body[pos..], offset + pos)?;
            selectors.push(selector);
            pos += len;
        }
        if pos != body.len() {
            return Err(WireError::TrailingBytes {
                what: WHAT,
                offset: offset + pos,
                extra: body.len() - pos,
            });
        }
        Ok(selectors)
    }

    fn body_len(&self) -> usize {
        field::PAYLOAD_HEADER_LEN + self.iter().map(TrafficSelector::buffer_len).sum::<usize>()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf[field::NUM_TS] = fit_u8(self.len(), "TS payload", "number of TSs")?;
        buf[1..field::PAYLOAD_HEADER_LEN].fill(0);
        let mut pos = field::PAYLOAD_HEADER_LEN;
        for selector in self {
            let len = selector.buffer_len();
            selector.emit(&mut buf[pos..pos + len])?;
            pos += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};

    /// Two selectors: 10.1.1.100/32 any, and GRE from 10.1.2.0/24.
    const TWO: [u8; 36] = [
        0x02, 0x00, 0x00, 0x00, // 2 selectors
        0x07, 0x00, 0x00, 0x10, 0x00, 0x00, 0xff, 0xff, // IPv4, any, 16 bytes, 0-65535
        10, 1, 1, 100, 10, 1, 1, 100, //
        0x07, 0x2f, 0x00, 0x10, 0x00, 0x00, 0xff, 0xff, // IPv4, GRE
        10, 1, 2, 0, 10, 1, 2, 255,
    ];

    fn two() -> Vec<TrafficSelector> {
        vec![
            TrafficSelector::ipv4(0, 0..=65535, [10, 1, 1, 100].into(), [10, 1, 1, 100].into()),
            TrafficSelector::ipv4(47, 0..=65535, [10, 1, 2, 0].into(), [10, 1, 2, 255].into()),
        ]
    }

    #[test]
    fn deconstruct() {
        let selectors = Vec::<TrafficSelector>::parse_body(&TWO, 0).unwrap();
        assert_eq!(selectors.len(), 2);
        assert_eq!(selectors[1].ip_protocol, 47);
        assert_eq!(selectors[1].ports(), 0..=65535);
        assert_eq!(
            selectors[1].as_ipv4(),
            Some((Ipv4Addr::new(10, 1, 2, 0), Ipv4Addr::new(10, 1, 2, 255)))
        );
        assert_eq!(selectors[1].as_ipv6(), None);
    }

    #[test]
    fn construct() {
        assert_eq!(emit_into_junk(&two()), TWO);
    }

    #[test]
    fn parse() {
        assert_eq!(Vec::<TrafficSelector>::parse_body(&TWO, 0).unwrap(), two());
    }

    #[test]
    fn round_trip_ipv6_and_unknown_type_into_junk() {
        let selectors = vec![
            TrafficSelector::ipv6(6, 179..=179, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST),
            TrafficSelector {
                ts_type: TsType::Unknown(9),
                ip_protocol: 1,
                start_port: 2,
                end_port: 3,
                start_addr: vec![4, 5, 6],
                end_addr: vec![7, 8, 9],
            },
        ];
        let bytes = emit_into_junk(&selectors);
        assert_eq!(bytes.len(), 4 + 40 + 14);
        let parsed = Vec::<TrafficSelector>::parse_body(&bytes, 0).unwrap();
        assert_eq!(parsed, selectors);
        assert_eq!(
            parsed[0].as_ipv6(),
            Some((Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn truncated() {
        every_truncation_fails::<Vec<TrafficSelector>>(&TWO, &[]);
    }

    #[test]
    fn malformed() {
        let mut bytes = TWO;
        bytes[7] = 0x0c; // IPv4 selector claiming 12 bytes
        assert!(matches!(
            Vec::<TrafficSelector>::parse_body(&bytes, 100),
            Err(WireError::Invalid {
                what: "traffic selector",
                offset: 104,
                field: "selector length",
                value: 12,
                ..
            })
        ));

        let mut bytes = TWO;
        bytes[0] = 1; // one selector declared, two present
        assert_eq!(
            Vec::<TrafficSelector>::parse_body(&bytes, 0),
            Err(WireError::TrailingBytes {
                what: "TS payload",
                offset: 20,
                extra: 16
            })
        );

        let mut bytes = TWO;
        bytes[0] = 3; // three declared, two present
        assert!(matches!(
            Vec::<TrafficSelector>::parse_body(&bytes, 0),
            Err(WireError::Truncated { offset: 36, .. })
        ));

        let mut bytes = TWO;
        bytes[4] = 99; // unknown type, 16 bytes: still parses
        bytes[7] = 0x07; // ... but 7 bytes is shorter than the header
        assert!(Vec::<TrafficSelector>::parse_body(&bytes, 0).is_err());
        bytes[7] = 0x0b; // 11: odd address bytes
        assert!(Vec::<TrafficSelector>::parse_body(&bytes, 0).is_err());
    }

    #[test]
    fn unencodable() {
        let mut selector = two().remove(0);
        selector.end_addr.push(0);
        let mut buf = vec![0; vec![selector.clone()].body_len()];
        assert!(vec![selector.clone()].emit_body(&mut buf).is_err());
        selector.start_addr.push(0);
        let mut buf = vec![0; vec![selector.clone()].body_len()];
        assert!(vec![selector].emit_body(&mut buf).is_err(), "5-byte IPv4");
    }
}
