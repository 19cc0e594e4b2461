//! The exchanges end to end in one process: our initiator against our
//! responder through an in-memory wire, with a seeded RNG and a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use crate::{
    config::{self, Identity},
    ike::{
        engine::{Action, AddressPools, ChildSaParams, Dropped, Engine, nat_hash},
        initiator::{Established, Initiator, InitiatorConfig, InitiatorError, Step},
        policy::Policy,
        proposal::{EspProposal, IkeProposal},
        wire::{
            self, ExchangeType, Message, NotifyType, Payload, ProtocolId, Transform, TransformType,
        },
    },
    ipsec::{Mode, Rng},
    net::Ipv4Prefix,
};

pub struct SeededRng(u64);
impl Rng for SeededRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            // xorshift64*: deterministic, good enough for keys in tests.
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

#[derive(Default)]
pub struct MemPools {
    next: HashMap<String, u8>,
    bound: HashMap<String, Ipv4Addr>,
    pub released: Vec<Ipv4Addr>,
    pub size: u8,
}
impl AddressPools for MemPools {
    fn acquire(&mut self, pool: &str, identity: &str) -> Result<Ipv4Addr, String> {
        if let Some(a) = self.bound.get(identity) {
            return Ok(*a);
        }
        let n = self.next.entry(pool.to_owned()).or_insert(0);
        if *n >= self.size {
            return Err(format!("pool {pool} exhausted"));
        }
        *n += 1;
        let a = Ipv4Addr::new(10, 1, 1, 99 + *n);
        self.bound.insert(identity.to_owned(), a);
        Ok(a)
    }
    fn release(&mut self, _: &str, address: Ipv4Addr) {
        self.released.push(address);
    }
}

const HUB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 1), 500);
const SPOKE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 2), 500);

pub fn hub_config(extra_profile: &str) -> config::Config {
    config::parse(
        &format!(
            r#"
[hub]
local_address = "172.25.1.1"
uplink = "eth0"
[ikev2.profile.Flex]
match_identity_remote = ["fqdn-domain:cisco.com"]
local_identity = "fqdn:hub.cisco.com"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "K"
pool = "FlexSpokes"
virtual_template = 1
{extra_profile}
[ikev2.keyring.K.peer.Spokes]
address = "0.0.0.0/0"
pre_shared_key_local = "hub-key"
pre_shared_key_remote = "spoke-key"
[pool.FlexSpokes]
first = "10.1.1.100"
last = "10.1.1.254"
[virtual_template.1]
unnumbered = "10.1.1.1"
"#
        ),
        "test.toml",
    )
    .unwrap()
}

pub fn hub(extra_profile: &str) -> Engine {
    Engine::new(
        Policy::from_config(&hub_config(extra_profile)).unwrap(),
        Box::new(SeededRng(7)),
    )
}

pub fn spoke(ike: &str, esp: &str, mode: Mode) -> InitiatorConfig {
    InitiatorConfig {
        local: SPOKE,
        remote: HUB,
        identity: Identity::Fqdn("spoke1.cisco.com".into()),
        remote_identity: Some(Identity::Fqdn("hub.cisco.com".into())),
        psk_local: b"spoke-key".to_vec(),
        psk_remote: b"hub-key".to_vec(),
        ike: vec![IkeProposal::parse(ike).unwrap()],
        esp: vec![EspProposal::parse(esp).unwrap()],
        request_address: mode == Mode::Tunnel,
        mode,
        fragment_len: None,
        force_encapsulation: false,
        route_set: vec![],
        tunnel_id: 1,
        profile: "Flex_IKEv2".into(),
        virtual_template: None,
        ts_remote: vec![wire::TrafficSelector::ipv4(
            0,
            0..=65535,
            Ipv4Addr::new(10, 1, 2, 0),
            Ipv4Addr::new(10, 1, 2, 255),
        )],
    }
}

fn sends(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::Send { packet, .. } = a {
                Some(packet.clone())
            } else {
                None
            }
        })
        .collect()
}

/// Runs a dial to completion; returns the result and every hub action.
pub fn dial(
    engine: &mut Engine,
    pools: &mut MemPools,
    config: InitiatorConfig,
    seed: u64,
) -> (Result<Established, InitiatorError>, Vec<Action>) {
    let (result, actions, _) = dial_through(engine, pools, config, seed, |a| a);
    (result, actions)
}

