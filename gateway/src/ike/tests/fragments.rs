//! IKE fragmentation (RFC 7383).

use super::*;

#[test]
fn a_fragmented_ike_auth_is_reassembled_in_any_order() {
    // In order, through the usual dial.
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.fragment_len = Some(64);
    let (result, _) = dial(&mut engine, &mut pools, config.clone(), 61);
    assert_eq!(result.unwrap().address, Some(Ipv4Addr::new(10, 1, 1, 100)));

    // Reversed, with one fragment duplicated: answered once, when whole.
    let mut engine = hub("");
    let mut initiator = Initiator::new(config, Box::new(SeededRng(62)));
    let now = Instant::now();
    let init = sends(
        &engine
            .handle(now, HUB, SPOKE, &initiator.start().unwrap(), &mut pools)
            .unwrap(),
    );
    let Step::SendAll(mut fragments) = initiator.handle(&init[0]).unwrap() else {
        panic!("fragments expected")
    };
    assert!(fragments.len() >= 3, "{} fragments", fragments.len());
    let first = Message::parse(&fragments[0]).unwrap();
    assert!(
        first
            .encrypted_fragment()
            .is_some_and(|f| f.number == 1 && usize::from(f.total) == fragments.len())
    );
    fragments.reverse();
    let dup = fragments[0].clone();
    fragments.insert(1, dup);
    let mut answers = Vec::new();
    for f in &fragments {
        answers.extend(sends(
            &engine.handle(now, HUB, SPOKE, f, &mut pools).unwrap(),
        ));
    }
    assert_eq!(answers.len(), 1, "one response, after the last fragment");
    assert!(matches!(
        initiator.handle(&answers[0]).unwrap(),
        Step::Established(_)
    ));

    // A tampered fragment fails its own integrity check.
    let mut engine = hub("");
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.fragment_len = Some(64);
    let mut initiator = Initiator::new(config, Box::new(SeededRng(63)));
    let init = sends(
        &engine
            .handle(now, HUB, SPOKE, &initiator.start().unwrap(), &mut pools)
            .unwrap(),
    );
    let Step::SendAll(mut fragments) = initiator.handle(&init[0]).unwrap() else {
        panic!()
    };
    let last = fragments[1].len() - 1;
    fragments[1][last] ^= 1;
    assert_eq!(
        engine
            .handle(now, HUB, SPOKE, &fragments[1], &mut pools)
            .unwrap_err(),
        Dropped::Integrity
    );
}
