//! BPF_PROG_TEST_RUN fixtures: the real program in the real kernel, fed exact
//! frames, checked for verdict, untouched bytes, and counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::Ipv4Addr, time::Duration};

use gateway_common::{Verdict, XdpConfig, spread_slot};
use integration::frame;

use super::{
    SPREAD_QUEUE_SIZE, XDP_DROP, XDP_PASS, XDP_REDIRECT, XdpError, XdpFilter, monotonic_now_ns,
};

const SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 2);
const OTHER_SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 3);
const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);

/// A loaded filter, or `None` (with the reason printed) when this process
/// may not load BPF programs.
fn filter(config: XdpConfig) -> Option<XdpFilter> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: loading XDP programs needs root (CAP_BPF + CAP_NET_ADMIN)");
        return None;
    }
    Some(XdpFilter::load(config).expect("load XDP program"))
}

fn no_limit() -> XdpConfig {
    XdpConfig::ike_limit(0, 0)
}

fn ike_header() -> Vec<u8> {
    integration::packets::ike_sa_init_like(0x0102_0304_0506_0708)
}

/// Runs `frame` and checks the action and that the bytes were not touched.
fn run(filter: &mut XdpFilter, frame: &[u8], action: u32) {
    let outcome = filter.test_run(frame).expect("test run");
    assert_eq!(outcome.action, action, "XDP action for frame {frame:02x?}");
    assert_eq!(
        outcome.frame, frame,
        "the filter must never rewrite a frame"
    );
}

fn count(filter: &XdpFilter, verdict: Verdict) -> u64 {
    filter.report().unwrap().packets(verdict.name())
}

#[test]
fn ike_on_port_500_passes_and_is_counted() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    let frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 500, &ike_header());
    run(&mut f, &frame, XDP_PASS);
    let report = f.report().unwrap();
    assert_eq!(report.packets(Verdict::PassIke.name()), 1);
    let bytes = report
        .verdicts
        .iter()
        .find(|v| v.verdict == "pass_ike")
        .unwrap()
        .bytes;
    assert_eq!(bytes, frame.len() as u64);
    assert_eq!(
        report.verdicts.iter().map(|v| v.packets).sum::<u64>(),
        1,
        "counted once, in one slot"
    );
}

#[test]
fn ike_behind_non_esp_marker_on_4500_passes() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    let payload = integration::packets::non_esp_marker(&ike_header());
    let frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &payload);
    run(&mut f, &frame, XDP_PASS);
    assert_eq!(count(&f, Verdict::PassIke), 1);
}

#[test]
fn ike_over_the_source_bucket_is_dropped() {
    // One packet a second, burst 3: of 10 back-to-back packets from one
    // source, 3 pass and 7 are dropped; another source has its own bucket.
    let Some(mut f) = filter(XdpConfig::ike_limit(1, 3)) else {
        return;
    };
    let frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 500, &ike_header());
    for i in 0..10 {
        let expected = if i < 3 { XDP_PASS } else { XDP_DROP };
        run(&mut f, &frame, expected);
    }
    assert_eq!(count(&f, Verdict::PassIke), 3);
    assert_eq!(count(&f, Verdict::DropIkeRateLimited), 7);

    let other = frame::ethernet_ipv4_udp(OTHER_SPOKE, HUB, 500, 500, &ike_header());
    run(&mut f, &other, XDP_PASS);
    // IKE on 4500 shares the source's bucket with port 500.
    let natt = frame::ethernet_ipv4_udp(
        SPOKE,
        HUB,
        4500,
        4500,
        &integration::packets::non_esp_marker(&ike_header()),
    );
    run(&mut f, &natt, XDP_DROP);
}

#[test]
fn ike_limit_off_passes_everything() {
    let Some(mut f) = filter(XdpConfig::ike_limit(0, 0)) else {
        return;
    };
    let frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 500, &ike_header());
    for _ in 0..50 {
        run(&mut f, &frame, XDP_PASS);
    }
    assert_eq!(count(&f, Verdict::PassIke), 50);
}

