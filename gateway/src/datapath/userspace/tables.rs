//! What the workers read on every packet: each worker's own copy of the
//! interfaces, routes and local addresses (`Replica`), kept current by the
//! changes the control plane's master copy publishes (`Change`: one entry
//! set or removed). A change costs what it touches, not what the tables
//! hold: entries are `Arc`s rebuilt only when they change, and a worker
//! applies them between batches, so the packet path takes no lock.
//! Counters live in `Arc`ed slots that survive an entry's replacement.
//!
//! A virtual-access holds several SA pairs while it is rekeyed (RFC 7296
//! section 2.8, make-before-break): outbound uses the newest, every
//! inbound SA decrypts until it is removed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use gateway_report::interfaces::{SaCounter, SaCounters, VaCounters};

use super::counters::{SaStats, VaStats};
use crate::{
    datapath::fib::Fib,
    esp::sa::{EspCipher, InboundSa, OutboundSa},
    iface::{DatapathError, DatapathEvent, Route, SaLifetime, SaPair, VaId, VirtualAccessSpec},
    ipsec::{Encr, Integ, Mode, SaKeys},
    net::Ipv4Prefix,
};

/// The outbound half of an SA pair.
pub struct OutSa {
    pub sa: OutboundSa,
    pub mode: Mode,
    pub stats: Arc<SaStats>,
}

/// A virtual-access in a snapshot.
pub struct Va {
    pub spec: VirtualAccessSpec,
    /// The newest SA pair's outbound half.
    pub out: Option<Arc<OutSa>>,
    /// Where the ESP-in-UDP datagrams go: the newest SA's peer, or where
    /// `update_peer` moved it (NAT rebinding).
    pub dest: SocketAddrV4,
    pub stats: Arc<VaStats>,
}

/// The soft expiry for a sequence number near its end comes this many
/// numbers before it: 2^20 packets without ESN (seconds to minutes of
/// traffic, time for a rekey), 2^32 with ESN.
const SEQ_MARGIN: u64 = 1 << 20;
const SEQ_MARGIN_ESN: u64 = 1 << 32;
/// PeerMoved is reported at most this often per SA.
const PEER_MOVED_INTERVAL: Duration = Duration::from_secs(1);

/// What the workers share about one inbound SA, across snapshots.
pub struct InboundShared {
    /// The highest sequence number any worker accepted. A worker whose
    /// window lags behind (the peer's packets now reach it, after a NAT
    /// rebinding changed the 4-tuple the kernel spreads by) catches up to
    /// it first: nothing another worker accepted is accepted again, and
    /// ESN inference starts from the right 2^32 subspace.
    pub highest: AtomicU64,
    /// When PeerMoved was last reported: milliseconds since `epoch`, plus
    /// one (0: never).
    moved_reported: AtomicU64,
    epoch: Instant,
}

