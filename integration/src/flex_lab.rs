//! The FlexVPN lab: a hub, its LAN, our own spokes (`gateway run` with
//! `role = "spoke"`) each with a LAN behind it, and optionally a strongSwan
//! spoke, all in network namespaces of one [`Lab`]. The datapath tests
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
//! Everything is bounded in time; names come from [`Lab`] (no collisions
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

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{
    Lab, Link, Netns,
    capture::{Capture, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PcapPacket, read_pcap},
    cmd::{self, tail},
    gateway::Gateway,
    strongswan::{Charon, CharonConfig, SpokeParams},
    wait_until,
};

/// The hub's uplink address (its `local_address`, the spokes' tunnel destination).
pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
/// The hub's address on its LAN.
pub const HUB_LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The host on the hub's LAN.
pub const HUB_LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
/// Virtual-Template1's unnumbered address (the hub's tunnel address).
pub const HUB_TUNNEL_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 254);
/// The strongSwan spoke's uplink address.
pub const STRONGSWAN_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 50);
/// The hub's IKE identity (`fqdn:` in the hub's config).
pub const HUB_IDENTITY: &str = "hub.lab.example";
/// The strongSwan spoke's IKE identity.
pub const STRONGSWAN_IDENTITY: &str = "swan.lab.example";
/// The pre-shared key of every box, both ways.
pub const PSK: &str = "flex-lab-psk-0123456789";
/// The port iperf3 listens on.
pub const IPERF_PORT: u16 = 5201;
/// The most own spokes: their addresses 172.25.1.11.. stay below the
/// strongSwan spoke's 172.25.1.50.
pub const MAX_OWN_SPOKES: usize = 39;
/// Prefixes that only ever appear inside the tunnels: the LANs and the
/// tunnel addresses. On the uplink, an IP header with one of these is
/// cleartext that should have been encrypted.
pub const INNER_PREFIXES: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(10, 1, 1, 0), 24),
];

/// Spoke k's uplink address, 172.25.1.(10+k).
pub fn spoke_address(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 25, 1, 10 + octet(k))
}

/// Spoke k's address on its LAN, 192.168.k.1.
pub fn spoke_lan_gateway(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, octet(k), 1)
}

/// The host on spoke k's LAN, 192.168.k.10.
pub fn spoke_lan_host(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, octet(k), 10)
}

/// Spoke k's LAN prefix, `192.168.k.0/24` (what it announces).
pub fn spoke_lan_prefix(k: usize) -> String {
    format!("192.168.{}.0/24", octet(k))
}

/// Spoke k's IKE identity (without the `fqdn:` of the config).
pub fn spoke_identity(k: usize) -> String {
    format!("spoke{k}.lab.example")
}

fn octet(k: usize) -> u8 {
    u8::try_from(k).unwrap_or(u8::MAX)
}

/// What to build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabSpec {
    /// Own spokes (`gateway run`, `role = "spoke"`), 0..=[`MAX_OWN_SPOKES`].
    pub own_spokes: usize,
    /// A strongSwan spoke at [`STRONGSWAN_ADDRESS`].
    pub strongswan_spoke: bool,
    /// `esp_proposals` for the own spokes' profile (e.g. `["aes256gcm16"]`
    /// to compare with strongSwan); `None`: the gateway's defaults.
    pub spoke_esp_proposals: Option<Vec<String>>,
    /// Routing by iBGP over the tunnels (the seed documents' overlay)
    /// instead of IKE's route pushing.
    pub bgp: Option<BgpSpec>,
    /// The hub and the own spokes run `datapath = "kernel"` (XFRM and
    /// ip_gre; the VM tier) instead of the userspace datapath.
    pub kernel_datapath: bool,
}

impl LabSpec {
    pub fn new(own_spokes: usize, strongswan_spoke: bool) -> Self {
        LabSpec {
            own_spokes,
            strongswan_spoke,
            spoke_esp_proposals: None,
            bgp: None,
            kernel_datapath: false,
        }
    }
}

/// The BGP overlay of the seed configs, AS [`BGP_ASN`]: the hub has
/// `bgp listen range 10.1.1.0/24 peer-group Spokes` (route reflector
/// clients), `network 192.168.0.0/24` (its LAN) and `aggregate-address
/// 192.168.0.0/16 summary-only`; IKE pushes only the tunnel addresses
/// (10.1.1.0/24) and installs nothing the spokes announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpSpec {
    /// Own spokes 1..=n run the gateway's BGP client (`neighbor 10.1.1.1`,
    /// `network` their LAN); the others carry only the tunnel (an FRR
    /// bgpd can run in their namespace, see [`frr_spoke_config`]).
    pub own_bgp_spokes: usize,
    /// A static neighbor on the hub's LAN (the DMVPN hub of the second
    /// seed document): route reflector client, `unsuppress`, and `set ip
    /// next-hop` [`HUB_LAN_GATEWAY`].
    pub lan_neighbor: Option<Ipv4Addr>,
}

/// NHRP on the lab's own spokes (IOS: `ip nhrp network-id 2`, `ip nhrp
/// shortcut virtual-template 1`, `ip nhrp redirect`, `ip nhrp holdtime H`
/// on Tunnel1 and Virtual-Template1), so that spoke-to-spoke traffic
/// hairpinning at the hub makes it send a Traffic Indication and the spokes
/// build shortcut tunnels to each other. Every own spoke gets
/// `virtual_template = 1` in its profile and a `[virtual_template.1]`
/// unnumbered to Tunnel1. A spoke answers resolution requests for what it
/// announces: with [`LabSpec::bgp`] and `own_bgp_spokes`, its LAN by BGP.
///
/// Not a field of [`LabSpec`] (whose struct literals elsewhere name every
/// field): [`FlexLab::new_with_nhrp`] takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NhrpSpec {
    /// `nhrp_holdtime` of the spokes' tunnel and template, in seconds
    /// (IOS `ip nhrp holdtime`; the gateway's default is 7200).
    pub holdtime: u16,
    /// Own spokes (1-based) with `nhrp_shortcut = false` on their tunnel
    /// and template: they get redirects and answer resolutions but never
    /// install a shortcut, so their traffic keeps hairpinning at the hub.
    pub shortcut_off: Vec<usize>,
    /// The hub's `nhrp_redirect_timeout` (IOS `ip nhrp redirect timeout`,
    /// default 8 s): at most one Traffic Indication per (source,
    /// destination) pair per this many seconds. `None`: not in the config.
    pub redirect_timeout: Option<u16>,
}

impl NhrpSpec {
    /// Shortcuts on every spoke, the hub's default redirect timeout.
    pub fn new(holdtime: u16) -> Self {
        NhrpSpec {
            holdtime,
            shortcut_off: Vec::new(),
            redirect_timeout: None,
        }
    }

    /// Whether own spoke k installs shortcuts.
    pub fn shortcut(&self, k: usize) -> bool {
        !self.shortcut_off.contains(&k)
    }
}

/// A config of the lab with the datapath the spec asks for.
fn with_datapath(config: String, spec: &LabSpec) -> String {
    if spec.kernel_datapath {
        config.replace("datapath = \"userspace\"", "datapath = \"kernel\"")
    } else {
        config
    }
}

/// The overlay's AS (the seed documents use 65001).
pub const BGP_ASN: u32 = 65001;

/// The `[bgp]` section of the hub.
pub fn hub_bgp_section(spec: &BgpSpec) -> String {
    let mut text = format!(
        r#"
# IOS: router bgp 65001 / network 192.168.0.0 / bgp listen range
# 10.1.1.0/24 peer-group Spokes / aggregate-address 192.168.0.0
# 255.255.0.0 summary-only / neighbor Spokes route-reflector-client.
[bgp]
asn = {BGP_ASN}
networks = ["192.168.0.0/24"]
aggregates = [{{ prefix = "192.168.0.0/16", summary_only = true }}]
# Short timers: a lab, not a WAN.
timers = {{ keepalive = 5, hold = 15 }}

[[bgp.listen_range]]
prefix = "10.1.1.0/24"
peer_group = "Spokes"

[bgp.peer_group.Spokes]
remote_as = {BGP_ASN}
route_reflector_client = true
"#
    );
    if let Some(n) = spec.lan_neighbor {
        let _ = write!(
            text,
            r#"
# The DMVPN hub: neighbor route-reflector-client, unsuppress-map ALL,
# route-map SET_NEXT_HOP out (set ip next-hop 192.168.0.1).
[[bgp.neighbor]]
address = "{n}"
remote_as = {BGP_ASN}
route_reflector_client = true
unsuppress = true
next_hop = "{HUB_LAN_GATEWAY}"
"#
        );
    }
    text
}

/// The `[bgp]` section of own spoke k (IOS: router bgp 65001 / network
/// 192.168.k.0 / neighbor 10.1.1.1 remote-as 65001).
pub fn spoke_bgp_section(k: usize) -> String {
    format!(
        r#"
[bgp]
asn = {BGP_ASN}
networks = ["{lan}"]
timers = {{ keepalive = 5, hold = 15 }}

[[bgp.neighbor]]
address = "{HUB_TUNNEL_ADDRESS}"
remote_as = {BGP_ASN}
"#,
        lan = spoke_lan_prefix(k),
    )
}

/// FRR's bgpd as spoke k's BGP speaker (its tunnel is the spoke's
/// gateway without `[bgp]`): neighbor the hub's tunnel address, its LAN
/// as a `network`. Without zebra, so `no bgp network import-check`, and
/// an explicit router id (bgpd alone knows no interface address to take
/// one from).
pub fn frr_spoke_config(k: usize) -> String {
    format!(
        "hostname spoke{k}-bgpd\nlog file @DIR@/bgpd.log\n!\nrouter bgp {BGP_ASN}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 5 15\n neighbor {HUB_TUNNEL_ADDRESS} remote-as {BGP_ASN}\n address-family ipv4 unicast\n  network {lan}\n exit-address-family\n!\n",
        lan = spoke_lan_prefix(k),
        id = spoke_address(k),
    )
}

/// A DMVPN spoke's LAN that the DMVPN hub announces (inside the /16
/// aggregate, so the FlexVPN spokes reach it through the summary).
pub const DMVPN_LAN: &str = "192.168.100.0/24";

