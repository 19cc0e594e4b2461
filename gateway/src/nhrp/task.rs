//! The NHRP task: datapath events (hairpins, NHRP packets) in, packets,
//! routes and shortcut tunnels out, and the control socket's views.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use gateway_report::nhrp::{NhrpCleared, NhrpTraffic, NhrpView};

use super::{
    Station,
    redirect::Redirector,
    shortcut::{Action, Shortcuts, SpokeSettings},
};
use crate::iface::PeerTunnel;
use crate::{
    config::{Config, Role, Unnumbered},
    iface::{Datapath, DatapathEvent, VaId},
    ike::{
        policy::Policy,
        task::{self as ike_task, IkeShared, IkeSockets},
    },
    session::Sessions,
    spoke::{ShortcutDialer, ShortcutEvent, SpokeTunnel},
};

/// What the configuration asks of NHRP.
#[allow(clippy::large_enum_variant, reason = "one per gateway, made once")]
pub enum Plan {
    /// A hub with `nhrp_redirect` on a template.
    Hub {
        station: Station,
        redirect_timeout: Duration,
    },
    /// A spoke whose tunnel to the hub has an NHRP network id.
    Spoke {
        settings: SpokeSettings,
        /// Its `[tunnel.N]` number, whose negotiated address is ours.
        tunnel: u16,
        dialer: Option<ShortcutDialer>,
    },
}

impl Plan {
    /// `None` when no interface runs NHRP.
    pub fn from_config(config: &Config, policy: &Policy) -> Result<Option<Self>, String> {
        match config.hub.role {
            Role::Hub => {
                let redirecting: Vec<_> = config
                    .virtual_template
                    .values()
                    .filter(|t| t.nhrp_redirect && t.nhrp_network_id.is_some())
                    .collect();
                let Some(first) = redirecting.first() else {
                    return Ok(None);
                };
                let protocol = match first.unnumbered {
                    Unnumbered::Address(a) => a,
                    Unnumbered::Tunnel(_) => config.hub.local_address,
                };
                // One limit for the box: the strictest template's.
                let timeout = redirecting
                    .iter()
                    .map(|t| t.nhrp_redirect_timeout)
                    .max()
                    .unwrap_or(8);
                Ok(Some(Plan::Hub {
                    station: Station {
                        nbma: config.hub.local_address,
                        protocol,
                    },
                    redirect_timeout: Duration::from_secs(u64::from(timeout)),
                }))
            }
            Role::Spoke => {
                let Some((n, t)) = config
                    .tunnel
                    .iter()
                    .find(|(_, t)| t.nhrp_network_id.is_some())
                else {
                    return Ok(None);
                };
                let tunnels = SpokeTunnel::from_config(config, policy)?;
                let Some(spoke_tunnel) = tunnels.iter().find(|s| s.number == *n) else {
                    return Ok(None);
                };
                let mut own_prefixes: Vec<_> = config
                    .bgp
                    .as_ref()
                    .map(|b| b.networks.clone())
                    .unwrap_or_default();
                if let Some(p) = policy.profiles.iter().find(|p| p.name == t.ikev2_profile) {
                    own_prefixes.extend(p.route_set.iter().copied());
                }
                own_prefixes.sort();
                own_prefixes.dedup();
                // IOS `ip nhrp shortcut` governs only what this spoke asks
                // for; it answers for its own prefixes either way, over a
                // tunnel cloned from its profile's template.
                let dialer = ShortcutDialer::new(spoke_tunnel, policy);
                Ok(Some(Plan::Spoke {
                    settings: SpokeSettings {
                        nbma: config.hub.local_address,
                        own_prefixes,
                        holdtime: t.nhrp_holdtime,
                        shortcut: t.nhrp_shortcut,
                        hub_va: spoke_tunnel.va(),
                    },
                    tunnel: *n,
                    dialer,
                }))
            }
        }
    }
}

