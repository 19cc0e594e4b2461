//! More strongSwan spokes than the lab's one: [`FlexLab::add_swan`] puts a
//! charon spoke (kernel-libipsec, like the lab's, and the same selectors:
//! a virtual IP from the hub's pool, tunnel mode to the hub's LANs) with an
//! identity and address of its own on the WAN bridge, or behind a NAT
//! namespace of its own ([`SwanSpec::nat_port`]). [`FlexLab::start_swan`]
//! and [`FlexLab::kill_swan`] (SIGKILL: no DELETE, no goodbye, as when a
//! router loses power) can be called as often as a test wants; each run of
//! charon gets a directory of its own, so the earlier logs stay.
//!
//! The NAT is stateless: nftables rules in the NAT namespace rewrite the
//! spoke's inside address and UDP port 4500 to the outside address and a
//! port the test chooses (port 500 stays 500), and back (`notrack`: with a
//! stateful `snat` the conntrack entry of a running flow would outlive a
//! change of the rule, and the lab machines have no `conntrack -F`).
//! [`FlexLab::set_nat_port`] swaps the port in one nft transaction: to the
//! hub, the spoke's ESP and IKE now come from another port, as when a NAT
//! box loses its mapping mid-flow (RFC 7296 section 2.23, RFC 3948).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use gateway_report::ike::SaReport;

use crate::{
    Netns,
    strongswan::{Charon, CharonConfig, SpokeParams},
};

use super::{FlexLab, lifecycle, router_sysctls, strongswan_spoke_params};

/// Which strongSwan spoke of [`FlexLab::add_swan`] (in the order added).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwanId(pub usize);

/// A strongSwan spoke to add to the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwanSpec {
    /// Its namespace's label and the prefix of its charon directories.
    pub label: String,
    /// Its IKE identity (`fqdn:` in the hub's terms, written without it).
    pub identity: String,
    /// Its address on the WAN (172.25.1.0/24, distinct from the hub's,
    /// the own spokes' 172.25.1.11.. and the lab's strongSwan spoke's
    /// 172.25.1.50): the spoke's own, or with a NAT the NAT's outside
    /// address.
    pub address: Ipv4Addr,
    /// The IKE_SA's `rekey_time` (e.g. `60s`); `None`: 4 h.
    pub ike_rekey_time: Option<String>,
    /// The CHILD_SA's `rekey_time` (e.g. `20s`); `None`: 1 h.
    pub child_rekey_time: Option<String>,
    /// Behind a NAT namespace that sends the spoke's UDP 4500 from this
    /// port of [`SwanSpec::address`]; `None`: on the WAN itself.
    pub nat_port: Option<u16>,
}

impl SwanSpec {
    /// On the WAN, strongSwan's default rekey times.
    pub fn new(label: &str, identity: &str, address: Ipv4Addr) -> Self {
        SwanSpec {
            label: label.to_owned(),
            identity: identity.to_owned(),
            address,
            ike_rekey_time: None,
            child_rekey_time: None,
            nat_port: None,
        }
    }
}

/// A strongSwan spoke of [`FlexLab::add_swan`].
pub(super) struct ExtraSwan {
    spec: SwanSpec,
    netns: Netns,
    nat: Option<Nat>,
    params: SpokeParams,
    /// Field order is drop order: charon before the namespaces (which the
    /// lab owns anyway).
    pub(super) charon: Option<Charon>,
    /// How many times charon was started (names its directories).
    runs: u32,
}

/// The NAT namespace in front of a spoke.
struct Nat {
    netns: Netns,
    /// The spoke's address behind it.
    inside: Ipv4Addr,
    /// The outside port its UDP 4500 has now.
    port: u16,
}

