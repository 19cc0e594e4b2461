//! The XDP uplink filter attached natively to a veth by the real daemon, with
//! real packets from spoke namespaces; counters read through the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration::{
    gateway::gateway_bin,
    packets::{self, IPPROTO_ESP},
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

    let sent = lab.send_traffic().unwrap();
    lab.check_counters(&sent).unwrap();

    // Removing an SPI through the CLI makes its packets unknown at once.
    let gateway = lab.gateway();
    gateway
        .cli_ok(["sa", "remove-spi", &format!("{SPI_RAW:#x}")])
        .unwrap();
    let before = verdict(&lab.show_xdp_json().unwrap(), "drop_esp_unknown_spi");
    let spoke = &lab.spokes[0].netns;
    packets::send_raw_ip(
        spoke,
        HUB_ADDRESS,
        IPPROTO_ESP,
        &packets::esp(SPI_RAW, 99, 64),
    )
    .unwrap();
    let dropped = integration::wait_until(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(50),
        || verdict(&lab.show_xdp_json().unwrap(), "drop_esp_unknown_spi") == before + 1,
    );
    assert!(dropped, "ESP for a removed SPI was not dropped");
    let report = lab.show_xdp_json().unwrap();
    assert!(
        report["sas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["spi"] != SPI_RAW),
        "{report}"
    );
    assert!(
        report["sas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["spi"] == SPI_NATT),
        "{report}"
    );

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

fn verdict(report: &serde_json::Value, name: &str) -> u64 {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["verdict"] == name)
        .and_then(|v| v["packets"].as_u64())
        .unwrap()
}
