//! A strongSwan spoke against the hub's kernel datapath, both with ESP in
//! the kernel's XFRM (strongSwan's kernel-netlink, not kernel-libipsec):
//! tunnel mode, no GRE, the spoke's virtual IP routed to it through the
//! tunnel-mode policies; it reaches the hub's LAN and an own spoke's LAN
//! (GRE over ESP transport) through the hub. Needs ip_gre and esp4: the VM tier runs it (see
//! `kernel_datapath.rs` for the skip rule).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gateway_report::interfaces::DatapathReport;
use integration::{
    flex_lab::{self, FlexLab, HUB_LAN_HOST, LabSpec, Which},
    gateway::gateway_bin,
};

#[test]
fn a_strongswan_spoke_with_kernel_xfrm_reaches_the_hub_lan() {
    if !integration::vm::kernel_datapath_available() {
        return;
    }
    if !flex_lab::missing_tools(true).is_empty() {
        eprintln!("SKIPPED: missing {:?}", flex_lab::missing_tools(true));
        return;
    }
    let gateway = gateway_bin().unwrap();
    let spec = LabSpec {
        kernel_datapath: true,
        ..LabSpec::new(1, true)
    };
    let started = std::time::Instant::now();
    let lab = FlexLab::start(&gateway, "kswan", &spec).unwrap();
    // Two minutes, as in `kernel_datapath.rs`: IKE under emulation in the
    // VM tier.
    lab.wait_sessions(2, Duration::from_mins(2)).unwrap();
    println!(
        "both sessions up after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let vip = lab.strongswan_vip().unwrap();
    let swan = lab.strongswan_netns().unwrap();
    let _ = flex_lab::wait_ping(swan, HUB_LAN_HOST, Duration::from_secs(30));
    let r = flex_lab::ping(swan, HUB_LAN_HOST, 3).unwrap();
    assert!(r.received >= 2, "{vip} -> hub LAN: {r:?}\n{}", lab.logs());
    let r = flex_lab::ping(lab.hub_lan(), vip, 3).unwrap();
    assert!(r.received >= 2, "hub LAN -> {vip}: {r:?}\n{}", lab.logs());
    // And the own spoke's LAN, through the hub: tunnel mode on one side,
    // GRE over ESP transport on the other.
    let lan1 = flex_lab::spoke_lan_host(1);
    let _ = flex_lab::wait_ping(swan, lan1, Duration::from_secs(30));
    let r = flex_lab::ping(swan, lan1, 3).unwrap();
    assert!(
        r.received >= 2,
        "{vip} -> spoke 1 LAN: {r:?}\n{}",
        lab.logs()
    );
    let r = flex_lab::ping(lab.spoke_lan(1), vip, 3).unwrap();
    assert!(
        r.received >= 2,
        "spoke 1 LAN -> {vip}: {r:?}\n{}",
        lab.logs()
    );
    // Tunnel mode: the strongSwan spoke's SAs counted it, and it got no
    // GRE link (the own spoke did).
    let report: DatapathReport = lab
        .show_report(Which::Hub, &["interfaces", "virtual-access"])
        .unwrap();
    assert_eq!(report.kind, "kernel");
    let swan_va = report
        .virtual_access
        .iter()
        .find(|v| v.peer_inner == Some(vip))
        .unwrap()
        .id;
    let sa = report.sas.iter().find(|s| s.va == swan_va).unwrap();
    assert!(sa.rx_packets > 0, "{report:?}");
    assert!(sa.tx_packets > 0, "{report:?}");
    // strongSwan's SAs are in its kernel (kernel-netlink), not in a
    // userspace ESP stack.
    let states = swan.ip(["xfrm", "state"]).unwrap();
    let states = String::from_utf8_lossy(&states.stdout);
    assert_eq!(states.matches("proto esp").count(), 2, "{states}");
    // It forces UDP encapsulation (`encap = yes`, as behind NAT): the hub's
    // SAs for it carry ESP in UDP 4500 (RFC 3948), decapsulated by the
    // kernel on the IKE socket.
    let hub_states = lab.hub().ip(["xfrm", "state"]).unwrap();
    let hub_states = String::from_utf8_lossy(&hub_states.stdout);
    let swan_sas: Vec<&str> = hub_states
        .split("src ")
        .filter(|sa| sa.contains(&flex_lab::STRONGSWAN_ADDRESS.to_string()))
        .collect();
    assert_eq!(swan_sas.len(), 2, "{hub_states}");
    assert!(
        swan_sas
            .iter()
            .all(|sa| sa.contains("encap type espinudp sport 4500")),
        "{hub_states}"
    );
    let links = lab.hub().ip(["link", "show", "type", "gre"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(
        links.matches(": va").count(),
        1,
        "one GRE link, the own spoke's: {links}"
    );
}