/// Runs a dial to completion, each request going from and to the
/// initiator's `endpoints()` (UDP 500, or 4500 after a NAT-T float), the
/// spoke's end rewritten by `nat` on its way to the hub (a NAT in front of
/// the spoke; `|a| a` for none). Checks that the hub answers from where the
/// request went to where it came from. Returns the initiator as well.
pub fn dial_through(
    engine: &mut Engine,
    pools: &mut MemPools,
    config: InitiatorConfig,
    seed: u64,
    nat: impl Fn(SocketAddrV4) -> SocketAddrV4,
) -> (Result<Established, InitiatorError>, Vec<Action>, Initiator) {
    let mut initiator = Initiator::new(config, Box::new(SeededRng(seed)));
    let mut requests = vec![initiator.start().unwrap()];
    let mut all = Vec::new();
    let now = Instant::now();
    for _ in 0..4 {
        let (from, to) = initiator.endpoints();
        let mut responses = Vec::new();
        for request in &requests {
            let actions = engine.handle(now, to, nat(from), request, pools).unwrap();
            for a in &actions {
                if let Action::Send { local, remote, .. } = a {
                    assert_eq!((*local, *remote), (to, nat(from)), "answered where asked");
                }
            }
            responses.extend(sends(&actions));
            all.extend(actions);
        }
        let response = responses.pop().expect("the hub answers");
        let step = match initiator.handle(&response) {
            Ok(Step::Send(next)) => vec![next],
            Ok(Step::SendAll(fragments)) => fragments,
            Ok(Step::Established(e)) => return (Ok(*e), all, initiator),
            Err(e) => return (Err(e), all, initiator),
        };
        requests = step;
    }
    panic!("no result after four exchanges");
}

fn child_up(actions: &[Action]) -> ChildSaParams {
    let ups: Vec<&ChildSaParams> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ChildUp(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 1, "{actions:?}");
    ups[0].clone()
}

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

#[test]
fn route_set_prefixes_go_to_the_spoke_as_internal_ip4_subnet() {
    let mut engine = hub("route_set = [\"192.168.0.0/16\", \"10.1.2.0/24\"]");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        51,
    );
    let est = result.unwrap();
    let pushed = vec![prefix("192.168.0.0/16"), prefix("10.1.2.0/24")];
    assert_eq!(est.routes, pushed);
    // The spoke routes them via its tunnel; the hub has nothing from the spoke.
    assert_eq!(est.child.unwrap().peer_routes, pushed);
    assert!(child_up(&actions).peer_routes.is_empty());
}

fn prefix(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

#[test]
fn gre_selectors_with_use_transport_mode_give_a_transport_child() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes128-sha1", Mode::Transport),
        3,
    );
    let est = result.unwrap();
    let child = est.child.unwrap();
    assert_eq!(
        child.mode,
        Mode::Transport,
        "the hub answered USE_TRANSPORT_MODE"
    );
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
    assert_eq!(hub_child.mode, Mode::Transport);
    assert_eq!(hub_child.ts_remote[0].ip_protocol, 47);
    assert_eq!(
        hub_child.ts_remote[0].as_ipv4(),
        Some((*SPOKE.ip(), *SPOKE.ip()))
    );
    assert_eq!(
        hub_child.ts_local[0].as_ipv4(),
        Some((*HUB.ip(), *HUB.ip()))
    );
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
fn wrong_psk_and_unknown_identities_are_refused() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.psk_local = b"guess".to_vec();
    let (result, actions) = dial(&mut engine, &mut pools, config, 11);
    assert!(
        matches!(
            result,
            Err(InitiatorError::Refused(NotifyType::AuthenticationFailed))
        ),
        "{result:?}"
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Refused { reason, .. } if reason.contains("pre-shared key does not match"))));
    assert!(engine.report(Instant::now()).is_empty());

    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.identity = Identity::Fqdn("spoke.juniper.net".into());
    let (result, _) = dial(&mut engine, &mut pools, config, 12);
    assert!(matches!(
        result,
        Err(InitiatorError::Refused(NotifyType::AuthenticationFailed))
    ));

    // The hub's AUTH is checked by the initiator too.
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.psk_remote = b"not-the-hub".to_vec();
    let (result, _) = dial(&mut engine, &mut pools, config, 13);
    assert!(
        matches!(result, Err(InitiatorError::AuthFailed)),
        "{result:?}"
    );
}

