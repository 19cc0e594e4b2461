//! The scale lab: a hub namespace and a spoke-simulator namespace joined
//! by one veth, for `loadgen` (the spoke simulator) against `gateway run`
//! or against strongSwan's charon as hub, one after the other in the same
//! namespaces (`cargo xtask bench-ike-scale`, and the simulator's test).
//!
//! The spokes' source addresses are one range routed `local` to `lo` in
//! the simulator's namespace (each spoke binds its own address without an
//! `ip addr` per spoke); the hub routes the range to the simulator's end of
//! the veth, so it has one neighbor however many spokes dial.

use std::{
    marker::PhantomData,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{
    Lab, Netns, Proc,
    gateway::Gateway,
    strongswan::{Charon, CharonConfig, HubParams, LAB_PSK},
};

/// The hub's uplink address, which the spokes dial.
pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 26, 0, 1);
/// The simulator's end of the veth.
pub const SIMULATOR_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 26, 0, 2);
/// The spokes' source addresses: spoke i is `SOURCE_FIRST + i`.
pub const SOURCE_RANGE: &str = "10.200.0.0/16";
pub const SOURCE_FIRST: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The hub's pool, as large as the source range.
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 64, 255, 254);
/// The hub's LAN (its side of the spokes' tunnel-mode selectors).
pub const HUB_LAN: &str = "10.1.2.0/24";
pub const PSK: &str = LAB_PSK;

/// The CHILD_SA a spoke asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpokeMode {
    /// GRE between the outer addresses, as FlexVPN spokes (our hub only).
    Transport,
    /// The spoke's pool address to the hub's LAN.
    Tunnel,
}

impl SpokeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SpokeMode::Transport => "transport",
            SpokeMode::Tunnel => "tunnel",
        }
    }
}

/// One run of the simulator.
#[derive(Clone, Debug)]
pub struct LoadgenRun {
    pub label: String,
    pub spokes: u32,
    pub in_flight: u32,
    pub mode: SpokeMode,
    /// Seconds of steady state, and the fraction of spokes that leave and
    /// dial again in it.
    pub steady: u64,
    pub churn: f64,
    /// Wait for SIGUSR1 after dialling (see [`Loadgen::release`]).
    pub hold: bool,
    /// The hub's pid, for its CPU and memory.
    pub hub_pid: Option<u32>,
}

pub struct ScaleLab {
    lab: Lab,
    hub: Netns,
    simulator: Netns,
    uplink: String,
}

impl ScaleLab {
    pub fn new(tag: &str) -> Result<Self> {
        let lab = Lab::new(tag)?;
        let hub = lab.netns("hub")?;
        let simulator = lab.netns("sim")?;
        let (h, s) = lab.veth(&hub, &simulator)?;
        h.add_addr(&format!("{HUB_ADDRESS}/24"))?;
        s.add_addr(&format!("{SIMULATOR_ADDRESS}/24"))?;
        h.set_up()?;
        s.set_up()?;
        hub.set_link_up("lo")?;
        simulator.set_link_up("lo")?;
        hub.add_route(SOURCE_RANGE, SIMULATOR_ADDRESS)?;
        simulator
            .ip(["route", "add", "local", SOURCE_RANGE, "dev", "lo"])
            .context("routing the spokes' sources to lo")?;
        Ok(ScaleLab {
            uplink: h.name().to_owned(),
            lab,
            hub,
            simulator,
        })
    }

    pub fn hub_netns(&self) -> &Netns {
        &self.hub
    }

    pub fn simulator_netns(&self) -> &Netns {
        &self.simulator
    }

    /// The hub's end of the veth.
    pub fn uplink(&self) -> &str {
        &self.uplink
    }

    pub fn dir(&self) -> &Path {
        self.lab.temp_dir()
    }

    /// `gateway run` as the hub (userspace datapath). `dpd`: a periodic
    /// liveness check every so many seconds; `None`, on demand (IOS's
    /// default; nothing is sent to a spoke that sends no traffic).
    pub fn start_gateway(&self, bin: &Path, dpd: Option<u32>) -> Result<Gateway> {
        let dir = self.dir().join("gateway");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socket = dir.join("hub.sock");
        let config = dir.join("hub.toml");
        std::fs::write(&config, gateway_config(&self.uplink, &dir, dpd))
            .with_context(|| format!("writing {}", config.display()))?;
        Gateway::start(&self.hub, bin, &config, &socket)
    }

    /// strongSwan's charon as the hub: shared/interop's hub recipe
    /// (kernel-libipsec) with this lab's addresses and pool, logging at
    /// level 1 (its default).
    pub fn start_charon(&self) -> Result<Charon> {
        let mut params = HubParams::new(HUB_ADDRESS);
        params.pool_addrs = format!("{POOL_FIRST}-{POOL_LAST}");
        HUB_LAN.clone_into(&mut params.local_ts);
        params.dns = None;
        let mut config = CharonConfig::hub(&params);
        for subsystem in ["ike", "cfg", "knl", "esp", "chd"] {
            config = config.log_level(subsystem, 1);
        }
        let charon = Charon::start(&self.hub, &self.dir().join("charon"), &config)?;
        charon.load_all()?;
        Ok(charon)
    }

