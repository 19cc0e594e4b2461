//! What the workers read on every packet: an immutable snapshot of the
//! interfaces, routes and SAs, replaced as a whole by the control plane
//! (read-copy-update through `ArcSwap`, so the packet path takes no lock).
//! Counters live in `Arc`ed slots that survive snapshot replacement.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
};

use gateway_report::interfaces::{SaCounters, VaCounters};

use super::counters::{SaStats, VaStats};
use crate::{
    datapath::fib::Fib,
    esp::sa::{EspCipher, InboundSa, OutboundSa},
    iface::{DatapathError, Route, SaPair, VaId, VirtualAccessSpec},
    ipsec::{Encr, Integ, Mode, SaKeys},
    net::Ipv4Prefix,
};

/// The outbound half of a virtual-access's SA pair.
pub struct OutSa {
    pub sa: OutboundSa,
    pub mode: Mode,
    /// Where the ESP-in-UDP datagrams go.
    pub dest: SocketAddrV4,
    pub stats: Arc<SaStats>,
}

/// A virtual-access in a snapshot.
pub struct Va {
    pub spec: VirtualAccessSpec,
    pub out: Option<Arc<OutSa>>,
    pub stats: Arc<VaStats>,
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
    /// The only source ESP for this SA is accepted from. With one socket
    /// per worker the kernel hashes a peer's 4-tuple to one worker, so this
    /// check is also what keeps a replay from reaching another worker's
    /// window.
    pub peer: SocketAddrV4,
    pub stats: Arc<SaStats>,
}

impl InboundSpec {
    pub fn build(&self) -> Result<InboundSa, DatapathError> {
        let cipher = EspCipher::new(self.encr, self.integ, &self.keys.encr, &self.keys.integ)
            .map_err(|e| DatapathError::Keys(e.to_string()))?;
        Ok(InboundSa::new(self.spi, cipher))
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

struct VaEntry {
    spec: VirtualAccessSpec,
    stats: Arc<VaStats>,
    out: Option<Arc<OutSa>>,
    spi_in: Option<u32>,
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
                out: None,
                spi_in: None,
            },
        );
        Ok(())
    }

    /// Removes the interface, its SA and its routes; returns the routes.
    pub fn remove_va(&mut self, id: VaId) -> Result<Vec<Route>, DatapathError> {
        let entry = self
            .vas
            .remove(&id)
            .ok_or(DatapathError::NoSuchInterface(id))?;
        if let Some(spi) = entry.spi_in {
            self.inbound.remove(&spi);
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

    pub fn install_sa(&mut self, sa: &SaPair) -> Result<(), DatapathError> {
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
            peer: dest,
            stats: stats.clone(),
        };
        // Check the inbound keys now, not in every worker later.
        inbound.build()?;
        if let Some(old) = entry.spi_in.replace(sa.spi_in) {
            self.inbound.remove(&old);
        }
        entry.out = Some(Arc::new(OutSa {
            sa: OutboundSa::new(sa.spi_out, cipher),
            mode: sa.mode,
            dest,
            stats,
        }));
        self.inbound.insert(sa.spi_in, Arc::new(inbound));
        Ok(())
    }

    pub fn remove_sa(&mut self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let entry = self
            .vas
            .get_mut(&va)
            .ok_or(DatapathError::NoSuchInterface(va))?;
        if entry.spi_in != Some(spi_in) {
            return Err(DatapathError::NoSuchSa(spi_in));
        }
        entry.spi_in = None;
        entry.out = None;
        self.inbound.remove(&spi_in);
        Ok(())
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
                        out: e.out.clone(),
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
            if let (Some(out), Some(spi_in)) = (&e.out, e.spi_in) {
                let mut sa = SaCounters {
                    va: e.spec.id.raw(),
                    spi_in,
                    spi_out: out.sa.spi(),
                    ..SaCounters::default()
                };
                out.stats.fill(&mut sa);
                sas.push(sa);
            }
        }
        (vas, sas)
    }
}
