//! Spoke mode: this gateway as a FlexVPN spoke, like the IOS spoke of the
//! seed configs (`interface Tunnel1`, `ip address negotiated`, `tunnel
//! destination <hub>`, `tunnel protection ipsec profile`). It dials the hub
//! with IKEv2, takes its Tunnel1 address from the hub's pool, carries GRE
//! over ESP transport mode through the same datapath as the hub, routes
//! what the hub pushes (its summary) into the tunnel and announces its own
//! LAN (`route_set`). When the hub goes away it dials again with backoff.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    config::{Config, Tunnel},
    iface::{Datapath, Route, SaPair, VaId, VirtualAccessSpec},
    ike::{
        exchange::{Established, Initiator, InitiatorConfig, Step},
        policy::{KeyringEntry, Policy},
        task::{IkeShared, IkeSockets, Inbound},
        wire::{Delete, Payload, ProtocolId},
    },
    ipsec::{Mode, SaKeys, SystemRng},
    net::IKE_PORT,
    session::RouteWatch,
    session::Sessions,
};

/// First wait before dialling again; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// IKE request retransmissions (RFC 7296 section 2.1): every
/// `RETRANSMIT` for `ATTEMPTS` tries.
const RETRANSMIT: Duration = Duration::from_secs(2);
const ATTEMPTS: u32 = 5;
/// Liveness checks when the profile has no `dpd`.
const DEFAULT_DPD: (u16, u16) = (10, 2);

/// What `show crypto session` says about a spoke's tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub tunnel: String,
    pub hub: String,
    /// `down`, `connecting` or `up`.
    pub state: String,
    pub address: Option<Ipv4Addr>,
    pub routes: Vec<String>,
    pub spi_in: Option<u32>,
    pub spi_out: Option<u32>,
    pub up_seconds: u64,
    pub connects: u32,
    pub last_error: Option<String>,
}

/// One `[tunnel.N]`, resolved against its profile and keyring.
#[derive(Clone, Debug)]
pub struct SpokeTunnel {
    pub number: u16,
    pub tunnel: Tunnel,
    pub initiator: InitiatorConfig,
    pub dpd_interval: Duration,
    pub dpd_retry: Duration,
}

impl SpokeTunnel {
    /// Every `[tunnel.N]` of a spoke's config.
    pub fn from_config(config: &Config, policy: &Policy) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for (n, t) in &config.tunnel {
            let profile = policy
                .profiles
                .iter()
                .find(|p| p.name == t.ikev2_profile)
                .ok_or_else(|| {
                    format!(
                        "tunnel.{n}: ikev2_profile {:?} is not defined",
                        t.ikev2_profile
                    )
                })?;
            let (psk_local, psk_remote) = keys_for(&profile.keyring, t.destination)
                .map_err(|e| format!("tunnel.{n}: profile {}: {e} (the hub)", profile.name))?;
            let (interval, retry) = config
                .ikev2
                .profile
                .get(&profile.name)
                .and_then(|p| p.dpd.as_ref())
                .map_or(DEFAULT_DPD, |d| (d.interval, d.retry));
            out.push(SpokeTunnel {
                number: *n,
                tunnel: t.clone(),
                initiator: InitiatorConfig {
                    local: SocketAddrV4::new(config.hub.local_address, IKE_PORT),
                    remote: SocketAddrV4::new(t.destination, IKE_PORT),
                    identity: profile.local_identity.clone(),
                    remote_identity: None,
                    psk_local,
                    psk_remote,
                    ike: profile.ike_proposals.clone(),
                    esp: profile.esp_proposals.clone(),
                    request_address: true,
                    mode: Mode::Transport,
                    ts_remote: Vec::new(),
                    fragment_len: None,
                    // The userspace datapath carries ESP in UDP only.
                    force_encapsulation: true,
                    route_set: profile.route_set.clone(),
                    tunnel_id: u32::from(*n),
                    profile: profile.name.clone(),
                    virtual_template: profile.virtual_template,
                },
                dpd_interval: Duration::from_secs(u64::from(interval.max(1))),
                dpd_retry: Duration::from_secs(u64::from(retry.max(1))),
            });
        }
        Ok(out)
    }

    fn name(&self) -> String {
        format!("Tunnel{}", self.number)
    }

    /// The handle of the tunnel's interface.
    pub fn va(&self) -> VaId {
        VaId::tunnel(self.number)
    }
}