/// FRR's bgpd as the DMVPN hub on the hub's LAN at `address`: a static
/// iBGP neighbor of our hub, announcing [`DMVPN_LAN`] (the routes of its
/// DMVPN spokes during the migration).
pub fn frr_lan_hub_config(address: Ipv4Addr) -> String {
    format!(
        "hostname dmvpn-hub\nlog file @DIR@/bgpd.log\n!\nrouter bgp {BGP_ASN}\n bgp router-id {address}\n no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 5 15\n neighbor {HUB_LAN_GATEWAY} remote-as {BGP_ASN}\n address-family ipv4 unicast\n  network {DMVPN_LAN}\n exit-address-family\n!\n"
    )
}

/// Which box's gateway to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Hub,
    /// Own spoke k (1-based).
    Spoke(usize),
}

/// A box running our gateway (the hub or an own spoke) and the LAN behind it.
struct GatewayBox {
    netns: Netns,
    uplink: Link,
    /// The box's end of the LAN veth.
    lan_link: Link,
    /// The LAN host's namespace.
    lan: Netns,
    /// The LAN host's end of the LAN veth.
    lan_host_link: Link,
    config: PathBuf,
    socket: PathBuf,
    gateway: Option<Gateway>,
}

/// The strongSwan spoke.
struct SwanSpoke {
    netns: Netns,
    params: SpokeParams,
    /// ESP in the kernel's XFRM (kernel-netlink) instead of
    /// kernel-libipsec: with the kernel datapath, in the VM tier.
    kernel_xfrm: bool,
    charon: Option<Charon>,
}

/// The running lab. Dropping it stops the daemons (strongSwan, the spokes,
/// then the hub) and removes the namespaces.
pub struct FlexLab {
    // Field order is drop order: daemons before their namespaces.
    swan: Option<SwanSpoke>,
    spokes: Vec<GatewayBox>,
    hub: GatewayBox,
    /// The bridge side of the hub's uplink veth.
    hub_port: Link,
    wan: Netns,
    gateway_bin: PathBuf,
    lab: Lab,
}

/// One row of `gateway show crypto session --json` (the daemon's
/// `SaReport`), with what the lab needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// e.g. `fqdn:spoke1.lab.example`.
    pub identity: Option<String>,
    /// The peer's outer address and port, `172.25.1.11/4500`.
    pub remote: String,
    /// `READY` once IKE_AUTH is done, `IN-NEG` before.
    pub status: String,
    pub assigned_address: Option<Ipv4Addr>,
    pub children: usize,
    /// The first CHILD_SA's encryption, e.g. `AES-GCM-256`.
    pub esp: Option<String>,
}

impl Session {
    /// READY with at least one CHILD_SA.
    pub fn is_up(&self) -> bool {
        self.status == "READY" && self.children > 0
    }

    fn from_json(v: &Value) -> Session {
        let s = |key: &str| v[key].as_str().map(ToOwned::to_owned);
        let children = v["children"].as_array().map_or(&[][..], Vec::as_slice);
        Session {
            identity: s("identity"),
            remote: s("remote").unwrap_or_default(),
            status: s("status").unwrap_or_default(),
            assigned_address: v["assigned_address"].as_str().and_then(|a| a.parse().ok()),
            children: children.len(),
            esp: children
                .first()
                .and_then(|c| c["encryption"].as_str())
                .map(ToOwned::to_owned),
        }
    }
}

/// One interface of `gateway show interfaces virtual-access --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualAccess {
    pub name: String,
    /// The spoke's tunnel address (its pool address), if it has one.
    pub peer_inner: Option<Ipv4Addr>,
    /// `172.25.1.11:4500`.
    pub remote_outer: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_spoofed: u64,
    pub tx_too_big: u64,
    pub hairpinned: u64,
}

impl VirtualAccess {
    fn from_json(v: &Value) -> VirtualAccess {
        let n = |key: &str| v[key].as_u64().unwrap_or(0);
        VirtualAccess {
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            peer_inner: v["peer_inner"]
                .as_str()
                .and_then(|a| a.split('/').next()?.parse().ok()),
            remote_outer: v["remote_outer"].as_str().unwrap_or_default().to_owned(),
            rx_packets: n("rx_packets"),
            tx_packets: n("tx_packets"),
            rx_spoofed: n("rx_spoofed"),
            tx_too_big: n("tx_too_big"),
            hairpinned: n("hairpinned"),
        }
    }

    /// The IP part of `remote_outer`.
    pub fn outer_ip(&self) -> Option<Ipv4Addr> {
        self.remote_outer
            .rsplit_once(':')
            .map_or(self.remote_outer.as_str(), |(ip, _)| ip)
            .parse()
            .ok()
    }
}

impl VirtualAccess {
    /// A spoke-to-spoke (shortcut) tunnel: named `Virtual-AccessN` on a
    /// spoke, whose tunnel to the hub is `Tunnel1`.
    pub fn is_virtual_access(&self) -> bool {
        self.name.starts_with("Virtual-Access")
    }
}

/// One entry of `gateway show ip nhrp --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NhrpEntry {
    /// The prefix, e.g. `192.168.2.0/24`.
    pub target: String,
    /// The next hop's tunnel address.
    pub via: Option<Ipv4Addr>,
    /// The next hop's outer (NBMA) address.
    pub nbma: Option<Ipv4Addr>,
    /// e.g. `Virtual-Access1`.
    pub interface: String,
    pub created_s: u64,
    pub expires_s: u64,
    /// e.g. `router`, `rib`, `nho`, `dynamic`.
    pub flags: Vec<String>,
}

impl NhrpEntry {
    fn from_json(v: &Value) -> NhrpEntry {
        let ip = |key: &str| v[key].as_str().and_then(|a| a.parse().ok());
        NhrpEntry {
            target: v["target"].as_str().unwrap_or_default().to_owned(),
            via: ip("via"),
            nbma: ip("nbma"),
            interface: v["interface"].as_str().unwrap_or_default().to_owned(),
            created_s: v["created_s"].as_u64().unwrap_or(0),
            expires_s: v["expires_s"].as_u64().unwrap_or(0),
            flags: v["flags"].as_array().map_or_else(Vec::new, |f| {
                f.iter()
                    .filter_map(|f| f.as_str().map(ToOwned::to_owned))
                    .collect()
            }),
        }
    }
}

/// `gateway show ip nhrp traffic --json`: counter name to value
/// (`redirects_sent`, `resolution_requests_received`, `shortcuts_installed`,
/// ...). A counter the answer lacks reads as 0 through [`NhrpTraffic::get`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NhrpTraffic(pub std::collections::BTreeMap<String, u64>);

impl NhrpTraffic {
    pub fn get(&self, counter: &str) -> u64 {
        self.0.get(counter).copied().unwrap_or(0)
    }

    fn from_json(v: &Value) -> Result<NhrpTraffic> {
        let map = v
            .as_object()
            .with_context(|| format!("`show ip nhrp traffic --json` is not an object: {v}"))?;
        Ok(NhrpTraffic(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect(),
        ))
    }
}

impl std::fmt::Display for NhrpTraffic {
    /// The counters that are not zero, `name=value` separated by spaces.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (k, v) in self.0.iter().filter(|(_, v)| **v != 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        if first {
            f.write_str("(all zero)")?;
        }
        Ok(())
    }
}

/// How often [`FlexLab::start_strongswan`] lets the strongSwan spoke try
/// to connect (each attempt is bounded by `swanctl --initiate --timeout`).
const SWAN_INITIATE_ATTEMPTS: u32 = 3;

impl FlexLab {
    /// [`FlexLab::new`] then [`FlexLab::start_daemons`]: the hub, then the
    /// own spokes, then the strongSwan spoke (which is made to initiate).
    pub fn start(gateway_bin: &Path, tag: &str, spec: &LabSpec) -> Result<FlexLab> {
        let mut lab = FlexLab::new(gateway_bin, tag, spec)?;
        lab.start_daemons()?;
        Ok(lab)
    }

    /// The namespaces, links, addresses, routes and sysctls, and the config
    /// files in the lab's directory; no daemon is started.
    pub fn new(gateway_bin: &Path, tag: &str, spec: &LabSpec) -> Result<FlexLab> {
        FlexLab::new_with_nhrp(gateway_bin, tag, spec, None)
    }

    /// [`FlexLab::start`] with NHRP on the own spokes and the hub
    /// ([`NhrpSpec`]).
    pub fn start_with_nhrp(
        gateway_bin: &Path,
        tag: &str,
        spec: &LabSpec,
        nhrp: &NhrpSpec,
    ) -> Result<FlexLab> {
        let mut lab = FlexLab::new_with_nhrp(gateway_bin, tag, spec, Some(nhrp))?;
        lab.start_daemons()?;
        Ok(lab)
    }

    /// [`FlexLab::new`]; with `nhrp`, the own spokes are NHRP spokes with a
    /// virtual template for shortcuts, and the hub gets the redirect
    /// timeout if the spec has one ([`spoke_config_nhrp`],
    /// [`hub_config_nhrp`]).
    pub fn new_with_nhrp(
        gateway_bin: &Path,
        tag: &str,
        spec: &LabSpec,
        nhrp: Option<&NhrpSpec>,
    ) -> Result<FlexLab> {
        ensure!(
            spec.own_spokes <= MAX_OWN_SPOKES,
            "at most {MAX_OWN_SPOKES} own spokes (asked for {})",
            spec.own_spokes
        );
        let lab = Lab::new(tag)?;
        let dir = lab.temp_dir().to_owned();
        let wan = lab.netns("wan")?;
        wan.ip(["link", "add", "br0", "type", "bridge"])?;
        wan.set_link_up("br0")?;

        let (hub, hub_port) =
            gateway_box(&lab, &wan, "hub", "hublan", HUB_ADDRESS, HUB_LAN_GATEWAY)?;
        let hub = GatewayBox {
            config: dir.join("hub.toml"),
            socket: dir.join("hub.sock"),
            ..hub
        };
        write(
            &hub.config,
            &with_datapath(
                hub_config_nhrp(hub.uplink.name(), &dir, spec.bgp.as_ref(), nhrp),
                spec,
            ),
        )?;

        let mut spokes = Vec::new();
        for k in 1..=spec.own_spokes {
            let (spoke, _) = gateway_box(
                &lab,
                &wan,
                &format!("spoke{k}"),
                &format!("lan{k}"),
                spoke_address(k),
                spoke_lan_gateway(k),
            )?;
            let spoke = GatewayBox {
                config: dir.join(format!("spoke{k}.toml")),
                socket: dir.join(format!("spoke{k}.sock")),
                ..spoke
            };
            write(
                &spoke.config,
                &with_datapath(
                    spoke_config_nhrp(
                        k,
                        spoke.uplink.name(),
                        &dir,
                        spec.spoke_esp_proposals.as_deref(),
                        spec.bgp.as_ref().map(|b| k <= b.own_bgp_spokes),
                        nhrp,
                    ),
                    spec,
                ),
            )?;
            spokes.push(spoke);
        }

        let swan = if spec.strongswan_spoke {
            let netns = lab.netns("swan")?;
            let (uplink, port) = lab.veth(&netns, &wan)?;
            wan.ip(["link", "set", port.name(), "master", "br0"])?;
            uplink.add_addr(&format!("{STRONGSWAN_ADDRESS}/24"))?;
            Some(SwanSpoke {
                netns,
                params: strongswan_spoke_params(),
                kernel_xfrm: spec.kernel_datapath,
                charon: None,
            })
        } else {
            None
        };

        Ok(FlexLab {
            swan,
            spokes,
            hub,
            hub_port,
            wan,
            gateway_bin: gateway_bin.to_owned(),
            lab,
        })
    }

