//! One simulated speaker, as a spoke's BGP client: TCP from its own
//! address to the hub's port 179, OPEN (AS, 4-octet AS, route refresh,
//! IPv4 unicast, as the gateway's spokes send), KEEPALIVE on the hub's
//! OPEN, its one UPDATE once Established, then it reads the table the hub
//! reflects, answering with KEEPALIVEs, until told to stop (a Cease).

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gateway::bgp::{
    types::{Capability, Message, Notification, Open},
    wire::{self, HEADER_LEN, cease_subcode, error_code, msg_type},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch},
};

use super::table::{Counts, Plan, Table};

/// How long one TCP connect may take, and how often it is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TRIES: u32 = 3;
const RETRY_WAIT: Duration = Duration::from_secs(1);
/// Room made in the receive buffer before each read.
const READ_ROOM: usize = 16 * 1024;

/// What every speaker shares.
pub struct Setup {
    pub hub: SocketAddrV4,
    pub plan: Plan,
    pub asn: u32,
    pub hold_time: u16,
    /// The instant the run started: times are measured from it.
    pub started: Instant,
    /// Every speaker's counts, added as they end.
    pub counts: Mutex<Counts>,
    pub connect_retries: std::sync::atomic::AtomicU64,
}

/// What a speaker tells the run.
#[derive(Debug)]
pub enum Progress {
    /// Established; `setup`: from the first connect attempt.
    Established {
        setup: Duration,
    },
    /// Holds every other speaker's prefix (at `at` from the start).
    FullTable {
        index: u32,
        at: Duration,
    },
    Failed {
        index: u32,
        why: String,
    },
}

/// Where a session is.
struct Session {
    index: u32,
    stream: TcpStream,
    /// Held until Established: at most so many speakers are connecting.
    permit: Option<OwnedSemaphorePermit>,
    began: Instant,
    tell: mpsc::UnboundedSender<Progress>,
    buf: Vec<u8>,
    table: Table,
    counts: Counts,
    got_open: bool,
    established: bool,
    full: bool,
    /// Seconds between our KEEPALIVEs, once both OPENs are known.
    keepalive: Option<Duration>,
}

/// One speaker, from its connect to its Cease.
pub async fn run(
    index: u32,
    setup: Arc<Setup>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    tell: mpsc::UnboundedSender<Progress>,
) {
    // Closed when the run gives up waiting: this one never started.
    let Ok(permit) = gate.acquire_owned().await else {
        let why = "not started before the time limit".to_owned();
        let _ = tell.send(Progress::Failed { index, why });
        return;
    };
    let began = Instant::now();
    let stream = match connect(&setup, index).await {
        Ok(s) => s,
        Err(why) => {
            let _ = tell.send(Progress::Failed { index, why });
            return;
        }
    };
    let mut session = Session {
        index,
        stream,
        permit: Some(permit),
        began,
        tell,
        buf: Vec::new(),
        table: Table::new(setup.plan.speakers),
        counts: Counts::default(),
        got_open: false,
        established: false,
        full: false,
        keepalive: None,
    };
    if let Err(why) = session.talk(&setup, &mut stop).await {
        let _ = session.tell.send(Progress::Failed { index, why });
    }
    let mut total = setup
        .counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    total.updates += session.counts.updates;
    total.announced += session.counts.announced;
    total.wrong_next_hop += session.counts.wrong_next_hop;
    total.own_returned += session.counts.own_returned;
    total.unexpected += session.counts.unexpected;
}

async fn connect(setup: &Setup, index: u32) -> Result<TcpStream, String> {
    let source = setup.plan.source(index);
    let mut last = String::new();
    for attempt in 0..CONNECT_TRIES {
        if attempt > 0 {
            setup
                .connect_retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(RETRY_WAIT).await;
        }
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
            .map_err(|e| {
                format!("binding {source} (is the source range routed `local` to lo here?): {e}")
            })?;
        match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(SocketAddr::V4(setup.hub))).await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => "timed out".clone_into(&mut last),
        }
    }
    Err(format!("connect: {last}"))
}

fn encode(message: &Message, out: &mut Vec<u8>) {
    // Our own messages are small and well formed.
    if let Err(e) = wire::encode(message, out) {
        eprintln!("loadgen-bgp: cannot encode {message:?}: {e}");
    }
}

