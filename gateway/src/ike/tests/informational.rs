//! INFORMATIONAL: liveness checks both ways, DELETE both ways, dead peer detection, the end of an IKE SA.

use super::*;

#[test]
fn liveness_checks_are_answered_and_a_peer_delete_tears_the_session_down() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut initiator = Initiator::new(
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(71)),
    );
    let now = Instant::now();
    let mut request = initiator.start().unwrap();
    let established = loop {
        let response = sends(
            &engine
                .handle(now, HUB, SPOKE, &request, &mut pools)
                .unwrap(),
        )
        .pop()
        .unwrap();
        match initiator.handle(&response).unwrap() {
            Step::Send(next) => request = next,
            Step::Established(e) => break e,
            Step::SendAll(_) => unreachable!(),
        }
    };
    let child = established.child.unwrap();

    // DPD: an empty request gets an empty response, twice (message IDs 2, 3).
    for _ in 0..2 {
        let dpd = initiator.informational(&[]).unwrap();
        let actions = engine.handle(now, HUB, SPOKE, &dpd, &mut pools).unwrap();
        assert_eq!(actions.len(), 1, "only the answer: {actions:?}");
        assert!(
            initiator
                .informational_response(&sends(&actions)[0])
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(engine.report(now).len(), 1, "still up");

    // Deleting the CHILD_SA: the hub answers with its own inbound SPI.
    let delete_child = Payload::Delete(wire::Delete {
        protocol: ProtocolId::Esp,
        spi_size: 4,
        spis: vec![child.spi_in.to_be_bytes().to_vec()],
    });
    let actions = engine
        .handle(
            now,
            HUB,
            SPOKE,
            &initiator.informational(&[delete_child]).unwrap(),
            &mut pools,
        )
        .unwrap();
    let reply = initiator
        .informational_response(&sends(&actions)[0])
        .unwrap();
    assert!(
        matches!(&reply[..], [Payload::Delete(d)] if d.spis == vec![child.spi_out.to_be_bytes().to_vec()]),
        "{reply:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ChildDown { spi_in, .. } if *spi_in == child.spi_out))
    );
    assert!(engine.report(now)[0].children.is_empty());

    // An unknown payload marked critical is refused (RFC 7296 section 2.5).
    let odd = Payload::Unknown {
        kind: 200,
        critical: true,
        data: vec![1, 2, 3],
    };
    let actions = engine
        .handle(
            now,
            HUB,
            SPOKE,
            &initiator.informational(&[odd]).unwrap(),
            &mut pools,
        )
        .unwrap();
    let reply = initiator
        .informational_response(&sends(&actions)[0])
        .unwrap();
    assert!(
        matches!(&reply[..], [Payload::Notify(n)] if n.kind == NotifyType::UnsupportedCriticalPayload && n.data == [200]),
        "{reply:?}"
    );
    assert_eq!(engine.report(now).len(), 1, "an established SA survives it");

    // Deleting the IKE SA: session down, address released (kept for the identity).
    let delete_ike = Payload::Delete(wire::Delete {
        protocol: ProtocolId::Ike,
        spi_size: 0,
        spis: vec![],
    });
    let actions = engine
        .handle(
            now,
            HUB,
            SPOKE,
            &initiator.informational(&[delete_ike]).unwrap(),
            &mut pools,
        )
        .unwrap();
    assert!(
        initiator
            .informational_response(&sends(&actions)[0])
            .unwrap()
            .is_empty()
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::SessionDown { reason, .. } if reason == "deleted by peer")
        )
    );
    assert_eq!(pools.released, vec![Ipv4Addr::new(10, 1, 1, 100)]);
    assert!(engine.report(now).is_empty());
}

#[test]
fn shutdown_deletes_every_session_and_releases_addresses() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        41,
    )
    .0
    .unwrap();
    let actions = engine.shutdown(&mut pools);
    let delete = Message::parse(&sends(&actions)[0]).unwrap();
    assert_eq!(delete.header.exchange, ExchangeType::Informational);
    assert!(!delete.header.flags.response);
    assert!(
        !delete.header.flags.initiator,
        "the hub is the SA's original responder: I clear"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ChildDown { .. }))
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::SessionDown { reason, .. } if reason == "hub shutting down")
        )
    );
    assert_eq!(pools.released, vec![Ipv4Addr::new(10, 1, 1, 100)]);
    assert!(engine.report(Instant::now()).is_empty());
}

