//! What both simulators (IKE and BGP) share: the hub's CPU and memory
//! from /proc, the file descriptor limit, setup-time percentiles.

use std::time::Duration;

use anyhow::{Context as _, bail};
use gateway_report::loadgen::{HubUsage, Latency};

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

/// One socket per simulated spoke (IKE: two while one floats to 4500).
/// Root may raise the hard limit too (up to the kernel's `nr_open`).
pub fn raise_fd_limit(need: u64) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if limit.rlim_cur < need {
            let wanted = libc::rlimit {
                rlim_cur: need,
                rlim_max: limit.rlim_max.max(need),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const wanted) != 0 {
                bail!(
                    "{need} file descriptors are needed, the limit is {} (hard {}), and raising it \
                     failed: {}",
                    limit.rlim_cur,
                    limit.rlim_max,
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    Ok(())
}

/// p50, p99 and max of `times`, in milliseconds.
pub fn latency(mut times: Vec<Duration>) -> Latency {
    if times.is_empty() {
        return Latency::default();
    }
    times.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((times.len() - 1) as f64 * q).round() as usize;
        times[i].as_secs_f64() * 1000.0
    };
    Latency {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}
