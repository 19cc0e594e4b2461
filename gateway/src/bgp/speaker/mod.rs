//! The BGP speaker: the instance (the neighbor table, the RIB and the
//! task that changes them, `instance`), the listener on TCP 179 that
//! accepts dynamic neighbors from the listen ranges (IOS `bgp listen
//! range`, `listener`), a session task per neighbor (`super::session`),
//! the forwarding tables the best routes go into (`fib`), the scan of the
//! kernel's routing table for `network` and `redistribute` (`scan`), and
//! each round's UPDATEs encoded once and shared out to the peers
//! (`round`).
//!
//! Everything reaches the instance as an event on one channel
//! (`super::events`): the sessions' coming and going and their UPDATEs,
//! accepted connections, routes that come and go with the tunnels, the
//! table scans. The instance answers a session on that session's own
//! channels. [`Speaker`] is the handle the rest of the gateway holds.

mod fib;
mod instance;
mod listener;
mod round;
mod scan;
#[cfg(test)]
mod tests;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Context as _;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    events::Event,
    show::{Summary, TableView},
};
use crate::{
    config,
    iface::Datapath,
    net::{BGP_PORT, Ipv4Prefix},
    sys::netlink::Netlink,
};
use fib::Fib;
use instance::{Instance, lock};

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

/// The running speaker: a handle on the instance.
pub struct Speaker {
    config: SpeakerConfig,
    /// Where the listener is bound (the port the system chose for port 0).
    bound: SocketAddrV4,
    /// The instance's event channel.
    events: mpsc::UnboundedSender<Event>,
    /// The instance's tables, read for `show` (see `instance`).
    instance: Arc<Mutex<Instance>>,
}

/// The speaker's tasks, to stop them.
pub struct SpeakerTasks {
    instance: JoinHandle<()>,
    listener: JoinHandle<()>,
    scanner: Option<JoinHandle<()>>,
}

impl Speaker {
    /// Binds the listener, starts the instance, the static neighbors and
    /// (when configured) the routing-table scan. `datapath`: where learned
    /// routes go (none: the RIB only, for tests and benchmarks).
    pub fn start(
        config: SpeakerConfig,
        datapath: Option<Arc<dyn Datapath>>,
    ) -> anyhow::Result<(Arc<Speaker>, SpeakerTasks)> {
        let open_netlink =
            || Netlink::open().context("BGP: opening rtnetlink for the routing table");
        let install = config.bgp.install_routes;
        let fib_netlink = if install && (datapath.is_some() || config.scan_kernel_table) {
            Some(open_netlink()?)
        } else {
            None
        };
        let scan_netlink = if config.scan_kernel_table {
            Some(open_netlink()?)
        } else {
            None
        };
        let (listener, bound) = listener::bind(&config)?;
        let (events, rx) = mpsc::unbounded_channel();
        let instance = Arc::new(Mutex::new(Instance::new(config.clone(), events.clone())));
        tracing::info!(
            asn = config.bgp.asn,
            router_id = %config.router_id,
            listen = %bound,
            ranges = config.bgp.listen_range.len(),
            neighbors = config.bgp.neighbor.len(),
            "BGP speaker started"
        );
        lock(&instance).start_statics()?;
        let instance_task = tokio::spawn(instance::run(
            instance.clone(),
            rx,
            Fib::new(datapath, fib_netlink, install),
        ));
        let scanner = scan_netlink.map(|nl| tokio::spawn(scan::scan_loop(nl, events.clone())));
        let accept = tokio::spawn(listener::accept_loop(listener, events.clone()));
        Ok((
            Arc::new(Speaker {
                config,
                bound,
                events,
                instance,
            }),
            SpeakerTasks {
                instance: instance_task,
                listener: accept,
                scanner,
            },
        ))
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

    fn tell(&self, event: Event) {
        // The instance is gone only after `shutdown`.
        let _ = self.events.send(event);
    }

    /// Routes went away from the forwarding tables (a spoke's IKE session
    /// ended and its virtual-access with them, or a spoke's tunnel to the
    /// hub went down): the sessions to neighbors inside them end now, not
    /// after the hold time, and their routes are withdrawn.
    pub fn routes_removed(&self, prefixes: &[Ipv4Prefix]) {
        self.tell(Event::RoutesRemoved(prefixes.to_vec()));
    }

    /// Routes appeared (a tunnel came up): static neighbors they reach dial
    /// now instead of waiting for their retry timer.
    pub fn routes_added(&self, prefixes: &[Ipv4Prefix]) {
        self.tell(Event::RoutesAdded(prefixes.to_vec()));
    }

    /// Sets which prefixes the routing table has (for `network`).
    pub fn set_routes_present(&self, prefixes: impl IntoIterator<Item = Ipv4Prefix>) {
        self.tell(Event::RoutesPresent(prefixes.into_iter().collect()));
    }

    /// `show bgp summary`.
    pub fn summary(&self) -> Summary {
        lock(&self.instance).summary(Instant::now())
    }

    /// `show bgp`.
    pub fn table(&self) -> TableView {
        lock(&self.instance).table()
    }

    /// The number of neighbors Established (for tests and benchmarks).
    pub fn established_count(&self) -> usize {
        lock(&self.instance).established_count()
    }

    /// The best paths' prefixes in the Loc-RIB (for tests and benchmarks).
    pub fn prefix_count(&self) -> usize {
        lock(&self.instance).prefix_count()
    }

    /// Stops every session with a Cease (IOS on shutdown) and the tasks,
    /// and removes the routes it installed.
    pub async fn shutdown(self: &Arc<Self>, tasks: SpeakerTasks) {
        tasks.listener.abort();
        if let Some(s) = tasks.scanner {
            s.abort();
        }
        self.tell(Event::Stop);
        // The instance ends once its sessions have (or after a grace
        // period), with the routes it installed removed.
        let _ = tasks.instance.await;
        tracing::info!("BGP speaker stopped");
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