impl Session {
    /// The session until stopped (Ok) or until it fails (the reason).
    async fn talk(
        &mut self,
        setup: &Setup,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut out = Vec::new();
        encode(
            &Message::Open(Open {
                my_as: u16::try_from(setup.asn).unwrap_or(gateway::bgp::types::AS_TRANS),
                hold_time: setup.hold_time,
                router_id: setup.plan.source(self.index),
                capabilities: vec![
                    Capability::Multiprotocol { afi: 1, safi: 1 },
                    Capability::RouteRefresh,
                    Capability::FourOctetAs(setup.asn),
                ],
            }),
            &mut out,
        );
        self.write(&mut out).await?;
        let mut next_keepalive: Option<tokio::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return self.cease().await;
            }
            if self.buf.is_empty() && self.buf.capacity() > 4 * READ_ROOM {
                // A burst is over: thousands of speakers wait here.
                self.buf = Vec::new();
            }
            self.buf.reserve(READ_ROOM);
            let read = tokio::select! {
                read = self.stream.read_buf(&mut self.buf) => read,
                () = sleep_until(next_keepalive) => {
                    encode(&Message::Keepalive, &mut out);
                    self.write(&mut out).await?;
                    next_keepalive = self.keepalive.map(|k| tokio::time::Instant::now() + k);
                    continue;
                }
                changed = stop.changed() => match changed {
                    Ok(()) => continue,
                    // The run is gone: nobody to report to.
                    Err(_) => return self.cease().await,
                },
            };
            match read {
                Ok(0) => return Err("closed by the hub".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            self.frames(setup, &mut out)?;
            if next_keepalive.is_none() {
                next_keepalive = self.keepalive.map(|k| tokio::time::Instant::now() + k);
            }
            self.write(&mut out).await?;
        }
    }

    /// Handles every whole message in the buffer; what to send goes in
    /// `out`.
    fn frames(&mut self, setup: &Setup, out: &mut Vec<u8>) -> Result<(), String> {
        let mut at = 0;
        while let Some(len) =
            wire::frame_len(&self.buf[at..]).map_err(|e| format!("framing: {e}"))?
        {
            let frame = &self.buf[at..at + len];
            at += len;
            match frame[HEADER_LEN - 1] {
                msg_type::UPDATE if self.established => {
                    self.table
                        .apply(
                            setup.plan,
                            self.index,
                            &frame[HEADER_LEN..],
                            &mut self.counts,
                        )
                        .map_err(|e| format!("UPDATE: {e}"))?;
                    if !self.full && self.table.held() + 1 == setup.plan.speakers {
                        self.full_table(setup);
                    }
                }
                msg_type::KEEPALIVE if self.got_open && !self.established => {
                    self.established = true;
                    // The next speaker may connect.
                    self.permit = None;
                    let _ = self.tell.send(Progress::Established {
                        setup: self.began.elapsed(),
                    });
                    encode(&setup.plan.announcement(self.index), out);
                    if setup.plan.speakers == 1 {
                        self.full_table(setup);
                    }
                }
                msg_type::KEEPALIVE | msg_type::ROUTE_REFRESH => {}
                msg_type::OPEN if !self.got_open => {
                    let Ok(Message::Open(open)) = wire::decode(frame) else {
                        return Err("a malformed OPEN".to_owned());
                    };
                    self.got_open = true;
                    let hold = open.hold_time.min(setup.hold_time);
                    self.keepalive = (hold > 0).then(|| Duration::from_secs(u64::from(hold / 3)));
                    encode(&Message::Keepalive, out);
                }
                msg_type::NOTIFICATION => {
                    return Err(match wire::decode(frame) {
                        Ok(Message::Notification(n)) => {
                            format!("NOTIFICATION {}/{}", n.code, n.subcode)
                        }
                        _ => "a malformed NOTIFICATION".to_owned(),
                    });
                }
                other => return Err(format!("message type {other} unexpected here")),
            }
        }
        self.buf.drain(..at);
        Ok(())
    }

    fn full_table(&mut self, setup: &Setup) {
        self.full = true;
        let _ = self.tell.send(Progress::FullTable {
            index: self.index,
            at: setup.started.elapsed(),
        });
    }

    async fn write(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if out.is_empty() {
            return Ok(());
        }
        let written = self.stream.write_all(out).await;
        out.clear();
        written.map_err(|e| format!("write: {e}"))
    }

    /// Cease, administrative shutdown (RFC 4486), and close.
    async fn cease(&mut self) -> Result<(), String> {
        let mut out = Vec::new();
        encode(
            &Message::Notification(Notification {
                code: error_code::CEASE,
                subcode: cease_subcode::ADMINISTRATIVE_SHUTDOWN,
                data: vec![],
            }),
            &mut out,
        );
        let _ = self.write(&mut out).await;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