    /// Starts the hub's gateway, each own spoke's, and strongSwan on its
    /// spoke (loaded and initiated: its session is up when this returns).
    /// The own spokes dial by themselves; see [`FlexLab::wait_sessions`].
    pub fn start_daemons(&mut self) -> Result<()> {
        self.start_hub()?;
        for k in 1..=self.spokes.len() {
            self.start_spoke(k)?;
        }
        if self.swan.is_some() {
            self.start_strongswan()?;
        }
        Ok(())
    }

    /// Starts the hub's gateway (waits until its control socket answers).
    pub fn start_hub(&mut self) -> Result<()> {
        ensure!(self.hub.gateway.is_none(), "the hub's gateway is running");
        let gateway = Gateway::start(
            &self.hub.netns,
            &self.gateway_bin,
            &self.hub.config,
            &self.hub.socket,
        )
        .context("starting the hub's gateway")?;
        self.hub.gateway = Some(gateway);
        Ok(())
    }

    /// Stops the hub's gateway (SIGTERM) and returns its log.
    pub fn stop_hub(&mut self) -> Result<String> {
        stop(&mut self.hub, "the hub")
    }

    /// Starts spoke k's gateway; it dials the hub by itself.
    pub fn start_spoke(&mut self, k: usize) -> Result<()> {
        let bin = self.gateway_bin.clone();
        let spoke = self.spoke_box_mut(k)?;
        ensure!(spoke.gateway.is_none(), "spoke {k}'s gateway is running");
        let gateway = Gateway::start(&spoke.netns, &bin, &spoke.config, &spoke.socket)
            .with_context(|| format!("starting spoke {k}'s gateway"))?;
        spoke.gateway = Some(gateway);
        Ok(())
    }

    /// Stops spoke k's gateway (SIGTERM: it may say goodbye to the hub with
    /// an IKE DELETE) and returns its log.
    pub fn stop_spoke(&mut self, k: usize) -> Result<String> {
        let spoke = self.spoke_box_mut(k)?;
        stop(spoke, &format!("spoke {k}"))
    }

