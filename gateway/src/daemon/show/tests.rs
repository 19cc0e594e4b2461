#![allow(clippy::unwrap_used)]

use gateway_report::interfaces::GlobalCounters;

use super::*;

#[test]
fn version_in_one_line() {
    let v = VersionInfo {
        version: "0.1.0".into(),
        pid: 42,
        uptime_s: 61,
    };
    assert_eq!(render_version(&v), "gateway 0.1.0 (pid 42), up 61s\n");
}

fn child(spi_in: &str, spi_out: &str, active_s: u64, outbound: bool) -> ChildReport {
    ChildReport {
        spi_in: spi_in.into(),
        spi_out: spi_out.into(),
        mode: IpsecMode::Transport,
        encryption: "AES-CBC, keysize: 256".into(),
        integrity: Some("SHA256".into()),
        local_ts: vec!["172.25.1.1/32 proto 47".into()],
        remote_ts: vec!["172.16.1.2/32 proto 47".into()],
        transform: "esp-256-aes esp-sha256-hmac".into(),
        esn: false,
        active_s,
        lifetime_s: 3_600,
        lifetime_kb: 4_608_000,
        outbound,
    }
}

/// A hub's IKE SA in the middle of a CHILD_SA rekey: the old pair (0xc001)
/// and the new one (0xc002), listed newest first by IKE.
fn ike_sa(tunnel_id: u32, children: Vec<ChildReport>) -> SaReport {
    SaReport {
        tunnel_id,
        local: "172.25.1.1/4500".into(),
        remote: "172.16.1.2/4500".into(),
        status: "READY".into(),
        encryption: "AES-CBC, keysize: 256".into(),
        prf: "SHA256".into(),
        hash: Some("SHA256".into()),
        dh_group: 19,
        auth_sign: Some("pre-share".into()),
        auth_verify: Some("pre-share".into()),
        lifetime_s: 86_400,
        active_time_s: 3_000,
        spi_i: "0102030405060708".into(),
        spi_r: "1112131415161718".into(),
        identity: Some("fqdn:spoke1.cisco.com".into()),
        profile: Some("Flex".into()),
        assigned_address: None,
        nat_t: true,
        children,
    }
}

fn va(id: u32, name: &str, remote_outer: &str) -> VaCounters {
    VaCounters {
        id,
        name: name.into(),
        peer_inner: None,
        remote_outer: remote_outer.into(),
        mtu: 1400,
        ..VaCounters::default()
    }
}

fn counters(va: u32, spi_in: u32, spi_out: u32, rx: (u64, u64), tx: (u64, u64)) -> SaCounters {
    SaCounters {
        va,
        spi_in,
        spi_out,
        rx_packets: rx.0,
        rx_bytes: rx.1,
        tx_packets: tx.0,
        tx_bytes: tx.1,
        ..SaCounters::default()
    }
}

fn datapath() -> DatapathReport {
    DatapathReport {
        kind: "userspace".into(),
        workers: 1,
        virtual_access: vec![
            va(1, "Virtual-Access1", "172.16.1.2:4500"),
            va(0x8000_0001, "Tunnel1", "172.25.1.9:4500"),
        ],
        sas: vec![
            SaCounters {
                replayed: 2,
                auth_failed: 1,
                ..counters(1, 0xc001, 0xd001, (10, 2048 * 1024), (5, 1024 * 1024))
            },
            counters(1, 0xc002, 0xd002, (1, 100), (2, 200)),
            counters(0x8000_0001, 0xe001, 0xf001, (7, 700), (8, 800)),
        ],
        global: GlobalCounters::default(),
    }
}

#[test]
fn ipsec_sa_joins_ike_and_the_datapath_per_interface() {
    let ike = [ike_sa(
        1,
        vec![
            child("0x0000c002", "0x0000d002", 1, true),
            child("0x0000c001", "0x0000d001", 3_000, false),
        ],
    )];
    let report = ipsec_sa(&ike, Some(&datapath()), &[]);
    assert_eq!(report.interfaces.len(), 1);
    let i = &report.interfaces[0];
    assert_eq!(i.interface.as_deref(), Some("Virtual-Access1"));
    assert_eq!(i.tunnel_id, Some(1));
    assert_eq!(i.local, Some(Ipv4Addr::new(172, 25, 1, 1)));
    assert_eq!(
        (i.remote, i.remote_port),
        (Ipv4Addr::new(172, 16, 1, 2), Some(4500))
    );
    // Both pairs of the rekey, oldest first; the newest sends.
    assert_eq!(report.spis_in(), [0xc001, 0xc002]);
    assert_eq!(i.current_outbound_spi, Some(0xd002));
    assert_eq!((i.pkts_encaps, i.pkts_decaps), (7, 11));
    assert_eq!((i.pkts_replay_failed, i.pkts_verify_failed), (2, 1));
    let old = &i.sas[0];
    assert_eq!(
        (old.spi_out, old.packets_in, old.bytes_out),
        (0xd001, 10, 1024 * 1024)
    );
    // 3 MB of the 4,608,000 KB used (both directions), 600 s of 3600 left.
    assert_eq!(
        (old.remaining_kb, old.remaining_s),
        (Some(4_608_000 - 3072), Some(600))
    );
    assert_eq!(
        old.transform.as_deref(),
        Some("esp-256-aes esp-sha256-hmac")
    );
    assert_eq!(
        (old.mode, old.esn),
        (Some(IpsecMode::Transport), Some(false))
    );
    assert_eq!(i.sas[1].remaining_s, Some(3_599));

    // A rekey we answered: the old pair sends until it is deleted.
    let answered = [ike_sa(
        1,
        vec![
            child("0x0000c002", "0x0000d002", 1, false),
            child("0x0000c001", "0x0000d001", 3_000, true),
        ],
    )];
    let deferred = ipsec_sa(&answered, Some(&datapath()), &[]);
    assert_eq!(deferred.interfaces[0].current_outbound_spi, Some(0xd001));
    assert!(deferred.interfaces[0].sas[0].outbound && !deferred.interfaces[0].sas[1].outbound);

    // Without a datapath (or before the SA is installed): IKE's view only.
    let bare = ipsec_sa(&ike, None, &[]);
    assert_eq!(bare.interfaces[0].interface, None);
    assert_eq!(bare.interfaces[0].sas[1].remaining_kb, Some(4_608_000));
    // A half-open IKE SA has no CHILD_SA and no entry.
    assert!(
        ipsec_sa(&[ike_sa(2, vec![])], None, &[])
            .interfaces
            .is_empty()
    );
}

