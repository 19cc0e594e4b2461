//! What flows between the BGP tasks and the instance (holo-bgp's
//! `tasks::messages`). The instance (`speaker`) owns the neighbor table
//! and the RIB and reads one channel of [`Event`]s: from the session tasks
//! (each owns its socket and FSM), the listener, the routing-table scan
//! and the rest of the gateway. It answers a session over that session's
//! own channels: [`Control`] to its task, and already encoded messages to
//! its socket's writer through a [`Writer`], so an UPDATE encoded once
//! reaches every peer of an update group without passing through the
//! session task.

use std::{
    net::Ipv4Addr,
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{net::TcpStream, sync::mpsc};

use super::{
    fsm::{DownReason, Negotiated, State},
    rib::PeerId,
    types::Update,
};
use crate::{net::Ipv4Prefix, sys::netlink::KernelRoute};

/// The instance's input.
#[derive(Debug)]
pub enum Event {
    /// From the task of session `id`.
    Session { id: PeerId, event: SessionEvent },
    /// The listener accepted a connection from `peer` (RFC 4271 Event 17,
    /// TcpConnectionConfirmed, once a session runs it): a static neighbor,
    /// a dynamic one from a listen range, or refused.
    TcpAccept { stream: TcpStream, peer: Ipv4Addr },
    /// A dynamic neighbor's new connection waited long enough for its old
    /// session to end: it starts now.
    ReplaceDue(Ipv4Addr),
    /// Routes came into the forwarding tables (a tunnel came up).
    RoutesAdded(Vec<Ipv4Prefix>),
    /// Routes went from the forwarding tables (a tunnel went down).
    RoutesRemoved(Vec<Ipv4Prefix>),
    /// The routing table's prefixes, all of them (for `network`), when the
    /// caller knows them rather than the kernel scan.
    RoutesPresent(Vec<Ipv4Prefix>),
    /// The kernel's main routing table, read by the scan task.
    KernelRoutes(Vec<KernelRoute>),
    /// Stop: Cease to every neighbor, then the routes installed go.
    Stop,
}

/// What a session task tells the instance. The FSM's events and states
/// are RFC 4271 section 8's; these are what the instance acts on.
#[derive(Debug)]
pub enum SessionEvent {
    /// The FSM entered `State` (sent on every change).
    StateChange(State),
    /// The session reached Established: the peer goes into the RIB and is
    /// sent its table through `writer`; `local` is our address on the
    /// connection (next hop self).
    Established {
        negotiated: Negotiated,
        local: Ipv4Addr,
        writer: Writer,
    },
    /// Event 27, UpdateMsg, accepted in Established: for the Adj-RIB-In.
    UpdateMsg(Update),
    /// RFC 2918 ROUTE-REFRESH, accepted in Established: send the peer its
    /// table again.
    RouteRefreshMsg,
    /// The Established session went down: its routes are withdrawn.
    SessionDown(DownReason),
    /// The session task ended: a dynamic neighbor is forgotten (IOS).
    Closed,
}

/// What the instance tells a session task.
#[derive(Debug)]
pub enum Control {
    /// The path to the peer is gone (its tunnel went down): drop the
    /// connection at once, as if TCP had failed. A static neighbor dials
    /// again after its idle hold time.
    PathGone,
    /// A route to the peer appeared: a static neighbor waiting to dial
    /// again tries now.
    RetryNow,
    /// Cease / administrative shutdown (the gateway stops).
    Stop,
}

/// Message counters of a session (IOS `MsgRcvd`, `MsgSent`, `OutQ`): the
/// session task and its writer count, `show bgp summary` reads.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub msg_rcvd: AtomicU64,
    pub msg_sent: AtomicU64,
    /// Messages queued for the writer and not yet written.
    pub out_q: AtomicU64,
}

/// A peer's share of a round's UPDATEs: runs of one buffer that every
/// recipient of the round shares (`speaker/round.rs`).
#[derive(Debug)]
pub struct Slices {
    pub bytes: Arc<[u8]>,
    /// In the order they are to be sent.
    pub ranges: Vec<Range<usize>>,
    /// How many messages the runs hold.
    pub messages: u64,
}

/// What a connection's writer task is given.
#[derive(Debug)]
pub enum WriterMsg {
    /// One encoded message.
    Message(Arc<[u8]>),
    /// Several, in runs of a shared buffer.
    Slices(Slices),
    /// Write what is queued, then close the connection.
    Close,
}

/// The sending side of a connection: the instance keeps a clone for the
/// RIB's UPDATEs while the session is Established.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::UnboundedSender<WriterMsg>,
    stats: Arc<SessionStats>,
}

impl Writer {
    /// A writer over `tx`, counting in `stats`; the receiver goes to the
    /// task that owns the socket's sending half.
    pub fn new(tx: mpsc::UnboundedSender<WriterMsg>, stats: Arc<SessionStats>) -> Self {
        Writer { tx, stats }
    }

    /// Queues one encoded message; false when the connection is gone.
    pub fn send(&self, bytes: Arc<[u8]>) -> bool {
        self.stats.out_q.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.send(WriterMsg::Message(bytes)).is_ok();
        if !sent {
            self.stats.out_q.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Queues a share of a round's UPDATEs; false when the connection is
    /// gone.
    pub fn send_slices(&self, slices: Slices) -> bool {
        let messages = slices.messages;
        self.stats.out_q.fetch_add(messages, Ordering::Relaxed);
        let sent = self.tx.send(WriterMsg::Slices(slices)).is_ok();
        if !sent {
            self.stats.out_q.fetch_sub(messages, Ordering::Relaxed);
        }
        sent
    }

    /// Writes what is queued, then closes the connection.
    pub fn close(&self) {
        let _ = self.tx.send(WriterMsg::Close);
    }
}
