//! IKE_SA_INIT: proposals, key exchange groups, refusals, the keys it derives.

use super::*;

#[test]
fn every_dh_group_and_ike_cipher_establishes_with_matching_keys() {
    let cases = [
        ("aes256-sha256-x25519", "aes256gcm16"),
        ("aes128-sha256-ecp256", "aes128-sha1"),
        ("aes256-sha384-ecp384", "aes256-sha256"),
        ("aes256gcm16-prfsha512-ecp521", "aes128gcm16"),
        ("aes128-sha1-modp2048", "aes128-sha1"),
        ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
    ];
    for (i, (ike, esp)) in cases.iter().enumerate() {
        let mut engine = hub("");
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        let (result, actions) = dial(
            &mut engine,
            &mut pools,
            spoke(ike, esp, Mode::Tunnel),
            100 + i as u64,
        );
        let est = result.unwrap_or_else(|e| panic!("{ike}/{esp}: {e}"));
        assert_eq!(est.address, Some(Ipv4Addr::new(10, 1, 1, 100)), "{ike}");
        assert_eq!(est.peer_identity, Identity::Fqdn("hub.cisco.com".into()));
        let ours = est.child.expect("CHILD_SA");
        let hub_child = actions
            .iter()
            .find_map(|a| {
                if let Action::ChildUp(c) = a {
                    Some(c.clone())
                } else {
                    None
                }
            })
            .unwrap();
        // The spoke's outbound SA is the hub's inbound one, with the same keys.
        assert_eq!(ours.spi_out, hub_child.spi_in, "{ike}");
        assert_eq!(ours.spi_in, hub_child.spi_out, "{ike}");
        assert_eq!(*ours.keys.encr_i, *hub_child.keys.encr_i);
        assert_eq!(*ours.keys.integ_r, *hub_child.keys.integ_r);
        assert_eq!(hub_child.mode, Mode::Tunnel);
        assert_eq!(
            hub_child.ts_remote[0].as_ipv4(),
            Some((Ipv4Addr::new(10, 1, 1, 100), Ipv4Addr::new(10, 1, 1, 100))),
            "narrowed to the pool address"
        );
        let report = engine.report(Instant::now());
        assert_eq!(report[0].status, "READY");
        assert_eq!(
            report[0].assigned_address,
            Some(Ipv4Addr::new(10, 1, 1, 100))
        );
        assert!(actions.iter().any(|a| matches!(a, Action::SessionUp { identity, .. } if identity == "fqdn:spoke1.cisco.com")));
    }
}

#[test]
fn a_ke_for_another_group_gets_invalid_ke_payload_and_the_retry_succeeds() {
    // The hub takes only MODP-2048; the spoke guesses x25519 first.
    let mut engine = hub("proposals = [\"aes256-sha256-modp2048\"]");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-x25519-modp2048", "aes256gcm16", Mode::Tunnel),
        5,
    );
    let est = result.unwrap();
    assert_eq!(est.choice.dh.iana(), 14);
    let first = Message::parse(&sends(&actions)[0]).unwrap();
    let n = first
        .notify(NotifyType::InvalidKePayload)
        .expect("INVALID_KE_PAYLOAD first");
    assert_eq!(n.data, 14u16.to_be_bytes());
}

