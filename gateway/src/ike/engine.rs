//! The responder (RFC 7296): datagrams, time and events in; datagrams to
//! send and session events out. No sockets, no clocks, no files, no
//! randomness of its own: the socket task (`ike::task`) owns those and
//! passes the time and an RNG in, and tests drive the engine directly.
//!
//! The engine is the dispatcher: the SA table (one `IkeSa` per spoke, keyed
//! by our responder SPI), the routing of each datagram to its SA and
//! exchange (`ike::exchange`), the message-ID window of 1 (section 2.3: a
//! retransmitted request gets the cached response, bytes for bytes), the
//! timers, and the end of an SA.

use std::{
    collections::HashMap,
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use crate::{
    ike::{
        exchange::{
            Answer, Received, create_child_sa, fragments, ike_auth, ike_sa_init,
            informational::{self, DPD_TRIES, Liveness},
        },
        policy::Policy,
        sa::{Action, AddressPools, ChildSpis, Dropped, IkeSa, SaState, notify},
        show,
        wire::{self, ExchangeType, Message, NotifyType, Payload},
    },
    ipsec::Rng,
};

use gateway_report::ike::SaReport;

/// Half-open SAs (IKE_SA_INIT answered, no IKE_AUTH yet) are dropped after this.
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Engine {
    policy: Policy,
    sas: HashMap<u64, IkeSa>,
    /// (peer, SPIi) -> our SPI: recognises a retransmitted IKE_SA_INIT.
    by_initiator: HashMap<(SocketAddrV4, u64), u64>,
    rng: Box<dyn Rng + Send>,
    next_tunnel_id: u32,
    /// Inbound CHILD_SA SPIs in use: a new one must not collide.
    child_spis: ChildSpis,
    /// Pretend the peer is behind NAT so ESP goes in UDP 4500 (see
    /// `with_forced_encapsulation`).
    forced_encapsulation: bool,
}

impl Engine {
    pub fn new(policy: Policy, rng: Box<dyn Rng + Send>) -> Self {
        Engine {
            policy,
            sas: HashMap::new(),
            by_initiator: HashMap::new(),
            rng,
            next_tunnel_id: 1,
            child_spis: ChildSpis::default(),
            forced_encapsulation: false,
        }
    }

    /// Forces UDP encapsulation of ESP (RFC 3948, port 4500) even when no
    /// NAT is between the hub and a peer, as strongSwan's `encap = yes`
    /// does: the IKE_SA_INIT response carries a NAT_DETECTION_SOURCE_IP
    /// that matches no address, so the peer believes the hub is behind NAT
    /// and floats to 4500 (RFC 7296 section 2.23), and the hub marks the SA
    /// as NATed. For a datapath that carries ESP only inside UDP. Applies to
    /// peers that do NAT-T (that sent NAT_DETECTION notifies); off by
    /// default.
    #[must_use]
    pub fn with_forced_encapsulation(mut self, on: bool) -> Self {
        self.forced_encapsulation = on;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Handles one IKE message (without the non-ESP marker) that arrived on
    /// `local` from `remote`.
    pub fn handle(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        datagram: &[u8],
        pools: &mut dyn AddressPools,
    ) -> Result<Vec<Action>, Dropped> {
        let message = Message::parse(datagram).map_err(|_| Dropped::Malformed)?;
        let received = Received {
            now,
            local,
            remote,
            datagram,
            message: &message,
        };
        if message.header.flags.response {
            // The only requests the hub sends are liveness checks.
            let sa = self.sa_of(&message)?;
            return informational::probe_answered(sa, &message, datagram, now);
        }
        match message.header.exchange {
            ExchangeType::IkeSaInit => Ok(self.sa_init(&received)),
            _ => self.protected(&received, pools),
        }
    }

    /// Expires half-open SAs, and runs dead peer detection.
    pub fn tick(&mut self, now: Instant, pools: &mut dyn AddressPools) -> Vec<Action> {
        let expired: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, sa)| {
                sa.state == SaState::HalfOpen && now.duration_since(sa.created) > HALF_OPEN_TIMEOUT
            })
            .map(|(spi, _)| *spi)
            .collect();
        for spi in &expired {
            if let Some(sa) = self.sas.remove(spi) {
                self.by_initiator.remove(&(sa.remote, sa.keymat.spi_i));
                tracing::debug!(peer = %sa.remote, "half-open IKE SA expired without IKE_AUTH");
            }
        }
        self.dead_peer_detection(now, pools)
    }

    /// Liveness checks for the SAs that need one (`informational::liveness`);
    /// the SAs of peers that never answered go.
    fn dead_peer_detection(&mut self, now: Instant, pools: &mut dyn AddressPools) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut dead = Vec::new();
        for (spi, sa) in &mut self.sas {
            match informational::liveness(sa, &mut *self.rng, now) {
                Liveness::Send(packet) => actions.push(Action::Send {
                    local: sa.local,
                    remote: sa.remote,
                    packet,
                }),
                Liveness::Dead => dead.push(*spi),
                Liveness::Quiet => {}
            }
        }
        for spi in dead {
            if let Some(sa) = self.sas.remove(&spi) {
                tracing::info!(peer = %sa.remote, tries = DPD_TRIES, "DPD: the peer did not answer; deleting its SA");
                actions.extend(self.teardown(&sa, "DPD: peer not responding", pools));
            }
        }
        actions
    }

    /// The datapath saw ESP from the peer of IKE SA `spi_r`: it is alive,
    /// no liveness check is needed (IOS `on-demand`, strongSwan `dpd_delay`).
    pub fn note_alive(&mut self, spi_r: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi_r) {
            sa.last_heard = now;
        }
    }

    /// The datapath saw us send ESP to the peer of IKE SA `spi_r` (for
    /// `on-demand` dead peer detection).
    pub fn note_sending(&mut self, spi_r: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi_r) {
            sa.last_sent = Some(now);
        }
    }

    /// Rows for `show crypto ikev2 sa` and `show crypto session`.
    pub fn report(&self, now: Instant) -> Vec<SaReport> {
        show::rows(self.sas.values(), &self.policy, now)
    }

    /// Tears down every SA (hub shutting down): DELETE to each peer.
    pub fn shutdown(&mut self, pools: &mut dyn AddressPools) -> Vec<Action> {
        let spis: Vec<u64> = self.sas.keys().copied().collect();
        let mut actions = Vec::new();
        for spi in spis {
            actions.extend(self.delete(spi, "hub shutting down", pools));
        }
        actions
    }

    /// Deletes one IKE SA (ours as responder, `spi_r`) with its CHILD_SAs:
    /// a DELETE to the peer (RFC 7296 section 1.4.1), sent once without
    /// waiting for the answer, and the local teardown. Used when the SA is
    /// no longer wanted (an idle NHRP shortcut, `clear ip nhrp`).
    pub fn delete(
        &mut self,
        spi_r: u64,
        reason: &str,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        let Some(mut sa) = self.sas.remove(&spi_r) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if sa.state == SaState::Ready {
            let packet = informational::delete_request(&mut sa, &mut *self.rng);
            actions.push(Action::Send {
                local: sa.local,
                remote: sa.remote,
                packet,
            });
        }
        actions.extend(self.teardown(&sa, reason, pools));
        actions
    }

    /// The SA a message names by its SPIs (ours is the responder's).
    fn sa_of(&mut self, message: &Message) -> Result<&mut IkeSa, Dropped> {
        let header = &message.header;
        self.sas
            .get_mut(&header.spi_r)
            .filter(|sa| sa.keymat.spi_i == header.spi_i)
            .ok_or(Dropped::UnknownSpi)
    }

    /// IKE_SA_INIT: the cached answer to a retransmission, or a new
    /// half-open SA (`ike_sa_init::respond`).
    fn sa_init(&mut self, received: &Received<'_>) -> Vec<Action> {
        let header = &received.message.header;
        if header.message_id != 0 || header.spi_r != 0 {
            return vec![];
        }
        let (local, remote) = (received.local, received.remote);
        // A retransmission: the same answer again.
        if let Some(sa) = self
            .by_initiator
            .get(&(remote, header.spi_i))
            .and_then(|spi| self.sas.get(spi))
        {
            if sa.init_request == received.datagram {
                return vec![Action::Send {
                    local,
                    remote,
                    packet: sa.init_response.clone(),
                }];
            }
            return vec![];
        }
        let sas = &self.sas;
        match ike_sa_init::respond(
            &mut *self.rng,
            &self.policy,
            self.forced_encapsulation,
            |spi| sas.contains_key(&spi),
            self.next_tunnel_id,
            received,
        ) {
            Ok((sa, actions)) => {
                self.next_tunnel_id = self.next_tunnel_id.wrapping_add(1).max(1);
                self.by_initiator
                    .insert((remote, header.spi_i), sa.keymat.spi_r);
                self.sas.insert(sa.keymat.spi_r, sa);
                actions
            }
            Err(refused) => refused,
        }
    }

    /// The exchanges protected by SK: the window, decryption (and
    /// reassembly), then the exchange the request belongs to.
    fn protected(
        &mut self,
        received: &Received<'_>,
        pools: &mut dyn AddressPools,
    ) -> Result<Vec<Action>, Dropped> {
        let (message, local, remote) = (received.message, received.local, received.remote);
        let header = &message.header;
        let sa = self.sa_of(message)?;
        // Window of one: the next request, or the last one again.
        if let Some((id, packet)) = &sa.last_response
            && header.message_id == *id
        {
            if !fragments::answers_retransmission(message) {
                return Ok(Vec::new());
            }
            return Ok(vec![Action::Send {
                local,
                remote,
                packet: packet.clone(),
            }]);
        }
        let expected = sa.last_response.as_ref().map_or(1, |(id, _)| id + 1);
        if header.message_id != expected {
            return Err(Dropped::BadMessageId);
        }
        let Some((first_inner, plaintext)) =
            fragments::open_request(sa, message, received.datagram)?
        else {
            // A fragment: the rest of the message is still to come.
            return Ok(Vec::new());
        };
        let inner =
            wire::parse_payloads(first_inner, &plaintext).map_err(|_| Dropped::Malformed)?;
        sa.last_heard = received.now;
        // The peer may float to 4500 (RFC 7296 section 2.23).
        sa.local = local;
        sa.remote = remote;
        let answer = self.exchange(received, &inner, pools)?;
        let id = header.message_id;
        let sa = self.sas.get_mut(&header.spi_r).expect("checked above");
        let packet = sa
            .keymat
            .seal(&mut *self.rng, header.exchange, id, true, &answer.payloads);
        sa.last_response = Some((id, packet.clone()));
        let mut actions = answer.actions;
        actions.insert(
            0,
            Action::Send {
                local,
                remote,
                packet,
            },
        );
        if answer.end_sa
            && let Some(sa) = self.sas.remove(&header.spi_r)
        {
            let reason = if header.exchange == ExchangeType::IkeAuth {
                "IKE_AUTH failed"
            } else {
                "deleted by peer"
            };
            actions.extend(self.teardown(&sa, reason, pools));
        }
        Ok(actions)
    }

    /// Routes a decrypted request to its exchange's responder half.
    fn exchange(
        &mut self,
        received: &Received<'_>,
        inner: &[Payload],
        pools: &mut dyn AddressPools,
    ) -> Result<Answer, Dropped> {
        let header = &received.message.header;
        let sa = self.sas.get_mut(&header.spi_r).ok_or(Dropped::UnknownSpi)?;
        // RFC 7296 section 2.5: an unknown payload marked critical rejects
        // the whole request (and an IKE_AUTH with it, the SA).
        let critical = inner.iter().find_map(|p| match p {
            Payload::Unknown {
                kind,
                critical: true,
                ..
            } => Some(*kind),
            _ => None,
        });
        Ok(match (header.exchange, sa.state, critical) {
            (_, state, Some(kind)) => Answer {
                payloads: vec![notify(NotifyType::UnsupportedCriticalPayload, vec![kind])],
                actions: vec![Action::Refused {
                    peer: received.remote,
                    reason: format!("unsupported critical payload {kind}"),
                }],
                end_sa: state == SaState::HalfOpen,
            },
            (ExchangeType::IkeAuth, SaState::HalfOpen, None) => ike_auth::respond(
                sa,
                &self.policy,
                &mut *self.rng,
                &mut self.child_spis,
                pools,
                received.now,
                inner,
            ),
            (ExchangeType::Informational, SaState::Ready, None) => {
                informational::respond(sa, &mut self.child_spis, inner)
            }
            (ExchangeType::CreateChildSa, SaState::Ready, None) => create_child_sa::respond(),
            _ => return Err(Dropped::BadMessageId),
        })
    }

    /// Removes an SA's children, releases its address, reports it down.
    fn teardown(&mut self, sa: &IkeSa, reason: &str, pools: &mut dyn AddressPools) -> Vec<Action> {
        self.by_initiator.remove(&(sa.remote, sa.keymat.spi_i));
        for child in &sa.children {
            self.child_spis.release(child.params.spi_in);
        }
        // The reverse of the setup (SessionUp, then each ChildUp): the
        // children go first, last one first, then the session.
        let mut actions: Vec<Action> = sa
            .children
            .iter()
            .rev()
            .map(|c| Action::ChildDown {
                ike_spi: sa.keymat.spi_r,
                spi_in: c.params.spi_in,
                spi_out: c.params.spi_out,
            })
            .collect();
        if let Some((pool, address)) = &sa.lease {
            pools.release(pool, *address);
        }
        if sa.state == SaState::Ready {
            actions.push(Action::SessionDown {
                tunnel_id: sa.tunnel_id,
                peer: sa.remote,
                identity: sa.identity.as_ref().map(ToString::to_string),
                reason: reason.to_owned(),
            });
        }
        actions
    }
}