#[test]
fn esp_in_udp_with_known_spi_passes_and_counts_on_the_sa() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0xc0ff_ee01).unwrap();
    let esp = integration::packets::esp(0xc0ff_ee01, 1, 64);
    let frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &esp);
    run(&mut f, &frame, XDP_PASS);
    run(&mut f, &frame, XDP_PASS);
    let report = f.report().unwrap();
    assert_eq!(report.packets(Verdict::PassEspInUdp.name()), 2);
    let sa = report.sa(0xc0ff_ee01).expect("SA listed");
    assert_eq!(sa.packets, 2);
    // Per-SA bytes are IPv4 bytes: 20 IP + 8 UDP + ESP.
    assert_eq!(sa.bytes, 2 * (20 + 8 + esp.len() as u64));
    assert!(
        sa.last_seen_ms_ago.is_some_and(|ms| ms < 60_000),
        "last seen set: {sa:?}"
    );
}

#[test]
fn esp_in_udp_with_unknown_spi_is_dropped() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0xc0ff_ee01).unwrap();
    let frame = frame::ethernet_ipv4_udp(
        SPOKE,
        HUB,
        4500,
        4500,
        &integration::packets::esp(0xdead_beef, 1, 64),
    );
    run(&mut f, &frame, XDP_DROP);
    let report = f.report().unwrap();
    assert_eq!(report.packets(Verdict::DropEspInUdpUnknownSpi.name()), 1);
    assert_eq!(
        report.sa(0xc0ff_ee01).unwrap().packets,
        0,
        "another SA is not charged"
    );
}

#[test]
fn raw_esp_known_passes_unknown_drops() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    let known = frame::ethernet_ipv4(
        SPOKE,
        HUB,
        50,
        &integration::packets::esp(0x0000_1001, 7, 100),
    );
    let unknown = frame::ethernet_ipv4(
        SPOKE,
        HUB,
        50,
        &integration::packets::esp(0x0000_1002, 7, 100),
    );
    run(&mut f, &known, XDP_PASS);
    run(&mut f, &unknown, XDP_DROP);
    let report = f.report().unwrap();
    assert_eq!(report.packets(Verdict::PassEsp.name()), 1);
    assert_eq!(report.packets(Verdict::DropEspUnknownSpi.name()), 1);
    assert_eq!(report.sa(0x0000_1001).unwrap().packets, 1);
}

#[test]
fn removed_sa_is_dropped_again() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(42).unwrap();
    let frame = frame::ethernet_ipv4(SPOKE, HUB, 50, &integration::packets::esp(42, 1, 32));
    run(&mut f, &frame, XDP_PASS);
    f.remove_sa(42).unwrap();
    run(&mut f, &frame, XDP_DROP);
    assert!(f.report().unwrap().sa(42).is_none());
}

#[test]
fn sa_install_errors_are_explicit() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(7).unwrap();
    assert!(matches!(f.add_sa(7), Err(XdpError::SpiExists { spi: 7 })));
    assert!(matches!(f.add_sa(0), Err(XdpError::SpiZero)));
    assert!(matches!(
        f.remove_sa(8),
        Err(XdpError::SpiUnknown { spi: 8 })
    ));
}

#[test]
fn natt_keepalive_passes_even_in_a_padded_frame() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    let mut frame = frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &[0xff]);
    run(&mut f, &frame, XDP_PASS);
    // Ethernet pads short frames to 60 bytes; the UDP length still says 1.
    frame.resize(60, 0);
    run(&mut f, &frame, XDP_PASS);
    assert_eq!(count(&f, Verdict::PassNattKeepalive), 2);
}