/// The nftables table of the NAT namespace.
const NAT_TABLE: &str = "flexlab_nat";
/// The spoke's IKE port once NAT was detected, and its ESP-in-UDP port
/// (kernel-libipsec always encapsulates).
const NAT_T_PORT: u16 = 4500;
/// How long a killed charon gets to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The NAT namespace's rules (a whole `nft -f` file): `inside` as
/// `outside`, its UDP 4500 as `port`, both ways, untracked (`notrack`; a
/// kernel without conntrack, like the VM tier's, tracks nothing and takes
/// no `notrack` rule). With `replace` the table's old rules go first, in
/// the same transaction.
///
/// The kernel sends ESP in UDP with a zero checksum (RFC 3948 section
/// 3.1.2), and nft's port rewrite would turn that zero into a wrong
/// checksum: those packets have rules of their own that keep it zero.
pub fn nat_ruleset(
    inside: Ipv4Addr,
    outside: Ipv4Addr,
    port: u16,
    replace: bool,
    notrack: bool,
) -> String {
    let flush = if replace {
        format!("flush table ip {NAT_TABLE}\n")
    } else {
        String::new()
    };
    let raw = if notrack {
        "    chain raw {
        type filter hook prerouting priority raw; policy accept;
        notrack
    }
"
    } else {
        ""
    };
    format!(
        "{flush}table ip {NAT_TABLE} {{
{raw}    chain to_inside {{
        type filter hook prerouting priority mangle; policy accept;
        ip daddr {outside} udp dport 500 ip daddr set {inside}
        ip daddr {outside} udp dport {port} udp checksum 0 ip daddr set {inside} udp dport set {NAT_T_PORT} udp checksum set 0
        ip daddr {outside} udp dport {port} ip daddr set {inside} udp dport set {NAT_T_PORT}
    }}
    chain to_outside {{
        type filter hook postrouting priority mangle; policy accept;
        ip saddr {inside} udp sport 500 ip saddr set {outside}
        ip saddr {inside} udp sport {NAT_T_PORT} udp checksum 0 ip saddr set {outside} udp sport set {port} udp checksum set 0
        ip saddr {inside} udp sport {NAT_T_PORT} ip saddr set {outside} udp sport set {port}
    }}
}}
"
    )
}

impl FlexLab {
    /// Adds a strongSwan spoke: its namespace on the WAN bridge (or behind
    /// a NAT namespace: the NAT's outside on the bridge, the spoke at
    /// 10.99.N.2/24 behind 10.99.N.1), not yet started
    /// ([`FlexLab::start_daemons`] starts it, or [`FlexLab::start_swan`]).
    pub fn add_swan(&mut self, spec: SwanSpec) -> Result<SwanId> {
        ensure!(
            !self.swans.iter().any(|s| s.spec.address == spec.address
                || s.spec.label == spec.label
                || s.spec.identity == spec.identity),
            "a strongSwan spoke with the address, label or identity of {spec:?} exists"
        );
        let n = u8::try_from(self.swans.len() + 1).context("too many strongSwan spokes")?;
        let netns = self.lab.netns(&spec.label)?;
        let (local, nat) = match spec.nat_port {
            None => {
                let (uplink, port) = self.lab.veth(&netns, &self.wan)?;
                self.wan.ip(["link", "set", port.name(), "master", "br0"])?;
                uplink.add_addr(&format!("{}/24", spec.address))?;
                (spec.address, None)
            }
            Some(port) => {
                let nat_ns = self.lab.netns(&format!("{}nat", spec.label))?;
                router_sysctls(&nat_ns)?;
                let (outside, bridge_port) = self.lab.veth(&nat_ns, &self.wan)?;
                self.wan
                    .ip(["link", "set", bridge_port.name(), "master", "br0"])?;
                outside.add_addr(&format!("{}/24", spec.address))?;
                let gateway = Ipv4Addr::new(10, 99, n, 1);
                let inside = Ipv4Addr::new(10, 99, n, 2);
                let (nat_in, spoke_out) = self.lab.veth(&nat_ns, &netns)?;
                nat_in.add_addr(&format!("{gateway}/24"))?;
                spoke_out.add_addr(&format!("{inside}/24"))?;
                netns.add_route("default", gateway)?;
                let nat = Nat {
                    netns: nat_ns,
                    inside,
                    port,
                };
                self.load_nat(&spec.label, &nat, spec.address, false)?;
                (inside, Some(nat))
            }
        };
        let mut params = strongswan_spoke_params();
        params.local_addr = local;
        params.local_id.clone_from(&spec.identity);
        params.ike_rekey_time.clone_from(&spec.ike_rekey_time);
        params.child_rekey_time.clone_from(&spec.child_rekey_time);
        self.swans.push(ExtraSwan {
            spec,
            netns,
            nat,
            params,
            charon: None,
            runs: 0,
        });
        Ok(SwanId(self.swans.len() - 1))
    }

