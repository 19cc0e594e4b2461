//! `cargo xtask bench-throughput`: one TCP transfer from a spoke's LAN to
//! the hub's LAN through our gateways (userspace datapath, hub and spoke,
//! release build), then the same through strongSwan as hub and spoke
//! (kernel-libipsec, the reference of shared/interop/strongswan-hub), in the
//! same namespaces of one lab run; prints both rates and the ratio, for
//! BENCHMARKS.md.
//!
//! Both paths do userspace ESP-in-UDP with AES-256-GCM (our spoke is given
//! `esp_proposals = ["aes256gcm16"]`; the hub reports what was negotiated)
//! and forward between a LAN veth and a TUN device at each end. Figures
//! depend on the machine: run it on an idle one, and more than once.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use integration::flex_lab::{
    self, FlexLab, HUB_LAN_HOST, LabSpec, human_rate, iperf3_streams, wait_ping,
};

use crate::{
    setup,
    util::{self, Step},
};

/// Options of `cargo xtask bench-throughput`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Length of each iperf3 run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Parallel TCP streams (iperf3 -P).
    #[arg(long, default_value_t = 1)]
    pub streams: u32,
    /// Use the debug build (quick check of the command; figures are
    /// meaningless).
    #[arg(long)]
    pub debug: bool,
}

const SESSIONS_UP: Duration = Duration::from_secs(30);
const PATH_UP: Duration = Duration::from_secs(10);

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    setup::run()?;
    let gateway = util::build_gateway(!args.debug)?;
    let spec = LabSpec {
        own_spokes: 1,
        strongswan_spoke: false,
        spoke_esp_proposals: Some(vec!["aes256gcm16".to_owned()]),
        bgp: None,
        kernel_datapath: false,
    };
    let mut lab = FlexLab::start(&gateway, "bench", &spec).context("starting the lab")?;
    let transfer = format!(
        "{} s, {} TCP stream{}, spoke 1 LAN {} -> hub LAN {HUB_LAN_HOST}",
        args.seconds,
        args.streams,
        if args.streams == 1 { "" } else { "s" },
        flex_lab::spoke_lan_host(1)
    );

    let step = Step::new("bench", "our hub and spoke (userspace datapath)");
    let sessions = lab.wait_sessions(1, SESSIONS_UP)?;
    let esp = sessions
        .first()
        .and_then(|s| s.children.first())
        .map_or_else(|| "?".to_owned(), |c| c.encryption.clone());
    wait_ping(lab.spoke_lan(1), HUB_LAN_HOST, PATH_UP)
        .with_context(|| format!("the path through our gateways\n{}", lab.logs()))?;
    let ours = iperf3_streams(
        lab.hub_lan(),
        HUB_LAN_HOST,
        lab.spoke_lan(1),
        args.seconds,
        args.streams,
    )
    .with_context(|| format!("iperf3 through our gateways\n{}", lab.logs()))?;
    step.say(format_args!("{} (ESP {esp})", human_rate(ours)));
    lab.stop_spoke(1)?;
    lab.stop_hub()?;

    let step = Step::new("bench", "strongSwan hub and spoke (kernel-libipsec)");
    let (swan_hub, swan_spoke) = lab.start_strongswan_reference(1)?;
    let swan_esp = swan_spoke
        .list_sas()?
        .first()
        .and_then(|sa| sa.children.first())
        .and_then(|c| c.encr_alg.clone())
        .unwrap_or_else(|| "?".to_owned());
    wait_ping(lab.spoke_lan(1), HUB_LAN_HOST, PATH_UP).context("the path through strongSwan")?;
    let theirs = iperf3_streams(
        lab.hub_lan(),
        HUB_LAN_HOST,
        lab.spoke_lan(1),
        args.seconds,
        args.streams,
    )
    .context("iperf3 through strongSwan")?;
    step.say(format_args!("{} (ESP {swan_esp})", human_rate(theirs)));
    drop(swan_spoke);
    drop(swan_hub);

    println!("\nbench-throughput: {transfer}");
    if args.debug {
        println!("(debug build: these figures say nothing about speed)");
    }
    println!("  {:<44} {:>14}", "path", "rate");
    println!(
        "  {:<44} {:>14}",
        format!("our hub + our spoke (userspace, {esp})"),
        human_rate(ours)
    );
    println!(
        "  {:<44} {:>14}",
        format!("strongSwan hub + spoke (libipsec, {swan_esp})"),
        human_rate(theirs)
    );
    if theirs > 0.0 {
        println!("  ratio ours / strongSwan: {:.2}", ours / theirs);
    }
    Ok(())
}

/// Options of `cargo xtask bench-scale` (passed to the benchmark as
/// `BGP_SCALE_*` variables).
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// Numbers of dynamic neighbors, comma-separated.
    #[arg(long, default_value = "100,1000")]
    pub n: String,
    /// Runs per N (min and median are printed).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// `summary` (spoke prefixes under the hub's aggregate), `reflect`
    /// (prefixes reflected to every other client), or both.
    #[arg(long, default_value = "summary,reflect")]
    pub mode: String,
}

/// `cargo xtask bench-scale`: `cargo bench -p benches --bench bgp_scale`,
/// N dynamic neighbors against the hub's BGP speaker over loopback.
pub fn run_scale(args: &ScaleArgs) -> anyhow::Result<()> {
    util::run(
        util::command("cargo")
            .args(["bench", "-p", "benches", "--bench", "bgp_scale"])
            .env("BGP_SCALE_N", &args.n)
            .env("BGP_SCALE_RUNS", args.runs.to_string())
            .env("BGP_SCALE_MODE", &args.mode),
    )
}
