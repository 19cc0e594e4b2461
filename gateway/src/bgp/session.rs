//! One BGP session's task: owns the TCP connection (or the attempts at
//! one), frames and decodes what arrives, drives the [`Fsm`] with it and
//! with the FSM's timers, and carries out the FSM's actions. UPDATEs and
//! the session's coming and going go to the [`Speaker`]; what the RIB sends
//! the peer arrives already encoded on the writer channel, so a table
//! encoded once reaches every peer of an update group.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpSocket, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::mpsc,
    task::JoinHandle,
};

use super::{
    fsm::{Action, DownReason, Event, Fsm, State},
    neighbors::PeerSettings,
    rib::PeerId,
    speaker::Speaker,
    types::{Message, Notification},
    wire::{self, MAX_MESSAGE_LEN},
};

/// How long one TCP connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Writes are batched up to about this many bytes per syscall.
const WRITE_BATCH: usize = 64 * 1024;

/// Message counters of a session (IOS `MsgRcvd`, `MsgSent`, `OutQ`),
/// shared with `show bgp summary`.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub msg_rcvd: AtomicU64,
    pub msg_sent: AtomicU64,
    /// Messages queued for the writer and not yet written.
    pub out_q: AtomicU64,
}

/// What the writer task is given.
#[derive(Debug)]
pub enum WriterMsg {
    /// One encoded message.
    Message(Arc<[u8]>),
    /// Write what is queued, then close the connection.
    Close,
}

/// The sending side of a connection: the speaker keeps a clone for the
/// RIB's UPDATEs while the session is Established.
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::UnboundedSender<WriterMsg>,
    stats: Arc<SessionStats>,
}

