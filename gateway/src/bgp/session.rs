//! One BGP session's task: owns the TCP connection (or the attempts at
//! one), frames and decodes what arrives, drives the [`Fsm`] with it and
//! with the FSM's timers, and carries out the FSM's actions. UPDATEs and
//! the session's coming and going go to the instance as [`SessionEvent`]s
//! on its event channel; the instance answers with [`Control`], and what
//! the RIB sends the peer arrives already encoded on the writer channel,
//! so a table encoded once reaches every peer of an update group.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::{
    io::AsyncWriteExt as _,
    net::{
        TcpSocket, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::mpsc,
    task::JoinHandle,
};

use super::{
    events::{self, Control, SessionEvent, SessionStats, Writer, WriterMsg},
    fsm::{Action, DownReason, Event, Fsm, State},
    neighbors::PeerSettings,
    rib::PeerId,
    types::{Message, Notification},
    wire::{self, MAX_MESSAGE_LEN, WireError},
};

/// How long one TCP connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Small writes are gathered up to about this many bytes per syscall.
const WRITE_BATCH: usize = 16 * 1024;
/// A round's runs from this long on are written in place, not gathered.
const WRITE_IN_PLACE: usize = 2048;

/// Everything a session task needs.
pub struct SessionTask {
    /// The instance's event channel.
    events: mpsc::UnboundedSender<events::Event>,
    settings: PeerSettings,
    id: PeerId,
    fsm: Fsm,
    stats: Arc<SessionStats>,
    control: mpsc::UnboundedReceiver<Control>,
    /// The TCP port static neighbors are dialled on (179).
    peer_port: u16,
    /// The FSM state the instance was last told.
    reported: Option<State>,
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
    /// A session `id` of the neighbor `settings` describes, telling the
    /// instance on `events` and counting in `stats`.
    pub fn new(
        events: mpsc::UnboundedSender<events::Event>,
        settings: PeerSettings,
        id: PeerId,
        fsm: Fsm,
        stats: Arc<SessionStats>,
        control: mpsc::UnboundedReceiver<Control>,
        peer_port: u16,
    ) -> Self {
        SessionTask {
            events,
            settings,
            id,
            fsm,
            stats,
            control,
            peer_port,
            reported: None,
        }
    }

    fn tell(&self, event: SessionEvent) {
        // The instance is gone only when the speaker stops.
        let _ = self
            .events
            .send(events::Event::Session { id: self.id, event });
    }

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
        self.tell(SessionEvent::Closed);
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
            writer: Writer::new(tx, self.stats.clone()),
            writer_task,
            local,
            buf: Vec::new(),
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
                    self.bad_message(&e);
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
                    self.bad_message(&e);
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
                match message {
                    Message::Update(update) => self.tell(SessionEvent::UpdateMsg(update)),
                    Message::RouteRefresh { .. } => self.tell(SessionEvent::RouteRefreshMsg),
                    _ => {}
                }
            }
        }
    }

    fn bad_message(&self, error: &WireError) {
        tracing::warn!(neighbor = %self.settings.address, error = %error, "BGP: bad message from the neighbor");
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
                        self.tell(SessionEvent::Established {
                            negotiated,
                            local: *c.local.ip(),
                            writer: c.writer.clone(),
                        });
                    }
                }
                Action::SessionDown { reason } => {
                    if let DownReason::NotificationReceived(n) = &reason {
                        log_notification(&self.settings, n, "received from");
                    }
                    self.tell(SessionEvent::SessionDown(reason));
                }
            }
        }
        let state = self.fsm.state();
        if self.reported != Some(state) {
            self.reported = Some(state);
            self.tell(SessionEvent::StateChange(state));
        }
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