    /// Starts charon on the strongSwan spoke, loads its config and
    /// initiates (a few attempts: the hub's IKE rate limit and its start-up
    /// may refuse the first one).
    pub fn start_strongswan(&mut self) -> Result<()> {
        let dir = self.lab.temp_dir().join("swan");
        let swan = self
            .swan
            .as_mut()
            .context("the lab has no strongSwan spoke")?;
        swan.charon = None;
        let mut config = CharonConfig::spoke(&swan.params);
        if swan.kernel_xfrm {
            config.plugins.retain(|p| p != "kernel-libipsec");
        }
        let charon =
            Charon::start(&swan.netns, &dir, &config).context("starting the strongSwan spoke")?;
        charon.load_all()?;
        let mut last = None;
        for _ in 0..SWAN_INITIATE_ATTEMPTS {
            match charon.initiate(&swan.params.name, &swan.params.child) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        swan.charon = Some(charon);
        if let Some(e) = last {
            return Err(e.context(format!(
                "the strongSwan spoke could not connect to the hub\n{}",
                self.hub_log_tail()
            )));
        }
        Ok(())
    }

    /// The underlying [`Lab`] (its temporary directory holds the configs
    /// and every process's log).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The `wan` namespace with the bridge `br0`.
    pub fn wan(&self) -> &Netns {
        &self.wan
    }

    /// The hub's namespace.
    pub fn hub(&self) -> &Netns {
        &self.hub.netns
    }

    /// The hub's uplink (where XDP attaches).
    pub fn hub_uplink(&self) -> &Link {
        &self.hub.uplink
    }

    /// The bridge side of the hub's uplink veth, in [`FlexLab::wan`]: where
    /// to watch the hub's wire ([`FlexLab::capture_hub_uplink`]).
    pub fn hub_uplink_port(&self) -> &Link {
        &self.hub_port
    }

    /// The namespace of the host on the hub's LAN ([`HUB_LAN_HOST`]).
    pub fn hub_lan(&self) -> &Netns {
        &self.hub.lan
    }

    /// The hub LAN host's interface (e.g. for a capture of what reaches it).
    pub fn hub_lan_host_link(&self) -> &Link {
        &self.hub.lan_host_link
    }

    /// The number of own spokes.
    pub fn spoke_count(&self) -> usize {
        self.spokes.len()
    }

    /// Own spoke k's namespace (1-based). Panics if there is no spoke k.
    pub fn spoke(&self, k: usize) -> &Netns {
        &self.spoke_box(k).netns
    }

    /// The namespace of the host on spoke k's LAN ([`spoke_lan_host`]).
    pub fn spoke_lan(&self, k: usize) -> &Netns {
        &self.spoke_box(k).lan
    }

    /// Spoke k's end of its LAN veth (it holds [`spoke_lan_gateway`]).
    pub fn spoke_lan_link(&self, k: usize) -> &Link {
        &self.spoke_box(k).lan_link
    }

    /// The interface of the host on spoke k's LAN.
    pub fn spoke_lan_host_link(&self, k: usize) -> &Link {
        &self.spoke_box(k).lan_host_link
    }

    /// The strongSwan spoke, once started.
    pub fn strongswan(&self) -> Option<&Charon> {
        self.swan.as_ref()?.charon.as_ref()
    }

    /// The strongSwan spoke's namespace, if the lab has one.
    pub fn strongswan_netns(&self) -> Option<&Netns> {
        self.swan.as_ref().map(|s| &s.netns)
    }

    /// The virtual IP the hub gave the strongSwan spoke.
    pub fn strongswan_vip(&self) -> Result<Ipv4Addr> {
        let charon = self
            .strongswan()
            .context("the strongSwan spoke is not running")?;
        let sas = charon.list_sas()?;
        sas.iter()
            .find_map(crate::strongswan::IkeSa::local_vip_v4)
            .with_context(|| format!("the strongSwan spoke has no virtual IP: {sas:#?}"))
    }

    /// The gateway of the hub or of an own spoke.
    pub fn gateway(&self, which: Which) -> Result<&Gateway> {
        let (b, what) = match which {
            Which::Hub => (&self.hub, "the hub".to_owned()),
            Which::Spoke(k) => (self.try_spoke_box(k)?, format!("spoke {k}")),
        };
        b.gateway
            .as_ref()
            .with_context(|| format!("{what}'s gateway is not running"))
    }

    /// The control socket of the hub's or a spoke's gateway (for `gateway
    /// --socket PATH show ...` inside its namespace).
    pub fn socket(&self, which: Which) -> Result<&Path> {
        Ok(match which {
            Which::Hub => &self.hub.socket,
            Which::Spoke(k) => &self.try_spoke_box(k)?.socket,
        })
    }

    /// The config file of the hub or a spoke.
    pub fn config_path(&self, which: Which) -> Result<&Path> {
        Ok(match which {
            Which::Hub => &self.hub.config,
            Which::Spoke(k) => &self.try_spoke_box(k)?.config,
        })
    }

    /// The gateway binary the lab runs.
    pub fn gateway_bin(&self) -> &Path {
        &self.gateway_bin
    }

    /// `gateway show ARGS...` (the text an operator sees).
    pub fn show(&self, on: Which, args: &[&str]) -> Result<String> {
        let mut full = vec!["show"];
        full.extend_from_slice(args);
        self.gateway(on)?.cli_ok(&full)
    }

    /// `gateway show ARGS... --json`, parsed.
    pub fn show_json(&self, on: Which, args: &[&str]) -> Result<Value> {
        self.gateway(on)?.show_json(args)
    }

    /// The hub's sessions (`show crypto session --json`).
    pub fn sessions(&self) -> Result<Vec<Session>> {
        let v = self.show_json(Which::Hub, &["crypto", "session"])?;
        let rows = v
            .as_array()
            .with_context(|| format!("`show crypto session --json` is not a list: {v}"))?;
        Ok(rows.iter().map(Session::from_json).collect())
    }

    /// Polls the hub's sessions (every 250 ms, at most `timeout`) until at
    /// least `n` are up ([`Session::is_up`]); returns the ones up. The
    /// error shows the last answer and the logs.
    pub fn wait_sessions(&self, n: usize, timeout: Duration) -> Result<Vec<Session>> {
        let mut last: Result<Vec<Session>> = Ok(Vec::new());
        let done = wait_until(timeout, Duration::from_millis(250), || {
            last = self.sessions();
            last.as_ref()
                .is_ok_and(|s| s.iter().filter(|s| s.is_up()).count() >= n)
        });
        let seen = match last {
            Ok(sessions) if done => {
                return Ok(sessions.into_iter().filter(Session::is_up).collect());
            }
            Ok(s) => format!("{s:#?}"),
            Err(e) => format!("{e:#}"),
        };
        bail!(
            "fewer than {n} sessions up on the hub after {timeout:?}; last seen: {seen}\n{}",
            self.logs()
        )
    }

    /// The hub's session of own spoke k, if it has one.
    /// Waits until the hub has `n` dynamic BGP neighbors (spokes from its
    /// listen range) Established with one prefix each (their LANs).
    pub fn wait_bgp_spokes(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let summary = self.show_json(Which::Hub, &["bgp", "summary"]);
            let ready = summary.as_ref().ok().map_or(0, |v| {
                v["neighbors"].as_array().map_or(0, |list| {
                    list.iter()
                        .filter(|n| {
                            n["dynamic"] == true
                                && n["state"] == "Established"
                                && n["prefixes_received"] == 1
                        })
                        .count()
                })
            });
            if ready >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{ready} of {n} BGP spokes Established with their prefix after {timeout:?}: {summary:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn spoke_session(&self, k: usize) -> Result<Option<Session>> {
        let id = format!("fqdn:{}", spoke_identity(k));
        Ok(self
            .sessions()?
            .into_iter()
            .find(|s| s.identity.as_deref() == Some(id.as_str())))
    }

    /// The pool address the hub gave own spoke k.
    pub fn spoke_pool_address(&self, k: usize) -> Result<Ipv4Addr> {
        self.spoke_session(k)?
            .and_then(|s| s.assigned_address)
            .with_context(|| format!("the hub has no session with an address for spoke {k}"))
    }

    /// The hub's virtual-access interfaces (`show interfaces
    /// virtual-access --json`, field `virtual_access`).
    pub fn virtual_access(&self) -> Result<Vec<VirtualAccess>> {
        self.virtual_access_on(Which::Hub)
    }

    /// The virtual-access interfaces of the hub or of a spoke (on a spoke:
    /// `Tunnel1` to the hub and its spoke-to-spoke `Virtual-AccessN`).
    pub fn virtual_access_on(&self, on: Which) -> Result<Vec<VirtualAccess>> {
        let v = self.show_json(on, &["interfaces", "virtual-access"])?;
        let list = v["virtual_access"].as_array().with_context(|| {
            format!("`show interfaces virtual-access --json` has no virtual_access list: {v}")
        })?;
        Ok(list.iter().map(VirtualAccess::from_json).collect())
    }

    /// Spoke k's spoke-to-spoke virtual-access to own spoke `peer` (its
    /// outer address is [`spoke_address`]`(peer)`), if it has one.
    pub fn shortcut_tunnel(&self, k: usize, peer: usize) -> Result<Option<VirtualAccess>> {
        let peer = spoke_address(peer);
        Ok(self
            .virtual_access_on(Which::Spoke(k))?
            .into_iter()
            .find(|va| va.is_virtual_access() && va.outer_ip() == Some(peer)))
    }

    /// Every spoke-to-spoke virtual-access of spoke k to own spoke `peer`:
    /// more than one when both opened a tunnel to the other at once (each
    /// answering the other's resolution request).
    pub fn shortcut_tunnels_to(&self, k: usize, peer: usize) -> Result<Vec<VirtualAccess>> {
        let peer = spoke_address(peer);
        Ok(self
            .shortcut_tunnels(k)?
            .into_iter()
            .filter(|va| va.outer_ip() == Some(peer))
            .collect())
    }

    /// Spoke k's spoke-to-spoke virtual-accesses (not its `Tunnel1`).
    pub fn shortcut_tunnels(&self, k: usize) -> Result<Vec<VirtualAccess>> {
        Ok(self
            .virtual_access_on(Which::Spoke(k))?
            .into_iter()
            .filter(VirtualAccess::is_virtual_access)
            .collect())
    }

    /// `gateway show ip nhrp --json`: the NHRP cache (the hub has none).
    pub fn nhrp_entries(&self, on: Which) -> Result<Vec<NhrpEntry>> {
        let v = self.show_json(on, &["ip", "nhrp"])?;
        let list = v["entries"]
            .as_array()
            .with_context(|| format!("`show ip nhrp --json` has no entries list: {v}"))?;
        Ok(list.iter().map(NhrpEntry::from_json).collect())
    }

    /// The NHRP entry for exactly `target` (e.g. `192.168.2.0/24`).
    pub fn nhrp_entry(&self, on: Which, target: &str) -> Result<Option<NhrpEntry>> {
        Ok(self
            .nhrp_entries(on)?
            .into_iter()
            .find(|e| e.target == target))
    }

    /// `gateway show ip nhrp traffic --json`.
    pub fn nhrp_traffic(&self, on: Which) -> Result<NhrpTraffic> {
        NhrpTraffic::from_json(&self.show_json(on, &["ip", "nhrp", "traffic"])?)
    }

    /// `gateway clear ip nhrp`: on the hub, its redirect rate-limit state;
    /// on a spoke, its shortcut entries and spoke-to-spoke tunnels.
    pub fn clear_nhrp(&self, on: Which) -> Result<String> {
        self.gateway(on)?.cli_ok(["clear", "ip", "nhrp"])
    }

    /// The hub's virtual-access whose outer peer address is `outer`.
    pub fn virtual_access_of(&self, outer: Ipv4Addr) -> Result<Option<VirtualAccess>> {
        Ok(self
            .virtual_access()?
            .into_iter()
            .find(|va| va.outer_ip() == Some(outer)))
    }

    /// The hub's virtual-access of own spoke k.
    pub fn spoke_virtual_access(&self, k: usize) -> Result<Option<VirtualAccess>> {
        self.virtual_access_of(spoke_address(k))
    }

    /// Whether the hub's kernel has a route to exactly `prefix` (e.g.
    /// `10.1.1.100/32` or `192.168.1.0/24`), in any table.
    pub fn hub_has_route(&self, prefix: &str) -> Result<bool> {
        let out = self
            .hub
            .netns
            .ip(["-4", "route", "show", "table", "all", "to", "exact", prefix])?;
        Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
    }

    /// The device in spoke k's namespace that holds its tunnel (pool)
    /// address: the gateway's TUN device.
    pub fn spoke_tunnel_device(&self, k: usize) -> Result<String> {
        let address = self.spoke_pool_address(k)?;
        let out = self.spoke(k).ip(["-o", "-4", "addr", "show"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        device_with_address(&text, address)
            .with_context(|| format!("no device in spoke {k}'s namespace holds {address}:\n{text}"))
    }

    /// Starts tcpdump (every packet, no filter) on the wire of the hub's
    /// uplink. It runs on the bridge side of the hub's veth, in the `wan`
    /// namespace: the wire as the WAN sees it, before the hub's XDP program
    /// (which drops some packets before a capture on the hub's side would
    /// see them). The file is `NAME.pcap` in the lab's directory.
    pub fn capture_hub_uplink(&self, name: &str) -> Result<Capture> {
        let path = self.lab.temp_dir().join(format!("{name}.pcap"));
        Capture::start(&self.wan, self.hub_port.name(), "", &path)
    }

    /// The reference to compare our gateways with: strongSwan (charon with
    /// kernel-libipsec, userspace ESP-in-UDP like ours) as the hub, in the
    /// hub's namespace, and as spoke k, in spoke k's, carrying spoke k's LAN
    /// to the hub's LAN (tunnel mode, 192.168.k.0/24 <-> 192.168.0.0/24,
    /// aes256gcm16; recipe: shared/interop/strongswan-hub). The hub's and
    /// spoke k's gateways must be stopped first ([`FlexLab::stop_hub`],
    /// [`FlexLab::stop_spoke`]): the addresses and UDP ports are the same.
    /// Returns (hub, spoke) with the CHILD_SA installed; drop them before
    /// the lab.
    pub fn start_strongswan_reference(&self, k: usize) -> Result<(Charon, Charon)> {
        let spoke = self.try_spoke_box(k)?;
        ensure!(
            self.hub.gateway.is_none() && spoke.gateway.is_none(),
            "stop the hub's and spoke {k}'s gateways first"
        );
        let dir = self.lab.temp_dir();
        let hub = Charon::start(
            &self.hub.netns,
            &dir.join("reference-hub"),
            &CharonConfig::new(swanctl_reference_hub(k)),
        )
        .context("starting the strongSwan reference hub")?;
        hub.load_all()?;
        let params = reference_spoke_params(k);
        let charon = Charon::start(
            &spoke.netns,
            &dir.join(format!("reference-spoke{k}")),
            &CharonConfig::spoke(&params),
        )
        .context("starting the strongSwan reference spoke")?;
        charon.load_all()?;
        charon.initiate(&params.name, &params.child)?;
        Ok((hub, charon))
    }

    fn spoke_box(&self, k: usize) -> &GatewayBox {
        match self.try_spoke_box(k) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    fn try_spoke_box(&self, k: usize) -> Result<&GatewayBox> {
        k.checked_sub(1)
            .and_then(|i| self.spokes.get(i))
            .with_context(|| format!("no spoke {k}: the lab has {} own spokes", self.spokes.len()))
    }

    fn spoke_box_mut(&mut self, k: usize) -> Result<&mut GatewayBox> {
        let n = self.spokes.len();
        k.checked_sub(1)
            .and_then(|i| self.spokes.get_mut(i))
            .with_context(|| format!("no spoke {k}: the lab has {n} own spokes"))
    }

    fn hub_log_tail(&self) -> String {
        log_tail("the hub's gateway", self.hub.gateway.as_ref())
    }

    /// The tails of every daemon's log, for error messages.
    pub fn logs(&self) -> String {
        let mut out = self.hub_log_tail();
        for (i, spoke) in self.spokes.iter().enumerate() {
            out.push_str(&log_tail(
                &format!("spoke {}'s gateway", i + 1),
                spoke.gateway.as_ref(),
            ));
        }
        if let Some(charon) = self.strongswan() {
            let _ = write!(
                out,
                "----- {} (tail) -----\n{}\n",
                charon.log_path().display(),
                tail(charon.log_text().trim_end(), 3000)
            );
        }
        out
    }
}

/// A box (hub or spoke): its namespace as a router (forwarding on, see
/// [`router_sysctls`]), its uplink on the bridge with `address/24`, and a
/// LAN namespace joined by a veth: the box at `lan_gateway/24`, the host at
/// `.10` of the same /24 with its default route via the box. Returns the
/// box (config paths still empty) and the bridge side of its uplink.
fn gateway_box(
    lab: &Lab,
    wan: &Netns,
    label: &str,
    lan_label: &str,
    address: Ipv4Addr,
    lan_gateway: Ipv4Addr,
) -> Result<(GatewayBox, Link)> {
    let netns = lab.netns(label)?;
    router_sysctls(&netns)?;
    let (uplink, port) = lab.veth(&netns, wan)?;
    wan.ip(["link", "set", port.name(), "master", "br0"])?;
    uplink.add_addr(&format!("{address}/24"))?;

    let lan = lab.netns(lan_label)?;
    let (lan_link, host_link) = lab.veth(&netns, &lan)?;
    lan_link.add_addr(&format!("{lan_gateway}/24"))?;
    let [a, b, c, _] = lan_gateway.octets();
    host_link.add_addr(&format!("{}/24", Ipv4Addr::new(a, b, c, 10)))?;
    lan.add_route("default", lan_gateway)?;
    Ok((
        GatewayBox {
            netns,
            uplink,
            lan_link,
            lan,
            lan_host_link: host_link,
            config: PathBuf::new(),
            socket: PathBuf::new(),
            gateway: None,
        },
        port,
    ))
}

/// A namespace that routes between its LAN and its tunnels: `ip_forward`
/// on, and reverse-path filtering off. rp_filter off because the check
/// under test is the gateway's own anti-spoofing (strict reverse path per
/// virtual-access, counted as `rx_spoofed`): with the kernel's strict mode
/// a packet with a forged source would be dropped by the kernel before the
/// gateway could count it, or not, depending on the host's defaults (a new
/// namespace takes them from the kernel or from the host, see
/// `net.core.devconf_inherit_init_net`). Set on `all` and `default` before
/// any interface exists, so the veths and the gateway's TUN device get it
/// too.
fn router_sysctls(netns: &Netns) -> Result<()> {
    netns.sysctl("net.ipv4.ip_forward", "1")?;
    netns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    netns.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn stop(b: &mut GatewayBox, what: &str) -> Result<String> {
    let gateway = b
        .gateway
        .take()
        .with_context(|| format!("{what}'s gateway is not running"))?;
    let log = gateway.process().stderr_path().to_owned();
    let status = gateway.stop()?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    ensure!(
        status.success(),
        "{what}'s gateway exited with {status}; its log:\n{}",
        tail(&text, 4000)
    );
    Ok(text)
}

fn log_tail(what: &str, gateway: Option<&Gateway>) -> String {
    match gateway {
        Some(g) => format!(
            "----- {what} (tail) -----\n{}\n",
            tail(g.process().stderr_text().trim_end(), 3000)
        ),
        None => format!("----- {what}: not running -----\n"),
    }
}

/// The interface holding `address` in `ip -o -4 addr show` output.
fn device_with_address(ip_o_addr: &str, address: Ipv4Addr) -> Option<String> {
    ip_o_addr.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let _index = words.next()?;
        let dev = words.next()?;
        let _inet = words.next().filter(|w| *w == "inet")?;
        let cidr = words.next()?;
        let ip: Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
        (ip == address).then(|| dev.trim_end_matches(':').to_owned())
    })
}

/// The hub's config (`dir` holds its state directory and control socket).
pub fn hub_config(uplink: &str, dir: &Path) -> String {
    hub_config_with(uplink, dir, None)
}

/// The hub's config; with `bgp`, routing is by BGP: IKE pushes only the
/// tunnel addresses and does not install what spokes announce.
pub fn hub_config_with(uplink: &str, dir: &Path, bgp: Option<&BgpSpec>) -> String {
    hub_config_nhrp(uplink, dir, bgp, None)
}

/// [`hub_config_with`]; with `nhrp` and its `redirect_timeout`, the
/// template gets `nhrp_redirect_timeout` (the hub's template always has
/// `nhrp_network_id = 2` and `nhrp_redirect = true`). Without, the text is
/// that of [`hub_config_with`].
pub fn hub_config_nhrp(
    uplink: &str,
    dir: &Path,
    bgp: Option<&BgpSpec>,
    nhrp: Option<&NhrpSpec>,
) -> String {
    let redirect_timeout = nhrp
        .and_then(|n| n.redirect_timeout)
        .map_or_else(String::new, |t| {
            format!(
                "# IOS: ip nhrp redirect timeout {t}: one Traffic Indication per \
                 (source, destination) pair per {t} s.\nnhrp_redirect_timeout = {t}\n"
            )
        });
    let (route_set, route_accept) = if bgp.is_some() {
        (r#"["10.1.1.0/24"]"#, "false")
    } else {
        (r#"["192.168.0.0/16", "10.1.1.0/24"]"#, "true")
    };
    let text = format!(
        r#"# The FlexVPN lab's hub: written by integration::flex_lab.
[hub]
role = "hub"
local_address = "{HUB_ADDRESS}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

# IOS: crypto ikev2 profile Flex_IKEv2 / match identity remote any.
[ikev2.profile.Flex_IKEv2]
match_identity_remote = ["any"]
local_identity = "fqdn:{HUB_IDENTITY}"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Flex_key"
pool = "FlexSpokes"
virtual_template = 1
# Periodic, short: a spoke that vanishes without a DELETE is gone within
# about 15 s (a timed test waits for that).
dpd = {{ interval = 10, retry = 2, mode = "periodic" }}
# IOS: route set interface / route set access-list: the hub's LANs and the
# tunnel addresses, pushed to every spoke as INTERNAL_IP4_SUBNET.
route_set = {route_set}
# IOS: route accept any: install what a spoke announces (its LAN) via its
# virtual-access.
route_accept = {route_accept}

[ikev2.keyring.Flex_key.peer.Any]
address = "0.0.0.0/0"
pre_shared_key_local = "{PSK}"
pre_shared_key_remote = "{PSK}"

[pool.FlexSpokes]
first = "{POOL_FIRST}"
last = "{POOL_LAST}"

[virtual_template.1]
unnumbered = "{HUB_TUNNEL_ADDRESS}"
mtu = 1400
tcp_adjust_mss = 1360
nhrp_network_id = 2
nhrp_redirect = true
{redirect_timeout}
# As in the other labs: the filter on, and an IKE rate that a handful of
# spokes starting at once stays well within.
[xdp]
enabled = true
mode = "auto"
ike_rate = 50
ike_burst = 100
"#,
        state = dir.join("hub-state").display(),
        socket = dir.join("hub.sock").display(),
    );
    match bgp {
        Some(spec) => text + &hub_bgp_section(spec),
        None => text,
    }
}

/// Own spoke k's config (`dir` holds its state directory and control
/// socket). `esp_proposals`: the profile's, if given.
pub fn spoke_config(
    k: usize,
    uplink: &str,
    dir: &Path,
    esp_proposals: Option<&[String]>,
) -> String {
    spoke_config_with(k, uplink, dir, esp_proposals, None)
}

/// Own spoke k's config. `bgp`: `Some(true)` runs the BGP client and
/// announces the LAN by BGP only; `Some(false)` announces nothing (another
/// speaker, such as FRR, does it); `None`: the LAN goes in the CFG_REQUEST.
pub fn spoke_config_with(
    k: usize,
    uplink: &str,
    dir: &Path,
    esp_proposals: Option<&[String]>,
    bgp: Option<bool>,
) -> String {
    spoke_config_nhrp(k, uplink, dir, esp_proposals, bgp, None)
}

/// [`spoke_config_with`]; with `nhrp`, spoke k is an NHRP spoke: its
/// profile has `virtual_template = 1` (shortcut tunnels are cloned from
/// it, both the ones it opens and the ones opened to it), `[tunnel.1]` has
/// the NHRP lines, and `[virtual_template.1]` is unnumbered to Tunnel1 with
/// the same MTU, MSS and NHRP lines (IOS: the seed's `interface
/// Virtual-Template1 type tunnel`). Without, the text is that of
/// [`spoke_config_with`].
pub fn spoke_config_nhrp(
    k: usize,
    uplink: &str,
    dir: &Path,
    esp_proposals: Option<&[String]>,
    bgp: Option<bool>,
    nhrp: Option<&NhrpSpec>,
) -> String {
    let (profile_template, tunnel_nhrp, template_section) =
        nhrp.map_or_else(Default::default, |n| spoke_nhrp_parts(k, n));
    let route_set = if bgp.is_some() {
        String::new()
    } else {
        format!("route_set = [\"{}\"]", spoke_lan_prefix(k))
    };
    let esp = esp_proposals.map_or_else(String::new, |list| {
        let quoted: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
        format!("esp_proposals = [{}]\n", quoted.join(", "))
    });
    let text = format!(
        r#"# The FlexVPN lab's spoke {k}: written by integration::flex_lab.
[hub]
role = "spoke"
local_address = "{address}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

# The hub (hub.lab.example) authenticates with the same key. No pool: a
# spoke takes its Tunnel1 address from the hub's. No virtual_template:
# [tunnel.1] uses the profile, and spoke-to-spoke shortcuts are not part of
# this lab.
[ikev2.profile.Flex_IKEv2]
match_identity_remote = ["any"]
local_identity = "fqdn:{identity}"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Flex_key"
{profile_template}# Announced to the hub in the CFG_REQUEST (the hub has route_accept).
{route_set}
{esp}
[ikev2.keyring.Flex_key.peer.Hub]
address = "0.0.0.0/0"
pre_shared_key_local = "{PSK}"
pre_shared_key_remote = "{PSK}"

# IOS: interface Tunnel1 / ip address negotiated / tunnel destination.
[tunnel.1]
destination = "{HUB_ADDRESS}"
ikev2_profile = "Flex_IKEv2"
mtu = 1400
tcp_adjust_mss = 1360
{tunnel_nhrp}
# The spoke's uplink filter too: it must let the hub's ESP through (spoke
# mode installs its inbound SPI) and drops anything else.
[xdp]
enabled = true
mode = "auto"
{template_section}"#,
        address = spoke_address(k),
        identity = spoke_identity(k),
        state = dir.join(format!("spoke{k}-state")).display(),
        socket = dir.join(format!("spoke{k}.sock")).display(),
    );
    if bgp == Some(true) {
        text + &spoke_bgp_section(k)
    } else {
        text
    }
}

/// The NHRP parts of spoke k's config: the profile's template line, the
/// lines of `[tunnel.1]`, and the `[virtual_template.1]` section.
fn spoke_nhrp_parts(k: usize, nhrp: &NhrpSpec) -> (String, String, String) {
    let shortcut = nhrp.shortcut(k);
    let holdtime = nhrp.holdtime;
    let lines = format!(
        "nhrp_network_id = 2\nnhrp_shortcut = {shortcut}\nnhrp_redirect = true\nnhrp_holdtime = {holdtime}\n"
    );
    let profile = "# Spoke-to-spoke shortcut tunnels (NHRP) are cloned from it.\n\
                   virtual_template = 1\n"
        .to_owned();
    let tunnel = format!(
        "# IOS: ip nhrp network-id 2 / ip nhrp shortcut virtual-template 1 / ip nhrp redirect / \
         ip nhrp holdtime {holdtime}\n{lines}"
    );
    let template = format!(
        "\n# IOS: interface Virtual-Template1 type tunnel / ip unnumbered Tunnel1 (the \
         spoke-to-spoke shortcut tunnels).\n[virtual_template.1]\nunnumbered = \"Tunnel1\"\n\
         mtu = 1400\ntcp_adjust_mss = 1360\n{lines}"
    );
    (profile, tunnel, template)
}

/// The strongSwan spoke: PSK, a virtual IP from the hub's pool, tunnel mode
/// to the hub's LANs and the tunnel addresses, aes256gcm16.
pub fn strongswan_spoke_params() -> SpokeParams {
    let mut p = SpokeParams::new(STRONGSWAN_ADDRESS, HUB_ADDRESS);
    STRONGSWAN_IDENTITY.clone_into(&mut p.local_id);
    HUB_IDENTITY.clone_into(&mut p.remote_id);
    PSK.clone_into(&mut p.psk);
    "aes256gcm16".clone_into(&mut p.esp_proposals);
    "192.168.0.0/16,10.1.1.0/24".clone_into(&mut p.remote_ts);
    p
}

/// The strongSwan reference hub's swanctl.conf: any spoke identity with
/// [`PSK`], tunnel mode from the hub's LAN to spoke k's, aes256gcm16.
pub fn swanctl_reference_hub(k: usize) -> String {
    format!(
        r#"# strongSwan as the hub, the reference (integration::flex_lab).
connections {{
    hub {{
        version = 2
        local_addrs = {HUB_ADDRESS}
        encap = yes
        proposals = aes256-sha256-x25519
        local {{
            auth = psk
            id = "{HUB_IDENTITY}"
        }}
        remote {{
            auth = psk
            # any spoke id
        }}
        children {{
            lans {{
                local_ts = 192.168.0.0/24
                remote_ts = {lan}
                esp_proposals = aes256gcm16
            }}
        }}
    }}
}}
secrets {{
    ike-hub {{
        secret = "{PSK}"
    }}
}}
"#,
        lan = spoke_lan_prefix(k),
    )
}

/// The strongSwan reference spoke k: its LAN to the hub's, no virtual IP.
pub fn reference_spoke_params(k: usize) -> SpokeParams {
    let mut p = SpokeParams::new(spoke_address(k), HUB_ADDRESS);
    p.local_id = spoke_identity(k);
    HUB_IDENTITY.clone_into(&mut p.remote_id);
    PSK.clone_into(&mut p.psk);
    "aes256gcm16".clone_into(&mut p.esp_proposals);
    p.vips = None;
    p.local_ts = Some(spoke_lan_prefix(k));
    "192.168.0.0/24".clone_into(&mut p.remote_ts);
    p
}

/// The gateway binary when a lab test can run here (root, the tools of
/// [`missing_tools`]); otherwise prints why not (`skipped: ...`) and
/// returns `None`.
pub fn ready(strongswan: bool) -> Option<PathBuf> {
    if let Err(e) = crate::require_root() {
        eprintln!("skipped: {e}");
        return None;
    }
    let missing = missing_tools(strongswan);
    if !missing.is_empty() {
        eprintln!(
            "skipped: {} not installed (`cargo xtask setup` installs them)",
            missing.join(", ")
        );
        return None;
    }
    match crate::gateway::gateway_bin() {
        Ok(bin) => Some(bin),
        Err(e) => panic!("{e:#}"),
    }
}

/// Tools the lab needs that are not installed: `ping`, `tcpdump`,
/// `iperf3`, and with `strongswan` charon and swanctl. Empty: all there.
pub fn missing_tools(strongswan: bool) -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = ["ping", "tcpdump", "iperf3", "ss"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if strongswan {
        if !Path::new(crate::strongswan::CHARON).is_file() {
            missing.push("strongSwan charon (/usr/lib/ipsec/charon)");
        }
        if !on_path("swanctl") {
            missing.push("swanctl");
        }
    }
    missing
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

// ---- ping ------------------------------------------------------------------

/// What iputils `ping` reported.
#[derive(Clone, Debug, PartialEq)]
pub struct PingResult {
    pub transmitted: u32,
    pub received: u32,
    /// As printed, e.g. 0.0 or 100.0.
    pub loss_percent: f64,
    /// Round-trip times in milliseconds; `None` when nothing came back.
    pub rtt: Option<Rtt>,
}

/// `rtt min/avg/max/mdev = ...` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rtt {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub mdev: f64,
}

impl PingResult {
    /// Every echo answered.
    pub fn all_received(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

/// Interval between echoes, in seconds (as `ping -i` takes it).
const PING_INTERVAL: &str = "0.2";

/// `ping -c COUNT` from `from` to `to` (0.2 s apart, 1 s for the last
/// answer, bounded in time); lost echoes are not an error.
pub fn ping(from: &Netns, to: Ipv4Addr, count: u32) -> Result<PingResult> {
    ping_with(from, None, to, count)
}

/// [`ping`] from the source address `source` (`ping -I ADDRESS`).
pub fn ping_from(from: &Netns, source: Ipv4Addr, to: Ipv4Addr, count: u32) -> Result<PingResult> {
    ping_with(from, Some(source), to, count)
}

fn ping_with(
    from: &Netns,
    source: Option<Ipv4Addr>,
    to: Ipv4Addr,
    count: u32,
) -> Result<PingResult> {
    let count = count.max(1);
    // No `-w`: with a deadline, iputils ping keeps sending until COUNT
    // answers came back, so a lost echo would change what was sent. Without
    // it, it sends COUNT echoes 0.2 s apart and waits `-W` (1 s) for the
    // last answer: done in about COUNT / 5 + 1 s; the bound below is for a
    // ping that misbehaves.
    let bound = Duration::from_secs(u64::from(count.div_ceil(5)) + 10);
    let mut command = Command::new("ip");
    command.args(["netns", "exec", from.name(), "ping", "-n", "-q"]);
    command.args(["-c", &count.to_string(), "-i", PING_INTERVAL, "-W", "1"]);
    if let Some(source) = source {
        command.args(["-I", &source.to_string()]);
    }
    command.arg(to.to_string());
    let line = cmd::command_line(&command);
    let output = cmd::run_unchecked(&mut command, bound)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_ping(&stdout).with_context(|| {
        format!(
            "`{line}` printed no summary ({}); stdout: {stdout}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// Polls with single pings (bounded by `timeout`) until one is answered:
/// for the moment a path starts to work (routes and SAs installed, ARP).
pub fn wait_ping(from: &Netns, to: Ipv4Addr, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut last = None;
    let ok = wait_until(timeout, Duration::from_millis(100), || {
        let result = ping(from, to, 1);
        let ok = result.as_ref().is_ok_and(|r| r.received > 0);
        last = Some(result);
        ok
    });
    if ok {
        return Ok(());
    }
    bail!(
        "no answer from {to} to pings from netns {} within {:?}; last: {last:?}",
        from.name(),
        started.elapsed()
    )
}

/// Parses the summary of iputils `ping` (`-q` or not).
pub fn parse_ping(text: &str) -> Option<PingResult> {
    let stats = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut transmitted = None;
    let mut received = None;
    let mut loss = None;
    for part in stats.split(',').map(str::trim) {
        let mut words = part.split_whitespace();
        let (Some(number), Some(word)) = (words.next(), words.next()) else {
            continue;
        };
        match word {
            "packets" => transmitted = number.parse().ok(),
            "received" => received = number.parse().ok(),
            "packet" => loss = number.strip_suffix('%').and_then(|n| n.parse().ok()),
            _ => {}
        }
    }
    let rtt = text
        .lines()
        .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
        .and_then(|rest| {
            let numbers: Vec<f64> = rest
                .split_whitespace()
                .next()?
                .split('/')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            let [min, avg, max, mdev] = numbers.as_slice() else {
                return None;
            };
            Some(Rtt {
                min: *min,
                avg: *avg,
                max: *max,
                mdev: *mdev,
            })
        });
    Some(PingResult {
        transmitted: transmitted?,
        received: received?,
        loss_percent: loss?,
        rtt,
    })
}

// ---- iperf3 ----------------------------------------------------------------

/// How long the iperf3 server gets to listen.
const IPERF_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// One TCP stream for `seconds` from `client_ns` to an iperf3 server on
/// `server_addr` in `server_ns` ([`IPERF_PORT`]); returns what the server
/// received, in bits per second. The server is a lab process (`iperf3 -s
/// -1`: one test, then it exits; stopped in any case when this returns).
pub fn iperf3(
    server_ns: &Netns,
    server_addr: Ipv4Addr,
    client_ns: &Netns,
    seconds: u32,
) -> Result<f64> {
    iperf3_streams(server_ns, server_addr, client_ns, seconds, 1)
}

/// [`iperf3`] with `streams` parallel TCP streams (`-P`), summed.
pub fn iperf3_streams(
    server_ns: &Netns,
    server_addr: Ipv4Addr,
    client_ns: &Netns,
    seconds: u32,
    streams: u32,
) -> Result<f64> {
    let port = IPERF_PORT.to_string();
    let addr = server_addr.to_string();
    let mut server = Command::new("iperf3");
    server.args(["-s", "-1", "-B", &addr, "-p", &port]);
    let server = server_ns.spawn(&server)?;
    let listening = wait_until(IPERF_LISTEN_TIMEOUT, Duration::from_millis(50), || {
        !server.is_running() || tcp_listening(server_ns, IPERF_PORT)
    });
    ensure!(
        listening && server.is_running(),
        "the iperf3 server on {addr} in netns {} did not listen within {IPERF_LISTEN_TIMEOUT:?}: {}",
        server_ns.name(),
        server.stderr_text().trim()
    );

    let mut client = Command::new("ip");
    client.args(["netns", "exec", client_ns.name(), "iperf3", "-c", &addr]);
    client.args(["-p", &port, "-t", &seconds.to_string()]);
    client.args(["-P", &streams.max(1).to_string()]);
    client.args(["--json", "--connect-timeout", "3000"]);
    let line = cmd::command_line(&client);
    let output = cmd::run_unchecked(&mut client, Duration::from_secs(u64::from(seconds) + 20))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = parse_iperf3_json(&stdout).with_context(|| {
        format!(
            "`{line}` ({}): stderr: {}; server: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            server.stderr_text().trim()
        )
    });
    // It exits by itself after one test; if the test failed, stop it.
    if server.wait_timeout(Duration::from_secs(2)).is_err() {
        let _ = server.terminate();
    }
    result
}

fn tcp_listening(netns: &Netns, port: u16) -> bool {
    let filter = format!("sport = :{port}");
    netns
        .exec_unchecked(["ss", "-H", "-l", "-t", "-n", &filter])
        .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// `end.sum_received.bits_per_second` of `iperf3 --json` output; its
/// `error` when it reports one.
pub fn parse_iperf3_json(text: &str) -> Result<f64> {
    let v: Value = serde_json::from_str(text)
        .with_context(|| format!("iperf3 printed no JSON: {}", tail(text, 2000)))?;
    if let Some(error) = v["error"].as_str() {
        bail!("iperf3: {error}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| "iperf3's JSON has no end.sum_received.bits_per_second".to_owned())
}

/// `1.23 Gbit/s`, `456.7 Mbit/s`.
pub fn human_rate(bits_per_second: f64) -> String {
    if bits_per_second >= 1e9 {
        format!("{:.2} Gbit/s", bits_per_second / 1e9)
    } else if bits_per_second >= 1e6 {
        format!("{:.1} Mbit/s", bits_per_second / 1e6)
    } else {
        format!("{:.1} kbit/s", bits_per_second / 1e3)
    }
}

// ---- what the uplink carries ---------------------------------------------

/// What a capture of the hub's uplink held, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkSummary {
    pub packets: usize,
    /// IKE: UDP 500, and UDP 4500 behind the non-ESP marker.
    pub ike: usize,
    /// ESP in UDP 4500 (RFC 3948).
    pub esp_in_udp: usize,
    /// NAT-T keepalives (a single 0xff on UDP 4500).
    pub nat_keepalives: usize,
    /// Non-first fragments of UDP between outer addresses.
    pub udp_fragments: usize,
    /// ARP, IGMP to 224.0.0.0/24, and IPv6 neighbour discovery / MLD on
    /// link-local addresses.
    pub link_control: usize,
    /// What should not be there, one line per packet (packet number first).
    pub violations: Vec<String>,
}

impl std::fmt::Display for UplinkSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} packets: {} IKE, {} ESP-in-UDP, {} NAT-T keepalives, {} UDP fragments, \
             {} ARP/IGMP/ND, {} not allowed",
            self.packets,
            self.ike,
            self.esp_in_udp,
            self.nat_keepalives,
            self.udp_fragments,
            self.link_control,
            self.violations.len()
        )
    }
}

/// Reads a capture of the hub's uplink ([`FlexLab::capture_hub_uplink`])
/// and fails unless it holds only IKE and ESP-in-UDP (plus NAT-T
/// keepalives, ARP, IGMP and IPv6 link-local control): no ICMP, TCP or other UDP,
/// no raw ESP, no IP header with an inner address ([`INNER_PREFIXES`]) and
/// no ESP payload that looks like a cleartext inner IPv4 header. Returns
/// the summary; check `esp_in_udp > 0` to know traffic was there at all.
pub fn check_uplink_capture(pcap: &Path) -> Result<UplinkSummary> {
    let packets = read_pcap(pcap)?;
    let summary = classify_uplink(&packets, INNER_PREFIXES);
    if summary.violations.is_empty() {
        return Ok(summary);
    }
    let shown: Vec<&str> = summary
        .violations
        .iter()
        .take(20)
        .map(String::as_str)
        .collect();
    bail!(
        "{} carries more than IKE and ESP-in-UDP: {summary}\n{}{}",
        pcap.display(),
        shown.join("\n"),
        if summary.violations.len() > shown.len() {
            format!("\n... and {} more", summary.violations.len() - shown.len())
        } else {
            String::new()
        }
    )
}

const IKE_PORT: u16 = 500;
const NATT_PORT: u16 = 4500;

fn in_prefixes(a: Ipv4Addr, prefixes: &[(Ipv4Addr, u8)]) -> bool {
    prefixes.iter().any(|&(p, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        u32::from(a) & mask == u32::from(p) & mask
    })
}

/// Sorts each packet of an uplink capture into [`UplinkSummary`]; see
/// [`check_uplink_capture`]. `inner`: prefixes that must never show in an
/// IP header on the uplink.
pub fn classify_uplink(packets: &[PcapPacket], inner: &[(Ipv4Addr, u8)]) -> UplinkSummary {
    let mut s = UplinkSummary {
        packets: packets.len(),
        ..UplinkSummary::default()
    };
    for (i, p) in packets.iter().enumerate() {
        let n = i + 1;
        match p.network_layer() {
            None => s
                .violations
                .push(format!("#{n}: unreadable frame ({} bytes)", p.data.len())),
            Some((ETHERTYPE_ARP, _)) => s.link_control += 1,
            Some((ETHERTYPE_IPV6, ip)) => {
                if ipv6_link_control(ip) {
                    s.link_control += 1;
                } else {
                    s.violations
                        .push(format!("#{n}: IPv6 other than link-local ND/MLD"));
                }
            }
            Some((ETHERTYPE_IPV4, ip)) => classify_ipv4(&mut s, n, ip, inner),
            Some((ethertype, _)) => s
                .violations
                .push(format!("#{n}: ethertype {ethertype:#06x}")),
        }
    }
    s
}

fn classify_ipv4(s: &mut UplinkSummary, n: usize, ip: &[u8], inner: &[(Ipv4Addr, u8)]) {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        s.violations.push(format!("#{n}: truncated IPv4 header"));
        return;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let protocol = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let what = format!("#{n}: {src} -> {dst} protocol {protocol}");
    if in_prefixes(src, inner) || in_prefixes(dst, inner) {
        s.violations
            .push(format!("{what}: an inner address in cleartext"));
        return;
    }
    let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ihl < 20 || total < ihl {
        s.violations.push(format!("{what}: bad header length"));
        return;
    }
    let payload = &ip[ihl..total];
    // IGMP to the link-local multicast block: what an interface says by
    // itself when it comes up.
    if protocol == 2 && dst.octets()[..3] == [224, 0, 0] {
        s.link_control += 1;
        return;
    }
    match protocol {
        17 if fragment_offset != 0 => s.udp_fragments += 1,
        17 => classify_udp(s, &what, payload, inner),
        1 => s.violations.push(format!("{what}: ICMP")),
        6 => {
            let dport = payload
                .get(2..4)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            s.violations.push(format!("{what}: TCP to port {dport}"));
        }
        50 => s
            .violations
            .push(format!("{what}: raw ESP (expected ESP-in-UDP)")),
        _ => s.violations.push(format!("{what}: not IKE or ESP-in-UDP")),
    }
}

fn classify_udp(s: &mut UplinkSummary, what: &str, udp: &[u8], inner: &[(Ipv4Addr, u8)]) {
    if udp.len() < 8 {
        s.violations.push(format!("{what}: truncated UDP header"));
        return;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let data = &udp[8..];
    if sport == NATT_PORT || dport == NATT_PORT {
        if data == [0xff] {
            s.nat_keepalives += 1;
        } else if data.len() >= 4 && data[..4] == [0, 0, 0, 0] {
            s.ike += 1;
        } else if data.len() >= 8 {
            if let Some(at) = cleartext_ipv4_at(&data[8..], inner) {
                s.violations.push(format!(
                    "{what}: UDP {sport} -> {dport}: ESP payload holds a cleartext IPv4 header \
                     with inner addresses at byte {at}"
                ));
            } else {
                s.esp_in_udp += 1;
            }
        } else {
            s.violations.push(format!(
                "{what}: UDP {sport} -> {dport}: {} bytes, neither IKE nor ESP",
                data.len()
            ));
        }
    } else if sport == IKE_PORT || dport == IKE_PORT {
        s.ike += 1;
    } else {
        s.violations.push(format!("{what}: UDP {sport} -> {dport}"));
    }
}

/// Where `data` holds something shaped like an IPv4 header (version 4,
/// IHL 5) with both addresses in `inner`: an ESP payload that was not
/// encrypted (ESP-NULL, or a bug). Random ciphertext matches with a chance
/// of about 2^-40 per byte position.
fn cleartext_ipv4_at(data: &[u8], inner: &[(Ipv4Addr, u8)]) -> Option<usize> {
    data.windows(20).position(|w| {
        w[0] == 0x45
            && in_prefixes(Ipv4Addr::new(w[12], w[13], w[14], w[15]), inner)
            && in_prefixes(Ipv4Addr::new(w[16], w[17], w[18], w[19]), inner)
    })
}

/// IPv6 neighbour discovery (133-137) or MLD (130-132, 143) from a
/// link-local or unspecified source: what a veth says by itself.
fn ipv6_link_control(ip: &[u8]) -> bool {
    if ip.len() < 40 {
        return false;
    }
    let src_ok = ip[8..24].iter().all(|b| *b == 0) || (ip[8] == 0xfe && ip[9] & 0xc0 == 0x80);
    if !src_ok {
        return false;
    }
    let mut next = ip[6];
    let mut at = 40;
    // A hop-by-hop options header (router alert) comes before MLD.
    if next == 0 {
        let Some(&len) = ip.get(at + 1) else {
            return false;
        };
        next = ip[at];
        at += (usize::from(len) + 1) * 8;
    }
    next == 58 && ip.get(at).is_some_and(|t| matches!(t, 130..=137 | 143))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::capture::{LINKTYPE_ETHERNET, parse_pcap, write_pcap};
    use crate::frame::{self, Ipv4Frame};

    const SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 11);

    fn classify(frames: &[Vec<u8>]) -> UplinkSummary {
        let packets = parse_pcap(&write_pcap(LINKTYPE_ETHERNET, frames)).unwrap();
        classify_uplink(&packets, INNER_PREFIXES)
    }

    fn esp(spi: u32, body: &[u8]) -> Vec<u8> {
        let mut p = spi.to_be_bytes().to_vec();
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(body);
        frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 4500, 4500, &p)
    }

    #[test]
    fn ike_and_esp_in_udp_pass() {
        let ike500 = frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 500, 500, &[1; 28]);
        let mut marked = vec![0, 0, 0, 0];
        marked.extend_from_slice(&[2; 28]);
        let ike4500 = frame::ethernet_ipv4_udp(HUB_ADDRESS, SPOKE, 4500, 4500, &marked);
        let keepalive = frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 4500, 4500, &[0xff]);
        let fragment = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 17)
            .fragment_offset(185)
            .payload(&[9; 100])
            .build();
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        arp.extend_from_slice(&[0; 28]);
        let igmp = Ipv4Frame::new(Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(224, 0, 0, 22), 2)
            .payload(&[0x22; 16])
            .build();
        let s = classify(&[
            igmp,
            ike500,
            ike4500,
            esp(0x1234, &[0x5a; 100]),
            keepalive,
            fragment,
            arp,
        ]);
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(
            (
                s.ike,
                s.esp_in_udp,
                s.nat_keepalives,
                s.udp_fragments,
                s.link_control
            ),
            (2, 1, 1, 1, 2),
            "{s}"
        );
    }

    #[test]
    fn cleartext_is_caught() {
        let lan1 = Ipv4Addr::new(192, 168, 1, 10);
        let hub_lan = HUB_LAN_HOST;
        // An inner packet leaked as is, with inner addresses.
        let icmp_inner = Ipv4Frame::new(lan1, hub_lan, 1)
            .payload(&[8, 0, 0, 0])
            .build();
        // ICMP and TCP between outer addresses.
        let icmp_outer = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 1)
            .payload(&[8; 8])
            .build();
        let mut tcp = IPERF_PORT.to_be_bytes().to_vec();
        tcp.splice(0..0, 40000u16.to_be_bytes());
        tcp.extend_from_slice(&[0; 16]);
        let tcp = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 6).payload(&tcp).build();
        // Raw ESP, other UDP, and ESP-NULL carrying GRE + the inner packet.
        let raw_esp = Ipv4Frame::new(SPOKE, HUB_ADDRESS, 50)
            .payload(&[1; 40])
            .build();
        let udp = frame::ethernet_ipv4_udp(SPOKE, HUB_ADDRESS, 5000, 53, &[0; 10]);
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(
            &Ipv4Frame::new(lan1, hub_lan, 1)
                .payload(&[8, 0, 0, 0])
                .build_ipv4(),
        );
        let null = esp(0x1234, &gre);
        let s = classify(&[icmp_inner, icmp_outer, tcp, raw_esp, udp, null]);
        assert_eq!(s.violations.len(), 6, "{:#?}", s.violations);
        assert!(
            s.violations[0].contains("inner address"),
            "{}",
            s.violations[0]
        );
        assert!(s.violations[1].contains("ICMP"));
        assert!(
            s.violations[2].contains("TCP to port 5201"),
            "{}",
            s.violations[2]
        );
        assert!(s.violations[3].contains("raw ESP"));
        assert!(s.violations[4].contains("5000 -> 53"));
        assert!(s.violations[5].contains("cleartext IPv4 header"));
        assert_eq!(s.esp_in_udp, 0);
    }

    #[test]
    fn ipv6_link_local_control_is_tolerated_and_other_ipv6_is_not() {
        let v6 = |src0: u8, next: u8, icmp_type: u8| {
            let mut f = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1];
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0, 0, 8, next, 255];
            let mut src = [0u8; 16];
            src[0] = src0;
            src[1] = if src0 == 0xfe { 0x80 } else { 0 };
            ip.extend_from_slice(&src);
            ip.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            if next == 0 {
                // hop-by-hop: next 58, length 0 (8 bytes)
                ip.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
            }
            ip.extend_from_slice(&[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
            f.extend_from_slice(&ip);
            f
        };
        let s = classify(&[
            v6(0xfe, 58, 135),
            v6(0xfe, 0, 143),
            v6(0x20, 58, 135),
            v6(0xfe, 58, 128),
        ]);
        assert_eq!(s.link_control, 2, "{s} {:?}", s.violations);
        assert_eq!(s.violations.len(), 2, "{:?}", s.violations);
    }

    #[test]
    fn parses_iputils_ping() {
        let ok = "PING 192.168.1.10 (192.168.1.10) 56(84) bytes of data.\n\n\
                  --- 192.168.1.10 ping statistics ---\n\
                  5 packets transmitted, 5 received, 0% packet loss, time 803ms\n\
                  rtt min/avg/max/mdev = 0.045/0.061/0.080/0.014 ms\n";
        let r = parse_ping(ok).unwrap();
        assert!(r.all_received());
        assert_eq!((r.transmitted, r.received), (5, 5));
        assert!((r.rtt.unwrap().avg - 0.061).abs() < 1e-9);
        let lost = "--- 192.168.0.10 ping statistics ---\n\
                    3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2034ms\n";
        let r = parse_ping(lost).unwrap();
        assert_eq!((r.transmitted, r.received, r.rtt), (3, 0, None));
        assert!((r.loss_percent - 100.0).abs() < 1e-9);
        assert!(!r.all_received());
        let some = "4 packets transmitted, 3 received, 25% packet loss, time 3004ms\n\
                    rtt min/avg/max/mdev = 1.0/2.0/3.0/0.5 ms, pipe 2\n";
        let r = parse_ping(some).unwrap();
        assert_eq!(r.received, 3);
        assert!((r.loss_percent - 25.0).abs() < 1e-9);
        assert!((r.rtt.unwrap().max - 3.0).abs() < 1e-9);
        assert_eq!(parse_ping("ping: connect: Network is unreachable\n"), None);
    }

    #[test]
    fn parses_iperf3_json() {
        let ok = r#"{"start":{},"intervals":[],"end":{"sum_sent":{"bits_per_second":2.0e9},
                    "sum_received":{"bits_per_second":1.5e9}}}"#;
        assert!((parse_iperf3_json(ok).unwrap() - 1.5e9).abs() < 1.0);
        let err = r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#;
        let e = parse_iperf3_json(err).unwrap_err();
        assert!(format!("{e}").contains("Connection refused"), "{e}");
        assert!(parse_iperf3_json("iperf3: error").is_err());
        assert_eq!(human_rate(1.5e9), "1.50 Gbit/s");
        assert_eq!(human_rate(2.5e8), "250.0 Mbit/s");
    }

    #[test]
    fn finds_the_tunnel_device() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    5: gw-va    inet 10.1.1.100/32 scope global gw-va\\       valid_lft forever\n";
        assert_eq!(
            device_with_address(text, Ipv4Addr::new(10, 1, 1, 100)).as_deref(),
            Some("gw-va")
        );
        assert_eq!(
            device_with_address(text, Ipv4Addr::new(10, 1, 1, 101)),
            None
        );
    }

    #[test]
    fn sessions_and_virtual_access_from_json() {
        let row: Value = serde_json::from_str(
            r#"{"tunnel_id":1,"local":"172.25.1.1/4500","remote":"172.25.1.11/4500",
               "status":"READY","identity":"fqdn:spoke1.lab.example","assigned_address":"10.1.1.100",
               "children":[{"spi_in":"c0010001","spi_out":"d0020002","mode":"transport",
                            "encryption":"AES-GCM-256","local_ts":[],"remote_ts":[]}]}"#,
        )
        .unwrap();
        let s = Session::from_json(&row);
        assert!(s.is_up());
        assert_eq!(s.assigned_address, Some(Ipv4Addr::new(10, 1, 1, 100)));
        assert_eq!(s.esp.as_deref(), Some("AES-GCM-256"));
        let va: Value = serde_json::from_str(
            r#"{"id":1,"name":"Virtual-Access1","peer_inner":"10.1.1.100",
               "remote_outer":"172.25.1.11:4500","mtu":1400,"rx_packets":5,"rx_bytes":420,
               "tx_packets":5,"tx_bytes":420,"rx_spoofed":2,"tx_too_big":0,"hairpinned":3}"#,
        )
        .unwrap();
        let va = VirtualAccess::from_json(&va);
        assert_eq!(va.outer_ip(), Some(SPOKE));
        assert_eq!(va.peer_inner, Some(Ipv4Addr::new(10, 1, 1, 100)));
        assert_eq!((va.rx_spoofed, va.hairpinned), (2, 3));
    }

