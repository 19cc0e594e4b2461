//! The kernel datapath (XFRM + ip_gre) end to end: the hub and two own
//! spokes with `datapath = "kernel"`, GRE over ESP in the kernel, routes
//! and links that come and go with the sessions, the SA counters in `ip -s
//! xfrm state`, XDP dropping ESP with a forged SPI, the tc program
//! reporting spoke-to-spoke traffic. Needs a kernel with ip_gre and esp4: the VM tier (`cargo
//! xtask vm-test`, run by `cargo xtask test`) runs it; on a host without
//! them it says so and passes, unless `GATEWAY_REQUIRE_KERNEL_DATAPATH=1`
//! (set in the VM) makes the absence a failure.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use integration::{
    flex_lab::{self, FlexLab, HUB_LAN_HOST, LabSpec, Which, spoke_lan_host},
    gateway::gateway_bin,
    packets,
};

const IPPROTO_ESP: u8 = 50;
/// An SPI no SA has.
const FORGED_SPI: u32 = 0x0bad_5b1d;

/// What the kernel lacks for this test, as the gateway detects it.
fn missing_kernel_features() -> Vec<&'static str> {
    let has = |p: &str| std::path::Path::new(p).exists();
    let mut missing = Vec::new();
    if !has("/sys/class/net/gre0") && !has("/sys/module/ip_gre") {
        missing.push("ip_gre");
    }
    if !has("/sys/module/esp4") {
        missing.push("esp4");
    }
    missing
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packet counts of `ip -s xfrm state` (the `lifetime current` lines).
fn xfrm_packets(lab: &FlexLab) -> Vec<u64> {
    let out = text(&lab.hub().ip(["-s", "xfrm", "state"]).unwrap());
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            // "0(bytes), 0(packets)"
            let at = l.find("(packets)")?;
            let before = &l[..at];
            before.rsplit([' ', ',']).next()?.parse().ok()
        })
        .collect()
}

#[test]
fn spokes_reach_each_other_through_gre_over_esp_in_the_kernel() {
    let missing = missing_kernel_features();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("GATEWAY_REQUIRE_KERNEL_DATAPATH").is_none(),
            "the kernel lacks {missing:?} where the kernel datapath is required"
        );
        eprintln!(
            "SKIPPED: this kernel lacks {}; the VM tier (cargo xtask vm-test) runs this test",
            missing.join(" and ")
        );
        return;
    }
    let gateway = gateway_bin().unwrap();
    let spec = LabSpec {
        kernel_datapath: true,
        ..LabSpec::new(2, false)
    };
    let mut lab = FlexLab::start(&gateway, "kdp", &spec).unwrap();
    lab.wait_sessions(2, Duration::from_mins(2)).unwrap();

    // The virtual-access links, GRE point-to-point, on the hub.
    let links = text(&lab.hub().ip(["-d", "link", "show", "type", "gre"]).unwrap());
    println!("{links}");
    assert!(links.contains("va1") && links.contains("va2"), "{links}");

    for (from, to, what) in [
        (lab.hub_lan(), spoke_lan_host(1), "hub LAN -> spoke 1 LAN"),
        (lab.spoke_lan(1), HUB_LAN_HOST, "spoke 1 LAN -> hub LAN"),
        (
            lab.spoke_lan(1),
            spoke_lan_host(2),
            "spoke 1 LAN -> spoke 2 LAN",
        ),
    ] {
        let _ = flex_lab::wait_ping(from, to, Duration::from_secs(30));
        let r = flex_lab::ping(from, to, 3).unwrap();
        assert!(r.received >= 2, "{what}: {r:?}\n{}", lab.logs());
    }

    // The traffic went through our SAs in the kernel.
    let packets = xfrm_packets(&lab);
    println!("ip -s xfrm state packets: {packets:?}");
    assert_eq!(packets.len(), 4, "two SAs per spoke");
    assert!(packets.iter().all(|p| *p > 0), "{packets:?}");
    let report = lab
        .show_json(Which::Hub, &["interfaces", "virtual-access"])
        .unwrap();
    assert_eq!(report["kind"], "kernel");
    // Spoke 1 -> spoke 2 went in on va1 and out on va2: the tc program
    // reported it (for NHRP), once per pair and interval.
    let hairpins = report["global"]["hairpin_events"].as_u64().unwrap();
    assert!(hairpins >= 1, "no hairpin reported: {report}");
    let sas = report["sas"].as_array().unwrap();
    assert!(
        sas.iter().all(|s| s["rx_packets"].as_u64() > Some(0)),
        "{report}"
    );

    // XDP on the hub's uplink drops ESP with a forged SPI before XFRM
    // sees it, and counts it.
    let dropped = |lab: &FlexLab| -> u64 {
        let report = lab.show_json(Which::Hub, &["xdp"]).unwrap();
        report["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["verdict"] == "drop_esp_unknown_spi")
            .and_then(|v| v["packets"].as_u64())
            .unwrap()
    };
    let before = dropped(&lab);
    for seq in 1..=3 {
        packets::send_raw_ip(
            lab.spoke(2),
            flex_lab::HUB_ADDRESS,
            IPPROTO_ESP,
            &packets::esp(FORGED_SPI, seq, 64),
        )
        .unwrap();
    }
    let counted =
        integration::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            dropped(&lab) >= before + 3
        });
    assert!(
        counted,
        "forged-SPI ESP not dropped by XDP: {}",
        dropped(&lab) - before
    );

    // Spoke 1 leaves: its link and routes go with its session.
    lab.stop_spoke(1).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let links = text(&lab.hub().ip(["link", "show", "type", "gre"]).unwrap());
        if !links.contains("va1") {
            assert!(links.contains("va2"), "{links}");
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
}
