//! The Configuration payload (RFC 7296 §3.15): how a spoke asks for an
//! address (CFG_REQUEST) and the hub hands out the pool lease, DNS servers
//! and the FlexVPN routes (CFG_REPLY with INTERNAL_IP4_SUBNET).
//!
//! ```text
//! Payload body                          Attribute
//! +-------+-----------------------+     +-+-------------+---------------+
//! |CFGType|       RESERVED        |     |R| Attr. Type  |    Length     |
//! +-------+-----------------------+     +-+-------------+---------------+
//! | Configuration Attributes ...  |     | Value ...                     |
//! +-------------------------------+     +-------------------------------+
//! ```
//!
//! The R bit is reserved: ignored on receipt, sent as zero; the attribute
//! type has the remaining 15 bits.

use std::net::Ipv4Addr;

use super::WireError;
use super::bytes::{Field, be16, fit_u16, need};
use super::payload::Body;

mod field {
    use super::Field;

    pub const CFG_TYPE: usize = 0;
    pub const PAYLOAD_HEADER_LEN: usize = 4;

    pub const ATTRIBUTE_TYPE: Field = 0..2;
    pub const ATTRIBUTE_LENGTH: Field = 2..4;
    pub const ATTRIBUTE_HEADER_LEN: usize = 4;
}

const ATTRIBUTE_TYPE_MASK: u16 = 0x7fff;

codepoint! {
    /// Configuration payload types (IANA "IKEv2 Configuration Payload CFG
    /// Type").
    pub enum CfgType(u8) {
        Request = 1 => "CFG_REQUEST",
        Reply = 2 => "CFG_REPLY",
        Set = 3 => "CFG_SET",
        Ack = 4 => "CFG_ACK",
    }
}

codepoint! {
    /// Configuration attribute types (IANA "IKEv2 Configuration Payload
    /// Attribute Types").
    pub enum ConfigAttributeType(u16) {
        InternalIp4Address = 1 => "INTERNAL_IP4_ADDRESS",
        InternalIp4Netmask = 2 => "INTERNAL_IP4_NETMASK",
        InternalIp4Dns = 3 => "INTERNAL_IP4_DNS",
        InternalIp4Nbns = 4 => "INTERNAL_IP4_NBNS",
        InternalIp4Dhcp = 6 => "INTERNAL_IP4_DHCP",
        ApplicationVersion = 7 => "APPLICATION_VERSION",
        InternalIp6Address = 8 => "INTERNAL_IP6_ADDRESS",
        InternalIp6Dns = 10 => "INTERNAL_IP6_DNS",
        InternalIp6Dhcp = 12 => "INTERNAL_IP6_DHCP",
        /// An IPv4 address and netmask (8 bytes): FlexVPN's pushed routes.
        InternalIp4Subnet = 13 => "INTERNAL_IP4_SUBNET",
        SupportedAttributes = 14 => "SUPPORTED_ATTRIBUTES",
        InternalIp6Subnet = 15 => "INTERNAL_IP6_SUBNET",
        /// RFC 8598.
        InternalDnsDomain = 25 => "INTERNAL_DNS_DOMAIN",
    }
}

/// A Configuration payload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub cfg_type: CfgType,
    pub attributes: Vec<ConfigAttribute>,
}

/// One configuration attribute. A request carries them empty ("give me an
/// address") or with a preferred value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAttribute {
    pub kind: ConfigAttributeType,
    pub value: Vec<u8>,
}

impl ConfigAttribute {
    /// An attribute without value, as in a CFG_REQUEST.
    pub const fn empty(kind: ConfigAttributeType) -> Self {
        Self {
            kind,
            value: Vec::new(),
        }
    }

    /// An attribute holding one IPv4 address (INTERNAL_IP4_ADDRESS, _DNS,
    /// _NETMASK, ...).
    pub fn ipv4(kind: ConfigAttributeType, address: Ipv4Addr) -> Self {
        Self {
            kind,
            value: address.octets().to_vec(),
        }
    }

    /// The value as an IPv4 address, when it is four bytes.
    pub fn as_ipv4(&self) -> Option<Ipv4Addr> {
        <[u8; 4]>::try_from(self.value.as_slice())
            .ok()
            .map(Ipv4Addr::from)
    }

    pub fn buffer_len(&self) -> usize {
        field::ATTRIBUTE_HEADER_LEN + self.value.len()
    }
}

impl Config {
    /// The first attribute of type `kind`.
    pub fn attribute(&self, kind: ConfigAttributeType) -> Option<&ConfigAttribute> {
        self.attributes
            .iter()
            .find(|attribute| attribute.kind == kind)
    }
}

