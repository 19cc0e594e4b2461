//! `gateway run`: load the config, attach XDP to the uplink, serve the
//! control socket, and undo it all on SIGINT/SIGTERM.

pub mod show;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context as _;
use gateway_common::XdpConfig;
use gateway_report::{tunnels::TunnelStatus, version::VersionInfo};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    bgp::speaker::{Speaker, SpeakerConfig, SpeakerTasks},
    config::{self, Config, Role, Unnumbered},
    control::{ControlSocket, Handler, Request, Response},
    datapath::{
        kernel::KernelDatapath,
        select::{self, KernelFeatures, Selected},
        userspace::{UserspaceConfig, UserspaceDatapath},
    },
    iface::{Datapath, DatapathEvent, IkeOn4500},
    ike::{
        engine::Engine,
        keylog::{self, KeyLog},
        policy::Policy,
        task::{self as ike_task, IkeShared, IkeSockets},
    },
    ipsec::SystemRng,
    nhrp::task::{Nhrp, Plan},
    pool::Pools,
    session::Sessions,
    spoke::{SpokeRunner, SpokeTunnel},
    sys::nft,
    xdp::{SPREAD_QUEUE_SIZE, XdpFilter},
};

/// State the control socket reads and changes.
pub struct Daemon {
    started: Instant,
    xdp: Arc<Mutex<Option<XdpFilter>>>,
    /// IKE, when the config has IKEv2 profiles.
    ike: Option<Arc<IkeShared<Sessions>>>,
    datapath: Option<Arc<dyn Datapath>>,
    /// A spoke's tunnels to its hubs.
    tunnels: Mutex<Vec<Arc<Mutex<TunnelStatus>>>>,
    /// The BGP speaker, when the config has `[bgp]`.
    bgp: Option<Arc<Speaker>>,
    /// NHRP, when an interface has `nhrp_network_id`.
    nhrp: Option<Arc<Nhrp>>,
}

impl Daemon {
    fn with_xdp<T>(
        &self,
        f: impl FnOnce(&mut XdpFilter) -> anyhow::Result<T>,
    ) -> Result<T, String> {
        let mut guard = self
            .xdp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(filter) = guard.as_mut() else {
            return Err(
                "the XDP filter is off in this gateway's config (xdp.enabled = false)".into(),
            );
        };
        f(filter).map_err(|e| format!("{e:#}"))
    }

    fn with_bgp(&self, f: impl FnOnce(&Speaker) -> Response) -> Result<Response, String> {
        match &self.bgp {
            Some(bgp) => Ok(f(bgp)),
            None => Err("BGP is not configured on this gateway (no [bgp])".into()),
        }
    }

    fn with_nhrp(&self, f: impl FnOnce(&Nhrp) -> Response) -> Result<Response, String> {
        match &self.nhrp {
            Some(nhrp) => Ok(f(nhrp)),
            None => Err(
                "NHRP is not enabled on this gateway (no nhrp_redirect on a virtual template, \
                 no nhrp_network_id on a spoke tunnel)"
                    .into(),
            ),
        }
    }

    fn with_ike(
        &self,
        f: impl FnOnce(&IkeShared<Sessions>) -> Result<Response, String>,
    ) -> Result<Response, String> {
        match &self.ike {
            Some(ike) => f(ike),
            None => Err("IKEv2 is not configured on this gateway (no [ikev2.profile.*])".into()),
        }
    }

