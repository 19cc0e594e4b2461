//! Self-test of `integration::frr`: two FRR bgpds in lab namespaces, one
//! with a listen range (as the hub of ../shared/interop/frr-hub), one as a
//! spoke announcing its LAN; the session comes up and the prefix arrives.
//! Needs root and FRR; without them it says why and returns.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use integration::{Lab, frr, skip_unless_root};

const HUB: &str = r"hostname hub
log file @DIR@/bgpd.log debugging
debug bgp neighbor-events
!
router bgp 65001
 bgp router-id 172.25.1.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor SPOKES peer-group
 neighbor SPOKES remote-as 65001
 neighbor SPOKES timers 3 9
 bgp listen range 172.25.1.0/24 peer-group SPOKES
 !
 address-family ipv4 unicast
  neighbor SPOKES activate
  neighbor SPOKES route-reflector-client
 exit-address-family
!
";

const SPOKE: &str = r"hostname spoke
log file @DIR@/bgpd.log debugging
!
router bgp 65001
 bgp router-id 172.25.1.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor 172.25.1.1 remote-as 65001
 neighbor 172.25.1.1 timers 3 9
 neighbor 172.25.1.1 timers connect 1
 !
 address-family ipv4 unicast
  network 192.168.1.0/24
  neighbor 172.25.1.1 activate
 exit-address-family
!
";

#[test]
fn a_spoke_bgpd_reaches_a_listen_range_hub_and_its_prefix_arrives() {
    skip_unless_root!();
    if !frr::installed() {
        eprintln!("skipped: FRR is not installed (`cargo xtask setup` installs it)");
        return;
    }
    let lab = Lab::new("frrself").unwrap();
    let hub = lab.netns("hub").unwrap();
    let spoke = lab.netns("spoke").unwrap();
    let (a, b) = lab.veth(&hub, &spoke).unwrap();
    a.add_addr("172.25.1.1/24").unwrap();
    b.add_addr("172.25.1.2/24").unwrap();
    let hub_bgpd = frr::Bgpd::start(&hub, &lab.temp_dir().join("hub-bgpd"), HUB).unwrap();
    let spoke_bgpd = frr::Bgpd::start(&spoke, &lab.temp_dir().join("spoke-bgpd"), SPOKE).unwrap();
    spoke_bgpd
        .wait_established("172.25.1.1", Duration::from_secs(30))
        .unwrap();
    hub_bgpd
        .wait_established("172.25.1.2", Duration::from_secs(10))
        .unwrap();
    let found =
        integration::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
            hub_bgpd.routes().is_ok_and(|r| {
                r.iter().any(|(p, hops)| {
                    p == "192.168.1.0/24" && hops.iter().any(|h| h == "172.25.1.2")
                })
            })
        });
    assert!(found, "{:?}\n{}", hub_bgpd.routes(), hub_bgpd.log_tail());
    let neighbors = hub_bgpd.neighbors().unwrap();
    assert_eq!(neighbors.len(), 1, "{neighbors:?}");
    assert_eq!(neighbors[0].2, 1, "one prefix received: {neighbors:?}");
}
