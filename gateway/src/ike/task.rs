//! The IKE socket task: UDP 500 and 4500 on the hub's address, the engine
//! behind them, and the consequences of its actions (SPIs into the XDP
//! filter, session log lines in the spirit of IOS `crypto logging session`,
//! the key log when one is open). The clock and the RNG the state machines
//! use come from here.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{net::UdpSocket, sync::mpsc};

use crate::{
    iface::{IkeDatagrams, IkeOn4500},
    ike::{
        engine::Engine,
        exchange::{Initiator, InitiatorError, Step},
        keylog::KeyLog,
        sa::{Action, AddressPools, ChildSaParams, DerivedKeys},
        workers::{self, Workers},
    },
    net::{IKE_PORT, NATT_PORT},
    pool::Pools,
    xdp::XdpFilter,
};

/// An IKE datagram for an SA this gateway initiated (spoke mode): the
/// responder engine never sees those.
#[derive(Debug)]
pub struct Inbound {
    pub local_port: u16,
    pub peer: SocketAddrV4,
    pub datagram: Vec<u8>,
}

/// Largest IKE datagram we read; bigger ones need fragmentation (RFC 7383).
const MAX_DATAGRAM: usize = 65_535;

/// What the IKE task asks of the session layer (`session::Sessions` in the
/// daemon): the CHILD_SAs it negotiated go into the datapath and out again,
/// and the datapath says which peers it heard from (dead peer detection).
/// IKE defines what it needs; the session layer implements it, so `ike`
/// does not depend on the sessions or the datapath.
pub trait SessionLayer: Send {
    /// A CHILD_SA the responder accepted: its interface, SAs and routes go
    /// in now, before the IKE_AUTH response leaves. The error says why not.
    fn child_up(&mut self, child: &ChildSaParams) -> Result<(), String>;
    fn child_down(&mut self, spi_in: u32);
    /// A CHILD_SA a rekey replaced was deleted: its successor sends from
    /// now on; it only decrypts until its `child_down`.
    fn child_retired(&mut self, spi_in: u32);
    /// The IKE SA `tunnel_id` is gone: whatever is left of its session goes.
    fn session_down(&mut self, tunnel_id: u32);
    /// IKE SAs whose CHILD_SAs the datapath saw traffic on since last asked.
    fn peer_activity(&mut self) -> PeerActivity;
    /// The session's IKE SA is now the one with our SPI `ike_spi` (a rekey).
    fn ike_rekeyed(&mut self, tunnel_id: u32, ike_spi: u64);
    /// The peer's outer endpoint moved (NAT rebinding): its ESP goes there.
    fn peer_moved(&mut self, tunnel_id: u32, remote: SocketAddrV4) -> Result<(), String>;
}

/// What the datapath saw of the peers since the last look (IKE SPIs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerActivity {
    /// ESP came in from these peers.
    pub heard: Vec<u64>,
    /// We sent ESP to these peers.
    pub sent_to: Vec<u64>,
}

/// What the control socket reads and the task changes. `S` is the session
/// layer (`session::Sessions`).
pub struct IkeShared<S> {
    pub engine: Mutex<Engine>,
    pub pools: Mutex<Pools>,
    pub xdp: Arc<Mutex<Option<XdpFilter>>>,
    /// Virtual-access interfaces for the sessions, when a datapath runs.
    pub sessions: Option<Mutex<S>>,
    /// Initiator SPIs of our own outgoing IKE SAs, and who handles them.
    pub initiators: Mutex<HashMap<u64, mpsc::Sender<Inbound>>>,
    /// Told why, when the session of a tunnel id ends (a spoke's dial to
    /// its hub waits on it once the engine has the SA).
    pub watchers: Mutex<HashMap<u32, tokio::sync::oneshot::Sender<String>>>,
}

impl<S> IkeShared<S> {
    pub fn register_initiator(&self, spi_i: u64, to: mpsc::Sender<Inbound>) {
        lock(&self.initiators).insert(spi_i, to);
    }

    pub fn unregister_initiator(&self, spi_i: u64) {
        lock(&self.initiators).remove(&spi_i);
    }

