//! One datapath worker thread: its UDP socket, its TUN queue, batches in
//! and out. All buffers are allocated once, when the worker starts.

use std::{
    io,
    net::{SocketAddrV4, UdpSocket},
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;

use super::{
    process::{Encap, FromNet, HEADROOM, Processor, TAILROOM},
    tables::{Replica, Tables, Va},
};
use crate::sys::{
    poll::{Waker, poll_readable},
    tun::TunQueue,
    udp::{self, RecvBatch, SendBatch},
};

/// Datagrams per recvmmsg/sendmmsg call.
const BATCH: usize = 32;
/// Packets read from the TUN queue before the batch is sent.
const TUN_BURST: usize = BATCH;
/// How long a worker sleeps in poll before it looks at the stop flag.
const IDLE: Duration = Duration::from_millis(500);

pub(super) struct Worker {
    pub index: usize,
    pub socket: UdpSocket,
    pub tun: TunQueue,
    pub waker: Arc<Waker>,
    /// This worker's tables, brought up to date before each batch.
    pub replica: Replica,
    pub stop: Arc<AtomicBool>,
    pub processor: Processor,
    pub ike: mpsc::Sender<(SocketAddrV4, Vec<u8>)>,
    pub buffer_size: usize,
}

/// The parts of a worker a packet passes through, borrowed separately.
struct Io<'a> {
    socket: &'a UdpSocket,
    tun: &'a TunQueue,
    send: &'a mut SendBatch,
    scratch: &'a mut [u8],
}

fn flush(send: &mut SendBatch, socket: &UdpSocket) {
    if let Err(e) = send.flush(socket) {
        tracing::debug!(error = %e, "ESP-in-UDP send failed");
    }
}

/// A free send buffer, sending the batch first if it is full.
fn slot<'s>(send: &'s mut SendBatch, socket: &UdpSocket) -> &'s mut [u8] {
    if send.is_full() {
        flush(send, socket);
    }
    send.slot().unwrap_or_default()
}

fn commit(send: &mut SendBatch, packet: &std::ops::Range<usize>, dest: SocketAddrV4) {
    if let Err(e) = send.commit_at(packet.start, packet.len(), dest) {
        tracing::debug!(error = %e, "ESP-in-UDP datagram not queued");
    }
}

impl Io<'_> {
    fn flush(&mut self) {
        flush(self.send, self.socket);
    }

    fn write_tun(&self, packet: &[u8]) {
        if let Err(e) = self.tun.write(packet)
            && e.kind() != io::ErrorKind::WouldBlock
        {
            tracing::debug!(error = %e, "TUN write failed");
        }
    }
}

/// What packet handling changes, apart from the I/O.
struct Ctx {
    processor: Processor,
    ike: mpsc::Sender<(SocketAddrV4, Vec<u8>)>,
}

