//! From IKE sessions to datapath state: the part of IOS that clones a
//! Virtual-Access from the Virtual-Template when a spoke's CHILD_SA comes
//! up, puts the SAs on it and routes the spoke's pool address (and the
//! prefixes it announced) to it; and takes it all down in the reverse order.
//!
//! Control-plane glue: it depends on `ike` (what a CHILD_SA is, and the
//! [`SessionLayer`] it implements for the IKE task) and on the datapath
//! contract (`iface`); neither of them depends on it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
};

use crate::{
    config::{Unnumbered, VirtualTemplate},
    iface::{Datapath, DatapathError, Route, SaPair, VaId, VirtualAccessSpec},
    ike::{
        sa::ChildSaParams,
        task::{PeerActivity, SessionLayer},
    },
    ipsec::{Mode, SaKeys},
    net::Ipv4Prefix,
};

/// Used when a profile names no virtual template (IOS would build a
/// crypto-map style session; we still need an interface to route to).
const DEFAULT_MTU: u16 = 1400;

#[derive(Clone, Debug)]
struct Session {
    va: VaId,
    tunnel_id: u32,
    ike_spi: u64,
    /// Inbound SPIs of its SA pairs, oldest first: more than one while a
    /// rekey overlaps the old pair with the new (make-before-break).
    spis: Vec<u32>,
    /// The outbound SPI of the newest pair.
    spi_out: u32,
    /// The peer's outer address.
    remote: Ipv4Addr,
    /// We dialled the session (a spoke's shortcut tunnel), so the keys are
    /// the other way round and the IKE SA is not the responder engine's.
    initiated: bool,
    /// The interface and its routes are someone else's (a spoke's static
    /// tunnel, `attach`): only its SA pairs are ours to change.
    external: bool,
    routes: Vec<Route>,
    /// Inbound and outbound ESP packets counted when last looked at, per
    /// inbound SPI.
    seen: HashMap<u32, (u64, u64)>,
}

/// Told when routes come and go with the sessions (BGP closes the session
/// of a neighbor whose tunnel went down at once, and dials a neighbor
/// whose tunnel came up).
pub trait RouteWatch: Send + Sync {
    fn routes_added(&self, prefixes: &[Ipv4Prefix]);
    fn routes_removed(&self, prefixes: &[Ipv4Prefix]);
}

/// One per gateway; driven by the IKE task.
pub struct Sessions {
    watch: Option<Arc<dyn RouteWatch>>,
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
    /// Numbers from here up are unused; below it, `free` are (released by
    /// sessions that ended). IOS hands out the lowest free number.
    next_number: u32,
    /// Kept, not searched for: a scan of `by_va` costs milliseconds per
    /// new session with thousands up.
    free: BTreeSet<u32>,
}

impl Sessions {
    pub fn new(
        datapath: Arc<dyn Datapath>,
        templates: BTreeMap<u16, VirtualTemplate>,
        local_address: Ipv4Addr,
    ) -> Self {
        Sessions {
            watch: None,
            datapath,
            templates,
            local_address,
            tunnel_addresses: HashMap::new(),
            by_va: BTreeMap::new(),
            by_tunnel: HashMap::new(),
            next_number: 1,
            free: BTreeSet::new(),
        }
    }

    pub fn set_route_watch(&mut self, watch: Arc<dyn RouteWatch>) {
        self.watch = Some(watch);
    }

    pub fn datapath(&self) -> &Arc<dyn Datapath> {
        &self.datapath
    }

    /// A static tunnel's negotiated address (a spoke's Tunnel1), if up.
    pub fn tunnel_address(&self, tunnel: u16) -> Option<Ipv4Addr> {
        self.tunnel_addresses.get(&tunnel).copied()
    }

    pub fn set_tunnel_address(&mut self, tunnel: u16, address: Option<Ipv4Addr>) {
        match address {
            Some(a) => self.tunnel_addresses.insert(tunnel, a),
            None => self.tunnel_addresses.remove(&tunnel),
        };
    }

    fn free_number(&mut self) -> VaId {
        let n = self.free.pop_first().unwrap_or_else(|| {
            self.next_number += 1;
            self.next_number - 1
        });
        VaId::virtual_access(n)
    }

