//! The XDP uplink filter attached natively to a veth by the real daemon, with
//! real packets from spoke namespaces; counters read through the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddrV4, time::Duration};

use integration::{
    gateway::gateway_bin,
    packets::{self, IPPROTO_ESP, NATT_PORT, RawIpSocket},
    skip_unless_root,
    xdp_lab::{HUB_ADDRESS, SPI_NATT, SPI_RAW, XdpLab},
};

#[test]
fn xdp_filter_on_a_native_veth_counts_and_drops_real_packets() {
    skip_unless_root!();
    let lab = XdpLab::start(&gateway_bin().unwrap(), "xdpup").unwrap();

    let text = lab.show_xdp_text().unwrap();
    assert!(
        text.contains(&format!(
            "XDP uplink filter on {} (native mode)",
            lab.uplink
        )),
        "{text}"
    );
    // Attached in driver mode, as `ip link` reports it.
    let link = lab
        .hub
        .ip(["-d", "link", "show", "dev", &lab.uplink])
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains("xdp ") || link.contains("xdpdrv"),
        "native XDP not shown on the link:\n{link}"
    );

    assert!(
        text.contains("ESP spreading: off"),
        "spreading is off by default:\n{text}"
    );
    let sent = lab.send_traffic().unwrap();
    lab.check_counters(&sent).unwrap();

    // Removing an SPI through the CLI makes its packets unknown at once.
    let gateway = lab.gateway();
    gateway
        .cli_ok(["sa", "remove-spi", &format!("{SPI_RAW:#x}")])
        .unwrap();
    let before = lab.show_xdp().unwrap().packets("drop_esp_unknown_spi");
    let spoke = &lab.spokes[0].netns;
    packets::send_raw_ip(
        spoke,
        HUB_ADDRESS,
        IPPROTO_ESP,
        &packets::esp(SPI_RAW, 99, 64),
    )
    .unwrap();
    let dropped =
        integration::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            lab.show_xdp().unwrap().packets("drop_esp_unknown_spi") == before + 1
        });
    assert!(dropped, "ESP for a removed SPI was not dropped");
    let report = lab.show_xdp().unwrap();
    assert!(report.sa(SPI_RAW).is_none(), "{report:?}");
    assert!(report.sa(SPI_NATT).is_some(), "{report:?}");

    // Errors from the daemon reach the operator with a non-zero exit.
    let twice = gateway
        .cli(["sa", "add-spi", &format!("{SPI_NATT:#x}")])
        .unwrap();
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("already installed"),
        "{twice:?}"
    );

    let (status, log) = lab.stop().unwrap();
    assert!(
        status.success(),
        "gateway exit status after SIGTERM: {status}\n{log}"
    );
    assert!(
        log.contains("inbound SPI removed from XDP"),
        "SA changes are logged:\n{log}"
    );
}

/// `xdp.spread_esp = true`: known-SPI ESP is redirected through the CPU map
/// (veth's native XDP carries out the redirect), counted as redirected, and
/// still reaches the hub's stack on the CPU its SPI hashes to; everything
/// else behaves as without spreading.
#[test]
fn spread_esp_redirects_known_spis_and_the_packets_still_arrive() {
    skip_unless_root!();
    let lab = XdpLab::start_with(&gateway_bin().unwrap(), "xdpspr", true).unwrap();
    let text = lab.show_xdp_text().unwrap();
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let cpus: usize = cpus
        .trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum();
    assert!(
        text.contains(&format!("ESP spreading: over {cpus} CPUs")),
        "{text}"
    );

    // What reached the hub's stack after the redirect: no esp4 in this
    // kernel and no IKE in this lab, so a raw ESP socket and a UDP 4500
    // socket in the hub's namespace see it.
    let raw_seen = RawIpSocket::open_in(&lab.hub, IPPROTO_ESP).unwrap();
    let natt_seen = packets::bind_udp(&lab.hub, SocketAddrV4::new(HUB_ADDRESS, NATT_PORT)).unwrap();
    let sent = lab.send_traffic().unwrap();
    lab.check_counters(&sent).unwrap();

    let mut raw_spis = Vec::new();
    while let Some(packet) = raw_seen.recv_timeout(Duration::from_secs(1)).unwrap() {
        let esp = packets::ipv4_payload(&packet).expect("an IPv4 packet");
        raw_spis.push(first_word(esp));
    }
    assert_eq!(
        raw_spis,
        vec![SPI_RAW; usize::try_from(sent.esp_raw_known).unwrap()],
        "every redirected raw ESP packet reached the stack, and no unknown SPI"
    );
    let mut natt_spis = Vec::new();
    while let Ok((datagram, _)) = packets::recv_udp(&natt_seen, Duration::from_secs(1)) {
        // Keepalives (one byte) and IKE behind the non-ESP marker were passed.
        if datagram.len() >= 8 && first_word(&datagram) != 0 {
            natt_spis.push(first_word(&datagram));
        }
    }
    assert_eq!(
        natt_spis,
        vec![SPI_NATT; usize::try_from(sent.esp_in_udp_known).unwrap()],
        "every redirected ESP-in-UDP datagram reached the socket, and no unknown SPI"
    );
    let report = lab.show_xdp().unwrap();
    assert_eq!(
        usize::try_from(report.spread_cpus).ok(),
        Some(cpus),
        "{report:?}"
    );
    assert!(
        report
            .sas
            .iter()
            .all(|s| s.last_seen_ms_ago.is_some_and(|ms| ms < 60_000)),
        "both SAs were seen: {report:?}"
    );

    let (status, log) = lab.stop().unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains(&format!("spread_cpus={cpus}")),
        "the attach line says how many CPUs ESP spreads over:\n{log}"
    );
}

/// The first four bytes, big-endian: an ESP SPI (0 = the non-ESP marker).
fn first_word(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
