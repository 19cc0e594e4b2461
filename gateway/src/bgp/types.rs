//! The BGP values the codec, the state machine and the RIB share. They
//! hold what this speaker understands (IPv4 unicast, 4-byte AS numbers,
//! route refresh, route reflection); anything else from the wire is kept as
//! raw attributes so it can be passed on unchanged (RFC 4271 section 5:
//! optional transitive attributes).

use std::net::Ipv4Addr;

use crate::net::Ipv4Prefix;

/// RFC 4271 section 5.1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// An AS_PATH segment (RFC 4271 section 4.3), with 4-byte AS numbers
/// (RFC 6793).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
}

/// A path attribute this speaker does not interpret, kept byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE that carries NLRI.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: Vec<AsSegment>,
    pub next_hop: Ipv4Addr,
    pub med: Option<u32>,
    /// iBGP only (RFC 4271 section 5.1.5).
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    /// (AS, router id) of the speaker that aggregated (section 5.1.7).
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    /// RFC 4456 section 8.
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub other: Vec<RawAttribute>,
}

/// An UPDATE message (RFC 4271 section 4.3), IPv4 unicast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Prefix>,
    /// Present when `nlri` is not empty.
    pub attributes: Option<PathAttributes>,
    pub nlri: Vec<Ipv4Prefix>,
}

/// Capabilities this speaker knows (RFC 5492); others are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// AFI/SAFI (RFC 4760); IPv4 unicast is (1, 1).
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    /// RFC 2918.
    RouteRefresh,
    /// RFC 6793.
    FourOctetAs(u32),
    Other {
        code: u8,
        value: Vec<u8>,
    },
}

/// An OPEN message (RFC 4271 section 4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The 2-byte field: `AS_TRANS` (23456) when the real AS needs 4 bytes.
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The peer's AS: the 4-octet capability if present (RFC 6793 4.1).
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }
}

/// A NOTIFICATION (RFC 4271 section 4.5): error code, subcode, data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// The five message types this speaker handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// RFC 2918: AFI, SAFI.
    RouteRefresh {
        afi: u16,
        safi: u8,
    },
}

/// `AS_TRANS` (RFC 6793 section 9).
pub const AS_TRANS: u16 = 23456;
