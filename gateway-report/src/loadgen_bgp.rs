//! The BGP spoke simulator's result (`loadgen-bgp --json`): what `cargo
//! xtask bench-bgp-scale` and the simulator's test read back. Declared
//! here, beside the IKE simulator's, for the same reason: one type for the
//! writer and its readers.

use serde::{Deserialize, Serialize};

use crate::loadgen::{HubUsage, Latency};

/// One run of the BGP simulator against one hub.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BgpLoadgenReport {
    /// What was measured (`--label`): "ours", "frr", ...
    pub label: String,
    /// Speakers started.
    pub requested: u64,
    /// Speakers that reached Established.
    pub established: u64,
    /// Speakers that got every other speaker's prefix.
    pub full_tables: u64,
    /// Speakers that failed, by reason ("connect: ...", "NOTIFICATION
    /// 6/2", ...).
    pub failed: Vec<(String, u64)>,
    /// From the first connect to the last speaker Established, in seconds;
    /// `None` when not every speaker got there.
    pub established_seconds: Option<f64>,
    /// From the first connect until every speaker held the full table.
    pub full_table_seconds: Option<f64>,
    /// When the run stopped waiting (all done, or the time limit).
    pub ended_seconds: f64,
    /// Connect to Established, per speaker.
    pub setup: Latency,
    /// TCP connects tried again after a failure.
    pub connect_retries: u64,
    /// UPDATE messages and announced prefixes received, over all speakers.
    pub updates_received: u64,
    pub prefixes_received: u64,
    /// Prefixes received with a next hop other than their speaker's
    /// address (a reflector must pass the next hop on unchanged).
    pub wrong_next_hops: u64,
    /// A speaker's own prefix sent back to it (RFC 4456 lets a reflector
    /// do so; the client drops it by its ORIGINATOR_ID).
    pub own_prefixes_returned: u64,
    /// Prefixes received that no speaker announced.
    pub unexpected_prefixes: u64,
    /// The hub's CPU and memory from the first connect to the full table
    /// (or the time limit).
    pub hub: Option<HubUsage>,
    /// The simulator's own CPU over the whole run, in milliseconds.
    pub loadgen_cpu_ms: f64,
}

// Counts far below 2^52: exact as f64.
#[allow(clippy::cast_precision_loss)]
impl BgpLoadgenReport {
    /// Hub CPU per speaker, in milliseconds.
    pub fn hub_cpu_ms_per_peer(&self) -> Option<f64> {
        let hub = self.hub.as_ref()?;
        (self.requested > 0).then(|| hub.cpu_ms / self.requested as f64)
    }

    /// Hub memory per speaker (peak minus start, over N), in KiB.
    pub fn hub_kib_per_peer(&self) -> Option<f64> {
        let hub = self.hub.as_ref()?;
        (self.requested > 0).then(|| {
            hub.hwm_after_kib.saturating_sub(hub.rss_before_kib) as f64 / self.requested as f64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_figures_divide_the_hubs_growth_by_the_speakers() {
        let mut r = BgpLoadgenReport {
            requested: 1000,
            ..BgpLoadgenReport::default()
        };
        assert_eq!(r.hub_kib_per_peer(), None);
        r.hub = Some(HubUsage {
            cpu_ms: 500.0,
            rss_before_kib: 10_000,
            rss_after_kib: 25_000,
            hwm_after_kib: 30_000,
        });
        assert_eq!(r.hub_kib_per_peer(), Some(20.0));
        assert_eq!(r.hub_cpu_ms_per_peer(), Some(0.5));
    }
}