#[test]
fn an_exhausted_pool_gives_internal_address_failure() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 0,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        21,
    );
    let est = result.unwrap();
    assert_eq!(est.address, None);
    assert!(est.child.is_none(), "no CHILD_SA without an address");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Refused { reason, .. } if reason.contains("FlexSpokes")))
    );
    let auth_reply = sends(&actions).pop().unwrap();
    assert!(Message::parse(&auth_reply).is_ok());
}

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
fn certificate_profiles_are_refused_at_start_until_supported() {
    let mut config = hub_config("");
    config
        .ikev2
        .profile
        .get_mut("Flex")
        .unwrap()
        .authentication_remote = config::AuthMethod::RsaSig;
    let err = Policy::from_config(&config).unwrap_err().to_string();
    assert!(
        err.contains("ikev2.profile.Flex.authentication_remote") && err.contains("not implemented"),
        "{err}"
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
        let est = dial(
            &mut engine,
            &mut pools,
            spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
            seed,
        )
        .0
        .unwrap();
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

// ----- UDP encapsulation (RFC 7296 section 2.23, RFC 3948) -----

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

// ----- `route set` / `route accept any` (INTERNAL_IP4_SUBNET) -----

/// The hub's tunnel id of its one session.
fn session_tunnel_id(actions: &[Action]) -> u32 {
    actions
        .iter()
        .find_map(|a| match a {
            Action::SessionUp { tunnel_id, .. } => Some(*tunnel_id),
            _ => None,
        })
        .expect("SessionUp")
}

#[test]
fn route_accept_installs_the_spokes_subnets_and_refuses_the_dangerous_ones() {
    let mut engine = hub("route_accept = true");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Transport);
    config.request_address = true;
    config.route_set = [
        "192.168.101.0/24",
        "0.0.0.0/0",        // a default route
        "10.1.0.0/16",      // holds the pool 10.1.1.100-254
        "10.1.1.254/32",    // in the pool
        "172.25.0.0/16",    // holds the hub's and the spoke's outer addresses
        "192.168.101.0/24", // again
        "192.168.102.128/25",
    ]
    .iter()
    .map(|p| prefix(p))
    .collect();
    let (result, actions) = dial(&mut engine, &mut pools, config, 91);
    let est = result.unwrap();
    assert_eq!(est.address, Some(Ipv4Addr::new(10, 1, 1, 100)));
    let child = child_up(&actions);
    assert_eq!(
        child.peer_routes,
        [prefix("192.168.101.0/24"), prefix("192.168.102.128/25")]
    );
    // What the datapath builds the virtual-access from.
    assert_eq!(child.peer_inner, Some(Ipv4Addr::new(10, 1, 1, 100)));
    assert_eq!(child.tunnel_id, session_tunnel_id(&actions));
    assert_eq!(child.profile, "Flex");
    assert_eq!(child.virtual_template, Some(1));
    // The spoke's own view: no inner address for the hub, what it pushed.
    let ours = est.child.unwrap();
    assert_eq!(
        (ours.peer_inner, ours.tunnel_id, ours.profile.as_str()),
        (None, 1, "Flex_IKEv2")
    );
    assert!(ours.peer_routes.is_empty());
}

#[test]
fn without_route_accept_the_spokes_subnets_are_ignored() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.route_set = vec![prefix("192.168.101.0/24")];
    let (result, actions) = dial(&mut engine, &mut pools, config, 92);
    assert_eq!(result.unwrap().address, Some(Ipv4Addr::new(10, 1, 1, 100)));
    assert!(child_up(&actions).peer_routes.is_empty());
}

#[test]
fn a_cfg_request_with_subnets_only_asks_for_no_address() {
    let mut engine = hub("route_accept = true");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.request_address = false;
    config.route_set = vec![prefix("192.168.101.0/24")];
    let (result, actions) = dial(&mut engine, &mut pools, config, 93);
    let est = result.unwrap();
    assert_eq!(est.address, None);
    assert!(est.child.is_some(), "no INTERNAL_ADDRESS_FAILURE");
    let child = child_up(&actions);
    assert_eq!(child.peer_inner, None);
    assert_eq!(child.peer_routes, [prefix("192.168.101.0/24")]);
    assert!(
        pools.released.is_empty() && !actions.iter().any(|a| matches!(a, Action::Refused { .. }))
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
