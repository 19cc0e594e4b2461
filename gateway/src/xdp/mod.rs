//! The XDP uplink filter from the daemon's side: load the embedded object,
//! attach it to the uplink, keep its maps in step with the SAs, read counters.
//!
//! The program itself is `gateway-ebpf`; the map layouts are in
//! `gateway-common`. Everything here is control plane (map syscalls), never
//! per packet. The report is `gateway_report::xdp`'s, rendered by [`show`].

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, xdp::CpuMap},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use gateway_common::{SaCounters, Verdict, VerdictCounter, XDP_PROGRAM, XdpConfig, maps};
use gateway_report::xdp::{SaReport, VerdictReport, XdpReport};
use serde::{Deserialize, Serialize};

pub mod show;

/// How to attach (`xdp.mode`): native runs in the driver (veth and real
/// NICs), skb is the generic hook every device has, auto tries native first.
pub use crate::config::XdpMode as AttachMode;

/// The XDP object built by `build.rs` from `gateway-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gateway"));

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("loading XDP program `{XDP_PROGRAM}` into the kernel: {0}")]
    Program(#[source] aya::programs::ProgramError),
    #[error("XDP map `{map}`: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("XDP map `{0}` missing from the object")]
    MissingMap(&'static str),
    #[error("XDP program `{XDP_PROGRAM}` missing from the object")]
    MissingProgram,
    #[error("attaching XDP to `{interface}` ({mode}): {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "`{interface}` already has an XDP program attached (another gateway, or another tool); \
         see `ip -d link show dev {interface}` and remove it with `ip link set dev {interface} xdp off`"
    )]
    AlreadyAttached { interface: String },
    #[error("counting CPUs: {0}")]
    Cpus(String),
    #[error("SPI {spi:#010x} is already installed")]
    SpiExists { spi: u32 },
    #[error("SPI {spi:#010x} is not installed")]
    SpiUnknown { spi: u32 },
    #[error("SPI 0 is reserved (RFC 4303 section 2.1) and cannot name an SA")]
    SpiZero,
    #[error(
        "the kernel refused CPU {cpu} in the XDP CPU map `{map}` (queue size {queue_size}), \
         so ESP cannot be spread over CPUs: {source}",
        map = maps::SPREAD_TARGETS
    )]
    Spread {
        cpu: u32,
        queue_size: u32,
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
}

/// Queue of each CPU's cpumap kthread when ESP is spread: packets waiting
/// for that CPU beyond this are dropped by the kernel. 2048 absorbs a burst
/// of line-rate 1500-byte ESP at 10 Gb/s for about 2.5 ms.
pub const SPREAD_QUEUE_SIZE: u32 = 2048;

/// The loaded filter and its maps.
pub struct XdpFilter {
    ebpf: Ebpf,
    inbound_sa: PerCpuHashMap<MapData, u32, SaCounters>,
    verdicts: PerCpuArray<MapData, VerdictCounter>,
    config_map: Array<MapData, XdpConfig>,
    spread_targets: CpuMap<MapData>,
    spread_slots: Array<MapData, u32>,
    config: XdpConfig,
    attached: Option<(Attachment, XdpLinkId)>,
    cpus: usize,
}

/// Where and how the filter is attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub interface: String,
    /// "native" or "skb": what the kernel accepted.
    pub mode: String,
}

/// Outcome of one BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// XDP action: 1 = XDP_DROP, 2 = XDP_PASS, 4 = XDP_REDIRECT.
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

