//! The hub's CPU and memory, from /proc: what both simulators (IKE and
//! BGP) report per spoke.

use anyhow::Context as _;
use gateway_report::loadgen::HubUsage;

/// The hub's CPU and memory, read at the start and end of a phase.
pub struct HubProbe {
    pid: u32,
    cpu_ms: f64,
    rss_kib: u64,
}

impl HubProbe {
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        let (rss_kib, _) = memory_kib(pid)?;
        Ok(HubProbe {
            pid,
            cpu_ms: cpu_ms(pid)?,
            rss_kib,
        })
    }

    pub fn finish(self) -> anyhow::Result<HubUsage> {
        let (rss_after_kib, hwm_after_kib) = memory_kib(self.pid)?;
        Ok(HubUsage {
            cpu_ms: cpu_ms(self.pid)? - self.cpu_ms,
            rss_before_kib: self.rss_kib,
            rss_after_kib,
            hwm_after_kib,
        })
    }
}

/// User and system time of a process and its threads (`/proc/PID/stat`
/// fields 14 and 15, in clock ticks), in milliseconds.
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        let v: u64 = fields
            .get(i)
            .context("short /proc/PID/stat")?
            .parse()
            .context("/proc/PID/stat field")?;
        #[allow(clippy::cast_precision_loss)]
        Ok(v as f64)
    };
    // Fields 14 and 15 are the 12th and 13th after the name.
    let ticks = tick(11)? + tick(12)?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[allow(clippy::cast_precision_loss)]
    Ok(ticks * 1000.0 / per_second.max(1) as f64)
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// This process's user and system time, in milliseconds.
pub fn own_cpu_ms() -> f64 {
    cpu_ms(std::process::id()).unwrap_or(0.0)
}
