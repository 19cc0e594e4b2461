//! `gateway run`: load the config, attach XDP to the uplink, serve the
//! control socket, and undo it all on SIGINT/SIGTERM.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context as _;
use gateway_common::XdpConfig;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::{self, Config},
    control::{ControlSocket, Handler, Request, Response},
    xdp::XdpFilter,
};

/// What `show version` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub pid: u32,
    pub uptime_s: u64,
}

/// State the control socket reads and changes.
pub struct Daemon {
    started: Instant,
    xdp: Mutex<Option<XdpFilter>>,
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

    let daemon = Arc::new(Daemon {
        started: Instant::now(),
        xdp: Mutex::new(xdp),
    });
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let signal_name = tokio::select! {
        () = socket.serve(daemon.clone()) => unreachable!("serve only returns when dropped"),
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!(signal = signal_name, "shutting down");
    drop(socket);
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
        "XDP uplink filter attached"
    );
    Ok(Some(filter))
}
