//! The kernel's XFRM events as the control plane's: a thread reads the
//! expire and NAT mapping groups (`sys::xfrm::XfrmMonitor`) and turns them
//! into [`DatapathEvent::SaExpired`] and [`DatapathEvent::PeerMoved`] for
//! the pair the state belongs to (its inbound SPI names it, also when the
//! outbound state expired). A hard expiry means the kernel deleted the
//! state: the monitor removes the rest of the pair, as `remove_sa` would.
//! Events are never waited for: a full queue drops them, counted.

use std::{
    os::fd::AsFd,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{KernelDatapath, State};
use crate::iface::DatapathEvent;
use crate::sys::{
    poll::{Waker, poll_readable},
    xfrm::{XfrmEvent, XfrmMonitor},
};

/// A peer's move is reported at most this often per SA while it lasts
/// (the contract of [`DatapathEvent::PeerMoved`]; kernels before 5.17
/// report every packet).
const PEER_MOVED_INTERVAL: Duration = Duration::from_secs(1);

/// The monitor thread and the eventfd that stops it.
pub(super) struct SaMonitor {
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

/// What the monitor counted.
#[derive(Default)]
pub(super) struct SaEventStats {
    delivered: AtomicU64,
    queue_full: AtomicU64,
    kernel_lost: AtomicU64,
}

/// What the SA monitor counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaEventCounters {
    /// Events handed to the control plane.
    pub delivered: u64,
    /// Events dropped because the control plane's queue was full.
    pub queue_full: u64,
    /// Times the kernel dropped XFRM events (the socket's buffer was full).
    pub kernel_lost: u64,
}

impl KernelDatapath {
    /// What the SA monitor counted (zero without one).
    pub fn sa_event_counters(&self) -> SaEventCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SaEventCounters {
            delivered: r(&self.sa_events.delivered),
            queue_full: r(&self.sa_events.queue_full),
            kernel_lost: r(&self.sa_events.kernel_lost),
        }
    }

    /// Stops the monitor thread; it is woken at once.
    pub(super) fn stop_sa_monitor(&self) {
        let monitor = self
            .sa_monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(monitor) = monitor else {
            return;
        };
        if let Err(e) = monitor.waker.wake() {
            tracing::error!(error = %e, "stopping the XFRM monitor failed; left running");
            return;
        }
        if monitor.thread.join().is_err() {
            tracing::error!("the XFRM monitor panicked");
        }
    }
}

/// Opens the monitor socket (in the calling thread's network namespace,
/// like the datapath's other sockets) and starts its thread.
pub(super) fn start_sa_monitor(
    state: Arc<Mutex<State>>,
    events: mpsc::Sender<DatapathEvent>,
    stats: Arc<SaEventStats>,
) -> std::io::Result<SaMonitor> {
    let monitor = XfrmMonitor::open()?;
    let waker = Arc::new(Waker::new()?);
    let stop = Arc::clone(&waker);
    let thread = std::thread::Builder::new()
        .name("xfrm-monitor".into())
        .spawn(move || run(monitor, &stop, &state, &events, &stats))?;
    Ok(SaMonitor { waker, thread })
}

fn run(
    mut monitor: XfrmMonitor,
    stop: &Waker,
    state: &Mutex<State>,
    events: &mpsc::Sender<DatapathEvent>,
    stats: &SaEventStats,
) {
    let mut batch = Vec::new();
    loop {
        match poll_readable(&[monitor.as_fd(), stop.as_fd()], None) {
            Ok(ready) if ready.is_ready(1) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "XFRM monitor stopped");
                return;
            }
        }
        loop {
            batch.clear();
            match monitor.read(&mut batch) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "XFRM monitor");
                    break;
                }
            }
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            for event in batch.drain(..) {
                if matches!(event, XfrmEvent::Lost) {
                    stats.kernel_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "the kernel dropped XFRM events (its queue was full): an SA expiry or NAT mapping change may go unreported"
                    );
                }
                let Some(out) = s.on_xfrm_event(event, Instant::now()) else {
                    continue;
                };
                match events.try_send(out) {
                    Ok(()) => {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(dropped)) => {
                        stats.queue_full.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(event = ?dropped, "datapath event dropped: the control plane's queue is full");
                    }
                    // The control plane is gone; hard expiries are still
                    // cleaned up.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
    }
}

impl State {
    /// What an XFRM event means for the control plane, if anything: an
    /// expiry of one of our pairs (soft once per pair; hard removes the
    /// pair), or a move of the peer of one of our inbound SAs (at most once
    /// per [`PEER_MOVED_INTERVAL`], and not to where it already is).
    pub(super) fn on_xfrm_event(
        &mut self,
        event: XfrmEvent,
        now: Instant,
    ) -> Option<DatapathEvent> {
        match event {
            XfrmEvent::Expire { state, hard } => {
                let (va, pair) = self.pair_of_state(state.id.dst, state.id.spi)?;
                let spi_in = pair.spi_in;
                if hard {
                    tracing::info!(interface = %va, spi = format_args!("{spi_in:#010x}"), "SA pair reached a hard limit: removed");
                    self.remove_pair(va, spi_in);
                    return Some(DatapathEvent::SaExpired {
                        va,
                        spi_in,
                        hard: true,
                    });
                }
                if pair.soft_reported {
                    return None;
                }
                pair.soft_reported = true;
                Some(DatapathEvent::SaExpired {
                    va,
                    spi_in,
                    hard: false,
                })
            }
            XfrmEvent::Mapping(m) => {
                let (va, pair) = self.pair_of_state(m.dst, m.spi)?;
                // Only inbound SAs have mappings.
                if pair.spi_in != m.spi || pair.peer() == m.new {
                    return None;
                }
                if pair
                    .last_moved
                    .is_some_and(|t| now.saturating_duration_since(t) < PEER_MOVED_INTERVAL)
                {
                    return None;
                }
                pair.last_moved = Some(now);
                Some(DatapathEvent::PeerMoved {
                    va,
                    spi_in: pair.spi_in,
                    remote: m.new,
                })
            }
            XfrmEvent::Lost | XfrmEvent::Other(_) => None,
        }
    }
}
