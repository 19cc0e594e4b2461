//! Hairpin detection for the kernel datapath: the tc classifier of
//! `gateway-ebpf/src/hairpin.rs` on every virtual-access link, and the task
//! that turns its ring-buffer records into [`DatapathEvent::Hairpin`], the
//! same events the userspace datapath sends.
//!
//! The kernel forwards the packets itself; the program only asks the FIB
//! (`bpf_fib_lookup`) where an IPv4 packet arriving on a virtual-access will
//! leave, and reports it when that is another watched virtual-access with the
//! same NHRP network id, at most once per (source, destination) pair and
//! interval. Nothing here is per packet: map syscalls when a link comes or
//! goes, one wake-up per batch of events.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    net::Ipv4Addr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TcAttachType, tc, tc::SchedClassifierLinkId},
};
use gateway_common::{
    HairpinConfig, HairpinCounter, HairpinEvent, HairpinLink, hairpin, maps as xdp_maps,
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    task::JoinHandle,
};

use crate::iface::{DatapathEvent, HAIRPIN_HEAD_LEN, Hairpin, VaId};

/// The object built by `build.rs` from `gateway-ebpf` (XDP and tc programs).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gateway"));

#[derive(Debug, thiserror::Error)]
pub enum HairpinError {
    #[error("loading the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("tc program `{program}`: {0}", program = hairpin::PROGRAM)]
    Program(#[source] aya::programs::ProgramError),
    #[error("tc program `{program}` missing from the object", program = hairpin::PROGRAM)]
    MissingProgram,
    #[error("hairpin map `{map}`: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("hairpin map `{0}` missing from the object (or already taken)")]
    MissingMap(&'static str),
    #[error("no interface with index {ifindex}: {source}")]
    NoInterface {
        ifindex: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {ifindex} is already watched (as {va})")]
    AlreadyAttached { ifindex: u32, va: VaId },
    #[error("attaching the hairpin classifier to `{interface}` (tc ingress): {source}")]
    Attach {
        interface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the event reader is already running")]
    AlreadyRunning,
    #[error("polling the hairpin ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}

/// One watched virtual-access.
struct Watched {
    va: VaId,
    network_id: u32,
    interface: String,
    link: SchedClassifierLinkId,
}

/// Counters the reader task keeps (userspace side of the ring buffer).
#[derive(Default)]
struct ReaderCounters {
    /// Events handed to the control plane.
    delivered: AtomicU64,
    /// Events dropped because the control plane's queue was full or closed.
    queue_full: AtomicU64,
    /// Events naming an ifindex no longer watched (detached meanwhile).
    unknown_link: AtomicU64,
}

/// The loaded classifier and its maps.
pub struct HairpinMonitor {
    ebpf: Ebpf,
    links: HashMap<MapData, u32, HairpinLink>,
    counters: PerCpuArray<MapData, u64>,
    config: Array<MapData, HairpinConfig>,
    events: Option<RingBuf<MapData>>,
    watched: BTreeMap<u32, Watched>,
    /// ifindex -> virtual-access, shared with the reader task.
    vas: Arc<Mutex<StdHashMap<u32, VaId>>>,
    reader: Option<JoinHandle<()>>,
    reader_counters: Arc<ReaderCounters>,
    interval: Duration,
}

/// One watched link in [`HairpinReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HairpinLinkReport {
    pub ifindex: u32,
    pub interface: String,
    pub va: VaId,
    pub network_id: u32,
}

/// What `show` prints about hairpin detection in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HairpinReport {
    pub interval_ms: u64,
    pub links: Vec<HairpinLinkReport>,
    /// Events the program wrote into the ring buffer.
    pub events: u64,
    /// Events the program lost because the ring buffer was full.
    pub lost_ring_full: u64,
    /// Hairpins not reported again within their pair's interval.
    pub rate_limited: u64,
    /// Events sent to the control plane.
    pub delivered: u64,
    /// Events dropped because the control plane's queue was full.
    pub lost_queue_full: u64,
    /// Events for a link detached before they were read.
    pub unknown_link: u64,
}

/// Length of the Ethernet header in front of IPv4 at tc ingress.
const ETH_HLEN: u32 = 14;

impl HairpinMonitor {
    /// Loads the classifier and its maps (attached nowhere yet). At most one
    /// event per (source, destination) pair per `interval`.
    pub fn load(interval: Duration) -> Result<Self, HairpinError> {
        crate::xdp::raise_memlock_limit();
        // The object also holds the XDP filter's maps; this instance never
        // uses them, so they are created as small as the kernel allows.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(xdp_maps::INBOUND_SA, 1)
            .map_max_entries(xdp_maps::IKE_BUCKETS, 1)
            .load(EBPF_OBJECT)
            .map_err(HairpinError::Load)?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(hairpin::PROGRAM)
            .ok_or(HairpinError::MissingProgram)?
            .try_into()
            .map_err(HairpinError::Program)?;
        program.load().map_err(HairpinError::Program)?;
        let links = take_map(&mut ebpf, hairpin::LINKS)?;
        let counters = take_map(&mut ebpf, hairpin::COUNTERS)?;
        let config = take_map(&mut ebpf, hairpin::CONFIG)?;
        let events = take_map(&mut ebpf, hairpin::EVENTS)?;
        let mut monitor = HairpinMonitor {
            ebpf,
            links,
            counters,
            config,
            events: Some(events),
            watched: BTreeMap::new(),
            vas: Arc::default(),
            reader: None,
            reader_counters: Arc::default(),
            interval,
        };
        monitor.set_interval(interval)?;
        Ok(monitor)
    }

    /// Changes the per-pair rate limit; takes effect on the next packet.
    pub fn set_interval(&mut self, interval: Duration) -> Result<(), HairpinError> {
        let interval_ns = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.config
            .set(0, HairpinConfig { interval_ns }, 0)
            .map_err(|source| HairpinError::Map {
                map: hairpin::CONFIG,
                source,
            })?;
        self.interval = interval;
        Ok(())
    }

    /// Starts watching the virtual-access with index `ifindex` (in the
    /// calling thread's network namespace): the classifier on its tc
    /// ingress, the link in the map with its NHRP network id.
    pub fn attach(&mut self, ifindex: u32, va: VaId, network_id: u32) -> Result<(), HairpinError> {
        if let Some(w) = self.watched.get(&ifindex) {
            return Err(HairpinError::AlreadyAttached { ifindex, va: w.va });
        }
        let interface = if_name(ifindex)?;
        let l3_offset = l3_offset(&interface)?;
        // The map entry first: the program ignores links it does not know,
        // and a packet must not see a half-made entry.
        self.links
            .insert(
                ifindex,
                HairpinLink {
                    network_id,
                    l3_offset,
                },
                0,
            )
            .map_err(|source| HairpinError::Map {
                map: hairpin::LINKS,
                source,
            })?;
        self.vas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ifindex, va);
        match self.attach_classifier(&interface) {
            Ok(link) => {
                self.watched.insert(
                    ifindex,
                    Watched {
                        va,
                        network_id,
                        interface,
                        link,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.links.remove(&ifindex);
                self.vas
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&ifindex);
                Err(e)
            }
        }
    }

    fn attach_classifier(
        &mut self,
        interface: &str,
    ) -> Result<SchedClassifierLinkId, HairpinError> {
        // Kernels before 6.6 attach through the clsact qdisc (netlink); newer
        // ones use TCX and do not need it. Adding it is harmless either way,
        // and it may already be there (EEXIST).
        if let Err(e) = tc::qdisc_add_clsact(interface) {
            tracing::debug!(interface, error = %e, "clsact qdisc not added (may exist already)");
        }
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(hairpin::PROGRAM)
            .ok_or(HairpinError::MissingProgram)?
            .try_into()
            .map_err(HairpinError::Program)?;
        program
            .attach(interface, TcAttachType::Ingress)
            .map_err(|source| HairpinError::Attach {
                interface: interface.to_owned(),
                source,
            })
    }

    /// Stops watching `ifindex` (the virtual-access is going). Unknown
    /// indexes are not an error: the link may be gone already.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), HairpinError> {
        let Some(watched) = self.watched.remove(&ifindex) else {
            return Ok(());
        };
        match self.links.remove(&ifindex) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(source) => {
                return Err(HairpinError::Map {
                    map: hairpin::LINKS,
                    source,
                });
            }
        }
        self.vas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ifindex);
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(hairpin::PROGRAM)
            .ok_or(HairpinError::MissingProgram)?
            .try_into()
            .map_err(HairpinError::Program)?;
        // When the link was deleted first, the kernel detached the program
        // with it; what is left to release is our handle.
        if let Err(e) = program.detach(watched.link) {
            tracing::debug!(interface = watched.interface, error = %e, "hairpin classifier detach");
        }
        Ok(())
    }

