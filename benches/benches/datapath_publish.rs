//! What one spoke coming or going costs the userspace datapath's tables,
//! against how many spokes are already there (N = 1,000, 4,000, 10,000).
//!
//! `add_spoke` is what `session.rs` does for a new spoke: the
//! virtual-access, its SA pair, its two routes (the pool address /32 and
//! a LAN /24), each published to the workers and taken up by one worker
//! (its inbound SAs built), as a worker does before its next packet.
//! `remove_spoke` is the teardown in reverse. Netlink (the kernel route
//! and the TUN address) is not included: it needs a TUN device.
//! `per_packet/*` are a 64-byte packet each way through tables of N
//! spokes (table lookups dominate at that size): a spoke's ESP taken
//! apart, and a packet from the TUN device routed and sealed.
#![allow(clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use gateway::{
    datapath::{
        userspace::{
            counters::GlobalStats,
            process::{Encap, FromNet, HEADROOM, Processor, TAILROOM},
            tables::{Master, Replica},
        },
        wire::ipv4,
    },
    esp::sa::{EspCipher, OutboundSa},
    iface::{Route, SaLifetime, SaPair, VaId, VirtualAccessSpec},
    ipsec::{Encr, Mode, SaKeys, SystemRng},
    net::Ipv4Prefix,
};

const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
const GCM: Encr = Encr::AesGcm16 { key_bits: 128 };

fn key(seed: u32) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(
        (0..20u32)
            .map(|i| u8::try_from((seed.wrapping_mul(31) ^ i) & 0xff).unwrap())
            .collect(),
    )
}

/// Spoke `i` (from 0): its interface, SA pair and routes.
struct Spoke {
    spec: VirtualAccessSpec,
    sa: SaPair,
    routes: [Route; 2],
}

fn spoke(i: u32) -> Spoke {
    let va = VaId::virtual_access(i + 1);
    let [_, b, c, d] = i.to_be_bytes();
    let outer = SocketAddrV4::new(Ipv4Addr::new(100, 64 + b, c, d), 4500);
    let inner = Ipv4Addr::new(10, 64 + b, c, d);
    let lan = Ipv4Prefix::new(Ipv4Addr::new(10, 128 + (c & 0x7f), d, 0), 24).unwrap();
    Spoke {
        spec: VirtualAccessSpec {
            id: va,
            name: va.to_string(),
            template: Some(1),
            unnumbered: Ipv4Addr::new(10, 0, 0, 1),
            mtu: 1400,
            tcp_adjust_mss: Some(1360),
            nhrp_network_id: Some(1),
            peer_inner: Some(inner),
            local_outer: SocketAddrV4::new(HUB, 4500),
            remote_outer: outer,
        },
        sa: SaPair {
            va,
            spi_in: 0xc000_0000 + i,
            spi_out: 0x5000_0000 + i,
            encr: GCM,
            integ: None,
            inbound: SaKeys {
                encr: key(i),
                integ: zeroize::Zeroizing::new(Vec::new()),
            },
            outbound: SaKeys {
                encr: key(i + 1),
                integ: zeroize::Zeroizing::new(Vec::new()),
            },
            mode: Mode::Transport,
            encap: Some((4500, 4500)),
            local: HUB,
            remote: *outer.ip(),
            esn: false,
            lifetime: SaLifetime::default(),
            defer_outbound: false,
        },
        routes: [
            Route {
                prefix: Ipv4Prefix::new(inner, 32).unwrap(),
                va,
                next_hop: None,
            },
            Route {
                prefix: lan,
                va,
                next_hop: None,
            },
        ],
    }
}

/// The control plane's master copy and one worker's view of it.
struct Hub {
    master: Master,
    replica: Replica,
    processor: Processor,
}

impl Hub {
    fn with(n: u32) -> Self {
        let mut master = Master::default();
        for i in 0..n {
            let s = spoke(i);
            master.create_va(&s.spec).unwrap();
            master.install_sa(&s.sa).unwrap();
            for r in &s.routes {
                master.add_route(r).unwrap();
            }
        }
        let replica = master.follow();
        let mut hub = Hub {
            master,
            replica,
            processor: Processor::new(Arc::new(GlobalStats::default()), None),
        };
        hub.processor.sync(&mut hub.replica);
        hub
    }

    /// What `UserspaceDatapath` does after each change, and what a worker
    /// does with it before its next packet.
    fn publish(&mut self) {
        self.master.publish();
        self.processor.sync(&mut self.replica);
    }