    #[test]
    fn nhrp_entries_and_traffic_from_json() {
        let v: Value = serde_json::from_str(
            r#"{"target":"192.168.2.0/24","via":"10.1.1.102","nbma":"172.16.1.102",
               "interface":"Virtual-Access1","created_s":3,"expires_s":5,
               "flags":["router","rib","nho","dynamic"]}"#,
        )
        .unwrap();
        let e = NhrpEntry::from_json(&v);
        assert_eq!(e.target, "192.168.2.0/24");
        assert_eq!(e.via, Some(Ipv4Addr::new(10, 1, 1, 102)));
        assert_eq!(e.nbma, Some(Ipv4Addr::new(172, 16, 1, 102)));
        assert_eq!(
            (e.interface.as_str(), e.created_s, e.expires_s),
            ("Virtual-Access1", 3, 5)
        );
        assert_eq!(e.flags, ["router", "rib", "nho", "dynamic"]);
        let t: Value =
            serde_json::from_str(r#"{"redirects_sent":2,"redirects_suppressed":0}"#).unwrap();
        let t = NhrpTraffic::from_json(&t).unwrap();
        assert_eq!((t.get("redirects_sent"), t.get("malformed")), (2, 0));
        assert_eq!(t.to_string(), "redirects_sent=2");
        assert!(NhrpTraffic::from_json(&Value::Null).is_err());
    }

