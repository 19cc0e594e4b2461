//! The dispatcher: the message-ID window, timers.

use super::*;

#[test]
fn retransmitted_requests_get_the_cached_response_and_stale_ids_are_dropped() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut initiator = Initiator::new(
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(9)),
    );
    let now = Instant::now();
    let init = initiator.start().unwrap();
    let r1 = sends(&engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap());
    let r2 = sends(&engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap());
    assert_eq!(
        r1, r2,
        "IKE_SA_INIT retransmission answered with the same bytes"
    );
    assert_eq!(engine.report(now).len(), 1, "one half-open SA, not two");
    let Step::Send(auth) = initiator.handle(&r1[0]).unwrap() else {
        panic!()
    };
    let a1 = sends(&engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap());
    let a2 = sends(&engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap());
    assert_eq!(a1, a2, "IKE_AUTH retransmission answered from the cache");
    assert!(matches!(
        initiator.handle(&a1[0]).unwrap(),
        Step::Established(_)
    ));
    // A request with message ID 5 (window 1, expected 2) is dropped.
    let mut skipped = auth.clone();
    skipped[20..24].copy_from_slice(&5u32.to_be_bytes());
    assert_eq!(
        engine
            .handle(now, HUB, SPOKE, &skipped, &mut pools)
            .unwrap_err(),
        Dropped::BadMessageId
    );
    // Garbage and unknown SPIs are dropped, not answered.
    assert_eq!(
        engine
            .handle(now, HUB, SPOKE, &[0u8; 10], &mut pools)
            .unwrap_err(),
        Dropped::Malformed
    );
    let mut unknown = auth;
    unknown[8..16].copy_from_slice(&[9; 8]);
    assert_eq!(
        engine
            .handle(now, HUB, SPOKE, &unknown, &mut pools)
            .unwrap_err(),
        Dropped::UnknownSpi
    );
}

#[test]
fn half_open_sas_expire() {
    let mut engine = hub("");
    let mut pools = MemPools::default();
    let mut initiator = Initiator::new(
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(31)),
    );
    let t0 = Instant::now();
    engine
        .handle(t0, HUB, SPOKE, &initiator.start().unwrap(), &mut pools)
        .unwrap();
    assert_eq!(engine.report(t0).len(), 1);
    engine.tick(t0 + Duration::from_secs(10), &mut pools);
    assert_eq!(engine.report(t0).len(), 1);
    engine.tick(t0 + Duration::from_secs(31), &mut pools);
    assert!(engine.report(t0).is_empty());
}

/// The keys for the key log, from both ends of one dial: the IKE SA's are
/// the same on both, and each end's inbound CHILD_SA is the other's
/// outbound, with the same SPI, addresses and keys.
#[test]
fn both_ends_hand_out_the_same_keys_for_the_key_log() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions, mut initiator) = dial_through(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes128-sha1", Mode::Transport),
        111,
        |a| a,
    );
    let est = result.unwrap();
    let hub_keys: Vec<DerivedKeys> = actions
        .into_iter()
        .filter_map(|a| match a {
            Action::KeysDerived(k) => Some(k),
            _ => None,
        })
        .collect();
    let spoke_keys = initiator.take_derived_keys();
    assert!(initiator.take_derived_keys().is_empty(), "taken once");
    let [DerivedKeys::IkeSa(hub_ike), hub_child] = &hub_keys[..] else {
        panic!("{hub_keys:?}")
    };
    let [DerivedKeys::IkeSa(spoke_ike), spoke_child] = &spoke_keys[..] else {
        panic!("{spoke_keys:?}")
    };
    assert_eq!(
        (hub_ike.spi_i, hub_ike.spi_r),
        (est.spi_i, est.spi_r),
        "the dial's SA"
    );
    assert_eq!(
        (spoke_ike.spi_i, spoke_ike.spi_r),
        (hub_ike.spi_i, hub_ike.spi_r)
    );
    assert_eq!(
        (spoke_ike.encr, spoke_ike.integ),
        (hub_ike.encr, hub_ike.integ)
    );
    for (a, b) in [
        (&hub_ike.sk_ei, &spoke_ike.sk_ei),
        (&hub_ike.sk_er, &spoke_ike.sk_er),
        (&hub_ike.sk_ai, &spoke_ike.sk_ai),
        (&hub_ike.sk_ar, &spoke_ike.sk_ar),
    ] {
        assert!(!a.is_empty());
        assert_eq!(**a, **b);
    }
    let (
        DerivedKeys::ChildSa {
            inbound: hub_in,
            outbound: hub_out,
        },
        DerivedKeys::ChildSa {
            inbound: spoke_in,
            outbound: spoke_out,
        },
    ) = (hub_child, spoke_child)
    else {
        panic!("{hub_keys:?} {spoke_keys:?}")
    };
    let child = est.child.unwrap();
    assert_eq!(spoke_out.spi, child.spi_out);
    assert_eq!(spoke_in.spi, child.spi_in);
    for (theirs, ours) in [(hub_in, spoke_out), (hub_out, spoke_in)] {
        assert_eq!(
            (theirs.src, theirs.dst, theirs.spi, theirs.esp),
            (ours.src, ours.dst, ours.spi, ours.esp)
        );
        assert_eq!(*theirs.encr, *ours.encr);
        assert_eq!(*theirs.integ, *ours.integ);
        assert_eq!(theirs.integ.len(), 20, "HMAC-SHA1-96 takes a 20-byte key");
    }
    assert_eq!((spoke_out.src, spoke_out.dst), (*SPOKE.ip(), *HUB.ip()));
    // The spoke sends with the initiator's keys.
    assert_eq!(*spoke_out.encr, *child.keys.encr_i);
}

/// Everything the engine and the initiator put on the wire comes from the
/// RNG and the clock they are given: the same seeds give the same bytes.
#[test]
fn the_same_seeds_give_the_same_bytes() {
    let run = || {
        let mut engine = hub("dpd = { interval = 10, retry = 2, mode = \"periodic\" }");
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        let config = spoke("aes256gcm16-prfsha256-x25519", "aes256gcm16", Mode::Tunnel);
        let (result, mut actions, mut initiator) =
            dial_through(&mut engine, &mut pools, config, 112, |a| a);
        result.unwrap();
        let t0 = Instant::now();
        actions.extend(engine.tick(t0 + Duration::from_secs(11), &mut pools));
        let mut packets = sends(&actions);
        packets.push(initiator.informational(&[]).unwrap());
        packets
    };
    let (a, b) = (run(), run());
    assert_eq!(
        a.len(),
        4,
        "IKE_SA_INIT, IKE_AUTH, a liveness check each way"
    );
    assert_eq!(a, b);
}
