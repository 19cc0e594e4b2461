//! The userspace datapath: ESP-in-UDP (RFC 3948) on port 4500, GRE
//! (RFC 2784) inside transport-mode SAs, and a TUN device towards the
//! host's own stack and LAN. For kernels without esp4/ip_gre (and for
//! tests): the same behaviour as the kernel datapath, in one process.
//!
//! Layout: one worker thread per core, each with its own UDP socket
//! (SO_REUSEPORT on the same address, so the kernel spreads peers over the
//! workers by 4-tuple) and its own TUN queue (IFF_MULTI_QUEUE). Each worker
//! reads its own copy of the interfaces, routes and SAs (`tables`); the
//! control plane changes the master copy and publishes what changed.
//! IKE messages on 4500 (behind the non-ESP marker) go to the IKE task over
//! a channel, and IKE sends through a clone of a worker's socket. A
//! housekeeping thread applies the SAs' lifetimes once a second.

pub mod counters;
pub mod housekeeping;
pub mod process;
pub mod tables;
#[cfg(test)]
mod tests;
mod worker;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use gateway_report::interfaces::{DatapathReport, GlobalCounters};
use tokio::sync::mpsc;

use self::{
    counters::GlobalStats,
    housekeeping::Housekeeping,
    process::{Encap, HEADROOM, Processor, TAILROOM},
    tables::Master,
};
use crate::iface::{
    Datapath, DatapathError, DatapathEvent, IkeOn4500, Route, SaPair, VaId, VirtualAccessSpec,
};
use crate::sys::{netlink::Netlink, poll::Waker, tun::Tun, udp};

#[derive(Clone, Debug)]
pub struct UserspaceConfig {
    /// The address ESP-in-UDP and IKE use (the tunnel source).
    pub local: Ipv4Addr,
    pub port: u16,
    /// The TUN device towards this host's stack (`gw-va` on a hub).
    pub tun_name: String,
    /// The largest interface MTU of the templates and tunnels.
    pub tun_mtu: u16,
    /// Addresses this box owns on the tunnels (the templates' unnumbered
    /// addresses): put on the TUN device as /32s so the host answers them.
    pub tun_addresses: Vec<Ipv4Addr>,
    pub workers: usize,
    /// Per-socket buffer size (SO_RCVBUFFORCE).
    pub socket_buffer: usize,
}

impl UserspaceConfig {
    pub fn new(local: Ipv4Addr, tun_name: &str) -> Self {
        UserspaceConfig {
            local,
            port: crate::net::NATT_PORT,
            tun_name: tun_name.to_owned(),
            tun_mtu: 1400,
            tun_addresses: Vec::new(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 16)),
            socket_buffer: 4 << 20,
        }
    }
}

/// Bytes per packet buffer: the largest inner packet plus room for the
/// encapsulation on both sides.
fn buffer_size(mtu: u16) -> usize {
    (usize::from(mtu) + HEADROOM + TAILROOM).max(2048)
}

/// The TUN device with one queue per worker, its MTU and addresses, up.
fn create_tun(config: &UserspaceConfig, workers: usize) -> anyhow::Result<(Tun, Netlink)> {
    use anyhow::Context as _;
    let tun = Tun::create(&config.tun_name, workers)
        .with_context(|| format!("creating TUN device {}", config.tun_name))?;
    let mut netlink = Netlink::open().context("opening a netlink socket")?;
    let ifindex = tun.ifindex();
    netlink
        .set_mtu(ifindex, u32::from(config.tun_mtu))
        .with_context(|| format!("setting the MTU of {}", config.tun_name))?;
    for a in &config.tun_addresses {
        netlink
            .add_address(ifindex, *a, 32, None)
            .with_context(|| format!("adding {a}/32 to {}", config.tun_name))?;
    }
    // IPv4 only: without this the host sends router solicitations into
    // the tunnels.
    let ipv6_off = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", config.tun_name);
    if let Err(e) = std::fs::write(&ipv6_off, "1") {
        tracing::debug!(path = ipv6_off, error = %e, "could not turn IPv6 off on the TUN device");
    }
    netlink
        .set_link_up(ifindex)
        .with_context(|| format!("bringing {} up", config.tun_name))?;
    Ok((tun, netlink))
}