#[test]
fn delete_ends_one_session_and_tells_its_peer() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut ends = Vec::new();
    for seed in [43, 44] {
        // Two spokes (one identity would have one session).
        let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
        config.identity = Identity::Fqdn(format!("spoke{seed}.cisco.com"));
        let est = dial(&mut engine, &mut pools, config, seed).0.unwrap();
        ends.push(est.spi_r);
    }
    let actions = engine.delete(ends[0], "NHRP shortcut idle", &mut pools);
    let delete = Message::parse(&sends(&actions)[0]).unwrap();
    assert_eq!(delete.header.exchange, ExchangeType::Informational);
    assert_eq!(delete.header.spi_r, ends[0]);
    assert!(actions.iter().any(
        |a| matches!(a, Action::SessionDown { reason, .. } if reason == "NHRP shortcut idle")
    ));
    let left: Vec<String> = engine
        .report(Instant::now())
        .into_iter()
        .map(|r| r.spi_r)
        .collect();
    assert_eq!(
        left,
        [format!("{:016x}", ends[1])],
        "the other session stays"
    );
    assert!(
        engine.delete(ends[0], "again", &mut pools).is_empty(),
        "an SA that is gone is not deleted twice"
    );
}

// ----- the end of an IKE SA: the reverse of its setup -----

/// Every ChildDown of `ike_spi` comes before the one SessionDown, which
/// comes last; returns how many children went down.
#[track_caller]
fn children_then_session(actions: &[Action]) -> usize {
    let downs: Vec<usize> = actions
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Action::ChildDown { .. }))
        .map(|(i, _)| i)
        .collect();
    let sessions: Vec<usize> = actions
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Action::SessionDown { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(sessions.len(), 1, "{actions:?}");
    assert_eq!(sessions[0], actions.len() - 1, "{actions:?}");
    assert!(downs.iter().all(|i| *i < sessions[0]), "{actions:?}");
    downs.len()
}

#[test]
fn an_ending_ike_sa_takes_its_children_down_before_the_session() {
    let setup = |seed| {
        let mut engine = hub("");
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        let mut initiator = Initiator::new(
            spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
            Box::new(SeededRng(seed)),
        );
        let now = Instant::now();
        let mut request = initiator.start().unwrap();
        loop {
            let actions = engine
                .handle(now, HUB, SPOKE, &request, &mut pools)
                .unwrap();
            let up = actions
                .iter()
                .position(|a| matches!(a, Action::SessionUp { .. }));
            if let Some(up) = up {
                // Setup order: the session, then its CHILD_SA.
                let child = actions
                    .iter()
                    .position(|a| matches!(a, Action::ChildUp(_)))
                    .unwrap();
                assert!(up < child, "{actions:?}");
            }
            match initiator.handle(&sends(&actions)[0]).unwrap() {
                Step::Send(next) => request = next,
                Step::Established(_) => break,
                Step::SendAll(_) => unreachable!(),
            }
        }
        (engine, pools, initiator)
    };

    // The peer deletes the IKE SA.
    let (mut engine, mut pools, mut initiator) = setup(101);
    let delete = Payload::Delete(wire::Delete {
        protocol: ProtocolId::Ike,
        spi_size: 0,
        spis: vec![],
    });
    let request = initiator.informational(&[delete]).unwrap();
    let actions = engine
        .handle(Instant::now(), HUB, SPOKE, &request, &mut pools)
        .unwrap();
    assert!(
        matches!(actions[0], Action::Send { .. }),
        "the answer first"
    );
    assert_eq!(children_then_session(&actions), 1);

    // The hub shuts down.
    let (mut engine, mut pools, _) = setup(102);
    let actions = engine.shutdown(&mut pools);
    assert!(
        matches!(actions[0], Action::Send { .. }),
        "the DELETE first"
    );
    assert_eq!(children_then_session(&actions), 1);
}

/// A hub with `dpd = 10 s, retry 2 s, periodic` and one established spoke.
fn dpd_setup() -> (Engine, MemPools, Initiator, Instant) {
    dpd_setup_mode("periodic")
}

fn dpd_setup_mode(mode: &str) -> (Engine, MemPools, Initiator, Instant) {
    let mut engine = hub(&format!(
        "dpd = {{ interval = 10, retry = 2, mode = \"{mode}\" }}"
    ));
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, _, initiator) = dial_through(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-x25519", "aes256gcm16", Mode::Tunnel),
        41,
        |a| a,
    );
    result.unwrap();
    (engine, pools, initiator, Instant::now())
}

