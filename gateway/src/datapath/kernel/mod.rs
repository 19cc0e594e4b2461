//! The kernel datapath: what a production hub runs, packets never leaving
//! the kernel. A spoke's virtual-access is an ip_gre point-to-point link
//! (local = our tunnel source, remote = the spoke's outer address,
//! unnumbered: the template's address as a /32 with the spoke's pool
//! address as peer), protected by ESP transport-mode SAs and policies for
//! GRE between the outer addresses, in UDP when NAT was detected (RFC
//! 3948). A spoke that asked for tunnel mode (strongSwan without GRE) gets
//! tunnel-mode SAs and policies for its inner address, and no link. Routes
//! go into the main table through the link. Counters come from the link
//! and from the SAs' XFRM statistics. A template's `tcp_adjust_mss`
//! becomes a clamp of the SYNs through the link in our nftables table
//! (`sys::nft`), gone with the link; the table goes at shutdown. The link
//! discovers the path MTU (pmtudisc), so a DF packet over its MTU is
//! answered with ICMP fragmentation-needed, as the userspace datapath does.
//!
//! NHRP (RFC 2332, GRE protocol type 0x2001) goes in and out of the links
//! through an AF_PACKET socket (`sys::packet`), as OpenNHRP does on Linux:
//! a reader thread turns what the kernel decapsulated into
//! [`DatapathEvent::Nhrp`], and `send_nhrp` sends out of the peer's link.
//!
//! Everything is programmed over rtnetlink and xfrm netlink
//! (`sys::netlink`, `sys::xfrm`) and undone in the reverse order.
//!
//! An interface may hold several SA pairs (a rekey, make-before-break);
//! the newest sends. The SAs carry the negotiated lifetimes as XFRM limits
//! and ESN as the kernel's replay state, and a monitor thread turns the
//! kernel's expire and NAT mapping events into [`DatapathEvent::SaExpired`]
//! and [`DatapathEvent::PeerMoved`]; `update_peer` moves the states' UDP
//! ports.
//!
//! The NHRP socket and its reader are in `nhrp`; what an SA pair becomes
//! in XFRM (states, policies, algorithm names) and the pairs of an
//! interface in `ipsec`; the XFRM event monitor in `events`; where the
//! report's counters come from in `report`.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::mpsc;

use self::{
    events::{SaEventStats, SaMonitor, start_sa_monitor},
    ipsec::InstalledSa,
    nhrp::{NhrpPort, NhrpReader, open_nhrp},
};
use super::{fib::Fib, hairpin::HairpinMonitor};
use gateway_report::interfaces::DatapathReport;

use crate::iface::{
    Datapath, DatapathError, DatapathEvent, Route, SaPair, VaId, VirtualAccessSpec,
};
use crate::ipsec::Mode;
use crate::net::ETH_P_NHRP;
use crate::sys::{
    netlink::Netlink,
    nft::{self, MssClamp},
    xfrm::{Xfrm, XfrmDir, XfrmSelector},
};

mod events;
mod ipsec;
mod nhrp;
mod report;

pub use events::SaEventCounters;
pub use nhrp::NhrpCounters;

/// TTL of the GRE packets (the outer header gets the inner one's otherwise,
/// which breaks traceroute-like TTLs of 1).
const GRE_TTL: u8 = 64;

struct Va {
    spec: VirtualAccessSpec,
    /// The GRE link, once the SA told us the peer runs GRE.
    ifindex: Option<u32>,
    /// Its SA pairs, oldest first.
    pairs: Vec<InstalledSa>,
    /// The policies, laid with the first pair and removed with the last.
    policies: Vec<(XfrmSelector, XfrmDir)>,
}

impl Va {
    /// The mode of its pairs (all the same), if it has any.
    fn mode(&self) -> Option<Mode> {
        self.pairs.last().map(|p| p.mode)
    }
}

struct State {
    nl: Netlink,
    xfrm: Xfrm,
    vas: BTreeMap<VaId, Va>,
    /// Our routes, for `lookup` (the kernel's table holds others too).
    routes: Fib<Route>,
    /// The MSS clamps of the links, all in our nftables table.
    clamps: BTreeMap<VaId, MssClamp>,
    /// Whether our nftables table may exist (laid, or maybe left by a
    /// previous run).
    nft_table: bool,
    /// Where new SAs start their sequence numbers: 0, but in tests.
    initial_seq: u64,
}

