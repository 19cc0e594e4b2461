//! A datapath that records what the control plane asked of it and keeps the
//! resulting state, and refuses what a real one would refuse (a second
//! interface with the same number, an SA on a missing interface, a route to
//! nowhere), so control-plane tests see the same errors.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddrV4,
    sync::{Mutex, PoisonError},
};

use gateway_report::interfaces::{DatapathReport, GlobalCounters, SaCounters, VaCounters};

use super::fib::Fib;
use crate::iface::{Datapath, DatapathError, Route, SaPair, VaId, VirtualAccessSpec};

/// One call, in the order it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    CreateVa(VaId),
    RemoveVa(VaId),
    InstallSa { va: VaId, spi_in: u32, spi_out: u32 },
    RemoveSa { va: VaId, spi_in: u32 },
    RetireSa { va: VaId, spi_in: u32 },
    UpdatePeer { va: VaId, remote: SocketAddrV4 },
    AddRoute(String),
    RemoveRoute(String),
    SendNhrp { va: VaId, len: usize },
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    vas: BTreeMap<VaId, VirtualAccessSpec>,
    sas: BTreeMap<u32, SaPair>,
    routes: BTreeSet<(String, VaId)>,
    fib: Fib<Route>,
}

#[derive(Default)]
pub struct RecordingDatapath {
    state: Mutex<State>,
}

fn route_key(r: &Route) -> String {
    match r.next_hop {
        Some(nh) => format!("{} via {nh} {}", r.prefix, r.va),
        None => format!("{} {}", r.prefix, r.va),
    }
}

impl RecordingDatapath {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    pub fn interfaces(&self) -> Vec<VirtualAccessSpec> {
        self.state().vas.values().cloned().collect()
    }

    /// Routes as `prefix [via nh] Virtual-AccessN`, sorted.
    pub fn routes(&self) -> Vec<String> {
        self.state().routes.iter().map(|(r, _)| r.clone()).collect()
    }

    pub fn sa(&self, spi_in: u32) -> Option<SaPair> {
        self.state().sas.get(&spi_in).cloned()
    }
}

impl Datapath for RecordingDatapath {
    fn kind(&self) -> &'static str {
        "recording"
    }

    fn create_virtual_access(&self, spec: &VirtualAccessSpec) -> Result<(), DatapathError> {
        let mut s = self.state();
        if s.vas.contains_key(&spec.id) {
            return Err(DatapathError::InterfaceExists(spec.id));
        }
        s.vas.insert(spec.id, spec.clone());
        s.calls.push(Call::CreateVa(spec.id));
        Ok(())
    }

    fn remove_virtual_access(&self, id: VaId) -> Result<(), DatapathError> {
        let mut s = self.state();
        if s.vas.remove(&id).is_none() {
            return Err(DatapathError::NoSuchInterface(id));
        }
        s.sas.retain(|_, sa| sa.va != id);
        s.routes.retain(|(_, va)| *va != id);
        let gone: Vec<_> = s
            .fib
            .iter()
            .filter(|(_, r)| r.va == id)
            .map(|(p, _)| p)
            .collect();
        for p in gone {
            s.fib.remove(p);
        }
        s.calls.push(Call::RemoveVa(id));
        Ok(())
    }

    fn install_sa(&self, sa: &SaPair) -> Result<(), DatapathError> {
        let mut s = self.state();
        if !s.vas.contains_key(&sa.va) {
            return Err(DatapathError::NoSuchInterface(sa.va));
        }
        if s.sas.contains_key(&sa.spi_in) {
            return Err(DatapathError::SpiInUse(sa.spi_in));
        }
        s.sas.insert(sa.spi_in, sa.clone());
        s.calls.push(Call::InstallSa {
            va: sa.va,
            spi_in: sa.spi_in,
            spi_out: sa.spi_out,
        });
        Ok(())
    }

    fn remove_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let mut s = self.state();
        if s.sas.remove(&spi_in).is_none() {
            return Err(DatapathError::NoSuchSa(spi_in));
        }
        s.calls.push(Call::RemoveSa { va, spi_in });
        Ok(())
    }

    fn retire_sa(&self, va: VaId, spi_in: u32) -> Result<(), DatapathError> {
        let mut s = self.state();
        if !s.sas.contains_key(&spi_in) {
            return Err(DatapathError::NoSuchSa(spi_in));
        }
        s.calls.push(Call::RetireSa { va, spi_in });
        Ok(())
    }

    fn update_peer(&self, va: VaId, remote: SocketAddrV4) -> Result<(), DatapathError> {
        let mut s = self.state();
        let spec = s
            .vas
            .get_mut(&va)
            .ok_or(DatapathError::NoSuchInterface(va))?;
        spec.remote_outer = remote;
        for sa in s.sas.values_mut().filter(|sa| sa.va == va) {
            sa.remote = *remote.ip();
            if let Some((_, port)) = &mut sa.encap {
                *port = remote.port();
            }
        }
        s.calls.push(Call::UpdatePeer { va, remote });
        Ok(())
    }

    fn add_route(&self, route: &Route) -> Result<(), DatapathError> {
        let mut s = self.state();
        if !s.vas.contains_key(&route.va) {
            return Err(DatapathError::NoSuchInterface(route.va));
        }
        let key = route_key(route);
        s.routes.insert((key.clone(), route.va));
        s.fib.insert(route.prefix, *route);
        s.calls.push(Call::AddRoute(key));
        Ok(())
    }

    fn remove_route(&self, route: &Route) -> Result<(), DatapathError> {
        let mut s = self.state();
        let key = route_key(route);
        if !s.routes.remove(&(key.clone(), route.va)) {
            return Err(DatapathError::NoSuchRoute(route.prefix));
        }
        if s.fib.get(route.prefix).is_some_and(|r| r.va == route.va) {
            s.fib.remove(route.prefix);
        }
        s.calls.push(Call::RemoveRoute(key));
        Ok(())
    }

    fn lookup(&self, addr: std::net::Ipv4Addr) -> Option<Route> {
        self.state().fib.lookup(addr).map(|(_, r)| *r)
    }

    fn send_nhrp(&self, va: VaId, packet: &[u8]) -> Result<(), DatapathError> {
        let mut s = self.state();
        if !s.vas.contains_key(&va) {
            return Err(DatapathError::NoSuchInterface(va));
        }
        s.calls.push(Call::SendNhrp {
            va,
            len: packet.len(),
        });
        Ok(())
    }

    fn report(&self) -> DatapathReport {
        let s = self.state();
        DatapathReport {
            kind: self.kind().to_owned(),
            workers: 0,
            virtual_access: s
                .vas
                .values()
                .map(|v| VaCounters {
                    id: v.id.raw(),
                    name: v.name.clone(),
                    peer_inner: v.peer_inner,
                    remote_outer: v.remote_outer.to_string(),
                    mtu: v.mtu,
                    ..VaCounters::default()
                })
                .collect(),
            sas: s
                .sas
                .values()
                .map(|sa| SaCounters {
                    va: sa.va.raw(),
                    spi_in: sa.spi_in,
                    spi_out: sa.spi_out,
                    ..SaCounters::default()
                })
                .collect(),
            global: GlobalCounters::default(),
        }
    }
}
