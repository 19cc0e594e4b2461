//! `cargo xtask bench-ike-scale`: the spoke simulator (`loadgen`) dials
//! N spokes into `gateway run` (userspace datapath, release build), then
//! into strongSwan's charon as hub (shared/interop's recipe,
//! kernel-libipsec), each in a fresh scale lab (`integration::scale_lab`),
//! one after the other; prints every run and the ratios, for
//! BENCHMARKS.md. strongSwan's kernel-libipsec does tunnel mode only, so
//! the comparison is in tunnel mode; our hub is also run with GRE
//! transport mode, as FlexVPN spokes dial it.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;
use clap::Args;
use gateway_report::{
    ike::SaReport, interfaces::DatapathReport, loadgen::LoadgenReport, xdp::XdpReport,
};
use integration::scale_lab::{LoadgenRun, ScaleLab, SpokeMode};

use crate::{setup, util};

/// Options of `cargo xtask bench-ike-scale`.
#[derive(Args, Debug)]
pub struct IkeScaleArgs {
    /// Numbers of spokes, comma-separated.
    #[arg(long, default_value = "1000,4000")]
    pub n: String,
    /// Dials in progress at once.
    #[arg(long, default_value_t = 100)]
    pub in_flight: u32,
    /// Seconds of steady state after dialling (liveness checks answered).
    #[arg(long, default_value_t = 0)]
    pub steady: u64,
    /// Fraction of spokes that leave and dial again in the steady phase.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Skip the strongSwan hub.
    #[arg(long)]
    pub no_strongswan: bool,
    /// Skip our hub with GRE transport mode.
    #[arg(long)]
    pub no_transport: bool,
    /// Debug builds (a quick check of the command; figures meaningless).
    #[arg(long)]
    pub debug: bool,
}

/// One hub's run, with what it held at the peak.
struct Measured {
    report: LoadgenReport,
    held: String,
}

pub fn run(args: &IkeScaleArgs) -> anyhow::Result<()> {
    setup::run()?;
    let gateway = util::build_gateway(!args.debug)?;
    let loadgen = util::build_loadgen(!args.debug)?;
    let sizes: Vec<u32> = args
        .n
        .split(',')
        .map(|n| n.trim().parse().with_context(|| format!("--n: `{n}`")))
        .collect::<anyhow::Result<_>>()?;
    let mut summary = String::new();
    for &n in &sizes {
        let mut runs = Vec::new();
        let ours = measure_ours(&gateway, &loadgen, args, n, SpokeMode::Tunnel)?;
        runs.push(ours);
        if !args.no_transport {
            runs.push(measure_ours(
                &gateway,
                &loadgen,
                args,
                n,
                SpokeMode::Transport,
            )?);
        }
        if !args.no_strongswan {
            runs.push(measure_strongswan(&loadgen, args, n)?);
        }
        summary.push_str(&table(n, args, &runs));
    }
    println!("\nbench-ike-scale");
    if args.debug {
        println!("(debug builds: these figures say nothing about speed)");
    }
    print!("{summary}");
    Ok(())
}

fn spec(args: &IkeScaleArgs, n: u32, mode: SpokeMode, label: &str, pid: u32) -> LoadgenRun {
    LoadgenRun {
        label: label.to_owned(),
        spokes: n,
        in_flight: args.in_flight,
        mode,
        steady: args.steady,
        churn: args.churn,
        hold: true,
        hub_pid: Some(pid),
    }
}

/// Generous: a hub that sets up 20 spokes a second, every one retried.
fn dial_bound(n: u32) -> Duration {
    Duration::from_secs(120 + u64::from(n) / 20)
}

