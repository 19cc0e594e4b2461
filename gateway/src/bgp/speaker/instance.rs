//! The instance: the neighbor table and the RIB, and the task that changes
//! them. It takes the [`Event`]s of its channel in batches (all that are
//! waiting, under one lock), then sends what the RIB decided (each UPDATE
//! encoded once, its bytes queued to every recipient's writer) and hands
//! the route changes to the FIB. Many sessions coming up at once thus
//! share one round.
//!
//! The tables sit behind a mutex for one reason: the control socket's
//! handler is synchronous and reads them for `show`. Only this task
//! changes them; the sessions never take the lock.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{net::TcpStream, sync::mpsc};

use super::{
    SpeakerConfig,
    fib::Fib,
    round::{Round, RoundClock},
    scan::{TableFacts, table_facts},
};
use crate::{
    bgp::{
        events::{Control, Event, SessionEvent, SessionStats, Writer},
        fsm::{DownReason, Fsm, Negotiated, SessionConfig, State},
        neighbors::{Neighbors, PeerSettings},
        rib::{FibChange, PeerId, PeerInfo, Rib, RibConfig},
        session::SessionTask,
        show::{self, NeighborFacts, Summary, TableView},
    },
    net::Ipv4Prefix,
    sys::netlink::KernelRoute,
};

/// How long the sessions have to send their Cease and close when the
/// speaker stops.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// One neighbor of the table (`show bgp summary` has a line per entry).
pub(super) struct Neighbor {
    pub(super) id: PeerId,
    pub(super) settings: PeerSettings,
    state: State,
    stats: Arc<SessionStats>,
    /// When the session last came up or went down.
    since: Option<Instant>,
    /// In the RIB (Established).
    in_rib: bool,
    writer: Option<Writer>,
    pub(super) control: mpsc::UnboundedSender<Control>,
    /// The table version last sent.
    table_version: u64,
}

/// A dynamic neighbor's accepted connection; it may wait for the
/// neighbor's old session to end (a spoke has one session to its hub).
pub(super) struct Accepted {
    pub(super) settings: PeerSettings,
    pub(super) stream: TcpStream,
    /// When it starts even if the old session has not ended.
    pub(super) due: Instant,
}

/// The neighbor table and the RIB.
pub(super) struct Instance {
    pub(super) config: SpeakerConfig,
    /// Who may connect, with which settings.
    pub(super) neighbors: Neighbors,
    rib: Rib,
    pub(super) peers: BTreeMap<Ipv4Addr, Neighbor>,
    by_id: HashMap<PeerId, Ipv4Addr>,
    next_id: u32,
    /// How many of `peers` are dynamic (kept, not counted per connection).
    pub(super) dynamic_sessions: usize,
    /// How many of `peers` are exchanging OPENs (OpenSent, OpenConfirm).
    pub(super) opening: usize,
    /// New connections of dynamic neighbors waiting for their old session
    /// to end.
    pub(super) replacing: HashMap<Ipv4Addr, Accepted>,
    /// The routing table as last scanned.
    facts: Option<TableFacts>,
    pub(super) stopping: bool,
    /// The RIB changed since the last flush.
    dirty: bool,
    /// The instance's own channel, handed to the sessions it starts.
    pub(super) events: mpsc::UnboundedSender<Event>,
}

impl Instance {
    pub(super) fn new(config: SpeakerConfig, events: mpsc::UnboundedSender<Event>) -> Self {
        Instance {
            rib: Rib::new(RibConfig::from_config(&config.bgp, config.router_id)),
            neighbors: Neighbors::from_config(&config.bgp),
            config,
            peers: BTreeMap::new(),
            by_id: HashMap::new(),
            next_id: 1,
            dynamic_sessions: 0,
            opening: 0,
            replacing: HashMap::new(),
            facts: None,
            stopping: false,
            dirty: false,
            events,
        }
    }

    /// Starts the sessions of the static neighbors (they dial out).
    pub(super) fn start_statics(&mut self) -> anyhow::Result<()> {
        for settings in self.neighbors.statics().to_vec() {
            self.spawn_session(settings, None)?;
        }
        Ok(())
    }

