//! The IKE socket task: UDP 500 and 4500 on the hub's address, the engine
//! behind them, and the consequences of its actions (SPIs into the XDP
//! filter, session log lines in the spirit of IOS `crypto logging session`).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::net::UdpSocket;

use crate::{
    ike::engine::{Action, AddressPools, Engine, IKE_PORT, NATT_PORT},
    pool::Pools,
    xdp::XdpFilter,
};

/// Largest IKE datagram we read; bigger ones need fragmentation (RFC 7383).
const MAX_DATAGRAM: usize = 65_535;

/// What the control socket reads and the task changes.
pub struct IkeShared {
    pub engine: Mutex<Engine>,
    pub pools: Mutex<Pools>,
    pub xdp: Arc<Mutex<Option<XdpFilter>>>,
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

/// The bound sockets; binding happens before the daemon reports ready.
pub struct IkeSockets {
    ike: UdpSocket,
    natt: UdpSocket,
    local: Ipv4Addr,
}

impl IkeSockets {
    pub async fn bind(local: Ipv4Addr) -> anyhow::Result<Self> {
        let bind = |port| async move {
            UdpSocket::bind(SocketAddrV4::new(local, port))
                .await
                .with_context(|| format!("binding IKE on {local}:{port} (hub.local_address)"))
        };
        Ok(IkeSockets {
            ike: bind(IKE_PORT).await?,
            natt: bind(NATT_PORT).await?,
            local,
        })
    }
}

/// Runs until the future is dropped.
pub async fn run(shared: Arc<IkeShared>, sockets: Arc<IkeSockets>) {
    let mut buf_500 = vec![0u8; MAX_DATAGRAM];
    let mut buf_4500 = vec![0u8; MAX_DATAGRAM];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = sockets.ike.recv_from(&mut buf_500) => match r {
                Ok((n, SocketAddr::V4(peer))) => {
                    let local = SocketAddrV4::new(sockets.local, IKE_PORT);
                    handle(&shared, &sockets, local, peer, &buf_500[..n]).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "IKE socket (500) receive failed"),
            },
            r = sockets.natt.recv_from(&mut buf_4500) => match r {
                Ok((n, SocketAddr::V4(peer))) => {
                    let local = SocketAddrV4::new(sockets.local, NATT_PORT);
                    let datagram = &buf_4500[..n];
                    // RFC 3948 section 2.2: four zero bytes mark IKE; one 0xFF
                    // byte is a NAT keepalive; anything else is ESP, which the
                    // datapath (a later issue) takes.
                    if datagram.len() > 4 && datagram[..4] == [0, 0, 0, 0] {
                        handle(&shared, &sockets, local, peer, &datagram[4..]).await;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "IKE socket (4500) receive failed"),
            },
            _ = tick.tick() => {
                let actions = lock(&shared.engine).tick(Instant::now());
                apply(&shared, &sockets, actions).await;
            }
        }
    }
}

async fn handle(
    shared: &IkeShared,
    sockets: &IkeSockets,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    datagram: &[u8],
) {
    let result = {
        let mut engine = lock(&shared.engine);
        let mut pools = lock(&shared.pools);
        engine.handle(
            Instant::now(),
            local,
            peer,
            datagram,
            &mut PoolsRef(&mut pools),
        )
    };
    match result {
        Ok(actions) => apply(shared, sockets, actions).await,
        Err(why) => tracing::debug!(%peer, ?why, "IKE datagram dropped"),
    }
}

/// Sends what the engine asked for and carries out its events.
pub async fn apply(shared: &IkeShared, sockets: &IkeSockets, actions: Vec<Action>) {
    for action in actions {
        match action {
            Action::Send {
                local,
                remote,
                packet,
            } => {
                let result = if local.port() == NATT_PORT {
                    let mut framed = Vec::with_capacity(packet.len() + 4);
                    framed.extend_from_slice(&[0, 0, 0, 0]);
                    framed.extend_from_slice(&packet);
                    sockets.natt.send_to(&framed, remote).await
                } else {
                    sockets.ike.send_to(&packet, remote).await
                };
                if let Err(e) = result {
                    tracing::warn!(%remote, error = %e, "sending an IKE message failed");
                }
            }
            Action::ChildUp(child) => {
                let mut xdp = lock(&shared.xdp);
                if let Some(filter) = xdp.as_mut()
                    && let Err(e) = filter.add_sa(child.spi_in)
                {
                    tracing::error!(spi = format_args!("{:#010x}", child.spi_in), error = %e, "XDP: could not install the inbound SPI");
                }
                tracing::info!(
                    peer = %child.remote,
                    spi_in = format_args!("{:#010x}", child.spi_in),
                    spi_out = format_args!("{:#010x}", child.spi_out),
                    mode = ?child.mode,
                    encap = child.encap.is_some(),
                    "CHILD_SA installed"
                );
            }
            Action::ChildDown {
                spi_in, spi_out, ..
            } => {
                let mut xdp = lock(&shared.xdp);
                if let Some(filter) = xdp.as_mut() {
                    let _ = filter.remove_sa(spi_in);
                }
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
                let identity = identity.unwrap_or_else(|| "unknown".to_owned());
                tracing::info!(
                    "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is DOWN. Peer {peer} Id: {identity} Tunnel-id: {tunnel_id} Reason: {reason}"
                );
            }
            Action::Refused { peer, reason } => {
                tracing::warn!("%IKEV2-5-REFUSED: Peer {peer}: {reason}");
            }
        }
    }
}

/// Deletes every SA (DELETE to each spoke) when the hub stops.
pub async fn shutdown(shared: &IkeShared, sockets: &IkeSockets) {
    let actions = {
        let mut engine = lock(&shared.engine);
        let mut pools = lock(&shared.pools);
        engine.shutdown(&mut PoolsRef(&mut pools))
    };
    apply(shared, sockets, actions).await;
}
