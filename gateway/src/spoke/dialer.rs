//! Tunnels this spoke dials to other spokes for NHRP shortcuts (IOS `ip
//! nhrp shortcut virtual-template N`): the spoke that owns a destination
//! opens an IKEv2 session to the requester and answers over it.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, PoisonError},
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use super::{
    exchange::{Ended, dial, say_goodbye},
    hub::{SpokeTunnel, keys_for},
};
use crate::{
    iface::VaId,
    ike::{
        exchange::{Initiator, InitiatorConfig},
        policy::{KeyringEntry, Policy},
        task::{IkeShared, IkeSockets},
    },
    ipsec::SystemRng,
    net::IKE_PORT,
    session::Sessions,
};

/// The IKE tunnel ids of dialled shortcuts (`InitiatorConfig::tunnel_id`,
/// copied into `ChildSaParams::tunnel_id`). `Sessions` keys every tunnel it
/// holds by that id, and the responder engine numbers the sessions it
/// accepts from 1 up; dialled shortcuts count from `0x4000_0001` instead,
/// so the two sets do not meet. Only the dialer hands them out.
#[derive(Clone, Copy, Debug)]
struct TunnelIds {
    last: u32,
}

impl TunnelIds {
    const BASE: u32 = 0x4000_0000;

    const fn new() -> Self {
        Self { last: Self::BASE }
    }

    /// `BASE + 1` first; past `u32::MAX` it starts over at `BASE`.
    fn next(&mut self) -> u32 {
        self.last = self.last.wrapping_add(1).max(Self::BASE);
        self.last
    }
}

/// Dials other spokes for NHRP shortcuts (IOS `ip nhrp shortcut
/// virtual-template N`): the profile of the tunnel to the hub, its
/// keyring entry for the peer, its virtual template, no address request.
#[derive(Clone, Debug)]
pub struct ShortcutDialer {
    base: InitiatorConfig,
    keyring: Vec<KeyringEntry>,
    dpd: (Duration, Duration),
    ids: TunnelIds,
}

/// What happened to a dialled shortcut tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShortcutEvent {
    Up {
        nbma: Ipv4Addr,
        va: VaId,
    },
    Failed {
        nbma: Ipv4Addr,
        reason: String,
    },
    Down {
        nbma: Ipv4Addr,
        va: VaId,
        reason: String,
    },
}

impl ShortcutDialer {
    /// From the spoke tunnel whose interface has `nhrp_shortcut`.
    pub fn new(tunnel: &SpokeTunnel, policy: &Policy) -> Option<Self> {
        let profile = policy
            .profiles
            .iter()
            .find(|p| p.name == tunnel.initiator.profile)?;
        profile.virtual_template?;
        let mut base = tunnel.initiator.clone();
        base.request_address = false;
        base.route_set = Vec::new();
        base.virtual_template = profile.virtual_template;
        Some(Self {
            base,
            keyring: profile.keyring.clone(),
            dpd: (tunnel.dpd_interval, tunnel.dpd_retry),
            ids: TunnelIds::new(),
        })
    }

    fn config_for(&self, nbma: Ipv4Addr, tunnel_id: u32) -> Result<InitiatorConfig, String> {
        let (psk_local, psk_remote) = keys_for(&self.keyring, nbma)?;
        Ok(InitiatorConfig {
            remote: SocketAddrV4::new(nbma, IKE_PORT),
            psk_local,
            psk_remote,
            tunnel_id,
            ..self.base.clone()
        })
    }

    /// Dials `nbma` once, under a tunnel id of its own, and keeps the
    /// tunnel until `stop` or the peer ends it; its virtual-access comes
    /// from `Sessions` like an accepted one. `report` hears Up, then Down
    /// (or Failed). The future is the dial's task.
    pub fn dial(
        &mut self,
        nbma: Ipv4Addr,
        ike: Arc<IkeShared<Sessions>>,
        sockets: Arc<IkeSockets>,
        stop: watch::Receiver<bool>,
        report: mpsc::UnboundedSender<ShortcutEvent>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let tunnel_id = self.ids.next();
        self.clone()
            .run(nbma, tunnel_id, ike, sockets, stop, report)
    }