fn measure_ours(
    gateway: &Path,
    loadgen: &Path,
    args: &IkeScaleArgs,
    n: u32,
    mode: SpokeMode,
) -> anyhow::Result<Measured> {
    let label = format!("ours ({})", mode.as_str());
    println!("bench-ike-scale: {n} spokes into {label}");
    let lab = ScaleLab::new("ikescale")?;
    let hub = lab.start_gateway(gateway, None)?;
    let run = spec(args, n, mode, &label, hub.process().pid());
    let sim = lab.start_loadgen(loadgen, &run, &lab.dir().join("ours.json"))?;
    sim.follow(dial_bound(n) + Duration::from_secs(args.steady))?;
    let sas: Vec<SaReport> = hub.show_report(&["crypto", "ikev2", "sa"])?;
    let datapath: DatapathReport = hub.show_report(&["interfaces", "virtual-access"])?;
    let xdp: XdpReport = hub.show_report(&["xdp"])?;
    let held = format!(
        "{} IKE SAs, {} virtual-access, {} datapath SAs, {} XDP SPIs",
        sas.len(),
        datapath.virtual_access.len(),
        datapath.sas.len(),
        xdp.sas.len()
    );
    sim.release()?;
    let report = sim.finish(dial_bound(n))?;
    hub.stop()?;
    Ok(Measured { report, held })
}

fn measure_strongswan(loadgen: &Path, args: &IkeScaleArgs, n: u32) -> anyhow::Result<Measured> {
    let label = "strongSwan (tunnel)";
    println!("bench-ike-scale: {n} spokes into {label}");
    let lab = ScaleLab::new("ikescale")?;
    let charon = lab.start_charon()?;
    let run = spec(args, n, SpokeMode::Tunnel, label, charon.proc().pid());
    let sim = lab.start_loadgen(loadgen, &run, &lab.dir().join("swan.json"))?;
    sim.follow(dial_bound(n) + Duration::from_secs(args.steady))?;
    let held = match charon.list_sas() {
        Ok(sas) => format!("{} IKE SAs", sas.len()),
        Err(e) => format!("swanctl --list-sas failed: {e:#}"),
    };
    sim.release()?;
    let report = sim.finish(dial_bound(n))?;
    drop(charon);
    Ok(Measured { report, held })
}

fn table(n: u32, args: &IkeScaleArgs, runs: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{n} spokes, {} in flight, x25519 / aes256gcm16, PSK, config request",
        args.in_flight
    );
    let _ = writeln!(
        out,
        "  {:<22} {:>11} {:>7} {:>9} {:>9} {:>6} {:>9} {:>10}",
        "hub", "established", "SAs/s", "p50 ms", "p99 ms", "retx", "CPU/SA", "KiB/spoke"
    );
    for m in runs {
        let r = &m.report;
        let _ = writeln!(
            out,
            "  {:<22} {:>11} {:>7.0} {:>9.1} {:>9.1} {:>6} {:>9} {:>10}",
            r.label,
            format!("{}/{}", r.established, r.requested),
            r.sas_per_second,
            r.setup.p50_ms,
            r.setup.p99_ms,
            r.retransmits,
            r.hub_cpu_ms_per_sa()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms")),
            r.hub_kib_per_spoke()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
        );
        let _ = writeln!(out, "  {:<22} held: {}", "", m.held);
        for (why, count) in &r.failed {
            let _ = writeln!(out, "  {:<22} failed {count}: {why}", "");
        }
    }
    let ours = runs.iter().find(|m| m.report.label == "ours (tunnel)");
    let swan = runs
        .iter()
        .find(|m| m.report.label.starts_with("strongSwan"));
    if let (Some(ours), Some(swan)) = (ours, swan) {
        let (ours, swan) = (&ours.report, &swan.report);
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{:.2}", ours / theirs),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "  ours / strongSwan (tunnel): SAs/s {}, CPU per SA {}, memory per spoke {}",
            ratio(Some(ours.sas_per_second), Some(swan.sas_per_second)),
            ratio(ours.hub_cpu_ms_per_sa(), swan.hub_cpu_ms_per_sa()),
            ratio(ours.hub_kib_per_spoke(), swan.hub_kib_per_spoke()),
        );
    }
    out
}