#[test]
fn non_first_fragments_pass_to_the_kernel() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    // A non-first fragment of ESP-in-UDP: no UDP header to look at.
    let frame = frame::Ipv4Frame::new(SPOKE, HUB, 17)
        .fragment_offset(185)
        .payload(&[0xab; 40])
        .build();
    run(&mut f, &frame, XDP_PASS);
    assert_eq!(count(&f, Verdict::PassFragment), 1);
}

#[test]
fn malformed_headers_pass_and_are_counted() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    let good = frame::ethernet_ipv4_udp(
        SPOKE,
        HUB,
        4500,
        4500,
        &integration::packets::esp(99, 1, 16),
    );
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // IPv4 header cut short.
    cases.push(("truncated ipv4", good[..14 + 10].to_vec()));
    // IHL of 4 words (16 bytes) is below the 20-byte minimum.
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    cases.push(("ihl < 5", bad_ihl));
    // Version 6 in an IPv4 ethertype.
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    cases.push(("version 6 under ethertype 0x0800", bad_version));
    // UDP header cut short.
    cases.push(("truncated udp", good[..14 + 20 + 4].to_vec()));
    // UDP length below the header size.
    let mut bad_udp_len = good.clone();
    bad_udp_len[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    cases.push(("udp length < 8", bad_udp_len));
    // Two bytes on 4500: neither a keepalive nor a marker nor an SPI.
    cases.push((
        "2-byte payload on 4500",
        frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &[1, 2]),
    ));
    // SPI present but no sequence number.
    cases.push((
        "esp-in-udp without sequence number",
        frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &[0, 0, 0, 99, 0]),
    ));
    // Raw ESP with only 4 bytes.
    cases.push((
        "raw esp of 4 bytes",
        frame::ethernet_ipv4(SPOKE, HUB, 50, &[0, 0, 0, 99]),
    ));
    // A one-byte payload on 4500 that is not 0xff.
    cases.push((
        "1-byte non-keepalive",
        frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &[0x00]),
    ));
    for (name, frame) in &cases {
        let outcome = f.test_run(frame).unwrap();
        assert_eq!(
            outcome.action, XDP_PASS,
            "{name}: malformed frames go to the kernel"
        );
        assert_eq!(&outcome.frame, frame, "{name}: untouched");
    }
    assert_eq!(count(&f, Verdict::PassMalformed), cases.len() as u64);
}

#[test]
fn everything_else_passes_untouched() {
    let Some(mut f) = filter(XdpConfig::ike_limit(1, 1)) else {
        return;
    };
    // ARP and IPv6 are not IPv4.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    run(&mut f, &arp, XDP_PASS);
    let mut ipv6 = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xdd];
    ipv6.extend_from_slice(&[0x60; 40]);
    run(&mut f, &ipv6, XDP_PASS);
    assert_eq!(count(&f, Verdict::PassNotIpv4), 2);
    // BGP (TCP 179), DNS-like UDP, ICMP, and UDP *from* port 500 to another
    // port: none of them is IKE or ESP, and the IKE limit does not apply.
    let tcp = frame::ethernet_ipv4(SPOKE, HUB, 6, &[0u8; 20]);
    let udp = frame::ethernet_ipv4_udp(SPOKE, HUB, 40000, 53, b"query");
    let icmp = frame::ethernet_ipv4(SPOKE, HUB, 1, &[8, 0, 0, 0, 0, 1, 0, 1]);
    let from_500 = frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 33000, b"x");
    for frame in [&tcp, &udp, &icmp, &from_500, &from_500] {
        run(&mut f, frame, XDP_PASS);
    }
    assert_eq!(count(&f, Verdict::PassOther), 5);
}

