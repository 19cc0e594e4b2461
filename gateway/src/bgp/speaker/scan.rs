//! The routing-table scan: `network P` is advertised while the kernel's
//! main table has P exactly, and `redistribute connected|static` takes the
//! table's connected and static routes. A task reads the table and sends
//! it to the instance, which leaves out the routes BGP itself installed
//! and tells the RIB when the facts change.

use std::{collections::BTreeSet, time::Duration};

use tokio::sync::mpsc;

use crate::{
    bgp::events::Event,
    config,
    net::Ipv4Prefix,
    sys::netlink::{KernelRoute, KernelRouteKind, Netlink},
};

/// How often the kernel's routing table is read for `network` and
/// `redistribute` (IOS re-checks its RIB on its scan timer, 60 s; a hub's
/// connected routes rarely change, this is cheap).
const TABLE_SCAN: Duration = Duration::from_secs(2);

/// Reads the kernel's main table every [`TABLE_SCAN`] and sends it to the
/// instance, until the instance is gone.
pub(super) async fn scan_loop(mut netlink: Netlink, events: mpsc::UnboundedSender<Event>) {
    let mut warned = false;
    loop {
        match netlink.dump_routes() {
            Ok(routes) => {
                if events.send(Event::KernelRoutes(routes)).is_err() {
                    return;
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

/// What the routing table says for origination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TableFacts {
    /// Every prefix with a route (`network` needs an exact match).
    pub(super) present: BTreeSet<Ipv4Prefix>,
    /// The connected and static routes `redistribute` asks for.
    pub(super) redistributed: BTreeSet<Ipv4Prefix>,
}

/// The facts of `routes` (the kernel's, less BGP's own).
pub(super) fn table_facts<'a>(
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