impl XdpFilter {
    /// Loads the program and its maps into the kernel (not attached yet).
    pub fn load(config: XdpConfig) -> Result<Self, XdpError> {
        raise_memlock_limit();
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| XdpError::Cpus(format!("{what}: {e}")))?;
        let possible = u32::try_from(cpus).map_err(|e| XdpError::Cpus(e.to_string()))?;
        // The CPU maps are indexed by CPU number: one slot per possible CPU.
        // The object also holds the hairpin detector's maps, which this
        // instance never uses: as small as the kernel allows (a ring buffer
        // is at least a page).
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::SPREAD_TARGETS, possible)
            .map_max_entries(maps::SPREAD_SLOTS, possible)
            .map_max_entries(gateway_common::hairpin::LINKS, 1)
            .map_max_entries(gateway_common::hairpin::PAIRS, 1)
            .map_max_entries(gateway_common::hairpin::EVENTS, 4096)
            .load(EBPF_OBJECT)
            .map_err(XdpError::Load)?;
        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(XdpError::MissingProgram)?
            .try_into()
            .map_err(XdpError::Program)?;
        program.load().map_err(XdpError::Program)?;
        let inbound_sa = take_map(&mut ebpf, maps::INBOUND_SA)?;
        let verdicts = take_map(&mut ebpf, maps::VERDICTS)?;
        let config_map = take_map(&mut ebpf, maps::CONFIG)?;
        let spread_targets = take_map(&mut ebpf, maps::SPREAD_TARGETS)?;
        let spread_slots = take_map(&mut ebpf, maps::SPREAD_SLOTS)?;
        let mut filter = XdpFilter {
            ebpf,
            inbound_sa,
            verdicts,
            config_map,
            spread_targets,
            spread_slots,
            config,
            attached: None,
            cpus,
        };
        filter.set_config(config)?;
        Ok(filter)
    }

    /// Writes the settings map; takes effect on the next packet.
    pub fn set_config(&mut self, config: XdpConfig) -> Result<(), XdpError> {
        self.config_map
            .set(0, config, 0)
            .map_err(|source| XdpError::Map {
                map: maps::CONFIG,
                source,
            })?;
        self.config = config;
        Ok(())
    }

    /// Spreads known-SPI ESP over the online CPUs: each gets a cpumap queue of
    /// `queue_size` packets (no chained program), the slots list them, and
    /// the program redirects a packet to slot `spread_slot(spi, n)`. Returns
    /// `n`, the number of CPUs. Fails, leaving spreading off, when the kernel
    /// refuses a CPU map entry.
    pub fn spread_esp(&mut self, queue_size: u32) -> Result<u32, XdpError> {
        let online =
            aya::util::online_cpus().map_err(|(what, e)| XdpError::Cpus(format!("{what}: {e}")))?;
        let mut slots = 0u32;
        for cpu in online {
            self.spread_targets
                .set(cpu, queue_size, None, 0)
                .map_err(|source| XdpError::Spread {
                    cpu,
                    queue_size,
                    source,
                })?;
            self.spread_slots
                .set(slots, cpu, 0)
                .map_err(|source| XdpError::Map {
                    map: maps::SPREAD_SLOTS,
                    source,
                })?;
            slots += 1;
        }
        self.set_config(self.config.with_spread(u64::from(slots)))?;
        Ok(slots)
    }

    /// Stops spreading: known-SPI ESP is passed on the CPU it arrived on.
    pub fn stop_spreading(&mut self) -> Result<(), XdpError> {
        self.set_config(self.config.with_spread(0))
    }

    /// When the SA with inbound SPI `spi` last received a packet: the
    /// CLOCK_MONOTONIC reading (time since boot, suspend excluded; compare
    /// with [`monotonic_now_ns`]) of the latest packet on any CPU. `None`
    /// when it never received one; an error when the SPI is not installed.
    /// Feeds dead peer detection: a peer whose ESP arrives is alive.
    pub fn sa_last_seen(&self, spi: u32) -> Result<Option<Duration>, XdpError> {
        let per_cpu = match self.inbound_sa.get(&spi, 0) {
            Ok(values) => values,
            Err(aya::maps::MapError::KeyNotFound) => return Err(XdpError::SpiUnknown { spi }),
            Err(source) => {
                return Err(XdpError::Map {
                    map: maps::INBOUND_SA,
                    source,
                });
            }
        };
        let last = last_seen_ns(&per_cpu);
        Ok((last != 0).then(|| Duration::from_nanos(last)))
    }

    /// Attaches to `interface`. With `AttachMode::Auto`, native mode is tried
    /// first and generic (skb) mode used when the driver has no XDP support.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<&Attachment, XdpError> {
        let attempts: &[(XdpMode, &'static str)] = match mode {
            AttachMode::Native => &[(XdpMode::Driver, "native")],
            AttachMode::Skb => &[(XdpMode::Skb, "skb")],
            AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
        };
        let program = self.program()?;
        let mut last_error = None;
        for &(xdp_mode, name) in attempts {
            match program.attach(interface, xdp_mode) {
                Ok(link) => {
                    let attachment = Attachment {
                        interface: interface.to_owned(),
                        mode: name.to_owned(),
                    };
                    return Ok(&self.attached.insert((attachment, link)).0);
                }
                Err(e) if is_eexist(&e) => {
                    return Err(XdpError::AlreadyAttached {
                        interface: interface.to_owned(),
                    });
                }
                Err(e) => {
                    if mode == AttachMode::Auto && name == "native" {
                        tracing::info!(interface, error = %e, "native XDP refused, trying generic (skb) mode");
                    }
                    last_error = Some(XdpError::Attach {
                        interface: interface.to_owned(),
                        mode: name,
                        source: e,
                    });
                }
            }
        }
        Err(last_error.expect("at least one attach attempt"))
    }

    /// Detaches from the uplink (also happens when the filter is dropped).
    pub fn detach(&mut self) -> Result<(), XdpError> {
        let Some((_, link)) = self.attached.take() else {
            return Ok(());
        };
        self.program()?.detach(link).map_err(XdpError::Program)
    }

    pub fn attachment(&self) -> Option<&Attachment> {
        self.attached.as_ref().map(|(a, _)| a)
    }

    fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(XdpError::MissingProgram)?
            .try_into()
            .map_err(XdpError::Program)
    }

    /// Starts passing ESP with this inbound SPI, with fresh counters.
    pub fn add_sa(&mut self, spi: u32) -> Result<(), XdpError> {
        if spi == 0 {
            return Err(XdpError::SpiZero);
        }
        let zero =
            PerCpuValues::try_from(vec![SaCounters::default(); self.cpus]).map_err(|source| {
                XdpError::Map {
                    map: maps::INBOUND_SA,
                    source: source.into(),
                }
            })?;
        // BPF_NOEXIST: an SPI names one SA; a second install is a bug upstream.
        match self.inbound_sa.insert(spi, zero, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Err(XdpError::SpiExists { spi })
            }
            Err(source) => Err(XdpError::Map {
                map: maps::INBOUND_SA,
                source,
            }),
        }
    }

    /// Stops passing ESP with this SPI (the SA is gone).
    pub fn remove_sa(&mut self, spi: u32) -> Result<(), XdpError> {
        match self.inbound_sa.remove(&spi) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Err(XdpError::SpiUnknown { spi }),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Err(XdpError::SpiUnknown { spi })
            }
            Err(source) => Err(XdpError::Map {
                map: maps::INBOUND_SA,
                source,
            }),
        }
    }

    /// Verdict and per-SA counters, summed over CPUs.
    pub fn report(&self) -> Result<XdpReport, XdpError> {
        let mut verdicts = Vec::with_capacity(Verdict::ALL.len());
        for verdict in Verdict::ALL {
            let per_cpu =
                self.verdicts
                    .get(&(verdict as u32), 0)
                    .map_err(|source| XdpError::Map {
                        map: maps::VERDICTS,
                        source,
                    })?;
            verdicts.push(VerdictReport {
                verdict: verdict.name().to_owned(),
                action: verdict.action().to_owned(),
                drop: verdict.is_drop(),
                packets: per_cpu.iter().map(|c| c.packets).sum(),
                bytes: per_cpu.iter().map(|c| c.bytes).sum(),
            });
        }
        let now = monotonic_now_ns();
        let mut sas = Vec::new();
        for entry in &self.inbound_sa {
            let (spi, per_cpu) = entry.map_err(|source| XdpError::Map {
                map: maps::INBOUND_SA,
                source,
            })?;
            let last_seen = last_seen_ns(&per_cpu);
            sas.push(SaReport {
                spi,
                packets: per_cpu.iter().map(|c| c.packets).sum(),
                bytes: per_cpu.iter().map(|c| c.bytes).sum(),
                last_seen_ms_ago: (last_seen != 0)
                    .then(|| Duration::from_nanos(now.saturating_sub(last_seen)).as_millis())
                    .map(|ms| u64::try_from(ms).unwrap_or(u64::MAX)),
            });
        }
        sas.sort_by_key(|s| s.spi);
        let attached = self.attachment();
        Ok(XdpReport {
            interface: attached.map(|a| a.interface.clone()),
            mode: attached.map(|a| a.mode.clone()),
            ike_rate_per_s: self.config.ike_rate_per_s,
            ike_burst: self.config.ike_burst,
            spread_cpus: self.config.spread_cpus,
            verdicts,
            sas,
        })
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN: real kernel,
    /// real maps, no interface. For fixtures.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<TestRunOutcome, XdpError> {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .map_err(XdpError::Program)?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutcome {
            action: result.return_value,
            frame: out,
        })
    }
}

