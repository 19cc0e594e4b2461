//! From IKE sessions to datapath state: the part of IOS that clones a
//! Virtual-Access from the Virtual-Template when a spoke's CHILD_SA comes
//! up, puts the SAs on it and routes the spoke's pool address (and the
//! prefixes it announced) to it; and takes it all down in the reverse order.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
};

use crate::{
    config::{Ipv4Prefix, Unnumbered, VirtualTemplate},
    datapath::{Datapath, DatapathError, Route, SaKeys, SaPair, VaId, VirtualAccessSpec},
    ike::engine::{ChildSaParams, Mode},
};

/// Used when a profile names no virtual template (IOS would build a
/// crypto-map style session; we still need an interface to route to).
const DEFAULT_MTU: u16 = 1400;

#[derive(Clone, Debug)]
struct Session {
    va: VaId,
    tunnel_id: u32,
    spi_in: u32,
    routes: Vec<Route>,
}

/// One per gateway; driven by the IKE task.
pub struct Sessions {
    datapath: Arc<dyn Datapath>,
    templates: BTreeMap<u16, VirtualTemplate>,
    /// This box's tunnel source: the unnumbered address when there is no
    /// template.
    local_address: Ipv4Addr,
    /// Addresses of static tunnels (a spoke's Tunnel1, negotiated), for
    /// templates that are `unnumbered = "TunnelN"`.
    tunnel_addresses: HashMap<u16, Ipv4Addr>,
    by_va: BTreeMap<VaId, Session>,
    by_tunnel: HashMap<u32, VaId>,
    /// Numbers below this that are not in `by_va` are free again; IOS hands
    /// out the lowest free Virtual-Access number.
    next_number: u32,
}

impl Sessions {
    pub fn new(
        datapath: Arc<dyn Datapath>,
        templates: BTreeMap<u16, VirtualTemplate>,
        local_address: Ipv4Addr,
    ) -> Self {
        Sessions {
            datapath,
            templates,
            local_address,
            tunnel_addresses: HashMap::new(),
            by_va: BTreeMap::new(),
            by_tunnel: HashMap::new(),
            next_number: 1,
        }
    }

    pub fn datapath(&self) -> &Arc<dyn Datapath> {
        &self.datapath
    }

    pub fn set_tunnel_address(&mut self, tunnel: u16, address: Option<Ipv4Addr>) {
        match address {
            Some(a) => self.tunnel_addresses.insert(tunnel, a),
            None => self.tunnel_addresses.remove(&tunnel),
        };
    }

    fn free_number(&mut self) -> VaId {
        let used = |n: u32| self.by_va.contains_key(&VaId(n));
        let n = (1..self.next_number)
            .find(|n| !used(*n))
            .unwrap_or(self.next_number);
        if n == self.next_number {
            self.next_number += 1;
        }
        VaId(n)
    }

    fn spec_for(&self, id: VaId, child: &ChildSaParams) -> VirtualAccessSpec {
        let template = child
            .virtual_template
            .and_then(|n| self.templates.get(&n).map(|t| (n, t)));
        let (unnumbered, mtu, mss, nhrp) = match template {
            Some((_, t)) => (
                match t.unnumbered {
                    Unnumbered::Address(a) => a,
                    Unnumbered::Tunnel(n) => self
                        .tunnel_addresses
                        .get(&n)
                        .copied()
                        .unwrap_or(self.local_address),
                },
                t.mtu,
                t.tcp_adjust_mss,
                t.nhrp_network_id,
            ),
            None => (self.local_address, DEFAULT_MTU, None, None),
        };
        let (local_port, remote_port) = child.encap.unwrap_or((0, 0));
        VirtualAccessSpec {
            id,
            name: id.to_string(),
            template: template.map(|(n, _)| n),
            unnumbered,
            mtu,
            tcp_adjust_mss: mss,
            nhrp_network_id: nhrp,
            peer_inner: child.peer_inner,
            local_outer: SocketAddrV4::new(child.local, local_port),
            remote_outer: SocketAddrV4::new(child.remote, remote_port),
        }
    }

    /// Routes for a new session: the pool address, what the spoke
    /// announced (IOS `route accept any`), and for a tunnel-mode peer
    /// without a pool address its traffic selectors.
    fn routes_for(va: VaId, child: &ChildSaParams) -> Vec<Route> {
        let mut prefixes: Vec<Ipv4Prefix> = Vec::new();
        if let Some(a) = child.peer_inner {
            prefixes.push(Ipv4Prefix { addr: a, len: 32 });
        }
        prefixes.extend(child.peer_routes.iter().copied());
        if child.peer_inner.is_none() && child.mode == Mode::Tunnel {
            prefixes.extend(
                child
                    .ts_remote
                    .iter()
                    .filter_map(|ts| {
                        let start: [u8; 4] = ts.start_addr.as_slice().try_into().ok()?;
                        let end: [u8; 4] = ts.end_addr.as_slice().try_into().ok()?;
                        ts_prefix(start.into(), end.into())
                    })
                    .filter(|p| p.len > 0),
            );
        }
        prefixes.sort();
        prefixes.dedup();
        prefixes
            .into_iter()
            .map(|prefix| Route {
                prefix,
                va,
                next_hop: None,
            })
            .collect()
    }

