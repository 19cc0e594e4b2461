//! Building and running the lab: the namespaces and links, the config
//! files, starting and stopping the daemons, their logs, and whether a lab
//! test can run here at all ([`ready`]).

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, ensure};

use crate::{
    Lab, Link, Netns,
    cmd::tail,
    gateway::Gateway,
    strongswan::{Charon, CharonConfig},
};

use super::{
    FlexLab, GatewayBox, HUB_ADDRESS, HUB_LAN_GATEWAY, LabSpec, MAX_OWN_SPOKES, NhrpSpec,
    STRONGSWAN_ADDRESS, SwanSpoke, configs::with_datapath, hub_config_nhrp, reference_spoke_params,
    router_sysctls, spoke_address, spoke_config_nhrp, spoke_lan_gateway, strongswan_spoke_params,
    swanctl_reference_hub,
};

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
            swans: Vec::new(),
            swan,
            spokes,
            hub,
            hub_port,
            wan,
            gateway_bin: gateway_bin.to_owned(),
            kernel_datapath: spec.kernel_datapath,
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
        for i in 0..self.swans.len() {
            self.start_swan(super::SwanId(i))?;
        }
        Ok(())
    }

    /// Rewrites the config file of the hub or an own spoke with `edit`
    /// (before its gateway starts, or before a restart).
    pub fn edit_config(
        &self,
        which: super::Which,
        edit: impl FnOnce(String) -> Result<String>,
    ) -> Result<()> {
        let path = self.config_path(which)?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        write(path, &edit(text)?)
    }

    /// Appends `text` (e.g. [`hub_profile_section`](super::hub_profile_section))
    /// to the config of the hub or an own spoke.
    pub fn append_config(&self, which: super::Which, text: &str) -> Result<()> {
        self.edit_config(which, |config| Ok(config + text))
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
        let last = initiate(&charon, &swan.params.name, &swan.params.child).err();
        swan.charon = Some(charon);
        if let Some(e) = last {
            return Err(e.context(format!(
                "the strongSwan spoke could not connect to the hub\n{}",
                self.hub_log_tail()
            )));
        }
        Ok(())
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
    pub(super) fn hub_log_tail(&self) -> String {
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
        let swans = self
            .strongswan()
            .into_iter()
            .chain(self.swans.iter().filter_map(|s| s.charon.as_ref()));
        for charon in swans {
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
/// `swanctl --initiate` up to [`SWAN_INITIATE_ATTEMPTS`] times (the hub's
/// IKE rate limit and its start-up may refuse the first one); the last
/// error if none worked.
pub(super) fn initiate(charon: &Charon, ike: &str, child: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..SWAN_INITIATE_ATTEMPTS {
        match charon.initiate(ike, child) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt to initiate {ike}/{child}")))
}

pub(super) fn write(path: &Path, text: &str) -> Result<()> {
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