#[test]
fn ipsec_sa_lists_a_spokes_own_tunnel() {
    let up = TunnelStatus {
        tunnel: "Tunnel1".into(),
        hub: "172.25.1.9".into(),
        state: "up".into(),
        spi_in: Some(0xe001),
        spi_out: Some(0xf001),
        ..TunnelStatus::default()
    };
    let down = TunnelStatus {
        tunnel: "Tunnel2".into(),
        hub: "172.25.1.10".into(),
        state: "connecting".into(),
        ..TunnelStatus::default()
    };
    let report = ipsec_sa(&[], Some(&datapath()), &[up, down]);
    assert_eq!(report.interfaces.len(), 1, "{report:?}");
    let t = &report.interfaces[0];
    assert_eq!(t.interface.as_deref(), Some("Tunnel1"));
    assert_eq!((t.tunnel_id, t.local), (None, None));
    assert_eq!(
        (t.remote, t.remote_port),
        (Ipv4Addr::new(172, 25, 1, 9), Some(4500))
    );
    assert_eq!((t.pkts_encaps, t.pkts_decaps), (8, 7));
    assert_eq!(t.current_outbound_spi, Some(0xf001));
    assert_eq!(t.sas[0].transform, None);
    let text = render_ipsec_sa(&report);
    assert!(text.contains("interface: Tunnel1\n"), "{text}");
    assert!(
        text.contains("     remote crypto endpt.: 172.25.1.9\n"),
        "{text}"
    );
    assert!(text.contains("      spi: 0x0000E001(57345)\n"), "{text}");
}

#[test]
fn ipsec_sa_text_is_the_ios_layout_and_json_reads_back() {
    let ike = [ike_sa(
        1,
        vec![
            child("0x0000c002", "0x0000d002", 1, true),
            child("0x0000c001", "0x0000d001", 3_000, false),
        ],
    )];
    let report = ipsec_sa(&ike, Some(&datapath()), &[]);
    let text = render_ipsec_sa(&report);
    let sa = |spi: &str, kb: u64, s: u64| {
        format!(
            "      spi: {spi}\n\
             \x20       transform: esp-256-aes esp-sha256-hmac ,\n\
             \x20       in use settings ={{Transport, }}\n\
             \x20       sa timing: remaining key lifetime (k/sec): ({kb}/{s})\n\
             \x20       extended sequence numbers: N\n\
             \x20       Status: ACTIVE\n"
        )
    };
    let old_kb = 4_608_000 - 3072;
    let expected = format!(
        "interface: Virtual-Access1\n\
         \x20   IKEv2 Tunnel-id: 1\n\
         \n\
         \x20  current_peer 172.16.1.2 port 4500\n\
         \x20   #pkts encaps: 7, #pkts encrypt: 7, #pkts digest: 7\n\
         \x20   #pkts decaps: 11, #pkts decrypt: 11, #pkts verify: 11\n\
         \x20   #pkts replay failed: 2, #pkts verify failed: 1\n\
         \n\
         \x20    local crypto endpt.: 172.25.1.1, remote crypto endpt.: 172.16.1.2\n\
         \x20    current outbound spi: 0x0000D002(53250)\n\
         \n\
         \x20    inbound esp sas:\n\
         {}{}\
         \n\
         \x20    outbound esp sas:\n\
         {}{}\
         \n",
        sa("0x0000C001(49153)", old_kb, 600),
        sa("0x0000C002(49154)", 4_608_000, 3_599),
        sa("0x0000D001(53249)", old_kb, 600),
        sa("0x0000D002(53250)", 4_608_000, 3_599),
    );
    assert_eq!(text, expected, "got:\n{text}");
    assert_eq!(
        render_ipsec_sa(&IpsecSaReport::default()),
        "No IPsec SAs.\n"
    );

    // What the control socket sends is what the CLI and the tests read.
    let crate::control::Response::Ok { body } = crate::control::Response::ok(&report) else {
        panic!("encodes")
    };
    assert_eq!(body["interfaces"][0]["interface"], "Virtual-Access1");
    assert_eq!(body["interfaces"][0]["sas"][0]["spi_in"], 0xc001);
    assert_eq!(
        body["interfaces"][0]["sas"][0]["transform"],
        "esp-256-aes esp-sha256-hmac"
    );
    assert_eq!(
        serde_json::from_value::<IpsecSaReport>(body).unwrap(),
        report
    );
}