impl Writer {
    /// Queues one encoded message; false when the connection is gone.
    pub fn send(&self, bytes: Arc<[u8]>) -> bool {
        self.stats.out_q.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.send(WriterMsg::Message(bytes)).is_ok();
        if !sent {
            self.stats.out_q.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    fn close(&self) {
        let _ = self.tx.send(WriterMsg::Close);
    }
}

/// What the speaker tells a session.
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

/// Everything a session task needs.
pub struct SessionTask {
    pub speaker: Arc<Speaker>,
    pub settings: PeerSettings,
    pub id: PeerId,
    pub fsm: Fsm,
    pub stats: Arc<SessionStats>,
    pub control: mpsc::UnboundedReceiver<Control>,
    /// The TCP port static neighbors are dialled on (179).
    pub peer_port: u16,
}

struct Conn {
    reader: OwnedReadHalf,
    writer: Writer,
    writer_task: JoinHandle<()>,
    local: SocketAddrV4,
    buf: Vec<u8>,
}

type Connecting = JoinHandle<std::io::Result<TcpStream>>;

impl SessionTask {
    /// Runs the session: `accepted` is the connection a dynamic or static
    /// neighbor opened to us; without one the FSM dials out. Returns when
    /// the session is over for good (a dynamic neighbor's session ended,
    /// or `Control::Stop`).
    pub async fn run(mut self, accepted: Option<TcpStream>) {
        let now = Instant::now();
        let mut conn: Option<Conn> = None;
        let mut connecting: Option<Connecting> = None;
        let mut stopping = false;
        let first = match accepted {
            Some(stream) => {
                let actions = self
                    .fsm
                    .handle(Event::ManualStartWithPassiveTcpEstablishment, now);
                self.apply(actions, &mut conn, &mut connecting);
                conn = self.attach(stream);
                if conn.is_some() {
                    Event::TcpConnectionConfirmed
                } else {
                    Event::TcpConnectionFails
                }
            }
            None => Event::ManualStart,
        };
        let actions = self.fsm.handle(first, Instant::now());
        self.apply(actions, &mut conn, &mut connecting);
        loop {
            if self.finished(stopping) {
                break;
            }
            let deadline = self.fsm.next_deadline();
            let event = tokio::select! {
                read = read_some(conn.as_mut()) => match read {
                    Ok(0) | Err(_) => Some(Event::TcpConnectionFails),
                    Ok(_) => {
                        self.drain_frames(&mut conn, &mut connecting);
                        None
                    }
                },
                () = sleep_until(deadline) => {
                    let actions = self.fsm.on_timeout(Instant::now());
                    self.apply(actions, &mut conn, &mut connecting);
                    None
                }
                result = join_connect(connecting.as_mut()) => {
                    connecting = None;
                    match result.and_then(|stream| self.attach(stream).ok_or_else(|| std::io::Error::other("no local address"))) {
                        Ok(c) => {
                            conn = Some(c);
                            Some(Event::TcpCrAcked)
                        }
                        Err(e) => {
                            tracing::debug!(neighbor = %self.settings.address, error = %e, "BGP: connect failed");
                            Some(Event::TcpConnectionFails)
                        }
                    }
                }
                control = self.control.recv() => match control {
                    Some(Control::PathGone) if conn.is_some() || connecting.is_some() => {
                        Some(Event::TcpConnectionFails)
                    }
                    Some(Control::PathGone) => None,
                    Some(Control::RetryNow) => match self.fsm.state() {
                        State::Active | State::Connect => Some(Event::ConnectRetryTimerExpires),
                        State::Idle if !self.fsm.config().passive => Some(Event::AutomaticStart),
                        _ => None,
                    },
                    Some(Control::Stop) | None => {
                        stopping = true;
                        Some(Event::ManualStop)
                    }
                },
            };
            if let Some(event) = event {
                if matches!(event, Event::TcpConnectionFails) {
                    if let Some(c) = conn.take() {
                        c.writer_task.abort();
                    }
                    if let Some(c) = connecting.take() {
                        c.abort();
                    }
                }
                let actions = self.fsm.handle(event, Instant::now());
                self.apply(actions, &mut conn, &mut connecting);
            }
        }
        if let Some(c) = connecting.take() {
            c.abort();
        }
        if let Some(c) = conn.take() {
            c.writer.close();
            // The NOTIFICATION of a stop goes out before the task ends.
            let _ = tokio::time::timeout(Duration::from_secs(1), c.writer_task).await;
        }
        self.speaker.session_ended(self.settings.address, self.id);
    }

    /// A passive session is over once it is back in Idle; an active one
    /// restarts unless stopped.
    fn finished(&self, stopping: bool) -> bool {
        self.fsm.state() == State::Idle && (stopping || self.fsm.config().idle_hold.is_none())
    }

    fn attach(&self, stream: TcpStream) -> Option<Conn> {
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr().ok()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => return None,
        };
        let (reader, writer) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_task = tokio::spawn(write_loop(writer, rx, self.stats.clone()));
        Some(Conn {
            reader,
            writer: Writer {
                tx,
                stats: self.stats.clone(),
            },
            writer_task,
            local,
            buf: Vec::with_capacity(MAX_MESSAGE_LEN),
        })
    }

    /// Handles every whole message in the receive buffer.
    fn drain_frames(&mut self, conn: &mut Option<Conn>, connecting: &mut Option<Connecting>) {
        loop {
            let Some(c) = conn.as_mut() else { return };
            let len = match wire::frame_len(&c.buf) {
                Ok(Some(len)) => len,
                Ok(None) => return,
                Err(e) => {
                    self.speaker.count_bad_message(self.settings.address, &e);
                    let actions = self.fsm.handle(Event::from_wire_error(&e), Instant::now());
                    c.buf.clear();
                    self.apply(actions, conn, connecting);
                    return;
                }
            };
            self.stats.msg_rcvd.fetch_add(1, Ordering::Relaxed);
            let decoded = wire::decode(&c.buf[..len]);
            c.buf.drain(..len);
            let message = match decoded {
                Ok(m) => m,
                Err(e) => {
                    self.speaker.count_bad_message(self.settings.address, &e);
                    let actions = self.fsm.handle(Event::from_wire_error(&e), Instant::now());
                    self.apply(actions, conn, connecting);
                    continue;
                }
            };
            let actions = self
                .fsm
                .handle(Event::from_message(&message), Instant::now());
            self.apply(actions, conn, connecting);
            if self.fsm.state() == State::Established {
                match &message {
                    Message::Update(update) => self.speaker.update_received(self.id, update),
                    Message::RouteRefresh { .. } => self.speaker.route_refresh(self.id),
                    _ => {}
                }
            }
        }
    }

    fn apply(
        &mut self,
        actions: Vec<Action>,
        conn: &mut Option<Conn>,
        connecting: &mut Option<Connecting>,
    ) {
        for action in actions {
            match action {
                Action::ConnectTcp => {
                    if let Some(c) = connecting.take() {
                        c.abort();
                    }
                    *connecting = Some(tokio::spawn(connect(
                        self.settings.address,
                        self.peer_port,
                        self.settings.update_source,
                    )));
                }
                Action::DropTcp => {
                    if let Some(c) = connecting.take() {
                        c.abort();
                    }
                    if let Some(c) = conn.take() {
                        c.writer.close();
                    }
                }
                Action::SendOpen(open) => send(conn.as_ref(), &Message::Open(open)),
                Action::SendKeepalive => send(conn.as_ref(), &Message::Keepalive),
                Action::SendNotification(n) => {
                    log_notification(&self.settings, &n, "sent to");
                    send(conn.as_ref(), &Message::Notification(n));
                }
                Action::Established(negotiated) => {
                    if let Some(c) = conn.as_ref() {
                        self.speaker.established(
                            self.settings.address,
                            self.id,
                            &negotiated,
                            *c.local.ip(),
                            c.writer.clone(),
                        );
                    }
                }
                Action::SessionDown { reason } => {
                    if let DownReason::NotificationReceived(n) = &reason {
                        log_notification(&self.settings, n, "received from");
                    }
                    self.speaker
                        .session_down(self.settings.address, self.id, &reason);
                }
            }
        }
        self.speaker
            .set_state(self.settings.address, self.id, self.fsm.state());
    }
}

fn log_notification(settings: &PeerSettings, n: &Notification, direction: &str) {
    tracing::warn!(
        "%BGP-3-NOTIFICATION: {direction} neighbor {}{} {}/{} ({} bytes of data)",
        if settings.dynamic.is_some() { "*" } else { "" },
        settings.address,
        n.code,
        n.subcode,
        n.data.len()
    );
}

fn send(conn: Option<&Conn>, message: &Message) {
    let Some(c) = conn else { return };
    match wire::encode_to_vec(message) {
        Ok(bytes) => {
            c.writer.send(bytes.into());
        }
        // Our own messages are built within the limits; this is a bug.
        Err(e) => tracing::error!(error = %e, "BGP: cannot encode our own message"),
    }
}

async fn read_some(conn: Option<&mut Conn>) -> std::io::Result<usize> {
    let Some(c) = conn else {
        return std::future::pending().await;
    };
    let mut chunk = [0u8; 16 * 1024];
    let n = c.reader.read(&mut chunk).await?;
    c.buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn join_connect(connecting: Option<&mut Connecting>) -> std::io::Result<TcpStream> {
    let Some(task) = connecting else {
        return std::future::pending().await;
    };
    match task.await {
        Ok(result) => result,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Dials a neighbor, from `source` when the neighbor has `update-source`.
async fn connect(
    peer: Ipv4Addr,
    port: u16,
    source: Option<Ipv4Addr>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(src) = source {
        socket.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
    }
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        socket.connect(SocketAddr::V4(SocketAddrV4::new(peer, port))),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Writes queued messages, several per syscall, until told to close or the
/// connection fails.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    stats: Arc<SessionStats>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut count = 0u64;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Message(bytes) => {
                    batch.extend_from_slice(&bytes);
                    count += 1;
                }
                WriterMsg::Close => {
                    close = true;
                    break;
                }
            }
            if batch.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if socket.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
            stats.msg_sent.fetch_add(count, Ordering::Relaxed);
            stats.out_q.fetch_sub(count, Ordering::Relaxed);
        }
        if close {
            let _ = socket.shutdown().await;
            return;
        }
    }
}
