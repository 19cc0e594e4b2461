//! The two datapaths behind the [`crate::iface::Datapath`] trait, and what
//! they share:
//!
//! - [`kernel`]: ESP in XFRM, an ip_gre link per virtual-access, routes via
//!   rtnetlink, a tc program for hairpin events ([`hairpin`]);
//! - [`userspace`]: ESP-in-UDP + GRE + TUN in worker threads, for kernels
//!   without esp4/ip_gre (and for tests);
//! - [`fake::RecordingDatapath`]: records the calls, for control-plane tests;
//! - [`select`]: which of the two a config and this kernel get;
//! - [`wire`]: the inner-packet codecs (IPv4, GRE, ICMP, the MSS clamp);
//! - [`fib`]: the longest-prefix-match table both keep;
//! - [`show`]: `show interfaces virtual-access` as text.
//!
//! Nothing here reaches up into the control plane (`ike`, `session`, `bgp`,
//! `nhrp`, `spoke`): the datapaths know interfaces, SAs and routes
//! ([`crate::iface`]), the IPsec parameters ([`crate::ipsec`]) and the OS
//! ([`crate::sys`]), nothing more.

pub mod fake;
pub mod fib;
pub mod hairpin;
pub mod kernel;
pub mod select;
pub mod show;
pub mod userspace;
pub mod wire;
