//! The listener on TCP 179 and what the instance makes of a connection:
//! a dynamic neighbor from a listen range (IOS `bgp listen range`, capped
//! by `bgp listen limit`), a static neighbor's knock, or a refusal
//! (`%BGP-4-REFUSED`). The decision itself is `neighbors::Neighbors`'s.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::mpsc,
};

use super::{
    SpeakerConfig,
    instance::{Accepted, Instance},
};
use crate::bgp::{
    events::{Control, Event},
    neighbors::Admission,
};

/// How long a dynamic neighbor's new connection waits for its old session
/// to end before it starts anyway.
const REPLACE_WAIT: Duration = Duration::from_secs(1);

/// Binds and listens on `config.listen`; returns the listener and the
/// address it is bound to (with the port the system chose for port 0).
pub(super) fn bind(config: &SpeakerConfig) -> anyhow::Result<(TcpListener, SocketAddrV4)> {
    let socket = TcpSocket::new_v4().context("BGP: creating the listening socket")?;
    socket
        .set_reuseaddr(true)
        .context("BGP: SO_REUSEADDR on the listening socket")?;
    socket
        .bind(SocketAddr::V4(config.listen))
        .with_context(|| format!("BGP: binding TCP {}", config.listen))?;
    // Room for every dynamic neighbor connecting at once (a hub that
    // restarts): past the backlog, SYNs are dropped and each costs the
    // spoke a 1 s retransmission. The kernel caps it at somaxconn.
    let backlog = config.bgp.listen_limit.max(1024);
    let listener = socket
        .listen(backlog)
        .with_context(|| format!("BGP: listening on TCP {}", config.listen))?;
    let bound = match listener.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        _ => config.listen,
    };
    Ok((listener, bound))
}

/// Accepts connections and hands them to the instance, until the instance
/// is gone.
pub(super) async fn accept_loop(listener: TcpListener, events: mpsc::UnboundedSender<Event>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "BGP: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let SocketAddr::V4(remote) = remote else {
            continue;
        };
        let peer = *remote.ip();
        if events.send(Event::TcpAccept { stream, peer }).is_err() {
            return;
        }
    }
}

impl Instance {
    /// A connection from `peer`: a session for it, or closed.
    pub(super) fn tcp_accept(&mut self, stream: TcpStream, peer: Ipv4Addr) {
        if self.stopping {
            return;
        }
        let has_session = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.settings.dynamic.is_some());
        match self
            .neighbors
            .admit(peer, has_session, self.dynamic_sessions)
        {
            Admission::Refuse(reason) => {
                tracing::warn!("%BGP-4-REFUSED: {reason}");
            }
            // Static neighbors are dialled; their own attempts collide with
            // ours, and RFC 4271 section 6.8 lets one side keep a single
            // connection: ours. Their knock makes us dial now.
            Admission::Accept(s) if s.dynamic.is_none() => {
                tracing::debug!(neighbor = %peer, "BGP: incoming connection from a static neighbor closed; it is dialled out");
                if let Some(p) = self.peers.get(&peer) {
                    let _ = p.control.send(Control::RetryNow);
                }
            }
            Admission::Accept(settings) => {
                // A spoke that reconnects while its old session is still
                // known replaces it: a spoke has one session to its hub.
                // The new one starts when the old one has ended.
                let next = Accepted {
                    settings,
                    stream,
                    due: Instant::now() + REPLACE_WAIT,
                };
                if let Some(old) = self.peers.get(&peer) {
                    let _ = old.control.send(Control::PathGone);
                    tracing::info!(neighbor = %peer, "BGP: new connection from a dynamic neighbor replaces its old session");
                    self.replacing.insert(peer, next);
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(REPLACE_WAIT).await;
                        let _ = events.send(Event::ReplaceDue(peer));
                    });
                } else {
                    self.start_accepted(next);
                }
            }
        }
    }

    /// A new connection waited [`REPLACE_WAIT`] for the old session of its
    /// neighbor: it starts now if it is still waiting.
    pub(super) fn replace_due(&mut self, peer: Ipv4Addr) {
        if self
            .replacing
            .get(&peer)
            .is_some_and(|r| r.due <= Instant::now())
            && let Some(next) = self.replacing.remove(&peer)
        {
            self.start_accepted(next);
        }
    }

    /// Starts the session of an accepted dynamic neighbor on its connection.
    pub(super) fn start_accepted(&mut self, next: Accepted) {
        let peer = next.settings.address;
        if let Err(e) = self.spawn_session(next.settings, Some(next.stream)) {
            tracing::error!(neighbor = %peer, error = %e, "BGP: session not started");
        }
    }
}