    /// `tx` hears the reason when the session of `tunnel_id` ends.
    pub fn watch_session(&self, tunnel_id: u32, tx: tokio::sync::oneshot::Sender<String>) {
        lock(&self.watchers).insert(tunnel_id, tx);
    }

    /// Lets the uplink filter pass ESP for a new inbound SA (it drops ESP
    /// it has no SPI for).
    pub fn allow_spi(&self, spi: u32) {
        if let Some(filter) = lock(&self.xdp).as_mut()
            && let Err(e) = filter.add_sa(spi)
        {
            tracing::error!(spi = format_args!("{spi:#010x}"), error = %e, "XDP: could not install the inbound SPI");
        }
    }

    /// The inbound SA is gone: the filter drops its ESP again.
    pub fn forget_spi(&self, spi: u32) {
        if let Some(filter) = lock(&self.xdp).as_mut() {
            let _ = filter.remove_sa(spi);
        }
    }

    /// Hands the datagram to the initiator that owns its SA, if any.
    fn to_initiator(&self, inbound: Inbound) -> Option<Inbound> {
        let Some(spi) = inbound.datagram.get(..8) else {
            return Some(inbound);
        };
        let spi_i = u64::from_be_bytes(spi.try_into().unwrap_or_default());
        let owner = lock(&self.initiators).get(&spi_i).cloned();
        match owner {
            Some(tx) => {
                if tx.try_send(inbound).is_err() {
                    tracing::debug!(
                        spi_i = format_args!("{spi_i:016x}"),
                        "initiator busy: IKE datagram dropped"
                    );
                }
                None
            }
            None => Some(inbound),
        }
    }
}

struct PoolsRef<'a>(&'a mut Pools);