pub struct UserspaceDatapath {
    /// Shared with the housekeeping thread.
    master: Arc<Mutex<Master>>,
    netlink: Mutex<Netlink>,
    tun_ifindex: u32,
    tun_name: String,
    global: Arc<GlobalStats>,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Addresses on the TUN device and how many interfaces use each; the
    /// ones from the config are never removed.
    tun_addresses: Mutex<std::collections::HashMap<Ipv4Addr, usize>>,
    /// For packets the control plane sends itself (NHRP).
    control: Mutex<(Processor, std::net::UdpSocket)>,
    buffer_size: usize,
}

impl UserspaceDatapath {
    /// Binds the sockets, creates the TUN device with its addresses and
    /// starts the workers.
    pub fn start(
        config: &UserspaceConfig,
        events: Option<&mpsc::Sender<DatapathEvent>>,
    ) -> anyhow::Result<(Arc<Self>, IkeOn4500)> {
        use anyhow::Context as _;
        let workers = config.workers.max(1);
        let bind = SocketAddrV4::new(config.local, config.port);
        let sockets = (0..workers)
            .map(|_| udp::bind_reuseport(bind, config.socket_buffer))
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("binding ESP-in-UDP and IKE on {bind}"))?;
        let (tun, netlink) = create_tun(config, workers)?;
        let ifindex = tun.ifindex();

