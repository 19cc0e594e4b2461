//! Who is where: the lab's addresses and identities, what to build
//! ([`LabSpec`], [`BgpSpec`], [`NhrpSpec`]), and the running lab's
//! namespaces and links ([`FlexLab`] and its accessors).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::{
    Lab, Link, Netns,
    gateway::Gateway,
    strongswan::{Charon, SpokeParams},
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
/// The most own spokes: their addresses 172.25.1.11.. stay below the
/// strongSwan spoke's 172.25.1.50.
pub const MAX_OWN_SPOKES: usize = 39;

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

/// The BGP overlay of the seed configs, AS [`BGP_ASN`](super::BGP_ASN): the hub has
/// `bgp listen range 10.1.1.0/24 peer-group Spokes` (route reflector
/// clients), `network 192.168.0.0/24` (its LAN) and `aggregate-address
/// 192.168.0.0/16 summary-only`; IKE pushes only the tunnel addresses
/// (10.1.1.0/24) and installs nothing the spokes announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpSpec {
    /// Own spokes 1..=n run the gateway's BGP client (`neighbor 10.1.1.1`,
    /// `network` their LAN); the others carry only the tunnel (an FRR
    /// bgpd can run in their namespace, see [`frr_spoke_config`](super::frr_spoke_config)).
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
/// Which box's gateway to talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Hub,
    /// Own spoke k (1-based).
    Spoke(usize),
}

/// A box running our gateway (the hub or an own spoke) and the LAN behind it.
pub(super) struct GatewayBox {
    pub(super) netns: Netns,
    pub(super) uplink: Link,
    /// The box's end of the LAN veth.
    pub(super) lan_link: Link,
    /// The LAN host's namespace.
    pub(super) lan: Netns,
    /// The LAN host's end of the LAN veth.
    pub(super) lan_host_link: Link,
    pub(super) config: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) gateway: Option<Gateway>,
}

/// The strongSwan spoke.
pub(super) struct SwanSpoke {
    pub(super) netns: Netns,
    pub(super) params: SpokeParams,
    /// ESP in the kernel's XFRM (kernel-netlink) instead of
    /// kernel-libipsec: with the kernel datapath, in the VM tier.
    pub(super) kernel_xfrm: bool,
    pub(super) charon: Option<Charon>,
}

/// The running lab. Dropping it stops the daemons (strongSwan, the spokes,
/// then the hub) and removes the namespaces.
pub struct FlexLab {
    // Field order is drop order: daemons before their namespaces.
    /// The strongSwan spokes added with [`FlexLab::add_swan`].
    pub(super) swans: Vec<super::swans::ExtraSwan>,
    pub(super) swan: Option<SwanSpoke>,
    pub(super) spokes: Vec<GatewayBox>,
    pub(super) hub: GatewayBox,
    /// The bridge side of the hub's uplink veth.
    pub(super) hub_port: Link,
    pub(super) wan: Netns,
    pub(super) gateway_bin: PathBuf,
    /// [`LabSpec::kernel_datapath`]: strongSwan spokes use the kernel's XFRM.
    pub(super) kernel_datapath: bool,
    pub(super) lab: Lab,
}

impl FlexLab {
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

    pub(super) fn spoke_box(&self, k: usize) -> &GatewayBox {
        match self.try_spoke_box(k) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    pub(super) fn try_spoke_box(&self, k: usize) -> Result<&GatewayBox> {
        k.checked_sub(1)
            .and_then(|i| self.spokes.get(i))
            .with_context(|| format!("no spoke {k}: the lab has {} own spokes", self.spokes.len()))
    }

    pub(super) fn spoke_box_mut(&mut self, k: usize) -> Result<&mut GatewayBox> {
        let n = self.spokes.len();
        k.checked_sub(1)
            .and_then(|i| self.spokes.get_mut(i))
            .with_context(|| format!("no spoke {k}: the lab has {n} own spokes"))
    }
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
pub(super) fn router_sysctls(netns: &Netns) -> Result<()> {
    netns.sysctl("net.ipv4.ip_forward", "1")?;
    netns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    netns.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::flex_lab::INNER_PREFIXES;
    use crate::flex_lab::capture::in_prefixes;

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
