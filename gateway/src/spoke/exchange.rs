//! The IKE exchanges of a tunnel this spoke dials, to its hub or to
//! another spoke: IKE_SA_INIT and IKE_AUTH with retransmissions, liveness
//! checks and the peer's requests while up, and the DELETE on the way out.

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

/// Liveness checks (RFC 7296 section 2.4) and requests from the peer,
/// until the peer is gone, deletes us, or we stop. `answered` runs on
/// each answered check.
pub(super) async fn keep_alive(
    sockets: &IkeSockets,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    initiator: &mut Initiator,
    rx: &mut mpsc::Receiver<Inbound>,
    (dpd_interval, dpd_retry): (Duration, Duration),
    peer: &str,
    mut answered: impl FnMut(),
) -> Ended {
    let mut next_check = tokio::time::Instant::now() + dpd_interval;
    let mut outstanding: Option<(Vec<u8>, u32, tokio::time::Instant)> = None;
    let endpoints = initiator.endpoints();
    loop {
        let deadline = outstanding.as_ref().map_or(next_check, |o| o.2);
        tokio::select! {
            _ = shutdown.changed() => return Ended::Shutdown,
            () = tokio::time::sleep_until(deadline) => {
                match &mut outstanding {
                    None => match initiator.informational(&[]) {
                        Ok(request) => {
                            send(sockets, endpoints, &request).await;
                            outstanding = Some((request, 1, tokio::time::Instant::now() + dpd_retry));
                        }
                        Err(e) => return Ended::Lost(format!("liveness check: {e}")),
                    },
                    Some((request, tries, at)) => {
                        if *tries >= ATTEMPTS {
                            return Ended::Lost(format!(
                                "{peer} did not answer {ATTEMPTS} liveness checks (DPD)"
                            ));
                        }
                        send(sockets, endpoints, request).await;
                        *tries += 1;
                        *at = tokio::time::Instant::now() + dpd_retry;
                    }
                }
            }
            got = rx.recv() => {
                let Some(inbound) = got else { return Ended::Shutdown };
                if is_response(&inbound.datagram) {
                    if initiator.informational_response(&inbound.datagram).is_ok() {
                        outstanding = None;
                        next_check = tokio::time::Instant::now() + dpd_interval;
                        answered();
                    }
                    continue;
                }
                match initiator.respond(&inbound.datagram) {
                    Ok((response, payloads)) => {
                        send(sockets, endpoints, &response).await;
                        let deleted = payloads.iter().any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::Ike || d.protocol == ProtocolId::Esp));
                        if deleted {
                            return Ended::Lost(format!("{peer} deleted the session"));
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "request from {peer} not understood"),
                }
            }
        }
    }
}

/// The R flag of an IKE header (RFC 7296 section 3.1).
fn is_response(datagram: &[u8]) -> bool {
    datagram.get(19).is_some_and(|f| f & 0x20 != 0)
}