impl Body for Config {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        const WHAT: &str = "configuration attribute";
        need(body, field::PAYLOAD_HEADER_LEN, "CP payload", offset)?;
        let mut attributes = Vec::new();
        let mut pos = field::PAYLOAD_HEADER_LEN;
        while pos < body.len() {
            let rest = &body[pos..];
            need(rest, field::ATTRIBUTE_HEADER_LEN, WHAT, offset + pos)?;
            let kind = be16(&rest[field::ATTRIBUTE_TYPE]) & ATTRIBUTE_TYPE_MASK;
            let len =
                field::ATTRIBUTE_HEADER_LEN + usize::from(be16(&rest[field::ATTRIBUTE_LENGTH]));
            need(rest, len, WHAT, offset + pos)?;
            attributes.push(ConfigAttribute {
                kind: kind.into(),
                value: rest[field::ATTRIBUTE_HEADER_LEN..len].to_vec(),
            });
            pos += len;
        }
        Ok(Self {
            cfg_type: body[field::CFG_TYPE].into(),
            attributes,
        })
    }

    fn body_len(&self) -> usize {
        field::PAYLOAD_HEADER_LEN
            + self
                .attributes
                .iter()
                .map(ConfigAttribute::buffer_len)
                .sum::<usize>()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf[field::CFG_TYPE] = self.cfg_type.into();
        buf[1..field::PAYLOAD_HEADER_LEN].fill(0);
        let mut pos = field::PAYLOAD_HEADER_LEN;
        for attribute in &self.attributes {
            let len = attribute.buffer_len();
            let out = &mut buf[pos..pos + len];
            let kind = u16::from(attribute.kind) & ATTRIBUTE_TYPE_MASK;
            let value_len = fit_u16(attribute.value.len(), "configuration attribute", "length")?;
            out[field::ATTRIBUTE_TYPE].copy_from_slice(&kind.to_be_bytes());
            out[field::ATTRIBUTE_LENGTH].copy_from_slice(&value_len.to_be_bytes());
            out[field::ATTRIBUTE_HEADER_LEN..].copy_from_slice(&attribute.value);
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

    /// CFG_REPLY: address 10.1.1.100, DNS 10.1.1.1, route 192.168.0.0/16.
    const REPLY: [u8; 32] = [
        0x02, 0x00, 0x00, 0x00, // CFG_REPLY
        0x00, 0x01, 0x00, 0x04, 10, 1, 1, 100, // INTERNAL_IP4_ADDRESS
        0x00, 0x03, 0x00, 0x04, 10, 1, 1, 1, // INTERNAL_IP4_DNS
        0x00, 0x0d, 0x00, 0x08, 192, 168, 0, 0, 255, 255, 0, 0, // INTERNAL_IP4_SUBNET
    ];

    fn reply() -> Config {
        Config {
            cfg_type: CfgType::Reply,
            attributes: vec![
                ConfigAttribute::ipv4(
                    ConfigAttributeType::InternalIp4Address,
                    Ipv4Addr::new(10, 1, 1, 100),
                ),
                ConfigAttribute::ipv4(
                    ConfigAttributeType::InternalIp4Dns,
                    Ipv4Addr::new(10, 1, 1, 1),
                ),
                ConfigAttribute {
                    kind: ConfigAttributeType::InternalIp4Subnet,
                    value: vec![192, 168, 0, 0, 255, 255, 0, 0],
                },
            ],
        }
    }

    #[test]
    fn deconstruct() {
        let config = Config::parse_body(&REPLY, 0).unwrap();
        assert_eq!(config.cfg_type, CfgType::Reply);
        assert_eq!(config.attributes.len(), 3);
        let address = config
            .attribute(ConfigAttributeType::InternalIp4Address)
            .unwrap();
        assert_eq!(address.as_ipv4(), Some(Ipv4Addr::new(10, 1, 1, 100)));
    }

    #[test]
    fn construct() {
        assert_eq!(emit_into_junk(&reply()), REPLY);
    }

    #[test]
    fn parse() {
        assert_eq!(Config::parse_body(&REPLY, 0).unwrap(), reply());
    }

    #[test]
    fn round_trip_request_and_unknown_attribute_into_junk() {
        let request = Config {
            cfg_type: CfgType::Request,
            attributes: vec![
                ConfigAttribute::empty(ConfigAttributeType::InternalIp4Address),
                ConfigAttribute::empty(ConfigAttributeType::InternalIp6Dns),
                ConfigAttribute {
                    kind: ConfigAttributeType::Unknown(28_673),
                    value: b"cisco".to_vec(),
                },
            ],
        };
        let bytes = emit_into_junk(&request);
        assert_eq!(&bytes[..8], [1, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(Config::parse_body(&bytes, 0).unwrap(), request);
    }

    #[test]
    fn reserved_bit_is_ignored() {
        let mut bytes = REPLY;
        bytes[4] |= 0x80;
        assert_eq!(Config::parse_body(&bytes, 0).unwrap(), reply());
    }

    #[test]
    fn truncated() {
        // Attributes are not counted: a cut between two is a shorter list.
        every_truncation_fails::<Config>(&REPLY, &[4, 12, 20]);
    }

    #[test]
    fn attribute_length_past_the_end() {
        let mut bytes = REPLY;
        bytes[23] = 9;
        assert_eq!(
            Config::parse_body(&bytes, 50),
            Err(WireError::Truncated {
                what: "configuration attribute",
                offset: 70,
                needed: 13,
                available: 12
            })
        );
    }
}