    /// Starts the task that reads the ring buffer and sends
    /// [`DatapathEvent::Hairpin`] on `events` (never blocking: a full queue
    /// drops the event and counts it). Needs a tokio runtime; the task ends
    /// when the monitor is dropped or the receiver is closed.
    pub fn start(&mut self, events: mpsc::Sender<DatapathEvent>) -> Result<(), HairpinError> {
        if self.reader.is_some() {
            return Err(HairpinError::AlreadyRunning);
        }
        let ring = self.events.take().ok_or(HairpinError::AlreadyRunning)?;
        // SAFETY: the ring buffer owns its map fd (MapData) for as long as
        // the AsyncFd owns the ring buffer, and always returns that fd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| HairpinError::Poll(e.into_parts().1))?;
        let vas = Arc::clone(&self.vas);
        let counters = Arc::clone(&self.reader_counters);
        self.reader = Some(tokio::spawn(read_events(ring, vas, counters, events)));
        Ok(())
    }

    /// The watched links and the counters, summed over CPUs.
    pub fn report(&self) -> Result<HairpinReport, HairpinError> {
        let counter = |c: HairpinCounter| -> Result<u64, HairpinError> {
            let per_cpu =
                self.counters
                    .get(&(c as u32), 0)
                    .map_err(|source| HairpinError::Map {
                        map: hairpin::COUNTERS,
                        source,
                    })?;
            Ok(per_cpu.iter().sum())
        };
        let reader = &self.reader_counters;
        Ok(HairpinReport {
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            links: self
                .watched
                .iter()
                .map(|(&ifindex, w)| HairpinLinkReport {
                    ifindex,
                    interface: w.interface.clone(),
                    va: w.va,
                    network_id: w.network_id,
                })
                .collect(),
            events: counter(HairpinCounter::Events)?,
            lost_ring_full: counter(HairpinCounter::Lost)?,
            rate_limited: counter(HairpinCounter::RateLimited)?,
            delivered: reader.delivered.load(Ordering::Relaxed),
            lost_queue_full: reader.queue_full.load(Ordering::Relaxed),
            unknown_link: reader.unknown_link.load(Ordering::Relaxed),
        })
    }
}