    fn add(&mut self, s: &Spoke) {
        self.master.create_va(&s.spec).unwrap();
        self.publish();
        self.master.install_sa(&s.sa).unwrap();
        self.publish();
        for r in &s.routes {
            self.master.add_route(r).unwrap();
            self.publish();
        }
    }

    fn remove(&mut self, s: &Spoke) {
        for r in s.routes.iter().rev() {
            self.master.remove_route(r).unwrap();
            self.publish();
        }
        self.master.remove_sa(s.spec.id, s.sa.spi_in).unwrap();
        self.publish();
        self.master.remove_va(s.spec.id).unwrap();
        self.publish();
    }
}

fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(size).unwrap().to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = ipv4::checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p
}

fn per_change(c: &mut Criterion, hub: &mut Hub, n: u32) {
    let mut group = c.benchmark_group("datapath_publish");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let extra = spoke(n);
    // Each iteration adds the spoke and removes it again; each benchmark
    // times its own half.
    group.bench_function(BenchmarkId::new("add_spoke", n), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                hub.add(&extra);
                spent += t.elapsed();
                hub.remove(&extra);
            }
            spent
        });
    });
    group.bench_function(BenchmarkId::new("remove_spoke", n), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                hub.add(&extra);
                let t = Instant::now();
                hub.remove(&extra);
                spent += t.elapsed();
            }
            spent
        });
    });
    group.finish();
}

fn per_packet(c: &mut Criterion, hub: &mut Hub, n: u32) {
    let mut group = c.benchmark_group("datapath_publish/per_packet");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    // A spoke in the middle of the tables, sending to another's LAN
    // (both lookups hit) and receiving from the TUN device.
    let s = spoke(n / 2);
    let other = spoke(n / 3);
    let uplink = OutboundSa::new(
        s.sa.spi_in,
        EspCipher::new(GCM, None, &s.sa.inbound.encr, &s.sa.inbound.integ).unwrap(),
    );
    let from_lan = s.routes[1].prefix.addr.octets();
    let src = Ipv4Addr::new(from_lan[0], from_lan[1], from_lan[2], 10);
    let to_lan = other.routes[1].prefix.addr.octets();
    let dst = Ipv4Addr::new(to_lan[0], to_lan[1], to_lan[2], 10);
    let inner = udp_packet(src, HUB, 64);
    let at = uplink.cipher().payload_offset();
    let total = at + 4 + inner.len() + uplink.cipher().overhead_after(4 + inner.len());
    let Hub {
        replica, processor, ..
    } = hub;
    let tables = replica.tables();
    let peer = s.spec.remote_outer;
    group.bench_function(BenchmarkId::new("esp_gre_decapsulate_64", n), |b| {
        b.iter_batched_ref(
            || {
                let mut p = vec![0u8; total];
                p[at..at + 4].copy_from_slice(&[0, 0, 0x08, 0x00]);
                p[at + 4..at + 4 + inner.len()].copy_from_slice(&inner);
                uplink
                    .seal(&mut p, 4 + inner.len(), 47, &mut SystemRng)
                    .unwrap();
                p
            },
            |p| {
                let out = processor.from_network(tables, peer, p);
                assert!(matches!(out, FromNet::ToTun(_)));
            },
            BatchSize::SmallInput,
        );
    });
    let down = udp_packet(HUB, dst, 64);
    let mut buf = vec![0u8; HEADROOM + down.len() + TAILROOM];
    let mut scratch = vec![0u8; 2048];
    group.bench_function(BenchmarkId::new("route_gre_esp_encapsulate_64", n), |b| {
        b.iter(|| {
            buf[HEADROOM..HEADROOM + down.len()].copy_from_slice(&down);
            let to = processor
                .route(tables, &buf[HEADROOM..HEADROOM + down.len()])
                .unwrap();
            let out =
                processor.encapsulate(to, &mut buf, HEADROOM..HEADROOM + down.len(), &mut scratch);
            assert!(matches!(out, Encap::Send { .. }));
        });
    });
    group.finish();
}

fn datapath_publish(c: &mut Criterion) {
    let sizes: Vec<u32> = std::env::var("PUBLISH_BENCH_N").map_or_else(
        |_| vec![1_000, 4_000, 10_000],
        |v| v.split(',').map(|n| n.trim().parse().unwrap()).collect(),
    );
    for n in sizes {
        let mut hub = Hub::with(n);
        per_change(c, &mut hub, n);
        per_packet(c, &mut hub, n);
    }
}

criterion_group!(benches, datapath_publish);
criterion_main!(benches);
