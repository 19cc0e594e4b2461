//! The spoke's tunnel to its hub: `[tunnel.N]` resolved against its IKEv2
//! profile and keyring, then dialled, kept alive and dialled again with
//! backoff; while up, its interface, SAs and the routes the hub pushed are
//! in the datapath, and BGP hears of the routes.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use gateway_report::tunnels::TunnelStatus;
use tokio::sync::mpsc;

use super::exchange::{Ended, dial, say_goodbye};
use crate::{
    config::{Config, Tunnel},
    iface::{Datapath, Route, SaPair, VaId, VirtualAccessSpec},
    ike::{
        exchange::{Established, Initiator, InitiatorConfig},
        policy::{KeyringEntry, Policy},
        task::{IkeShared, IkeSockets, Inbound},
    },
    ipsec::{Mode, SaKeys, SystemRng},
    net::IKE_PORT,
    session::{RouteWatch, Sessions},
};

/// First wait before dialling again; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Liveness checks when the profile has no `dpd`.
const DEFAULT_DPD: (u16, u16) = (10, 2);

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
                    // Apart from the engine's own tunnel ids (1 up).
                    tunnel_id: VaId::tunnel(*n).raw(),
                    profile: profile.name.clone(),
                    virtual_template: profile.virtual_template,
                    rekey: profile.rekey,
                },
                dpd_interval: Duration::from_secs(u64::from(interval.max(1))),
                dpd_retry: Duration::from_secs(u64::from(retry.max(1))),
            });
        }
        Ok(out)
    }

    pub(super) fn name(&self) -> String {
        format!("Tunnel{}", self.number)
    }

    /// The handle of the tunnel's interface.
    pub fn va(&self) -> VaId {
        VaId::tunnel(self.number)
    }
}

/// The pre-shared keys of the most specific keyring peer covering
/// `remote`.
pub(super) fn keys_for(
    keyring: &[KeyringEntry],
    remote: Ipv4Addr,
) -> Result<(Vec<u8>, Vec<u8>), String> {
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
        let routes = match self.bring_up(&established) {
            Ok(routes) => routes,
            Err(e) => {
                say_goodbye(&self.sockets, &mut initiator, &mut rx).await;
                self.ike.unregister_initiator(spi_i);
                return Ended::Lost(format!("the datapath refused the tunnel: {e}"));
            }
        };
        // From here the engine answers the hub's requests on the SA, checks
        // liveness and rekeys it; we wait for the session to end.
        let (tx, ended_rx) = tokio::sync::oneshot::channel();
        let tunnel_id = self.tunnel.initiator.tunnel_id;
        self.ike.watch_session(tunnel_id, tx);
        let dpd = Some((self.tunnel.dpd_interval, self.tunnel.dpd_retry));
        let ike_spi = {
            let mut engine = self
                .ike
                .engine
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let sa = initiator.take_sa(&established, dpd, Instant::now());
            let spi = sa.as_ref().map(|sa| sa.keymat.our_spi());
            if let Some(sa) = sa {
                engine.adopt(sa, Instant::now());
            }
            spi
        };
        self.ike.unregister_initiator(spi_i);
        if let (Some(sessions), Some(child)) = (&self.ike.sessions, &established.child) {
            sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .attach(self.tunnel.va(), tunnel_id, child);
        }
        let ended = self.wait_for_end(ended_rx).await;
        if matches!(ended, Ended::Shutdown)
            && let Some(spi) = ike_spi
        {
            crate::ike::task::delete_session(&self.ike, &self.sockets, spi, "shutting down").await;
        }
        let spis = self.ike.sessions.as_ref().map(|s| {
            let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
            let spis = s.spis_of(self.tunnel.va());
            s.session_down(tunnel_id);
            spis
        });
        self.take_down(&routes, &spis.unwrap_or_default());
        ended
    }

    /// Until the engine ends the session (the hub deleted it, it stopped
    /// answering) or we stop; the status shows how long it has been up.
    async fn wait_for_end(&mut self, mut ended: tokio::sync::oneshot::Receiver<String>) -> Ended {
        let up = Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                reason = &mut ended => {
                    return Ended::Lost(reason.unwrap_or_else(|_| "the IKE task stopped".into()));
                }
                _ = self.shutdown.changed() => return Ended::Shutdown,
                _ = tick.tick() => {
                    // Rekeys change the SPIs under the status.
                    let pair = self.ike.sessions.as_ref().and_then(|s| {
                        s.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .newest_pair(self.tunnel.va())
                    });
                    self.set_status(|s| {
                        s.up_seconds = up.elapsed().as_secs();
                        if let Some((spi_in, spi_out)) = pair {
                            s.spi_in = Some(spi_in);
                            s.spi_out = Some(spi_out);
                        }
                    });
                }
            }
        }
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
            esn: child.esp.esn,
            lifetime: child.lifetime,
            defer_outbound: false,
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

    fn take_down(&self, routes: &[Route], spis: &[u32]) {
        let va = self.tunnel.va();
        self.tell_route_watch(routes, false);
        self.share_address(None);
        for spi in spis {
            self.ike.forget_spi(*spi);
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
}
