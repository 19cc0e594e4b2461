//! `cargo xtask bench-bgp-scale`: the BGP spoke simulator (`loadgen-bgp`)
//! opens N iBGP sessions to `gateway run` (release build, `[bgp]` only),
//! then to FRR's bgpd configured alike, each in a fresh BGP scale lab
//! (`integration::bgp_scale_lab`), one after the other; every speaker
//! announces one /24 and is a route-reflector client, so each must end up
//! with the other N - 1. Prints every run and the ratios, for
//! BENCHMARKS.md.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;
use clap::Args;
use gateway_report::{bgp::Summary, loadgen_bgp::BgpLoadgenReport};
use integration::bgp_scale_lab::{BgpRun, BgpScaleLab};

use crate::{setup, util};

/// Options of `cargo xtask bench-bgp-scale`.
#[derive(Args, Debug)]
pub struct BgpScaleArgs {
    /// Numbers of speakers, comma-separated.
    #[arg(long, default_value = "1000,2000")]
    pub n: String,
    /// Sessions connecting at once (until Established).
    #[arg(long, default_value_t = 100)]
    pub in_flight: u32,
    /// Seconds each run may take to give every speaker its full table.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Skip FRR's bgpd.
    #[arg(long)]
    pub no_frr: bool,
    /// Skip our hub.
    #[arg(long)]
    pub no_ours: bool,
    /// Debug builds (a quick check of the command; figures meaningless).
    #[arg(long)]
    pub debug: bool,
}

/// One hub's run, with what it held at the end.
struct Measured {
    report: BgpLoadgenReport,
    held: String,
}

pub fn run(args: &BgpScaleArgs) -> anyhow::Result<()> {
    setup::run()?;
    let gateway = util::build_gateway(!args.debug)?;
    let loadgen = build_loadgen_bgp(!args.debug)?;
    let sizes: Vec<u32> = args
        .n
        .split(',')
        .map(|n| n.trim().parse().with_context(|| format!("--n: `{n}`")))
        .collect::<anyhow::Result<_>>()?;
    let mut summary = String::new();
    for &n in &sizes {
        let mut runs = Vec::new();
        if !args.no_ours {
            runs.push(measure_ours(&gateway, &loadgen, args, n)?);
        }
        if !args.no_frr {
            runs.push(measure_frr(&loadgen, args, n)?);
        }
        summary.push_str(&table(n, args, &runs));
    }
    println!("\nbench-bgp-scale");
    if args.debug {
        println!("(debug builds: these figures say nothing about speed)");
    }
    print!("{summary}");
    Ok(())
}

