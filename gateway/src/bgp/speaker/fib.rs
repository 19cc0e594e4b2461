//! What the RIB's best routes become in the forwarding tables. A learned
//! route goes into the datapath via the virtual-access that reaches its
//! next hop (a spoke's pool address is a /32 on its virtual-access; on a
//! spoke, the hub's tunnel address is routed into Tunnel1), and from there
//! into the kernel. A next hop no virtual-access reaches (the inter-hub
//! neighbor on the LAN) is handed to the kernel as a gateway route. An
//! aggregate whose own path is best goes in as a blackhole (IOS: the
//! summary to Null0). With `install_routes = false` nothing goes anywhere.

use std::{collections::HashMap, net::Ipv4Addr, sync::Arc};

use crate::{
    bgp::rib::{FibChange, FibRoute},
    iface::{Datapath, DatapathError, Route},
    net::Ipv4Prefix,
    sys::netlink::Netlink,
};

/// What was put in a forwarding table, to undo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Installed {
    Datapath(Route),
    KernelGateway(Ipv4Addr),
    Blackhole,
}

/// The forwarding tables as BGP programs them; owned by the instance's
/// task.
pub(super) struct Fib {
    /// Where learned routes go (none: the RIB only, for tests and
    /// benchmarks).
    datapath: Option<Arc<dyn Datapath>>,
    /// The kernel's routing table, for gateway routes and blackholes.
    netlink: Option<Netlink>,
    /// What this speaker installed: not "in the routing table" for
    /// `network` (IOS: BGP's own routes do not back a `network`).
    installed: HashMap<Ipv4Prefix, Installed>,
    /// `[bgp] install_routes`.
    enabled: bool,
}

impl Fib {
    pub(super) fn new(
        datapath: Option<Arc<dyn Datapath>>,
        netlink: Option<Netlink>,
        enabled: bool,
    ) -> Self {
        Fib {
            datapath,
            netlink,
            installed: HashMap::new(),
            enabled,
        }
    }

    /// Whether this speaker installed a route for `prefix`.
    pub(super) fn is_installed(&self, prefix: Ipv4Prefix) -> bool {
        self.installed.contains_key(&prefix)
    }

    /// Carries out one change the RIB asked for.
    pub(super) fn apply(&mut self, change: FibChange) {
        if !self.enabled {
            return;
        }
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
        if let Some(old) = self.installed.remove(&prefix) {
            if wanted == Some(Some(old)) {
                self.installed.insert(prefix, old);
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
            self.installed.insert(prefix, what);
        }
    }

    /// Removes every route this speaker installed (it stops).
    pub(super) fn remove_all(&mut self) {
        let installed: Vec<(Ipv4Prefix, Installed)> = self.installed.drain().collect();
        for (prefix, what) in installed {
            self.uninstall(prefix, what);
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

    fn install(&mut self, prefix: Ipv4Prefix, what: Installed) -> bool {
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

    fn uninstall(&mut self, prefix: Ipv4Prefix, what: Installed) {
        let result = match what {
            // The virtual-access may be gone already, and its routes with it.
            Installed::Datapath(route) => match &self.datapath {
                Some(dp) => match dp.remove_route(&route) {
                    Err(DatapathError::NoSuchRoute(_)) | Ok(()) => Ok(()),
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
        &mut self,
        f: impl FnOnce(&mut Netlink) -> std::io::Result<()>,
    ) -> Result<(), String> {
        match &mut self.netlink {
            Some(nl) => f(nl).map_err(|e| e.to_string()),
            None => Err("no kernel routing table in this run".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddrV4;

    use super::*;
    use crate::{
        bgp::rib::PeerId,
        datapath::fake::RecordingDatapath,
        iface::{VaId, VirtualAccessSpec},
    };

    /// A datapath with Virtual-Access1 reaching the spoke 10.1.1.105.
    fn datapath() -> Arc<RecordingDatapath> {
        let dp = Arc::new(RecordingDatapath::new());
        let va = VaId::virtual_access(1);
        let outer = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 1), 4500);
        dp.create_virtual_access(&VirtualAccessSpec {
            id: va,
            name: "Virtual-Access1".into(),
            template: Some(1),
            unnumbered: Ipv4Addr::new(10, 1, 1, 1),
            mtu: 1400,
            tcp_adjust_mss: None,
            nhrp_network_id: None,
            peer_inner: None,
            local_outer: outer,
            remote_outer: outer,
        })
        .unwrap();
        let spoke = Ipv4Prefix::new(Ipv4Addr::new(10, 1, 1, 105), 32).unwrap();
        dp.add_route(&Route {
            prefix: spoke,
            va,
            next_hop: None,
        })
        .unwrap();
        dp
    }

    fn learned() -> FibChange {
        FibChange::Install {
            prefix: Ipv4Prefix::new(Ipv4Addr::new(192, 168, 5, 0), 24).unwrap(),
            route: FibRoute::Forward {
                next_hop: Ipv4Addr::new(10, 1, 1, 105),
                peer: PeerId(1),
            },
        }
    }

    #[test]
    fn learned_routes_go_via_the_virtual_access_of_their_next_hop() {
        let dp = datapath();
        let mut fib = Fib::new(Some(dp.clone()), None, true);
        fib.apply(learned());
        assert!(
            dp.routes()
                .contains(&"192.168.5.0/24 via 10.1.1.105 Virtual-Access1".to_owned()),
            "{:?}",
            dp.routes()
        );
    }

    /// `install_routes = false`: a reflector outside the forwarding path
    /// (and the BGP scale lab, whose next hops the kernel cannot reach).
    #[test]
    fn with_install_routes_off_nothing_is_installed() {
        let dp = datapath();
        let mut fib = Fib::new(Some(dp.clone()), None, false);
        fib.apply(learned());
        fib.apply(FibChange::Install {
            prefix: Ipv4Prefix::new(Ipv4Addr::new(192, 168, 0, 0), 16).unwrap(),
            route: FibRoute::Discard,
        });
        assert_eq!(dp.routes(), ["10.1.1.105/32 Virtual-Access1"]);
        assert!(!fib.is_installed(Ipv4Prefix::new(Ipv4Addr::new(192, 168, 5, 0), 24).unwrap()));
    }
}