/// The latest packet of an SA over all CPUs, in ns of CLOCK_MONOTONIC; 0 = never.
fn last_seen_ns(per_cpu: &PerCpuValues<SaCounters>) -> u64 {
    per_cpu.iter().map(|c| c.last_seen_ns).max().unwrap_or(0)
}

/// Whether attaching failed because the interface already has a program.
fn is_eexist(error: &aya::programs::ProgramError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(libc::EEXIST)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Map update flag: fail if the key exists.
const BPF_NOEXIST: u64 = 1;

impl XdpFilter {
    /// Runs the program `repeat` times on `frame` inside the kernel and
    /// returns the kernel's average time per run: the per-packet cost of the
    /// verdict path without syscall overhead. For benchmarks.
    pub fn time_verdict(&mut self, frame: &[u8], repeat: u32) -> Result<Duration, XdpError> {
        let result = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: repeat.max(1),
                ..TestRunOptions::new()
            })
            .map_err(XdpError::Program)?;
        Ok(result.duration)
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, XdpError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(XdpError::MissingMap(name))?;
    T::try_from(map).map_err(|source| XdpError::Map { map: name, source })
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so loading
/// does not fail there. Newer kernels account to the memory cgroup.
pub(crate) fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) };
    if rc != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}

#[cfg(test)]
mod tests;