impl AddressPools for PoolsRef<'_> {
    fn acquire(&mut self, pool: &str, identity: &str) -> Result<Ipv4Addr, String> {
        self.0
            .acquire(pool, identity, unix_now())
            .map_err(|e| e.to_string())
    }

    fn release(&mut self, pool: &str, address: Ipv4Addr) {
        if let Err(e) = self.0.release(pool, address, unix_now()) {
            tracing::error!(pool, %address, error = %e, "could not record the released lease");
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// UDP 4500: our own socket, or the userspace datapath's (which owns the
/// port for ESP-in-UDP and passes IKE on).
enum Natt {
    Own(UdpSocket),
    Datapath {
        tx: UdpSocket,
        rx: Mutex<Option<IkeDatagrams>>,
    },
}

/// The bound sockets (binding happens before the daemon reports ready),
/// and the key log: what IKE writes outside the process.
pub struct IkeSockets {
    ike: UdpSocket,
    natt: Natt,
    local: Ipv4Addr,
    /// Debugging only: where the keys of new SAs go (`ike::keylog`).
    keylog: Mutex<Option<KeyLog>>,
}

async fn bind_ike(local: Ipv4Addr, port: u16) -> anyhow::Result<UdpSocket> {
    UdpSocket::bind(SocketAddrV4::new(local, port))
        .await
        .with_context(|| format!("binding IKE on {local}:{port} (hub.local_address)"))
}

impl IkeSockets {
    pub async fn bind(local: Ipv4Addr) -> anyhow::Result<Self> {
        Ok(IkeSockets {
            ike: bind_ike(local, IKE_PORT).await?,
            natt: Natt::Own(bind_ike(local, NATT_PORT).await?),
            local,
            keylog: Mutex::new(None),
        })
    }

    /// Both ports of our own, for the kernel datapath: the sockets bypass
    /// the IPsec policies (IKE must not be protected by the SAs it
    /// negotiates), and the kernel takes the ESP-in-UDP that arrives on
    /// 4500 (RFC 3948), leaving the IKE messages with their non-ESP marker
    /// to us, as strongSwan's kernel-netlink sets them up.
    pub async fn for_kernel(local: Ipv4Addr) -> anyhow::Result<Self> {
        use crate::sys::xfrm;
        let ike = bind_ike(local, IKE_PORT).await?;
        let natt = bind_ike(local, NATT_PORT).await?;
        for (socket, port) in [(&ike, IKE_PORT), (&natt, NATT_PORT)] {
            xfrm::bypass_policies(socket).with_context(|| {
                format!("IKE socket {local}:{port}: bypassing the IPsec policies")
            })?;
        }
        xfrm::set_udp_encap_espinudp(&natt)
            .with_context(|| format!("IKE socket {local}:{NATT_PORT}: UDP encapsulation of ESP"))?;
        Ok(IkeSockets {
            ike,
            natt: Natt::Own(natt),
            local,
            keylog: Mutex::new(None),
        })
    }

    /// UDP 500 of our own; 4500 through the userspace datapath.
    pub async fn with_datapath(local: Ipv4Addr, on_4500: IkeOn4500) -> anyhow::Result<Self> {
        on_4500
            .tx
            .set_nonblocking(true)
            .context("UDP 4500 socket for IKE")?;
        Ok(IkeSockets {
            ike: bind_ike(local, IKE_PORT).await?,
            natt: Natt::Datapath {
                tx: UdpSocket::from_std(on_4500.tx).context("UDP 4500 socket for IKE")?,
                rx: Mutex::new(Some(on_4500.rx)),
            },
            local,
            keylog: Mutex::new(None),
        })
    }

    /// Writes each new SA's keys (IKE SAs and CHILD_SAs, accepted or
    /// dialled) to `keylog`, in the formats of Wireshark's decryption
    /// tables, as soon as they are derived. For debugging and tests only:
    /// whoever reads the log can decrypt the SAs.
    #[must_use]
    pub fn with_keylog(self, keylog: Option<KeyLog>) -> Self {
        IkeSockets {
            keylog: Mutex::new(keylog),
            ..self
        }
    }

    /// Appends keys to the key log, if one is open.
    pub fn log_keys(&self, keys: &DerivedKeys) {
        if let Some(log) = lock(&self.keylog).as_mut() {
            log.record(keys);
        }
    }

    /// Hands a response to a dialling initiator (`Initiator::handle`) and
    /// writes the keys it derived to the key log.
    pub fn dial_step(
        &self,
        initiator: &mut Initiator,
        datagram: &[u8],
    ) -> Result<Step, InitiatorError> {
        let step = initiator.handle(datagram);
        for keys in initiator.take_derived_keys() {
            self.log_keys(&keys);
        }
        step
    }

    /// Sends an IKE message from our port `local_port`; on 4500 with the
    /// non-ESP marker (RFC 3948 section 2.2).
    pub async fn send(
        &self,
        local_port: u16,
        remote: SocketAddrV4,
        packet: &[u8],
    ) -> std::io::Result<usize> {
        if local_port != NATT_PORT {
            return self.ike.send_to(packet, remote).await;
        }
        let mut framed = Vec::with_capacity(packet.len() + 4);
        framed.extend_from_slice(&[0, 0, 0, 0]);
        framed.extend_from_slice(packet);
        match &self.natt {
            Natt::Own(s) | Natt::Datapath { tx: s, .. } => s.send_to(&framed, remote).await,
        }
    }

    /// A NAT keepalive to `remote` from our port 4500: the single 0xFF
    /// byte of RFC 3948 section 2.3, without the non-ESP marker.
    pub async fn send_nat_keepalive(&self, remote: SocketAddrV4) -> std::io::Result<usize> {
        match &self.natt {
            Natt::Own(s) | Natt::Datapath { tx: s, .. } => s.send_to(&[0xff], remote).await,
        }
    }
}

/// The next IKE datagram on 4500 (marker removed), whichever way it comes.
async fn recv_natt(
    natt: &Natt,
    own_buf: &mut [u8],
    from_datapath: &mut Option<IkeDatagrams>,
) -> Option<(SocketAddrV4, Vec<u8>)> {
    match natt {
        Natt::Own(socket) => loop {
            match socket.recv_from(own_buf).await {
                // RFC 3948 section 2.2: four zero bytes mark IKE; one 0xFF
                // byte is a NAT keepalive; anything else is ESP, which only
                // the userspace datapath handles.
                Ok((n, SocketAddr::V4(peer))) if n > 4 && own_buf[..4] == [0, 0, 0, 0] => {
                    return Some((peer, own_buf[4..n].to_vec()));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "IKE socket (4500) receive failed"),
            }
        },
        Natt::Datapath { .. } => match from_datapath {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        },
    }
}

/// Runs until the future is dropped. `crypto_threads`: the workers that
/// compute the handshakes (`ike::workers`); with none the engine computes
/// them on this task.
pub async fn run<S: SessionLayer>(
    shared: Arc<IkeShared<S>>,
    sockets: Arc<IkeSockets>,
    crypto_threads: usize,
) {
    let (mut workers, mut computed) = match Workers::start(crypto_threads, workers::QUEUE) {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "could not start the IKE crypto workers: handshakes are computed on the IKE task");
            Workers::start(0, 0).expect("no thread to start")
        }
    };
    lock(&shared.engine).set_offload(workers.threads() > 0);
    let mut refused = 0;
    let mut buf_500 = vec![0u8; MAX_DATAGRAM];
    let mut buf_4500 = vec![0u8; MAX_DATAGRAM];
    let mut from_datapath = match &sockets.natt {
        Natt::Datapath { rx, .. } => lock(rx).take(),
        Natt::Own(_) => None,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let (local_port, peer, datagram) = tokio::select! {
            r = sockets.ike.recv_from(&mut buf_500) => match r {
                Ok((n, SocketAddr::V4(peer))) => (IKE_PORT, peer, buf_500[..n].to_vec()),
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "IKE socket (500) receive failed");
                    continue;
                }
            },
            got = recv_natt(&sockets.natt, &mut buf_4500, &mut from_datapath) => {
                let Some((peer, datagram)) = got else {
                    tracing::error!("the datapath stopped passing IKE on UDP 4500");
                    from_datapath = None;
                    continue;
                };
                (NATT_PORT, peer, datagram)
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let activity = shared
                    .sessions
                    .as_ref()
                    .map(|s| lock(s).peer_activity())
                    .unwrap_or_default();
                let actions = {
                    let mut engine = lock(&shared.engine);
                    for spi in activity.heard {
                        engine.note_alive(spi, now);
                    }
                    for spi in activity.sent_to {
                        engine.note_sending(spi, now);
                    }
                    let mut pools = lock(&shared.pools);
                    engine.tick(now, &mut PoolsRef(&mut pools))
                };
                apply(&shared, &sockets, actions).await;
                if workers.refused() > refused {
                    tracing::warn!(
                        refused = workers.refused() - refused,
                        "IKE crypto workers saturated: handshakes dropped (their peers retransmit)"
                    );
                    refused = workers.refused();
                }
                continue;
            }
            Some(done) = computed.recv() => {
                let actions = {
                    let mut engine = lock(&shared.engine);
                    let mut pools = lock(&shared.pools);
                    let actions = engine.computed(Instant::now(), done, &mut PoolsRef(&mut pools));
                    workers.take_jobs(actions, &mut engine)
                };
                apply(&shared, &sockets, actions).await;
                continue;
            }
        };
        let inbound = Inbound {
            local_port,
            peer,
            datagram,
        };
        if let Some(inbound) = shared.to_initiator(inbound) {
            let local = SocketAddrV4::new(sockets.local, inbound.local_port);
            let (peer, datagram) = (inbound.peer, &inbound.datagram);
            handle(&shared, &sockets, &mut workers, local, peer, datagram).await;
        }
    }
}

