//! The spoke simulator's result (`loadgen --json`): what `cargo xtask
//! bench-ike-scale` and the simulator's test read back. Not an operator
//! view of the daemon, but declared here for the same reason: one type,
//! shared by the writer and its readers without building the gateway.

use serde::{Deserialize, Serialize};

/// Setup times of one phase, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What the hub process used (from `/proc/PID/stat` and `status`), when
/// the simulator was given its pid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HubUsage {
    /// User + system CPU during the dial phase, in milliseconds.
    pub cpu_ms: f64,
    /// Resident memory before the first spoke dialled, in KiB.
    pub rss_before_kib: u64,
    /// Resident memory once every spoke had dialled, in KiB.
    pub rss_after_kib: u64,
    /// Peak resident memory (VmHWM) once every spoke had dialled, in KiB.
    pub hwm_after_kib: u64,
}

/// One run of the simulator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenReport {
    /// What was dialled (`--label`): "ours", "strongswan", ...
    pub label: String,
    pub requested: u64,
    pub established: u64,
    /// Dials that failed, by reason ("no answer after 5 tries", ...).
    pub failed: Vec<(String, u64)>,
    /// From the first IKE_SA_INIT to the last dial's end, in seconds.
    pub dial_seconds: f64,
    pub sas_per_second: f64,
    pub setup: Latency,
    /// Requests sent again because no answer came in time.
    pub retransmits: u64,
    /// Addresses the hub gave out (configuration payload): distinct ones,
    /// and how many fell outside `--pool` when one was given.
    pub addresses_distinct: u64,
    pub addresses_outside_pool: u64,
    /// The hub's liveness checks (and other INFORMATIONAL requests) answered.
    pub hub_requests_answered: u64,
    /// Sessions the hub deleted.
    pub deleted_by_hub: u64,
    /// Steady phase: spokes that left (DELETE) and dialled again.
    pub redialled: u64,
    pub redial_failed: u64,
    pub redial: Latency,
    /// Spokes whose DELETE was answered at the end.
    pub left: u64,
    pub hub: Option<HubUsage>,
    /// The simulator's own CPU over the whole run, in milliseconds.
    pub loadgen_cpu_ms: f64,
}

// Counts far below 2^52: exact as f64.
#[allow(clippy::cast_precision_loss)]
impl LoadgenReport {
    /// Hub CPU per established SA, in milliseconds.
    pub fn hub_cpu_ms_per_sa(&self) -> Option<f64> {
        let hub = self.hub.as_ref()?;
        (self.established > 0).then(|| hub.cpu_ms / self.established as f64)
    }

    /// Hub memory per established spoke (peak minus start, over N), in KiB.
    pub fn hub_kib_per_spoke(&self) -> Option<f64> {
        let hub = self.hub.as_ref()?;
        (self.established > 0).then(|| {
            hub.hwm_after_kib.saturating_sub(hub.rss_before_kib) as f64 / self.established as f64
        })
    }
}
