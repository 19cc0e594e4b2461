//! UDP encapsulation: NAT detection and forcing (RFC 7296 section 2.23, RFC 3948).

use super::*;

#[test]
fn forced_encapsulation_on_either_side_puts_esp_in_udp_on_both() {
    for (hub_forces, spoke_forces) in [(true, false), (false, true), (true, true)] {
        let case = format!("hub forces: {hub_forces}, spoke forces: {spoke_forces}");
        let mut engine = hub("").with_forced_encapsulation(hub_forces);
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
        config.force_encapsulation = spoke_forces;
        let (result, actions, initiator) = dial_through(&mut engine, &mut pools, config, 81, |a| a);
        let est = result.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(initiator.nat_detected(), "{case}");
        assert_eq!(
            initiator.endpoints(),
            (
                SocketAddrV4::new(*SPOKE.ip(), 4500),
                SocketAddrV4::new(*HUB.ip(), 4500)
            ),
            "{case}"
        );
        // IKE_SA_INIT on 500, IKE_AUTH answered on 4500 (checked to be
        // where the request went by dial_through).
        let ports: Vec<u16> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { local, .. } => Some(local.port()),
                _ => None,
            })
            .collect();
        assert_eq!(ports, [500, 4500], "{case}");
        assert_eq!(
            est.child.unwrap().encap,
            Some((4500, 4500)),
            "spoke: {case}"
        );
        assert_eq!(child_up(&actions).encap, Some((4500, 4500)), "hub: {case}");
        assert!(engine.report(Instant::now())[0].nat_t, "{case}");
    }
}

#[test]
fn without_nat_or_forcing_esp_is_not_encapsulated() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions, initiator) = dial_through(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        82,
        |a| a,
    );
    let est = result.unwrap();
    assert!(!initiator.nat_detected());
    assert_eq!(initiator.endpoints(), (SPOKE, HUB));
    assert_eq!(est.child.unwrap().encap, None);
    assert_eq!(child_up(&actions).encap, None);
    assert!(!engine.report(Instant::now())[0].nat_t);
}

#[test]
fn a_nat_in_front_of_the_spoke_is_seen_by_both_ends() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    // The spoke's 500 and 4500 come out of the NAT as 40500 and 44500.
    let outside = Ipv4Addr::new(203, 0, 113, 9);
    let (result, actions, initiator) = dial_through(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        83,
        |a| SocketAddrV4::new(outside, a.port() + 40_000),
    );
    let est = result.unwrap();
    assert!(initiator.nat_detected(), "our address was rewritten");
    assert_eq!(est.child.unwrap().encap, Some((4500, 4500)));
    let hub_child = child_up(&actions);
    assert_eq!(hub_child.encap, Some((4500, 44_500)), "to the NAT's port");
    assert_eq!(hub_child.remote, outside);
}

#[test]
fn the_forced_hub_lies_only_in_its_source_hash() {
    let mut engine = hub("").with_forced_encapsulation(true);
    let mut pools = MemPools::default();
    let mut initiator = Initiator::new(
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(84)),
    );
    let request = initiator.start().unwrap();
    let now = Instant::now();
    let response = Message::parse(
        &sends(
            &engine
                .handle(now, HUB, SPOKE, &request, &mut pools)
                .unwrap(),
        )[0],
    )
    .unwrap();
    let (spi_i, spi_r) = (response.header.spi_i, response.header.spi_r);
    let src = &response
        .notify(NotifyType::NatDetectionSourceIp)
        .unwrap()
        .data;
    let dst = &response
        .notify(NotifyType::NatDetectionDestinationIp)
        .unwrap()
        .data;
    assert_eq!(src.len(), 20, "SHA-1 sized");
    assert_ne!(
        *src,
        nat_hash(spi_i, spi_r, HUB),
        "the source hash is wrong"
    );
    assert_eq!(
        *dst,
        nat_hash(spi_i, spi_r, SPOKE),
        "the destination one is true"
    );
    assert!(engine.report(now)[0].nat_t, "marked NATed already");
}

#[test]
fn forcing_needs_a_peer_that_does_nat_t() {
    // The request of `sa_init` has no NAT_DETECTION notifies.
    let (local, remote) = addrs();
    let mut engine = example_hub().with_forced_encapsulation(true);
    let reply = only_send(
        &engine
            .handle(
                Instant::now(),
                local,
                remote,
                &sa_init(0x3333, 12, 31),
                &mut NoPools,
            )
            .unwrap(),
    );
    assert!(reply.notify(NotifyType::NatDetectionSourceIp).is_some());
    assert!(!engine.report(Instant::now())[0].nat_t);
}