async fn handle<S: SessionLayer>(
    shared: &IkeShared<S>,
    sockets: &IkeSockets,
    workers: &mut Workers,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    datagram: &[u8],
) {
    let result = {
        let mut engine = lock(&shared.engine);
        let mut pools = lock(&shared.pools);
        engine
            .handle(
                Instant::now(),
                local,
                peer,
                datagram,
                &mut PoolsRef(&mut pools),
            )
            .map(|actions| workers.take_jobs(actions, &mut engine))
    };
    match result {
        Ok(actions) => apply(shared, sockets, actions).await,
        Err(why) => tracing::debug!(%peer, ?why, "IKE datagram dropped"),
    }
}

/// Sends what the engine asked for and carries out its events.
pub async fn apply<S: SessionLayer>(
    shared: &IkeShared<S>,
    sockets: &IkeSockets,
    actions: Vec<Action>,
) {
    // Events in their order (an older session of the same peer goes
    // before its replacement comes), then the datagrams: new CHILD_SAs are
    // in the datapath before the response that creates them leaves, since
    // the peer may send ESP as soon as it has it.
    let mut actions = actions;
    // A session the datapath refused is ended, not left dead: its DELETE
    // and teardown are one more round (they create nothing, so two rounds
    // at most).
    for _ in 0..2 {
        let (sends, events): (Vec<Action>, Vec<Action>) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Send { .. } | Action::NatKeepalive { .. }));
        let mut refused = Vec::new();
        for action in events {
            match action {
                Action::KeysDerived(keys) => sockets.log_keys(&keys),
                Action::ChildUp(child) => {
                    if !child_up(shared, &child) {
                        refused.push(child.ike_spi);
                    }
                }
                other => session_event(shared, other),
            }
        }
        for action in sends {
            match action {
                Action::Send {
                    local,
                    remote,
                    packet,
                } => {
                    if let Err(e) = sockets.send(local.port(), remote, &packet).await {
                        tracing::warn!(%remote, error = %e, "sending an IKE message failed");
                    }
                }
                Action::NatKeepalive { remote } => {
                    if let Err(e) = sockets.send_nat_keepalive(remote).await {
                        tracing::warn!(%remote, error = %e, "sending a NAT keepalive failed");
                    }
                }
                _ => {}
            }
        }
        if refused.is_empty() {
            return;
        }
        let mut engine = lock(&shared.engine);
        let mut pools = lock(&shared.pools);
        actions = refused
            .into_iter()
            .flat_map(|spi| {
                engine.delete(
                    spi,
                    "the datapath refused its CHILD_SA",
                    &mut PoolsRef(&mut pools),
                )
            })
            .collect();
    }
}

