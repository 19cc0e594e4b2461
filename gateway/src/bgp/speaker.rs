//! The BGP speaker: the listener on TCP 179 (dynamic neighbors from the
//! listen ranges, IOS `bgp listen range`), a dialling task per static
//! neighbor, the RIB they all feed, and the task that sends what the RIB
//! decides (UPDATEs encoded once per update group) and programs the
//! forwarding tables.
//!
//! Sessions are tasks ([`super::session`]); the speaker's state is behind
//! one mutex that they take for short, non-blocking steps (an UPDATE into
//! the RIB, a session up or down). The flush task takes the RIB's changes
//! in batches: many sessions coming up at once share one round.
//!
//! Learned routes go into the datapath via the virtual-access that reaches
//! their next hop (a spoke's pool address is a /32 on its virtual-access;
//! on a spoke, the hub's tunnel address is routed into Tunnel1), and from
//! there into the kernel. A next hop no virtual-access reaches (the
//! inter-hub neighbor on the LAN) is handed to the kernel as a gateway
//! route. An aggregate whose own path is best goes in as a blackhole (IOS:
//! the summary to Null0).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use super::{
    fsm::{DownReason, Fsm, Negotiated, SessionConfig, State},
    neighbors::{Admission, Neighbors, PeerSettings},
    rib::{Changes, FibChange, FibRoute, PeerId, PeerInfo, Rib, RibConfig},
    session::{Control, SessionStats, SessionTask, Writer},
    show::{self, NeighborFacts, Summary, TableView},
    types::Update,
    wire::{self, WireError},
};
use crate::net::BGP_PORT;
use crate::{
    config,
    iface::{Datapath, Route},
    net::Ipv4Prefix,
    sys::netlink::{KernelRoute, KernelRouteKind, Netlink},
};

/// How often the kernel's routing table is read for `network` and
/// `redistribute` (IOS re-checks its RIB on its scan timer, 60 s; a hub's
/// connected routes rarely change, this is cheap).
const TABLE_SCAN: Duration = Duration::from_secs(2);

/// Where and how the speaker runs.
#[derive(Clone, Debug)]
pub struct SpeakerConfig {
    pub bgp: config::Bgp,
    pub router_id: Ipv4Addr,
    /// 0.0.0.0:179 in production; tests and benchmarks use a loopback port.
    pub listen: SocketAddrV4,
    /// The port static neighbors are dialled on.
    pub peer_port: u16,
    /// Read the kernel's main routing table for `network` and
    /// `redistribute` (off in tests that give the facts themselves).
    pub scan_kernel_table: bool,
}

impl SpeakerConfig {
    /// From `[bgp]`: router id `bgp.router_id` or `local_address`, the
    /// standard port on every address.
    pub fn from_config(bgp: &config::Bgp, local_address: Ipv4Addr) -> Self {
        SpeakerConfig {
            bgp: bgp.clone(),
            router_id: bgp.router_id.unwrap_or(local_address),
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, BGP_PORT),
            peer_port: BGP_PORT,
            scan_kernel_table: true,
        }
    }
}

/// One neighbor as `show bgp summary` sees it.
struct Peer {
    id: PeerId,
    settings: PeerSettings,
    state: State,
    stats: Arc<SessionStats>,
    /// When the session last came up or went down.
    since: Option<Instant>,
    /// In the RIB (Established).
    in_rib: bool,
    writer: Option<Writer>,
    control: mpsc::UnboundedSender<Control>,
    /// The table version last sent.
    table_version: u64,
}

/// What the flush task put in a forwarding table, to undo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Installed {
    Datapath(Route),
    KernelGateway(Ipv4Addr),
    Blackhole,
}

struct Inner {
    rib: Rib,
    peers: BTreeMap<Ipv4Addr, Peer>,
    by_id: HashMap<PeerId, Ipv4Addr>,
    next_id: u32,
    /// How many of `peers` are dynamic (kept, not counted per connection).
    dynamic_sessions: usize,
    /// Prefixes the flush task installed: not "in the routing table" for
    /// `network` (IOS: BGP's own routes do not back a `network`).
    installed: HashMap<Ipv4Prefix, Installed>,
    bad_messages: u64,
    stopping: bool,
}

