//! A hub running `gateway run` with IKEv2 and strongSwan spokes dialling it,
//! in lab namespaces: the hub and each spoke on a bridge in a "wan"
//! namespace, as the hub's uplink would see a WAN.

use std::{
    ffi::OsString,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::{
    Lab, Netns,
    gateway::Gateway,
    strongswan::{Charon, CharonConfig, SpokeParams},
};

pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
pub const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);
pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 254);
pub const PSK: &str = "test-psk-0123456789";

/// The files of the daemon's key log (see [`IkeLab::enable_ike_keylog`]).
#[derive(Clone, Debug)]
pub struct IkeKeyLog {
    /// One Wireshark `ikev2_decryption_table` line per IKE SA.
    pub ike: PathBuf,
    /// Two Wireshark `esp_sa` lines (inbound, outbound) per CHILD_SA.
    pub esp: PathBuf,
}

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
    /// Extra environment of the daemon, for every (re)start.
    gateway_env: Vec<(OsString, OsString)>,
    lab: Lab,
}

impl IkeLab {
    /// The topology with `spokes` spoke namespaces (172.25.1.2, .3 ...) and
    /// the hub's config written (`extra` is appended to it); the gateway is
    /// started.
    pub fn start(gateway_bin: &Path, tag: &str, spokes: u8, extra: &str) -> Result<Self> {
        let mut ike_lab = Self::new(gateway_bin, tag, spokes, extra)?;
        ike_lab.start_gateway()?;
        Ok(ike_lab)
    }

    /// Like [`IkeLab::start`], but the gateway is not started yet: set its
    /// environment ([`IkeLab::set_gateway_env`], [`IkeLab::enable_ike_keylog`]),
    /// start captures, then call [`IkeLab::start_gateway`].
    pub fn new(gateway_bin: &Path, tag: &str, spokes: u8, extra: &str) -> Result<Self> {
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
        let ike_lab = IkeLab {
            spokes: list,
            gateway: None,
            hub,
            wan,
            uplink: uplink.name().to_owned(),
            config,
            socket,
            gateway_bin: gateway_bin.to_owned(),
            gateway_env: Vec::new(),
            lab,
        };
        Ok(ike_lab)
    }

    /// Sets an environment variable for the gateway's next start (and every
    /// restart after it).
    pub fn set_gateway_env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        let key = key.into();
        self.gateway_env.retain(|(k, _)| *k != key);
        self.gateway_env.push((key, value.into()));
    }

    /// Turns the daemon's IKE key log on (`GATEWAY_IKE_KEYLOG`, from the next
    /// start), with its files in the lab's directory.
    pub fn enable_ike_keylog(&mut self) -> IkeKeyLog {
        let ike = self.lab.temp_dir().join("ike-keys");
        self.set_gateway_env("GATEWAY_IKE_KEYLOG", &ike);
        // The daemon's convention (gateway::ike::keylog): ESP keys in PATH.esp_sa.
        let esp = self.lab.temp_dir().join("ike-keys.esp_sa");
        IkeKeyLog { ike, esp }
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn start_gateway(&mut self) -> Result<()> {
        self.gateway = Some(Gateway::start_with_env(
            &self.hub,
            &self.gateway_bin,
            &self.config,
            &self.socket,
            self.gateway_env.iter().map(|(k, v)| (k, v)),
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

    /// `gateway show WHAT... --json` on the hub, as its report type.
    pub fn show_report<T: serde::de::DeserializeOwned>(&self, what: &[&str]) -> Result<T> {
        self.gateway().show_report(what)
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
