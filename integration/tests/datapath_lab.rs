//! End to end through the userspace datapath, in the FlexVPN lab
//! (`integration::flex_lab`): a hub with a LAN, own spokes (`gateway run`,
//! `role = "spoke"`) with LANs, a strongSwan spoke. Pings and TCP (iperf3)
//! between the LANs, through the hub and hairpinned at it; the hub's uplink
//! carrying nothing but IKE and ESP-in-UDP; a spoke leaving and coming back;
//! a forged inner source dropped by the hub.
//!
//! Each test has a lab of its own (unique tag). Without root, or without
//! iperf3 / tcpdump / strongSwan, a test prints `skipped: ...` and returns.
//! Rates are printed, never asserted beyond "not zero": speed belongs in
//! benchmarks (`cargo xtask bench-throughput`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::Ipv4Addr, time::Duration};

use gateway_report::tunnels::TunnelStatus;
use integration::{
    capture::{Capture, read_pcap},
    flex_lab::{
        self, FlexLab, HUB_LAN_HOST, LabSpec, Which, human_rate, iperf3, ping, ping_from,
        spoke_lan_host, spoke_lan_prefix, wait_ping,
    },
    gateway::gateway_bin,
};

/// How long the spokes get to dial in and be up on the hub.
const SESSIONS_UP: Duration = Duration::from_secs(30);
/// How long a path gets to start working once the sessions are up (routes
/// and SAs installed in the datapath, ARP).
const PATH_UP: Duration = Duration::from_secs(10);
/// How long the hub gets to forget a spoke that stopped: at once with the
/// spoke's DELETE; without one, the hub's periodic DPD (every 10 s, retries
/// 2 s apart) finds out within about 15 s. A functional bound, four times
/// the DPD path; the time it took is printed.
const SPOKE_GONE: Duration = Duration::from_mins(1);
/// How long the spokes get to be back once the hub is: they dial with a
/// backoff of up to 30 s (the gateway's `MAX_BACKOFF`), then IKE. The time
/// it took is printed.
const REDIAL_UP: Duration = Duration::from_mins(2);
/// iperf3 run length, per direction.
const IPERF_SECONDS: u32 = 3;
/// Pings per check.
const PINGS: u32 = 5;

fn start(bin: &std::path::Path, tag: &str, spec: &LabSpec, sessions: usize) -> FlexLab {
    let lab = FlexLab::start(bin, tag, spec).unwrap_or_else(|e| panic!("{e:#}"));
    if let Err(e) = lab.wait_sessions(sessions, SESSIONS_UP) {
        panic!("{e:#}");
    }
    lab
}

/// Waits for the path, then pings `count` times: every echo must come back.
fn ping_ok(lab: &FlexLab, from: &integration::Netns, to: Ipv4Addr, what: &str) {
    if let Err(e) = wait_ping(from, to, PATH_UP) {
        panic!("{what}: {e:#}\n{}", lab.logs());
    }
    let result = ping(from, to, PINGS).unwrap();
    assert!(result.all_received(), "{what}: {result:?}\n{}", lab.logs());
    eprintln!(
        "{what}: {}/{} answered, rtt avg {:.3} ms",
        result.received,
        result.transmitted,
        result.rtt.map_or(0.0, |r| r.avg)
    );
}

/// One TCP stream for [`IPERF_SECONDS`]: a rate above zero, printed.
fn tcp_ok(
    lab: &FlexLab,
    server: &integration::Netns,
    server_addr: Ipv4Addr,
    client: &integration::Netns,
    what: &str,
) -> f64 {
    let bps = iperf3(server, server_addr, client, IPERF_SECONDS)
        .unwrap_or_else(|e| panic!("{what}: {e:#}\n{}", lab.logs()));
    eprintln!("{what}: TCP {}", human_rate(bps));
    assert!(bps > 0.0, "{what}: nothing arrived");
    bps
}