/// The running speaker.
pub struct Speaker {
    config: SpeakerConfig,
    /// Where the listener is bound (the port the system chose for port 0).
    bound: SocketAddrV4,
    neighbors: Neighbors,
    inner: Mutex<Inner>,
    flush: Notify,
    datapath: Option<Arc<dyn Datapath>>,
    netlink: Option<Mutex<Netlink>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The speaker's background tasks, to stop them.
pub struct SpeakerTasks {
    listener: JoinHandle<()>,
    flusher: JoinHandle<()>,
    scanner: Option<JoinHandle<()>>,
}

impl Speaker {
    /// Binds the listener, starts the static neighbors, the flush task and
    /// (when configured) the routing-table scan. `datapath`: where learned
    /// routes go (none: the RIB only, for tests and benchmarks).
    pub fn start(
        config: SpeakerConfig,
        datapath: Option<Arc<dyn Datapath>>,
    ) -> anyhow::Result<(Arc<Speaker>, SpeakerTasks)> {
        let rib = Rib::new(RibConfig::from_config(&config.bgp, config.router_id));
        let netlink = if datapath.is_some() || config.scan_kernel_table {
            Some(Mutex::new(
                Netlink::open().context("BGP: opening rtnetlink for the routing table")?,
            ))
        } else {
            None
        };
        let socket = TcpSocket::new_v4().context("BGP: creating the listening socket")?;
        socket
            .set_reuseaddr(true)
            .context("BGP: SO_REUSEADDR on the listening socket")?;
        socket
            .bind(SocketAddr::V4(config.listen))
            .with_context(|| format!("BGP: binding TCP {}", config.listen))?;
        // Room for every dynamic neighbor connecting at once (a hub that
        // restarts): past the backlog, SYNs are dropped and each costs the
        // spoke a 1 s retransmission. The kernel caps it at somaxconn.
        let backlog = config.bgp.listen_limit.max(1024);
        let listener = socket
            .listen(backlog)
            .with_context(|| format!("BGP: listening on TCP {}", config.listen))?;
        let bound = match listener.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            _ => config.listen,
        };
        let speaker = Arc::new(Speaker {
            bound,
            neighbors: Neighbors::from_config(&config.bgp),
            inner: Mutex::new(Inner {
                rib,
                peers: BTreeMap::new(),
                by_id: HashMap::new(),
                next_id: 1,
                dynamic_sessions: 0,
                installed: HashMap::new(),
                bad_messages: 0,
                stopping: false,
            }),
            flush: Notify::new(),
            datapath,
            netlink,
            tasks: Mutex::default(),
            config,
        });
        tracing::info!(
            asn = speaker.config.bgp.asn,
            router_id = %speaker.config.router_id,
            listen = %bound,
            ranges = speaker.config.bgp.listen_range.len(),
            neighbors = speaker.config.bgp.neighbor.len(),
            "BGP speaker started"
        );
        for settings in speaker.neighbors.statics().to_vec() {
            speaker.spawn_session(settings, None)?;
        }
        let flusher = tokio::spawn(speaker.clone().flush_loop());
        let scanner = speaker
            .config
            .scan_kernel_table
            .then(|| tokio::spawn(speaker.clone().scan_loop()));
        let accept = tokio::spawn(speaker.clone().accept_loop(listener));
        Ok((
            speaker,
            SpeakerTasks {
                listener: accept,
                flusher,
                scanner,
            },
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The local AS and router id.
    pub fn asn(&self) -> u32 {
        self.config.bgp.asn
    }

    pub fn router_id(&self) -> Ipv4Addr {
        self.config.router_id
    }

    /// The address the listener is bound to (with the port the system
    /// chose when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.bound
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "BGP: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let SocketAddr::V4(remote) = remote else {
                continue;
            };
            let peer = *remote.ip();
            let (settings, replaces) = match self.admit(peer) {
                Some(x) => x,
                None if self.lock().stopping => return,
                None => continue,
            };
            if replaces {
                self.wait_gone(peer).await;
            }
            if let Err(e) = self.spawn_session(settings, Some(stream)) {
                tracing::error!(neighbor = %peer, error = %e, "BGP: session not started");
            }
        }
    }