#[test]
fn ip_options_are_skipped_before_the_transport_header() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x5151).unwrap();
    // IHL 6: four bytes of options (NOP x4) between the IPv4 and UDP headers.
    let plain = frame::ethernet_ipv4_udp(
        SPOKE,
        HUB,
        4500,
        4500,
        &integration::packets::esp(0x5151, 1, 16),
    );
    let mut frame = plain[..14 + 20].to_vec();
    frame.extend_from_slice(&[1, 1, 1, 1]);
    frame.extend_from_slice(&plain[14 + 20..]);
    frame[14] = 0x46;
    let total_len = u16::try_from(frame.len() - 14).unwrap();
    frame[14 + 2..14 + 4].copy_from_slice(&total_len.to_be_bytes());
    frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let checksum = frame::internet_checksum(&frame[14..14 + 24]);
    frame[14 + 10..14 + 12].copy_from_slice(&checksum.to_be_bytes());
    run(&mut f, &frame, XDP_PASS);
    assert_eq!(count(&f, Verdict::PassEspInUdp), 1);
}

/// Known-SPI ESP (raw and ESP-in-UDP) and its counters, for the spreading tests.
fn known_esp_frames(spi: u32) -> (Vec<u8>, Vec<u8>) {
    let esp = integration::packets::esp(spi, 1, 64);
    (
        frame::ethernet_ipv4(SPOKE, HUB, 50, &esp),
        frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &esp),
    )
}

fn online_cpus() -> u32 {
    u32::try_from(aya::util::online_cpus().unwrap().len()).unwrap()
}

// BPF_PROG_TEST_RUN (without BPF_F_TEST_XDP_LIVE_FRAMES) runs the program
// and reports its return value; the kernel does not carry out the redirect.
// So these tests see XDP_REDIRECT only when `bpf_redirect_map` found a queue
// for the chosen CPU (an empty CPU map entry makes it return the XDP_PASS
// fallback), plus the verdict and per-SA counters. That the redirected
// packet really reaches the stack is the integration test's job.

#[test]
fn spread_on_redirects_known_esp_and_esp_in_udp() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    let cpus = f.spread_esp(SPREAD_QUEUE_SIZE).unwrap();
    assert_eq!(cpus, online_cpus(), "one slot per online CPU");
    let (raw, udp) = known_esp_frames(0x0000_1001);
    run(&mut f, &raw, XDP_REDIRECT);
    run(&mut f, &udp, XDP_REDIRECT);
    run(&mut f, &udp, XDP_REDIRECT);
    let report = f.report().unwrap();
    assert_eq!(report.spread_cpus, u64::from(cpus));
    assert_eq!(report.packets(Verdict::RedirectEsp.name()), 1);
    assert_eq!(report.packets(Verdict::RedirectEspInUdp.name()), 2);
    assert_eq!(report.packets(Verdict::PassEsp.name()), 0);
    assert_eq!(report.packets(Verdict::PassEspInUdp.name()), 0);
    assert_eq!(
        report.sa(0x0000_1001).unwrap().packets,
        3,
        "redirected packets are counted on their SA"
    );
    let redirect = report
        .verdicts
        .iter()
        .find(|v| v.verdict == "redirect_esp_in_udp")
        .unwrap();
    assert_eq!(
        (redirect.action.as_str(), redirect.drop),
        ("redirect", false)
    );
    assert_eq!(redirect.bytes, 2 * udp.len() as u64);
}

#[test]
fn spread_off_passes_known_esp_as_before() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    let (raw, udp) = known_esp_frames(0x0000_1001);
    run(&mut f, &raw, XDP_PASS);
    run(&mut f, &udp, XDP_PASS);
    // On, then off again: the CPU map stays filled but is no longer used.
    f.spread_esp(SPREAD_QUEUE_SIZE).unwrap();
    run(&mut f, &udp, XDP_REDIRECT);
    f.stop_spreading().unwrap();
    run(&mut f, &raw, XDP_PASS);
    run(&mut f, &udp, XDP_PASS);
    let report = f.report().unwrap();
    assert_eq!(report.spread_cpus, 0);
    assert_eq!(report.packets(Verdict::PassEsp.name()), 2);
    assert_eq!(report.packets(Verdict::PassEspInUdp.name()), 2);
    assert_eq!(report.packets(Verdict::RedirectEspInUdp.name()), 1);
    assert_eq!(report.packets(Verdict::RedirectEsp.name()), 0);
}

