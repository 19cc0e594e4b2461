//! Per-packet cost of the XDP uplink filter, per verdict path, measured by the
//! kernel itself (BPF_PROG_TEST_RUN with `repeat`): no syscall per packet in
//! the figure. Needs root; prints why and does nothing otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::Ipv4Addr, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::xdp::{SPREAD_QUEUE_SIZE, XdpFilter};
use gateway_common::XdpConfig;
use integration::{frame, packets};

const SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 2);
const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);

fn xdp_verdicts(c: &mut Criterion) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("xdp_verdict: skipped, loading XDP programs needs root");
        return;
    }
    // No IKE limit, so the IKE case measures the plain pass path; the
    // bucket case below has its own filter.
    let mut filter = XdpFilter::load(XdpConfig::ike_limit(0, 0)).unwrap();
    // A realistic map: 2,000 spokes with two SAs each.
    for spi in 1..=4_000 {
        filter.add_sa(spi).unwrap();
    }
    // The default limit (20/s, burst 40): after the burst every packet takes
    // the bucket lookup, refill and drop path.
    let mut limited = XdpFilter::load(XdpConfig::ike_limit(20, 40)).unwrap();
    // Spreading on: known SPIs take the CPU map redirect. Without live
    // frames the kernel runs the program (hash, slot lookup,
    // bpf_redirect_map) but not the redirect itself: this is the cost on the
    // receiving CPU, not the cross-CPU hand-off.
    let mut spreading = XdpFilter::load(XdpConfig::ike_limit(0, 0)).unwrap();
    for spi in 1..=4_000 {
        spreading.add_sa(spi).unwrap();
    }
    spreading.spread_esp(SPREAD_QUEUE_SIZE).unwrap();

    let ike = packets::ike_sa_init_like(1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "esp_in_udp_known_spi_1400B",
            frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &packets::esp(1234, 1, 1400)),
        ),
        (
            "esp_in_udp_unknown_spi_drop",
            frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &packets::esp(0xdead_0000, 1, 1400)),
        ),
        (
            "raw_esp_known_spi_1400B",
            frame::ethernet_ipv4(SPOKE, HUB, 50, &packets::esp(1234, 1, 1400)),
        ),
        (
            "ike_no_limit",
            frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 500, &ike),
        ),
        (
            "other_udp_pass",
            frame::ethernet_ipv4_udp(SPOKE, HUB, 40000, 53, b"query"),
        ),
    ];
    let mut group = c.benchmark_group("xdp_verdict");
    for (name, frame) in &cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| per_packet(&mut filter, frame, iters));
        });
    }
    let ike_frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 500, &ike);
    group.bench_function("ike_token_bucket", |b| {
        b.iter_custom(|iters| per_packet(&mut limited, &ike_frame, iters));
    });
    let spread_cases = [
        (
            "esp_in_udp_known_spi_redirect",
            frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &packets::esp(1234, 1, 1400)),
        ),
        (
            "raw_esp_known_spi_redirect",
            frame::ethernet_ipv4(SPOKE, HUB, 50, &packets::esp(1234, 1, 1400)),
        ),
    ];
    for (name, frame) in &spread_cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| per_packet(&mut spreading, frame, iters));
        });
    }
    group.finish();
}

/// Total time for `iters` packets, from the kernel's average per run.
fn per_packet(filter: &mut XdpFilter, frame: &[u8], iters: u64) -> Duration {
    let repeat = u32::try_from(iters).unwrap_or(u32::MAX);
    let each = filter.time_verdict(frame, repeat).expect("test run");
    each * u32::try_from(iters).unwrap_or(u32::MAX)
}

criterion_group!(benches, xdp_verdicts);
criterion_main!(benches);