/// A new CHILD_SA (or a rekey's): its SPI into the uplink filter, its pair
/// into the datapath. False if the datapath refused it.
fn child_up<S: SessionLayer>(shared: &IkeShared<S>, child: &ChildSaParams) -> bool {
    shared.allow_spi(child.spi_in);
    if let Some(old) = child.replaces {
        tracing::info!(
            "%IKEV2-5-CHILD_REKEY: CHILD_SA rekeyed. Peer {} SPI in {old:#010x} -> {:#010x} ({})",
            child.remote,
            child.spi_in,
            if child.initiator {
                "initiated"
            } else {
                "answered"
            }
        );
    }
    tracing::info!(
        peer = %child.remote,
        spi_in = format_args!("{:#010x}", child.spi_in),
        spi_out = format_args!("{:#010x}", child.spi_out),
        mode = ?child.mode,
        encap = child.encap.is_some(),
        "CHILD_SA installed"
    );
    if let Some(sessions) = &shared.sessions
        && let Err(e) = SessionLayer::child_up(&mut *lock(sessions), child)
    {
        tracing::error!(peer = %child.remote, error = %e, "the datapath refused the CHILD_SA: ending the session so that the peer dials again");
        shared.forget_spi(child.spi_in);
        return false;
    }
    true
}

