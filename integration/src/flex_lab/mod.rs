//! The FlexVPN lab: a hub, its LAN, our own spokes (`gateway run` with
//! `role = "spoke"`) each with a LAN behind it, and optionally a strongSwan
//! spoke, all in network namespaces of one [`Lab`](crate::Lab). The datapath tests
//! (`tests/datapath_lab.rs`), `cargo xtask demo` and `cargo xtask
//! bench-throughput` use it.
//!
//! ```text
//!   hublan 192.168.0.10 ── 192.168.0.1 [hub] 172.25.1.1 ──┐
//!                                                          │ wan: bridge br0
//!   lan1 192.168.1.10 ── 192.168.1.1 [spoke1] 172.25.1.11 ─┤
//!   lan2 192.168.2.10 ── 192.168.2.1 [spoke2] 172.25.1.12 ─┤
//!                          [swan] 172.25.1.50 (strongSwan) ─┘
//! ```
//!
//! - The hub runs `gateway run` with the userspace datapath, the XDP filter
//!   on its uplink (mode "auto"), one IKEv2 profile for any identity with a
//!   pre-shared key, the pool 10.1.1.100-10.1.1.254, Virtual-Template1
//!   unnumbered to 10.1.1.1, `route_set` 192.168.0.0/16 and 10.1.1.0/24
//!   (pushed to the spokes) and `route_accept` (the spokes' LANs, announced
//!   in their CFG_REQUEST, are installed via their virtual-access).
//! - Spoke k (1-based) is at 172.25.1.(10+k) with LAN 192.168.k.0/24; it
//!   dials the hub from `[tunnel.1]`, gets its Tunnel1 address from the
//!   pool and announces its LAN (`route_set` of its profile).
//! - The strongSwan spoke (charon with kernel-libipsec) asks for a virtual
//!   IP, with `remote_ts = 192.168.0.0/16,10.1.1.0/24`, ESP aes256gcm16.
//! - Every LAN host has a default route via its box; hub and spokes forward.
//!
//! Everything is bounded in time; names come from [`Lab`](crate::Lab) (no collisions
//! with parallel runs) and everything goes when the [`FlexLab`] is dropped.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use integration::flex_lab::{self, FlexLab, LabSpec};
//! use std::time::Duration;
//! let gateway = integration::gateway::gateway_bin()?;
//! let lab = FlexLab::start(&gateway, "doc", &LabSpec::new(2, true))?;
//! lab.wait_sessions(3, Duration::from_secs(30))?;
//! let result = flex_lab::ping(lab.hub_lan(), flex_lab::spoke_lan_host(1), 3)?;
//! assert_eq!(result.received, 3);
//! let bps = flex_lab::iperf3(lab.hub_lan(), flex_lab::HUB_LAN_HOST, lab.spoke_lan(1), 3)?;
//! println!("{:.0} Mbit/s", bps / 1e6);
//! # Ok(()) }
//! ```
//!
//! The code, by concern:
//!
//! - `topology`: addresses, identities, [`LabSpec`], [`BgpSpec`],
//!   [`NhrpSpec`], [`Which`], and [`FlexLab`]'s namespaces and links;
//! - `configs`: the config text of every box ([`hub_config`],
//!   [`spoke_config`], their BGP and NHRP variants, FRR, strongSwan);
//! - `lifecycle`: building the lab, starting and stopping its daemons,
//!   their logs, [`ready`];
//! - `show`: `gateway show ...`, its answers read as the gateway's own
//!   report types (`gateway_report`), and [`nonzero_counters`];
//! - `rekey`: rekeys counted in the logs, and whether the SAs' views hold
//!   only the current SPIs ([`SpiWatch`]);
//! - `swans`: more strongSwan spokes ([`FlexLab::add_swan`]), also behind
//!   a NAT namespace whose port mapping a test can change;
//! - `traffic`: [`ping`] and [`iperf3`];
//! - `capture`: what the hub's uplink carries ([`check_uplink_capture`]).

mod capture;
mod configs;
mod lifecycle;
mod rekey;
mod show;
mod swans;
mod topology;
mod traffic;

pub use capture::{INNER_PREFIXES, UplinkSummary, check_uplink_capture, classify_uplink};
pub use configs::{
    BGP_ASN, DMVPN_LAN, frr_lan_hub_config, frr_spoke_config, hub_bgp_section, hub_config,
    hub_config_nhrp, hub_config_with, hub_profile_section, reference_spoke_params,
    spoke_bgp_section, spoke_config, spoke_config_nhrp, spoke_config_with, strongswan_spoke_params,
    swanctl_reference_hub, with_profile_lines,
};
pub use lifecycle::{missing_tools, ready};
pub use rekey::{
    CHILD_REKEY_LOG, IKE_REKEY_LOG, PEER_MOVED_LOG, RekeyCounts, SpiSnapshot, SpiWatch,
    gateway_child_rekey_spis, gateway_rekeys, parse_spi, strongswan_rekeys,
};
pub use show::nonzero_counters;
pub use swans::{SwanId, SwanSpec, nat_ruleset};
pub use topology::{
    BgpSpec, FlexLab, HUB_ADDRESS, HUB_IDENTITY, HUB_LAN_GATEWAY, HUB_LAN_HOST, HUB_TUNNEL_ADDRESS,
    LabSpec, MAX_OWN_SPOKES, NhrpSpec, POOL_FIRST, POOL_LAST, PSK, STRONGSWAN_ADDRESS,
    STRONGSWAN_IDENTITY, Which, spoke_address, spoke_identity, spoke_lan_gateway, spoke_lan_host,
    spoke_lan_prefix,
};
pub use traffic::{
    FlowResult, IPERF_PORT, PingFlow, PingResult, Reply, Rtt, human_rate, iperf3, iperf3_streams,
    parse_iperf3_json, parse_ping, parse_ping_replies, ping, ping_flow, ping_from, wait_ping,
};

use topology::{GatewayBox, SwanSpoke, router_sysctls};
