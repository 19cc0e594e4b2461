//! The spoke simulator against the real `gateway run` in the scale lab:
//! every spoke is established with a distinct address from the pool, the
//! hub holds exactly N sessions, virtual-access and SAs, the steady phase's
//! liveness checks are answered and its leavers dial again; once every
//! spoke has left, the hub holds nothing.

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use gateway_report::{ike::SaReport, interfaces::DatapathReport, pool::PoolReport, xdp::XdpReport};
use integration::{
    gateway::gateway_bin,
    scale_lab::{LoadgenRun, ScaleLab, SpokeMode},
    skip_unless_root, wait_until,
};

const SPOKES: u32 = 120;
/// Functional bounds, far above what a loaded machine needs (about 2 s to
/// dial 120 spokes with a debug hub).
const DIAL_BOUND: Duration = Duration::from_mins(3);
const LEAVE_BOUND: Duration = Duration::from_mins(2);

#[test]
fn every_spoke_dials_in_and_the_hub_holds_nothing_once_they_leave() {
    skip_unless_root!();
    let lab = ScaleLab::new("lgsim").unwrap();
    // Liveness checks every 10 s (the least allowed): the 15 s steady
    // phase sees one per spoke.
    let hub = lab
        .start_gateway(&gateway_bin().unwrap(), Some(10))
        .unwrap();
    let run = LoadgenRun {
        label: "ours".to_owned(),
        spokes: SPOKES,
        in_flight: 40,
        mode: SpokeMode::Transport,
        steady: 15,
        churn: 0.1,
        hold: true,
        hub_pid: Some(hub.process().pid()),
    };
    let json = lab.dir().join("loadgen.json");
    let loadgen = lab
        .start_loadgen(Path::new(env!("CARGO_BIN_EXE_loadgen")), &run, &json)
        .unwrap();
    loadgen.wait_holding(DIAL_BOUND).unwrap();

    let sas: Vec<SaReport> = hub.show_report(&["crypto", "ikev2", "sa"]).unwrap();
    assert_eq!(sas.len(), SPOKES as usize, "{}", loadgen.output());
    let datapath: DatapathReport = hub.show_report(&["interfaces", "virtual-access"]).unwrap();
    assert_eq!(datapath.virtual_access.len(), SPOKES as usize);
    let pools: Vec<PoolReport> = hub.show_report(&["ip", "local", "pool"]).unwrap();
    assert_eq!(pools[0].in_use, u64::from(SPOKES));
    let xdp: XdpReport = hub.show_report(&["xdp"]).unwrap();
    assert_eq!(xdp.sas.len(), SPOKES as usize, "one inbound SPI per spoke");

    loadgen.release().unwrap();
    let report = loadgen.finish(LEAVE_BOUND).unwrap();
    println!("{report:#?}");
    assert_eq!(report.established, u64::from(SPOKES), "{:?}", report.failed);
    assert_eq!(report.addresses_distinct, u64::from(SPOKES));
    assert_eq!(report.addresses_outside_pool, 0);
    assert_eq!(report.redialled, u64::from(SPOKES / 10));
    assert_eq!(report.redial_failed, 0);
    assert!(
        // A spoke that dialled again in the steady phase may not be due yet.
        report.hub_requests_answered >= u64::from(SPOKES - SPOKES / 10),
        "the hub's liveness checks reached the spokes: {}",
        report.hub_requests_answered
    );
    assert_eq!(report.left, u64::from(SPOKES));
    let usage = report.hub.as_ref().unwrap();
    assert!(usage.cpu_ms > 0.0 && usage.hwm_after_kib >= usage.rss_before_kib);

    let empty = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        let sas: Vec<SaReport> = hub.show_report(&["crypto", "ikev2", "sa"]).unwrap();
        let datapath: DatapathReport = hub.show_report(&["interfaces", "virtual-access"]).unwrap();
        let pools: Vec<PoolReport> = hub.show_report(&["ip", "local", "pool"]).unwrap();
        let xdp: XdpReport = hub.show_report(&["xdp"]).unwrap();
        sas.is_empty()
            && datapath.virtual_access.is_empty()
            && datapath.sas.is_empty()
            && pools[0].in_use == 0
            && xdp.sas.is_empty()
    });
    assert!(
        empty,
        "the hub still holds state after every spoke left:\n{}",
        hub.cli_ok(["show", "crypto", "session"])
            .unwrap_or_default()
    );
}