#[test]
fn weak_proposals_get_no_proposal_chosen_and_a_log_line() {
    let mut engine = hub("");
    let weak = |kind, id| Transform {
        kind,
        id,
        key_length: None,
        other_attributes: vec![],
    };
    let request = Message {
        header: wire::Header {
            spi_i: 0x1122_3344_5566_7788,
            spi_r: 0,
            next_payload: wire::PayloadType::None,
            major_version: 2,
            minor_version: 0,
            exchange: ExchangeType::IkeSaInit,
            flags: wire::HeaderFlags {
                initiator: true,
                response: false,
                version: false,
            },
            message_id: 0,
            length: 0,
        },
        payloads: vec![
            // 3DES, HMAC-MD5, PRF-MD5, MODP-1024: an old ASA's offer.
            Payload::Sa(vec![wire::Proposal {
                number: 1,
                protocol: ProtocolId::Ike,
                spi: vec![],
                transforms: vec![
                    weak(TransformType::Encr, 3),
                    weak(TransformType::Prf, 1),
                    weak(TransformType::Integ, 1),
                    weak(TransformType::Dh, 2),
                ],
            }]),
            Payload::Ke(wire::KeyExchange {
                group: 2,
                data: vec![7; 128],
            }),
            Payload::Nonce(vec![1; 32]),
        ],
    }
    .emit();
    let mut pools = MemPools::default();
    let actions = engine
        .handle(Instant::now(), HUB, SPOKE, &request, &mut pools)
        .unwrap();
    let reply = Message::parse(&sends(&actions)[0]).unwrap();
    assert!(reply.notify(NotifyType::NoProposalChosen).is_some());
    assert!(actions.iter().any(|a| matches!(a, Action::Refused { reason, .. } if reason.contains("no acceptable IKE proposal"))));
    assert!(engine.report(Instant::now()).is_empty(), "no SA kept");
}

/// RFC 7296 section 3.10: a notify without SPI has Protocol ID 0 (tshark
/// showed "Protocol ID: IKE (1)" with "SPI Size: 0" in these refusals).
#[test]
fn sa_init_refusals_carry_a_notify_with_protocol_id_zero() {
    let (local, remote) = addrs();
    let mut engine = example_hub();
    // 3DES (3) is not accepted: NO_PROPOSAL_CHOSEN.
    let actions = engine
        .handle(
            Instant::now(),
            local,
            remote,
            &sa_init(1, 3, 31),
            &mut NoPools,
        )
        .unwrap();
    let reply = only_send(&actions);
    let Payload::Notify(n) = &reply.payloads[0] else {
        panic!("{reply:?}")
    };
    assert_eq!(
        (n.kind, n.protocol, n.spi.len()),
        (NotifyType::NoProposalChosen, ProtocolId::None, 0)
    );
    // A KE for MODP-1024 (2) while Curve25519 is chosen: INVALID_KE_PAYLOAD.
    let actions = engine
        .handle(
            Instant::now(),
            local,
            remote,
            &sa_init(2, 12, 2),
            &mut NoPools,
        )
        .unwrap();
    let reply = only_send(&actions);
    let Payload::Notify(n) = &reply.payloads[0] else {
        panic!("{reply:?}")
    };
    assert_eq!(
        (n.kind, n.protocol, n.data.as_slice()),
        (NotifyType::InvalidKePayload, ProtocolId::None, &[0, 31][..])
    );
}

/// Each new IKE SA's keys come out once, as an action (for the key log),
/// with what Wireshark's `ikev2_decryption_table` needs; a retransmission
/// and a refusal give none.
#[test]
fn sa_init_hands_out_the_keys_of_each_new_sa_once() {
    let (local, remote) = addrs();
    let mut engine = example_hub();
    let now = Instant::now();
    let request = sa_init(0x1111, 12, 31);
    let actions = engine
        .handle(now, local, remote, &request, &mut NoPools)
        .unwrap();
    let reply = only_send(&actions);
    let keys: Vec<&DerivedKeys> = actions
        .iter()
        .filter_map(|a| match a {
            Action::KeysDerived(k) => Some(k),
            _ => None,
        })
        .collect();
    let [DerivedKeys::IkeSa(ike)] = keys[..] else {
        panic!("{actions:?}")
    };
    assert_eq!((ike.spi_i, ike.spi_r), (0x1111, reply.header.spi_r));
    assert_eq!(ike.encr, crate::ipsec::Encr::AesCbc { key_bits: 256 });
    assert_eq!(ike.integ, Some(crate::ipsec::Integ::HmacSha256_128));
    assert_eq!((ike.sk_ei.len(), ike.sk_er.len()), (32, 32));
    assert_eq!((ike.sk_ai.len(), ike.sk_ar.len()), (32, 32));
    assert_ne!(*ike.sk_ei, *ike.sk_er);
    let line = crate::ike::keylog::uat_line(ike);
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields.len(), 8, "{line}");
    assert_eq!(fields[0], "0000000000001111");
    assert_eq!(fields[1], format!("{:016x}", reply.header.spi_r));
    assert_eq!(fields[4], "\"AES-CBC-256 [RFC3602]\"");
    assert_eq!(fields[7], "\"HMAC_SHA2_256_128 [RFC4868]\"");
    // A retransmission gets the same answer and no keys.
    let again = engine
        .handle(now, local, remote, &request, &mut NoPools)
        .unwrap();
    assert!(matches!(&again[..], [Action::Send { .. }]), "{again:?}");
    // A refused one creates no SA and no keys.
    let refused = engine
        .handle(now, local, remote, &sa_init(0x2222, 3, 31), &mut NoPools)
        .unwrap();
    assert!(
        !refused.iter().any(|a| matches!(a, Action::KeysDerived(_))),
        "{refused:?}"
    );
}