    /// Starts a session task for `settings`: on the connection the peer
    /// opened (`accepted`), or dialling out.
    pub(super) fn spawn_session(
        &mut self,
        settings: PeerSettings,
        accepted: Option<TcpStream>,
    ) -> anyhow::Result<()> {
        let (asn, router_id) = (self.config.bgp.asn, self.config.router_id);
        let session = if accepted.is_some() || settings.dynamic.is_some() {
            SessionConfig::passive(asn, router_id, settings.remote_as)
        } else {
            SessionConfig::active(asn, router_id, settings.remote_as)
        }
        .with_timers(settings.keepalive, settings.hold);
        let fsm = Fsm::new(session)
            .with_context(|| format!("BGP neighbor {}: bad settings", settings.address))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SessionStats::default());
        let id = PeerId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.by_id.insert(id, settings.address);
        let old = self.peers.insert(
            settings.address,
            Neighbor {
                id,
                settings: settings.clone(),
                state: State::Idle,
                stats: stats.clone(),
                since: None,
                in_rib: false,
                writer: None,
                control: tx,
                table_version: 0,
            },
        );
        // The replaced session (if it outlived its wait) no longer counts;
        // its `Closed` will not find it.
        if old.as_ref().is_some_and(|o| opening(o.state)) {
            self.opening -= 1;
        }
        let replaced = old.is_some_and(|o| o.settings.dynamic.is_some());
        self.dynamic_sessions =
            self.dynamic_sessions + usize::from(settings.dynamic.is_some()) - usize::from(replaced);
        if let Some(group) = &settings.dynamic {
            tracing::debug!(neighbor = %settings.address, peer_group = %group, "BGP: dynamic neighbor accepted");
        }
        let task = SessionTask::new(
            self.events.clone(),
            settings,
            id,
            fsm,
            stats,
            rx,
            self.config.peer_port,
        );
        // Detached: the task ends with its session and says so (`Closed`).
        tokio::spawn(task.run(accepted));
        Ok(())
    }

    /// Handles one event.
    fn handle(&mut self, event: Event, fib: &Fib) {
        match event {
            Event::Session { id, event } => self.session_event(id, event),
            Event::TcpAccept { stream, peer } => self.tcp_accept(stream, peer),
            Event::ReplaceDue(peer) => self.replace_due(peer),
            Event::RoutesAdded(prefixes) => self.routes_added(&prefixes),
            Event::RoutesRemoved(prefixes) => self.routes_removed(&prefixes),
            Event::RoutesPresent(prefixes) => {
                self.rib.set_routes_present(prefixes);
                self.dirty = true;
            }
            Event::KernelRoutes(routes) => self.kernel_routes(&routes, fib),
            Event::Stop => self.stop(),
        }
    }

    /// Handles `first` and every event already waiting.
    fn handle_waiting(
        &mut self,
        first: Option<Event>,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        fib: &Fib,
    ) {
        if let Some(event) = first {
            self.handle(event, fib);
        }
        while let Ok(event) = rx.try_recv() {
            self.handle(event, fib);
        }
    }

    // --- From the session tasks. ---

    fn session_event(&mut self, id: PeerId, event: SessionEvent) {
        if matches!(event, SessionEvent::Closed) {
            self.session_closed(id);
            return;
        }
        let Some(&address) = self.by_id.get(&id) else {
            return;
        };
        if self.peers.get(&address).is_none_or(|p| p.id != id) {
            // A session replaced by a newer one of the same neighbor.
            return;
        }
        match event {
            SessionEvent::StateChange(state) => {
                if let Some(p) = self.peers.get_mut(&address) {
                    let was = std::mem::replace(&mut p.state, state);
                    self.opening =
                        self.opening + usize::from(opening(state)) - usize::from(opening(was));
                }
            }
            SessionEvent::Established {
                negotiated,
                local,
                writer,
            } => self.established(address, id, &negotiated, local, writer),
            SessionEvent::UpdateMsg(update) => match self.rib.update_from(id, &update) {
                Ok(()) => self.dirty = true,
                Err(e) => {
                    tracing::warn!(peer = %id, error = %e, "BGP: UPDATE not taken into the RIB");
                }
            },
            SessionEvent::RouteRefreshMsg => match self.rib.route_refresh(id) {
                Ok(()) => self.dirty = true,
                Err(e) => tracing::warn!(peer = %id, error = %e, "BGP: ROUTE-REFRESH not served"),
            },
            SessionEvent::SessionDown(reason) => self.session_down(address, id, &reason),
            SessionEvent::Closed => {}
        }
    }

    fn established(
        &mut self,
        address: Ipv4Addr,
        id: PeerId,
        negotiated: &Negotiated,
        local: Ipv4Addr,
        writer: Writer,
    ) {
        let Some(p) = self.peers.get_mut(&address) else {
            return;
        };
        let s = &p.settings;
        let info = PeerInfo {
            address,
            router_id: negotiated.peer_router_id,
            asn: negotiated.peer_as,
            route_reflector_client: s.route_reflector_client,
            unsuppress: s.unsuppress,
            next_hop: s.next_hop,
            local_address: s.update_source.unwrap_or(local),
            dynamic: s.dynamic.is_some(),
        };
        let star = if info.dynamic { "*" } else { "" };
        if let Err(e) = self.rib.add_peer(id, info) {
            tracing::error!(neighbor = %address, error = %e, "BGP: session up but not added to the RIB");
            return;
        }
        p.in_rib = true;
        p.writer = Some(writer);
        p.since = Some(Instant::now());
        if self.config.bgp.log_neighbor_changes {
            tracing::info!("%BGP-5-ADJCHANGE: neighbor {star}{address} Up");
        }
        self.dirty = true;
    }

    fn session_down(&mut self, address: Ipv4Addr, id: PeerId, reason: &DownReason) {
        let Some(p) = self.peers.get_mut(&address) else {
            return;
        };
        let was_up = std::mem::take(&mut p.in_rib);
        p.writer = None;
        p.since = Some(Instant::now());
        let star = if p.settings.dynamic.is_some() {
            "*"
        } else {
            ""
        };
        if was_up {
            self.rib.remove_peer(id);
            if self.config.bgp.log_neighbor_changes {
                tracing::info!(
                    "%BGP-5-ADJCHANGE: neighbor {star}{address} Down {}",
                    ios_reason(reason)
                );
            }
            self.dirty = true;
        }
    }

    /// The session task is over: a dynamic neighbor disappears (IOS), and
    /// a new connection waiting for it starts.
    fn session_closed(&mut self, id: PeerId) {
        let Some(address) = self.by_id.remove(&id) else {
            return;
        };
        let Some(p) = self.peers.get(&address).filter(|p| p.id == id) else {
            return;
        };
        let was_up = p.in_rib;
        let dynamic = p.settings.dynamic.clone();
        if was_up {
            self.rib.remove_peer(id);
            self.dirty = true;
        }
        if dynamic.is_some() {
            self.dynamic_sessions = self.dynamic_sessions.saturating_sub(1);
        }
        if self
            .peers
            .remove(&address)
            .is_some_and(|p| opening(p.state))
        {
            self.opening -= 1;
        }
        if let Some(group) = dynamic {
            tracing::debug!(neighbor = %address, peer_group = %group, "BGP: dynamic neighbor removed");
        }
        if let Some(next) = self.replacing.remove(&address) {
            self.start_accepted(next);
        }
    }

    // --- From the rest of the gateway. ---

    /// Routes went away from the forwarding tables (a spoke's IKE session
    /// ended and its virtual-access with them, or a spoke's tunnel to the
    /// hub went down): the sessions to neighbors inside them end now, not
    /// after the hold time, and their routes are withdrawn.
    fn routes_removed(&mut self, prefixes: &[Ipv4Prefix]) {
        let gone: Vec<(Ipv4Addr, PeerId)> = self
            .peers
            .values()
            .filter(|p| prefixes.iter().any(|r| r.contains(p.settings.address)))
            .map(|p| (p.settings.address, p.id))
            .collect();
        for (address, id) in gone {
            let Some(p) = self.peers.get_mut(&address) else {
                continue;
            };
            let _ = p.control.send(Control::PathGone);
            if std::mem::take(&mut p.in_rib) {
                p.writer = None;
                p.since = Some(Instant::now());
                let star = if p.settings.dynamic.is_some() {
                    "*"
                } else {
                    ""
                };
                self.rib.remove_peer(id);
                self.dirty = true;
                if self.config.bgp.log_neighbor_changes {
                    tracing::info!(
                        "%BGP-5-ADJCHANGE: neighbor {star}{address} Down Interface flap (the tunnel to the neighbor went down)"
                    );
                }
            }
        }
    }

    /// Routes appeared (a tunnel came up): static neighbors they reach dial
    /// now instead of waiting for their retry timer.
    fn routes_added(&self, prefixes: &[Ipv4Prefix]) {
        for p in self.peers.values() {
            if p.settings.dynamic.is_none()
                && !p.in_rib
                && prefixes.iter().any(|r| r.contains(p.settings.address))
            {
                let _ = p.control.send(Control::RetryNow);
            }
        }
    }

    /// The kernel's routing table, less the routes BGP installed itself:
    /// the prefixes `network` and `redistribute` find.
    fn kernel_routes(&mut self, routes: &[KernelRoute], fib: &Fib) {
        let facts = table_facts(
            routes.iter().filter(|r| !fib.is_installed(r.prefix)),
            &self.config.bgp.redistribute,
        );
        if self.facts.as_ref() == Some(&facts) {
            return;
        }
        self.rib.set_routes_present(facts.present.iter().copied());
        self.rib
            .set_redistributed_routes(facts.redistributed.iter().copied());
        self.facts = Some(facts);
        self.dirty = true;
    }

    /// Cease to every neighbor (IOS on shutdown); the task ends once their
    /// sessions have.
    fn stop(&mut self) {
        self.stopping = true;
        for p in self.peers.values() {
            let _ = p.control.send(Control::Stop);
        }
    }

    // --- Output. ---

    /// Sends the RIB's changes to the neighbors, each UPDATE encoded once
    /// and each neighbor's share in one message to its writer; returns the
    /// FIB's changes.
    fn flush(&mut self) -> Vec<FibChange> {
        self.dirty = false;
        let changes = self.rib.take_changes();
        let version = self.rib.table_version();
        for (id, slices) in Round::build(&changes.outbound).shares {
            let Some(address) = self.by_id.get(&id) else {
                continue;
            };
            if let Some(p) = self.peers.get_mut(address)
                && let Some(w) = &p.writer
            {
                w.send_slices(slices);
            }
        }
        for p in self.peers.values_mut().filter(|p| p.in_rib) {
            p.table_version = version;
        }
        changes.fib
    }

    // --- Queries. ---

    /// `show bgp summary`.
    pub(super) fn summary(&self, now: Instant) -> Summary {
        let neighbors = self.peers.values().map(|p| NeighborFacts {
            settings: &p.settings,
            state: p.state,
            msg_rcvd: p.stats.msg_rcvd.load(Relaxed),
            msg_sent: p.stats.msg_sent.load(Relaxed),
            out_q: p.stats.out_q.load(Relaxed),
            since: p.since,
            table_version: p.table_version,
            accepted: self.rib.counters(p.id).map(|c| c.accepted),
        });
        show::summary(
            &self.config.bgp,
            self.config.router_id,
            &self.rib,
            neighbors,
            now,
        )
    }

    /// `show bgp`.
    pub(super) fn table(&self) -> TableView {
        show::table_view(&self.rib)
    }

    /// The number of neighbors Established.
    pub(super) fn established_count(&self) -> usize {
        self.peers.values().filter(|p| p.in_rib).count()
    }

    /// The prefixes in the Loc-RIB.
    pub(super) fn prefix_count(&self) -> usize {
        self.rib.prefixes().count()
    }
}