#[allow(clippy::large_enum_variant, reason = "one per gateway")]
enum Machine {
    Hub {
        redirector: Redirector,
        timeout: Duration,
    },
    Spoke {
        shortcuts: Shortcuts,
        tunnel: u16,
    },
}

struct State {
    machine: Machine,
    /// Packets sent per virtual-access at the last tick (traffic through
    /// a shortcut keeps it alive).
    tx_seen: HashMap<VaId, u64>,
}

/// Requests to the task that need IKE (async).
enum Command {
    Dial(Ipv4Addr),
    Close(VaId),
    /// The gateway stops: dialled tunnels say goodbye.
    Shutdown,
}

/// NHRP as the control socket sees it.
pub struct Nhrp {
    state: Mutex<State>,
    /// NHRP packets we sent per virtual-access since the last tick: the
    /// kernel counts them with the traffic, and a refresh must not keep
    /// its own entry alive.
    own_packets: Mutex<HashMap<VaId, u64>>,
    datapath: Arc<dyn Datapath>,
    ike: Option<Arc<IkeShared<Sessions>>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// The parts the task owns.
pub struct NhrpTask {
    nhrp: Arc<Nhrp>,
    events: mpsc::Receiver<DatapathEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    dialer: Option<ShortcutDialer>,
    sockets: Option<Arc<IkeSockets>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Nhrp {
    pub fn start(
        plan: Plan,
        datapath: Arc<dyn Datapath>,
        ike: Option<(Arc<IkeShared<Sessions>>, Arc<IkeSockets>)>,
        events: mpsc::Receiver<DatapathEvent>,
    ) -> (Arc<Self>, NhrpTask) {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (machine, dialer) = match plan {
            Plan::Hub {
                station,
                redirect_timeout,
            } => {
                tracing::info!(
                    nbma = %station.nbma, address = %station.protocol,
                    redirect_timeout_s = redirect_timeout.as_secs(),
                    "NHRP: redirecting spoke-to-spoke traffic (ip nhrp redirect)"
                );
                (
                    Machine::Hub {
                        redirector: Redirector::new(station),
                        timeout: redirect_timeout,
                    },
                    None,
                )
            }
            Plan::Spoke {
                settings,
                tunnel,
                dialer,
            } => {
                tracing::info!(
                    nbma = %settings.nbma,
                    prefixes = ?settings.own_prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    holdtime_s = settings.holdtime,
                    shortcut = settings.shortcut,
                    "NHRP: spoke on Tunnel{tunnel}"
                );
                (
                    Machine::Spoke {
                        shortcuts: Shortcuts::new(settings),
                        tunnel,
                    },
                    dialer,
                )
            }
        };
        let nhrp = Arc::new(Nhrp {
            state: Mutex::new(State {
                machine,
                tx_seen: HashMap::new(),
            }),
            own_packets: Mutex::default(),
            datapath,
            ike: ike.as_ref().map(|(shared, _)| shared.clone()),
            commands: commands_tx,
        });
        let task = NhrpTask {
            nhrp: nhrp.clone(),
            events,
            commands: commands_rx,
            dialer,
            sockets: ike.map(|(_, sockets)| sockets),
        };
        (nhrp, task)
    }

    /// Stops the task; dialled shortcut tunnels send their DELETE first.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    /// `show ip nhrp`.
    pub fn view(&self) -> NhrpView {
        let state = lock(&self.state);
        match &state.machine {
            Machine::Hub { .. } => NhrpView {
                role: "hub".into(),
                entries: Vec::new(),
            },
            Machine::Spoke { shortcuts, .. } => {
                let report = self.datapath.report();
                let name = |va: VaId| {
                    report
                        .virtual_access
                        .iter()
                        .find(|v| v.id == va.raw())
                        .map_or_else(|| va.to_string(), |v| v.name.clone())
                };
                NhrpView {
                    role: "spoke".into(),
                    entries: shortcuts.entries(Instant::now(), &name),
                }
            }
        }
    }

    /// `show ip nhrp traffic`.
    pub fn traffic(&self) -> NhrpTraffic {
        match &lock(&self.state).machine {
            Machine::Hub { redirector, .. } => redirector.traffic.clone(),
            Machine::Spoke { shortcuts, .. } => shortcuts.traffic.clone(),
        }
    }

    /// `clear ip nhrp`: a hub forgets its redirect limits (sessions stay);
    /// a spoke purges and closes its shortcuts.
    pub fn clear(&self) -> NhrpCleared {
        let mut state = lock(&self.state);
        match &mut state.machine {
            Machine::Hub { redirector, .. } => {
                let pairs = redirector.clear();
                tracing::info!("NHRP: cleared ({pairs} redirect limits); sessions stay up");
                NhrpCleared {
                    redirect_pairs: pairs,
                    ..NhrpCleared::default()
                }
            }
            Machine::Spoke { shortcuts, .. } => {
                let (actions, cleared) = shortcuts.clear();
                self.carry_out(shortcuts, actions);
                tracing::info!(
                    entries = cleared.entries,
                    tunnels = cleared.tunnels_closed,
                    "NHRP: cleared; shortcut tunnels closing"
                );
                cleared
            }
        }
    }

    fn peer_tunnels(&self) -> Vec<PeerTunnel> {
        self.ike
            .as_ref()
            .and_then(|ike| ike.sessions.as_ref())
            .map(|s| lock(s).peer_tunnels())
            .unwrap_or_default()
    }

    fn tunnel_address(&self, tunnel: u16) -> Option<Ipv4Addr> {
        self.ike
            .as_ref()
            .and_then(|ike| ike.sessions.as_ref())
            .and_then(|s| lock(s).tunnel_address(tunnel))
    }

    /// Brings a spoke's view of its tunnels and address up to date.
    fn sync_spoke(&self, shortcuts: &mut Shortcuts, tunnel: u16, now: Instant) {
        shortcuts.set_protocol_address(self.tunnel_address(tunnel));
        let tunnels = self.peer_tunnels();
        let actions = shortcuts.tunnels_now(now, &tunnels);
        self.carry_out(shortcuts, actions);
    }

    fn carry_out(&self, shortcuts: &mut Shortcuts, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { va, packet } => match self.datapath.send_nhrp(va, &packet) {
                    Ok(()) => *lock(&self.own_packets).entry(va).or_default() += 1,
                    Err(e) => tracing::warn!(interface = %va, error = %e, "NHRP: send failed"),
                },
                Action::AddRoute(route) => {
                    if let Err(e) = self.datapath.add_route(&route) {
                        tracing::warn!(prefix = %route.prefix, interface = %route.va, error = %e, "NHRP: route not installed");
                    }
                }
                Action::RemoveRoute(route) => {
                    // The interface may be gone already, with its routes.
                    if let Err(e) = self.datapath.remove_route(&route) {
                        tracing::debug!(prefix = %route.prefix, error = %e, "NHRP: route removal");
                    }
                }
                Action::Dial { nbma } => {
                    let _ = self.commands.send(Command::Dial(nbma));
                }
                Action::Close { va } => {
                    shortcuts.traffic.tunnels_closed += 1;
                    let _ = self.commands.send(Command::Close(va));
                }
            }
        }
    }

