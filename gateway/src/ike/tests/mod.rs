//! The exchanges end to end in one process: our initiator against our
//! responder through an in-memory wire, with a seeded RNG and a fake clock;
//! one file per exchange, and the engine's own (window, timers, keys).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use crate::{
    config::{self, Identity},
    ike::{
        crypto::DhGroup,
        engine::Engine,
        exchange::{Established, Initiator, InitiatorConfig, InitiatorError, Step},
        policy::Policy,
        proposal::{EspProposal, IkeProposal},
        sa::{Action, AddressPools, ChildSaParams, DerivedKeys, Dropped, nat_hash},
        wire::{
            self, ExchangeType, Header, HeaderFlags, KeyExchange, Message, NotifyType, Payload,
            PayloadType, Proposal, ProtocolId, Transform, TransformType,
        },
        workers::Workers,
    },
    ipsec::{Mode, Rng},
    net::Ipv4Prefix,
};

mod compute;
mod engine;
mod fragments;
mod ike_auth;
mod ike_sa_init;
mod informational;
mod nat;
mod rekey;

pub struct SeededRng(pub u64);
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
        rekey: crate::ike::policy::Rekey::default(),
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

fn prefix(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

/// Pools that hand out nothing (IKE_SA_INIT needs none).
pub struct NoPools;

impl AddressPools for NoPools {
    fn acquire(&mut self, _: &str, _: &str) -> Result<Ipv4Addr, String> {
        Err("no pools in this test".into())
    }
    fn release(&mut self, _: &str, _: Ipv4Addr) {}
}

/// The hub of `examples/hub.toml`.
pub fn example_hub() -> Engine {
    let config = config::parse(include_str!("../../../../examples/hub.toml"), "hub.toml").unwrap();
    Engine::new(
        Policy::from_config(&config).unwrap(),
        Box::new(SeededRng(3)),
    )
}

fn transform(kind: TransformType, id: u16, key_length: Option<u16>) -> Transform {
    Transform {
        kind,
        id,
        key_length,
        other_attributes: vec![],
    }
}

/// An IKE_SA_INIT request offering `encr_id` (AES-CBC-256 is 12) with
/// SHA-256 and Curve25519, and a KE for `ke_group`.
pub fn sa_init(spi_i: u64, encr_id: u16, ke_group: u16) -> Vec<u8> {
    let proposal = Proposal {
        number: 1,
        protocol: ProtocolId::Ike,
        spi: vec![],
        transforms: vec![
            transform(TransformType::Encr, encr_id, Some(256)),
            transform(TransformType::Prf, 5, None),
            transform(TransformType::Integ, 12, None),
            transform(TransformType::Dh, 31, None),
        ],
    };
    let ke = DhGroup::Curve25519.generate(&mut SeededRng(spi_i)).unwrap();
    Message {
        header: Header {
            spi_i,
            spi_r: 0,
            next_payload: PayloadType::None,
            major_version: 2,
            minor_version: 0,
            exchange: ExchangeType::IkeSaInit,
            flags: HeaderFlags {
                initiator: true,
                response: false,
                version: false,
            },
            message_id: 0,
            length: 0,
        },
        payloads: vec![
            Payload::Sa(vec![proposal]),
            Payload::Ke(KeyExchange {
                group: ke_group,
                data: ke.public_key().to_vec(),
            }),
            Payload::Nonce(vec![7; 32]),
        ],
    }
    .emit()
}

/// An IKE_SA_INIT request like `sa_init`'s, for MODP-2048 (group 14):
/// the slowest job there is, some milliseconds.
pub fn modp_init(spi_i: u64) -> Vec<u8> {
    let mut message = Message::parse(&sa_init(spi_i, 12, 31)).unwrap();
    for p in &mut message.payloads {
        match p {
            Payload::Sa(proposals) => {
                for t in &mut proposals[0].transforms {
                    if t.kind == TransformType::Dh {
                        t.id = 14;
                    }
                }
            }
            Payload::Ke(ke) => {
                ke.group = 14;
                ke.data = vec![0; 256];
                ke.data[255] = 2;
            }
            _ => {}
        }
    }
    message.emit()
}

pub fn only_send(actions: &[Action]) -> Message {
    let packets: Vec<&Vec<u8>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { packet, .. } => Some(packet),
            _ => None,
        })
        .collect();
    assert_eq!(packets.len(), 1, "{actions:?}");
    Message::parse(packets[0]).unwrap()
}

pub fn addrs() -> (SocketAddrV4, SocketAddrV4) {
    (
        "192.0.2.1:500".parse().unwrap(),
        "198.51.100.7:500".parse().unwrap(),
    )
}
