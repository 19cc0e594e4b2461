//! NHRP (RFC 2332, GRE protocol type 0x2001) in and out of the GRE links
//! through an AF_PACKET socket, as OpenNHRP does on Linux: a reader thread
//! turns what the kernel decapsulated into [`DatapathEvent::Nhrp`].

use std::{
    collections::HashMap,
    os::fd::AsFd,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use tokio::sync::mpsc;

use super::KernelDatapath;
use crate::iface::{DatapathEvent, VaId};
use crate::net::ETH_P_NHRP;
use crate::sys::{
    packet::PacketSocket,
    poll::{Waker, poll_readable},
};

/// NHRP on the GRE links: the packet socket and which link is whose.
pub(super) struct NhrpPort {
    pub(super) socket: PacketSocket,
    /// ifindex -> virtual-access of the GRE links, for the reader.
    links: RwLock<HashMap<u32, VaId>>,
    delivered: AtomicU64,
    queue_full: AtomicU64,
    unknown_link: AtomicU64,
    truncated: AtomicU64,
}

/// The reader thread and the eventfd that stops it.
pub(super) struct NhrpReader {
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

/// What the NHRP reader counted (`nhrp_to_control` in the report is
/// `delivered`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NhrpCounters {
    /// Packets handed to the control plane.
    pub delivered: u64,
    /// Packets dropped because the control plane's queue was full.
    pub queue_full: u64,
    /// Packets from a link that is not a virtual-access (another GRE
    /// tunnel, `gre0`) or one removed meanwhile.
    pub unknown_link: u64,
    /// Packets larger than the reader's buffer (64 KiB: none can be).
    pub truncated: u64,
}

/// The reader's buffer: the largest IPv4 packet, so nothing is cut.
const NHRP_BUFFER: usize = 65_536;

impl KernelDatapath {
    /// What the NHRP reader counted (zero without one).
    pub fn nhrp_counters(&self) -> NhrpCounters {
        let Ok(port) = &self.nhrp else {
            return NhrpCounters::default();
        };
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NhrpCounters {
            delivered: r(&port.delivered),
            queue_full: r(&port.queue_full),
            unknown_link: r(&port.unknown_link),
            truncated: r(&port.truncated),
        }
    }

    /// Stops the NHRP reader: the eventfd wakes it at once, so this waits
    /// for nothing but the packets it is handing over.
    pub(super) fn stop_nhrp_reader(&self) {
        let reader = self
            .nhrp_reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(reader) = reader else {
            return;
        };
        if let Err(e) = reader.waker.wake() {
            // Without the wake-up the join below would wait forever.
            tracing::error!(error = %e, "stopping the NHRP reader failed; left running");
            return;
        }
        if reader.thread.join().is_err() {
            tracing::error!("the NHRP reader panicked");
        }
    }

    /// Tells the NHRP reader that `ifindex` is `va`'s link (`None`: gone).
    pub(super) fn nhrp_link(&self, ifindex: u32, va: Option<VaId>) {
        if let Ok(port) = &self.nhrp {
            let mut links = port.links.write().unwrap_or_else(PoisonError::into_inner);
            match va {
                Some(va) => links.insert(ifindex, va),
                None => links.remove(&ifindex),
            };
        }
    }
}

/// Opens the NHRP socket, and starts its reader when there is someone to
/// read for. The socket is opened here, not at the first NHRP, because a
/// socket belongs to the network namespace of the thread that opens it: the
/// netlink sockets are opened here too, so all of them see the same links.
/// Without `events` it is a send-only socket (protocol 0), on which the
/// kernel queues nothing unread. No socket (no CAP_NET_RAW, a kernel
/// without CONFIG_PACKET) leaves the datapath running without NHRP, as a
/// missing hairpin detector does.
pub(super) fn open_nhrp(
    events: Option<&mpsc::Sender<DatapathEvent>>,
) -> (Result<Arc<NhrpPort>, String>, Option<NhrpReader>) {
    let socket = match events {
        Some(_) => PacketSocket::open(ETH_P_NHRP),
        None => PacketSocket::send_only(),
    };
    let port = match socket {
        Ok(socket) => Arc::new(NhrpPort {
            socket,
            links: RwLock::new(HashMap::new()),
            delivered: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            unknown_link: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "NHRP off: no packet socket");
            return (Err(e.to_string()), None);
        }
    };
    let Some(events) = events else {
        return (Ok(port), None);
    };
    let reader = Waker::new().map(Arc::new).and_then(|waker| {
        let (p, w, tx) = (Arc::clone(&port), Arc::clone(&waker), events.clone());
        std::thread::Builder::new()
            .name("nhrp-reader".into())
            .spawn(move || read_nhrp(&p, &w, &tx))
            .map(|thread| NhrpReader { waker, thread })
    });
    match reader {
        Ok(reader) => (Ok(port), Some(reader)),
        Err(e) => {
            tracing::warn!(error = %e, "NHRP from the spokes is not read: no reader thread");
            (Ok(port), None)
        }
    }
}

/// The NHRP reader: waits on the socket and the stop eventfd, drains the
/// socket at every wake-up. The only allocation is the event's copy.
fn read_nhrp(port: &NhrpPort, stop: &Waker, events: &mpsc::Sender<DatapathEvent>) {
    let mut buf = vec![0u8; NHRP_BUFFER];
    loop {
        match poll_readable(&[port.socket.as_fd(), stop.as_fd()], None) {
            Ok(ready) if ready.is_ready(1) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "NHRP reader stopped");
                return;
            }
        }
        loop {
            let got = match port.socket.recv(&mut buf) {
                Ok(Some(got)) => got,
                Ok(None) => break,
                Err(e) => {
                    // A pending socket error is reported once, then cleared.
                    tracing::warn!(error = %e, "NHRP reader");
                    break;
                }
            };
            // Only ETH_P_ALL sockets see outgoing packets; a filter is
            // cheap insurance against reading our own.
            if got.pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if got.truncated(buf.len()) {
                port.truncated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let va = port
                .links
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&got.ifindex)
                .copied();
            let Some(va) = va else {
                port.unknown_link.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let packet = buf.get(..got.len).unwrap_or_default().to_vec();
            match events.try_send(DatapathEvent::Nhrp { va, packet }) {
                Ok(()) => {
                    port.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    port.queue_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}
