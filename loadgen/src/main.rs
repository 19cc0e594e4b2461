//! `loadgen`: a spoke simulator. N spokes, each from its own source
//! address, dial a hub over real UDP with the project's IKEv2 initiator
//! (`gateway::ike::exchange::Initiator`): IKE_SA_INIT, then IKE_AUTH with a
//! configuration request and one CHILD_SA (GRE transport mode as FlexVPN
//! spokes, or tunnel mode). At most `--in-flight` dials at a time, each
//! request resent as our own spoke does (RFC 7296 section 2.1). Then, as
//! asked: a steady phase (the hub's liveness checks answered, a fraction of
//! the spokes leaving and dialling again), a hold until SIGUSR1 (so a
//! harness can look at the hub), and every spoke leaving with a DELETE.
//!
//! The source addresses must be local in the namespace it runs in: the
//! harness routes the whole range to `lo` (`ip route add local
//! 10.200.0.0/16 dev lo`), so each spoke binds its own address without one
//! `ip addr` per spoke. Results: a table on stdout, and
//! `gateway_report::loadgen::LoadgenReport` as JSON with `--json`.

mod report;
mod shared;
mod spoke;

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use gateway_report::loadgen::LoadgenReport;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::{
    report::{HubProbe, Tally},
    spoke::{DialOutcome, Phase, Plan, SpokeSetup},
};

/// Dial a hub with thousands of simulated IKEv2 spokes and measure it.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// The hub's IKE address.
    #[arg(long)]
    pub hub: Ipv4Addr,
    /// How many spokes.
    #[arg(long, default_value_t = 100)]
    pub spokes: u32,
    /// The first spoke's source address; spoke i uses this plus i. Every
    /// one must be local here (a `local` route to `lo` covering them).
    #[arg(long, default_value = "10.200.0.1")]
    pub source_first: Ipv4Addr,
    /// Dials in progress at once.
    #[arg(long, default_value_t = 100)]
    pub in_flight: usize,
    /// The pre-shared key (both directions).
    #[arg(long, env = "LOADGEN_PSK")]
    pub psk: String,
    /// Spoke i is `fqdn:spoke-i.DOMAIN`.
    #[arg(long, default_value = "loadgen.example")]
    pub domain: String,
    /// `transport` (GRE between the outer addresses, FlexVPN) or `tunnel`.
    #[arg(long, default_value = "transport")]
    pub mode: String,
    /// IKE proposals offered, comma-separated (`aes256-sha256-x25519`).
    #[arg(long, default_value = "aes256-sha256-x25519")]
    pub ike: String,
    /// ESP proposals offered, comma-separated.
    #[arg(long, default_value = "aes256gcm16")]
    pub esp: String,
    /// Put ESP (and IKE after IKE_SA_INIT) in UDP 4500 without a NAT.
    #[arg(long)]
    pub encap: bool,
    /// Seconds before a request is sent again, and how often it is sent.
    #[arg(long, default_value_t = 2.0)]
    pub retransmit: f64,
    #[arg(long, default_value_t = 5)]
    pub tries: u32,
    /// Seconds of steady state after every spoke has dialled.
    #[arg(long, default_value_t = 0)]
    pub steady: u64,
    /// Fraction of the spokes that leave and dial again during the steady
    /// phase, each at a random moment of it.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// After dialling (and the steady phase), print `loadgen: holding` and
    /// wait for SIGUSR1 before leaving, answering the hub meanwhile.
    #[arg(long)]
    pub hold: bool,
    /// Do not send DELETEs at the end (the hub is left with every session).
    #[arg(long)]
    pub no_leave: bool,
    /// The hub's pool, `FIRST-LAST`: addresses handed out outside it are
    /// counted.
    #[arg(long)]
    pub pool: Option<String>,
    /// The hub's process id: its CPU and memory go in the result.
    #[arg(long)]
    pub hub_pid: Option<u32>,
    /// Name of this run in the result ("ours", "strongswan").
    #[arg(long, default_value = "hub")]
    pub label: String,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Runtime threads of the simulator itself.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.spokes == 0 || args.in_flight == 0 {
        bail!("--spokes and --in-flight must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.churn) {
        bail!("--churn is a fraction, 0 to 1 (got {})", args.churn);
    }
    // One socket per spoke, two while one floats to 4500.
    shared::raise_fd_limit(u64::from(args.spokes) + args.in_flight as u64 + 64)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let setup = Arc::new(SpokeSetup::from_args(&args)?);
    let pool = args.pool.as_deref().map(report::parse_pool).transpose()?;
    let started = Instant::now();
    let own_cpu = report::own_cpu_ms();
    let n = args.spokes;
    let plan = Plan::new(n, args.steady, args.churn);

    let (phase_tx, phase_rx) = watch::channel(Phase::Dialling);
    let (dialled_tx, mut dialled_rx) = mpsc::channel::<DialOutcome>(1024);
    let gate = Arc::new(Semaphore::new(args.in_flight));
    let tally = Arc::new(Tally::default());
    let progress = report::Progress::new(u64::from(n));
    let hub_probe = args.hub_pid.map(HubProbe::start).transpose()?;

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..n {
        let socket = spoke::bind(setup.source(index), gateway::net::IKE_PORT)
            .await
            .with_context(|| format!("binding spoke {index}'s socket"))?;
        tasks.spawn(spoke::run(
            index,
            socket,
            Arc::clone(&setup),
            plan.churn_at(index),
            phase_rx.clone(),
            dialled_tx.clone(),
            Arc::clone(&gate),
            Arc::clone(&tally),
        ));
    }
    drop(dialled_tx);

    let mut outcomes = Vec::with_capacity(n as usize);
    while outcomes.len() < n as usize {
        let Some(outcome) = dialled_rx.recv().await else {
            bail!("spoke tasks ended before dialling");
        };
        progress.dialled(outcome.established);
        outcomes.push(outcome);
    }
    let dial_seconds = started.elapsed().as_secs_f64();
    progress.finish();
    let hub = hub_probe.map(HubProbe::finish).transpose()?;
    let established = outcomes.iter().filter(|o| o.established).count();
    println!("loadgen: dialled {established}/{n} in {dial_seconds:.2} s");

    if args.steady > 0 {
        println!("loadgen: steady for {} s", args.steady);
        let _ = phase_tx.send(Phase::Steady(Instant::now()));
        tokio::time::sleep(Duration::from_secs(args.steady)).await;
    }
    if args.hold {
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .context("waiting for SIGUSR1")?;
        println!("loadgen: holding");
        usr1.recv().await;
    }
    let _ = phase_tx.send(if args.no_leave {
        Phase::Stop
    } else {
        Phase::Leave
    });
    while let Some(joined) = tasks.join_next().await {
        joined.context("a spoke task panicked")?;
    }

    let result = report::build(report::Inputs {
        args: &args,
        outcomes: &outcomes,
        tally: &tally,
        pool,
        dial_seconds,
        hub,
        loadgen_cpu_ms: report::own_cpu_ms() - own_cpu,
    });
    print!("{}", report::table(&result));
    if let Some(path) = &args.json {
        write_json(path, &result)?;
    }
    Ok(())
}

fn write_json(path: &std::path::Path, result: &LoadgenReport) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(result).context("encoding the result")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
