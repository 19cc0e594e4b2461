//! The OPEN this speaker sends and the RFC 4271 section 6.2 checks of the
//! peer's that need the session's settings: what the session agrees on.

use std::net::Ipv4Addr;

use super::Fsm;
use crate::bgp::types::{AS_TRANS, Capability, Notification, Open};
use crate::bgp::wire::{cap, error_code, open_subcode};

/// AFI and SAFI of IPv4 unicast.
const AFI_IPV4: u16 = 1;
const SAFI_UNICAST: u8 = 1;
/// The pre-standard route refresh capability IOS still sends beside 2.
const CAP_ROUTE_REFRESH_CISCO: u8 = 128;

/// What the session agreed on, known once the peer's OPEN is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_router_id: Ipv4Addr,
    /// Seconds; 0: no hold timer, no keepalives.
    pub hold_time: u16,
    /// Seconds between our KEEPALIVEs.
    pub keepalive: u16,
    /// Always true: a session without it is refused.
    pub four_octet_as: bool,
    /// The peer can be sent ROUTE-REFRESH (RFC 2918, or Cisco's code 128).
    pub route_refresh: bool,
    /// IPv4 unicast is exchanged: the peer announced it, or announced no
    /// multiprotocol capability at all (RFC 4760 section 8).
    pub ipv4_unicast: bool,
    /// Everything the peer announced, for `show bgp neighbors`.
    pub peer_capabilities: Vec<Capability>,
}

impl Fsm {
    pub(super) fn our_open(&self) -> Open {
        Open {
            my_as: u16::try_from(self.config.local_as).unwrap_or(AS_TRANS),
            hold_time: self.config.hold_time,
            router_id: self.config.router_id,
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: AFI_IPV4,
                    safi: SAFI_UNICAST,
                },
                Capability::RouteRefresh,
                Capability::FourOctetAs(self.config.local_as),
            ],
        }
    }

    /// RFC 4271 section 6.2 checks that need the session's settings (the
    /// codec has checked the version and the encoding).
    pub(super) fn check_open(&self, open: &Open) -> Result<Negotiated, Notification> {
        let open_error = |subcode, data| Notification {
            code: error_code::OPEN_MESSAGE,
            subcode,
            data,
        };
        let four_octet = open
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)));
        if !four_octet {
            let mut ours = vec![cap::FOUR_OCTET_AS, 4];
            ours.extend_from_slice(&self.config.local_as.to_be_bytes());
            return Err(open_error(open_subcode::UNSUPPORTED_CAPABILITY, ours));
        }
        let peer_as = open.asn();
        if peer_as != self.config.peer_as {
            return Err(open_error(open_subcode::BAD_PEER_AS, vec![]));
        }
        if matches!(open.hold_time, 1 | 2) {
            return Err(open_error(open_subcode::UNACCEPTABLE_HOLD_TIME, vec![]));
        }
        if open.router_id.is_unspecified()
            || (self.config.is_ibgp() && open.router_id == self.config.router_id)
        {
            return Err(open_error(open_subcode::BAD_BGP_IDENTIFIER, vec![]));
        }
        let hold_time = self.config.hold_time.min(open.hold_time);
        let keepalive = match (hold_time, self.config.keepalive) {
            (0, _) => 0,
            (hold, 0) => hold / 3,
            (hold, keepalive) => keepalive.min(hold / 3),
        };
        let families: Vec<(u16, u8)> = open
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
                _ => None,
            })
            .collect();
        let ipv4_unicast = families.is_empty() || families.contains(&(AFI_IPV4, SAFI_UNICAST));
        let route_refresh = open.capabilities.iter().any(|c| match c {
            Capability::RouteRefresh => true,
            Capability::Other { code, .. } => *code == CAP_ROUTE_REFRESH_CISCO,
            _ => false,
        });
        Ok(Negotiated {
            peer_as,
            peer_router_id: open.router_id,
            hold_time,
            keepalive,
            four_octet_as: true,
            route_refresh,
            ipv4_unicast,
            peer_capabilities: open.capabilities.clone(),
        })
    }
}
