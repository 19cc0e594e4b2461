//! The kernel datapath (XFRM + ip_gre) end to end: the hub and two own
//! spokes with `datapath = "kernel"`, GRE over ESP in the kernel, routes
//! and links that come and go with the sessions, the SA counters in `ip -s
//! xfrm state`, XDP dropping ESP with a forged SPI, the tc program
//! reporting spoke-to-spoke traffic, the TCP MSS clamp in nftables
//! (`tcp_adjust_mss 1360`) and path MTU discovery through a 1400-byte
//! virtual-access. Needs a kernel with ip_gre and esp4: the VM tier (`cargo
//! xtask vm-test`, run by `cargo xtask test`) runs it; on a host without
//! them it says so and passes, unless `GATEWAY_REQUIRE_KERNEL_DATAPATH=1`
//! (set in the VM) makes the absence a failure.

#![allow(clippy::unwrap_used)]

use std::{
    io::Read as _,
    net::{Ipv4Addr, TcpListener, TcpStream},
    time::Duration,
};

use gateway_report::{interfaces::DatapathReport, xdp::XdpReport};
use integration::{
    Netns,
    capture::{Capture, read_pcap},
    flex_lab::{self, BgpSpec, FlexLab, HUB_LAN_HOST, LabSpec, Which, spoke_lan_host},
    gateway::gateway_bin,
    packets,
};

const IPPROTO_ESP: u8 = 50;
/// An SPI no SA has.
const FORGED_SPI: u32 = 0x0bad_5b1d;
/// How long the two spokes get to be up on the hub (IKE under emulation in
/// the VM tier).
const SESSIONS_UP: Duration = Duration::from_mins(2);
/// How long their BGP sessions then get to come up with their prefixes.
const BGP_UP: Duration = Duration::from_mins(1);
/// How long a path gets to start working.
const PATH_UP: Duration = Duration::from_secs(30);
/// How long XDP's counters get to show the forged packets: they are
/// counted as they arrive; every check is a `gateway show xdp`, slow under
/// emulation.
const XDP_COUNTED: Duration = Duration::from_secs(30);
/// How long a stopped spoke's link gets to go: at once with its DELETE;
/// without one, the hub's DPD finds out within about 15 s. A functional
/// bound, wide for the VM tier; the time it took is printed.
const LINK_GONE: Duration = Duration::from_mins(1);

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packet counts of `ip -s xfrm state` (the `lifetime current` lines).
fn xfrm_packets(lab: &FlexLab) -> Vec<u64> {
    let out = text(&lab.hub().ip(["-s", "xfrm", "state"]).unwrap());
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            // "0(bytes), 0(packets)", not the limits ("limit: soft
            // 4227858432(packets), ...": outbound SAs have one).
            if l.starts_with("limit:") {
                return None;
            }
            let at = l.find("(packets)")?;
            let before = &l[..at];
            before.rsplit([' ', ',']).next()?.parse().ok()
        })
        .collect()
}