/// The kernel datapath (`datapath = "kernel"`).
pub struct KernelDatapath {
    /// Shared with the SA monitor thread, which removes hard-expired pairs.
    state: Arc<Mutex<State>>,
    /// Spoke-to-spoke traffic through the hub (for NHRP): the tc program on
    /// the links of templates with an NHRP network id.
    hairpin: Option<Mutex<HairpinMonitor>>,
    /// The NHRP socket and link map, or why there is none.
    nhrp: Result<Arc<NhrpPort>, String>,
    /// The thread reading `nhrp`'s socket, when events are wanted.
    nhrp_reader: Mutex<Option<NhrpReader>>,
    /// The thread reading the kernel's XFRM events, when events are wanted.
    sa_monitor: Mutex<Option<SaMonitor>>,
    sa_events: Arc<SaEventStats>,
}

/// IOS's default NHRP redirect timeout: one Traffic Indication per flow
/// and interval.
const HAIRPIN_INTERVAL: Duration = Duration::from_secs(1);

fn os(what: String) -> impl FnOnce(std::io::Error) -> DatapathError {
    move |source| DatapathError::Os { what, source }
}

impl KernelDatapath {
    /// Opens the netlink sockets and loads the hairpin detector, whose
    /// events go to `events`. The caller checked that the kernel has ip_gre
    /// and esp4 (`select`). Without the detector (a kernel that refuses
    /// it) the datapath runs and says so: only NHRP redirects are lost.
    pub fn open(events: Option<&mpsc::Sender<DatapathEvent>>) -> Result<Self, DatapathError> {
        let nl = Netlink::open().map_err(os("opening rtnetlink".into()))?;
        let xfrm = Xfrm::open().map_err(os("opening xfrm netlink".into()))?;
        let hairpin = match HairpinMonitor::load(HAIRPIN_INTERVAL) {
            Ok(mut monitor) => match events.map(|tx| monitor.start(tx.clone())) {
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "hairpin detection off: its events cannot be read");
                    None
                }
                _ => Some(Mutex::new(monitor)),
            },
            Err(e) => {
                tracing::warn!(error = %e, "hairpin detection off: the tc program did not load");
                None
            }
        };
        let (nhrp, nhrp_reader) = open_nhrp(events);
        let state = Arc::new(Mutex::new(State {
            nl,
            xfrm,
            vas: BTreeMap::new(),
            routes: Fib::new(),
            clamps: BTreeMap::new(),
            // A table a previous run left goes with the first change
            // (or at shutdown), when `nft` is there to ask.
            nft_table: nft::available(),
            initial_seq: 0,
        }));
        let sa_events = Arc::new(SaEventStats::default());
        // Without the monitor SAs still expire in the kernel; only the
        // control plane does not hear of it (and rekeys on its own clock).
        let sa_monitor = events.and_then(|tx| {
            start_sa_monitor(Arc::clone(&state), tx.clone(), Arc::clone(&sa_events))
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "SA expiry and NAT mapping events off: no XFRM monitor");
                })
                .ok()
        });
        Ok(KernelDatapath {
            hairpin,
            nhrp,
            nhrp_reader: Mutex::new(nhrp_reader),
            state,
            sa_monitor: Mutex::new(sa_monitor),
            sa_events,
        })
    }

    /// Stops the NHRP reader and removes our nftables table (the MSS
    /// clamps); links, SAs and routes go with their sessions. Also done on
    /// drop; a second call does nothing more.
    pub fn shutdown(&self) {
        self.stop_nhrp_reader();
        // Before taking the state's lock, which the monitor may wait for.
        self.stop_sa_monitor();
        let mut s = self.state();
        s.clamps.clear();
        if let Err(e) = s.apply_clamps() {
            tracing::warn!(error = %e, "removing the TCP MSS clamps failed");
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_hairpin(&self, f: impl FnOnce(&mut HairpinMonitor)) {
        if let Some(m) = &self.hairpin {
            f(&mut m.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

/// The link's name, within IFNAMSIZ: `va<N>` for a hub's
/// Virtual-AccessN, `tunnel<N>` for a spoke's TunnelN.
fn link_name(id: VaId) -> String {
    match id.tunnel_number() {
        Some(n) => format!("tunnel{n}"),
        None => format!("va{}", id.raw()),
    }
}

impl Drop for KernelDatapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl State {
    /// Lays our nftables table with the clamps we have (none: no table).
    fn apply_clamps(&mut self) -> Result<(), DatapathError> {
        if self.clamps.is_empty() && !self.nft_table {
            return Ok(());
        }
        let clamps: Vec<MssClamp> = self.clamps.values().cloned().collect();
        nft::apply(&clamps).map_err(os("programming the TCP MSS clamps".into()))?;
        self.nft_table = !clamps.is_empty();
        Ok(())
    }

    /// Clamps the MSS of SYNs through `id`'s link (IOS `ip tcp
    /// adjust-mss`), when its template asks for it.
    fn add_clamp(&mut self, id: VaId) -> Result<(), DatapathError> {
        let Some(mss) = self.va(id)?.spec.tcp_adjust_mss else {
            return Ok(());
        };
        self.clamps.insert(
            id,
            MssClamp {
                link: link_name(id),
                mss,
            },
        );
        let applied = self.apply_clamps();
        if applied.is_err() {
            self.clamps.remove(&id);
        }
        applied
    }

    fn va(&self, id: VaId) -> Result<&Va, DatapathError> {
        self.vas.get(&id).ok_or(DatapathError::NoSuchInterface(id))
    }

    /// The GRE link of a transport-mode peer.
    fn create_link(&mut self, id: VaId) -> Result<u32, DatapathError> {
        let spec = self.va(id)?.spec.clone();
        let name = link_name(id);
        let ifindex = self
            .nl
            .add_gre_link(
                &name,
                *spec.local_outer.ip(),
                *spec.remote_outer.ip(),
                GRE_TTL,
                u32::from(spec.mtu),
            )
            .map_err(os(format!("creating GRE link {name}")))?;
        // Unnumbered: the template's address, with the spoke's pool address
        // as the peer (a spoke's Tunnel1 has no peer: its own address).
        let address = match spec.peer_inner {
            Some(peer) => self.nl.add_address_peer(ifindex, spec.unnumbered, peer),
            None => self.nl.add_address(ifindex, spec.unnumbered, 32, None),
        };
        // No IPv6 on the tunnel (IOS runs none unless configured): the
        // kernel would send router solicitations and MLD reports through
        // it, which would read as traffic keeping NHRP shortcuts alive.
        // Absent when the kernel has no IPv6 at all.
        let ipv6 = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
        if std::path::Path::new(&ipv6).exists()
            && let Err(e) = std::fs::write(&ipv6, "1")
        {
            tracing::debug!(link = %name, error = %e, "could not turn IPv6 off on the link");
        }
        let configured = address.and_then(|()| self.nl.set_link_up(ifindex));
        if let Err(e) = configured {
            let _ = self.nl.del_link(ifindex);
            return Err(os(format!("configuring {name}"))(e));
        }
        Ok(ifindex)
    }

    /// Where a tunnel-mode peer's inner prefixes are routed: the way to
    /// its outer address (the XFRM output policy then takes them).
    fn outer_path(&mut self, remote: Ipv4Addr) -> Result<(u32, Option<Ipv4Addr>), DatapathError> {
        let routes = self
            .nl
            .dump_routes()
            .map_err(os("reading the routing table".into()))?;
        routes
            .iter()
            .filter(|r| r.prefix.contains(remote) && r.oif.is_some())
            .max_by_key(|r| r.prefix.len)
            .and_then(|r| r.oif.map(|oif| (oif, r.gateway)))
            .ok_or_else(|| {
                DatapathError::Unsupported(format!("no route to the peer's outer address {remote}"))
            })
    }
}

impl Datapath for KernelDatapath {
    fn kind(&self) -> &'static str {
        "kernel"
    }

    fn create_virtual_access(&self, spec: &VirtualAccessSpec) -> Result<(), DatapathError> {
        let mut s = self.state();
        if s.vas.contains_key(&spec.id) {
            return Err(DatapathError::InterfaceExists(spec.id));
        }
        // The link waits for the SA: only then is it known whether the
        // peer runs GRE (transport mode) or not (tunnel mode).
        s.vas.insert(
            spec.id,
            Va {
                spec: spec.clone(),
                ifindex: None,
                pairs: Vec::new(),
                policies: Vec::new(),
            },
        );
        Ok(())
    }

    fn remove_virtual_access(&self, id: VaId) -> Result<(), DatapathError> {
        let mut s = self.state();
        s.va(id)?;
        let gone: Vec<Route> = s
            .routes
            .iter()
            .filter(|(_, r)| r.va == id)
            .map(|(_, r)| *r)
            .collect();
        for r in gone {
            s.routes.remove(r.prefix);
        }
        s.remove_all_pairs(id);
        if s.clamps.remove(&id).is_some()
            && let Err(e) = s.apply_clamps()
        {
            tracing::warn!(interface = %id, error = %e, "removing the TCP MSS clamp failed");
        }
        if let Some(va) = s.vas.remove(&id)
            && let Some(ifindex) = va.ifindex
        {
            self.with_hairpin(|m| {
                let _ = m.detach(ifindex);
            });
            self.nhrp_link(ifindex, None);
            // Its routes go with it.
            s.nl.del_link(ifindex)
                .map_err(os(format!("removing link {}", link_name(id))))?;
        }
        Ok(())
    }

    fn install_sa(&self, sa: &SaPair) -> Result<(), DatapathError> {
        let mut s = self.state();
        // Before the link: a pair refused leaves nothing behind.
        s.check_new_pair(sa)?;
        let va = s.va(sa.va)?;
        let nhrp = va.spec.nhrp_network_id;
        let new_link = sa.mode == Mode::Transport && va.ifindex.is_none();
        if new_link {
            let ifindex = s.create_link(sa.va)?;
            if let Err(e) = s.add_clamp(sa.va) {
                let _ = s.nl.del_link(ifindex);
                return Err(e);
            }
            if let Err(e) = s.add_pair(sa) {
                // The link came for this pair: it goes with it.
                s.clamps.remove(&sa.va);
                let _ = s.apply_clamps();
                let _ = s.nl.del_link(ifindex);
                return Err(e);
            }
            if let Some(v) = s.vas.get_mut(&sa.va) {
                v.ifindex = Some(ifindex);
            }
            self.nhrp_link(ifindex, Some(sa.va));
            if let Some(network_id) = nhrp {
                self.with_hairpin(|m| {
                    if let Err(e) = m.attach(ifindex, sa.va, network_id) {
                        tracing::warn!(interface = %sa.va, error = %e, "hairpin detection not attached");
                    }
                });
            }
            return Ok(());
        }
        s.add_pair(sa)
    }

    fn remove_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let mut s = self.state();
        s.va(va)?;
        if s.remove_pair(va, spi_in) {
            Ok(())
        } else {
            Err(DatapathError::NoSuchSa(spi_in))
        }
    }

    fn retire_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let mut s = self.state();
        s.va(va)?;
        if s.retire_pair(va, spi_in) {
            Ok(())
        } else {
            Err(DatapathError::NoSuchSa(spi_in))
        }
    }

    fn update_peer(&self, va: VaId, remote: std::net::SocketAddrV4) -> Result<(), DatapathError> {
        self.state().update_peer(va, remote)
    }

    fn add_route(&self, route: &Route) -> Result<(), DatapathError> {
        let mut s = self.state();
        let va = s.va(route.va)?;
        let (ifindex, gateway) = match (va.ifindex, va.pairs.last()) {
            (Some(ifindex), _) => (ifindex, None),
            (None, Some(sa)) if sa.mode == Mode::Tunnel => {
                let remote = sa.remote;
                s.outer_path(remote)?
            }
            _ => {
                return Err(DatapathError::Unsupported(format!(
                    "{}: a route before its SA",
                    route.va
                )));
            }
        };
        let p = route.prefix;
        s.nl.replace_route(p.addr, p.len, ifindex, gateway, None)
            .map_err(os(format!("adding route {p} via {}", route.va)))?;
        s.routes.insert(p, *route);
        Ok(())
    }

    fn remove_route(&self, route: &Route) -> Result<(), DatapathError> {
        let mut s = self.state();
        let p = route.prefix;
        match s.routes.get(p) {
            Some(r) if r.va == route.va => {}
            _ => return Err(DatapathError::NoSuchRoute(p)),
        }
        s.routes.remove(p);
        let Some(ifindex) = s.vas.get(&route.va).and_then(|v| v.ifindex) else {
            // Tunnel mode: the route went out of the uplink.
            return s
                .nl
                .del_own_route(p.addr, p.len)
                .map_err(os(format!("removing route {p}")));
        };
        s.nl.del_route(p.addr, p.len, ifindex)
            .map_err(os(format!("removing route {p} via {}", route.va)))
    }

    fn lookup(&self, addr: Ipv4Addr) -> Option<Route> {
        self.state().routes.lookup(addr).map(|(_, r)| *r)
    }

    fn send_nhrp(&self, va: VaId, packet: &[u8]) -> Result<(), DatapathError> {
        // The lock is held while sending (one syscall) so that the link
        // cannot go, and its ifindex be reused, in between.
        let s = self.state();
        let v = s.va(va)?;
        let Some(ifindex) = v.ifindex else {
            return Err(DatapathError::Unsupported(match v.mode() {
                Some(Mode::Tunnel) => format!(
                    "{va}: a tunnel-mode peer has no GRE link, and NHRP travels in GRE \
                     (protocol 0x2001)"
                ),
                _ => format!("{va}: no GRE link for NHRP before the peer's SA is installed"),
            }));
        };
        let port = self.nhrp.as_ref().map_err(|why| {
            DatapathError::Unsupported(format!("{va}: NHRP is off (no packet socket: {why})"))
        })?;
        port.socket
            .send(ifindex, ETH_P_NHRP, packet)
            .map_err(os(format!(
                "sending NHRP to the peer of {va} ({})",
                link_name(va)
            )))
    }

    fn report(&self) -> DatapathReport {
        self.counters()
    }
}

#[cfg(test)]
mod tests;