/// The configs the lab writes are what `gateway config check` accepts
/// (no root needed). Until the hub knows `route_accept` and spoke mode,
/// this fails on those keys.
#[test]
fn lab_configs_pass_gateway_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let bin = gateway_bin().unwrap();
    let hub = dir.path().join("hub.toml");
    std::fs::write(&hub, flex_lab::hub_config("eth0", dir.path())).unwrap();
    let spoke = dir.path().join("spoke1.toml");
    std::fs::write(&spoke, flex_lab::spoke_config(1, "eth0", dir.path(), None)).unwrap();
    let spoke_gcm = dir.path().join("spoke2.toml");
    let gcm = ["aes256gcm16".to_owned()];
    std::fs::write(
        &spoke_gcm,
        flex_lab::spoke_config(2, "eth0", dir.path(), Some(&gcm)),
    )
    .unwrap();
    let mut problems = Vec::new();
    for file in [&hub, &spoke, &spoke_gcm] {
        let out = std::process::Command::new(&bin)
            .args(["config", "check"])
            .arg(file)
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The topology alone, without any daemon: every box reaches its
/// neighbours on the underlay, LAN hosts reach their gateways, forwarding
/// is on and reverse-path filtering off where the lab needs it.
#[test]
fn topology_and_underlay() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let lab = FlexLab::new(&bin, "dptopo", &LabSpec::new(2, true)).unwrap();
    for k in 1..=2 {
        let r = ping(lab.hub(), flex_lab::spoke_address(k), 2).unwrap();
        assert!(r.all_received(), "hub -> spoke {k}: {r:?}");
        let r = ping(lab.spoke_lan(k), flex_lab::spoke_lan_gateway(k), 2).unwrap();
        assert!(r.all_received(), "lan {k} -> spoke {k}: {r:?}");
        assert_eq!(lab.spoke(k).sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
        assert_eq!(
            lab.spoke(k)
                .sysctl_get("net.ipv4.conf.all.rp_filter")
                .unwrap(),
            "0"
        );
        // The LAN host's default route is its spoke.
        let routes = lab
            .spoke_lan(k)
            .ip(["-4", "route", "show", "default"])
            .unwrap();
        assert!(
            String::from_utf8_lossy(&routes.stdout)
                .contains(&format!("via {}", flex_lab::spoke_lan_gateway(k))),
            "{routes:?}"
        );
    }
    let swan = lab.strongswan_netns().unwrap();
    let r = ping(swan, flex_lab::HUB_ADDRESS, 2).unwrap();
    assert!(r.all_received(), "strongSwan spoke -> hub: {r:?}");
    let r = ping(lab.hub_lan(), flex_lab::HUB_LAN_GATEWAY, 2).unwrap();
    assert!(r.all_received(), "hub LAN -> hub: {r:?}");
    assert_eq!(lab.hub().sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    // Without tunnels, nothing crosses: the hub has no route to spoke LANs.
    let r = ping(lab.hub_lan(), spoke_lan_host(1), 1).unwrap();
    assert_eq!(r.received, 0, "{r:?}");
    // Spoke k's uplink is 172.25.1.(10+k) and the configs are in place.
    assert!(lab.config_path(Which::Hub).unwrap().is_file());
    assert!(lab.config_path(Which::Spoke(2)).unwrap().is_file());
    assert!(lab.gateway(Which::Hub).is_err(), "no daemon started");
}

/// Hub LAN <-> each spoke LAN: pings both ways and a TCP stream each way.
/// Meanwhile the hub's uplink is captured: only IKE and ESP-in-UDP, no
/// cleartext inner packet.
#[test]
fn hub_lan_and_spoke_lans_ping_and_carry_tcp_both_ways_encrypted_on_the_uplink() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let lab = start(&bin, "dphub", &LabSpec::new(2, false), 2);
    let capture: Capture = lab.capture_hub_uplink("uplink").unwrap();
    for k in 1..=2 {
        let lan = lab.spoke_lan(k);
        let host = spoke_lan_host(k);
        ping_ok(&lab, lab.hub_lan(), host, &format!("hub LAN -> lan{k}"));
        ping_ok(&lab, lan, HUB_LAN_HOST, &format!("lan{k} -> hub LAN"));
        tcp_ok(
            &lab,
            lab.hub_lan(),
            HUB_LAN_HOST,
            lan,
            &format!("lan{k} -> hub LAN"),
        );
        tcp_ok(
            &lab,
            lan,
            host,
            lab.hub_lan(),
            &format!("hub LAN -> lan{k}"),
        );
    }
    let pcap = capture.stop().unwrap();
    let summary = flex_lab::check_uplink_capture(&pcap).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("hub uplink: {summary}");
    assert!(
        summary.esp_in_udp >= 40,
        "the LAN traffic should have crossed the uplink as ESP-in-UDP: {summary}"
    );
}

/// Spoke 1 LAN <-> spoke 2 LAN through the hub: pings and TCP both ways,
/// and the hub counts the packets it turned around on spoke 1's
/// virtual-access (`hairpinned`).
#[test]
fn spoke_lan_to_spoke_lan_hairpins_at_the_hub() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let lab = start(&bin, "dphairpin", &LabSpec::new(2, false), 2);
    let (lan1, lan2) = (lab.spoke_lan(1), lab.spoke_lan(2));
    ping_ok(&lab, lan1, spoke_lan_host(2), "lan1 -> lan2");
    ping_ok(&lab, lan2, spoke_lan_host(1), "lan2 -> lan1");
    tcp_ok(&lab, lan2, spoke_lan_host(2), lan1, "lan1 -> lan2");
    tcp_ok(&lab, lan1, spoke_lan_host(1), lan2, "lan2 -> lan1");
    for k in 1..=2 {
        let va = lab
            .spoke_virtual_access(k)
            .unwrap()
            .unwrap_or_else(|| panic!("no virtual-access for spoke {k}\n{}", lab.logs()));
        eprintln!("spoke {k}'s {}: {} hairpinned", va.name, va.hairpinned);
        assert!(va.hairpinned > 0, "spoke {k}: {va:?}");
    }
    let text = lab
        .show(Which::Hub, &["interfaces", "virtual-access"])
        .unwrap();
    eprintln!("{text}");
}