/// The hub's nftables table (`nft list table inet gateway`), `None` when
/// there is none.
fn nft_table(ns: &Netns) -> Option<String> {
    let out = ns
        .exec_unchecked(["nft", "list", "table", "inet", "gateway"])
        .unwrap();
    out.status.success().then(|| text(&out))
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

/// A TCP connection from the hub's LAN to a listener on spoke 1's LAN
/// host, with the SYNs captured at both ends: the MSS values of the SYN
/// seen on spoke 1's LAN and of the SYN/ACK seen on the hub's LAN (both
/// hosts offer 1460 on their Ethernet).
fn connect_and_capture_mss(lab: &FlexLab) -> (Vec<u16>, Vec<u16>) {
    const PORT: u16 = 5201;
    let server = spoke_lan_host(1);
    let dir = lab.lab().temp_dir();
    let syn = "tcp[tcpflags] & tcp-syn != 0";
    let at_spoke = Capture::start(
        lab.spoke_lan(1),
        lab.spoke_lan_host_link(1).name(),
        syn,
        &dir.join("kdp-spoke-syn.pcap"),
    )
    .unwrap();
    let at_hub = Capture::start(
        lab.hub_lan(),
        lab.hub_lan_host_link().name(),
        syn,
        &dir.join("kdp-hub-syn.pcap"),
    )
    .unwrap();
    let listener = lab
        .spoke_lan(1)
        .run_in(move || TcpListener::bind((server, PORT)))
        .unwrap()
        .unwrap();
    let stream = lab
        .hub_lan()
        .run_in(move || TcpStream::connect_timeout(&(server, PORT).into(), Duration::from_secs(10)))
        .unwrap()
        .unwrap_or_else(|e| panic!("hub LAN -> {server}:{PORT}: {e}\n{}", lab.logs()));
    let (mut accepted, _) = listener.accept().unwrap();
    drop(stream);
    let mut rest = Vec::new();
    let _ = accepted.read_to_end(&mut rest);
    std::thread::sleep(Duration::from_millis(500));
    let mss = |c: Capture| -> Vec<u16> {
        read_pcap(&c.stop().unwrap())
            .unwrap()
            .iter()
            .filter_map(|p| syn_mss(&p.data))
            .collect()
    };
    (mss(at_spoke), mss(at_hub))
}

/// `ping -M do -s SIZE` from the hub's LAN to spoke 1's LAN host: its
/// success and its output.
fn df_ping(lab: &FlexLab, size: u32) -> (bool, String) {
    let to: Ipv4Addr = spoke_lan_host(1);
    let out = lab
        .hub_lan()
        .exec_unchecked([
            "ping",
            "-c2",
            "-W2",
            "-M",
            "do",
            "-s",
            &size.to_string(),
            &to.to_string(),
        ])
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `tcp_adjust_mss 1360` and `mtu 1400` in the kernel: the clamp rules in
/// the hub's nftables table, SYNs clamped, DF packets over the MTU answered.
fn clamps_mss_and_answers_df_over_the_mtu(lab: &FlexLab) {
    // `tcp_adjust_mss 1360`: the clamp rules of both links, both ways, in
    // the hub's nftables table.
    let table = nft_table(lab.hub()).unwrap_or_else(|| panic!("no table\n{}", lab.logs()));
    println!("{table}");
    for link in ["va1", "va2"] {
        for dir in ["oifname", "iifname"] {
            assert!(
                table.contains(&format!("{dir} \"{link}\" tcp flags & syn == syn")),
                "no {dir} {link} rule:\n{table}"
            );
        }
    }
    assert_eq!(table.matches("maxseg size set 1360").count(), 4, "{table}");
    // A connection from the hub's LAN to spoke 1's LAN: the SYN arrives
    // with MSS 1360 (the hub's rule for SYNs out of va1 counted it), the
    // SYN/ACK too.
    let (at_spoke, at_hub) = connect_and_capture_mss(lab);
    println!("SYN MSS on spoke 1's LAN: {at_spoke:?}, on the hub's LAN: {at_hub:?}");
    assert!(at_spoke.contains(&1360), "{at_spoke:?}");
    assert!(
        !at_spoke.iter().any(|m| *m > 1360 && *m != 1460),
        "{at_spoke:?}"
    );
    assert!(at_hub.contains(&1360), "{at_hub:?}");
    let table = nft_table(lab.hub()).unwrap();
    let counted = |dir: &str| {
        table
            .lines()
            .any(|l| l.contains(&format!("{dir} \"va1\"")) && !l.contains("counter packets 0 "))
    };
    // The SYN/ACK was clamped by spoke 1's own rule on its way into the
    // tunnel, so only the hub's outbound rule had work to do.
    assert!(counted("oifname"), "{table}");

    // DF through a 1400-byte va1: 1372 bytes of ICMP data (+ 28 = 1400)
    // pass; 1472 (a 1500-byte packet) get fragmentation-needed from the
    // hub's kernel, which ping reports with the MTU.
    let (fits, out) = df_ping(lab, 1372);
    assert!(fits, "a 1400-byte packet with DF did not pass: {out}");
    let (fits, out) = df_ping(lab, 1472);
    println!("{out}");
    assert!(!fits, "1500 bytes with DF passed a 1400-byte link: {out}");
    assert!(
        out.contains("mtu = 1400") || out.contains("mtu=1400"),
        "{out}"
    );
}

/// XDP on the hub's uplink drops ESP with a forged SPI and counts it.
fn xdp_drops_forged_spis(lab: &FlexLab) {
    // XDP on the hub's uplink drops ESP with a forged SPI before XFRM
    // sees it, and counts it.
    let dropped = |lab: &FlexLab| -> u64 {
        let report: XdpReport = lab.show_report(Which::Hub, &["xdp"]).unwrap();
        report.packets("drop_esp_unknown_spi")
    };
    let before = dropped(lab);
    for seq in 1..=3 {
        packets::send_raw_ip(
            lab.spoke(2),
            flex_lab::HUB_ADDRESS,
            IPPROTO_ESP,
            &packets::esp(FORGED_SPI, seq, 64),
        )
        .unwrap();
    }
    let sent = std::time::Instant::now();
    let counted = integration::wait_until(XDP_COUNTED, Duration::from_millis(100), || {
        dropped(lab) >= before + 3
    });
    println!(
        "XDP counted the forged-SPI packets {:.1}s after they were sent",
        sent.elapsed().as_secs_f64()
    );
    assert!(
        counted,
        "forged-SPI ESP not dropped by XDP: {}",
        dropped(lab) - before
    );
}

/// The spokes' LANs, learned by BGP, are in the hub's kernel table through
/// their links.
fn bgp_routes_go_through_the_links(lab: &FlexLab) {
    let routes = text(&lab.hub().ip(["route", "show"]).unwrap());
    for (lan, link) in [("192.168.1.0/24", "va1"), ("192.168.2.0/24", "va2")] {
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with(&format!("{lan} dev {link}"))),
            "the BGP route {lan} is not via {link}: {routes}"
        );
    }
}

