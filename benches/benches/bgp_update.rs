//! BGP UPDATE codec: encode and decode an UPDATE with 1, 100 and 1000 /24
//! prefixes sharing one attribute set (what a hub's iBGP peers send: ORIGIN,
//! empty AS_PATH, NEXT_HOP, LOCAL_PREF, one community). Throughput in
//! prefixes; 1000 /24s is about the most one 4096-byte message holds.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gateway::bgp::types::{Message, Origin, PathAttributes, Update};
use gateway::bgp::wire::{decode, encode, encode_to_vec};
use gateway::net::Ipv4Prefix;

fn update(prefixes: u32) -> Message {
    Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(PathAttributes {
            origin: Origin::Igp,
            as_path: vec![],
            next_hop: Ipv4Addr::new(10, 1, 1, 100),
            med: None,
            local_pref: Some(100),
            atomic_aggregate: false,
            aggregator: None,
            communities: vec![0xfde9_0064],
            originator_id: None,
            cluster_list: vec![],
            other: vec![],
        }),
        nlri: (0..prefixes)
            .map(|i| Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 | (i << 8)), 24).unwrap())
            .collect(),
    })
}

fn bgp_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("bgp_update");
    for prefixes in [1u32, 100, 1000] {
        let msg = update(prefixes);
        let bytes = encode_to_vec(&msg).unwrap();
        group.throughput(Throughput::Elements(prefixes.into()));
        let mut out = Vec::with_capacity(bytes.len());
        group.bench_with_input(BenchmarkId::new("encode", prefixes), &msg, |b, msg| {
            b.iter(|| {
                out.clear();
                encode(black_box(msg), &mut out).unwrap()
            });
        });
        group.bench_with_input(BenchmarkId::new("decode", prefixes), &bytes, |b, bytes| {
            b.iter(|| decode(black_box(bytes)).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bgp_update);
criterion_main!(benches);
