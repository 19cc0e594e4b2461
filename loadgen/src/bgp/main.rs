//! `loadgen-bgp`: a BGP spoke simulator. N speakers, each from its own
//! source address, open iBGP sessions to a hub's dynamic-neighbor listen
//! range (at most `--in-flight` connecting at once), announce one /24
//! each with their own address as next hop, and read what the hub sends:
//! with every speaker a route-reflector client, each must end up with the
//! other N - 1 prefixes. Measured: the time until all are Established,
//! the time until every speaker holds the full table, and the hub's CPU
//! and memory (from /proc, with `--hub-pid`).
//!
//! As for the IKE simulator (`loadgen`), the source addresses must be local
//! where it runs: the harness routes the whole range to `lo`. Results: a
//! table on stdout, and `gateway_report::loadgen_bgp::BgpLoadgenReport` as
//! JSON with `--json`.

mod report;
#[path = "../shared.rs"]
mod shared;
mod speaker;
mod table;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::{
    report::Milestones,
    shared::{HubProbe, own_cpu_ms},
    speaker::Setup,
    table::{MAX_SPEAKERS, Plan},
};

/// Open thousands of iBGP sessions to a hub and measure it.
#[derive(Parser, Debug)]
#[command(name = "loadgen-bgp", version)]
struct Args {
    /// The hub's BGP address.
    #[arg(long)]
    hub: Ipv4Addr,
    #[arg(long, default_value_t = gateway::net::BGP_PORT)]
    port: u16,
    /// How many speakers.
    #[arg(long, default_value_t = 100)]
    speakers: u32,
    /// Speaker i connects from this address plus i; every one must be
    /// local here (a `local` route to `lo` covering them).
    #[arg(long, default_value = "10.200.0.1")]
    source_first: Ipv4Addr,
    /// Sessions connecting at once (until Established).
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Our AS, and the hub's (iBGP).
    #[arg(long, default_value_t = 65001)]
    asn: u32,
    #[arg(long, default_value_t = 180)]
    hold_time: u16,
    /// Seconds to wait for every speaker's full table before giving up
    /// (the result then says how far they got).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Once done, print `loadgen-bgp: holding` and keep the sessions up
    /// until SIGUSR1, so a harness can look at the hub.
    #[arg(long)]
    hold: bool,
    /// The hub's process id: its CPU and memory go in the result.
    #[arg(long)]
    hub_pid: Option<u32>,
    /// Name of this run in the result ("ours", "frr").
    #[arg(long, default_value = "hub")]
    label: String,
    /// Write the result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Runtime threads of the simulator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Milliseconds between progress lines.
    #[arg(long, default_value_t = 1000)]
    progress_ms: u64,
}

/// How long the speakers get to send their Cease at the end.
const STOP_WAIT: Duration = Duration::from_secs(20);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.speakers == 0 || args.in_flight == 0 {
        bail!("--speakers and --in-flight must be at least 1");
    }
    if args.speakers > MAX_SPEAKERS {
        bail!("--speakers: at most {MAX_SPEAKERS} (one 10.x.y.0/24 each)");
    }
    shared::raise_fd_limit(u64::from(args.speakers) + 64)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::new(args.speakers, args.source_first)
        .context("--source-first leaves no room for --speakers")?;
    let own_cpu = own_cpu_ms();
    let probe = args.hub_pid.map(HubProbe::start).transpose()?;
    let started = Instant::now();
    let setup = Arc::new(Setup {
        hub: SocketAddrV4::new(args.hub, args.port),
        plan,
        asn: args.asn,
        hold_time: args.hold_time,
        started,
        counts: Mutex::default(),
        connect_retries: 0.into(),
    });
    let gate = Arc::new(Semaphore::new(args.in_flight));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (tell, mut told) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.speakers {
        tasks.spawn(speaker::run(
            index,
            Arc::clone(&setup),
            Arc::clone(&gate),
            stop_rx.clone(),
            tell.clone(),
        ));
    }
    drop(tell);

    let mut milestones = Milestones::new(args.speakers);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut ticker = tokio::time::interval(Duration::from_millis(args.progress_ms.max(1)));
    while !milestones.settled() {
        tokio::select! {
            progress = told.recv() => match progress {
                Some(p) => milestones.note(p, started.elapsed()),
                None => break,
            },
            _ = ticker.tick() => println!("{}", milestones.line(started.elapsed())),
            () = tokio::time::sleep_until(deadline) => {
                println!("loadgen-bgp: time limit of {} s reached", args.timeout);
                break;
            }
        }
    }
    let ended = started.elapsed();
    // The hub as it was at the end of the measured phase.
    let hub = probe.map(HubProbe::finish).transpose()?;
    println!("{}", milestones.line(ended));
    if args.hold {
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .context("waiting for SIGUSR1")?;
        println!("loadgen-bgp: holding");
        usr1.recv().await;
    }
    gate.close();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(STOP_WAIT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    while let Ok(p) = told.try_recv() {
        milestones.note(p, ended);
    }
    let counts = *setup
        .counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = report::build(
        milestones,
        report::Inputs {
            label: args.label.clone(),
            counts,
            connect_retries: setup.connect_retries.load(Ordering::Relaxed),
            ended,
            hub,
            loadgen_cpu_ms: own_cpu_ms() - own_cpu,
        },
    );
    print!("{}", report::table(&result));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result).context("encoding the result")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