    #[test]
    fn nhrp_configs_only_add_to_the_plain_ones() {
        let dir = Path::new("/tmp/lab");
        let bgp = BgpSpec {
            own_bgp_spokes: 2,
            lan_neighbor: None,
        };
        assert_eq!(
            hub_config_nhrp("u", dir, Some(&bgp), Some(&NhrpSpec::new(8))),
            hub_config_with("u", dir, Some(&bgp))
        );
        let nhrp = NhrpSpec {
            holdtime: 8,
            shortcut_off: vec![2],
            redirect_timeout: Some(2),
        };
        let hub = hub_config_nhrp("u", dir, Some(&bgp), Some(&nhrp));
        assert!(hub.contains("nhrp_redirect = true\n# IOS: ip nhrp redirect timeout 2"));
        assert!(hub.contains("\nnhrp_redirect_timeout = 2\n"));
        for k in 1..=2 {
            let plain = spoke_config_with(k, "u", dir, None, Some(true));
            let text = spoke_config_nhrp(k, "u", dir, None, Some(true), Some(&nhrp));
            assert!(!plain.contains("nhrp_") && !plain.contains("virtual_template ="));
            assert!(text.contains("keyring = \"Flex_key\"\n# Spoke-to-spoke"));
            assert!(text.contains("\nvirtual_template = 1\n"));
            assert!(text.contains("[virtual_template.1]\nunnumbered = \"Tunnel1\"\n"));
            assert_eq!(text.matches("nhrp_holdtime = 8\n").count(), 2);
            assert_eq!(text.matches("nhrp_network_id = 2\n").count(), 2);
            let shortcut = format!("nhrp_shortcut = {}\n", k != 2);
            assert_eq!(text.matches(&shortcut).count(), 2, "{text}");
        }
    }

    #[test]
    fn addressing() {
        assert_eq!(spoke_address(1), Ipv4Addr::new(172, 25, 1, 11));
        assert!(spoke_address(MAX_OWN_SPOKES) < STRONGSWAN_ADDRESS);
        assert_eq!(spoke_lan_host(2), Ipv4Addr::new(192, 168, 2, 10));
        assert_eq!(spoke_lan_prefix(3), "192.168.3.0/24");
        assert!(in_prefixes(spoke_lan_host(7), INNER_PREFIXES));
        assert!(in_prefixes(POOL_FIRST, INNER_PREFIXES));
        assert!(!in_prefixes(HUB_ADDRESS, INNER_PREFIXES));
    }
}
