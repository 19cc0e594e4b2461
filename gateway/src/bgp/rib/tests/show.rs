//! `show bgp`: the rows and the IOS text.

use super::*;

/// The seed hub with two spokes, the inter-hub neighbor sending a DMVPN
/// route that a spoke also has (a second, not-best path), an eBGP route
/// with an AS_SET and a long prefix.
fn table_view() -> TableView {
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
    rib.view()
}

fn table_text() -> String {
    table_view().render()
}

#[test]
fn render_like_ios() {
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
    let text = render_table(0, ip("172.25.1.1"), &[]);
    assert!(text.ends_with("Weight Path\n"), "{text}");
}

#[test]
fn rows_as_json() {
    let (mut rib, mut wire) = setup(hub_config(), &[(1, spoke(1))]);
    rib.update_from(PeerId(1), &spoke_update(1)).unwrap();
    round(&mut rib, &mut wire);
    let json = serde_json::to_value(rib.table()).unwrap();
    assert_eq!(json[0]["prefix"], "192.168.0.0/16");
    assert_eq!(json[0]["source"], "aggregate");
    assert_eq!(json[0]["reason"], "only");
    assert_eq!(json[1]["prefix"], "192.168.101.0/24");
    assert_eq!(json[1]["suppressed"], true);
    assert_eq!(json[1]["source"], "10.1.1.101");
    assert_eq!(json[1]["peer"], 1);
    assert_eq!(json[1]["local_pref"], 100);
}

/// What the CLI decodes is what the daemon encoded, every field of every
/// row (best-path step, peer, cluster list included).
#[test]
fn view_round_trips_through_json() {
    let view = table_view();
    let json = serde_json::to_string(&view).unwrap();
    let back: TableView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, view);
    assert_eq!(back.render(), table_text());
}
