//! The BGP simulator against the real `gateway run` in the BGP scale lab:
//! every speaker reaches Established and ends up with every other
//! speaker's /24 (reflected, next hop unchanged, its own not sent back),
//! the hub shows N dynamic neighbors with one prefix each, and once the
//! speakers leave with a Cease the hub forgets them.

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use gateway_report::bgp::Summary;
use integration::{
    bgp_scale_lab::{BgpRun, BgpScaleLab},
    gateway::gateway_bin,
    skip_unless_root, wait_until,
};

const SPEAKERS: u32 = 50;
/// Functional bounds, far above what a loaded machine needs (well under a
/// second with a debug hub).
const RUN_BOUND: Duration = Duration::from_mins(2);

#[test]
fn every_speaker_gets_every_other_speakers_prefix_through_the_hub() {
    skip_unless_root!();
    let lab = BgpScaleLab::new("lgbgp").unwrap();
    let hub = lab
        .start_gateway(&gateway_bin().unwrap(), SPEAKERS)
        .unwrap();
    let run = BgpRun {
        label: "ours".to_owned(),
        speakers: SPEAKERS,
        in_flight: 20,
        timeout: RUN_BOUND.as_secs(),
        hold: true,
        hub_pid: Some(hub.process().pid()),
    };
    let json = lab.dir().join("loadgen-bgp.json");
    let sim = lab
        .start_loadgen(Path::new(env!("CARGO_BIN_EXE_loadgen-bgp")), &run, &json)
        .unwrap();
    sim.wait_holding(RUN_BOUND).unwrap();

    let summary: Summary = hub.show_report(&["ip", "bgp", "summary"]).unwrap();
    assert_eq!(summary.neighbors.len(), SPEAKERS as usize, "{summary:?}");
    for n in &summary.neighbors {
        assert!(n.dynamic && n.state == "Established", "{n:?}");
        assert_eq!(n.prefixes_received, Some(1), "{n:?}");
    }
    assert_eq!(summary.prefixes, SPEAKERS as usize);

    sim.release().unwrap();
    let report = sim.finish(RUN_BOUND).unwrap();
    println!("{report:#?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.established, u64::from(SPEAKERS));
    assert_eq!(report.full_tables, u64::from(SPEAKERS));
    assert!(report.established_seconds.is_some() && report.full_table_seconds.is_some());
    assert_eq!(
        report.prefixes_received,
        u64::from(SPEAKERS * (SPEAKERS - 1)),
        "each speaker got each other prefix once"
    );
    assert_eq!(
        (
            report.wrong_next_hops,
            report.own_prefixes_returned,
            report.unexpected_prefixes
        ),
        (0, 0, 0)
    );
    let usage = report.hub.as_ref().unwrap();
    // CPU comes in clock ticks (10 ms) and the whole exchange can take less:
    // it may read 0. Memory is read in KiB and must be there.
    assert!(usage.cpu_ms >= 0.0 && usage.rss_before_kib > 0);
    assert!(usage.hwm_after_kib >= usage.rss_before_kib);

    let forgotten = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let summary: Summary = hub.show_report(&["ip", "bgp", "summary"]).unwrap();
        summary.neighbors.is_empty() && summary.prefixes == 0
    });
    assert!(
        forgotten,
        "the hub still holds the speakers after their Cease:\n{}",
        hub.cli_ok(["show", "ip", "bgp", "summary"])
            .unwrap_or_default()
    );
}