    /// Starts the simulator in its namespace; the result goes to
    /// `json` (`gateway_report::loadgen::LoadgenReport`).
    pub fn start_loadgen(&self, bin: &Path, run: &LoadgenRun, json: &Path) -> Result<Loadgen> {
        let mut cmd = Command::new(bin);
        cmd.arg("--hub")
            .arg(HUB_ADDRESS.to_string())
            .arg("--spokes")
            .arg(run.spokes.to_string())
            .arg("--source-first")
            .arg(SOURCE_FIRST.to_string())
            .arg("--in-flight")
            .arg(run.in_flight.to_string())
            .arg("--mode")
            .arg(run.mode.as_str())
            .arg("--pool")
            .arg(format!("{POOL_FIRST}-{POOL_LAST}"))
            .arg("--steady")
            .arg(run.steady.to_string())
            .arg("--churn")
            .arg(run.churn.to_string())
            .arg("--label")
            .arg(&run.label)
            .arg("--json")
            .arg(json)
            .env("LOADGEN_PSK", PSK);
        if run.hold {
            cmd.arg("--hold");
        }
        if let Some(pid) = run.hub_pid {
            cmd.arg("--hub-pid").arg(pid.to_string());
        }
        let proc = self.simulator.spawn(&cmd)?;
        Ok(Loadgen::new(proc, json, "loadgen"))
    }
}

/// A running simulator (`loadgen` or `loadgen-bgp`; `R`, the result it
/// writes as JSON).
pub struct Simulator<R> {
    proc: Proc,
    json: PathBuf,
    /// Its name, which starts its progress lines (`NAME: holding`).
    name: &'static str,
    result: PhantomData<R>,
}

/// The IKE spoke simulator.
pub type Loadgen = Simulator<gateway_report::loadgen::LoadgenReport>;

impl<R: serde::de::DeserializeOwned> Simulator<R> {
    pub fn new(proc: Proc, json: &Path, name: &'static str) -> Self {
        Simulator {
            proc,
            json: json.to_path_buf(),
            name,
            result: PhantomData,
        }
    }

    /// Waits until it is done measuring and holds its spokes.
    pub fn wait_holding(&self, timeout: Duration) -> Result<()> {
        self.proc
            .wait_for_output(&format!("{}: holding", self.name), timeout)
            .with_context(|| self.output())
    }

    /// Echoes its progress lines, each once, until it holds.
    pub fn follow(&self, bound: Duration) -> Result<()> {
        let deadline = Instant::now() + bound;
        let holding = format!("{}: holding", self.name);
        let mut shown = 0;
        loop {
            let out = self.proc.stdout_text();
            for line in out.lines().skip(shown) {
                println!("  {line}");
                shown += 1;
            }
            if out.contains(&holding) {
                return Ok(());
            }
            anyhow::ensure!(
                self.proc.is_running(),
                "{} ended early\n{}",
                self.name,
                self.output()
            );
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not finish in {bound:?}\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Lets a holding simulator go on: its spokes leave.
    pub fn release(&self) -> Result<()> {
        self.proc.signal(libc::SIGUSR1)
    }

    /// Waits for the end and reads the result.
    pub fn finish(self, timeout: Duration) -> Result<R> {
        let status = self
            .proc
            .wait_timeout(timeout)
            .with_context(|| self.output())?;
        anyhow::ensure!(
            status.success(),
            "{} failed ({status})\n{}",
            self.name,
            self.output()
        );
        let text = std::fs::read_to_string(&self.json)
            .with_context(|| format!("reading {}", self.json.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", self.json.display()))
    }

    /// What it printed, for error messages.
    pub fn output(&self) -> String {
        format!(
            "{name} stdout:\n{}\n{name} stderr:\n{}",
            self.proc.stdout_text(),
            self.proc.stderr_text(),
            name = self.name
        )
    }
}

/// The hub's config: any identity with the lab's PSK, a pool as large as
/// the source range, the XDP filter on with its defaults (each spoke has
/// its own source, so the per-source limit never binds).
fn gateway_config(uplink: &str, dir: &Path, dpd: Option<u32>) -> String {
    let dpd = match dpd {
        Some(interval) => format!("{{ interval = {interval}, retry = 2, mode = \"periodic\" }}"),
        None => "{ interval = 30, retry = 5, mode = \"on-demand\" }".to_owned(),
    };
    format!(
        r#"# The scale lab's hub: written by integration::scale_lab.
[hub]
role = "hub"
local_address = "{HUB_ADDRESS}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

[ikev2.profile.Spokes]
match_identity_remote = ["any"]
local_identity = "fqdn:hub.example"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Spokes"
pool = "Spokes"
virtual_template = 1
dpd = {dpd}

[ikev2.keyring.Spokes.peer.Any]
address = "0.0.0.0/0"
pre_shared_key_local = "{PSK}"
pre_shared_key_remote = "{PSK}"

[pool.Spokes]
first = "{POOL_FIRST}"
last = "{POOL_LAST}"

[virtual_template.1]
unnumbered = "10.1.2.1"
mtu = 1400
tcp_adjust_mss = 1360

[xdp]
enabled = true
mode = "auto"
"#,
        state = dir.join("state").display(),
        socket = dir.join("hub.sock").display(),
    )
}