/// The strongSwan spoke's virtual IP <-> spoke 1's LAN host and the hub's
/// LAN host, both ways.
#[test]
fn strongswan_spoke_reaches_an_own_spoke_lan_and_the_hub_lan() {
    let Some(bin) = flex_lab::ready(true) else {
        return;
    };
    let lab = start(&bin, "dpswan", &LabSpec::new(1, true), 2);
    let vip = lab.strongswan_vip().unwrap();
    assert!(
        (flex_lab::POOL_FIRST..=flex_lab::POOL_LAST).contains(&vip),
        "{vip} is not from the pool"
    );
    let swan = lab.strongswan_netns().unwrap();
    // strongSwan's route to the hub's selectors carries `src VIP`.
    ping_ok(&lab, swan, spoke_lan_host(1), "strongSwan -> lan1");
    ping_ok(&lab, swan, HUB_LAN_HOST, "strongSwan -> hub LAN");
    ping_ok(&lab, lab.spoke_lan(1), vip, "lan1 -> strongSwan");
    ping_ok(&lab, lab.hub_lan(), vip, "hub LAN -> strongSwan");
    let sessions = lab.sessions().unwrap();
    let swan_session = sessions
        .iter()
        .find(|s| s.assigned_address == Some(vip))
        .unwrap_or_else(|| panic!("no hub session with {vip}: {sessions:#?}"));
    assert_eq!(
        swan_session.identity.as_deref(),
        Some(format!("fqdn:{}", flex_lab::STRONGSWAN_IDENTITY).as_str())
    );
}

/// A spoke that stops loses its /32 and its LAN route on the hub, its
/// virtual-access goes, and its LAN is unreachable; started again, it gets
/// its session, the same pool address (the pool keeps the lease for its
/// identity) and its traffic back.
#[test]
fn a_spoke_that_stops_loses_its_routes_and_gets_them_back_when_it_returns() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let mut lab = start(&bin, "dprestart", &LabSpec::new(1, false), 1);
    let address = lab.spoke_pool_address(1).unwrap();
    let host_route = format!("{address}/32");
    let lan_route = spoke_lan_prefix(1);
    ping_ok(
        &lab,
        lab.hub_lan(),
        spoke_lan_host(1),
        "before: hub LAN -> lan1",
    );
    assert!(lab.hub_has_route(&host_route).unwrap());
    assert!(lab.hub_has_route(&lan_route).unwrap(), "route_accept");
    assert!(lab.spoke_virtual_access(1).unwrap().is_some());

    lab.stop_spoke(1).unwrap();
    let stopped = std::time::Instant::now();
    let gone = integration::wait_until(SPOKE_GONE, Duration::from_millis(250), || {
        !lab.hub_has_route(&host_route).unwrap_or(true)
            && !lab.hub_has_route(&lan_route).unwrap_or(true)
            && lab.spoke_virtual_access(1).is_ok_and(|va| va.is_none())
    });
    eprintln!(
        "spoke 1's routes and virtual-access gone from the hub {:.1}s after it stopped",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        gone,
        "the hub still routes to spoke 1 ({host_route}: {}, {lan_route}: {}) or lists its \
         virtual-access: {:?}\n{}",
        lab.hub_has_route(&host_route).unwrap_or(true),
        lab.hub_has_route(&lan_route).unwrap_or(true),
        lab.virtual_access(),
        lab.logs()
    );
    let r = ping(lab.hub_lan(), spoke_lan_host(1), 3).unwrap();
    assert_eq!(r.received, 0, "spoke 1 is down: {r:?}");

    lab.start_spoke(1).unwrap();
    lab.wait_sessions(1, SESSIONS_UP).unwrap();
    assert_eq!(
        lab.spoke_pool_address(1).unwrap(),
        address,
        "the same identity gets the same address"
    );
    ping_ok(
        &lab,
        lab.hub_lan(),
        spoke_lan_host(1),
        "after: hub LAN -> lan1",
    );
    ping_ok(
        &lab,
        lab.spoke_lan(1),
        HUB_LAN_HOST,
        "after: lan1 -> hub LAN",
    );
    assert!(lab.hub_has_route(&host_route).unwrap());
    assert!(lab.hub_has_route(&lan_route).unwrap());
}