impl Worker {
    pub fn run(self) {
        let Worker {
            index,
            socket,
            tun,
            waker,
            mut replica,
            stop,
            processor,
            ike,
            buffer_size,
        } = self;
        let mut ctx = Ctx { processor, ike };
        let (mut recv, mut send) = match (
            RecvBatch::new(BATCH, buffer_size),
            SendBatch::new(BATCH, buffer_size),
        ) {
            (Ok(r), Ok(s)) => (r, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(worker = index, error = %e, "datapath worker cannot allocate its buffers");
                return;
            }
        };
        // Runs of same-size datagrams to one spoke leave as one send.
        send.set_gso(udp::gso_supported(&socket));
        let mut scratch = vec![0u8; buffer_size];
        tracing::debug!(worker = index, "datapath worker running");
        while !stop.load(Ordering::Relaxed) {
            let fds = [socket.as_fd(), tun.as_fd(), waker.as_fd()];
            let ready = match poll_readable(&fds, Some(IDLE)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if ready.is_ready(2) {
                let _ = waker.drain();
            }
            // What was published before these packets arrived applies
            // to them (an SA installed before its IKE response left).
            ctx.processor.sync(&mut replica);
            let tables = replica.tables();
            let mut io = Io {
                socket: &socket,
                tun: &tun,
                send: &mut send,
                scratch: &mut scratch,
            };
            if ready.is_ready(0) {
                ctx.network_in(tables, &mut recv, &mut io);
            }
            if ready.is_ready(1) {
                ctx.tun_in(tables, &mut io);
            }
        }
        tracing::debug!(worker = index, "datapath worker stopped");
    }
}

impl Ctx {
    fn network_in(&mut self, tables: &Tables, recv: &mut RecvBatch, io: &mut Io<'_>) {
        loop {
            let n = match recv.recv(io.socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    tracing::debug!(error = %e, "ESP-in-UDP receive failed");
                    0
                }
            };
            for i in 0..n {
                let source = recv.source(i);
                let len = recv.len(i);
                let packet = &mut recv.buf_mut(i)[..len];
                match self.processor.from_network(tables, source, packet) {
                    FromNet::Done => {}
                    FromNet::Ike(r) => {
                        // A closed queue means IKE has stopped (shutdown).
                        if let Err(mpsc::error::TrySendError::Full(_)) =
                            self.ike.try_send((source, packet[r].to_vec()))
                        {
                            tracing::warn!(%source, "IKE queue full: message dropped");
                        }
                    }
                    FromNet::ToTun(r) => io.write_tun(&packet[r]),
                    FromNet::Hairpin { from, to, inner } => {
                        if let (Some(from), Some(to)) = (tables.vas.get(&from), tables.vas.get(&to))
                        {
                            self.forward(from, to, &packet[inner], io);
                        }
                    }
                }
            }
            io.flush();
            if n < BATCH {
                return;
            }
        }
    }

    /// Spoke to spoke through the hub: re-encapsulate for the other spoke;
    /// if it is too big for that tunnel, the ICMP error goes back to the
    /// sender through its own tunnel.
    fn forward(&mut self, from: &Va, to: &Va, inner: &[u8], io: &mut Io<'_>) {
        let buf = slot(io.send, io.socket);
        if inner.len() + HEADROOM + TAILROOM > buf.len() {
            return;
        }
        buf[HEADROOM..HEADROOM + inner.len()].copy_from_slice(inner);
        match self
            .processor
            .encapsulate(to, buf, HEADROOM..HEADROOM + inner.len(), io.scratch)
        {
            Encap::Send { packet, dest } => commit(io.send, &packet, dest),
            Encap::TooBig { icmp_len } => {
                let buf = slot(io.send, io.socket);
                if icmp_len + HEADROOM + TAILROOM > buf.len() {
                    return;
                }
                buf[HEADROOM..HEADROOM + icmp_len].copy_from_slice(&io.scratch[..icmp_len]);
                if let Encap::Send { packet, dest } =
                    self.processor
                        .encapsulate(from, buf, HEADROOM..HEADROOM + icmp_len, io.scratch)
                {
                    commit(io.send, &packet, dest);
                }
            }
            Encap::Dropped => {}
        }
    }

    fn tun_in(&mut self, tables: &Tables, io: &mut Io<'_>) {
        for _ in 0..TUN_BURST {
            let buf = slot(io.send, io.socket);
            let Some(room) = buf.len().checked_sub(HEADROOM + TAILROOM) else {
                break;
            };
            let n = match io.tun.read(&mut buf[HEADROOM..HEADROOM + room]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "TUN read failed");
                    break;
                }
            };
            let Some(to) = self.processor.route(tables, &buf[HEADROOM..HEADROOM + n]) else {
                continue;
            };
            match self
                .processor
                .encapsulate(to, buf, HEADROOM..HEADROOM + n, io.scratch)
            {
                Encap::Send { packet, dest } => commit(io.send, &packet, dest),
                // PMTU discovery for the host's own and the LAN's traffic.
                Encap::TooBig { icmp_len } => io.write_tun(&io.scratch[..icmp_len]),
                Encap::Dropped => {}
            }
        }
        io.flush();
    }
}
