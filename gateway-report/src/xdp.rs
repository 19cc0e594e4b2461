//! The uplink filter: `show xdp`.

use serde::{Deserialize, Serialize};

/// Counters of one verdict, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictReport {
    /// The verdict's name (`gateway_common::Verdict::name`), e.g. `pass_ike`.
    pub verdict: String,
    /// "pass", "drop" or "redirect" (to another CPU, see `spread_cpus`).
    pub action: String,
    pub drop: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// Counters of one inbound SA, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaReport {
    pub spi: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Milliseconds since the SA last received a packet; `None` = never.
    pub last_seen_ms_ago: Option<u64>,
}

/// What `show xdp` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpReport {
    pub interface: Option<String>,
    pub mode: Option<String>,
    pub ike_rate_per_s: u64,
    pub ike_burst: u64,
    /// CPUs known-SPI ESP is spread over; 0 = off (passed on the CPU it
    /// arrived on).
    pub spread_cpus: u64,
    /// One per verdict, in the program's order.
    pub verdicts: Vec<VerdictReport>,
    pub sas: Vec<SaReport>,
}

impl XdpReport {
    /// Packets counted under the verdict named `verdict` (0 when absent).
    pub fn packets(&self, verdict: &str) -> u64 {
        self.verdicts
            .iter()
            .find(|v| v.verdict == verdict)
            .map_or(0, |v| v.packets)
    }

    /// The SA report of `spi`, if installed.
    pub fn sa(&self, spi: u32) -> Option<&SaReport> {
        self.sas.iter().find(|s| s.spi == spi)
    }
}
