//! Counting and telling: the spokes' shared tallies, the progress bar, the
//! hub's CPU and memory from /proc, and the result table.

use std::{
    collections::{BTreeMap, HashSet},
    fmt::Write as _,
    net::Ipv4Addr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use gateway_report::loadgen::{HubUsage, LoadgenReport};

use crate::shared::latency;
pub use crate::shared::{HubProbe, own_cpu_ms};
use crate::{Args, spoke::DialOutcome};

/// What the spokes count as they go.
#[derive(Default)]
pub struct Tally {
    pub retransmits: AtomicU64,
    pub hub_requests_answered: AtomicU64,
    pub deleted_by_hub: AtomicU64,
    pub left: AtomicU64,
    redials: Mutex<Vec<Duration>>,
    redial_failures: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    pub fn redialled(&self, took: Duration) {
        lock(&self.redials).push(took);
    }

    pub fn redial_failed(&self, why: String) {
        *lock(&self.redial_failures).entry(why).or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A bar on a terminal; otherwise a line every two seconds.
pub struct Progress {
    bar: indicatif::ProgressBar,
    total: u64,
    established: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "loadgen {elapsed_precise} [{bar:40}] {pos}/{len} dialled, {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            total,
            established: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    pub fn dialled(&self, established: bool) {
        let up = self
            .established
            .fetch_add(u64::from(established), Ordering::Relaxed)
            + u64::from(established);
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if self.bar.is_hidden() {
            let mut last = lock(&self.last_line);
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                println!(
                    "loadgen: {done}/{} dialled, {up} established, {:.0} s",
                    self.total,
                    self.started.elapsed().as_secs_f64()
                );
            }
        } else {
            self.bar.set_position(done);
            self.bar.set_message(format!("{up} established"));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `--pool FIRST-LAST`.
pub fn parse_pool(text: &str) -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    let Some((first, last)) = text.split_once('-') else {
        bail!("--pool: FIRST-LAST, not `{text}`");
    };
    let first: Ipv4Addr = first.trim().parse().context("--pool: the first address")?;
    let last: Ipv4Addr = last.trim().parse().context("--pool: the last address")?;
    if first > last {
        bail!("--pool: {first} comes after {last}");
    }
    Ok((first, last))
}

pub struct Inputs<'a> {
    pub args: &'a Args,
    pub outcomes: &'a [DialOutcome],
    pub tally: &'a Tally,
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub dial_seconds: f64,
    pub hub: Option<HubUsage>,
    pub loadgen_cpu_ms: f64,
}

pub fn build(i: Inputs<'_>) -> LoadgenReport {
    let established: Vec<&DialOutcome> = i.outcomes.iter().filter(|o| o.established).collect();
    let mut failed = BTreeMap::<String, u64>::new();
    for why in i.outcomes.iter().filter_map(|o| o.failure.clone()) {
        *failed.entry(why).or_default() += 1;
    }
    let addresses: HashSet<Ipv4Addr> = established.iter().filter_map(|o| o.address).collect();
    let outside = match i.pool {
        Some((first, last)) => established
            .iter()
            .filter(|o| o.address.is_none_or(|a| a < first || a > last))
            .count(),
        None => 0,
    };
    let setups: Vec<Duration> = established.iter().map(|o| o.setup).collect();
    let redials = lock(&i.tally.redials).clone();
    let redial_failed: u64 = lock(&i.tally.redial_failures).values().sum();
    #[allow(clippy::cast_precision_loss)]
    let rate = if i.dial_seconds > 0.0 {
        established.len() as f64 / i.dial_seconds
    } else {
        0.0
    };
    LoadgenReport {
        label: i.args.label.clone(),
        requested: u64::from(i.args.spokes),
        established: established.len() as u64,
        failed: failed.into_iter().collect(),
        dial_seconds: i.dial_seconds,
        sas_per_second: rate,
        setup: latency(setups),
        retransmits: i.tally.retransmits.load(Ordering::Relaxed),
        addresses_distinct: addresses.len() as u64,
        addresses_outside_pool: outside as u64,
        hub_requests_answered: i.tally.hub_requests_answered.load(Ordering::Relaxed),
        deleted_by_hub: i.tally.deleted_by_hub.load(Ordering::Relaxed),
        redialled: redials.len() as u64,
        redial_failed,
        redial: latency(redials),
        left: i.tally.left.load(Ordering::Relaxed),
        hub: i.hub,
        loadgen_cpu_ms: i.loadgen_cpu_ms,
    }
}

/// The result as a table.
pub fn table(r: &LoadgenReport) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<34} {value}");
    };
    row("hub", r.label.clone());
    row(
        "established / requested",
        format!("{} / {}", r.established, r.requested),
    );
    for (why, count) in &r.failed {
        row("  failed", format!("{count}: {why}"));
    }
    row("dial phase", format!("{:.2} s", r.dial_seconds));
    row("SAs per second", format!("{:.0}", r.sas_per_second));
    row(
        "setup time p50 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            r.setup.p50_ms, r.setup.p99_ms, r.setup.max_ms
        ),
    );
    row("retransmits", r.retransmits.to_string());
    row(
        "addresses distinct / outside pool",
        format!("{} / {}", r.addresses_distinct, r.addresses_outside_pool),
    );
    if let (Some(hub), Some(cpu), Some(kib)) =
        (&r.hub, r.hub_cpu_ms_per_sa(), r.hub_kib_per_spoke())
    {
        row(
            "hub CPU per SA",
            format!("{cpu:.3} ms ({:.0} ms in all)", hub.cpu_ms),
        );
        row(
            "hub memory per spoke",
            format!(
                "{kib:.1} KiB (RSS {} -> {} KiB, peak {} KiB)",
                hub.rss_before_kib, hub.rss_after_kib, hub.hwm_after_kib
            ),
        );
    }
    row(
        "hub requests answered",
        format!("{} ({} deletes)", r.hub_requests_answered, r.deleted_by_hub),
    );
    if r.redialled + r.redial_failed > 0 {
        row(
            "redialled (failed)",
            format!(
                "{} ({}), p50 {:.1} ms, p99 {:.1} ms",
                r.redialled, r.redial_failed, r.redial.p50_ms, r.redial.p99_ms
            ),
        );
    }
    row("left with DELETE", r.left.to_string());
    row("simulator CPU", format!("{:.0} ms", r.loadgen_cpu_ms));
    out
}
