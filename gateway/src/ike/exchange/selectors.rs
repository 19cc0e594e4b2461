//! Traffic selectors of the CHILD_SA a spoke asks for in IKE_AUTH (RFC
//! 7296 section 2.9): transport mode for GRE between the outer addresses,
//! behind a NAT too (section 2.23.1), else tunnel mode to the pool address.

use std::net::Ipv4Addr;

use crate::{ike::wire::TrafficSelector, ipsec::Mode, net::IPPROTO_GRE};

/// Chooses the mode and narrows the selectors (RFC 7296 section 2.9).
/// Transport mode when the peer asks for it and the selectors cover GRE
/// between the two outer addresses (an IOS spoke's Tunnel1, `CISCO-GRE-MODE`);
/// otherwise tunnel mode, with the peer's side narrowed to its pool address.
/// With NAT-T in use (`nat`), a peer behind a NAT names its own address in
/// TSi, not the one we see (RFC 7296 section 2.23.1).
pub(crate) fn narrow(
    ts_i: &[TrafficSelector],
    ts_r: &[TrafficSelector],
    transport: bool,
    nat: bool,
    peer: Ipv4Addr,
    local: Ipv4Addr,
    lease: Option<Ipv4Addr>,
) -> Option<(Mode, Vec<TrafficSelector>, Vec<TrafficSelector>)> {
    let covers = |list: &[TrafficSelector], addr: Ipv4Addr, proto: u8| {
        list.iter().any(|t| {
            t.as_ipv4().is_some_and(|(a, b)| a <= addr && addr <= b)
                && (t.ip_protocol == 0 || t.ip_protocol == proto)
        })
    };
    if transport && covers(ts_i, peer, IPPROTO_GRE) && covers(ts_r, local, IPPROTO_GRE) {
        return Some((
            Mode::Transport,
            vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, peer, peer)],
            vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, local, local)],
        ));
    }
    // Section 2.23.1: behind a NAT the initiator's transport-mode TSi is its
    // private address. The SA's outer addresses are the ones we see; the
    // answer gives the initiator its own selector back.
    let gre_host = ts_i.iter().find_map(|t| {
        let (a, b) = t.as_ipv4()?;
        (a == b && (t.ip_protocol == 0 || t.ip_protocol == IPPROTO_GRE)).then_some(a)
    });
    if transport
        && nat
        && covers(ts_r, local, IPPROTO_GRE)
        && let Some(private) = gre_host
    {
        return Some((
            Mode::Transport,
            vec![TrafficSelector::ipv4(
                IPPROTO_GRE,
                0..=65535,
                private,
                private,
            )],
            vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, local, local)],
        ));
    }
    let first_v4 = |list: &[TrafficSelector]| list.iter().find(|t| t.as_ipv4().is_some()).cloned();
    let tsi = match lease {
        Some(address) => {
            if !covers(ts_i, address, 0)
                && !ts_i.iter().any(|t| {
                    t.as_ipv4()
                        .is_some_and(|(a, b)| a <= address && address <= b)
                })
            {
                return None;
            }
            TrafficSelector::ipv4(0, 0..=65535, address, address)
        }
        None => first_v4(ts_i)?,
    };
    let tsr: Vec<TrafficSelector> = ts_r
        .iter()
        .filter(|t| t.as_ipv4().is_some())
        .cloned()
        .collect();
    if tsr.is_empty() {
        return None;
    }
    Some((Mode::Tunnel, vec![tsi], tsr))
}