#[test]
fn spread_leaves_unknown_spis_ike_and_keepalives_alone() {
    let Some(mut f) = filter(XdpConfig::ike_limit(1, 2)) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    f.spread_esp(SPREAD_QUEUE_SIZE).unwrap();
    let (raw_unknown, udp_unknown) = known_esp_frames(0x0000_1002);
    run(&mut f, &raw_unknown, XDP_DROP);
    run(&mut f, &udp_unknown, XDP_DROP);
    // IKE on 500 and behind the marker on 4500: passed within the burst of
    // 2, then rate-limited, never redirected.
    let ike = frame::ethernet_ipv4_udp(SPOKE, HUB, 500, 500, &ike_header());
    let ike_4500 = frame::ethernet_ipv4_udp(
        SPOKE,
        HUB,
        4500,
        4500,
        &integration::packets::non_esp_marker(&ike_header()),
    );
    run(&mut f, &ike, XDP_PASS);
    run(&mut f, &ike_4500, XDP_PASS);
    run(&mut f, &ike, XDP_DROP);
    let keepalive = frame::ethernet_ipv4_udp(SPOKE, HUB, 4500, 4500, &[0xff]);
    run(&mut f, &keepalive, XDP_PASS);
    let other = frame::ethernet_ipv4_udp(SPOKE, HUB, 40000, 53, b"query");
    run(&mut f, &other, XDP_PASS);
    let report = f.report().unwrap();
    assert_eq!(report.packets(Verdict::DropEspUnknownSpi.name()), 1);
    assert_eq!(report.packets(Verdict::DropEspInUdpUnknownSpi.name()), 1);
    assert_eq!(report.packets(Verdict::PassIke.name()), 2);
    assert_eq!(report.packets(Verdict::DropIkeRateLimited.name()), 1);
    assert_eq!(report.packets(Verdict::PassNattKeepalive.name()), 1);
    assert_eq!(report.packets(Verdict::PassOther.name()), 1);
    assert_eq!(
        report.packets(Verdict::RedirectEsp.name())
            + report.packets(Verdict::RedirectEspInUdp.name()),
        0
    );
    assert_eq!(report.sa(0x0000_1001).unwrap().packets, 0);
}

#[test]
fn failed_redirect_falls_back_to_pass() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    // Spreading switched on in the config but the CPU map left empty:
    // `bpf_redirect_map` finds no queue for the CPU and returns the fallback.
    f.set_config(no_limit().with_spread(1)).unwrap();
    let (raw, udp) = known_esp_frames(0x0000_1001);
    run(&mut f, &raw, XDP_PASS);
    run(&mut f, &udp, XDP_PASS);
    // More slots than the slot map holds: the slot lookup fails, also a pass.
    f.spread_esp(SPREAD_QUEUE_SIZE).unwrap();
    f.set_config(no_limit().with_spread(u64::from(u32::MAX)))
        .unwrap();
    let possible = u32::try_from(aya::util::nr_cpus().unwrap()).unwrap();
    let beyond = (1..u32::MAX)
        .find(|&spi| spread_slot(spi, u32::MAX) >= possible)
        .unwrap();
    f.add_sa(beyond).unwrap();
    let (_, far) = known_esp_frames(beyond);
    run(&mut f, &far, XDP_PASS);
    let report = f.report().unwrap();
    assert_eq!(report.packets(Verdict::PassEsp.name()), 1);
    assert_eq!(report.packets(Verdict::PassEspInUdp.name()), 2);
    assert_eq!(
        report.packets(Verdict::RedirectEsp.name())
            + report.packets(Verdict::RedirectEspInUdp.name()),
        0
    );
}

