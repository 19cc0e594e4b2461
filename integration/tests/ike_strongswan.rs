//! strongSwan spokes (kernel-libipsec) against `gateway run`: IKE_SA
//! ESTABLISHED and CHILD_SA INSTALLED on the strongSwan side, a pool
//! address, and the hub's view through `show crypto ikev2 sa --json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

use integration::{gateway::gateway_bin, ike_lab::IkeLab, skip_unless_root};

fn in_pool(a: Ipv4Addr) -> bool {
    (integration::ike_lab::POOL_FIRST..=integration::ike_lab::POOL_LAST).contains(&a)
}

/// One spoke with `proposals` / `esp_proposals`: up, addressed, visible.
fn dial(tag: &str, proposals: &str, esp: &str) {
    let mut lab = IkeLab::start(&gateway_bin().unwrap(), tag, 1, "").unwrap();
    let charon = lab
        .charon(1, |p| {
            p.proposals = proposals.to_owned();
            p.esp_proposals = esp.to_owned();
        })
        .unwrap();
    if let Err(e) = charon.initiate("spoke", "hub") {
        panic!("{e:#}\n--- gateway log ---\n{}", lab.gateway_log());
    }
    let sas = charon.list_sas().unwrap();
    let sa = &sas[0];
    assert_eq!(sa.state, "ESTABLISHED", "{sa:?}");
    let child = &sa.children[0];
    assert_eq!(child.state, "INSTALLED", "{child:?}");
    let vip = sa.local_vip_v4().expect("a virtual IP from the hub");
    assert!(in_pool(vip), "{vip} outside the pool");

    let hub = lab.show_json(&["crypto", "ikev2", "sa"]).unwrap();
    let row = &hub.as_array().unwrap()[0];
    assert_eq!(row["status"], "READY", "{hub}");
    assert_eq!(row["assigned_address"], vip.to_string());
    assert_eq!(row["identity"], "fqdn:spoke1.example");
    // The spoke's outbound SPI is the hub's inbound one, and XDP passes it.
    let xdp = lab.show_json(&["xdp"]).unwrap();
    let spi_in = child.spi_out;
    assert!(xdp["sas"].as_array().unwrap().iter().any(|s| s["spi"] == spi_in), "SPI {spi_in:#x} not in XDP: {xdp}");
    let log = lab.gateway_log();
    assert!(log.contains("Crypto tunnel is UP") && log.contains("spoke1.example"), "{log}");
}

#[test]
fn strongswan_aes256_sha256_x25519_with_aes256gcm16() {
    skip_unless_root!();
    dial("ikex25519", "aes256-sha256-x25519", "aes256gcm16");
}