/// A session exchanging OPENs: up in a few round trips.
fn opening(state: State) -> bool {
    matches!(state, State::OpenSent | State::OpenConfirm)
}

pub(super) fn lock(instance: &Mutex<Instance>) -> MutexGuard<'_, Instance> {
    instance.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The instance's task: until the speaker stops and its sessions have
/// ended (or [`STOP_WAIT`] passed), then the routes it installed go.
/// Events are handled as they come, the RIB's changes sent in rounds when
/// the [`RoundClock`] says.
pub(super) async fn run(
    instance: Arc<Mutex<Instance>>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    mut fib: Fib,
) {
    let mut stop_by: Option<tokio::time::Instant> = None;
    let mut clock = RoundClock::new();
    let mut round_at: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = recv_until(&mut rx, stop_by) => match event {
                Some(event) => Some(event),
                None => break,
            },
            () = sleep_until(round_at) => None,
        };
        let now = Instant::now();
        {
            let mut i = lock(&instance);
            // Those opening before the events and after them, were until now.
            if i.opening > 0 {
                clock.opening(now);
            }
            if let Some(event) = event {
                i.handle_waiting(Some(event), &mut rx, &fib);
            }
            if i.opening > 0 {
                clock.opening(now);
            }
            clock.peers(i.peers.len());
            if i.stopping && stop_by.is_none() {
                stop_by = Some(tokio::time::Instant::now() + STOP_WAIT);
            }
            if i.dirty {
                clock.changed(now);
            }
            round_at = clock.at(i.opening > 0 && !i.stopping);
        }
        if round_at.is_some_and(|at| at <= now) {
            // Let the sessions that are ready run first: the round then
            // carries all their changes.
            tokio::task::yield_now().await;
            let changes = {
                let mut i = lock(&instance);
                i.handle_waiting(None, &mut rx, &fib);
                i.flush()
            };
            clock.sent(Instant::now());
            round_at = None;
            for change in changes {
                fib.apply(change);
            }
        }
        let i = lock(&instance);
        if i.stopping && i.peers.is_empty() {
            break;
        }
    }
    fib.remove_all();
}

/// The next event; `None` once the channel is closed or `stop_by` passed.
async fn recv_until(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    stop_by: Option<tokio::time::Instant>,
) -> Option<Event> {
    match stop_by {
        None => rx.recv().await,
        Some(deadline) => tokio::time::timeout_at(deadline, rx.recv())
            .await
            .ok()
            .flatten(),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// IOS's words for why a session went down.
fn ios_reason(reason: &DownReason) -> String {
    match reason {
        DownReason::ManualStop => "Admin. shutdown".into(),
        DownReason::HoldTimerExpired => "BGP Notification sent: hold time expired".into(),
        DownReason::NotificationReceived(n) => {
            format!("BGP Notification received: {}/{}", n.code, n.subcode)
        }
        DownReason::NotificationSent(n) => {
            format!("BGP Notification sent: {}/{}", n.code, n.subcode)
        }
        DownReason::TcpConnectionFails => "Peer closed the session".into(),
        DownReason::UnexpectedEvent => "Unexpected event".into(),
    }
}
