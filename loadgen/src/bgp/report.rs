//! What the run adds up: each speaker's milestones, progress lines, the
//! result (`gateway_report::loadgen_bgp::BgpLoadgenReport`) and its table.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use gateway_report::{loadgen::HubUsage, loadgen_bgp::BgpLoadgenReport};

use super::{shared::latency, speaker::Progress, table::Counts};

/// Each speaker's milestones, as they arrive.
pub struct Milestones {
    speakers: usize,
    setups: Vec<Duration>,
    /// The latest Established, from the start (only meaningful when all
    /// are).
    last_established: Duration,
    full: Vec<bool>,
    last_full: Duration,
    full_count: usize,
    failed: Vec<Option<String>>,
    failed_count: usize,
}

impl Milestones {
    pub fn new(speakers: u32) -> Self {
        let n = speakers as usize;
        Milestones {
            speakers: n,
            setups: Vec::with_capacity(n),
            last_established: Duration::ZERO,
            full: vec![false; n],
            last_full: Duration::ZERO,
            full_count: 0,
            failed: vec![None; n],
            failed_count: 0,
        }
    }

    /// Takes one report; `now`: from the start of the run.
    pub fn note(&mut self, progress: Progress, now: Duration) {
        match progress {
            Progress::Established { setup, .. } => {
                self.setups.push(setup);
                self.last_established = now;
            }
            Progress::FullTable { index, at } => {
                if !std::mem::replace(&mut self.full[index as usize], true) {
                    self.full_count += 1;
                    self.last_full = self.last_full.max(at);
                }
            }
            Progress::Failed { index, why } => {
                let slot = &mut self.failed[index as usize];
                if slot.is_none() {
                    *slot = Some(why);
                    self.failed_count += 1;
                }
            }
        }
    }

    pub fn established(&self) -> usize {
        self.setups.len()
    }

    /// Every speaker holds the full table or has failed.
    pub fn settled(&self) -> bool {
        (0..self.speakers).all(|i| self.full[i] || self.failed[i].is_some())
    }

    pub fn line(&self, elapsed: Duration) -> String {
        format!(
            "loadgen-bgp: {}/{} established, {} full tables, {} failed, {:.1} s",
            self.established(),
            self.speakers,
            self.full_count,
            self.failed_count,
            elapsed.as_secs_f64()
        )
    }
}

/// The rest of what goes in the result.
pub struct Inputs {
    pub label: String,
    pub counts: Counts,
    pub connect_retries: u64,
    pub ended: Duration,
    pub hub: Option<HubUsage>,
    pub loadgen_cpu_ms: f64,
}

pub fn build(m: Milestones, i: Inputs) -> BgpLoadgenReport {
    let mut failed = BTreeMap::<String, u64>::new();
    for why in m.failed.iter().flatten() {
        *failed.entry(why.clone()).or_default() += 1;
    }
    let all = |count: usize, at: Duration| (count == m.speakers).then_some(at.as_secs_f64());
    BgpLoadgenReport {
        label: i.label,
        requested: m.speakers as u64,
        established: m.established() as u64,
        full_tables: m.full_count as u64,
        failed: failed.into_iter().collect(),
        established_seconds: all(m.established(), m.last_established),
        full_table_seconds: all(m.full_count, m.last_full),
        ended_seconds: i.ended.as_secs_f64(),
        setup: latency(m.setups),
        connect_retries: i.connect_retries,
        updates_received: i.counts.updates,
        prefixes_received: i.counts.announced,
        wrong_next_hops: i.counts.wrong_next_hop,
        own_prefixes_returned: i.counts.own_returned,
        unexpected_prefixes: i.counts.unexpected,
        hub: i.hub,
        loadgen_cpu_ms: i.loadgen_cpu_ms,
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "not reached".to_owned(), |s| format!("{s:.2} s"))
}

/// The result as a table.
pub fn table(r: &BgpLoadgenReport) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<34} {value}");
    };
    row("hub", r.label.clone());
    row(
        "established / full table / requested",
        format!("{} / {} / {}", r.established, r.full_tables, r.requested),
    );
    for (why, count) in &r.failed {
        row("  failed", format!("{count}: {why}"));
    }
    row("all Established", seconds(r.established_seconds));
    row(
        "every speaker holds the full table",
        seconds(r.full_table_seconds),
    );
    row(
        "connect to Established p50 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            r.setup.p50_ms, r.setup.p99_ms, r.setup.max_ms
        ),
    );
    row("connect retries", r.connect_retries.to_string());
    row(
        "UPDATEs / prefixes received",
        format!("{} / {}", r.updates_received, r.prefixes_received),
    );
    row(
        "wrong next hops / own back / unexpected",
        format!(
            "{} / {} / {}",
            r.wrong_next_hops, r.own_prefixes_returned, r.unexpected_prefixes
        ),
    );
    if let (Some(hub), Some(cpu), Some(kib)) =
        (&r.hub, r.hub_cpu_ms_per_peer(), r.hub_kib_per_peer())
    {
        row(
            "hub CPU",
            format!("{:.0} ms ({cpu:.2} ms per peer)", hub.cpu_ms),
        );
        row(
            "hub memory per peer",
            format!(
                "{kib:.1} KiB (RSS {} -> {} KiB, peak {} KiB)",
                hub.rss_before_kib, hub.rss_after_kib, hub.hwm_after_kib
            ),
        );
    }
    row("simulator CPU", format!("{:.0} ms", r.loadgen_cpu_ms));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_count_only_when_every_speaker_got_there() {
        let mut m = Milestones::new(3);
        let s = Duration::from_secs;
        for index in 0..3u64 {
            m.note(
                Progress::Established {
                    setup: Duration::from_millis(10),
                },
                s(index + 1),
            );
        }
        m.note(Progress::FullTable { index: 0, at: s(5) }, s(5));
        m.note(Progress::FullTable { index: 2, at: s(4) }, s(5));
        assert!(!m.settled());
        m.note(
            Progress::Failed {
                index: 1,
                why: "closed by the hub".into(),
            },
            s(6),
        );
        assert!(m.settled());
        let r = build(
            m,
            Inputs {
                label: "t".into(),
                counts: Counts::default(),
                connect_retries: 0,
                ended: s(6),
                hub: None,
                loadgen_cpu_ms: 0.0,
            },
        );
        assert_eq!(r.established_seconds, Some(3.0));
        assert_eq!(r.full_table_seconds, None, "speaker 1 never got it");
        assert_eq!(r.full_tables, 2);
        assert_eq!(r.failed, vec![("closed by the hub".to_owned(), 1)]);
        assert!(table(&r).contains("not reached"));
    }
}