    /// Puts own spoke k behind a NAT of its own (before its gateway
    /// starts): rules in its namespace rewrite what leaves its uplink to
    /// come from `outside` (an address it also answers ARP for), its UDP
    /// 4500 from `port`, and back. The hub sees the NAT's address and
    /// port; the spoke's NAT detection finds itself behind a NAT.
    pub fn nat_own_spoke(&self, k: usize, outside: Ipv4Addr, port: u16) -> Result<()> {
        let spoke = self.spoke_box(k);
        spoke.uplink.add_addr(&format!("{outside}/24"))?;
        let nat = Nat {
            netns: spoke.netns.clone(),
            inside: super::spoke_address(k),
            port,
        };
        self.load_nat(&format!("spoke{k}"), &nat, outside, false)
    }

    fn load_nat(&self, label: &str, nat: &Nat, outside: Ipv4Addr, replace: bool) -> Result<()> {
        let mut first_error = None;
        for notrack in [true, false] {
            let rules = nat_ruleset(nat.inside, outside, nat.port, replace, notrack);
            let path = self
                .lab
                .temp_dir()
                .join(format!("{label}-nat-{}-{notrack}.nft", nat.port));
            lifecycle::write(&path, &rules)?;
            let file = path.to_string_lossy().into_owned();
            match nat.netns.exec(["nft", "-f", file.as_str()]) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // Without conntrack in the kernel there is nothing to
                    // untrack: the rules without `notrack` are the same NAT.
                    let e = e.context(format!("loading the NAT rules of {label}:\n{rules}"));
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("tried at least once"))
    }

    /// Starts (again) charon on strongSwan spoke `id`, in a new directory
    /// (`swan-LABEL-RUN`), loads its config and initiates; its session is
    /// up when this returns.
    pub fn start_swan(&mut self, id: SwanId) -> Result<()> {
        let dir = self.lab.temp_dir().to_owned();
        let kernel_datapath = self.kernel_datapath;
        let swan = self.swan_mut(id)?;
        // A spoke behind the lab's NAT keeps kernel-libipsec, as in the
        // userspace lab: what the NAT labs test is the hub following the
        // spoke's port, in either of the hub's datapaths.
        let kernel_xfrm = kernel_datapath && swan.spec.nat_port.is_none();
        ensure!(
            swan.charon.is_none(),
            "strongSwan spoke {} is running",
            swan.spec.label
        );
        let dir = dir.join(format!("swan-{}-{}", swan.spec.label, swan.runs));
        swan.runs += 1;
        let mut config = CharonConfig::spoke(&swan.params);
        if kernel_xfrm {
            config.plugins.retain(|p| p != "kernel-libipsec");
        }
        let charon = Charon::start(&swan.netns, &dir, &config)
            .with_context(|| format!("starting strongSwan spoke {}", swan.spec.label))?;
        charon.load_all()?;
        let result = lifecycle::initiate(&charon, &swan.params.name, &swan.params.child);
        swan.charon = Some(charon);
        let label = swan.spec.label.clone();
        result.map_err(|e| {
            e.context(format!(
                "strongSwan spoke {label} could not connect to the hub\n{}",
                self.hub_log_tail()
            ))
        })
    }

    /// Kills strongSwan spoke `id`'s charon with SIGKILL (it sends nothing
    /// more: no DELETE) and returns its log.
    pub fn kill_swan(&mut self, id: SwanId) -> Result<String> {
        let swan = self.swan_mut(id)?;
        let charon = swan
            .charon
            .take()
            .with_context(|| format!("strongSwan spoke {} is not running", swan.spec.label))?;
        charon.proc().signal_group(libc::SIGKILL)?;
        charon.proc().wait_timeout(KILL_TIMEOUT)?;
        Ok(charon.log_text())
    }

    /// Changes the outside port of strongSwan spoke `id`'s UDP 4500 (it must
    /// be behind a NAT), in one nft transaction.
    pub fn set_nat_port(&mut self, id: SwanId, port: u16) -> Result<()> {
        let swan = self.swan_ref(id)?;
        let (label, outside) = (swan.spec.label.clone(), swan.spec.address);
        let Some(nat) = &swan.nat else {
            bail!("strongSwan spoke {label} is not behind a NAT");
        };
        let new = Nat {
            netns: nat.netns.clone(),
            inside: nat.inside,
            port,
        };
        self.load_nat(&label, &new, outside, true)?;
        if let Some(nat) = self.swan_mut(id)?.nat.as_mut() {
            nat.port = port;
        }
        Ok(())
    }

