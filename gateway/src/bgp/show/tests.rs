//! `show bgp` and `show bgp summary`: the views built from a RIB, the IOS
//! text and the JSON.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::bgp::rib::tests::{
    announce, attrs, ebgp_peer, hub_config, interhub, ip, pfx, round, setup, spoke, spoke_update,
};
use crate::bgp::rib::{PeerId, RibConfig};
use crate::bgp::types::PathAttributes;

// ---------------------------------------------------------------- show bgp

/// The seed hub with two spokes, the inter-hub neighbor sending a DMVPN
/// route that a spoke also has (a second, not-best path), an eBGP route
/// with an AS_SET and a long prefix.
fn seed_view() -> TableView {
    let config = RibConfig {
        redistribute: vec![pfx("172.25.100.128/32")],
        ..hub_config()
    };
    let (mut rib, mut wire) = setup(
        config,
        &[
            (1, spoke(1)),
            (2, spoke(2)),
            (3, interhub()),
            (6, ebgp_peer(6, 65002)),
        ],
    );
    rib.update_from(PeerId(1), &spoke_update(1)).unwrap();
    rib.update_from(PeerId(2), &spoke_update(2)).unwrap();
    let dmvpn = PathAttributes {
        origin: Origin::Incomplete,
        med: Some(307_200),
        local_pref: Some(100),
        ..attrs("192.168.0.1")
    };
    rib.update_from(
        PeerId(3),
        &announce(&dmvpn, &["10.0.0.0/24", "192.168.102.0/24"]),
    )
    .unwrap();
    let ebgp = PathAttributes {
        as_path: vec![
            AsSegment::Sequence(vec![65002, 65010]),
            AsSegment::Set(vec![65020, 65021]),
        ],
        ..attrs("10.8.0.6")
    };
    rib.update_from(PeerId(6), &announce(&ebgp, &["172.16.0.0/12"]))
        .unwrap();
    round(&mut rib, &mut wire);
    table_view(&rib)
}

fn table_text() -> String {
    render_table(&seed_view())
}

#[test]
fn table_renders_like_ios() {
    let want = "\
BGP table version is 6, local router ID is 172.25.1.1
Status codes: s suppressed, * valid, > best, i - internal
Origin codes: i - IGP, e - EGP, ? - incomplete

     Network          Next Hop            Metric LocPrf Weight Path
 *>i 10.0.0.0/24      192.168.0.1         307200    100      0 ?
 *>  172.16.0.0/12    10.8.0.6                               0 65002 65010 {65020,65021} i
 *>  172.25.100.128/32
                      0.0.0.0                  0         32768 ?
 *>  192.168.0.0/16   0.0.0.0                            32768 i
 s>i 192.168.101.0/24 10.1.1.101               0    100      0 i
 s>i 192.168.102.0/24 10.1.1.102               0    100      0 i
 s i                  192.168.0.1         307200    100      0 ?
";
    assert_eq!(table_text(), want);
}

#[test]
fn empty_table() {
    let text = render_table(&TableView {
        version: 0,
        router_id: ip("172.25.1.1"),
        rows: vec![],
    });
    assert!(text.ends_with("Weight Path\n"), "{text}");
}

#[test]
fn rows_as_json() {
    let (mut rib, mut wire) = setup(hub_config(), &[(1, spoke(1))]);
    rib.update_from(PeerId(1), &spoke_update(1)).unwrap();
    round(&mut rib, &mut wire);
    let json = serde_json::to_value(table_view(&rib).rows).unwrap();
    assert_eq!(json[0]["prefix"], "192.168.0.0/16");
    assert_eq!(json[0]["source"], "aggregate");
    assert_eq!(json[0]["reason"], "only");
    assert_eq!(json[1]["prefix"], "192.168.101.0/24");
    assert_eq!(json[1]["suppressed"], true);
    assert_eq!(json[1]["source"], "10.1.1.101");
    assert_eq!(json[1]["peer"], 1);
    assert_eq!(json[1]["local_pref"], 100);
}

/// The JSON names of the best-path steps are serde's for the RIB's own
/// type, which the view held before it moved to gateway-report.
#[test]
fn step_names_are_serdes() {
    use crate::bgp::rib::Step;
    for step in [
        Step::Only,
        Step::Weight,
        Step::LocalPref,
        Step::LocallyOriginated,
        Step::AsPathLength,
        Step::Origin,
        Step::Med,
        Step::ExternalOverInternal,
        Step::RouterId,
        Step::ClusterListLength,
        Step::NeighborAddress,
        Step::SourceKind,
    ] {
        assert_eq!(serde_json::to_value(step).unwrap(), step.name(), "{step:?}");
    }
}

/// What the CLI decodes is what the daemon encoded, every field of every
/// row (best-path step, peer, cluster list included).
#[test]
fn view_round_trips_through_json() {
    let view = seed_view();
    let json = serde_json::to_string(&view).unwrap();
    let back: TableView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, view);
    assert_eq!(render_table(&back), table_text());
}