/// `loadgen-bgp`, a second binary of the `loadgen` package.
fn build_loadgen_bgp(release: bool) -> anyhow::Result<std::path::PathBuf> {
    let step = util::Step::new("build", "the BGP spoke simulator");
    let mut cmd = util::command("cargo");
    cmd.args(["build", "--package", "loadgen", "--bin", "loadgen-bgp"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || util::workspace_root().join("target"),
        std::path::PathBuf::from,
    );
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("loadgen-bgp");
    anyhow::ensure!(binary.is_file(), "{} was not built", binary.display());
    step.say(format_args!("{} ready", binary.display()));
    Ok(binary)
}

fn spec(args: &BgpScaleArgs, n: u32, label: &str, pid: u32) -> BgpRun {
    BgpRun {
        label: label.to_owned(),
        speakers: n,
        in_flight: args.in_flight,
        timeout: args.timeout,
        hold: true,
        hub_pid: Some(pid),
    }
}

/// The simulator's own limit, and time to start and stop.
fn bound(args: &BgpScaleArgs) -> Duration {
    Duration::from_secs(args.timeout + 60)
}

fn measure_ours(
    gateway: &Path,
    loadgen: &Path,
    args: &BgpScaleArgs,
    n: u32,
) -> anyhow::Result<Measured> {
    println!("bench-bgp-scale: {n} speakers into ours");
    let lab = BgpScaleLab::new("bgpscale")?;
    let hub = lab.start_gateway(gateway, n)?;
    let run = spec(args, n, "ours", hub.process().pid());
    let sim = lab.start_loadgen(loadgen, &run, &lab.dir().join("ours.json"))?;
    sim.follow(bound(args))?;
    let summary: Summary = hub.show_report(&["bgp", "summary"])?;
    let up = summary
        .neighbors
        .iter()
        .filter(|n| n.state == "Established")
        .count();
    let held = format!(
        "{} neighbors ({up} Established), {} prefixes",
        summary.neighbors.len(),
        summary.prefixes
    );
    sim.release()?;
    let report = sim.finish(bound(args))?;
    hub.stop()?;
    Ok(Measured { report, held })
}

fn measure_frr(loadgen: &Path, args: &BgpScaleArgs, n: u32) -> anyhow::Result<Measured> {
    println!("bench-bgp-scale: {n} speakers into FRR's bgpd");
    let lab = BgpScaleLab::new("bgpscale")?;
    let bgpd = lab.start_bgpd(n)?;
    let run = spec(args, n, "frr", bgpd.proc().pid());
    let sim = lab.start_loadgen(loadgen, &run, &lab.dir().join("frr.json"))?;
    sim.follow(bound(args))?;
    let held = match (bgpd.neighbors(), bgpd.routes()) {
        (Ok(neighbors), Ok(routes)) => {
            let up = neighbors
                .iter()
                .filter(|(_, state, _)| state == "Established")
                .count();
            format!(
                "{} neighbors ({up} Established), {} prefixes",
                neighbors.len(),
                routes.len()
            )
        }
        (Err(e), _) | (_, Err(e)) => format!("vtysh failed: {e:#}"),
    };
    sim.release()?;
    let report = sim.finish(bound(args))?;
    drop(bgpd);
    Ok(Measured { report, held })
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s"))
}

fn table(n: u32, args: &BgpScaleArgs, runs: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{n} speakers, {} connecting at once, one /24 each, all route-reflector clients",
        args.in_flight
    );
    let _ = writeln!(
        out,
        "  {:<6} {:>11} {:>11} {:>15} {:>11} {:>10} {:>9}",
        "hub", "established", "full table", "all Established", "full table", "hub CPU", "KiB/peer"
    );
    for m in runs {
        let r = &m.report;
        let _ = writeln!(
            out,
            "  {:<6} {:>11} {:>11} {:>15} {:>11} {:>10} {:>9}",
            r.label,
            format!("{}/{}", r.established, r.requested),
            format!("{}/{}", r.full_tables, r.requested),
            seconds(r.established_seconds),
            seconds(r.full_table_seconds),
            r.hub
                .as_ref()
                .map_or_else(|| "-".to_owned(), |h| format!("{:.0} ms", h.cpu_ms)),
            r.hub_kib_per_peer()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
        );
        let _ = writeln!(out, "  {:<6} held: {}", "", m.held);
        if r.wrong_next_hops + r.own_prefixes_returned + r.unexpected_prefixes > 0 {
            let _ = writeln!(
                out,
                "  {:<6} {} wrong next hops, {} own prefixes sent back, {} unexpected",
                "", r.wrong_next_hops, r.own_prefixes_returned, r.unexpected_prefixes
            );
        }
        for (why, count) in &r.failed {
            let _ = writeln!(out, "  {:<6} failed {count}: {why}", "");
        }
    }
    let ours = runs.iter().find(|m| m.report.label == "ours");
    let frr = runs.iter().find(|m| m.report.label == "frr");
    if let (Some(ours), Some(frr)) = (ours, frr) {
        let (ours, frr) = (&ours.report, &frr.report);
        let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{:.2}", ours / theirs),
            _ => "-".to_owned(),
        };
        let cpu = |r: &BgpLoadgenReport| r.hub.as_ref().map(|h| h.cpu_ms);
        let _ = writeln!(
            out,
            "  ours / FRR: all Established {}, full table {}, hub CPU {}, memory per peer {}",
            ratio(ours.established_seconds, frr.established_seconds),
            ratio(ours.full_table_seconds, frr.full_table_seconds),
            ratio(cpu(ours), cpu(frr)),
            ratio(ours.hub_kib_per_peer(), frr.hub_kib_per_peer()),
        );
    }
    out
}
