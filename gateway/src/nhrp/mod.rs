//! NHRP (RFC 2332) as FlexVPN hubs and spokes speak it over GRE (protocol
//! type 0x2001), with Cisco's Traffic Indication (draft-detienne-dmvpn):
//!
//! - the hub ([`redirect::Redirector`]) sends a Traffic Indication to a
//!   spoke whose traffic to another spoke passed through it, and forwards
//!   Resolution Requests and replies between spokes; it keeps no cache;
//! - a spoke ([`shortcut::Shortcuts`]) resolves the destination through
//!   the hub; the spoke that owns it opens an IKEv2 session to the
//!   requester and answers over it; the requester routes the destination
//!   through the new tunnel until the entry's holding time runs out.
//!
//! Both are state machines without I/O; [`task`] owns the datapath,
//! timers and IKE side; [`show`] renders the operator's views.

pub mod redirect;
pub mod shortcut;
pub mod show;
pub mod task;
pub mod wire;

use std::net::Ipv4Addr;

/// Hop count of the NHRP packets we originate (RFC 2332 section 5.2.0.1:
/// "set to a value sufficient to reach the destination").
pub const HOP_COUNT: u8 = 16;

/// Resolution Request flags (RFC 2332 section 5.2.1): Q, the requester is
/// a router.
pub const FLAG_Q: u16 = 0x8000;
/// Resolution Reply: A, the answer is authoritative (the owner gave it).
pub const FLAG_A: u16 = 0x4000;
/// Purge Request: N, no Purge Reply wanted (section 5.2.5).
pub const FLAG_N: u16 = 0x8000;

/// Error codes of the Error Indication (RFC 2332 section 5.2.7).
pub mod error_code {
    pub const LOOP_DETECTED: u16 = 3;
    pub const PROTOCOL_ADDRESS_UNREACHABLE: u16 = 6;
    pub const HOP_COUNT_EXCEEDED: u16 = 15;
}

/// CIE code of a negative Resolution Reply: no binding exists (section
/// 5.2.2).
pub const CIE_NO_BINDING: u8 = 12;

/// This box as NHRP knows it: its NBMA (outer) address and its address
/// inside the tunnels (the protocol address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Station {
    pub nbma: Ipv4Addr,
    pub protocol: Ipv4Addr,
}
