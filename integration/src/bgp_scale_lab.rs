//! The BGP scale lab: the scale lab's two namespaces
//! ([`crate::scale_lab::ScaleLab`]: a hub and a simulator joined by a veth,
//! the simulator's source range routed `local` to `lo`) with a BGP hub in
//! one and `loadgen-bgp` in the other, for `cargo xtask bench-bgp-scale`
//! and the BGP simulator's test.
//!
//! Both hubs are configured alike: iBGP AS 65001, a listen range covering
//! the simulator's sources into one peer group whose members are
//! route-reflector clients, a listen limit of at least N, nothing of their
//! own to announce, neighbor changes logged. Neither puts the routes it
//! learns into the kernel: the speakers' next hops are their own addresses,
//! which are routed through the veth rather than on it, so the kernel would
//! refuse each route ("Nexthop has invalid gateway"), and making them
//! on-link would put thousands of hosts in the neighbor table, whose limits
//! are host-wide. FRR's bgpd runs without zebra (`-Z`, as
//! [`crate::frr`] runs it), ours with `install_routes = false`.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};
use gateway_report::loadgen_bgp::BgpLoadgenReport;

use crate::{
    frr::Bgpd,
    gateway::Gateway,
    scale_lab::{HUB_ADDRESS, SOURCE_FIRST, SOURCE_RANGE, ScaleLab, Simulator},
};

/// The AS of the hub and of every speaker (iBGP, as the overlay runs).
pub const ASN: u32 = 65001;

/// One run of the BGP simulator.
#[derive(Clone, Debug)]
pub struct BgpRun {
    pub label: String,
    pub speakers: u32,
    pub in_flight: u32,
    /// Seconds the simulator waits for every full table.
    pub timeout: u64,
    /// Keep the sessions up after the measurement until
    /// [`BgpLoadgen::release`].
    pub hold: bool,
    /// The hub's pid, for its CPU and memory.
    pub hub_pid: Option<u32>,
}

pub struct BgpScaleLab {
    lab: ScaleLab,
}

impl BgpScaleLab {
    pub fn new(tag: &str) -> Result<Self> {
        Ok(BgpScaleLab {
            lab: ScaleLab::new(tag)?,
        })
    }

    pub fn dir(&self) -> &Path {
        self.lab.dir()
    }

    /// `gateway run` with `[bgp]` only (no IKE, hence no datapath), for
    /// `speakers` dynamic neighbors.
    pub fn start_gateway(&self, bin: &Path, speakers: u32) -> Result<Gateway> {
        let dir = self.dir().join("gateway");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socket = dir.join("hub.sock");
        let config = dir.join("hub.toml");
        std::fs::write(
            &config,
            gateway_config(self.lab.uplink(), &dir, listen_limit(speakers)),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        Gateway::start(self.lab.hub_netns(), bin, &config, &socket)
    }

    /// FRR's bgpd, configured as [`BgpScaleLab::start_gateway`]'s hub.
    pub fn start_bgpd(&self, speakers: u32) -> Result<Bgpd> {
        Bgpd::start(
            self.lab.hub_netns(),
            &self.dir().join("bgpd"),
            &bgpd_config(listen_limit(speakers)),
        )
    }

    /// Starts `loadgen-bgp` in the simulator's namespace; the result goes
    /// to `json`.
    pub fn start_loadgen(&self, bin: &Path, run: &BgpRun, json: &Path) -> Result<BgpLoadgen> {
        let mut cmd = Command::new(bin);
        cmd.arg("--hub")
            .arg(HUB_ADDRESS.to_string())
            .arg("--speakers")
            .arg(run.speakers.to_string())
            .arg("--source-first")
            .arg(SOURCE_FIRST.to_string())
            .arg("--in-flight")
            .arg(run.in_flight.to_string())
            .arg("--asn")
            .arg(ASN.to_string())
            .arg("--timeout")
            .arg(run.timeout.to_string())
            .arg("--label")
            .arg(&run.label)
            .arg("--json")
            .arg(json);
        if run.hold {
            cmd.arg("--hold");
        }
        if let Some(pid) = run.hub_pid {
            cmd.arg("--hub-pid").arg(pid.to_string());
        }
        let proc = self.lab.simulator_netns().spawn(&cmd)?;
        Ok(BgpLoadgen::new(proc, json, "loadgen-bgp"))
    }
}

/// IOS's default is 100; the gateway's ceiling 10,000.
fn listen_limit(speakers: u32) -> u32 {
    speakers.clamp(100, 10_000)
}

/// The BGP spoke simulator.
pub type BgpLoadgen = Simulator<BgpLoadgenReport>;

/// Our hub: `[bgp]` and nothing else to do; the XDP filter (IKE and ESP
/// only) off, as bgpd has none.
fn gateway_config(uplink: &str, dir: &Path, limit: u32) -> String {
    format!(
        r#"# The BGP scale lab's hub: written by integration::bgp_scale_lab.
[hub]
role = "hub"
local_address = "{HUB_ADDRESS}"
uplink = "{uplink}"
state_dir = "{state}"
control_socket = "{socket}"

[xdp]
enabled = false

[bgp]
asn = {ASN}
router_id = "{HUB_ADDRESS}"
listen_limit = {limit}
install_routes = false

[[bgp.listen_range]]
prefix = "{SOURCE_RANGE}"
peer_group = "Spokes"

[bgp.peer_group.Spokes]
remote_as = {ASN}
route_reflector_client = true
"#,
        state = dir.join("state").display(),
        socket = dir.join("hub.sock").display(),
    )
}

/// FRR's hub: the same, in FRR's words.
fn bgpd_config(limit: u32) -> String {
    format!(
        "hostname bgpscale-hub\n\
         log file @DIR@/bgpd.log informational\n\
         !\n\
         router bgp {ASN}\n \
         bgp router-id {HUB_ADDRESS}\n \
         bgp log-neighbor-changes\n \
         no bgp default ipv4-unicast\n \
         neighbor SPOKES peer-group\n \
         neighbor SPOKES remote-as {ASN}\n \
         bgp listen range {SOURCE_RANGE} peer-group SPOKES\n \
         bgp listen limit {limit}\n \
         !\n \
         address-family ipv4 unicast\n  \
         neighbor SPOKES activate\n  \
         neighbor SPOKES route-reflector-client\n \
         exit-address-family\n\
         !\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_hubs_take_the_simulators_range_as_reflector_clients() {
        let ours = gateway_config("veth0", Path::new("/tmp/x"), 2000);
        let frr = bgpd_config(2000);
        for needle in [SOURCE_RANGE, "65001", "listen_limit = 2000"] {
            assert!(ours.contains(needle), "{needle} not in\n{ours}");
        }
        assert!(ours.contains("route_reflector_client = true"));
        assert!(ours.contains("install_routes = false"));
        for needle in [
            &format!("bgp listen range {SOURCE_RANGE} peer-group SPOKES") as &str,
            "bgp listen limit 2000",
            "neighbor SPOKES route-reflector-client",
            "neighbor SPOKES remote-as 65001",
        ] {
            assert!(frr.contains(needle), "{needle} not in\n{frr}");
        }
        assert_eq!(listen_limit(20), 100);
        assert_eq!(listen_limit(40_000), 10_000);
    }
}