    fn on_event(&self, event: DatapathEvent) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        match (&mut state.machine, event) {
            (
                Machine::Hub {
                    redirector,
                    timeout,
                },
                DatapathEvent::Hairpin(h),
            ) => {
                if let Some(out) = redirector.on_hairpin(&h, now, *timeout)
                    && let Err(e) = self.datapath.send_nhrp(out.va, &out.packet)
                {
                    tracing::warn!(interface = %out.va, error = %e, "NHRP: Traffic Indication not sent");
                }
            }
            (Machine::Hub { redirector, .. }, DatapathEvent::Nhrp { va, packet }) => {
                let route = |addr| self.datapath.lookup(addr).map(|r| r.va);
                for out in redirector.on_packet(va, &packet, &route) {
                    if let Err(e) = self.datapath.send_nhrp(out.va, &out.packet) {
                        tracing::info!(interface = %out.va, error = %e, "NHRP: cannot forward; telling the sender");
                        for back in redirector.undeliverable(va, &packet) {
                            if let Err(e) = self.datapath.send_nhrp(back.va, &back.packet) {
                                tracing::warn!(interface = %back.va, error = %e, "NHRP: Error Indication not sent");
                            }
                        }
                    }
                }
            }
            (Machine::Spoke { shortcuts, tunnel }, DatapathEvent::Nhrp { va, packet }) => {
                let tunnel = *tunnel;
                self.sync_spoke(shortcuts, tunnel, now);
                let actions = shortcuts.on_packet(now, va, &packet);
                self.carry_out(shortcuts, actions);
            }
            // A spoke's own hairpins (shortcut to hub) are not redirected;
            // SA events are the IKE task's (the daemon sends them there).
            (Machine::Spoke { .. }, DatapathEvent::Hairpin(_))
            | (_, DatapathEvent::SaExpired { .. } | DatapathEvent::PeerMoved { .. }) => {}
        }
    }

    fn tick(&self) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let State { machine, tx_seen } = &mut *state;
        let Machine::Spoke { shortcuts, tunnel } = machine else {
            return;
        };
        let tunnel = *tunnel;
        self.sync_spoke(shortcuts, tunnel, now);
        let report = self.datapath.report();
        let ours = std::mem::take(&mut *lock(&self.own_packets));
        let mut active = Vec::new();
        let mut seen = HashMap::new();
        for v in &report.virtual_access {
            let own = ours.get(&VaId::from_raw(v.id)).copied().unwrap_or(0);
            if tx_seen
                .get(&VaId::from_raw(v.id))
                .is_some_and(|n| v.tx_packets > n.saturating_add(own))
            {
                active.push(VaId::from_raw(v.id));
            }
            seen.insert(VaId::from_raw(v.id), v.tx_packets);
        }
        *tx_seen = seen;
        let actions = shortcuts.tick(now, &active);
        self.carry_out(shortcuts, actions);
    }

    fn dial_ended(&self, event: &ShortcutEvent) {
        let mut state = lock(&self.state);
        let Machine::Spoke { shortcuts, tunnel } = &mut state.machine else {
            return;
        };
        let tunnel = *tunnel;
        match event {
            ShortcutEvent::Failed { nbma, reason } => shortcuts.dial_failed(*nbma, reason),
            ShortcutEvent::Up { .. } => shortcuts.dial_up(),
            ShortcutEvent::Down { .. } => {}
        }
        self.sync_spoke(shortcuts, tunnel, Instant::now());
    }
}