    /// Where the hub sees strongSwan spoke `id`'s UDP 4500: its address and
    /// 4500, or behind the NAT the outside address and the current port.
    pub fn swan_outside(&self, id: SwanId) -> Result<SocketAddrV4> {
        let swan = self.swan_ref(id)?;
        Ok(SocketAddrV4::new(
            swan.spec.address,
            swan.nat.as_ref().map_or(NAT_T_PORT, |n| n.port),
        ))
    }

    /// strongSwan spoke `id`'s charon, if running.
    pub fn swan(&self, id: SwanId) -> Result<&Charon> {
        let swan = self.swan_ref(id)?;
        swan.charon
            .as_ref()
            .with_context(|| format!("strongSwan spoke {} is not running", swan.spec.label))
    }

    /// strongSwan spoke `id`'s namespace.
    pub fn swan_netns(&self, id: SwanId) -> Result<&Netns> {
        Ok(&self.swan_ref(id)?.netns)
    }

    /// strongSwan spoke `id`'s spec.
    pub fn swan_spec(&self, id: SwanId) -> Result<&SwanSpec> {
        Ok(&self.swan_ref(id)?.spec)
    }

    /// The virtual IP the hub gave strongSwan spoke `id`.
    pub fn swan_vip(&self, id: SwanId) -> Result<Ipv4Addr> {
        let sas = self.swan(id)?.list_sas()?;
        sas.iter()
            .find_map(crate::strongswan::IkeSa::local_vip_v4)
            .with_context(|| format!("strongSwan spoke {id:?} has no virtual IP: {sas:#?}"))
    }

    /// The hub's IKE SAs (`show crypto session`) of strongSwan spoke `id`'s
    /// identity.
    pub fn swan_sessions(&self, id: SwanId) -> Result<Vec<SaReport>> {
        let identity = format!("fqdn:{}", self.swan_ref(id)?.spec.identity);
        Ok(self
            .sessions()?
            .into_iter()
            .filter(|s| s.identity.as_deref() == Some(identity.as_str()))
            .collect())
    }

    fn swan_ref(&self, id: SwanId) -> Result<&ExtraSwan> {
        self.swans
            .get(id.0)
            .with_context(|| format!("no strongSwan spoke {id:?}"))
    }

    fn swan_mut(&mut self, id: SwanId) -> Result<&mut ExtraSwan> {
        self.swans
            .get_mut(id.0)
            .with_context(|| format!("no strongSwan spoke {id:?}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nat_rules_map_4500_to_the_port_both_ways() {
        let inside = Ipv4Addr::new(10, 99, 1, 2);
        let outside = Ipv4Addr::new(172, 25, 1, 60);
        let text = nat_ruleset(inside, outside, 40001, false, true);
        assert!(!text.contains("flush"), "{text}");
        assert!(text.contains(
            "ip saddr 10.99.1.2 udp sport 4500 ip saddr set 172.25.1.60 udp sport set 40001\n"
        ));
        assert!(text.contains(
            "ip daddr 172.25.1.60 udp dport 40001 ip daddr set 10.99.1.2 udp dport set 4500\n"
        ));
        assert!(text.contains("ip saddr 10.99.1.2 udp sport 500 ip saddr set 172.25.1.60\n"));
        assert!(text.contains("notrack"));
        // The kernel's zero-checksum ESP in UDP keeps its zero, both ways,
        // before the general rule could make it a wrong checksum.
        for (zero, plain) in [
            (
                "udp dport 40001 udp checksum 0 ip daddr set 10.99.1.2 udp dport set 4500 udp checksum set 0\n",
                "udp dport 40001 ip daddr set",
            ),
            (
                "udp sport 4500 udp checksum 0 ip saddr set 172.25.1.60 udp sport set 40001 udp checksum set 0\n",
                "udp sport 4500 ip saddr set 172.25.1.60 udp sport",
            ),
        ] {
            let (Some(zero), Some(plain)) = (text.find(zero), text.find(plain)) else {
                panic!("{text}");
            };
            assert!(zero < plain, "{text}");
        }
        let swapped = nat_ruleset(inside, outside, 40002, true, false);
        assert!(!swapped.contains("notrack"));
        assert!(swapped.starts_with("flush table ip flexlab_nat\ntable ip flexlab_nat {"));
        assert!(!swapped.contains("40001"));
    }
}
