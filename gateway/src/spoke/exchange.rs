//! The IKE exchanges of a tunnel this spoke dials, to its hub or to
//! another spoke: IKE_SA_INIT and IKE_AUTH with retransmissions, and the
//! DELETE when the tunnel cannot be used. Once up, the SA is the engine's
//! (`Engine::adopt`): it answers the peer, checks liveness and rekeys.

use std::{net::SocketAddrV4, time::Duration};

use tokio::sync::mpsc;

use crate::ike::{
    exchange::{Established, Initiator, Step},
    task::{IkeSockets, Inbound},
    wire::{Delete, Payload, ProtocolId},
};

/// IKE request retransmissions (RFC 7296 section 2.1): every
/// `RETRANSMIT` for `ATTEMPTS` tries.
const RETRANSMIT: Duration = Duration::from_secs(2);
const ATTEMPTS: u32 = 5;

/// Why a session ended.
pub(super) enum Ended {
    Shutdown,
    Lost(String),
}

/// Sends to the peer from where the initiator says (port 4500 once NAT-T
/// is in use, RFC 7296 section 2.23).
async fn send(sockets: &IkeSockets, endpoints: (SocketAddrV4, SocketAddrV4), packet: &[u8]) {
    let (local, remote) = endpoints;
    if let Err(e) = sockets.send(local.port(), remote, packet).await {
        tracing::debug!(%remote, error = %e, "IKE send failed");
    }
}

/// IKE_SA_INIT and IKE_AUTH, with retransmissions. `peer` names the other
/// end in errors ("the hub").
pub(super) async fn dial(
    sockets: &IkeSockets,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    initiator: &mut Initiator,
    rx: &mut mpsc::Receiver<Inbound>,
    peer: &str,
) -> Result<Established, Ended> {
    let first = initiator
        .start()
        .map_err(|e| Ended::Lost(format!("IKE_SA_INIT: {e}")))?;
    let mut request = vec![first];
    let mut endpoints = initiator.endpoints();
    loop {
        let mut answer = None;
        for _ in 0..ATTEMPTS {
            for part in &request {
                send(sockets, endpoints, part).await;
            }
            tokio::select! {
                got = tokio::time::timeout(RETRANSMIT, rx.recv()) => match got {
                    Ok(Some(inbound)) => { answer = Some(inbound); break; }
                    Ok(None) => return Err(Ended::Shutdown),
                    Err(_) => {}
                },
                _ = shutdown.changed() => return Err(Ended::Shutdown),
            }
        }
        let Some(inbound) = answer else {
            return Err(Ended::Lost(format!(
                "no answer from {peer} after {ATTEMPTS} tries"
            )));
        };
        match sockets.dial_step(initiator, &inbound.datagram) {
            Ok(Step::Send(next)) => request = vec![next],
            Ok(Step::SendAll(parts)) => request = parts,
            Ok(Step::Established(e)) => return Ok(*e),
            Err(e) => return Err(Ended::Lost(format!("{peer}'s answer: {e}"))),
        }
        endpoints = initiator.endpoints();
    }
}

/// Tells the peer the SA is gone (RFC 7296 section 1.4.1), and waits
/// briefly for its answer.
pub(super) async fn say_goodbye(
    sockets: &IkeSockets,
    initiator: &mut Initiator,
    rx: &mut mpsc::Receiver<Inbound>,
) {
    let delete = Payload::Delete(Delete {
        protocol: ProtocolId::Ike,
        spi_size: 0,
        spis: vec![],
    });
    if let Ok(request) = initiator.informational(&[delete]) {
        send(sockets, initiator.endpoints(), &request).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    }
}