/// The pre-shared keys of the most specific keyring peer covering
/// `remote`.
fn keys_for(keyring: &[KeyringEntry], remote: Ipv4Addr) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key = keyring
        .iter()
        .filter(|k| k.address.is_some_and(|a| a.contains(remote)))
        .max_by_key(|k| k.address.map_or(0, |a| a.len))
        .ok_or_else(|| format!("no keyring peer covers {remote}"))?;
    match (&key.psk_local, &key.psk_remote) {
        (Some(local), Some(remote)) => Ok((local.clone(), remote.clone())),
        _ => Err(format!(
            "keyring peer {} needs pre_shared_key_local and _remote",
            key.name
        )),
    }
}

/// Handles of dialled shortcut tunnels start here (`ChildSaParams::
/// tunnel_id`), clear of the responder engine's own numbers.
pub const SHORTCUT_TUNNEL_BASE: u32 = 0x4000_0000;

/// Dials other spokes for NHRP shortcuts (IOS `ip nhrp shortcut
/// virtual-template N`): the profile of the tunnel to the hub, its
/// keyring entry for the peer, its virtual template, no address request.
#[derive(Clone, Debug)]
pub struct ShortcutDialer {
    base: InitiatorConfig,
    keyring: Vec<KeyringEntry>,
    dpd: (Duration, Duration),
}

/// What happened to a dialled shortcut tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShortcutEvent {
    Up {
        nbma: Ipv4Addr,
        va: VaId,
    },
    Failed {
        nbma: Ipv4Addr,
        reason: String,
    },
    Down {
        nbma: Ipv4Addr,
        va: VaId,
        reason: String,
    },
}

impl ShortcutDialer {
    /// From the spoke tunnel whose interface has `nhrp_shortcut`.
    pub fn new(tunnel: &SpokeTunnel, policy: &Policy) -> Option<Self> {
        let profile = policy
            .profiles
            .iter()
            .find(|p| p.name == tunnel.initiator.profile)?;
        profile.virtual_template?;
        let mut base = tunnel.initiator.clone();
        base.request_address = false;
        base.route_set = Vec::new();
        base.virtual_template = profile.virtual_template;
        Some(Self {
            base,
            keyring: profile.keyring.clone(),
            dpd: (tunnel.dpd_interval, tunnel.dpd_retry),
        })
    }

    fn config_for(&self, nbma: Ipv4Addr, tunnel_id: u32) -> Result<InitiatorConfig, String> {
        let (psk_local, psk_remote) = keys_for(&self.keyring, nbma)?;
        Ok(InitiatorConfig {
            remote: SocketAddrV4::new(nbma, IKE_PORT),
            psk_local,
            psk_remote,
            tunnel_id,
            ..self.base.clone()
        })
    }

    /// Dials `nbma` once and keeps the tunnel until `stop` or the peer
    /// ends it; its virtual-access comes from `Sessions` like an accepted
    /// one. `report` hears Up, then Down (or Failed).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        self,
        nbma: Ipv4Addr,
        tunnel_id: u32,
        ike: Arc<IkeShared<Sessions>>,
        sockets: Arc<IkeSockets>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        report: mpsc::UnboundedSender<ShortcutEvent>,
    ) {
        let failed = |reason: String| ShortcutEvent::Failed { nbma, reason };
        let config = match self.config_for(nbma, tunnel_id) {
            Ok(c) => c,
            Err(e) => {
                let _ = report.send(failed(e));
                return;
            }
        };
        let peer = format!("spoke {nbma}");
        let mut initiator = Initiator::new(config, Box::new(SystemRng));
        let (tx, mut rx) = mpsc::channel(64);
        let spi_i = initiator.spi_i();
        ike.register_initiator(spi_i, tx);
        let established = match dial(&sockets, &mut stop, &mut initiator, &mut rx, &peer).await {
            Ok(e) => e,
            Err(ended) => {
                ike.unregister_initiator(spi_i);
                let reason = match ended {
                    Ended::Shutdown => "stopped".to_owned(),
                    Ended::Lost(r) => r,
                };
                let _ = report.send(failed(reason));
                return;
            }
        };
        let Some(child) = established.child.as_ref() else {
            ike.unregister_initiator(spi_i);
            let _ = report.send(failed("the peer created no CHILD_SA".into()));
            return;
        };
        let Some(sessions) = ike.sessions.as_ref() else {
            ike.unregister_initiator(spi_i);
            let _ = report.send(failed("no datapath".into()));
            return;
        };
        let up = sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .child_up_initiated(child);
        let va = match up {
            Ok(va) => va,
            Err(e) => {
                say_goodbye(&sockets, &mut initiator, &mut rx).await;
                ike.unregister_initiator(spi_i);
                let _ = report.send(failed(format!("the datapath refused the tunnel: {e}")));
                return;
            }
        };
        ike.allow_spi(child.spi_in);
        tracing::info!(
            "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is UP. Peer {nbma}:{} Id: {} Interface: {va} (NHRP shortcut)",
            initiator.endpoints().1.port(),
            established.peer_identity,
        );
        let _ = report.send(ShortcutEvent::Up { nbma, va });
        let ended = keep_alive(
            &sockets,
            &mut stop,
            &mut initiator,
            &mut rx,
            self.dpd,
            &peer,
            || {},
        )
        .await;
        let reason = match &ended {
            Ended::Shutdown => {
                say_goodbye(&sockets, &mut initiator, &mut rx).await;
                "closed".to_owned()
            }
            Ended::Lost(r) => r.clone(),
        };
        ike.unregister_initiator(spi_i);
        sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .child_down(child.spi_in);
        ike.forget_spi(child.spi_in);
        tracing::info!(
            "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is DOWN. Peer {nbma} Interface: {va} Reason: {reason}"
        );
        let _ = report.send(ShortcutEvent::Down { nbma, va, reason });
    }
}