#[test]
fn dead_peer_detection_asks_a_silent_peer_and_an_answer_keeps_it() {
    let (mut engine, mut pools, mut initiator, t0) = dpd_setup();
    assert!(sends(&engine.tick(t0 + Duration::from_secs(5), &mut pools)).is_empty());
    let probe = sends(&engine.tick(t0 + Duration::from_secs(11), &mut pools));
    assert_eq!(probe.len(), 1, "one liveness check after the interval");
    // The spoke answers (an empty INFORMATIONAL response).
    let (answer, payloads) = initiator.respond(&probe[0]).unwrap();
    assert!(
        payloads.is_empty(),
        "a liveness check is empty: {payloads:?}"
    );
    let t1 = t0 + Duration::from_secs(12);
    assert!(
        engine
            .handle(t1, HUB, SPOKE, &answer, &mut pools)
            .unwrap()
            .is_empty()
    );
    // Answered: no retry, the session stays, the next check one interval on.
    assert!(sends(&engine.tick(t1 + Duration::from_secs(5), &mut pools)).is_empty());
    assert_eq!(engine.report(t1)[0].status, "READY");
    assert_eq!(
        sends(&engine.tick(t1 + Duration::from_secs(10), &mut pools)).len(),
        1
    );
    // A forged answer is refused.
    let mut forged = answer.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(engine.handle(t1, HUB, SPOKE, &forged, &mut pools).is_err());
}

#[test]
fn dead_peer_detection_deletes_a_peer_that_never_answers() {
    let (mut engine, mut pools, _initiator, t0) = dpd_setup();
    let mut sent = 0;
    let mut down = Vec::new();
    for s in 10..=30 {
        let actions = engine.tick(t0 + Duration::from_secs(s), &mut pools);
        sent += sends(&actions).len();
        down.extend(
            actions
                .into_iter()
                .filter(|a| matches!(a, Action::ChildDown { .. } | Action::SessionDown { .. })),
        );
    }
    assert_eq!(sent, 5, "the check and four retries");
    assert!(
        matches!(down.last(), Some(Action::SessionDown { reason, .. }) if reason.contains("DPD")),
        "{down:?}"
    );
    assert!(
        matches!(down[0], Action::ChildDown { .. }),
        "children first"
    );
    assert!(engine.report(t0).is_empty());
    assert_eq!(pools.released.len(), 1, "the lease goes back to the pool");
}

#[test]
fn traffic_from_the_peer_makes_the_check_unnecessary() {
    let (mut engine, mut pools, _initiator, t0) = dpd_setup();
    let spi_r = u64::from_str_radix(&engine.report(t0)[0].spi_r, 16).unwrap();
    for s in (5..=40).step_by(5) {
        let now = t0 + Duration::from_secs(s);
        engine.note_alive(spi_r, now);
        assert!(sends(&engine.tick(now, &mut pools)).is_empty(), "at {s} s");
    }
}

/// IOS `on-demand` (the default): a silent peer we send nothing to is not
/// asked; once we send it traffic and it stays silent for the interval, it
/// is; traffic back from it makes the check unnecessary again.
#[test]
fn on_demand_asks_only_a_peer_silent_while_we_send_to_it() {
    let (mut engine, mut pools, _initiator, t0) = dpd_setup_mode("on-demand");
    let spi_r = u64::from_str_radix(&engine.report(t0)[0].spi_r, 16).unwrap();
    for s in (5..=40).step_by(5) {
        let now = t0 + Duration::from_secs(s);
        assert!(sends(&engine.tick(now, &mut pools)).is_empty(), "at {s} s");
    }
    // We send; it answers: still no check.
    engine.note_sending(spi_r, t0 + Duration::from_secs(41));
    engine.note_alive(spi_r, t0 + Duration::from_secs(42));
    assert!(sends(&engine.tick(t0 + Duration::from_secs(55), &mut pools)).is_empty());
    // We send, it stays silent past the interval: asked once.
    engine.note_sending(spi_r, t0 + Duration::from_secs(56));
    assert_eq!(
        sends(&engine.tick(t0 + Duration::from_secs(57), &mut pools)).len(),
        1
    );
}
