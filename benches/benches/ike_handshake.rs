//! One full dial per iteration: IKE_SA_INIT + IKE_AUTH with a CFG_REQUEST
//! and a CHILD_SA, our initiator against our responder in memory, per DH
//! group. The inverse of the time is handshakes per second per core (both
//! halves' crypto included, so the responder alone does better).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Instant,
};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::{
    config::{self, Identity},
    ike::{
        engine::Engine,
        exchange::{Initiator, InitiatorConfig, Step},
        policy::Policy,
        proposal::{EspProposal, IkeProposal},
        sa::{Action, AddressPools},
        wire::TrafficSelector,
    },
    ipsec::{Mode, SystemRng},
};

const HUB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 1), 500);
const SPOKE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 2), 500);

/// Hands out one address per identity, in memory (the real pool writes a
/// file per change; that cost is not what this measures).
struct Counter(u32);
impl AddressPools for Counter {
    fn acquire(&mut self, _: &str, _: &str) -> Result<Ipv4Addr, String> {
        self.0 = self.0.wrapping_add(1);
        Ok(Ipv4Addr::from(0x0a00_0000 | (self.0 & 0x00ff_ffff)))
    }
    fn release(&mut self, _: &str, _: Ipv4Addr) {}
}

fn hub() -> Engine {
    let config = config::parse(
        r#"
[hub]
local_address = "172.25.1.1"
uplink = "eth0"
[ikev2.profile.Flex]
match_identity_remote = ["any"]
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "K"
pool = "P"
virtual_template = 1
[ikev2.keyring.K.peer.All]
address = "0.0.0.0/0"
pre_shared_key_local = "k"
pre_shared_key_remote = "k"
[pool.P]
first = "10.2.0.1"
last = "10.2.255.254"
[virtual_template.1]
unnumbered = "10.1.1.1"
"#,
        "bench.toml",
    )
    .unwrap();
    Engine::new(Policy::from_config(&config).unwrap(), Box::new(SystemRng))
}

fn handshake(engine: &mut Engine, pools: &mut Counter, ike: &IkeProposal, esp: &EspProposal) {
    let config = InitiatorConfig {
        local: SPOKE,
        remote: HUB,
        identity: Identity::Fqdn("spoke.bench".into()),
        remote_identity: None,
        psk_local: b"k".to_vec(),
        psk_remote: b"k".to_vec(),
        ike: vec![ike.clone()],
        esp: vec![esp.clone()],
        request_address: true,
        mode: Mode::Tunnel,
        fragment_len: None,
        force_encapsulation: false,
        route_set: vec![],
        tunnel_id: 1,
        profile: "Flex".into(),
        virtual_template: None,
        rekey: gateway::ike::policy::Rekey::default(),
        ts_remote: vec![TrafficSelector::ipv4(
            0,
            0..=65535,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
        )],
    };
    let mut initiator = Initiator::new(config, Box::new(SystemRng));
    let mut request = initiator.start().unwrap();
    loop {
        let actions = engine
            .handle(Instant::now(), HUB, SPOKE, &request, pools)
            .unwrap();
        let response = actions
            .into_iter()
            .find_map(|a| {
                if let Action::Send { packet, .. } = a {
                    Some(packet)
                } else {
                    None
                }
            })
            .unwrap();
        match initiator.handle(&response).unwrap() {
            Step::Send(next) => request = next,
            Step::SendAll(_) => unreachable!("no fragmentation configured"),
            Step::Established(_) => return,
        }
    }
}

fn ike_handshakes(c: &mut Criterion) {
    let esp = EspProposal::parse("aes256gcm16").unwrap();
    let mut group = c.benchmark_group("ike_handshake");
    for ike in [
        "aes256gcm16-prfsha256-x25519",
        "aes256gcm16-prfsha256-ecp256",
        "aes256gcm16-prfsha384-ecp384",
        "aes256gcm16-prfsha512-ecp521",
        "aes256gcm16-prfsha256-modp2048",
        "aes256-sha256-x25519",
    ] {
        let proposal = IkeProposal::parse(ike).unwrap();
        let mut engine = hub();
        let mut pools = Counter(0);
        group.bench_function(ike, |b| {
            b.iter(|| handshake(&mut engine, &mut pools, &proposal, &esp));
        });
    }
    group.finish();
}

criterion_group!(benches, ike_handshakes);
criterion_main!(benches);
