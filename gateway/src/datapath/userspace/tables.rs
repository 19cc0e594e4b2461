//! What the workers read on every packet: an immutable snapshot of the
//! interfaces, routes and SAs, replaced as a whole by the control plane
//! (read-copy-update through `ArcSwap`, so the packet path takes no lock).
//! Counters live in `Arc`ed slots that survive snapshot replacement.
//!
//! A virtual-access holds several SA pairs while it is rekeyed (RFC 7296
//! section 2.8, make-before-break): outbound uses the newest, every
//! inbound SA decrypts until it is removed.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
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

/// One snapshot.
#[derive(Default)]
pub struct Tables {
    pub generation: u64,
    pub vas: HashMap<VaId, Arc<Va>>,
    pub fib: Fib<Arc<Va>>,
    pub inbound: HashMap<u32, Arc<InboundSpec>>,
    /// This box's own addresses on the tunnels: packets for them go to the
    /// host even when a route (a spoke's summary via the hub) covers them.
    pub local: HashSet<Ipv4Addr>,
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
}

/// What a housekeeping pass found: the events to report, and whether SAs
/// were removed (a new snapshot is due).
#[derive(Debug, Default)]
pub struct Expiry {
    pub events: Vec<DatapathEvent>,
    pub removed: bool,
}

/// The control plane's master copy, from which snapshots are built.
#[derive(Default)]
pub struct Master {
    generation: u64,
    vas: BTreeMap<VaId, VaEntry>,
    routes: BTreeMap<Ipv4Prefix, Route>,
    inbound: HashMap<u32, Arc<InboundSpec>>,
    /// Addresses of the host on the TUN device from the config.
    local: HashSet<Ipv4Addr>,
}

impl Master {
    pub fn set_local(&mut self, addresses: &[Ipv4Addr]) {
        self.local = addresses.iter().copied().collect();
    }

    pub fn create_va(&mut self, spec: &VirtualAccessSpec) -> Result<(), DatapathError> {
        if self.vas.contains_key(&spec.id) {
            return Err(DatapathError::InterfaceExists(spec.id));
        }
        self.vas.insert(
            spec.id,
            VaEntry {
                spec: spec.clone(),
                stats: Arc::default(),
                pairs: Vec::new(),
                dest: spec.remote_outer,
            },
        );
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
        }
        let gone: Vec<Route> = self
            .routes
            .values()
            .filter(|r| r.va == id)
            .copied()
            .collect();
        for r in &gone {
            self.routes.remove(&r.prefix);
        }
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
        self.inbound.insert(sa.spi_in, Arc::new(inbound));
        // The newest SA names the peer's endpoint as IKE last saw it; the
        // older pairs follow (one endpoint per interface).
        self.move_peer(sa.va, dest);
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
        Ok(())
    }

    /// NAT rebinding (RFC 7296 section 2.23): the interface and all its
    /// SAs send to `remote`, and take ESP from it without complaint.
    pub fn update_peer(&mut self, va: VaId, remote: SocketAddrV4) -> Result<(), DatapathError> {
        if !self.vas.contains_key(&va) {
            return Err(DatapathError::NoSuchInterface(va));
        }
        self.move_peer(va, remote);
        Ok(())
    }

    fn move_peer(&mut self, va: VaId, remote: SocketAddrV4) {
        let Some(entry) = self.vas.get_mut(&va) else {
            return;
        };
        entry.dest = remote;
        entry.spec.remote_outer = remote;
        for pair in &entry.pairs {
            if let Some(spec) = self.inbound.get_mut(&pair.spi_in)
                && spec.peer != remote
            {
                // Same `shared`: the workers keep their replay windows.
                *spec = Arc::new(spec.with_peer(remote));
            }
        }
    }

    /// Applies the SAs' lifetimes at `now` (RFC 4301 section 4.4.2.1):
    /// past a hard limit the pair is removed, then reported; past a soft
    /// one, or with the outbound sequence number near its end, it is
    /// reported once. Bytes are the ESP bytes the SA carried both ways.
    pub fn expire(&mut self, now: Instant) -> Expiry {
        let mut expiry = Expiry::default();
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
                    self.inbound.remove(&pair.spi_in);
                    expiry.removed = true;
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
        expiry
    }

    /// Adds or replaces the route for the prefix; returns the one replaced.
    pub fn add_route(&mut self, route: &Route) -> Result<Option<Route>, DatapathError> {
        if !self.vas.contains_key(&route.va) {
            return Err(DatapathError::NoSuchInterface(route.va));
        }
        Ok(self.routes.insert(route.prefix, *route))
    }

    pub fn remove_route(&mut self, route: &Route) -> Result<(), DatapathError> {
        match self.routes.get(&route.prefix) {
            Some(r) if r.va == route.va => {
                self.routes.remove(&route.prefix);
                Ok(())
            }
            _ => Err(DatapathError::NoSuchRoute(route.prefix)),
        }
    }

    pub fn spec(&self, id: VaId) -> Option<&VirtualAccessSpec> {
        self.vas.get(&id).map(|e| &e.spec)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.values()
    }

    /// A fresh snapshot. O(interfaces + routes); done once per change.
    pub fn snapshot(&mut self) -> Tables {
        self.generation += 1;
        let vas: HashMap<VaId, Arc<Va>> = self
            .vas
            .iter()
            .map(|(id, e)| {
                (
                    *id,
                    Arc::new(Va {
                        spec: e.spec.clone(),
                        out: outbound_pair(&e.pairs).map(|p| p.out.clone()),
                        dest: e.dest,
                        stats: e.stats.clone(),
                    }),
                )
            })
            .collect();
        let mut fib = Fib::new();
        for r in self.routes.values() {
            if let Some(va) = vas.get(&r.va) {
                fib.insert(r.prefix, va.clone());
            }
        }
        let mut local = self.local.clone();
        local.extend(self.vas.values().map(|e| e.spec.unnumbered));
        Tables {
            generation: self.generation,
            vas,
            fib,
            inbound: self.inbound.clone(),
            local,
        }
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