    /// Decides on a connection from `peer`: the settings to run it with,
    /// and whether it replaces a session of the same dynamic neighbor.
    fn admit(&self, peer: Ipv4Addr) -> Option<(PeerSettings, bool)> {
        let inner = self.lock();
        if inner.stopping {
            return None;
        }
        let has_session = inner
            .peers
            .get(&peer)
            .is_some_and(|p| p.settings.dynamic.is_some());
        match self
            .neighbors
            .admit(peer, has_session, inner.dynamic_sessions)
        {
            Admission::Refuse(reason) => {
                tracing::warn!("%BGP-4-REFUSED: {reason}");
                None
            }
            // Static neighbors are dialled; their own attempts collide with
            // ours, and RFC 4271 section 6.8 lets one side keep a single
            // connection: ours. Their knock makes us dial now.
            Admission::Accept(s) if s.dynamic.is_none() => {
                tracing::debug!(neighbor = %peer, "BGP: incoming connection from a static neighbor closed; it is dialled out");
                if let Some(p) = inner.peers.get(&peer) {
                    let _ = p.control.send(Control::RetryNow);
                }
                None
            }
            Admission::Accept(s) => {
                // A spoke that reconnects while its old session is still
                // known replaces it: a spoke has one session to its hub.
                let replaces = inner.peers.get(&peer).is_some_and(|old| {
                    let _ = old.control.send(Control::PathGone);
                    tracing::info!(neighbor = %peer, "BGP: new connection from a dynamic neighbor replaces its old session");
                    true
                });
                Some((s, replaces))
            }
        }
    }