/// What an action means for the sessions, the uplink filter and the log.
fn session_event<S: SessionLayer>(shared: &IkeShared<S>, action: Action) {
    match action {
        Action::Compute(job) => {
            // Only `Engine::handle` and `computed` make jobs, and `run`
            // hands those to the workers: this one has nowhere to run.
            tracing::error!(?job, "IKE crypto job outside the IKE task: dropped");
            lock(&shared.engine).abandon(&job);
        }
        Action::KeysDerived(_) | Action::Send { .. } | Action::NatKeepalive { .. } => {}
        Action::ChildUp(child) => {
            child_up(shared, &child);
        }
        Action::ChildRetired {
            spi_in, spi_out, ..
        } => {
            if let Some(sessions) = &shared.sessions {
                lock(sessions).child_retired(spi_in);
            }
            tracing::debug!(
                spi_in = format_args!("{spi_in:#010x}"),
                spi_out = format_args!("{spi_out:#010x}"),
                "CHILD_SA deleted after its rekey: it sends no more and decrypts a moment longer"
            );
        }
        Action::ChildDown {
            spi_in, spi_out, ..
        } => {
            if let Some(sessions) = &shared.sessions {
                lock(sessions).child_down(spi_in);
            }
            shared.forget_spi(spi_in);
            tracing::info!(
                spi_in = format_args!("{spi_in:#010x}"),
                spi_out = format_args!("{spi_out:#010x}"),
                "CHILD_SA removed"
            );
        }
        Action::SessionUp {
            tunnel_id,
            peer,
            identity,
            profile,
            address,
        } => {
            let address = address.map_or_else(|| "none".to_owned(), |a| a.to_string());
            tracing::info!(
                "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is UP. Peer {peer} Id: {identity} Profile: {profile} Assigned: {address} Tunnel-id: {tunnel_id}"
            );
        }
        Action::SessionDown {
            tunnel_id,
            peer,
            identity,
            reason,
        } => {
            if let Some(sessions) = &shared.sessions {
                lock(sessions).session_down(tunnel_id);
            }
            if let Some(tx) = lock(&shared.watchers).remove(&tunnel_id) {
                let _ = tx.send(reason.clone());
            }
            let identity = identity.unwrap_or_else(|| "unknown".to_owned());
            tracing::info!(
                "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is DOWN. Peer {peer} Id: {identity} Tunnel-id: {tunnel_id} Reason: {reason}"
            );
        }
        Action::Refused { peer, reason } => {
            tracing::warn!("%IKEV2-5-REFUSED: Peer {peer}: {reason}");
        }
        Action::IkeRekeyed {
            tunnel_id,
            peer,
            old_spi,
            new_spi,
            initiated,
        } => {
            if let Some(sessions) = &shared.sessions {
                lock(sessions).ike_rekeyed(tunnel_id, new_spi);
            }
            tracing::info!(
                "%IKEV2-5-IKE_REKEY: IKE SA rekeyed. Peer {peer} SPI {old_spi:016x} -> {new_spi:016x} ({})",
                if initiated { "initiated" } else { "answered" }
            );
        }
        Action::PeerMoved {
            tunnel_id,
            from,
            to,
        } => {
            tracing::info!("%IKEV2-5-PEER_MOVED: Peer {from} moved to {to}");
            if let Some(sessions) = &shared.sessions
                && let Err(e) = lock(sessions).peer_moved(tunnel_id, to)
            {
                tracing::error!(peer = %to, error = %e, "the datapath could not follow the peer: its ESP still goes to {from}");
            }
        }
    }
}

/// What the datapath says of a CHILD_SA: a lifetime ran out (rekey it, or
/// it is gone), or its peer's ESP comes from a new endpoint (follow it).
pub async fn sa_event<S: SessionLayer>(
    shared: &IkeShared<S>,
    sockets: &IkeSockets,
    event: &crate::iface::DatapathEvent,
) {
    use crate::iface::DatapathEvent;
    let now = Instant::now();
    let actions = {
        let mut engine = lock(&shared.engine);
        match *event {
            DatapathEvent::SaExpired { spi_in, hard, .. } => {
                let mut pools = lock(&shared.pools);
                engine.child_expired(spi_in, hard, now, &mut PoolsRef(&mut pools))
            }
            DatapathEvent::PeerMoved { spi_in, remote, .. } => engine.esp_moved(spi_in, remote),
            DatapathEvent::Hairpin(_) | DatapathEvent::Nhrp { .. } => Vec::new(),
        }
    };
    apply(shared, sockets, actions).await;
}

/// Deletes one accepted IKE SA (DELETE to its peer) and takes its
/// sessions down.
pub async fn delete_session<S: SessionLayer>(
    shared: &IkeShared<S>,
    sockets: &IkeSockets,
    ike_spi: u64,
    reason: &str,
) {
    let actions = {
        let mut engine = lock(&shared.engine);
        let mut pools = lock(&shared.pools);
        engine.delete(ike_spi, reason, &mut PoolsRef(&mut pools))
    };
    apply(shared, sockets, actions).await;
}