    /// A CHILD_SA is up: clone the virtual-access, install the SAs, add the
    /// routes. On failure whatever was done is undone.
    pub fn child_up(&mut self, child: &ChildSaParams) -> Result<VaId, DatapathError> {
        if let Some(va) = self.by_tunnel.get(&child.tunnel_id) {
            return Err(DatapathError::Unsupported(format!(
                "tunnel {} already has {va}; a second CHILD_SA per session needs rekeying support",
                child.tunnel_id
            )));
        }
        let id = self.free_number();
        let spec = self.spec_for(id, child);
        self.datapath.create_virtual_access(&spec)?;
        let sa = SaPair {
            va: id,
            spi_in: child.spi_in,
            spi_out: child.spi_out,
            encr: child.esp.encr,
            integ: child.esp.integ,
            // The hub is the responder: the initiator's keys protect what
            // it receives (RFC 7296 section 2.17).
            inbound: SaKeys {
                encr: child.keys.encr_i.clone(),
                integ: child.keys.integ_i.clone(),
            },
            outbound: SaKeys {
                encr: child.keys.encr_r.clone(),
                integ: child.keys.integ_r.clone(),
            },
            mode: child.mode,
            encap: child.encap,
            local: child.local,
            remote: child.remote,
        };
        if let Err(e) = self.datapath.install_sa(&sa) {
            let _ = self.datapath.remove_virtual_access(id);
            return Err(e);
        }
        let mut routes = Vec::new();
        for route in Self::routes_for(id, child) {
            match self.datapath.add_route(&route) {
                Ok(()) => routes.push(route),
                Err(e) => tracing::warn!(
                    prefix = %route.prefix, interface = %id, error = %e,
                    "route not installed"
                ),
            }
        }
        tracing::info!(
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface {id}, changed state to up \
             (peer {}, inner {}, routes {})",
            spec.remote_outer,
            child
                .peer_inner
                .map_or_else(|| "none".to_owned(), |a| a.to_string()),
            routes
                .iter()
                .map(|r| r.prefix.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.by_tunnel.insert(child.tunnel_id, id);
        self.by_va.insert(
            id,
            Session {
                va: id,
                tunnel_id: child.tunnel_id,
                spi_in: child.spi_in,
                routes,
            },
        );
        Ok(id)
    }

    /// A CHILD_SA went away: routes, SAs and the interface go, in the
    /// reverse order of `child_up`.
    pub fn child_down(&mut self, spi_in: u32) {
        let Some(id) = self
            .by_va
            .values()
            .find(|s| s.spi_in == spi_in)
            .map(|s| s.va)
        else {
            return;
        };
        self.remove(id);
    }

    /// The IKE session ended; anything still up for it goes.
    pub fn session_down(&mut self, tunnel_id: u32) {
        if let Some(id) = self.by_tunnel.get(&tunnel_id).copied() {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: VaId) {
        let Some(session) = self.by_va.remove(&id) else {
            return;
        };
        self.by_tunnel.remove(&session.tunnel_id);
        for route in session.routes.iter().rev() {
            if let Err(e) = self.datapath.remove_route(route) {
                tracing::warn!(prefix = %route.prefix, interface = %id, error = %e, "route removal failed");
            }
        }
        if let Err(e) = self.datapath.remove_sa(id, session.spi_in) {
            tracing::warn!(interface = %id, error = %e, "SA removal failed");
        }
        if let Err(e) = self.datapath.remove_virtual_access(id) {
            tracing::warn!(interface = %id, error = %e, "interface removal failed");
        }
        tracing::info!(
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface {id}, changed state to down"
        );
    }

    /// Everything down (the gateway stops).
    pub fn clear(&mut self) {
        let ids: Vec<VaId> = self.by_va.keys().copied().collect();
        for id in ids.into_iter().rev() {
            self.remove(id);
        }
    }

    pub fn interface_of_tunnel(&self, tunnel_id: u32) -> Option<VaId> {
        self.by_tunnel.get(&tunnel_id).copied()
    }

    pub fn len(&self) -> usize {
        self.by_va.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_va.is_empty()
    }
}

/// The prefix a traffic selector range is, if it is exactly one.
fn ts_prefix(start: Ipv4Addr, end: Ipv4Addr) -> Option<Ipv4Prefix> {
    let (s, e) = (u32::from(start), u32::from(end));
    let span = e.checked_sub(s)?;
    let size = u64::from(span) + 1;
    if !size.is_power_of_two() {
        return None;
    }
    let len = 32 - u8::try_from(size.trailing_zeros()).ok()?;
    Ipv4Prefix::new(start, len)
}