    /// A spoke's tunnels to its hubs, as they are now.
    fn tunnel_statuses(&self) -> Vec<TunnelStatus> {
        self.tunnels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|t| {
                t.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect()
    }

    /// Adds or removes an inbound SPI in the filter, and logs it.
    fn change_sa(
        &self,
        spi: u32,
        what: &str,
        change: fn(&mut XdpFilter, u32) -> Result<(), crate::xdp::XdpError>,
    ) -> Result<Response, String> {
        self.with_xdp(|filter| Ok(change(filter, spi)?))?;
        tracing::info!(spi = format_args!("{spi:#010x}"), "inbound SPI {what} XDP");
        Ok(Response::ok(&serde_json::json!({ "spi": spi })))
    }
}

impl Handler for Daemon {
    fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::Version => {
                return Response::ok(&VersionInfo {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    pid: std::process::id(),
                    uptime_s: self.started.elapsed().as_secs(),
                });
            }
            Request::ShowXdp => self.with_xdp(|f| Ok(f.report()?)).map(|r| Response::ok(&r)),
            Request::ShowCryptoIkev2Sa | Request::ShowCryptoSession => self.with_ike(|ike| {
                Ok(Response::ok(
                    &ike.engine
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .report(Instant::now()),
                ))
            }),
            Request::ShowCryptoIpsecSa => {
                let ike = self.ike.as_ref().map(|ike| {
                    ike.engine
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .report(Instant::now())
                });
                let datapath = self.datapath.as_ref().map(|dp| dp.report());
                Ok(Response::ok(&show::ipsec_sa(
                    &ike.unwrap_or_default(),
                    datapath.as_ref(),
                    &self.tunnel_statuses(),
                )))
            }
            Request::ShowIpLocalPool => self.with_ike(|ike| {
                Ok(Response::ok(
                    &ike.pools
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .report(),
                ))
            }),
            Request::ShowInterfacesVirtualAccess => match &self.datapath {
                Some(dp) => Ok(Response::ok(&dp.report())),
                None => {
                    Err("no datapath runs on this gateway (no IKEv2 profiles configured)".into())
                }
            },
            Request::ShowInterfacesTunnel => Ok(Response::ok(&self.tunnel_statuses())),
            Request::ShowBgpSummary => self.with_bgp(|bgp| Response::ok(&bgp.summary())),
            Request::ShowBgp => self.with_bgp(|bgp| Response::ok(&bgp.table())),
            Request::ShowIpNhrp => self.with_nhrp(|nhrp| Response::ok(&nhrp.view())),
            Request::ShowIpNhrpTraffic => self.with_nhrp(|nhrp| Response::ok(&nhrp.traffic())),
            Request::ClearIpNhrp => self.with_nhrp(|nhrp| Response::ok(&nhrp.clear())),
            Request::SaAdd { spi } => self.change_sa(spi, "installed in", XdpFilter::add_sa),
            Request::SaRemove { spi } => self.change_sa(spi, "removed from", XdpFilter::remove_sa),
        };
        result.unwrap_or_else(Response::error)
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    tracing::info!(config = %config_path.display(), role = ?config.hub.role, "gateway starting");
    // The socket first: it is how a second daemon on the same config finds
    // out that one is running, before it touches the uplink.
    let socket_path = config.hub.control_socket.clone();
    let socket = ControlSocket::bind(&socket_path).await?;
    let xdp = attach_xdp(&config, config_path)?;
    tracing::info!(socket = %socket_path.display(), "control socket ready");