#[test]
fn refused_cpu_map_is_a_clear_error_and_spreading_stays_off() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    // The kernel caps a cpumap queue at 16384 entries (EOVERFLOW above).
    let e = f.spread_esp(16_385).unwrap_err();
    assert!(
        matches!(
            e,
            XdpError::Spread {
                cpu: _,
                queue_size: 16_385,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("kernel refused CPU") && text.contains("SPREAD_TARGETS"),
        "{text}"
    );
    assert_eq!(f.report().unwrap().spread_cpus, 0);
    let (raw, _) = known_esp_frames(0x0000_1001);
    run(&mut f, &raw, XDP_PASS);
}

#[test]
fn spread_slots_mix_consecutive_spis_over_all_cpus() {
    // Daemons hand out sequential SPIs; each CPU must get its share.
    for cpus in [2u32, 3, 4, 8] {
        let mut load = vec![0u32; cpus as usize];
        for spi in 0x1000..0x1000 + 1024 * cpus {
            load[spread_slot(spi, cpus) as usize] += 1;
        }
        assert!(
            load.iter().all(|&n| (900..=1150).contains(&n)),
            "{cpus} CPUs: {load:?}"
        );
    }
    assert_eq!(spread_slot(0x1234, 0), 0, "no slots: slot 0, no panic");
}

#[test]
fn sa_last_seen_is_the_latest_packet_on_the_monotonic_clock() {
    let Some(mut f) = filter(no_limit()) else {
        return;
    };
    f.add_sa(0x0000_1001).unwrap();
    f.add_sa(0x0000_1003).unwrap();
    assert_eq!(f.sa_last_seen(0x0000_1001).unwrap(), None, "never seen");
    assert!(matches!(
        f.sa_last_seen(0x0000_1002),
        Err(XdpError::SpiUnknown { spi: 0x0000_1002 })
    ));
    let (raw, udp) = known_esp_frames(0x0000_1001);
    let before = Duration::from_nanos(monotonic_now_ns());
    run(&mut f, &raw, XDP_PASS);
    let after = Duration::from_nanos(monotonic_now_ns());
    let first = f.sa_last_seen(0x0000_1001).unwrap().unwrap();
    assert!(
        before <= first && first <= after,
        "{before:?} <= {first:?} <= {after:?}"
    );

    std::thread::sleep(Duration::from_millis(20));
    // The redirect path stamps it too; another SA's packet does not.
    f.spread_esp(SPREAD_QUEUE_SIZE).unwrap();
    run(&mut f, &udp, XDP_REDIRECT);
    let second = f.sa_last_seen(0x0000_1001).unwrap().unwrap();
    assert!(
        second >= first + Duration::from_millis(20),
        "advanced: {first:?} -> {second:?}"
    );
    let (other, _) = known_esp_frames(0x0000_1003);
    let unknown = known_esp_frames(0x0bad_0001).0;
    run(&mut f, &other, XDP_REDIRECT);
    run(&mut f, &unknown, XDP_DROP);
    assert_eq!(f.sa_last_seen(0x0000_1001).unwrap(), Some(second));
    assert!(f.sa_last_seen(0x0000_1003).unwrap().unwrap() > second);
    let report = f.report().unwrap();
    assert!(
        report
            .sa(0x0000_1001)
            .unwrap()
            .last_seen_ms_ago
            .is_some_and(|ms| ms < 60_000)
    );
}

/// The object also holds the hairpin detector's maps; the filter's copy
/// makes them as small as the kernel allows instead of megabytes.
#[test]
fn the_hairpin_maps_of_the_filter_are_minimal() {
    let Some(filter) = filter(no_limit()) else {
        return;
    };
    let size = |name: &str| -> u32 {
        let data = match filter.ebpf.map(name) {
            Some(aya::maps::Map::RingBuf(d) | aya::maps::Map::HashMap(d)) => d,
            other => panic!("{name}: unexpected map {other:?}"),
        };
        data.info().unwrap().max_entries()
    };
    assert_eq!(size(gateway_common::hairpin::LINKS), 1);
    assert_eq!(size(gateway_common::hairpin::EVENTS), 4096);
}