/// The hub goes away (it deletes the sessions as it stops) and comes back:
/// the own spokes dial again by themselves, with backoff, and get their
/// tunnels, addresses and routes back.
#[test]
fn spokes_dial_again_when_the_hub_comes_back() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let mut lab = start(&bin, "dphubback", &LabSpec::new(2, false), 2);
    let before: Vec<Ipv4Addr> = (1..=2)
        .map(|k| lab.spoke_pool_address(k).unwrap())
        .collect();
    ping_ok(
        &lab,
        lab.spoke_lan(1),
        HUB_LAN_HOST,
        "before: lan1 -> hub LAN",
    );
    let tunnels: Vec<TunnelStatus> = lab
        .show_report(Which::Spoke(1), &["interfaces", "tunnel"])
        .unwrap();
    assert_eq!(tunnels[0].tunnel, "Tunnel1", "{tunnels:?}");
    assert_eq!(tunnels[0].state, "up", "{tunnels:?}");
    assert_eq!(tunnels[0].address, Some(before[0]), "{tunnels:?}");
    assert_eq!(tunnels[0].connects, 1, "{tunnels:?}");

    let hub_log = lab.stop_hub().unwrap();
    assert!(hub_log.contains("hub shutting down"), "{hub_log}");
    // The spokes noticed (the hub's DELETE) and are dialling a dead hub.
    std::thread::sleep(Duration::from_secs(3));
    lab.start_hub().unwrap();
    let back = std::time::Instant::now();
    lab.wait_sessions(2, REDIAL_UP).unwrap();
    eprintln!(
        "both spokes back on the hub {:.1}s after it restarted",
        back.elapsed().as_secs_f64()
    );
    let after: Vec<Ipv4Addr> = (1..=2)
        .map(|k| lab.spoke_pool_address(k).unwrap())
        .collect();
    assert_eq!(
        before, after,
        "the pool kept each spoke's lease across the restart"
    );
    ping_ok(
        &lab,
        lab.spoke_lan(1),
        HUB_LAN_HOST,
        "after: lan1 -> hub LAN",
    );
    ping_ok(
        &lab,
        lab.spoke_lan(2),
        spoke_lan_host(1),
        "after: lan2 -> lan1",
    );
    let tunnels: Vec<TunnelStatus> = lab
        .show_report(Which::Spoke(1), &["interfaces", "tunnel"])
        .unwrap();
    assert_eq!(tunnels[0].state, "up", "{tunnels:?}");
    assert!(tunnels[0].connects >= 2, "{tunnels:?}");
    let spoke_log = lab.stop_spoke(1).unwrap();
    assert!(
        spoke_log.contains("Crypto tunnel is DOWN") && spoke_log.contains("dialling again"),
        "{spoke_log}"
    );
}