/// Reads what has arrived into the session's buffer. The buffer is freed
/// while the session waits (most sessions, most of the time: 4 KiB of
/// each session's memory at 4,000 dynamic neighbors) and made room for one
/// whole message once there is something to read. Cancel-safe in
/// `select!`: readiness is awaited, the read itself does not wait.
async fn read_some(conn: Option<&mut Conn>) -> std::io::Result<usize> {
    let Some(c) = conn else {
        return std::future::pending().await;
    };
    loop {
        if c.buf.is_empty() && c.buf.capacity() > 0 {
            c.buf = Vec::new();
        }
        c.reader.readable().await?;
        c.buf.reserve(MAX_MESSAGE_LEN);
        match c.reader.try_read_buf(&mut c.buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            result => return result,
        }
    }
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

/// Writes queued messages until told to close or the connection fails:
/// small ones gathered, several per syscall; a round's longer runs straight
/// from the buffer its recipients share, so a writer waiting on a full
/// socket holds no copy of them.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<WriterMsg>,
    stats: Arc<SessionStats>,
) {
    // Allocated for a burst and freed after it: an idle session (most of
    // them, most of the time) holds no write buffer.
    let mut batch: Vec<u8> = Vec::new();
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
                WriterMsg::Slices(slices) => {
                    for range in &slices.ranges {
                        let run = &slices.bytes[range.clone()];
                        if run.len() < WRITE_IN_PLACE {
                            batch.extend_from_slice(run);
                            continue;
                        }
                        if !batch.is_empty() {
                            if socket.write_all(&batch).await.is_err() {
                                return;
                            }
                            batch.clear();
                        }
                        if socket.write_all(run).await.is_err() {
                            return;
                        }
                    }
                    count += slices.messages;
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
        if !batch.is_empty() && socket.write_all(&batch).await.is_err() {
            return;
        }
        batch = Vec::new();
        stats.msg_sent.fetch_add(count, Ordering::Relaxed);
        stats.out_q.fetch_sub(count, Ordering::Relaxed);
        if close {
            let _ = socket.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::bgp::events::Slices;

    /// A session's task waits in `read_some` most of its life, so what that
    /// future holds is paid once per neighbor: no read chunk in it (it held
    /// 16 KiB, a quarter of the memory per peer at 1,000 dynamic neighbors).
    #[test]
    fn waiting_for_bytes_holds_no_buffer_in_the_task() {
        let waiting = read_some(None);
        assert!(
            std::mem::size_of_val(&waiting) < 256,
            "{} bytes",
            std::mem::size_of_val(&waiting)
        );
    }

    /// The writer puts a round's runs on the wire in order, around its own
    /// messages, short runs gathered and a long one written in place, and
    /// counts them.
    #[tokio::test]
    async fn the_writer_sends_shared_runs_in_order_and_counts_their_messages() {
        #![allow(clippy::unwrap_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, accepted) = tokio::join!(dialled, listener.accept());
        let (_, write) = ours.unwrap().into_split();
        let (mut theirs, _) = accepted.unwrap();
        let stats = Arc::new(SessionStats::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(write, rx, stats.clone()));
        let writer = Writer::new(tx, stats.clone());
        let shared: Arc<[u8]> = (0..3 * WRITE_BATCH)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        writer.send(Arc::from(&b"first"[..]));
        writer.send_slices(Slices {
            bytes: shared.clone(),
            ranges: vec![10..20, 100..100 + 2 * WRITE_BATCH],
            messages: 7,
        });
        writer.send(Arc::from(&b"last"[..]));
        writer.close();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        let mut want = b"first".to_vec();
        want.extend_from_slice(&shared[10..20]);
        want.extend_from_slice(&shared[100..100 + 2 * WRITE_BATCH]);
        want.extend_from_slice(b"last");
        assert!(got == want, "{} bytes, {} wanted", got.len(), want.len());
        assert_eq!(stats.msg_sent.load(Ordering::Relaxed), 9);
        assert_eq!(stats.out_q.load(Ordering::Relaxed), 0);
    }

    /// A session waiting for its peer holds no receive buffer (most
    /// sessions wait most of the time), and reads what arrives.
    #[tokio::test]
    async fn a_waiting_session_holds_no_receive_buffer() {
        #![allow(clippy::unwrap_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, accepted) = tokio::join!(dialled, listener.accept());
        let ours = ours.unwrap();
        let local = match ours.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        let (reader, _write) = ours.into_split();
        let (mut theirs, _) = accepted.unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SessionStats::default());
        let mut conn = Conn {
            reader,
            writer: Writer::new(tx, stats),
            writer_task: tokio::spawn(async {}),
            local,
            buf: Vec::with_capacity(MAX_MESSAGE_LEN),
        };
        let waited =
            tokio::time::timeout(Duration::from_millis(50), read_some(Some(&mut conn))).await;
        assert!(waited.is_err(), "nothing was sent");
        assert_eq!(conn.buf.capacity(), 0);
        theirs.write_all(b"hello").await.unwrap();
        assert_eq!(read_some(Some(&mut conn)).await.unwrap(), 5);
        assert_eq!(conn.buf, b"hello");
    }
}