    async fn run(
        self,
        nbma: Ipv4Addr,
        tunnel_id: u32,
        ike: Arc<IkeShared<Sessions>>,
        sockets: Arc<IkeSockets>,
        mut stop: watch::Receiver<bool>,
        report: mpsc::UnboundedSender<ShortcutEvent>,
    ) {
        let failed = |reason: String| ShortcutEvent::Failed { nbma, reason };
        let config = match self.config_for(nbma, tunnel_id) {
            Ok(c) => c,
            Err(e) => {
                let _ = report.send(failed(e));
                return;
            }
        };
        let peer = format!("spoke {nbma}");
        let mut initiator = Initiator::new(config, Box::new(SystemRng));
        let (tx, mut rx) = mpsc::channel(64);
        let spi_i = initiator.spi_i();
        ike.register_initiator(spi_i, tx);
        let established = match dial(&sockets, &mut stop, &mut initiator, &mut rx, &peer).await {
            Ok(e) => e,
            Err(ended) => {
                ike.unregister_initiator(spi_i);
                let reason = match ended {
                    Ended::Shutdown => "stopped".to_owned(),
                    Ended::Lost(r) => r,
                };
                let _ = report.send(failed(reason));
                return;
            }
        };
        let Some(child) = established.child.as_ref() else {
            ike.unregister_initiator(spi_i);
            let _ = report.send(failed("the peer created no CHILD_SA".into()));
            return;
        };
        let Some(sessions) = ike.sessions.as_ref() else {
            ike.unregister_initiator(spi_i);
            let _ = report.send(failed("no datapath".into()));
            return;
        };
        let up = sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .child_up_initiated(child);
        let va = match up {
            Ok(va) => va,
            Err(e) => {
                say_goodbye(&sockets, &mut initiator, &mut rx).await;
                ike.unregister_initiator(spi_i);
                let _ = report.send(failed(format!("the datapath refused the tunnel: {e}")));
                return;
            }
        };
        ike.allow_spi(child.spi_in);
        tracing::info!(
            "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is UP. Peer {nbma}:{} Id: {} Interface: {va} (NHRP shortcut)",
            initiator.endpoints().1.port(),
            established.peer_identity,
        );
        let _ = report.send(ShortcutEvent::Up { nbma, va });
        // The engine answers the peer's requests, checks liveness and
        // rekeys from here; we wait for the session to end, or stop.
        let (tx, mut ended) = tokio::sync::oneshot::channel();
        ike.watch_session(tunnel_id, tx);
        let ike_spi = {
            let mut engine = ike.engine.lock().unwrap_or_else(PoisonError::into_inner);
            let now = std::time::Instant::now();
            initiator
                .take_sa(&established, Some(self.dpd), now)
                .map(|sa| {
                    let spi = sa.keymat.our_spi();
                    engine.adopt(sa, now);
                    spi
                })
        };
        ike.unregister_initiator(spi_i);
        let reason = tokio::select! {
            reason = &mut ended => reason.unwrap_or_else(|_| "the IKE task stopped".into()),
            _ = stop.changed() => {
                if let Some(spi) = ike_spi {
                    crate::ike::task::delete_session(&ike, &sockets, spi, "closed").await;
                }
                "closed".to_owned()
            }
        };
        // The session's end took its interface (`Sessions::session_down`).
        tracing::info!(
            "%CRYPTO-5-SESSION_STATUS: Crypto tunnel is DOWN. Peer {nbma} Interface: {va} Reason: {reason}"
        );
        let _ = report.send(ShortcutEvent::Down { nbma, va, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::TunnelIds;

    #[test]
    fn shortcut_tunnel_ids_stay_clear_of_the_responders() {
        let mut ids = TunnelIds::new();
        assert_eq!(ids.next(), 0x4000_0001);
        assert_eq!(ids.next(), 0x4000_0002);
        let mut ids = TunnelIds { last: u32::MAX - 1 };
        assert_eq!(ids.next(), u32::MAX);
        assert_eq!(ids.next(), TunnelIds::BASE, "round, never below the base");
    }
}
