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

/// In tunnel mode, and in transport mode, where the spoke names its own
/// (private) address in TSi and the hub gives it back as sent (RFC 7296
/// section 2.23.1).
#[test]
fn a_nat_in_front_of_the_spoke_is_seen_by_both_ends() {
    for mode in [Mode::Tunnel, Mode::Transport] {
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
            spoke("aes256-sha256-ecp256", "aes256gcm16", mode),
            83,
            |a| SocketAddrV4::new(outside, a.port() + 40_000),
        );
        let est = result.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(initiator.nat_detected(), "our address was rewritten");
        let ours = est.child.unwrap();
        assert_eq!((ours.mode, ours.encap), (mode, Some((4500, 4500))));
        let hub_child = child_up(&actions);
        assert_eq!(hub_child.mode, mode);
        assert_eq!(hub_child.encap, Some((4500, 44_500)), "to the NAT's port");
        assert_eq!(hub_child.remote, outside);
    }
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

/// The NAT keepalives (RFC 3948 section 2.3) an engine's tick asks for
/// between `from` and `to` (after `start`).
fn keepalives(engine: &mut Engine, start: Instant, from: u64, to: u64) -> Vec<(u64, SocketAddrV4)> {
    let mut sent = Vec::new();
    for s in from..=to {
        for a in engine.tick(start + Duration::from_secs(s), &mut NoPools) {
            if let Action::NatKeepalive { remote } = a {
                sent.push((s, remote));
            }
        }
    }
    sent
}

#[test]
fn the_side_behind_a_nat_sends_keepalives_and_the_other_does_not() {
    let every = Some(Duration::from_secs(20));
    // A NAT in front of the spoke; then none, with the hub forcing
    // encapsulation (its lie makes the spoke think the hub is NATed).
    for (nat, forced) in [(true, false), (false, true)] {
        let case = format!("NAT in front of the spoke: {nat}, forced: {forced}");
        let mut hub = hub("")
            .with_forced_encapsulation(forced)
            .with_nat_keepalive(every);
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        let outside = Ipv4Addr::new(203, 0, 113, 9);
        let (result, _, mut initiator) = dial_through(
            &mut hub,
            &mut pools,
            spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
            85,
            |a| {
                if nat {
                    SocketAddrV4::new(outside, a.port() + 40_000)
                } else {
                    a
                }
            },
        );
        let established = result.unwrap();
        let start = Instant::now();
        let sa = initiator.take_sa(&established, None, start).unwrap();
        let mut ours = Engine::new(
            Policy::from_config(&hub_config("")).unwrap(),
            Box::new(SeededRng(86)),
        )
        .with_nat_keepalive(every);
        ours.adopt(sa, start);
        let sent = keepalives(&mut ours, start, 1, 45);
        if nat {
            let to_hub = SocketAddrV4::new(*HUB.ip(), 4500);
            assert_eq!(sent, [(20, to_hub), (40, to_hub)], "{case}");
        } else {
            assert!(sent.is_empty(), "{case}: {sent:?}");
        }
        assert!(
            keepalives(&mut hub, start, 1, 45).is_empty(),
            "{case}: the hub is not behind a NAT"
        );
    }
}

#[test]
fn a_hub_behind_a_nat_sends_keepalives_unless_they_are_off() {
    for every in [Some(Duration::from_secs(20)), None] {
        let mut hub = hub("").with_nat_keepalive(every);
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        // The spoke dials the NAT's public address; it reaches the hub's
        // own one.
        let public = Ipv4Addr::new(198, 51, 100, 1);
        let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
        config.remote = SocketAddrV4::new(public, 500);
        let mut initiator = Initiator::new(config, Box::new(SeededRng(87)));
        let mut requests = vec![initiator.start().unwrap()];
        let start = Instant::now();
        let mut established = false;
        for _ in 0..4 {
            let (from, to) = initiator.endpoints();
            let inside = SocketAddrV4::new(*HUB.ip(), to.port());
            let actions = hub
                .handle(start, inside, from, requests.last().unwrap(), &mut pools)
                .unwrap();
            match initiator.handle(sends(&actions).last().unwrap()).unwrap() {
                Step::Send(next) => requests = vec![next],
                Step::Established(_) => {
                    established = true;
                    break;
                }
                Step::SendAll(_) => panic!("no fragmentation configured"),
            }
        }
        assert!(established);
        assert!(initiator.nat_detected());
        let sent = keepalives(&mut hub, start, 1, 25);
        match every {
            Some(_) => assert_eq!(sent, [(20, SocketAddrV4::new(*SPOKE.ip(), 4500))]),
            None => assert!(sent.is_empty(), "keepalives off: {sent:?}"),
        }
    }
}