/// A responder under load answers IKE_SA_INIT with a COOKIE only (RFC 7296
/// section 2.6, strongSwan past `cookie_threshold`): the initiator sends
/// the same request again with the cookie first, and the AUTH that follows
/// signs that second request, which the responder verifies.
#[test]
fn a_cookie_is_returned_first_in_the_same_request_and_the_dial_completes() {
    let (hub_end, spoke_end) = addrs();
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let now = Instant::now();
    let mut initiator = Initiator::new(
        spoke("aes256-sha256-x25519", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(61)),
    );
    let first_message = Message::parse(&initiator.start().unwrap()).unwrap();
    let cookie = vec![0xC0, 0x0C, 0x1E, 7, 7, 7];
    let challenge = cookie_challenge(&first_message, &cookie);
    let Ok(Step::Send(second)) = initiator.handle(&challenge) else {
        panic!("a COOKIE is answered with the request again");
    };
    let second_message = Message::parse(&second).unwrap();
    assert!(
        matches!(&second_message.payloads[0], Payload::Notify(n) if n.kind == NotifyType::Cookie && n.data == cookie),
        "the cookie comes first"
    );
    assert_eq!(second_message.payloads[1..], first_message.payloads[..]);
    assert_eq!(second_message.header.message_id, 0);

    let mut request = second;
    for _ in 0..2 {
        let actions = engine
            .handle(now, hub_end, spoke_end, &request, &mut pools)
            .unwrap();
        let response = sends(&actions).pop().expect("the hub answers");
        match initiator.handle(&response) {
            Ok(Step::Send(next)) => request = next,
            Ok(Step::Established(e)) => {
                assert!(e.child.is_some());
                return;
            }
            other => panic!("after the cookie: {other:?}"),
        }
    }
    panic!("not established after IKE_AUTH");
}

/// A responder that keeps asking for cookies is given up on, not looped on.
#[test]
fn cookies_without_end_are_refused_after_three_rounds() {
    let mut initiator = Initiator::new(
        spoke("aes256-sha256-x25519", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(62)),
    );
    let request = Message::parse(&initiator.start().unwrap()).unwrap();
    let challenge = cookie_challenge(&request, &[1; 16]);
    for _ in 0..3 {
        assert!(matches!(initiator.handle(&challenge), Ok(Step::Send(_))));
    }
    assert!(matches!(
        initiator.handle(&challenge),
        Err(InitiatorError::Refused(NotifyType::Cookie))
    ));
}

/// A responder's answer to `request` that only asks for `cookie`.
fn cookie_challenge(request: &Message, cookie: &[u8]) -> Vec<u8> {
    let mut challenge = request.clone();
    challenge.header.flags.response = true;
    challenge.header.flags.initiator = false;
    challenge.payloads = vec![Payload::Notify(wire::Notify {
        protocol: ProtocolId::None,
        spi: vec![],
        kind: NotifyType::Cookie,
        data: cookie.to_vec(),
    })];
    challenge.emit()
}