impl Drop for HairpinMonitor {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        // The tc links are released with `ebpf`.
    }
}

/// The reader task: drains the ring buffer at every wake-up.
async fn read_events(
    mut ring: AsyncFd<RingBuf<MapData>>,
    vas: Arc<Mutex<StdHashMap<u32, VaId>>>,
    counters: Arc<ReaderCounters>,
    events: mpsc::Sender<DatapathEvent>,
) {
    loop {
        let mut guard = match ring.readable_mut().await {
            Ok(guard) => guard,
            Err(e) => {
                tracing::error!(error = %e, "hairpin ring buffer: poll failed; reader stopped");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            let Some(record) = parse_event(&item) else {
                continue;
            };
            let hairpin = {
                let vas = vas.lock().unwrap_or_else(PoisonError::into_inner);
                to_hairpin(&record, &vas)
            };
            let Some(hairpin) = hairpin else {
                counters.unknown_link.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match events.try_send(DatapathEvent::Hairpin(hairpin)) {
                Ok(()) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        guard.clear_ready();
    }
}

/// A ring-buffer record as the program wrote it.
fn parse_event(bytes: &[u8]) -> Option<HairpinEvent> {
    if bytes.len() < size_of::<HairpinEvent>() {
        return None;
    }
    // SAFETY: at least size_of::<HairpinEvent>() bytes; HairpinEvent is
    // #[repr(C)] of integers and bytes, valid for any bit pattern.
    Some(unsafe { bytes.as_ptr().cast::<HairpinEvent>().read_unaligned() })
}

/// The control plane's event for a record, when both links are known.
fn to_hairpin(record: &HairpinEvent, vas: &StdHashMap<u32, VaId>) -> Option<Hairpin> {
    let from = *vas.get(&record.ingress_ifindex)?;
    let to = *vas.get(&record.egress_ifindex)?;
    let mut head = [0u8; HAIRPIN_HEAD_LEN];
    let n = usize::try_from(record.head_len)
        .unwrap_or(0)
        .min(HAIRPIN_HEAD_LEN)
        .min(record.head.len());
    head[..n].copy_from_slice(&record.head[..n]);
    Some(Hairpin {
        from,
        to,
        src: Ipv4Addr::from(record.src.to_ne_bytes()),
        dst: Ipv4Addr::from(record.dst.to_ne_bytes()),
        head,
        head_len: u8::try_from(n).unwrap_or(0),
    })
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, HairpinError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(HairpinError::MissingMap(name))?;
    T::try_from(map).map_err(|source| HairpinError::Map { map: name, source })
}

/// The name of interface `ifindex` in the calling thread's namespace.
fn if_name(ifindex: u32) -> Result<String, HairpinError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(HairpinError::NoInterface {
            ifindex,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Where IPv4 starts in the skb at tc ingress: after the Ethernet header on
/// Ethernet-like links (veth), at 0 on ip_gre and other links without a
/// link-layer header. Asked with SIOCGIFHWADDR, which answers in the calling
/// thread's namespace (unlike /sys).
fn l3_offset(interface: &str) -> Result<u32, HairpinError> {
    let no_interface = |source| HairpinError::NoInterface { ifindex: 0, source };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(no_interface(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a socket we own from here on.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(interface.bytes().take(libc::IF_NAMESIZE - 1))
    {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    // SAFETY: a valid socket and ifreq; SIOCGIFHWADDR writes ifr_hwaddr.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCGIFHWADDR,
            &raw mut req,
        )
    };
    if rc != 0 {
        return Err(no_interface(std::io::Error::last_os_error()));
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let family = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok(if family == libc::ARPHRD_ETHER {
        ETH_HLEN
    } else {
        0
    })
}

#[cfg(test)]
mod tests;