    /// Waits (briefly) until the session of `peer` has ended.
    async fn wait_gone(&self, peer: Ipv4Addr) {
        for _ in 0..50 {
            if !self.lock().peers.contains_key(&peer) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spawn_session(
        self: &Arc<Self>,
        settings: PeerSettings,
        accepted: Option<tokio::net::TcpStream>,
    ) -> anyhow::Result<()> {
        let session = if accepted.is_some() || settings.dynamic.is_some() {
            SessionConfig::passive(self.asn(), self.router_id(), settings.remote_as)
        } else {
            SessionConfig::active(self.asn(), self.router_id(), settings.remote_as)
        }
        .with_timers(settings.keepalive, settings.hold);
        let fsm = Fsm::new(session)
            .with_context(|| format!("BGP neighbor {}: bad settings", settings.address))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SessionStats::default());
        let id = {
            let mut inner = self.lock();
            let id = PeerId(inner.next_id);
            inner.next_id = inner.next_id.wrapping_add(1).max(1);
            inner.by_id.insert(id, settings.address);
            let old = inner.peers.insert(
                settings.address,
                Peer {
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
            // The replaced session (if its task outlived `wait_gone`) no
            // longer counts; its `session_ended` will not find it.
            let replaced = old.is_some_and(|o| o.settings.dynamic.is_some());
            inner.dynamic_sessions = inner.dynamic_sessions
                + usize::from(settings.dynamic.is_some())
                - usize::from(replaced);
            id
        };
        if let Some(group) = &settings.dynamic {
            tracing::debug!(neighbor = %settings.address, peer_group = %group, "BGP: dynamic neighbor accepted");
        }
        let task = SessionTask {
            speaker: self.clone(),
            settings,
            id,
            fsm,
            stats,
            control: rx,
            peer_port: self.config.peer_port,
        };
        let handle = tokio::spawn(task.run(accepted));
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Ended tasks are dropped when the list is full, and room is then
        // made for as many again: amortized O(1) per session, where a pass
        // on every spawn made N sessions cost O(N^2).
        if tasks.len() == tasks.capacity() {
            tasks.retain(|t| !t.is_finished());
            let live = tasks.len();
            tasks.reserve(live.max(16));
        }
        tasks.push(handle);
        Ok(())
    }

    // --- Called by the session tasks. ---

    pub(super) fn set_state(&self, address: Ipv4Addr, id: PeerId, state: State) {
        let mut inner = self.lock();
        if let Some(p) = inner.peers.get_mut(&address).filter(|p| p.id == id) {
            p.state = state;
        }
    }

    pub(super) fn established(
        &self,
        address: Ipv4Addr,
        id: PeerId,
        negotiated: &Negotiated,
        local: Ipv4Addr,
        writer: Writer,
    ) {
        let mut inner = self.lock();
        let Some(p) = inner.peers.get(&address).filter(|p| p.id == id) else {
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
        if let Err(e) = inner.rib.add_peer(id, info) {
            tracing::error!(neighbor = %address, error = %e, "BGP: session up but not added to the RIB");
            return;
        }
        if let Some(p) = inner.peers.get_mut(&address) {
            p.in_rib = true;
            p.writer = Some(writer);
            p.since = Some(Instant::now());
        }
        drop(inner);
        if self.config.bgp.log_neighbor_changes {
            tracing::info!("%BGP-5-ADJCHANGE: neighbor {star}{address} Up");
        }
        self.flush.notify_one();
    }

    pub(super) fn session_down(&self, address: Ipv4Addr, id: PeerId, reason: &DownReason) {
        let mut inner = self.lock();
        let Some(p) = inner.peers.get_mut(&address).filter(|p| p.id == id) else {
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
            inner.rib.remove_peer(id);
        }
        drop(inner);
        if was_up {
            if self.config.bgp.log_neighbor_changes {
                tracing::info!(
                    "%BGP-5-ADJCHANGE: neighbor {star}{address} Down {}",
                    ios_reason(reason)
                );
            }
            self.flush.notify_one();
        }
    }

    /// The session task is over: a dynamic neighbor disappears (IOS).
    pub(super) fn session_ended(&self, address: Ipv4Addr, id: PeerId) {
        let mut inner = self.lock();
        inner.by_id.remove(&id);
        let Some(p) = inner.peers.get(&address).filter(|p| p.id == id) else {
            return;
        };
        let was_up = p.in_rib;
        let dynamic = p.settings.dynamic.clone();
        if was_up {
            inner.rib.remove_peer(id);
        }
        if dynamic.is_some() {
            inner.dynamic_sessions = inner.dynamic_sessions.saturating_sub(1);
        }
        inner.peers.remove(&address);
        drop(inner);
        if let Some(group) = dynamic {
            tracing::debug!(neighbor = %address, peer_group = %group, "BGP: dynamic neighbor removed");
        }
        if was_up {
            self.flush.notify_one();
        }
    }

    pub(super) fn update_received(&self, id: PeerId, update: &Update) {
        let mut inner = self.lock();
        if let Err(e) = inner.rib.update_from(id, update) {
            tracing::warn!(peer = %id, error = %e, "BGP: UPDATE not taken into the RIB");
            return;
        }
        drop(inner);
        self.flush.notify_one();
    }

    pub(super) fn route_refresh(&self, id: PeerId) {
        let mut inner = self.lock();
        if let Err(e) = inner.rib.route_refresh(id) {
            tracing::warn!(peer = %id, error = %e, "BGP: ROUTE-REFRESH not served");
            return;
        }
        drop(inner);
        self.flush.notify_one();
    }

    pub(super) fn count_bad_message(&self, address: Ipv4Addr, error: &WireError) {
        self.lock().bad_messages += 1;
        tracing::warn!(neighbor = %address, error = %error, "BGP: bad message from the neighbor");
    }

    // --- Called by the rest of the gateway. ---

    /// Routes went away from the forwarding tables (a spoke's IKE session
    /// ended and its virtual-access with them, or a spoke's tunnel to the
    /// hub went down): the sessions to neighbors inside them end now, not
    /// after the hold time, and their routes are withdrawn.
    pub fn routes_removed(&self, prefixes: &[Ipv4Prefix]) {
        let mut inner = self.lock();
        let gone: Vec<(Ipv4Addr, PeerId)> = inner
            .peers
            .values()
            .filter(|p| prefixes.iter().any(|r| r.contains(p.settings.address)))
            .map(|p| (p.settings.address, p.id))
            .collect();
        let mut changed = false;
        for (address, id) in gone {
            let Some(p) = inner.peers.get_mut(&address) else {
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
                inner.rib.remove_peer(id);
                changed = true;
                if self.config.bgp.log_neighbor_changes {
                    tracing::info!(
                        "%BGP-5-ADJCHANGE: neighbor {star}{address} Down Interface flap (the tunnel to the neighbor went down)"
                    );
                }
            }
        }
        drop(inner);
        if changed {
            self.flush.notify_one();
        }
    }

    /// Routes appeared (a tunnel came up): static neighbors they reach dial
    /// now instead of waiting for their retry timer.
    pub fn routes_added(&self, prefixes: &[Ipv4Prefix]) {
        let inner = self.lock();
        for p in inner.peers.values() {
            if p.settings.dynamic.is_none()
                && !p.in_rib
                && prefixes.iter().any(|r| r.contains(p.settings.address))
            {
                let _ = p.control.send(Control::RetryNow);
            }
        }
    }

    /// Sets which prefixes the routing table has (for `network`).
    pub fn set_routes_present(&self, prefixes: impl IntoIterator<Item = Ipv4Prefix>) {
        let mut inner = self.lock();
        inner.rib.set_routes_present(prefixes);
        drop(inner);
        self.flush.notify_one();
    }

    /// `show bgp summary`.
    pub fn summary(&self) -> Summary {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = self.lock();
        let neighbors = inner.peers.values().map(|p| NeighborFacts {
            settings: &p.settings,
            state: p.state,
            msg_rcvd: p.stats.msg_rcvd.load(Relaxed),
            msg_sent: p.stats.msg_sent.load(Relaxed),
            out_q: p.stats.out_q.load(Relaxed),
            since: p.since,
            table_version: p.table_version,
            accepted: inner.rib.counters(p.id).map(|c| c.accepted),
        });
        show::summary(
            &self.config.bgp,
            self.config.router_id,
            &inner.rib,
            neighbors,
            Instant::now(),
        )
    }

    /// `show bgp`.
    pub fn table(&self) -> TableView {
        show::table_view(&self.lock().rib)
    }

    /// The number of neighbors Established (for tests and benchmarks).
    pub fn established_count(&self) -> usize {
        self.lock().peers.values().filter(|p| p.in_rib).count()
    }

    /// The best paths' prefixes in the Loc-RIB (for tests and benchmarks).
    pub fn prefix_count(&self) -> usize {
        self.lock().rib.prefixes().count()
    }

    /// Stops every session with a Cease (IOS on shutdown) and the tasks,
    /// and removes the routes it installed.
    pub async fn shutdown(self: &Arc<Self>, tasks: SpeakerTasks) {
        tasks.listener.abort();
        if let Some(s) = tasks.scanner {
            s.abort();
        }
        {
            let mut inner = self.lock();
            inner.stopping = true;
            for p in inner.peers.values() {
                let _ = p.control.send(Control::Stop);
            }
        }
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
        tasks.flusher.abort();
        let installed: Vec<(Ipv4Prefix, Installed)> = self.lock().installed.drain().collect();
        for (prefix, what) in installed {
            self.uninstall(prefix, what);
        }
        tracing::info!("BGP speaker stopped");
    }

    // --- The flush task. ---

    async fn flush_loop(self: Arc<Self>) {
        loop {
            self.flush.notified().await;
            // Let the sessions that are ready run first: one round then
            // carries all their changes.
            tokio::task::yield_now().await;
            self.flush_now();
        }
    }

    /// Sends the RIB's changes and programs the forwarding tables.
    pub fn flush_now(&self) {
        let changes: Changes = {
            let mut inner = self.lock();
            let changes = inner.rib.take_changes();
            let version = inner.rib.table_version();
            for out in &changes.outbound {
                let bytes: Arc<[u8]> = match wire::encode_to_vec(&super::types::Message::Update(
                    (*out.update).clone(),
                )) {
                    Ok(b) => b.into(),
                    Err(e) => {
                        tracing::error!(error = %e, "BGP: an UPDATE the RIB built does not encode");
                        continue;
                    }
                };
                for id in out.recipients() {
                    let Some(address) = inner.by_id.get(&id).copied() else {
                        continue;
                    };
                    if let Some(p) = inner.peers.get_mut(&address)
                        && let Some(w) = &p.writer
                    {
                        w.send(bytes.clone());
                        p.table_version = version;
                    }
                }
            }
            for p in inner.peers.values_mut().filter(|p| p.in_rib) {
                p.table_version = version;
            }
            changes
        };
        for change in changes.fib {
            self.apply_fib(change);
        }
    }

    fn apply_fib(&self, change: FibChange) {
        let (prefix, wanted) = match change {
            FibChange::Install {
                prefix,
                route: FibRoute::Forward { next_hop, .. },
            } => (prefix, Some(self.resolve(prefix, next_hop))),
            FibChange::Install {
                prefix,
                route: FibRoute::Discard,
            } => (prefix, Some(Some(Installed::Blackhole))),
            FibChange::Remove { prefix } => (prefix, None),
        };
        let old = self.lock().installed.remove(&prefix);
        if let Some(old) = old {
            if wanted == Some(Some(old)) {
                self.lock().installed.insert(prefix, old);
                return;
            }
            self.uninstall(prefix, old);
        }
        let Some(Some(what)) = wanted else {
            if let Some(None) = wanted {
                tracing::debug!(%prefix, "BGP: best route not installed (another source owns the prefix)");
            }
            return;
        };
        if self.install(prefix, what) {
            self.lock().installed.insert(prefix, what);
        }
    }

    /// Where a learned route goes: the virtual-access that reaches its next
    /// hop, else the kernel via the next hop. `None`: not ours to install
    /// (the datapath has this very prefix from another source, such as an
    /// IKE-pushed route).
    fn resolve(&self, prefix: Ipv4Prefix, next_hop: Ipv4Addr) -> Option<Installed> {
        if let Some(dp) = &self.datapath {
            if let Some(existing) = dp.lookup(prefix.addr)
                && existing.prefix == prefix
                && !self
                    .lock()
                    .installed
                    .get(&prefix)
                    .is_some_and(|i| matches!(i, Installed::Datapath(_)))
            {
                return None;
            }
            if let Some(via) = dp.lookup(next_hop) {
                return Some(Installed::Datapath(Route {
                    prefix,
                    va: via.va,
                    next_hop: Some(next_hop),
                }));
            }
        }
        Some(Installed::KernelGateway(next_hop))
    }

    fn install(&self, prefix: Ipv4Prefix, what: Installed) -> bool {
        let result = match what {
            Installed::Datapath(route) => match &self.datapath {
                Some(dp) => dp.add_route(&route).map_err(|e| e.to_string()),
                None => return false,
            },
            Installed::KernelGateway(gw) => {
                self.with_netlink(|nl| nl.replace_gateway_route(prefix.addr, prefix.len, gw))
            }
            Installed::Blackhole => {
                self.with_netlink(|nl| nl.replace_blackhole_route(prefix.addr, prefix.len))
            }
        };
        match result {
            Ok(()) => {
                tracing::debug!(%prefix, via = ?what, "BGP: route installed");
                true
            }
            Err(e) => {
                tracing::warn!(%prefix, via = ?what, error = %e, "BGP: route not installed");
                false
            }
        }
    }

    fn uninstall(&self, prefix: Ipv4Prefix, what: Installed) {
        let result = match what {
            // The virtual-access may be gone already, and its routes with it.
            Installed::Datapath(route) => match &self.datapath {
                Some(dp) => match dp.remove_route(&route) {
                    Err(crate::iface::DatapathError::NoSuchRoute(_)) | Ok(()) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                None => Ok(()),
            },
            Installed::KernelGateway(_) | Installed::Blackhole => {
                self.with_netlink(|nl| nl.del_own_route(prefix.addr, prefix.len))
            }
        };
        if let Err(e) = result {
            tracing::debug!(%prefix, error = %e, "BGP: route removal failed");
        }
    }

    fn with_netlink(
        &self,
        f: impl FnOnce(&mut Netlink) -> std::io::Result<()>,
    ) -> Result<(), String> {
        match &self.netlink {
            Some(nl) => {
                f(&mut nl.lock().unwrap_or_else(PoisonError::into_inner)).map_err(|e| e.to_string())
            }
            None => Err("no kernel routing table in this run".into()),
        }
    }

    // --- The routing-table scan. ---

    async fn scan_loop(self: Arc<Self>) {
        let mut last: Option<TableFacts> = None;
        let mut warned = false;
        loop {
            match self.scan_once() {
                Ok(facts) => {
                    if last.as_ref() != Some(&facts) {
                        let mut inner = self.lock();
                        inner.rib.set_routes_present(facts.present.iter().copied());
                        inner
                            .rib
                            .set_redistributed_routes(facts.redistributed.iter().copied());
                        drop(inner);
                        self.flush.notify_one();
                        last = Some(facts);
                    }
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "BGP: cannot read the kernel routing table; `network` statements are not advertised");
                }
                Err(_) => {}
            }
            tokio::time::sleep(TABLE_SCAN).await;
        }
    }

    /// The prefixes of the kernel's main table (less the routes BGP itself
    /// installed), and of those the ones `redistribute` takes.
    fn scan_once(&self) -> std::io::Result<TableFacts> {
        let routes = match &self.netlink {
            Some(nl) => nl
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dump_routes()?,
            None => return Ok(TableFacts::default()),
        };
        let inner = self.lock();
        Ok(table_facts(
            routes
                .iter()
                .filter(|r| !inner.installed.contains_key(&r.prefix)),
            &self.config.bgp.redistribute,
        ))
    }
}

/// What the routing table says for origination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TableFacts {
    /// Every prefix with a route (`network` needs an exact match).
    present: BTreeSet<Ipv4Prefix>,
    /// The connected and static routes `redistribute` asks for.
    redistributed: BTreeSet<Ipv4Prefix>,
}

fn table_facts<'a>(
    routes: impl Iterator<Item = &'a KernelRoute>,
    redistribute: &[config::Redistribute],
) -> TableFacts {
    let mut facts = TableFacts::default();
    let connected = redistribute.contains(&config::Redistribute::Connected);
    let statics = redistribute.contains(&config::Redistribute::Static);
    for r in routes {
        // Blackholes and the like back no `network` (IOS: a Null0 route
        // does, but ours are BGP's own aggregates, filtered out above).
        if r.kind != KernelRouteKind::Unicast {
            continue;
        }
        facts.present.insert(r.prefix);
        if (connected && r.is_connected()) || (statics && r.is_static()) {
            facts.redistributed.insert(r.prefix);
        }
    }
    facts
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

impl crate::session::RouteWatch for Speaker {
    fn routes_added(&self, prefixes: &[Ipv4Prefix]) {
        Speaker::routes_added(self, prefixes);
    }

    fn routes_removed(&self, prefixes: &[Ipv4Prefix]) {
        Speaker::routes_removed(self, prefixes);
    }
}

#[cfg(test)]
mod tests;