    /// `id`'s number is free again (its session ended or never came up).
    fn release_number(&mut self, id: VaId) {
        if id.tunnel_number().is_none() && id.raw() < self.next_number {
            self.free.insert(id.raw());
        }
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
        self.child_up_as(child, false)
    }

    /// The same for a session we dialled (a spoke's shortcut tunnel to
    /// another spoke): the initiator's keys protect what we send.
    pub fn child_up_initiated(&mut self, child: &ChildSaParams) -> Result<VaId, DatapathError> {
        self.child_up_as(child, true)
    }

    /// The tunnels to other NHRP stations: every session's virtual-access
    /// with the peer's outer address.
    pub fn peer_tunnels(&self) -> Vec<crate::iface::PeerTunnel> {
        self.by_va
            .values()
            .filter(|s| !s.external)
            .map(|s| crate::iface::PeerTunnel {
                va: s.va,
                nbma: s.remote,
                initiated: s.initiated,
            })
            .collect()
    }

    /// The responder engine's IKE SA behind `va`, if the session is one we
    /// accepted.
    pub fn accepted_ike_spi(&self, va: VaId) -> Option<u64> {
        self.by_va
            .get(&va)
            .filter(|s| !s.initiated)
            .map(|s| s.ike_spi)
    }

    fn child_up_as(
        &mut self,
        child: &ChildSaParams,
        initiated: bool,
    ) -> Result<VaId, DatapathError> {
        if let Some(va) = self.by_tunnel.get(&child.tunnel_id).copied() {
            return self.rekeyed(va, child);
        }
        let id = self.free_number();
        let spec = self.spec_for(id, child);
        if let Err(e) = self.datapath.create_virtual_access(&spec) {
            self.release_number(id);
            return Err(e);
        }
        if let Err(e) = self.datapath.install_sa(&sa_pair(id, child)) {
            let _ = self.datapath.remove_virtual_access(id);
            self.release_number(id);
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
        if let Some(watch) = &self.watch {
            let prefixes: Vec<Ipv4Prefix> = routes.iter().map(|r| r.prefix).collect();
            watch.routes_added(&prefixes);
        }
        self.by_tunnel.insert(child.tunnel_id, id);
        self.by_va.insert(
            id,
            Session {
                va: id,
                tunnel_id: child.tunnel_id,
                ike_spi: child.ike_spi,
                spis: vec![child.spi_in],
                spi_out: child.spi_out,
                remote: child.remote,
                initiated,
                external: false,
                routes,
                seen: HashMap::new(),
            },
        );
        Ok(id)
    }

    /// A CHILD_SA that rekeys one of the session on `va` (RFC 7296 section
    /// 1.3.3): its pair goes on the same interface beside the old one,
    /// which keeps decrypting until it is deleted.
    fn rekeyed(&mut self, va: VaId, child: &ChildSaParams) -> Result<VaId, DatapathError> {
        if child.replaces.is_none() {
            return Err(DatapathError::Unsupported(format!(
                "tunnel {} already has {va}, and the new CHILD_SA rekeys none of its SAs",
                child.tunnel_id
            )));
        }
        self.datapath.install_sa(&sa_pair(va, child))?;
        if let Some(session) = self.by_va.get_mut(&va) {
            session.spis.push(child.spi_in);
            session.spi_out = child.spi_out;
            session.ike_spi = child.ike_spi;
        }
        Ok(va)
    }

    /// A CHILD_SA a rekey replaced was deleted: the datapath stops sending
    /// on its pair (the successor takes over, even one installed with
    /// `defer_outbound`) and keeps decrypting with it until `child_down`.
    pub fn child_retired(&mut self, spi_in: u32) {
        let Some(session) = self.by_va.values().find(|s| s.spis.contains(&spi_in)) else {
            return;
        };
        let va = session.va;
        if let Err(e) = self.datapath.retire_sa(va, spi_in) {
            tracing::debug!(interface = %va, error = %e, "retiring an SA after its rekey failed (the datapath may have expired it)");
        }
    }

    /// A CHILD_SA went away. If a newer pair of the session is on the
    /// interface (a rekey) only this pair goes; with the last one, routes,
    /// SAs and the interface go, in the reverse order of `child_up`.
    pub fn child_down(&mut self, spi_in: u32) {
        let Some(session) = self.by_va.values_mut().find(|s| s.spis.contains(&spi_in)) else {
            return;
        };
        if session.spis.len() > 1 {
            session.spis.retain(|s| *s != spi_in);
            session.seen.remove(&spi_in);
            let va = session.va;
            if let Err(e) = self.datapath.remove_sa(va, spi_in) {
                tracing::debug!(interface = %va, error = %e, "SA removal after a rekey failed (the datapath may have expired it)");
            }
            return;
        }
        let id = session.va;
        self.remove(id);
    }

    /// A spoke's static tunnel (`TunnelN`), brought up by its dialler with
    /// its first SA pair: its rekeys and peer moves come through here like
    /// any session's, but the interface stays the dialler's.
    pub fn attach(&mut self, va: VaId, tunnel_id: u32, child: &ChildSaParams) {
        self.by_tunnel.insert(tunnel_id, va);
        self.by_va.insert(
            va,
            Session {
                va,
                tunnel_id,
                ike_spi: child.ike_spi,
                spis: vec![child.spi_in],
                spi_out: child.spi_out,
                remote: child.remote,
                initiated: true,
                external: true,
                routes: Vec::new(),
                seen: HashMap::new(),
            },
        );
    }

    /// The newest SA pair on `va` (inbound and outbound SPI).
    pub fn newest_pair(&self, va: VaId) -> Option<(u32, u32)> {
        let s = self.by_va.get(&va)?;
        Some((*s.spis.last()?, s.spi_out))
    }

    /// The inbound SPIs of the pairs on `va`, oldest first.
    pub fn spis_of(&self, va: VaId) -> Vec<u32> {
        self.by_va
            .get(&va)
            .map(|s| s.spis.clone())
            .unwrap_or_default()
    }

    /// The session's IKE SA is now the one with our SPI `ike_spi`.
    pub fn ike_rekeyed(&mut self, tunnel_id: u32, ike_spi: u64) {
        if let Some(s) = self
            .by_tunnel
            .get(&tunnel_id)
            .and_then(|va| self.by_va.get_mut(va))
        {
            s.ike_spi = ike_spi;
        }
    }

    /// The peer of `tunnel_id` moved to `remote` (NAT rebinding): its
    /// interface and SAs send there.
    pub fn peer_moved(
        &mut self,
        tunnel_id: u32,
        remote: SocketAddrV4,
    ) -> Result<(), DatapathError> {
        let Some(va) = self.by_tunnel.get(&tunnel_id).copied() else {
            return Ok(());
        };
        self.datapath.update_peer(va, remote)?;
        if let Some(s) = self.by_va.get_mut(&va) {
            s.remote = *remote.ip();
        }
        Ok(())
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
        if !session.external {
            self.release_number(id);
        }
        self.by_tunnel.remove(&session.tunnel_id);
        if session.external {
            // The dialler takes its interface down itself.
            return;
        }
        for route in session.routes.iter().rev() {
            if let Err(e) = self.datapath.remove_route(route) {
                tracing::warn!(prefix = %route.prefix, interface = %id, error = %e, "route removal failed");
            }
        }
        if let Some(watch) = &self.watch {
            let prefixes: Vec<Ipv4Prefix> = session.routes.iter().map(|r| r.prefix).collect();
            watch.routes_removed(&prefixes);
        }
        for spi in session.spis.iter().rev() {
            if let Err(e) = self.datapath.remove_sa(id, *spi) {
                tracing::warn!(interface = %id, error = %e, "SA removal failed");
            }
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

    /// IKE SAs whose peers sent us ESP since the last call (alive: dead
    /// peer detection need not ask them), and those we sent ESP to (for
    /// `on-demand` detection), from the datapath's per-SA counters.
    pub fn peer_activity(&mut self) -> PeerActivity {
        let report = self.datapath.report();
        let mut activity = PeerActivity::default();
        for sa in report.sas {
            if let Some(s) = self.by_va.get_mut(&VaId::from_raw(sa.va))
                && s.spis.contains(&sa.spi_in)
            {
                let seen = s.seen.entry(sa.spi_in).or_default();
                if sa.rx_packets > seen.0 {
                    seen.0 = sa.rx_packets;
                    activity.heard.push(s.ike_spi);
                }
                if sa.tx_packets > seen.1 {
                    seen.1 = sa.tx_packets;
                    activity.sent_to.push(s.ike_spi);
                }
            }
        }
        activity
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

/// The SA pair of `child` on `va`. Whoever initiated the exchange that
/// made the CHILD_SA protects what it sends with the initiator's keys (RFC
/// 7296 section 2.17).
fn sa_pair(va: VaId, child: &ChildSaParams) -> SaPair {
    let keys = &child.keys;
    let (initiator, responder) = (
        SaKeys {
            encr: keys.encr_i.clone(),
            integ: keys.integ_i.clone(),
        },
        SaKeys {
            encr: keys.encr_r.clone(),
            integ: keys.integ_r.clone(),
        },
    );
    let (ours, theirs) = if child.initiator {
        (initiator, responder)
    } else {
        (responder, initiator)
    };
    SaPair {
        va,
        spi_in: child.spi_in,
        spi_out: child.spi_out,
        encr: child.esp.encr,
        integ: child.esp.integ,
        inbound: theirs,
        outbound: ours,
        mode: child.mode,
        encap: child.encap,
        local: child.local,
        remote: child.remote,
        esn: child.esp.esn,
        lifetime: child.lifetime,
        defer_outbound: child.replaces.is_some() && !child.initiator,
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

impl SessionLayer for Sessions {
    fn child_up(&mut self, child: &ChildSaParams) -> Result<(), String> {
        Sessions::child_up(self, child)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn child_down(&mut self, spi_in: u32) {
        Sessions::child_down(self, spi_in);
    }

    fn child_retired(&mut self, spi_in: u32) {
        Sessions::child_retired(self, spi_in);
    }

    fn session_down(&mut self, tunnel_id: u32) {
        Sessions::session_down(self, tunnel_id);
    }

    fn peer_activity(&mut self) -> PeerActivity {
        Sessions::peer_activity(self)
    }

    fn ike_rekeyed(&mut self, tunnel_id: u32, ike_spi: u64) {
        Sessions::ike_rekeyed(self, tunnel_id, ike_spi);
    }

    fn peer_moved(&mut self, tunnel_id: u32, remote: SocketAddrV4) -> Result<(), String> {
        Sessions::peer_moved(self, tunnel_id, remote).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{
        datapath::fake::{Call, RecordingDatapath},
        ike::{
            sa::Action,
            tests::{MemPools, dial, hub, hub_config, spoke},
        },
    };

    /// A real ChildUp from the hub engine: spoke 1 in GRE transport mode,
    /// asking for an address and announcing its LAN.
    fn child_from_hub() -> ChildSaParams {
        let mut engine = hub("route_accept = true").with_forced_encapsulation(true);
        let mut pools = MemPools::default();
        pools.size = 10;
        let mut config = spoke("aes256-sha256-x25519", "aes256gcm16", Mode::Transport);
        config.request_address = true;
        config.route_set = vec!["192.168.1.0/24".parse().unwrap()];
        let (result, actions) = dial(&mut engine, &mut pools, config, 5);
        result.unwrap();
        actions
            .into_iter()
            .find_map(|a| match a {
                Action::ChildUp(c) => Some(c),
                _ => None,
            })
            .unwrap()
    }

    fn sessions(dp: &Arc<RecordingDatapath>) -> Sessions {
        let config = hub_config("");
        Sessions::new(
            dp.clone(),
            config.virtual_template.clone(),
            config.hub.local_address,
        )
    }

    #[test]
    fn a_session_clones_a_virtual_access_installs_its_sas_and_routes_and_undoes_them_in_reverse() {
        let dp = Arc::new(RecordingDatapath::new());
        let mut s = sessions(&dp);
        let child = child_from_hub();
        let va = s.child_up(&child).unwrap();
        assert_eq!(va, VaId::virtual_access(1));
        assert_eq!(
            dp.take_calls(),
            vec![
                Call::CreateVa(VaId::virtual_access(1)),
                Call::InstallSa {
                    va: VaId::virtual_access(1),
                    spi_in: child.spi_in,
                    spi_out: child.spi_out
                },
                Call::AddRoute("10.1.1.100/32 Virtual-Access1".into()),
                Call::AddRoute("192.168.1.0/24 Virtual-Access1".into()),
            ]
        );
        let spec = &dp.interfaces()[0];
        assert_eq!(spec.name, "Virtual-Access1");
        assert_eq!(
            spec.unnumbered,
            Ipv4Addr::new(10, 1, 1, 1),
            "the template's"
        );
        assert_eq!(spec.mtu, 1400);
        assert_eq!(spec.peer_inner, Some(Ipv4Addr::new(10, 1, 1, 100)));
        assert_eq!(spec.remote_outer.port(), 4500, "ESP in UDP");
        // The hub is the responder: it receives with the initiator's keys.
        let sa = dp.sa(child.spi_in).unwrap();
        assert_eq!(*sa.inbound.encr, *child.keys.encr_i);
        assert_eq!(*sa.outbound.encr, *child.keys.encr_r);

        s.child_down(child.spi_in);
        assert_eq!(
            dp.take_calls(),
            vec![
                Call::RemoveRoute("192.168.1.0/24 Virtual-Access1".into()),
                Call::RemoveRoute("10.1.1.100/32 Virtual-Access1".into()),
                Call::RemoveSa {
                    va: VaId::virtual_access(1),
                    spi_in: child.spi_in
                },
                Call::RemoveVa(VaId::virtual_access(1)),
            ]
        );
        assert!(s.is_empty() && dp.routes().is_empty());
    }

    #[test]
    fn a_dialled_shortcut_sends_with_the_initiators_keys_and_is_listed_as_ours() {
        let dp = Arc::new(RecordingDatapath::new());
        let mut s = sessions(&dp);
        let accepted = child_from_hub();
        let mut dialled = child_from_hub();
        dialled.spi_in ^= 0x0101;
        dialled.tunnel_id += 100;
        dialled.remote = Ipv4Addr::new(172, 25, 1, 12);
        dialled.initiator = true;
        let a = s.child_up(&accepted).unwrap();
        let d = s.child_up_initiated(&dialled).unwrap();
        let sa = dp.sa(dialled.spi_in).unwrap();
        assert_eq!(*sa.outbound.encr, *dialled.keys.encr_i);
        assert_eq!(*sa.inbound.encr, *dialled.keys.encr_r);
        assert_eq!(*sa.outbound.integ, *dialled.keys.integ_i);
        let tunnels = s.peer_tunnels();
        assert_eq!(tunnels.len(), 2);
        assert!(tunnels.contains(&crate::iface::PeerTunnel {
            va: d,
            nbma: Ipv4Addr::new(172, 25, 1, 12),
            initiated: true
        }));
        assert_eq!(s.accepted_ike_spi(a), Some(accepted.ike_spi));
        assert_eq!(s.accepted_ike_spi(d), None, "ours is not the engine's");
    }

    #[test]
    fn numbers_are_reused_lowest_first_and_a_session_end_removes_what_is_left() {
        let dp = Arc::new(RecordingDatapath::new());
        let mut s = sessions(&dp);
        let mut children = Vec::new();
        for n in 0..3u32 {
            let mut c = child_from_hub();
            c.tunnel_id = 10 + n;
            c.spi_in = 0x1000 + n;
            c.peer_inner = Some(Ipv4Addr::new(10, 1, 1, 100 + u8::try_from(n).unwrap()));
            c.peer_routes.clear();
            assert_eq!(s.child_up(&c).unwrap(), VaId::virtual_access(n + 1));
            children.push(c);
        }
        s.session_down(children[0].tunnel_id);
        assert_eq!(s.interface_of_tunnel(children[0].tunnel_id), None);
        let mut c = child_from_hub();
        c.tunnel_id = 99;
        c.spi_in = 0x2000;
        c.peer_inner = Some(Ipv4Addr::new(10, 1, 1, 120));
        c.peer_routes.clear();
        assert_eq!(
            s.child_up(&c).unwrap(),
            VaId::virtual_access(1),
            "IOS reuses the lowest free number"
        );
        // Two holes: the lower first, then the other, then new numbers.
        s.session_down(children[2].tunnel_id);
        s.session_down(children[1].tunnel_id);
        for (n, want) in [(100u32, 2u32), (101, 3), (102, 4)] {
            c.tunnel_id = n;
            c.spi_in = 0x3000 + n;
            c.peer_inner = Some(Ipv4Addr::new(10, 1, 2, u8::try_from(n).unwrap()));
            assert_eq!(s.child_up(&c).unwrap(), VaId::virtual_access(want));
        }
        s.clear();
        assert!(dp.interfaces().is_empty());
    }

    #[test]
    fn a_refused_sa_leaves_no_interface_behind() {
        let dp = Arc::new(RecordingDatapath::new());
        let mut s = sessions(&dp);
        let child = child_from_hub();
        s.child_up(&child).unwrap();
        let mut second = child.clone();
        second.tunnel_id += 1;
        // The same inbound SPI twice: the datapath refuses the SA.
        let err = s.child_up(&second).unwrap_err();
        assert!(matches!(err, DatapathError::SpiInUse(_)), "{err}");
        assert_eq!(dp.interfaces().len(), 1);
        assert_eq!(s.len(), 1);
        // Its number was not used up.
        second.spi_in += 1;
        assert_eq!(s.child_up(&second).unwrap(), VaId::virtual_access(2));
    }

    #[test]
    fn a_rekeyed_child_sa_goes_on_the_same_interface_and_the_old_pair_alone_goes_later() {
        let dp = Arc::new(RecordingDatapath::new());
        let mut s = sessions(&dp);
        let child = child_from_hub();
        let va = s.child_up(&child).unwrap();
        dp.take_calls();
        let mut new = child.clone();
        new.spi_in ^= 0x00ff_0000;
        new.spi_out ^= 0x00ff_0000;
        new.replaces = Some(child.spi_in);
        assert_eq!(s.child_up(&new).unwrap(), va, "the same interface");
        s.child_retired(child.spi_in);
        s.child_down(child.spi_in);
        assert_eq!(
            dp.take_calls(),
            vec![
                Call::InstallSa {
                    va,
                    spi_in: new.spi_in,
                    spi_out: new.spi_out
                },
                Call::RetireSa {
                    va,
                    spi_in: child.spi_in
                },
                Call::RemoveSa {
                    va,
                    spi_in: child.spi_in
                },
            ],
            "make-before-break: the routes and the interface stay"
        );
        // A second CHILD_SA that rekeys nothing is refused.
        let mut stray = new.clone();
        stray.spi_in ^= 0x1;
        stray.replaces = None;
        assert!(s.child_up(&stray).is_err());
        // The peer moves: the datapath follows.
        let to = SocketAddrV4::new(child.remote, 40_000);
        s.peer_moved(child.tunnel_id, to).unwrap();
        assert_eq!(dp.take_calls(), vec![Call::UpdatePeer { va, remote: to }]);
        s.child_down(new.spi_in);
        assert!(
            dp.interfaces().is_empty(),
            "the last pair takes the session"
        );
    }

    #[test]
    fn traffic_selectors_give_exact_prefixes_only() {
        assert_eq!(
            ts_prefix(Ipv4Addr::new(10, 1, 2, 0), Ipv4Addr::new(10, 1, 2, 255)),
            Some("10.1.2.0/24".parse().unwrap())
        );
        assert_eq!(
            ts_prefix(Ipv4Addr::new(10, 1, 2, 7), Ipv4Addr::new(10, 1, 2, 7)),
            Some("10.1.2.7/32".parse().unwrap())
        );
        assert_eq!(
            ts_prefix(Ipv4Addr::new(10, 1, 2, 1), Ipv4Addr::new(10, 1, 2, 3)),
            None
        );
        assert_eq!(
            ts_prefix(Ipv4Addr::new(10, 1, 2, 9), Ipv4Addr::new(10, 1, 2, 1)),
            None
        );
    }
}