/// Deletes every SA (DELETE to each spoke) when the hub stops.
pub async fn shutdown<S: SessionLayer>(shared: &IkeShared<S>, sockets: &IkeSockets) {
    let actions = {
        let mut engine = lock(&shared.engine);
        let mut pools = lock(&shared.pools);
        engine.shutdown(&mut PoolsRef(&mut pools))
    };
    apply(shared, sockets, actions).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{self, Write};

    use super::*;
    use crate::{
        ike::{
            sa::RETRANSMIT,
            tests::{MemPools, SeededRng, hub, hub_config, modp_init, spoke},
            wire::{Delete, Payload},
        },
        ipsec::{Mode, SystemRng},
    };

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> usize {
            String::from_utf8(lock(&self.0).clone())
                .unwrap()
                .lines()
                .count()
        }
    }

    /// A NAT keepalive leaves our port 4500 as the single 0xFF byte of RFC
    /// 3948 section 2.3, without the non-ESP marker IKE gets there.
    #[tokio::test]
    async fn a_nat_keepalive_is_one_ff_byte_from_port_4500() {
        let local = Ipv4Addr::new(127, 77, 0, 2);
        let Ok(sockets) = IkeSockets::bind(local).await else {
            eprintln!("skipped: cannot bind UDP 500 and 4500 on {local}");
            return;
        };
        let peer = tokio::net::UdpSocket::bind("127.77.0.3:0").await.unwrap();
        let SocketAddr::V4(to) = peer.local_addr().unwrap() else {
            unreachable!()
        };
        sockets.send_nat_keepalive(to).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
            .await
            .expect("the keepalive arrives")
            .unwrap();
        assert_eq!(&buf[..n], [0xff]);
        assert_eq!(from, SocketAddr::V4(SocketAddrV4::new(local, NATT_PORT)));
    }

    /// A spoke's dial through `dial_step` logs its IKE SA (one line) and
    /// its CHILD_SA (two `esp_sa` lines), as the hub's task does for the SAs
    /// it accepts.
    #[tokio::test]
    async fn a_dial_writes_its_keys_to_the_key_log() {
        // UDP 500 needs root; the sockets themselves are not used.
        let Ok(sockets) = IkeSockets::bind(Ipv4Addr::new(127, 77, 0, 1)).await else {
            eprintln!("skipped: cannot bind UDP 500 and 4500 on 127.77.0.1");
            return;
        };
        let (ike, esp) = (Shared::default(), Shared::default());
        let sockets = sockets.with_keylog(Some(KeyLog::to_writers(
            "mem",
            Box::new(ike.clone()),
            Box::new(esp.clone()),
        )));
        let mut engine = hub("");
        let mut pools = MemPools::default();
        pools.size = 10;
        let config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
        let (from, to) = (config.local, config.remote);
        let mut initiator = Initiator::new(config, Box::new(SeededRng(121)));
        let mut request = initiator.start().unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            let actions = engine.handle(now, to, from, &request, &mut pools).unwrap();
            let response = actions
                .into_iter()
                .find_map(|a| match a {
                    Action::Send { packet, .. } => Some(packet),
                    _ => None,
                })
                .unwrap();
            match sockets.dial_step(&mut initiator, &response).unwrap() {
                Step::Send(next) => {
                    assert_eq!((ike.lines(), esp.lines()), (1, 0), "after IKE_SA_INIT");
                    request = next;
                }
                Step::Established(_) => {
                    assert_eq!((ike.lines(), esp.lines()), (1, 2), "after IKE_AUTH");
                    return;
                }
                Step::SendAll(_) => unreachable!("no fragmentation configured"),
            }
        }
        panic!("not established after two exchanges");
    }

    /// The task without a datapath.
    struct NoSessions;

    impl SessionLayer for NoSessions {
        fn child_up(&mut self, _: &ChildSaParams) -> Result<(), String> {
            Ok(())
        }
        fn child_down(&mut self, _: u32) {}
        fn child_retired(&mut self, _: u32) {}
        fn session_down(&mut self, _: u32) {}
        fn peer_activity(&mut self) -> PeerActivity {
            PeerActivity::default()
        }
        fn ike_rekeyed(&mut self, _: u32, _: u64) {}
        fn peer_moved(&mut self, _: u32, _: SocketAddrV4) -> Result<(), String> {
            Ok(())
        }
    }

    async fn exchange(socket: &UdpSocket, to: SocketAddrV4, request: &[u8]) -> Vec<u8> {
        socket.send_to(request, to).await.unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (n, _) = tokio::time::timeout(Duration::from_secs(30), socket.recv_from(&mut buf))
            .await
            .expect("the hub answers")
            .unwrap();
        buf.truncate(n);
        buf
    }

    /// Sends MODP-2048 IKE_SA_INITs (milliseconds of work each) from new
    /// SPIs to `hub`, `per_5ms` every 5 ms, until `stop`; returns how many
    /// it sent and how many were answered.
    fn flood(
        hub: SocketAddrV4,
        per_5ms: u64,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<(u64, u64)> {
        let socket = std::net::UdpSocket::bind("127.77.0.22:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let (mut sent, mut answered) = (0, 0);
            let mut buf = [0u8; 2048];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..per_5ms {
                    sent += 1;
                    let _ = socket.send_to(&modp_init(0x1000 + sent), hub);
                }
                while socket.recv(&mut buf).is_ok() {
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(500));
            while socket.recv(&mut buf).is_ok() {
                answered += 1;
            }
            (sent, answered)
        })
    }

    /// The test: handshakes in progress on all workers (and more
    /// queued behind them, and more refused) do not delay an established
    /// session's liveness check, nor its DELETE, beyond one retransmission
    /// interval: the task answers them between the handshakes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn liveness_checks_and_deletes_are_answered_while_every_worker_computes_handshakes() {
        let (hub_ip, spoke_end) = (
            Ipv4Addr::new(127, 77, 0, 20),
            SocketAddrV4::new(Ipv4Addr::new(127, 77, 0, 21), IKE_PORT),
        );
        let (Ok(sockets), Ok(client)) = (
            IkeSockets::bind(hub_ip).await,
            UdpSocket::bind(spoke_end).await,
        ) else {
            eprintln!("skipped: cannot bind UDP 500 and 4500 on 127.77.0.20 and .21");
            return;
        };
        let state = tempfile::tempdir().unwrap();
        let pools = Pools::open(state.path(), &hub_config("").pool).unwrap();
        let shared = Arc::new(IkeShared::<NoSessions> {
            engine: Mutex::new(hub("")),
            pools: Mutex::new(pools),
            xdp: Arc::default(),
            sessions: None,
            initiators: Mutex::default(),
            watchers: Mutex::default(),
        });
        let task = tokio::spawn(run(shared.clone(), Arc::new(sockets), 2));
        let hub_end = SocketAddrV4::new(hub_ip, IKE_PORT);
        let mut config = spoke("aes256gcm16-prfsha256-ecp256", "aes256gcm16", Mode::Tunnel);
        (config.local, config.remote) = (spoke_end, hub_end);
        let mut initiator = Initiator::new(config, Box::new(SystemRng));
        let mut request = initiator.start().unwrap();
        loop {
            let response = exchange(&client, hub_end, &request).await;
            match initiator.handle(&response).unwrap() {
                Step::Send(next) => request = next,
                Step::Established(_) => break,
                Step::SendAll(_) => unreachable!("no fragmentation configured"),
            }
        }
        // Far more than two workers compute: they and their queues fill.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flooding = flood(hub_end, 10, stop.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let dpd = initiator.informational(&[]).unwrap();
        let asked = Instant::now();
        let response = exchange(&client, hub_end, &dpd).await;
        let waited = asked.elapsed();
        assert!(
            initiator
                .informational_response(&response)
                .unwrap()
                .is_empty()
        );
        // And the spoke going away: its DELETE is done as promptly.
        let delete = Payload::Delete(Delete::ike());
        let delete = initiator.informational(&[delete]).unwrap();
        let asked = Instant::now();
        exchange(&client, hub_end, &delete).await;
        let waited_delete = asked.elapsed();
        let rows = lock(&shared.engine).report(Instant::now());
        assert!(
            rows.iter().all(|r| r.status != "READY"),
            "the session is gone"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (sent, answered) = flooding.join().unwrap();
        task.abort();
        assert!(
            waited < RETRANSMIT,
            "the liveness check waited {waited:?} for its answer"
        );
        assert!(
            waited_delete < RETRANSMIT,
            "the DELETE waited {waited_delete:?} for its answer"
        );
        assert!(
            answered < sent,
            "the workers were not saturated: {answered} of {sent} handshakes answered"
        );
    }
}