    let xdp = Arc::new(Mutex::new(xdp));
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let datapath = start_datapath(&config, config_path, &events_tx)?;
    let ike = start_ike(&config, config_path, &xdp, datapath.as_ref()).await?;
    let bgp = start_bgp(&config, config_path, datapath.as_ref(), ike.as_ref())?;
    let events_rx = split_events(events_rx, ike.clone());
    let (nhrp, mut events_task) = start_nhrp(
        &config,
        config_path,
        datapath.as_ref(),
        ike.as_ref(),
        events_rx,
    )?;
    let daemon = Arc::new(Daemon {
        started: Instant::now(),
        xdp: xdp.clone(),
        ike: ike.as_ref().map(|(shared, _)| shared.clone()),
        datapath: datapath.as_ref().map(|r| r.datapath.clone()),
        tunnels: Mutex::default(),
        bgp: bgp.as_ref().map(|(speaker, _)| speaker.clone()),
        nhrp: nhrp.clone(),
    });
    let ike_task = ike.as_ref().map(|(shared, sockets)| {
        tokio::spawn(ike_task::run(
            shared.clone(),
            sockets.clone(),
            crate::ike::workers::default_threads(),
        ))
    });
    let (stop_spokes, spokes_stopped) = tokio::sync::watch::channel(false);
    let spoke_tasks = start_spokes(
        &config,
        config_path,
        &daemon,
        ike.as_ref(),
        datapath.as_ref(),
        &spokes_stopped,
    )?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let signal_name = tokio::select! {
        () = socket.serve(daemon.clone()) => unreachable!("serve only returns when dropped"),
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!(signal = signal_name, "shutting down");
    drop(socket);
    // BGP neighbors get a Cease while the tunnels still carry it.
    if let Some((speaker, tasks)) = bgp {
        speaker.shutdown(tasks).await;
    }
    // Shortcut tunnels to other spokes go first, with their DELETE.
    if let Some(nhrp) = &nhrp {
        nhrp.shutdown();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), &mut events_task).await;
    }
    // Spokes say goodbye to their hub (DELETE) while IKE still runs.
    let _ = stop_spokes.send(true);
    for task in spoke_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
    }
    if let Some(task) = ike_task {
        task.abort();
    }
    if let Some((shared, sockets)) = &ike {
        ike_task::shutdown(shared, sockets).await;
        if let Some(sessions) = &shared.sessions {
            sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }
    events_task.abort();
    if let Some(running) = &datapath {
        running.stop();
    }
    let filter = daemon
        .xdp
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(mut filter) = filter {
        let interface = filter.attachment().map(|a| a.interface.clone());
        filter.detach().context("detaching XDP")?;
        if let Some(interface) = interface {
            tracing::info!(interface, "XDP detached");
        }
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// The BGP speaker when the config has `[bgp]`: learned routes go into the
/// datapath, and the IKE sessions tell it when a neighbor's tunnel comes
/// or goes.
fn start_bgp(
    config: &Config,
    config_path: &Path,
    datapath: Option<&RunningDatapath>,
    ike: Option<&(Arc<IkeShared<Sessions>>, Arc<IkeSockets>)>,
) -> anyhow::Result<Option<(Arc<Speaker>, SpeakerTasks)>> {
    let Some(bgp) = &config.bgp else {
        return Ok(None);
    };
    let speaker_config = SpeakerConfig::from_config(bgp, config.hub.local_address);
    let (speaker, tasks) = Speaker::start(speaker_config, datapath.map(|r| r.datapath.clone()))
        .with_context(|| format!("{}: [bgp]", config_path.display()))?;
    if let Some(sessions) = ike.and_then(|(shared, _)| shared.sessions.as_ref()) {
        sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_route_watch(speaker.clone());
    }
    Ok(Some((speaker, tasks)))
}

/// NHRP when the config has it (it then consumes the datapath's events);
/// otherwise the events are only logged.
fn start_nhrp(
    config: &Config,
    config_path: &Path,
    datapath: Option<&RunningDatapath>,
    ike: Option<&(Arc<IkeShared<Sessions>>, Arc<IkeSockets>)>,
    events: mpsc::Receiver<DatapathEvent>,
) -> anyhow::Result<(Option<Arc<Nhrp>>, tokio::task::JoinHandle<()>)> {
    let plan = match (datapath, ike) {
        (Some(_), Some(_)) => {
            let policy = Policy::from_config(config)
                .with_context(|| format!("{}", config_path.display()))?;
            Plan::from_config(config, &policy)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?
        }
        _ => None,
    };
    let (Some(plan), Some(running)) = (plan, datapath) else {
        return Ok((None, tokio::spawn(log_events(events))));
    };
    let (nhrp, task) = Nhrp::start(plan, running.datapath.clone(), ike.cloned(), events);
    Ok((Some(nhrp), tokio::spawn(task.run())))
}

/// Spoke mode: one task per `[tunnel.N]`, dialling its hub.
fn start_spokes(
    config: &Config,
    config_path: &Path,
    daemon: &Daemon,
    ike: Option<&(Arc<IkeShared<Sessions>>, Arc<IkeSockets>)>,
    datapath: Option<&RunningDatapath>,
    spokes_stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut spoke_tasks = Vec::new();
    let (Some((shared, sockets)), Some(running), Role::Spoke) = (ike, datapath, config.hub.role)
    else {
        return Ok(spoke_tasks);
    };
    let policy =
        Policy::from_config(config).with_context(|| format!("{}", config_path.display()))?;
    let tunnels = SpokeTunnel::from_config(config, &policy)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    for tunnel in tunnels {
        tracing::info!(
            hub = %tunnel.tunnel.destination,
            "spoke: dialling the hub for Tunnel{}",
            tunnel.number
        );
        let status = Arc::new(Mutex::new(TunnelStatus::default()));
        daemon
            .tunnels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(status.clone());
        let runner = SpokeRunner {
            tunnel,
            datapath: running.datapath.clone(),
            ike: shared.clone(),
            sockets: sockets.clone(),
            status,
            shutdown: spokes_stopped.clone(),
            route_watch: daemon
                .bgp
                .clone()
                .map(|s| s as Arc<dyn crate::session::RouteWatch>),
        };
        spoke_tasks.push(tokio::spawn(runner.run()));
    }
    Ok(spoke_tasks)
}

/// Binds IKE and loads the pools when the config has IKEv2 profiles.
/// `force_encapsulation`: make every peer put its ESP in UDP 4500 even
/// without NAT (`Engine::with_forced_encapsulation`), for a datapath that
/// has no raw ESP socket.
async fn start_ike(
    config: &Config,
    config_path: &Path,
    xdp: &Arc<Mutex<Option<XdpFilter>>>,
    datapath: Option<&RunningDatapath>,
) -> anyhow::Result<Option<(Arc<IkeShared<Sessions>>, Arc<IkeSockets>)>> {
    // The userspace datapath has no raw ESP socket: every peer's ESP must
    // come in UDP 4500, NAT or not.
    let force_encapsulation = datapath.is_some_and(|r| r.userspace.is_some());
    if config.ikev2.profile.is_empty() {
        tracing::info!("no IKEv2 profiles configured: IKE not started");
        return Ok(None);
    }
    let policy =
        Policy::from_config(config).with_context(|| format!("{}", config_path.display()))?;
    let pools = Pools::open(&config.hub.state_dir, &config.pool).with_context(|| {
        format!(
            "{}: hub.state_dir: loading the address pools",
            config_path.display()
        )
    })?;
    let on_4500 = datapath.and_then(|r| {
        r.on_4500
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    });
    let kernel = datapath.is_some_and(|r| r.datapath.kind() == "kernel");
    let sockets = match on_4500 {
        Some(on_4500) => IkeSockets::with_datapath(config.hub.local_address, on_4500).await?,
        None if kernel => IkeSockets::for_kernel(config.hub.local_address).await?,
        None => IkeSockets::bind(config.hub.local_address).await?,
    };
    tracing::info!(address = %config.hub.local_address, profiles = policy.profiles.len(), "IKEv2 listening on UDP 500 and 4500");
    let keylog_path = std::env::var_os(keylog::KEYLOG_ENV);
    let keylog = open_keylog(keylog_path.as_deref().map(Path::new))?;
    if force_encapsulation {
        tracing::info!("UDP encapsulation of ESP forced for every peer (NAT or not)");
    }
    let engine = Engine::new(policy, Box::new(SystemRng))
        .with_forced_encapsulation(force_encapsulation)
        .with_nat_keepalive(config.ikev2.nat_keepalive_interval());
    let sessions = datapath.map(|r| {
        Mutex::new(Sessions::new(
            r.datapath.clone(),
            config.virtual_template.clone(),
            config.hub.local_address,
        ))
    });
    let shared = IkeShared {
        engine: Mutex::new(engine),
        pools: Mutex::new(pools),
        xdp: xdp.clone(),
        sessions,
        initiators: Mutex::default(),
        watchers: Mutex::default(),
    };
    Ok(Some((
        Arc::new(shared),
        Arc::new(sockets.with_keylog(keylog)),
    )))
}

/// The running datapath.
struct RunningDatapath {
    datapath: Arc<dyn Datapath>,
    /// The userspace datapath itself, to stop it.
    userspace: Option<Arc<UserspaceDatapath>>,
    /// The kernel datapath itself, to remove its nftables table.
    kernel: Option<Arc<KernelDatapath>>,
    /// Its IKE side of UDP 4500, until IKE takes it.
    on_4500: Mutex<Option<IkeOn4500>>,
}

impl RunningDatapath {
    fn stop(&self) {
        if let Some(dp) = &self.userspace {
            dp.shutdown();
            tracing::info!(tun = dp.tun_name(), "userspace datapath stopped");
        }
        if let Some(dp) = &self.kernel {
            dp.shutdown();
            tracing::info!("kernel datapath stopped");
        }
    }
}

/// Hairpin and NHRP events from the datapath are queued this deep.
const EVENT_QUEUE: usize = 4096;

/// Starts the userspace datapath when there is IKE to carry; the kernel one
/// is refused with the reason (`select`).
fn start_datapath(
    config: &Config,
    config_path: &Path,
    events: &mpsc::Sender<DatapathEvent>,
) -> anyhow::Result<Option<RunningDatapath>> {
    if config.ikev2.profile.is_empty() {
        return Ok(None);
    }
    let kernel = KernelFeatures::detect();
    let reason = match select::select(config.hub.datapath, &kernel) {
        Ok(Selected::Userspace { reason }) => reason,
        Ok(Selected::Kernel) => {
            let clamped = config
                .virtual_template
                .values()
                .map(|t| t.tcp_adjust_mss)
                .chain(config.tunnel.values().map(|t| t.tcp_adjust_mss))
                .any(|mss| mss.is_some());
            if clamped && !nft::available() {
                anyhow::bail!(
                    "{}: tcp_adjust_mss with the kernel datapath needs the `{}` binary \
                     (package nftables), which does not run here",
                    config_path.display(),
                    nft::NFT
                );
            }
            let dp = Arc::new(KernelDatapath::open(Some(events)).with_context(|| {
                format!("{}: starting the kernel datapath", config_path.display())
            })?);
            tracing::info!("datapath: kernel (XFRM and ip_gre)");
            return Ok(Some(RunningDatapath {
                datapath: dp.clone(),
                userspace: None,
                kernel: Some(dp),
                on_4500: Mutex::new(None),
            }));
        }
        Err(why) => anyhow::bail!("{}: {why}", config_path.display()),
    };
    tracing::info!("datapath: userspace ({reason})");
    let mut dp_config = UserspaceConfig::new(config.hub.local_address, TUN_NAME);
    let mtus = config
        .virtual_template
        .values()
        .map(|t| t.mtu)
        .chain(config.tunnel.values().map(|t| t.mtu));
    dp_config.tun_mtu = mtus.max().unwrap_or(1400);
    dp_config.tun_addresses = config
        .virtual_template
        .values()
        .filter_map(|t| match t.unnumbered {
            Unnumbered::Address(a) => Some(a),
            Unnumbered::Tunnel(_) => None,
        })
        .collect();
    dp_config.tun_addresses.sort();
    dp_config.tun_addresses.dedup();
    let (dp, on_4500) = UserspaceDatapath::start(&dp_config, Some(events))
        .with_context(|| format!("{}: starting the userspace datapath", config_path.display()))?;
    Ok(Some(RunningDatapath {
        datapath: dp.clone(),
        userspace: Some(dp),
        kernel: None,
        on_4500: Mutex::new(Some(on_4500)),
    }))
}

/// The TUN device of the userspace datapath.
const TUN_NAME: &str = "gw-tun0";

/// Splits the datapath's events: SA lifetimes and peer moves go to IKE
/// (rekeys, DELETEs, NAT rebinding); hairpins and NHRP packets go on.
fn split_events(
    mut events: mpsc::Receiver<DatapathEvent>,
    ike: Option<(Arc<IkeShared<Sessions>>, Arc<IkeSockets>)>,
) -> mpsc::Receiver<DatapathEvent> {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                DatapathEvent::SaExpired { .. } | DatapathEvent::PeerMoved { .. } => {
                    if let Some((shared, sockets)) = &ike {
                        ike_task::sa_event(shared, sockets, &event).await;
                    }
                }
                other => {
                    if tx.send(other).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// What the datapath reports when NHRP is off.
async fn log_events(mut events: mpsc::Receiver<DatapathEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            DatapathEvent::Hairpin(h) => tracing::debug!(
                from = %h.from, to = %h.to, src = %h.src, dst = %h.dst,
                "hairpin: spoke-to-spoke traffic through the hub"
            ),
            DatapathEvent::Nhrp { va, packet } => tracing::debug!(
                interface = %va, len = packet.len(),
                "NHRP packet received; NHRP is not enabled on this gateway"
            ),
            // `split_events` sends these to IKE.
            DatapathEvent::SaExpired { .. } | DatapathEvent::PeerMoved { .. } => {}
        }
    }
}

/// The IKE key log when `GATEWAY_IKE_KEYLOG` names a file (unset or empty:
/// off). Failing to open it stops the start-up: the operator asked for it.
fn open_keylog(path: Option<&Path>) -> anyhow::Result<Option<KeyLog>> {
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let log = KeyLog::open(path).with_context(|| {
        format!(
            "{}={}: cannot open the IKE key log",
            keylog::KEYLOG_ENV,
            path.display()
        )
    })?;
    tracing::warn!(
        "IKE key log enabled: secrets written to {} and {}; for debugging only",
        path.display(),
        KeyLog::esp_path_for(path).display()
    );
    if log.readable_by_others() {
        tracing::warn!(
            "IKE key log {} is readable by other users (mode is not 0600)",
            path.display()
        );
    }
    Ok(Some(log))
}

fn attach_xdp(config: &Config, config_path: &Path) -> anyhow::Result<Option<XdpFilter>> {
    let settings = &config.xdp;
    if !settings.enabled {
        tracing::warn!(
            "XDP uplink filter disabled (xdp.enabled = false): unknown SPIs and IKE floods reach the stack"
        );
        return Ok(None);
    }
    let uplink = &config.hub.uplink;
    let limit = XdpConfig::ike_limit(u64::from(settings.ike_rate), u64::from(settings.ike_burst));
    let mut filter = XdpFilter::load(limit).context("loading the XDP uplink filter")?;
    let spread_cpus = if settings.spread_esp {
        filter.spread_esp(SPREAD_QUEUE_SIZE).with_context(|| {
            format!(
                "{}: xdp.spread_esp = true: cannot spread ESP over CPUs \
                 (set it to false to pass ESP on the CPU that receives it)",
                config_path.display()
            )
        })?
    } else {
        0
    };
    let attachment = filter.attach(uplink, settings.mode).with_context(|| {
        format!(
            "{}: hub.uplink = {uplink:?}: cannot attach the XDP filter",
            config_path.display()
        )
    })?;
    tracing::info!(
        interface = %attachment.interface,
        mode = %attachment.mode,
        ike_rate = settings.ike_rate,
        ike_burst = settings.ike_burst,
        spread_cpus,
        "XDP uplink filter attached"
    );
    Ok(Some(filter))
}