// -------------------------------------------------------- show bgp summary

fn established(address: &str, dynamic: bool, up: u64, pfx: usize) -> NeighborSummary {
    NeighborSummary {
        address: ip(address),
        dynamic,
        peer_group: dynamic.then(|| "Spokes".to_owned()),
        asn: 65001,
        msg_rcvd: 83,
        msg_sent: 82,
        table_version: 13,
        in_q: 0,
        out_q: 0,
        up_down_secs: Some(up),
        state: "Established".to_owned(),
        prefixes_received: Some(pfx),
    }
}

/// The seed hub: two spokes through the listen range (one with a
/// MsgRcvd too wide for its column), the inter-hub neighbor up three
/// days, and a second static neighbor that never came up. Given out of
/// order.
fn hub() -> Summary {
    let mut wide = established("10.1.1.100", true, 44, 1);
    wide.msg_rcvd = 123_456_789;
    wide.msg_sent = 4321;
    let mut interhub = established("192.168.0.1", false, 3 * 86_400 + 4 * 3600 + 5, 4);
    interhub.msg_rcvd = 97;
    interhub.msg_sent = 99;
    let never = NeighborSummary {
        table_version: 1,
        msg_rcvd: 0,
        msg_sent: 0,
        up_down_secs: None,
        state: "Active".to_owned(),
        prefixes_received: None,
        ..established("192.168.0.2", false, 0, 0)
    };
    Summary {
        router_id: ip("172.25.1.1"),
        asn: 65001,
        table_version: 13,
        prefixes: 4,
        paths: 5,
        listen_limit: 5000,
        listen_ranges: vec![("10.1.1.0/24".to_owned(), "Spokes".to_owned())],
        neighbors: vec![
            interhub,
            never,
            established("10.1.1.101", true, 4246, 1),
            wide,
        ],
    }
}

#[test]
fn summary_renders_like_ios() {
    let want = "\
BGP router identifier 172.25.1.1, local AS number 65001
BGP table version is 13, main routing table version 13
4 network entries
5 path entries

Neighbor        V           AS MsgRcvd MsgSent   TblVer  InQ OutQ Up/Down  State/PfxRcd
*10.1.1.100     4        65001 123456789    4321       13    0    0 00:00:44        1
*10.1.1.101     4        65001      83      82       13    0    0 01:10:46        1
192.168.0.1     4        65001      97      99       13    0    0 3d04h           4
192.168.0.2     4        65001       0       0        1    0    0 never    Active
* Dynamically created based on a listen range command
Dynamically created neighbors: 2, Subnet ranges: 1

BGP peergroup Spokes listen range group members: \n  10.1.1.0/24 \n
Total dynamically created neighbors: 2/(5000 max), Subnet ranges: 1
";
    assert_eq!(render_summary(&hub()), want);
}

#[test]
fn ranges_listed_under_their_peer_group() {
    let s = Summary {
        listen_ranges: vec![
            ("10.1.1.0/24".to_owned(), "Spokes".to_owned()),
            ("10.9.0.0/16".to_owned(), "Labs".to_owned()),
            ("10.1.2.0/24".to_owned(), "Spokes".to_owned()),
        ],
        neighbors: vec![],
        ..hub()
    };
    let text = render_summary(&s);
    assert!(
        !text.contains("Neighbor "),
        "no table without neighbors: {text}"
    );
    assert!(
        text.ends_with(
            "Dynamically created neighbors: 0, Subnet ranges: 3\n\n\
             BGP peergroup Spokes listen range group members: \n  10.1.1.0/24 \n  10.1.2.0/24 \n\n\
             BGP peergroup Labs listen range group members: \n  10.9.0.0/16 \n\n\
             Total dynamically created neighbors: 0/(5000 max), Subnet ranges: 3\n"
        ),
        "{text}"
    );
}

#[test]
fn no_listen_range_no_footer() {
    let s = Summary {
        listen_ranges: vec![],
        neighbors: vec![established("192.168.0.1", false, 10, 4)],
        ..hub()
    };
    let text = render_summary(&s);
    assert!(
        text.ends_with("00:00:10        4\n") && !text.contains("Dynamically"),
        "{text}"
    );
}

#[test]
fn up_down_formats() {
    let cases = [
        (None, "never"),
        (Some(0), "00:00:00"),
        (Some(86_399), "23:59:59"),
        (Some(86_400), "1d00h"),
        (Some(6 * 86_400 + 19 * 3600), "6d19h"),
        (Some(7 * 86_400), "1w0d"),
        (Some(13 * 86_400 + 3600), "1w6d"),
        (Some(365 * 86_400), "1y0w"),
        (Some((365 + 200) * 86_400), "1y28w"),
    ];
    for (secs, want) in cases {
        assert_eq!(up_down(secs), want, "{secs:?}");
    }
}

#[test]
fn json_round_trip() {
    let s = hub();
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["listen_ranges"][0][1], "Spokes");
    assert_eq!(v["neighbors"][1]["up_down_secs"], serde_json::Value::Null);
}