impl NhrpTask {
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (dial_tx, mut dial_rx) = mpsc::unbounded_channel();
        // Dials by peer; the interface once up.
        let mut dials: HashMap<Ipv4Addr, (watch::Sender<bool>, Option<VaId>)> = HashMap::new();
        loop {
            tokio::select! {
                event = self.events.recv() => {
                    let Some(event) = event else { break };
                    self.nhrp.on_event(event);
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    match command {
                        Command::Dial(nbma) => {
                            let (Some(dialer), Some(ike), Some(sockets)) =
                                (&mut self.dialer, &self.nhrp.ike, &self.sockets)
                            else {
                                tracing::warn!(peer = %nbma, "NHRP: cannot answer over a shortcut tunnel: the profile has no virtual_template");
                                continue;
                            };
                            // Already dialling, or the peer's tunnel came
                            // meanwhile (one GRE link per pair of addresses).
                            if dials.contains_key(&nbma)
                                || self.nhrp.peer_tunnels().iter().any(|t| t.nbma == nbma)
                            {
                                continue;
                            }
                            let (stop, stop_rx) = watch::channel(false);
                            dials.insert(nbma, (stop, None));
                            tokio::spawn(dialer.dial(
                                nbma,
                                ike.clone(),
                                sockets.clone(),
                                stop_rx,
                                dial_tx.clone(),
                            ));
                        }
                        Command::Close(va) => {
                            if let Some((stop, _)) = dials.values().find(|(_, v)| *v == Some(va)) {
                                let _ = stop.send(true);
                                continue;
                            }
                            let spi = self.nhrp.ike.as_ref().and_then(|ike| {
                                ike.sessions.as_ref().and_then(|s| lock(s).accepted_ike_spi(va))
                            });
                            if let (Some(spi), Some(ike), Some(sockets)) = (spi, &self.nhrp.ike, &self.sockets) {
                                ike_task::delete_session(ike, sockets, spi, "NHRP shortcut closed").await;
                            }
                        }
                        Command::Shutdown => break,
                    }
                }
                event = dial_rx.recv() => {
                    let Some(event) = event else { continue };
                    match &event {
                        ShortcutEvent::Up { nbma, va } => {
                            if let Some(d) = dials.get_mut(nbma) {
                                d.1 = Some(*va);
                            }
                        }
                        ShortcutEvent::Failed { nbma, .. } | ShortcutEvent::Down { nbma, .. } => {
                            dials.remove(nbma);
                        }
                    }
                    self.nhrp.dial_ended(&event);
                }
                _ = tick.tick() => self.nhrp.tick(),
            }
        }
        // Each dialled tunnel sends its DELETE (RFC 7296 section 1.4.1) and
        // waits up to a second for the answer.
        for (stop, _) in dials.values() {
            let _ = stop.send(true);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !dials.is_empty() {
            match tokio::time::timeout_at(deadline, dial_rx.recv()).await {
                Ok(Some(ShortcutEvent::Down { nbma, .. } | ShortcutEvent::Failed { nbma, .. })) => {
                    dials.remove(&nbma);
                }
                Ok(Some(ShortcutEvent::Up { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config;

    fn plan(text: &str) -> Option<Plan> {
        let c = config::parse(text, "example").unwrap();
        let policy = Policy::from_config(&c).unwrap();
        Plan::from_config(&c, &policy).unwrap()
    }

    #[test]
    fn the_examples_make_a_redirecting_hub_and_a_shortcut_spoke() {
        let Some(Plan::Hub {
            station,
            redirect_timeout,
        }) = plan(include_str!("../../../examples/hub.toml"))
        else {
            panic!("the example hub redirects");
        };
        assert_eq!(station.nbma, Ipv4Addr::new(172, 25, 1, 1));
        assert_eq!(
            station.protocol,
            Ipv4Addr::new(10, 1, 1, 1),
            "Virtual-Template1's"
        );
        assert_eq!(redirect_timeout, Duration::from_secs(8));

        let Some(Plan::Spoke {
            settings,
            tunnel,
            dialer,
        }) = plan(include_str!("../../../examples/spoke.toml"))
        else {
            panic!("the example spoke runs NHRP");
        };
        assert_eq!(tunnel, 1);
        assert_eq!(settings.hub_va, VaId::tunnel(1));
        assert_eq!(settings.nbma, Ipv4Addr::new(172, 16, 1, 101));
        assert_eq!(
            settings.own_prefixes,
            ["192.168.101.0/24".parse().unwrap()],
            "its BGP network and route_set, once"
        );
        assert_eq!(settings.holdtime, 7200);
        assert!(settings.shortcut && dialer.is_some());
    }

    #[test]
    fn no_network_id_no_nhrp() {
        let hub = include_str!("../../../examples/hub.toml").replace("nhrp_redirect = true", "");
        assert!(plan(&hub).is_none());
    }
}