#[test]
fn spokes_reach_each_other_through_gre_over_esp_in_the_kernel() {
    if !integration::vm::kernel_datapath_available() {
        return;
    }
    let gateway = gateway_bin().unwrap();
    // Routing by BGP, as the seed documents run it: the spokes' LANs reach
    // the hub's kernel table through the BGP speaker and the datapath.
    let spec = LabSpec {
        kernel_datapath: true,
        bgp: Some(BgpSpec {
            own_bgp_spokes: 2,
            lan_neighbor: None,
        }),
        ..LabSpec::new(2, false)
    };
    let started = std::time::Instant::now();
    let mut lab = FlexLab::start(&gateway, "kdp", &spec).unwrap();
    lab.wait_sessions(2, SESSIONS_UP).unwrap();
    let sessions = started.elapsed();
    lab.wait_bgp_spokes(2, BGP_UP).unwrap();
    println!(
        "sessions up after {:.1}s, BGP after {:.1}s",
        sessions.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    bgp_routes_go_through_the_links(&lab);

    // The virtual-access links, GRE point-to-point, on the hub.
    let links = text(&lab.hub().ip(["-d", "link", "show", "type", "gre"]).unwrap());
    println!("{links}");
    assert!(links.contains("va1") && links.contains("va2"), "{links}");
    // Each spoke's pool address is routed through its link.
    let routes = text(&lab.hub().ip(["route", "show"]).unwrap());
    for (k, link) in [(1, "va1"), (2, "va2")] {
        let pool = lab.spoke_pool_address(k).unwrap();
        assert!(
            routes
                .lines()
                .any(|l| l.starts_with(&format!("{pool} dev {link}"))),
            "no /32 for spoke {k} ({pool}) via {link}: {routes}"
        );
    }

    for (from, to, what) in [
        (lab.hub_lan(), spoke_lan_host(1), "hub LAN -> spoke 1 LAN"),
        (lab.spoke_lan(1), HUB_LAN_HOST, "spoke 1 LAN -> hub LAN"),
        (
            lab.spoke_lan(1),
            spoke_lan_host(2),
            "spoke 1 LAN -> spoke 2 LAN",
        ),
    ] {
        let _ = flex_lab::wait_ping(from, to, PATH_UP);
        let r = flex_lab::ping(from, to, 3).unwrap();
        assert!(r.received >= 2, "{what}: {r:?}\n{}", lab.logs());
    }

    // The traffic went through our SAs in the kernel.
    let packets = xfrm_packets(&lab);
    println!("ip -s xfrm state packets: {packets:?}");
    assert_eq!(packets.len(), 4, "two SAs per spoke");
    assert!(packets.iter().all(|p| *p > 0), "{packets:?}");
    let report: DatapathReport = lab
        .show_report(Which::Hub, &["interfaces", "virtual-access"])
        .unwrap();
    assert_eq!(report.kind, "kernel");
    // Spoke 1 -> spoke 2 went in on va1 and out on va2: the tc program
    // reported it (for NHRP), once per pair and interval.
    let hairpins = report.global.hairpin_events;
    assert!(hairpins >= 1, "no hairpin reported: {report:?}");
    assert!(report.sas.iter().all(|s| s.rx_packets > 0), "{report:?}");

    clamps_mss_and_answers_df_over_the_mtu(&lab);
    xdp_drops_forged_spis(&lab);

    // Spoke 1 leaves: its link and routes go with its session.
    lab.stop_spoke(1).unwrap();
    let stopped = std::time::Instant::now();
    let deadline = stopped + LINK_GONE;
    loop {
        let links = text(&lab.hub().ip(["link", "show", "type", "gre"]).unwrap());
        if !links.contains("va1") {
            assert!(links.contains("va2"), "{links}");
            println!(
                "va1 gone {:.1}s after spoke 1 stopped",
                stopped.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "va1 still there: {links}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let routes = text(&lab.hub().ip(["route", "show"]).unwrap());
    assert!(!routes.contains("va1"), "{routes}");
    assert_eq!(xfrm_packets(&lab).len(), 2, "spoke 1's SAs are gone");
    // Its clamp rules went with the link; va2's stay.
    let table = nft_table(lab.hub()).unwrap();
    assert!(
        !table.contains("\"va1\"") && table.contains("\"va2\""),
        "{table}"
    );

    // The hub stops: its nftables table goes.
    lab.stop_hub().unwrap();
    assert_eq!(nft_table(lab.hub()), None, "the table outlived the hub");
}
