//! strongSwan spokes (kernel-libipsec) against `gateway run`: IKE_SA
//! ESTABLISHED and CHILD_SA INSTALLED on the strongSwan side, a pool
//! address, and the hub's view through `show crypto ikev2 sa --json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

use gateway_report::{ike::SaReport, pool::PoolReport, xdp::XdpReport};
use integration::{gateway::gateway_bin, ike_lab::IkeLab, skip_unless_root};

fn in_pool(a: Ipv4Addr) -> bool {
    (integration::ike_lab::POOL_FIRST..=integration::ike_lab::POOL_LAST).contains(&a)
}

/// One spoke with `proposals` / `esp_proposals`: up, addressed, visible.
fn dial(tag: &str, proposals: &str, esp: &str) {
    let mut lab = IkeLab::start(&gateway_bin().unwrap(), tag, 1, "").unwrap();
    let charon = lab
        .charon(1, |p| {
            proposals.clone_into(&mut p.proposals);
            esp.clone_into(&mut p.esp_proposals);
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

    let hub: Vec<SaReport> = lab.show_report(&["crypto", "ikev2", "sa"]).unwrap();
    let row = &hub[0];
    assert_eq!(row.status, "READY", "{hub:?}");
    assert_eq!(row.assigned_address, Some(vip));
    assert_eq!(row.identity.as_deref(), Some("fqdn:spoke1.example"));
    // The spoke's outbound SPI is the hub's inbound one, and XDP passes it.
    let xdp: XdpReport = lab.show_report(&["xdp"]).unwrap();
    let spi_in = child.spi_out;
    assert!(
        xdp.sa(spi_in).is_some(),
        "SPI {spi_in:#x} not in XDP: {xdp:?}"
    );
    let log = lab.gateway_log();
    assert!(
        log.contains("Crypto tunnel is UP") && log.contains("spoke1.example"),
        "{log}"
    );
}

#[test]
fn strongswan_aes256_sha256_x25519_with_aes256gcm16() {
    skip_unless_root!();
    dial("ikex25519", "aes256-sha256-x25519", "aes256gcm16");
}

#[test]
fn strongswan_aes128_sha256_modp2048_with_aes128_sha1() {
    skip_unless_root!();
    dial("ikemodp", "aes128-sha256-modp2048", "aes128-sha1");
}

#[test]
fn strongswan_aes256gcm16_prfsha384_ecp384_with_aes128gcm16() {
    skip_unless_root!();
    dial("ikeecp", "aes256gcm16-prfsha384-ecp384", "aes128gcm16");
}

#[test]
fn two_spokes_get_different_addresses_and_a_reconnect_gets_its_own_back_across_a_restart() {
    skip_unless_root!();
    let mut lab = IkeLab::start(&gateway_bin().unwrap(), "ikepool", 2, "").unwrap();
    let mut vips = Vec::new();
    for n in 1..=2 {
        let charon = lab.charon(n, |_| {}).unwrap();
        charon.initiate("spoke", "hub").unwrap();
        vips.push(charon.list_sas().unwrap()[0].local_vip_v4().unwrap());
    }
    assert_ne!(vips[0], vips[1], "two identities, two addresses");

    // Spoke 1 leaves and comes back: the same address.
    lab.spoke_charon(1).terminate_ike("spoke").unwrap();
    let gone = integration::wait_until(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(50),
        || {
            lab.show_report::<Vec<SaReport>>(&["crypto", "ikev2", "sa"])
                .unwrap()
                .len()
                == 1
        },
    );
    assert!(gone, "the hub still lists spoke 1 after its DELETE");
    let pools: Vec<PoolReport> = lab.show_report(&["ip", "local", "pool"]).unwrap();
    assert!(
        pools
            .iter()
            .flat_map(|p| &p.leases)
            .any(|l| l.address == vips[0] && l.state == "idle"),
        "{pools:?}"
    );
    lab.spoke_charon(1).initiate("spoke", "hub").unwrap();
    assert_eq!(
        lab.spoke_charon(1).list_sas().unwrap()[0].local_vip_v4(),
        Some(vips[0])
    );

    // The hub restarts: both spokes get their addresses back.
    let log = lab.stop_gateway().unwrap();
    assert!(
        log.contains("Crypto tunnel is DOWN"),
        "sessions reported down at shutdown:\n{log}"
    );
    lab.start_gateway().unwrap();
    for (n, vip) in [(2usize, vips[1]), (1, vips[0])] {
        let charon = lab.charon(n, |_| {}).unwrap();
        charon.initiate("spoke", "hub").unwrap();
        assert_eq!(
            charon.list_sas().unwrap()[0].local_vip_v4(),
            Some(vip),
            "spoke {n} after the hub restart"
        );
    }
}

#[test]
fn a_wrong_psk_is_refused_with_authentication_failed_and_logged() {
    skip_unless_root!();
    let mut lab = IkeLab::start(&gateway_bin().unwrap(), "ikebadpsk", 1, "").unwrap();
    let charon = lab
        .charon(1, |p| p.psk = "not-the-right-key".to_owned())
        .unwrap();
    let err = charon.initiate("spoke", "hub").unwrap_err();
    assert!(
        format!("{err:#}").contains("AUTHENTICATION_FAILED"),
        "{err:#}"
    );
    assert!(charon.log_contains("received AUTHENTICATION_FAILED notify error"));
    let log = lab.gateway_log();
    assert!(
        log.contains("pre-shared key does not match") && log.contains("spoke1.example"),
        "{log}"
    );
    assert!(
        lab.show_report::<Vec<SaReport>>(&["crypto", "ikev2", "sa"])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_identity_outside_every_profile_is_refused() {
    skip_unless_root!();
    let mut lab = IkeLab::start(&gateway_bin().unwrap(), "ikenoprof", 1, "").unwrap();
    let charon = lab
        .charon(1, |p| p.local_id = "intruder.other-domain".to_owned())
        .unwrap();
    assert!(charon.initiate("spoke", "hub").is_err());
    assert!(
        lab.gateway_log().contains("matches no IKEv2 profile"),
        "{}",
        lab.gateway_log()
    );
}