/// A packet from spoke 1 whose inner source is neither its pool address
/// nor its LAN is dropped by the hub and counted as `rx_spoofed` on spoke
/// 1's virtual-access; the hub's LAN never sees it.
///
/// How the forged packet gets into the tunnel: the spoke itself sends it.
/// 192.168.77.1/32 goes on spoke 1's LAN-side interface (so that the
/// spoke's kernel lets a socket use it as a source) and `ping -I
/// 192.168.77.1 192.168.0.10` runs in spoke 1's namespace. A locally
/// originated packet is not subject to rp_filter; the kernel routes it by
/// destination into the spoke gateway's TUN device (the route to the hub's
/// 192.168.0.0/16 from `route_set`; a /32 to the hub LAN host via the TUN
/// device is added as well, so the test does not depend on it). The spoke's
/// datapath picks the tunnel by destination only (as IOS does on a GRE
/// tunnel: it does not police its own sources), so the packet leaves as
/// ordinary ESP with valid keys and sequence numbers, and the only thing
/// wrong with it is the inner source: exactly what the hub's per
/// virtual-access reverse-path check is for. (Sending from the LAN host
/// with a forged source would work too with the spoke's rp_filter off, but
/// would also test the spoke's forwarding; and crafting ESP by hand would
/// need the spoke's keys.) If a future spoke polices its own sources, this
/// test fails on the hub's counter and needs another way in.
#[test]
fn a_forged_inner_source_is_dropped_and_counted_by_the_hub() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let lab = start(&bin, "dpspoof", &LabSpec::new(1, false), 1);
    ping_ok(&lab, lab.spoke_lan(1), HUB_LAN_HOST, "lan1 -> hub LAN");
    let before = lab.spoke_virtual_access(1).unwrap().unwrap();

    let forged = Ipv4Addr::new(192, 168, 77, 1);
    let spoke = lab.spoke(1);
    spoke
        .add_addr(lab.spoke_lan_link(1).name(), &format!("{forged}/32"))
        .unwrap();
    let tun = lab.spoke_tunnel_device(1).unwrap();
    spoke
        .ip([
            "route",
            "replace",
            &format!("{HUB_LAN_HOST}/32"),
            "dev",
            &tun,
        ])
        .unwrap();

    let pcap = lab.lab().temp_dir().join("hublan-forged.pcap");
    let capture = Capture::start(
        lab.hub_lan(),
        lab.hub_lan_host_link().name(),
        &format!("host {forged}"),
        &pcap,
    )
    .unwrap();
    let r = ping_from(spoke, forged, HUB_LAN_HOST, PINGS).unwrap();
    let pcap = capture.stop().unwrap();
    assert_eq!(r.received, 0, "a forged source got an answer: {r:?}");
    let seen = read_pcap(&pcap).unwrap();
    assert!(
        seen.is_empty(),
        "the hub's LAN saw {} packets from {forged}",
        seen.len()
    );

    let after = lab.spoke_virtual_access(1).unwrap().unwrap();
    eprintln!(
        "rx_spoofed on {}: {} -> {} ({} echoes sent from {forged})",
        after.name, before.rx_spoofed, after.rx_spoofed, r.transmitted
    );
    assert!(
        after.rx_spoofed > before.rx_spoofed,
        "the hub did not count the forged packets on spoke 1's virtual-access: \
         before {before:?}, after {after:?}\nspoke 1: {}\n{}",
        lab.show(Which::Spoke(1), &["interfaces", "virtual-access"])
            .unwrap_or_else(|e| format!("{e:#}")),
        lab.logs()
    );
    // The tunnel itself is fine: legitimate traffic still flows.
    ping_ok(
        &lab,
        lab.spoke_lan(1),
        HUB_LAN_HOST,
        "lan1 -> hub LAN after",
    );
}

