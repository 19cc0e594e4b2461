//! Spoke mode: this gateway as a FlexVPN spoke, like the IOS spoke of the
//! seed configs (`interface Tunnel1`, `ip address negotiated`, `tunnel
//! destination <hub>`, `tunnel protection ipsec profile`). It dials the hub
//! with IKEv2, takes its Tunnel1 address from the hub's pool, carries GRE
//! over ESP transport mode through the same datapath as the hub, routes
//! what the hub pushes (its summary) into the tunnel and announces its own
//! LAN (`route_set`). When the hub goes away it dials again with backoff.
//!
//! - [`hub`]: the tunnel to the hub (`[tunnel.N]` resolved against its
//!   profile, the dial/backoff loop, routes, BGP told of them);
//! - [`dialer`]: tunnels dialled to other spokes for NHRP shortcuts;
//! - `exchange`: the IKE exchanges both run as initiator (dial with
//!   retransmissions, liveness checks, goodbye);
//! - [`show`]: `show interfaces tunnel`.

pub mod dialer;
mod exchange;
pub mod hub;
pub mod show;

pub use dialer::{ShortcutDialer, ShortcutEvent};
pub use hub::{SpokeRunner, SpokeTunnel};