        let (ike_tx, ike_rx) = mpsc::channel(1024);
        let ike_socket = sockets[0]
            .try_clone()
            .context("duplicating the UDP 4500 socket for IKE")?;
        let control_socket = sockets[0]
            .try_clone()
            .context("duplicating the UDP 4500 socket")?;
        let global = Arc::new(GlobalStats::default());
        let mut master = Master::default();
        master.set_local(&config.tun_addresses);
        let stop = Arc::new(AtomicBool::new(false));
        let size = buffer_size(config.tun_mtu);
        let mut handles = Vec::new();
        let mut wakers = Vec::new();
        for (i, (socket, queue)) in sockets.into_iter().zip(tun.into_queues()).enumerate() {
            let waker = Arc::new(Waker::new().context("creating an eventfd")?);
            wakers.push(waker.clone());
            let worker = worker::Worker {
                index: i,
                socket,
                tun: queue,
                waker,
                replica: master.follow(),
                stop: stop.clone(),
                processor: Processor::new(global.clone(), events.cloned()),
                ike: ike_tx.clone(),
                buffer_size: size,
            };
            let handle = std::thread::Builder::new()
                .name(format!("datapath-{i}"))
                .spawn(move || worker.run())
                .context("starting a datapath worker")?;
            handles.push(handle);
        }
        let master = Arc::new(Mutex::new(master));
        handles.push(
            Housekeeping {
                master: master.clone(),
                events: events.cloned(),
                global: global.clone(),
            }
            .spawn(stop.clone())
            .context("starting the datapath housekeeping thread")?,
        );
        tracing::info!(
            tun = %config.tun_name,
            address = %bind,
            workers,
            mtu = config.tun_mtu,
            "userspace datapath started (ESP-in-UDP, GRE, TUN)"
        );
        let dp = Arc::new(UserspaceDatapath {
            master,
            netlink: Mutex::new(netlink),
            tun_ifindex: ifindex,
            tun_name: config.tun_name.clone(),
            global: global.clone(),
            stop,
            wakers,
            workers: Mutex::new(handles),
            tun_addresses: Mutex::new(
                config
                    .tun_addresses
                    .iter()
                    .map(|a| (*a, usize::MAX / 2))
                    .collect(),
            ),
            control: Mutex::new((Processor::new(global, None), control_socket)),
            buffer_size: size,
        });
        Ok((
            dp,
            IkeOn4500 {
                rx: ike_rx,
                tx: ike_socket,
            },
        ))
    }

    pub fn tun_name(&self) -> &str {
        &self.tun_name
    }

    fn master(&self) -> std::sync::MutexGuard<'_, Master> {
        self.master.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn kernel_route(&self, prefix: crate::net::Ipv4Prefix, add: bool) -> Result<(), DatapathError> {
        let mut nl = self.netlink.lock().unwrap_or_else(PoisonError::into_inner);
        let result = if add {
            nl.replace_route(prefix.addr, prefix.len, self.tun_ifindex, None, None)
        } else {
            nl.del_route(prefix.addr, prefix.len, self.tun_ifindex)
        };
        result.map_err(|source| DatapathError::Os {
            what: format!(
                "{} kernel route {prefix} dev {}",
                if add { "adding" } else { "removing" },
                self.tun_name
            ),
            source,
        })
    }

    /// The interface's own address goes on the TUN device (a spoke's
    /// negotiated Tunnel1 address), once, while some interface uses it.
    fn hold_address(&self, address: Ipv4Addr, hold: bool) -> Result<(), DatapathError> {
        let mut held = self
            .tun_addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(address).or_insert(0);
        let mut nl = self.netlink.lock().unwrap_or_else(PoisonError::into_inner);
        if hold {
            *count += 1;
            if *count == 1 {
                nl.add_address(self.tun_ifindex, address, 32, None)
                    .map_err(|source| DatapathError::Os {
                        what: format!("adding {address}/32 to {}", self.tun_name),
                        source,
                    })?;
            }
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&address);
                nl.del_address(self.tun_ifindex, address, 32, None)
                    .map_err(|source| DatapathError::Os {
                        what: format!("removing {address}/32 from {}", self.tun_name),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// Stops the workers and removes the TUN device (its routes go with it).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        let handles =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for h in handles {
            // The housekeeping thread sleeps parked.
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for UserspaceDatapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Datapath for UserspaceDatapath {
    fn kind(&self) -> &'static str {
        "userspace"
    }

    fn create_virtual_access(&self, spec: &VirtualAccessSpec) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.create_va(spec)?;
        if let Err(e) = self.hold_address(spec.unnumbered, true) {
            let _ = m.remove_va(spec.id);
            return Err(e);
        }
        m.publish();
        Ok(())
    }

    fn remove_virtual_access(&self, id: VaId) -> Result<(), DatapathError> {
        let mut m = self.master();
        let address = m.spec(id).map(|s| s.unnumbered);
        let routes = m.remove_va(id)?;
        let still_routed: Vec<bool> = routes.iter().map(|r| m.is_routed(r.prefix)).collect();
        m.publish();
        drop(m);
        for (r, still) in routes.iter().zip(still_routed) {
            if !still {
                let _ = self.kernel_route(r.prefix, false);
            }
        }
        if let Some(a) = address {
            self.hold_address(a, false)?;
        }
        Ok(())
    }

    fn install_sa(&self, sa: &SaPair) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.install_sa(sa)?;
        m.publish();
        Ok(())
    }

    fn remove_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.remove_sa(va, spi_in)?;
        m.publish();
        Ok(())
    }

    fn retire_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.retire_sa(va, spi_in)?;
        m.publish();
        Ok(())
    }

    fn update_peer(&self, va: VaId, remote: std::net::SocketAddrV4) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.update_peer(va, remote)?;
        m.publish();
        Ok(())
    }

    fn add_route(&self, route: &Route) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.add_route(route)?;
        m.publish();
        drop(m);
        // The host's stack and LAN reach the spoke through the TUN device.
        self.kernel_route(route.prefix, true)
    }

    fn remove_route(&self, route: &Route) -> Result<(), DatapathError> {
        let mut m = self.master();
        m.remove_route(route)?;
        let still = m.is_routed(route.prefix);
        m.publish();
        drop(m);
        if still {
            return Ok(());
        }
        self.kernel_route(route.prefix, false)
    }

    fn lookup(&self, addr: Ipv4Addr) -> Option<Route> {
        let m = self.master();
        m.tables().fib.lookup(addr).map(|(prefix, va)| Route {
            prefix,
            va: va.spec.id,
            next_hop: None,
        })
    }

    fn send_nhrp(&self, va: VaId, packet: &[u8]) -> Result<(), DatapathError> {
        let to = self
            .master()
            .tables()
            .vas
            .get(&va)
            .cloned()
            .ok_or(DatapathError::NoSuchInterface(va))?;
        let mut buf = vec![0u8; self.buffer_size.max(packet.len() + HEADROOM + TAILROOM)];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        let (processor, socket) = &mut *control;
        match processor.encapsulate_nhrp(&to, &mut buf, packet.len()) {
            Encap::Send { packet, dest } => {
                socket
                    .send_to(&buf[packet], dest)
                    .map(|_| ())
                    .map_err(|source| DatapathError::Os {
                        what: format!("sending NHRP to {dest}"),
                        source,
                    })
            }
            _ => Err(DatapathError::Unsupported(format!(
                "{va} has no transport-mode (GRE) SA to carry NHRP"
            ))),
        }
    }

    fn report(&self) -> DatapathReport {
        let (virtual_access, sas) = self.master().counters();
        let mut global = GlobalCounters::default();
        self.global.fill(&mut global);
        DatapathReport {
            kind: self.kind().to_owned(),
            workers: self.wakers.len(),
            virtual_access,
            sas,
            global,
        }
    }
}
