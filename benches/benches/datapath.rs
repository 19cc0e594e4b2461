//! The userspace datapath's per-packet path, without sockets: a packet from
//! the TUN device encapsulated for a spoke (MSS clamp check, MTU check, GRE,
//! ESP seal) and a spoke's packet taken apart (ESP open with the replay
//! window, GRE, anti-spoofing lookup, route lookup), at 64, 512 and 1400
//! bytes of inner packet, with AES-GCM-128 and AES-CBC-128 + HMAC-SHA1, and
//! AES-GCM-128 with extended sequence numbers (RFC 4303 section 2.2.1: the
//! receiver infers the high half, the AAD grows by 4 bytes).
#![allow(clippy::unwrap_used)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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
    ipsec::{Encr, Integ, Mode, SaKeys, SystemRng},
    net::Ipv4Prefix,
};

const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
const SPOKE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 11), 4500);

fn keys(len: usize, seed: u8) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(
        (0..len)
            .map(|i| seed ^ u8::try_from(i % 256).unwrap())
            .collect(),
    )
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

struct Setup {
    replica: Replica,
    processor: Processor,
    /// The spoke's sending side, to make packets for the hub.
    spoke_out: OutboundSa,
}

fn setup(encr: Encr, integ: Option<Integ>, esn: bool) -> Setup {
    let elen = usize::from(encr.key_bits() / 8) + if integ.is_none() { 4 } else { 0 };
    let ilen = integ.map_or(0, Integ::key_len);
    let up = SaKeys {
        encr: keys(elen, 1),
        integ: keys(ilen, 2),
    };
    let down = SaKeys {
        encr: keys(elen, 3),
        integ: keys(ilen, 4),
    };
    let va = VaId::virtual_access(1);
    let mut m = Master::default();
    m.create_va(&VirtualAccessSpec {
        id: va,
        name: "Virtual-Access1".into(),
        template: Some(1),
        unnumbered: Ipv4Addr::new(10, 1, 1, 1),
        mtu: 1400,
        tcp_adjust_mss: Some(1360),
        nhrp_network_id: Some(2),
        peer_inner: Some(Ipv4Addr::new(10, 1, 1, 100)),
        local_outer: SocketAddrV4::new(HUB, 4500),
        remote_outer: SPOKE,
    })
    .unwrap();
    m.install_sa(&SaPair {
        va,
        spi_in: 0xc000_0001,
        spi_out: 0x5000_0001,
        encr,
        integ,
        inbound: up.clone(),
        outbound: down,
        mode: Mode::Transport,
        encap: Some((4500, 4500)),
        local: HUB,
        remote: *SPOKE.ip(),
        esn,
        lifetime: SaLifetime::default(),
        defer_outbound: false,
    })
    .unwrap();
    for prefix in ["10.1.1.100/32", "192.168.1.0/24"] {
        m.add_route(&Route {
            prefix: prefix.parse::<Ipv4Prefix>().unwrap(),
            va,
            next_hop: None,
        })
        .unwrap();
    }
    let mut replica = m.follow();
    let mut processor = Processor::new(Arc::new(GlobalStats::default()), None);
    processor.sync(&mut replica);
    Setup {
        replica,
        processor,
        spoke_out: OutboundSa::new(
            0xc000_0001,
            EspCipher::new(encr, integ, &up.encr, &up.integ).unwrap(),
        )
        .with_esn(esn),
    }
}

fn datapath(c: &mut Criterion) {
    let ciphers: [(&str, Encr, Option<Integ>, bool); 3] = [
        ("aes128gcm16", Encr::AesGcm16 { key_bits: 128 }, None, false),
        (
            "aes128-sha1",
            Encr::AesCbc { key_bits: 128 },
            Some(Integ::HmacSha1_96),
            false,
        ),
        (
            "aes128gcm16-esn",
            Encr::AesGcm16 { key_bits: 128 },
            None,
            true,
        ),
    ];
    for (name, encr, integ, esn) in ciphers {
        let mut group = c.benchmark_group(format!("datapath/{name}"));
        for size in [64usize, 512, 1400] {
            group.throughput(Throughput::Bytes(size as u64));
            let mut s = setup(encr, integ, esn);
            let inner = udp_packet(
                Ipv4Addr::new(192, 168, 0, 10),
                Ipv4Addr::new(192, 168, 1, 10),
                size,
            );
            let mut buf = vec![0u8; HEADROOM + size + TAILROOM];
            let mut scratch = vec![0u8; 2048];
            let to = s.replica.tables().vas[&VaId::virtual_access(1)].clone();
            group.bench_with_input(
                BenchmarkId::new("gre_esp_encapsulate", size),
                &size,
                |b, _| {
                    b.iter(|| {
                        buf[HEADROOM..HEADROOM + size].copy_from_slice(&inner);
                        let out = s.processor.encapsulate(
                            &to,
                            &mut buf,
                            HEADROOM..HEADROOM + size,
                            &mut scratch,
                        );
                        assert!(matches!(out, Encap::Send { .. }));
                    });
                },
            );

            // The spoke's packets, sealed in sequence order outside the timing.
            let back = udp_packet(
                Ipv4Addr::new(192, 168, 1, 10),
                Ipv4Addr::new(192, 168, 0, 10),
                size,
            );
            let at = s.spoke_out.cipher().payload_offset();
            let total = at + 4 + size + s.spoke_out.cipher().overhead_after(4 + size);
            let spoke_out = &s.spoke_out;
            let tables = s.replica.tables();
            let processor = &mut s.processor;
            group.bench_with_input(
                BenchmarkId::new("esp_gre_decapsulate", size),
                &size,
                |b, _| {
                    b.iter_batched_ref(
                        || {
                            let mut p = vec![0u8; total];
                            p[at..at + 4].copy_from_slice(&[0, 0, 0x08, 0x00]);
                            p[at + 4..at + 4 + size].copy_from_slice(&back);
                            spoke_out
                                .seal(&mut p, 4 + size, 47, &mut SystemRng)
                                .unwrap();
                            p
                        },
                        |p| {
                            let out = processor.from_network(tables, SPOKE, p);
                            assert!(matches!(out, FromNet::ToTun(_)));
                        },
                        BatchSize::SmallInput,
                    );
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, datapath);
criterion_main!(benches);