/// Why a session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

pub struct SpokeRunner {
    pub tunnel: SpokeTunnel,
    pub datapath: Arc<dyn Datapath>,
    pub ike: Arc<IkeShared<Sessions>>,
    pub sockets: Arc<IkeSockets>,
    pub status: Arc<Mutex<TunnelStatus>>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// BGP, told when the routes through the tunnel come and go.
    pub route_watch: Option<Arc<dyn RouteWatch>>,
}

impl SpokeRunner {
    fn set_status(&self, f: impl FnOnce(&mut TunnelStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Dials, serves, and dials again until shutdown.
    pub async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        self.set_status(|s| {
            s.tunnel = self.tunnel.name();
            s.hub = self.tunnel.tunnel.destination.to_string();
            s.state = "down".into();
        });
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            self.set_status(|s| {
                s.state = "connecting".into();
                s.connects += 1;
            });
            let started = Instant::now();
            let ended = self.session().await;
            self.set_status(|s| {
                s.state = "down".into();
                s.address = None;
                s.routes.clear();
                s.spi_in = None;
                s.spi_out = None;
            });
            match ended {
                Ended::Shutdown => return,
                Ended::Lost(reason) => {
                    tracing::warn!(
                        tunnel = %self.tunnel.name(),
                        hub = %self.tunnel.tunnel.destination,
                        "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is DOWN. Peer {}:500 Reason: {reason}; dialling again in {}s",
                        self.tunnel.tunnel.destination,
                        backoff.as_secs()
                    );
                    self.set_status(|s| s.last_error = Some(reason));
                }
            }
            // A session that lasted resets the backoff.
            if started.elapsed() > MAX_BACKOFF * 2 {
                backoff = FIRST_BACKOFF;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One session: dial, bring the tunnel up, keep it alive, take it down.
    async fn session(&mut self) -> Ended {
        let mut initiator = Initiator::new(self.tunnel.initiator.clone(), Box::new(SystemRng));
        let (tx, mut rx) = mpsc::channel(64);
        let spi_i = initiator.spi_i();
        self.ike.register_initiator(spi_i, tx);
        let result = self.dial(&mut initiator, &mut rx).await;
        let established = match result {
            Ok(e) => e,
            Err(ended) => {
                self.ike.unregister_initiator(spi_i);
                return ended;
            }
        };
        let ended = match self.bring_up(&established) {
            Ok(routes) => {
                let ended = self.keep_alive(&mut initiator, &mut rx).await;
                let spi_in = established.child.as_ref().map(|c| c.spi_in);
                self.take_down(&routes, spi_in);
                ended
            }
            Err(e) => Ended::Lost(format!("the datapath refused the tunnel: {e}")),
        };
        if matches!(ended, Ended::Shutdown) {
            say_goodbye(&self.sockets, &mut initiator, &mut rx).await;
        }
        self.ike.unregister_initiator(spi_i);
        ended
    }

    async fn dial(
        &mut self,
        initiator: &mut Initiator,
        rx: &mut mpsc::Receiver<Inbound>,
    ) -> Result<Established, Ended> {
        dial(&self.sockets, &mut self.shutdown, initiator, rx, "the hub").await
    }

    /// The tunnel interface, its SAs and routes.
    fn bring_up(&self, e: &Established) -> Result<Vec<Route>, String> {
        let child = e.child.as_ref().ok_or("the hub created no CHILD_SA")?;
        let address = e
            .address
            .ok_or("the hub gave no address (is a pool set in its profile?)")?;
        let t = &self.tunnel.tunnel;
        let (local_port, remote_port) = child.encap.ok_or(
            "the hub did not agree to UDP encapsulation, which the userspace datapath needs",
        )?;
        let va = self.tunnel.va();
        let spec = VirtualAccessSpec {
            id: va,
            name: self.tunnel.name(),
            template: None,
            unnumbered: address,
            mtu: t.mtu,
            tcp_adjust_mss: t.tcp_adjust_mss,
            nhrp_network_id: t.nhrp_network_id,
            peer_inner: None,
            local_outer: SocketAddrV4::new(child.local, local_port),
            remote_outer: SocketAddrV4::new(child.remote, remote_port),
        };
        self.datapath
            .create_virtual_access(&spec)
            .map_err(|e| e.to_string())?;
        // We initiated: the initiator's keys protect what we send.
        let sa = SaPair {
            va,
            spi_in: child.spi_in,
            spi_out: child.spi_out,
            encr: child.esp.encr,
            integ: child.esp.integ,
            inbound: SaKeys {
                encr: child.keys.encr_r.clone(),
                integ: child.keys.integ_r.clone(),
            },
            outbound: SaKeys {
                encr: child.keys.encr_i.clone(),
                integ: child.keys.integ_i.clone(),
            },
            mode: child.mode,
            encap: child.encap,
            local: child.local,
            remote: child.remote,
        };
        if let Err(e) = self.datapath.install_sa(&sa) {
            let _ = self.datapath.remove_virtual_access(va);
            return Err(e.to_string());
        }
        self.ike.allow_spi(child.spi_in);
        let mut routes = Vec::new();
        for prefix in &e.routes {
            let route = Route {
                prefix: *prefix,
                va,
                next_hop: None,
            };
            match self.datapath.add_route(&route) {
                Ok(()) => routes.push(route),
                Err(err) => {
                    tracing::warn!(prefix = %prefix, error = %err, "route from the hub not installed");
                }
            }
        }
        tracing::info!(
            "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is UP. Peer {}:{} Id: {} Assigned: {address} Interface: {}",
            child.remote,
            remote_port,
            e.peer_identity,
            self.tunnel.name()
        );
        tracing::info!(
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface {}, changed state to up (address {address} negotiated, routes {})",
            self.tunnel.name(),
            routes
                .iter()
                .map(|r| r.prefix.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.tell_route_watch(&routes, true);
        self.share_address(Some(address));
        let route_names = routes.iter().map(|r| r.prefix.to_string()).collect();
        self.set_status(|s| {
            s.state = "up".into();
            s.address = Some(address);
            s.routes = route_names;
            s.spi_in = Some(child.spi_in);
            s.spi_out = Some(child.spi_out);
            s.last_error = None;
        });
        Ok(routes)
    }

    /// Templates `unnumbered = "TunnelN"` (shortcut tunnels) borrow the
    /// tunnel's negotiated address, and NHRP speaks from it.
    fn share_address(&self, address: Option<Ipv4Addr>) {
        if let Some(sessions) = &self.ike.sessions {
            sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_tunnel_address(self.tunnel.number, address);
        }
    }

    fn tell_route_watch(&self, routes: &[Route], added: bool) {
        let Some(watch) = &self.route_watch else {
            return;
        };
        let prefixes: Vec<_> = routes.iter().map(|r| r.prefix).collect();
        if added {
            watch.routes_added(&prefixes);
        } else {
            watch.routes_removed(&prefixes);
        }
    }

    fn take_down(&self, routes: &[Route], spi_in: Option<u32>) {
        let va = self.tunnel.va();
        self.tell_route_watch(routes, false);
        self.share_address(None);
        if let Some(spi) = spi_in {
            self.ike.forget_spi(spi);
        }
        for r in routes.iter().rev() {
            let _ = self.datapath.remove_route(r);
        }
        let _ = self.datapath.remove_virtual_access(va);
        tracing::info!(
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface {}, changed state to down",
            self.tunnel.name()
        );
    }

    /// Liveness checks (RFC 7296 section 2.4) and requests from the hub,
    /// until the hub is gone, deletes us, or we stop.
    async fn keep_alive(
        &mut self,
        initiator: &mut Initiator,
        rx: &mut mpsc::Receiver<Inbound>,
    ) -> Ended {
        let up = Instant::now();
        let status = self.status.clone();
        let dpd = (self.tunnel.dpd_interval, self.tunnel.dpd_retry);
        keep_alive(
            &self.sockets,
            &mut self.shutdown,
            initiator,
            rx,
            dpd,
            "the hub",
            || {
                status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .up_seconds = up.elapsed().as_secs();
            },
        )
        .await
    }
}

/// Sends to the peer from where the initiator says (port 4500 once NAT-T
/// is in use, RFC 7296 section 2.23).
async fn send(sockets: &IkeSockets, endpoints: (SocketAddrV4, SocketAddrV4), packet: &[u8]) {
    let (local, remote) = endpoints;
    if let Err(e) = sockets.send(local.port(), remote, packet).await {
        tracing::debug!(%remote, error = %e, "IKE send failed");
    }
}

/// IKE_SA_INIT and IKE_AUTH, with retransmissions. `peer` names the other
/// end in errors ("the hub").
async fn dial(
    sockets: &IkeSockets,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    initiator: &mut Initiator,
    rx: &mut mpsc::Receiver<Inbound>,
    peer: &str,
) -> Result<Established, Ended> {
    let first = initiator
        .start()
        .map_err(|e| Ended::Lost(format!("IKE_SA_INIT: {e}")))?;
    let mut request = vec![first];
    let mut endpoints = initiator.endpoints();
    loop {
        let mut answer = None;
        for _ in 0..ATTEMPTS {
            for part in &request {
                send(sockets, endpoints, part).await;
            }
            tokio::select! {
                got = tokio::time::timeout(RETRANSMIT, rx.recv()) => match got {
                    Ok(Some(inbound)) => { answer = Some(inbound); break; }
                    Ok(None) => return Err(Ended::Shutdown),
                    Err(_) => {}
                },
                _ = shutdown.changed() => return Err(Ended::Shutdown),
            }
        }
        let Some(inbound) = answer else {
            return Err(Ended::Lost(format!(
                "no answer from {peer} after {ATTEMPTS} tries"
            )));
        };
        match sockets.dial_step(initiator, &inbound.datagram) {
            Ok(Step::Send(next)) => request = vec![next],
            Ok(Step::SendAll(parts)) => request = parts,
            Ok(Step::Established(e)) => return Ok(*e),
            Err(e) => return Err(Ended::Lost(format!("{peer}'s answer: {e}"))),
        }
        endpoints = initiator.endpoints();
    }
}

/// Tells the peer the SA is gone (RFC 7296 section 1.4.1), and waits
/// briefly for its answer.
async fn say_goodbye(
    sockets: &IkeSockets,
    initiator: &mut Initiator,
    rx: &mut mpsc::Receiver<Inbound>,
) {
    let delete = Payload::Delete(Delete {
        protocol: ProtocolId::Ike,
        spi_size: 0,
        spis: vec![],
    });
    if let Ok(request) = initiator.informational(&[delete]) {
        send(sockets, initiator.endpoints(), &request).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    }
}

/// Liveness checks (RFC 7296 section 2.4) and requests from the peer,
/// until the peer is gone, deletes us, or we stop. `answered` runs on
/// each answered check.
async fn keep_alive(
    sockets: &IkeSockets,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    initiator: &mut Initiator,
    rx: &mut mpsc::Receiver<Inbound>,
    (dpd_interval, dpd_retry): (Duration, Duration),
    peer: &str,
    mut answered: impl FnMut(),
) -> Ended {
    let mut next_check = tokio::time::Instant::now() + dpd_interval;
    let mut outstanding: Option<(Vec<u8>, u32, tokio::time::Instant)> = None;
    let endpoints = initiator.endpoints();
    loop {
        let deadline = outstanding.as_ref().map_or(next_check, |o| o.2);
        tokio::select! {
            _ = shutdown.changed() => return Ended::Shutdown,
            () = tokio::time::sleep_until(deadline) => {
                match &mut outstanding {
                    None => match initiator.informational(&[]) {
                        Ok(request) => {
                            send(sockets, endpoints, &request).await;
                            outstanding = Some((request, 1, tokio::time::Instant::now() + dpd_retry));
                        }
                        Err(e) => return Ended::Lost(format!("liveness check: {e}")),
                    },
                    Some((request, tries, at)) => {
                        if *tries >= ATTEMPTS {
                            return Ended::Lost(format!(
                                "{peer} did not answer {ATTEMPTS} liveness checks (DPD)"
                            ));
                        }
                        send(sockets, endpoints, request).await;
                        *tries += 1;
                        *at = tokio::time::Instant::now() + dpd_retry;
                    }
                }
            }
            got = rx.recv() => {
                let Some(inbound) = got else { return Ended::Shutdown };
                if is_response(&inbound.datagram) {
                    if initiator.informational_response(&inbound.datagram).is_ok() {
                        outstanding = None;
                        next_check = tokio::time::Instant::now() + dpd_interval;
                        answered();
                    }
                    continue;
                }
                match initiator.respond(&inbound.datagram) {
                    Ok((response, payloads)) => {
                        send(sockets, endpoints, &response).await;
                        let deleted = payloads.iter().any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::Ike || d.protocol == ProtocolId::Esp));
                        if deleted {
                            return Ended::Lost(format!("{peer} deleted the session"));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "request from {peer} not understood"),
                }
            }
        }
    }
}

/// The R flag of an IKE header (RFC 7296 section 3.1).
fn is_response(datagram: &[u8]) -> bool {
    datagram.get(19).is_some_and(|f| f & 0x20 != 0)
}

/// `show interfaces tunnel` as text, one block per tunnel.
pub fn render_tunnels(tunnels: &[TunnelStatus]) -> String {
    use std::fmt::Write as _;
    if tunnels.is_empty() {
        return "No tunnels configured ([tunnel.N] on a spoke).\n".to_owned();
    }
    let mut out = String::new();
    for t in tunnels {
        let line = if t.state == "up" { "up" } else { "down" };
        let _ = writeln!(
            out,
            "{} is up, line protocol is {line} ({})",
            t.tunnel, t.state
        );
        let _ = writeln!(
            out,
            "  Tunnel destination {}, address {} (negotiated)",
            t.hub,
            t.address
                .map_or_else(|| "none".to_owned(), |a| a.to_string())
        );
        if let (Some(i), Some(o)) = (t.spi_in, t.spi_out) {
            let _ = writeln!(
                out,
                "  ESP SPI in {i:08x}, out {o:08x}, up {}s",
                t.up_seconds
            );
        }
        if !t.routes.is_empty() {
            let _ = writeln!(out, "  Routes from the hub: {}", t.routes.join(", "));
        }
        let _ = writeln!(out, "  Connection attempts: {}", t.connects);
        if let Some(e) = &t.last_error {
            let _ = writeln!(out, "  Last error: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_render_state_address_routes_and_the_last_error() {
        let up = TunnelStatus {
            tunnel: "Tunnel1".into(),
            hub: "172.25.1.1".into(),
            state: "up".into(),
            address: Some(Ipv4Addr::new(10, 1, 1, 100)),
            routes: vec!["192.168.0.0/16".into()],
            spi_in: Some(0xc000_0001),
            spi_out: Some(0x1234),
            up_seconds: 42,
            connects: 2,
            last_error: Some("the hub deleted the session".into()),
        };
        let text = render_tunnels(&[up]);
        assert!(
            text.contains("Tunnel1 is up, line protocol is up (up)"),
            "{text}"
        );
        assert!(text.contains("address 10.1.1.100 (negotiated)"), "{text}");
        assert!(text.contains("in c0000001, out 00001234, up 42s"), "{text}");
        assert!(
            text.contains("Routes from the hub: 192.168.0.0/16"),
            "{text}"
        );
        assert!(
            text.contains("Last error: the hub deleted the session"),
            "{text}"
        );
        let down = TunnelStatus {
            tunnel: "Tunnel1".into(),
            state: "connecting".into(),
            ..TunnelStatus::default()
        };
        assert!(render_tunnels(&[down]).contains("line protocol is down (connecting)"));
        assert!(render_tunnels(&[]).contains("No tunnels"));
    }
}