/// `ip tcp adjust-mss 1360` and `ip mtu 1400` as a host sees them: a TCP
/// SYN from spoke 1's LAN (MSS 1460 on its Ethernet) reaches the hub's LAN
/// with MSS 1360, and path MTU discovery through the tunnel works (a
/// 1400-byte packet with DF passes, a bigger one is answered with
/// "fragmentation needed, mtu 1400").
#[test]
fn syns_are_clamped_and_path_mtu_discovery_works_through_the_tunnel() {
    let Some(bin) = flex_lab::ready(false) else {
        return;
    };
    let lab = start(&bin, "dpmss", &LabSpec::new(1, false), 1);
    ping_ok(&lab, lab.spoke_lan(1), HUB_LAN_HOST, "lan1 -> hub LAN");

    let pcap = lab.lab().temp_dir().join("hublan-syn.pcap");
    let capture = Capture::start(
        lab.hub_lan(),
        lab.hub_lan_host_link().name(),
        "tcp[tcpflags] & tcp-syn != 0",
        &pcap,
    )
    .unwrap();
    tcp_ok(
        &lab,
        lab.hub_lan(),
        HUB_LAN_HOST,
        lab.spoke_lan(1),
        "lan1 -> hub LAN",
    );
    let syns = read_pcap(&capture.stop().unwrap()).unwrap();
    let mss: Vec<u16> = syns.iter().filter_map(|p| syn_mss(&p.data)).collect();
    assert!(
        !mss.is_empty(),
        "no SYN with an MSS option seen on the hub LAN"
    );
    // The client's SYN arrives clamped; the server's SYN-ACK (1460, from
    // the hub LAN) is clamped on its way out, which the LAN does not see.
    assert!(
        mss.contains(&1360),
        "MSS values seen on the hub LAN: {mss:?}"
    );
    assert!(!mss.iter().any(|m| *m > 1360 && *m != 1460), "{mss:?}");

    // 1372 bytes of ICMP data + 28 of headers = 1400: fits.
    let fits = lab
        .spoke_lan(1)
        .exec_unchecked([
            "ping",
            "-c1",
            "-W2",
            "-M",
            "do",
            "-s",
            "1372",
            &HUB_LAN_HOST.to_string(),
        ])
        .unwrap();
    assert!(
        fits.status.success(),
        "a 1400-byte packet with DF did not pass: {}",
        String::from_utf8_lossy(&fits.stdout)
    );
    // iputils learns the path MTU from the ICMP error on the first try and
    // reports it ("mtu = 1400" or "Frag needed and DF set (mtu = 1400)").
    let too_big = lab
        .spoke_lan(1)
        .exec_unchecked([
            "ping",
            "-c2",
            "-W2",
            "-M",
            "do",
            "-s",
            "1400",
            &HUB_LAN_HOST.to_string(),
        ])
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&too_big.stdout),
        String::from_utf8_lossy(&too_big.stderr)
    );
    assert!(
        !too_big.status.success(),
        "1428 bytes with DF passed a 1400-byte tunnel: {out}"
    );
    assert!(
        out.contains("mtu = 1400") || out.contains("mtu=1400"),
        "{out}"
    );
}

/// The MSS option of a TCP SYN in an Ethernet frame, if it has one.
fn syn_mss(frame: &[u8]) -> Option<u16> {
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let tcp = ip.get(ihl..)?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    let mut options = tcp.get(20..data_offset)?;
    while let [kind, rest @ ..] = options {
        match kind {
            0 => return None,
            1 => options = rest,
            2 => return Some(u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?])),
            _ => options = options.get(usize::from(*rest.first()?)..)?,
        }
    }
    None
}

/// The harness against a known-good VPN: strongSwan as hub and as spoke 1
/// (the reference of `cargo xtask bench-throughput`) carries spoke 1's LAN
/// to the hub's LAN, pings and TCP both ways, and the capture check finds
/// only IKE and ESP-in-UDP on the hub's wire. No gateway runs.
#[test]
fn strongswan_reference_carries_lan_to_lan_and_the_uplink_check_passes() {
    let Some(bin) = flex_lab::ready(true) else {
        return;
    };
    let lab = FlexLab::new(&bin, "dpref", &LabSpec::new(1, false)).unwrap();
    let capture = lab.capture_hub_uplink("reference").unwrap();
    let (_hub, _spoke) = lab
        .start_strongswan_reference(1)
        .unwrap_or_else(|e| panic!("{e:#}"));
    ping_ok(
        &lab,
        lab.spoke_lan(1),
        HUB_LAN_HOST,
        "reference: lan1 -> hub LAN",
    );
    ping_ok(
        &lab,
        lab.hub_lan(),
        spoke_lan_host(1),
        "reference: hub LAN -> lan1",
    );
    tcp_ok(
        &lab,
        lab.hub_lan(),
        HUB_LAN_HOST,
        lab.spoke_lan(1),
        "reference: lan1 -> hub LAN",
    );
    tcp_ok(
        &lab,
        lab.spoke_lan(1),
        spoke_lan_host(1),
        lab.hub_lan(),
        "reference: hub LAN -> lan1",
    );
    let pcap = capture.stop().unwrap();
    let summary = flex_lab::check_uplink_capture(&pcap).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("hub uplink: {summary}");
    assert!(summary.esp_in_udp >= 20 && summary.ike >= 2, "{summary}");
}
