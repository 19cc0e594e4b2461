//! A hub running `gateway run` with IKEv2 and strongSwan spokes dialling it,
//! in lab namespaces: the hub and each spoke on a bridge in a "wan"
//! namespace, as the hub's uplink would see a WAN.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{
    Lab, Netns,
    gateway::Gateway,
    strongswan::{Charon, CharonConfig, SpokeParams},
};

pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 254);
pub const PSK: &str = "test-psk-0123456789";

pub struct IkeLab {
    // Drop order: spokes and the daemon before the namespaces.
    pub spokes: Vec<(Netns, Ipv4Addr, Option<Charon>)>,
    gateway: Option<Gateway>,
    pub hub: Netns,
    pub wan: Netns,
    pub uplink: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    gateway_bin: PathBuf,
    lab: Lab,
}

impl IkeLab {
    /// The topology with `spokes` spoke namespaces (172.25.1.2, .3 ...) and
    /// the hub's config written (`extra` is appended to it); the gateway is
    /// started.
    pub fn start(gateway_bin: &Path, tag: &str, spokes: u8, extra: &str) -> Result<Self> {
        let lab = Lab::new(tag)?;
        let wan = lab.netns("wan")?;
        wan.ip(["link", "add", "br0", "type", "bridge"])?;
        wan.set_link_up("br0")?;
        let hub = lab.netns("hub")?;
        let (uplink, port) = lab.veth(&hub, &wan)?;
        wan.ip(["link", "set", port.name(), "master", "br0"])?;
        uplink.add_addr(&format!("{HUB_ADDRESS}/24"))?;
        let mut list = Vec::new();
        for n in 1..=spokes {
            let ns = lab.netns(&format!("spoke{n}"))?;
            let (link, port) = lab.veth(&ns, &wan)?;
            wan.ip(["link", "set", port.name(), "master", "br0"])?;
            let address = Ipv4Addr::new(172, 25, 1, 1 + n);
            link.add_addr(&format!("{address}/24"))?;
            list.push((ns, address, None));
        }
        let dir = lab.temp_dir().to_owned();
        let socket = dir.join("gateway.sock");
        let config = dir.join("hub.toml");
        std::fs::write(&config, hub_config(uplink.name(), &dir, &socket) + extra)
            .with_context(|| format!("writing {}", config.display()))?;
        let mut ike_lab = IkeLab {
            spokes: list,
            gateway: None,
            hub,
            wan,
            uplink: uplink.name().to_owned(),
            config,
            socket,
            gateway_bin: gateway_bin.to_owned(),
            lab,
        };
        ike_lab.start_gateway()?;
        Ok(ike_lab)
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn start_gateway(&mut self) -> Result<()> {
        self.gateway = Some(Gateway::start(
            &self.hub,
            &self.gateway_bin,
            &self.config,
            &self.socket,
        )?);
        Ok(())
    }

    /// Stops the gateway (SIGTERM); returns its log.
    pub fn stop_gateway(&mut self) -> Result<String> {
        let gateway = self.gateway.take().context("gateway not running")?;
        let log = gateway.process().stderr_path().to_owned();
        let status = gateway.stop()?;
        anyhow::ensure!(status.success(), "gateway exited with {status}");
        Ok(std::fs::read_to_string(log).unwrap_or_default())
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("gateway running")
    }

    /// The gateway's log so far.
    pub fn gateway_log(&self) -> String {
        self.gateway
            .as_ref()
            .map(|g| g.process().stderr_text())
            .unwrap_or_default()
    }

    /// Starts strongSwan on spoke `n` (1-based) with `params` adjusted by
    /// `edit`, and loads its config. Addresses are filled in.
    pub fn charon(&mut self, n: usize, edit: impl FnOnce(&mut SpokeParams)) -> Result<&Charon> {
        let (ns, address, slot) = &mut self.spokes[n - 1];
        let mut params = SpokeParams::new(*address, HUB_ADDRESS);
        params.local_id = format!("spoke{n}.example");
        PSK.clone_into(&mut params.psk);
        edit(&mut params);
        *slot = None;
        let dir = self
            .lab
            .temp_dir()
            .join(format!("charon-spoke{n}-{}", next_id()));
        std::fs::create_dir_all(&dir)?;
        let charon = Charon::start(ns, &dir, &CharonConfig::spoke(&params))?;
        charon.load_all()?;
        Ok(slot.insert(charon))
    }

    pub fn spoke_charon(&self, n: usize) -> &Charon {
        self.spokes[n - 1]
            .2
            .as_ref()
            .expect("charon started on this spoke")
    }

    pub fn show_json(&self, what: &[&str]) -> Result<Value> {
        self.gateway().show_json(what)
    }
}

fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn hub_config(uplink: &str, dir: &Path, socket: &Path) -> String {
    format!(
        r#"# Lab hub with IKEv2: written by integration::ike_lab.
[hub]
role = "hub"
local_address = "{HUB_ADDRESS}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

[ikev2.profile.Spokes]
match_identity_remote = ["fqdn-domain:example"]
local_identity = "fqdn:hub.example"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Lab"
pool = "FlexSpokes"
virtual_template = 1

[ikev2.keyring.Lab.peer.Any]
address = "0.0.0.0/0"
pre_shared_key_local = "{PSK}"
pre_shared_key_remote = "{PSK}"

[pool.FlexSpokes]
first = "{POOL_FIRST}"
last = "{POOL_LAST}"

[virtual_template.1]
unnumbered = "10.1.1.1"

[xdp]
mode = "native"
ike_rate = 50
ike_burst = 100
"#,
        state = dir.join("state").display(),
        socket = socket.display(),
    )
}