impl InboundShared {
    fn new() -> Self {
        InboundShared {
            highest: AtomicU64::new(0),
            moved_reported: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether a PeerMoved report may go out at `now` (at most one per
    /// `PEER_MOVED_INTERVAL` across all workers); claims it if so.
    pub fn may_report_move(&self, now: Instant) -> bool {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let now_ms = ms(now.saturating_duration_since(self.epoch)).saturating_add(1);
        let last = self.moved_reported.load(Ordering::Relaxed);
        if last != 0 && now_ms < last.saturating_add(ms(PEER_MOVED_INTERVAL)) {
            return false;
        }
        self.moved_reported
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The keys of an inbound SA; each worker builds its own `InboundSa` (and
/// so its own replay window) from them.
pub struct InboundSpec {
    pub va: VaId,
    pub spi: u32,
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub keys: SaKeys,
    pub mode: Mode,
    pub esn: bool,
    /// The peer's endpoint. Authenticated ESP from anywhere else is what a
    /// NAT rebinding looks like (RFC 7296 section 2.23): reported, and
    /// counted as a wrong endpoint.
    pub peer: SocketAddrV4,
    pub stats: Arc<SaStats>,
    /// The same for every snapshot of this SA (a new peer makes a new
    /// spec): workers keep their replay window while it is unchanged.
    pub shared: Arc<InboundShared>,
}

impl InboundSpec {
    pub fn build(&self) -> Result<InboundSa, DatapathError> {
        let cipher = EspCipher::new(self.encr, self.integ, &self.keys.encr, &self.keys.integ)
            .map_err(|e| DatapathError::Keys(e.to_string()))?;
        Ok(InboundSa::new(self.spi, cipher).with_esn(self.esn))
    }

    fn with_peer(&self, peer: SocketAddrV4) -> Self {
        InboundSpec {
            va: self.va,
            spi: self.spi,
            encr: self.encr,
            integ: self.integ,
            keys: self.keys.clone(),
            mode: self.mode,
            esn: self.esn,
            peer,
            stats: self.stats.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// What a worker reads on every packet.
#[derive(Default)]
pub struct Tables {
    pub vas: HashMap<VaId, Arc<Va>>,
    pub fib: Fib<Arc<Va>>,
    /// This box's own addresses on the tunnels: packets for them go to the
    /// host even when a route (a spoke's summary via the hub) covers them.
    pub local: HashSet<Ipv4Addr>,
}

/// One entry of the tables set (`Some`) or removed (`None`). Each names
/// its entry's whole new value, so applying a change twice is harmless.
enum Change {
    Va(VaId, Option<Arc<Va>>),
    Route(Ipv4Prefix, Option<Arc<Va>>),
    /// The worker builds its own `InboundSa` (replay window) from it.
    Inbound(u32, Option<Arc<InboundSpec>>),
    Local(Ipv4Addr, bool),
}

impl Tables {
    /// Applies `change`; inbound SAs are the processor's, not the tables'.
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Va(id, Some(va)) => {
                self.vas.insert(*id, va.clone());
            }
            Change::Va(id, None) => {
                self.vas.remove(id);
            }
            Change::Route(prefix, Some(va)) => {
                self.fib.insert(*prefix, va.clone());
            }
            Change::Route(prefix, None) => {
                self.fib.remove(*prefix);
            }
            Change::Inbound(..) => {}
            Change::Local(a, true) => {
                self.local.insert(*a);
            }
            Change::Local(a, false) => {
                self.local.remove(a);
            }
        }
    }
}

/// A worker's copy of the tables and the changes published to it, in
/// order (`Master::follow`).
pub struct Replica {
    tables: Tables,
    changes: mpsc::Receiver<Arc<[Change]>>,
}

impl Replica {
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Applies what was published since the last call; inbound SA changes
    /// go to `inbound`. Costs what changed; nothing when nothing did.
    pub fn catch_up(&mut self, mut inbound: impl FnMut(u32, Option<&Arc<InboundSpec>>)) {
        while let Ok(batch) = self.changes.try_recv() {
            for change in batch.iter() {
                if let Change::Inbound(spi, spec) = change {
                    inbound(*spi, spec.as_ref());
                }
                self.tables.apply(change);
            }
        }
    }
}

/// One SA pair in the master copy.
struct PairEntry {
    spi_in: u32,
    out: Arc<OutSa>,
    lifetime: SaLifetime,
    installed: Instant,
    /// A soft expiry was reported (once per SA).
    soft_reported: bool,
    /// Installed with `SaPair::defer_outbound` beside older pairs: they
    /// keep the outbound traffic until they are removed.
    deferred: bool,
    /// Deleted after a rekey and lingering: decrypts, sends no more.
    retired: bool,
}

/// The pair that carries an interface's outbound traffic: the newest not
/// retired that waits for nothing, else the newest. A deferred pair (a
/// rekey's responder) waits only while an older pair is still live: once
/// that one is retired or gone it sends, and keeps sending while the next
/// rekey's deferred pair waits for it in turn.
fn outbound_pair(pairs: &[PairEntry]) -> Option<&PairEntry> {
    let live_before = |at: usize| pairs[..at].iter().any(|p| !p.retired);
    pairs
        .iter()
        .enumerate()
        .rev()
        .find(|(at, p)| !p.retired && (!p.deferred || !live_before(*at)))
        .map(|(_, p)| p)
        .or_else(|| pairs.last())
}

struct VaEntry {
    spec: VirtualAccessSpec,
    stats: Arc<VaStats>,
    /// Oldest first; the last one carries the outbound traffic.
    pairs: Vec<PairEntry>,
    dest: SocketAddrV4,
    /// What the workers have of it, rebuilt when it changes.
    view: Arc<Va>,
    /// The prefixes routed to it (their FIB entries hold `view`).
    routes: BTreeSet<Ipv4Prefix>,
}

impl VaEntry {
    fn view(&self) -> Va {
        Va {
            spec: self.spec.clone(),
            out: outbound_pair(&self.pairs).map(|p| p.out.clone()),
            dest: self.dest,
            stats: self.stats.clone(),
        }
    }
}

/// What a housekeeping pass found: the events to report, and whether SAs
/// were removed (a publish is due).
#[derive(Debug, Default)]
pub struct Expiry {
    pub events: Vec<DatapathEvent>,
    pub removed: bool,
}

/// The control plane's master copy. Every operation records the changes
/// it makes to the tables; `publish` hands them to every replica at once.
#[derive(Default)]
pub struct Master {
    vas: BTreeMap<VaId, VaEntry>,
    routes: BTreeMap<Ipv4Prefix, Route>,
    inbound: HashMap<u32, Arc<InboundSpec>>,
    /// Local addresses and how many hold each (the interfaces' unnumbered
    /// addresses, and one hold for each of `config_local`).
    local: HashMap<Ipv4Addr, usize>,
    /// Addresses of the host on the TUN device from the config.
    config_local: Vec<Ipv4Addr>,
    /// The tables as published, for the control plane's own lookups.
    tables: Tables,
    /// Recorded, not yet published.
    pending: Vec<Change>,
    followers: Vec<mpsc::Sender<Arc<[Change]>>>,
}

impl Master {
    pub fn set_local(&mut self, addresses: &[Ipv4Addr]) {
        for a in std::mem::take(&mut self.config_local) {
            self.release_local(a);
        }
        for a in addresses {
            self.hold_local(*a);
        }
        self.config_local = addresses.to_vec();
    }

    fn record(&mut self, change: Change) {
        self.tables.apply(&change);
        self.pending.push(change);
    }

    fn hold_local(&mut self, a: Ipv4Addr) {
        let count = self.local.entry(a).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.record(Change::Local(a, true));
        }
    }

    fn release_local(&mut self, a: Ipv4Addr) {
        let Some(count) = self.local.get_mut(&a) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.local.remove(&a);
            self.record(Change::Local(a, false));
        }
    }

    /// Rebuilds the interface's view if it changed, and points its routes
    /// at the new one: O(its routes), whatever the number of interfaces.
    fn refresh_va(&mut self, id: VaId) {
        let Some(entry) = self.vas.get_mut(&id) else {
            return;
        };
        let view = entry.view();
        let old = &entry.view;
        let same_out = match (&view.out, &old.out) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same_out && view.dest == old.dest && view.spec == old.spec {
            return;
        }
        let view = Arc::new(view);
        entry.view = view.clone();
        let prefixes: Vec<Ipv4Prefix> = entry.routes.iter().copied().collect();
        self.record(Change::Va(id, Some(view.clone())));
        for prefix in prefixes {
            self.record(Change::Route(prefix, Some(view.clone())));
        }
    }

    /// Hands the changes recorded since the last call to every replica,
    /// in one message each (a worker never sees half of an operation).
    /// Workers apply them before they read their next packets, so what
    /// was published when an operation returns applies to every packet
    /// read after that: an SA is in before its IKE response leaves.
    pub fn publish(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch: Arc<[Change]> = std::mem::take(&mut self.pending).into();
        // A replica that is gone (its worker stopped) is forgotten.
        self.followers.retain(|f| f.send(batch.clone()).is_ok());
    }

    /// A new replica, starting from what is published now: O(tables),
    /// once per worker.
    pub fn follow(&mut self) -> Replica {
        self.publish();
        let t = &self.tables;
        let mut all: Vec<Change> = Vec::new();
        all.extend(t.local.iter().map(|a| Change::Local(*a, true)));
        all.extend(t.vas.iter().map(|(id, v)| Change::Va(*id, Some(v.clone()))));
        all.extend(t.fib.iter().map(|(p, v)| Change::Route(p, Some(v.clone()))));
        all.extend(
            self.inbound
                .iter()
                .map(|(spi, s)| Change::Inbound(*spi, Some(s.clone()))),
        );
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(all.into());
        self.followers.push(tx);
        Replica {
            tables: Tables::default(),
            changes: rx,
        }
    }

    /// The tables as published (and as about to be, before `publish`).
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub fn create_va(&mut self, spec: &VirtualAccessSpec) -> Result<(), DatapathError> {
        if self.vas.contains_key(&spec.id) {
            return Err(DatapathError::InterfaceExists(spec.id));
        }
        let stats = Arc::<VaStats>::default();
        let view = Arc::new(Va {
            spec: spec.clone(),
            out: None,
            dest: spec.remote_outer,
            stats: stats.clone(),
        });
        self.vas.insert(
            spec.id,
            VaEntry {
                spec: spec.clone(),
                stats,
                pairs: Vec::new(),
                dest: spec.remote_outer,
                view: view.clone(),
                routes: BTreeSet::new(),
            },
        );
        self.record(Change::Va(spec.id, Some(view)));
        self.hold_local(spec.unnumbered);
        Ok(())
    }

    /// Removes the interface, its SAs and its routes; returns the routes.
    pub fn remove_va(&mut self, id: VaId) -> Result<Vec<Route>, DatapathError> {
        let entry = self
            .vas
            .remove(&id)
            .ok_or(DatapathError::NoSuchInterface(id))?;
        for pair in &entry.pairs {
            self.inbound.remove(&pair.spi_in);
            self.record(Change::Inbound(pair.spi_in, None));
        }
        let mut gone = Vec::with_capacity(entry.routes.len());
        for prefix in &entry.routes {
            if let Some(r) = self.routes.remove(prefix) {
                gone.push(r);
            }
            self.record(Change::Route(*prefix, None));
        }
        self.record(Change::Va(id, None));
        self.release_local(entry.spec.unnumbered);
        Ok(gone)
    }

    /// Adds an SA pair to its interface; outbound moves to it (a rekey,
    /// make-before-break: the older pairs keep decrypting).
    pub fn install_sa(&mut self, sa: &SaPair) -> Result<(), DatapathError> {
        self.install_sa_at(sa, 1, Instant::now())
    }

    /// As `install_sa`, with the first outbound sequence number `next_seq`
    /// (to cross 2^32 without 2^32 packets) and the install time `now`
    /// (lifetimes count from it).
    #[cfg(test)]
    pub fn install_sa_starting_at(
        &mut self,
        sa: &SaPair,
        next_seq: u64,
        now: Instant,
    ) -> Result<(), DatapathError> {
        self.install_sa_at(sa, next_seq, now)
    }

    fn install_sa_at(
        &mut self,
        sa: &SaPair,
        next_seq: u64,
        now: Instant,
    ) -> Result<(), DatapathError> {
        if self.inbound.contains_key(&sa.spi_in) {
            return Err(DatapathError::SpiInUse(sa.spi_in));
        }
        let entry = self
            .vas
            .get_mut(&sa.va)
            .ok_or(DatapathError::NoSuchInterface(sa.va))?;
        let Some((local_port, remote_port)) = sa.encap else {
            return Err(DatapathError::Unsupported(format!(
                "SPI {:#010x}: the userspace datapath carries ESP in UDP only (RFC 3948); \
                 this SA was negotiated without UDP encapsulation",
                sa.spi_in
            )));
        };
        let _ = local_port;
        let cipher = EspCipher::new(sa.encr, sa.integ, &sa.outbound.encr, &sa.outbound.integ)
            .map_err(|e| DatapathError::Keys(e.to_string()))?;
        let stats = Arc::<SaStats>::default();
        let dest = SocketAddrV4::new(sa.remote, remote_port);
        let inbound = InboundSpec {
            va: sa.va,
            spi: sa.spi_in,
            encr: sa.encr,
            integ: sa.integ,
            keys: sa.inbound.clone(),
            mode: sa.mode,
            esn: sa.esn,
            peer: dest,
            stats: stats.clone(),
            shared: Arc::new(InboundShared::new()),
        };
        // Check the inbound keys now, not in every worker later.
        inbound.build()?;
        entry.pairs.push(PairEntry {
            spi_in: sa.spi_in,
            out: Arc::new(OutSa {
                sa: OutboundSa::new(sa.spi_out, cipher)
                    .with_esn(sa.esn)
                    .starting_at(next_seq),
                mode: sa.mode,
                stats,
            }),
            lifetime: sa.lifetime,
            installed: now,
            soft_reported: false,
            deferred: sa.defer_outbound && !entry.pairs.is_empty(),
            retired: false,
        });
        let inbound = Arc::new(inbound);
        self.inbound.insert(sa.spi_in, inbound.clone());
        self.record(Change::Inbound(sa.spi_in, Some(inbound)));
        // The newest SA names the peer's endpoint as IKE last saw it; the
        // older pairs follow (one endpoint per interface).
        self.move_peer(sa.va, dest);
        self.refresh_va(sa.va);
        Ok(())
    }

    /// Removes the pair with inbound SPI `spi_in`; if it was the newest,
    /// outbound falls back to the newest remaining one.
    pub fn remove_sa(&mut self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let entry = self
            .vas
            .get_mut(&va)
            .ok_or(DatapathError::NoSuchInterface(va))?;
        let at = entry
            .pairs
            .iter()
            .position(|p| p.spi_in == spi_in)
            .ok_or(DatapathError::NoSuchSa(spi_in))?;
        entry.pairs.remove(at);
        self.inbound.remove(&spi_in);
        self.record(Change::Inbound(spi_in, None));
        self.refresh_va(va);
        Ok(())
    }

    /// The pair with inbound SPI `spi_in` sends no more (deleted after a
    /// rekey); it keeps decrypting until `remove_sa`.
    pub fn retire_sa(&mut self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let entry = self
            .vas
            .get_mut(&va)
            .ok_or(DatapathError::NoSuchInterface(va))?;
        let pair = entry
            .pairs
            .iter_mut()
            .find(|p| p.spi_in == spi_in)
            .ok_or(DatapathError::NoSuchSa(spi_in))?;
        pair.retired = true;
        self.refresh_va(va);
        Ok(())
    }

    /// NAT rebinding (RFC 7296 section 2.23): the interface and all its
    /// SAs send to `remote`, and take ESP from it without complaint.
    pub fn update_peer(&mut self, va: VaId, remote: SocketAddrV4) -> Result<(), DatapathError> {
        if !self.vas.contains_key(&va) {
            return Err(DatapathError::NoSuchInterface(va));
        }
        self.move_peer(va, remote);
        self.refresh_va(va);
        Ok(())
    }

    /// Moves the endpoint in the master copy; the caller refreshes the view.
    fn move_peer(&mut self, va: VaId, remote: SocketAddrV4) {
        let Some(entry) = self.vas.get_mut(&va) else {
            return;
        };
        entry.dest = remote;
        entry.spec.remote_outer = remote;
        let mut moved = Vec::new();
        for pair in &entry.pairs {
            if let Some(spec) = self.inbound.get_mut(&pair.spi_in)
                && spec.peer != remote
            {
                // Same `shared`: the workers keep their replay windows.
                *spec = Arc::new(spec.with_peer(remote));
                moved.push(Change::Inbound(pair.spi_in, Some(spec.clone())));
            }
        }
        for change in moved {
            self.record(change);
        }
    }

    /// Applies the SAs' lifetimes at `now` (RFC 4301 section 4.4.2.1):
    /// past a hard limit the pair is removed, then reported; past a soft
    /// one, or with the outbound sequence number near its end, it is
    /// reported once. Bytes are the ESP bytes the SA carried both ways.
    pub fn expire(&mut self, now: Instant) -> Expiry {
        let mut expiry = Expiry::default();
        let mut gone: Vec<(VaId, u32)> = Vec::new();
        for (id, entry) in &mut self.vas {
            entry.pairs.retain_mut(|pair| {
                let stats = &pair.out.stats;
                let bytes = stats
                    .get(SaCounter::RxBytes)
                    .saturating_add(stats.get(SaCounter::TxBytes));
                let age = now.saturating_duration_since(pair.installed).as_secs();
                let life = pair.lifetime;
                let reached = |bytes_limit: Option<u64>, seconds_limit: Option<u64>| {
                    bytes_limit.is_some_and(|l| bytes >= l)
                        || seconds_limit.is_some_and(|l| age >= l)
                };
                if reached(life.hard_bytes, life.hard_seconds) {
                    gone.push((*id, pair.spi_in));
                    expiry.events.push(DatapathEvent::SaExpired {
                        va: *id,
                        spi_in: pair.spi_in,
                        hard: true,
                    });
                    return false;
                }
                let out = &pair.out.sa;
                let margin = if out.esn() {
                    SEQ_MARGIN_ESN
                } else {
                    SEQ_MARGIN
                };
                let wrapping = out.limit() - out.sequence() <= margin;
                if !pair.soft_reported && (reached(life.soft_bytes, life.soft_seconds) || wrapping)
                {
                    pair.soft_reported = true;
                    expiry.events.push(DatapathEvent::SaExpired {
                        va: *id,
                        spi_in: pair.spi_in,
                        hard: false,
                    });
                }
                true
            });
        }
        expiry.removed = !gone.is_empty();
        for (va, spi_in) in gone {
            self.inbound.remove(&spi_in);
            self.record(Change::Inbound(spi_in, None));
            self.refresh_va(va);
        }
        expiry
    }

    /// Adds or replaces the route for the prefix; returns the one replaced.
    pub fn add_route(&mut self, route: &Route) -> Result<Option<Route>, DatapathError> {
        let Some(entry) = self.vas.get_mut(&route.va) else {
            return Err(DatapathError::NoSuchInterface(route.va));
        };
        entry.routes.insert(route.prefix);
        let view = entry.view.clone();
        let replaced = self.routes.insert(route.prefix, *route);
        if let Some(old) = replaced
            && old.va != route.va
            && let Some(other) = self.vas.get_mut(&old.va)
        {
            other.routes.remove(&route.prefix);
        }
        self.record(Change::Route(route.prefix, Some(view)));
        Ok(replaced)
    }

    pub fn remove_route(&mut self, route: &Route) -> Result<(), DatapathError> {
        match self.routes.get(&route.prefix) {
            Some(r) if r.va == route.va => {
                self.routes.remove(&route.prefix);
                if let Some(entry) = self.vas.get_mut(&route.va) {
                    entry.routes.remove(&route.prefix);
                }
                self.record(Change::Route(route.prefix, None));
                Ok(())
            }
            _ => Err(DatapathError::NoSuchRoute(route.prefix)),
        }
    }

    /// Whether some interface has a route for exactly `prefix`.
    pub fn is_routed(&self, prefix: Ipv4Prefix) -> bool {
        self.routes.contains_key(&prefix)
    }

    pub fn spec(&self, id: VaId) -> Option<&VirtualAccessSpec> {
        self.vas.get(&id).map(|e| &e.spec)
    }

    /// The tables built from scratch from the master copy, as every
    /// snapshot was before changes were published one by one: what the
    /// replicas must hold.
    #[cfg(test)]
    pub fn rebuilt(&self) -> Tables {
        let vas: HashMap<VaId, Arc<Va>> = self
            .vas
            .iter()
            .map(|(id, e)| (*id, Arc::new(e.view())))
            .collect();
        let mut fib = Fib::new();
        for r in self.routes.values() {
            fib.insert(r.prefix, vas[&r.va].clone());
        }
        let mut local: HashSet<Ipv4Addr> = self.config_local.iter().copied().collect();
        local.extend(self.vas.values().map(|e| e.spec.unnumbered));
        Tables { vas, fib, local }
    }

    /// How many changes are recorded and not yet published.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The inbound SAs, as the workers must have them.
    #[cfg(test)]
    pub fn inbound(&self) -> &HashMap<u32, Arc<InboundSpec>> {
        &self.inbound
    }

    pub fn counters(&self) -> (Vec<VaCounters>, Vec<SaCounters>) {
        let mut vas = Vec::new();
        let mut sas = Vec::new();
        for e in self.vas.values() {
            let mut va = VaCounters {
                id: e.spec.id.raw(),
                name: e.spec.name.clone(),
                peer_inner: e.spec.peer_inner,
                remote_outer: e.spec.remote_outer.to_string(),
                mtu: e.spec.mtu,
                ..VaCounters::default()
            };
            e.stats.fill(&mut va);
            vas.push(va);
            // Every pair, the ones still draining after a rekey too.
            for pair in &e.pairs {
                let mut sa = SaCounters {
                    va: e.spec.id.raw(),
                    spi_in: pair.spi_in,
                    spi_out: pair.out.sa.spi(),
                    ..SaCounters::default()
                };
                pair.out.stats.fill(&mut sa);
                sas.push(sa);
            }
        }
        (vas, sas)
    }
}
