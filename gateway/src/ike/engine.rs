//! The IKE SAs of this gateway (RFC 7296): datagrams, time and events in;
//! datagrams to send and session events out. No sockets, no clocks, no
//! files, no randomness of its own: the socket task (`ike::task`) owns
//! those and passes the time and an RNG in, and tests drive the engine
//! directly.
//!
//! The engine is the dispatcher: the SA table (one `IkeSa` per peer, keyed
//! by our SPI: SAs it answered, SAs a spoke dialled and handed over with
//! [`Engine::adopt`], and the SAs rekeys made), the routing of each
//! datagram to its SA and exchange (`ike::exchange`), the message-ID window
//! of 1 in both directions (section 2.3: a retransmitted request gets the
//! cached response, bytes for bytes; our own requests go one at a time and
//! are resent until answered), the timers, and the end of an SA. What our
//! requests are and what their answers do is `engine::requests`.

use std::{
    collections::HashMap,
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use gateway_report::ike::SaReport;

use crate::{
    config::Identity,
    ike::{
        exchange::{
            self, Answer, Received, create_child_sa, fragments, ike_auth, ike_sa_init,
            informational,
        },
        job::{AuthJob, Job, Work},
        lifetime,
        policy::Policy,
        sa::{Action, AddressPools, ChildSpis, Dropped, IkeSa, SaState, notify},
        show,
        wire::{self, ExchangeType, Header, Message, NotifyType, Payload},
    },
    ipsec::Rng,
};

mod compute;
mod requests;

/// Half-open SAs (IKE_SA_INIT answered, no IKE_AUTH yet) are dropped after
/// this, and so are requests whose keys are still being computed.
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A request on an SA, as the end of its answer needs it.
struct Asked {
    local: SocketAddrV4,
    remote: SocketAddrV4,
    exchange: ExchangeType,
    message_id: u32,
    /// The SA was half-open: an answer that establishes it is IKE_AUTH's.
    half_open: bool,
    /// The peer has no other SA with us (RFC 7296 section 3.16).
    initial_contact: bool,
}

impl Asked {
    fn of(received: &Received<'_>, inner: &[Payload], half_open: bool) -> Self {
        let header = &received.message.header;
        Asked {
            local: received.local,
            remote: received.remote,
            exchange: header.exchange,
            message_id: header.message_id,
            half_open,
            initial_contact: inner
                .iter()
                .any(|p| matches!(p, Payload::Notify(n) if n.kind == NotifyType::InitialContact)),
        }
    }
}

/// What a responder half made of a request: the answer, or (IKE_AUTH) a
/// job to run before it can answer.
enum Exchanged {
    Answer(Answer),
    Verify(Box<(ike_auth::Identified, AuthJob)>),
}

pub struct Engine {
    pub(crate) policy: Policy,
    pub(crate) sas: HashMap<u64, IkeSa>,
    /// (peer, SPIi) -> our SPI: recognises a retransmitted IKE_SA_INIT.
    by_initiator: HashMap<(SocketAddrV4, u64), u64>,
    /// Identity -> our SPIs of its SAs, so that a new SA finds the older
    /// ones it replaces without a scan of the table: every SA with an
    /// identity goes in with `insert_new` and out with its teardown.
    pub(crate) by_identity: HashMap<Identity, Vec<u64>>,
    pub(crate) rng: Box<dyn Rng + Send>,
    next_tunnel_id: u32,
    /// Inbound CHILD_SA SPIs in use: a new one must not collide.
    pub(crate) child_spis: ChildSpis,
    /// Pretend the peer is behind NAT so ESP goes in UDP 4500 (see
    /// `with_forced_encapsulation`).
    forced_encapsulation: bool,
    /// How often an SA behind a NAT sends a keepalive (`with_nat_keepalive`).
    pub(crate) nat_keepalive: Option<Duration>,
    /// Jobs go out as `Action::Compute` rather than run here (`set_offload`).
    offload: bool,
    /// Accepted IKE_SA_INITs whose keys are being computed, by our SPI.
    computing_init: HashMap<u64, ike_sa_init::Accepted>,
    /// IKE_AUTHs whose AUTH is being checked, by our SPI.
    computing_auth: HashMap<u64, compute::Verifying>,
}

/// Our SPI in a message's header: the responder's if the sender is the
/// SA's original initiator (the I flag, RFC 7296 section 3.1), else the
/// initiator's.
fn our_spi(header: &Header) -> u64 {
    if header.flags.initiator {
        header.spi_r
    } else {
        header.spi_i
    }
}

impl Engine {
    pub fn new(policy: Policy, rng: Box<dyn Rng + Send>) -> Self {
        Engine {
            policy,
            sas: HashMap::new(),
            by_initiator: HashMap::new(),
            by_identity: HashMap::new(),
            rng,
            next_tunnel_id: 1,
            child_spis: ChildSpis::default(),
            forced_encapsulation: false,
            nat_keepalive: None,
            offload: false,
            computing_init: HashMap::new(),
            computing_auth: HashMap::new(),
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

    /// IOS `crypto ikev2 nat keepalive SECONDS`: on each IKE SA where we
    /// are the side behind a NAT, a keepalive every `every` so that the
    /// NAT keeps the mapping that the peer's ESP and IKE come back through
    /// (RFC 3948 section 2.3, RFC 7296 section 2.23). `None`: never.
    #[must_use]
    pub fn with_nat_keepalive(mut self, every: Option<Duration>) -> Self {
        self.nat_keepalive = every;
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
            return requests::answered(self, &received, pools);
        }
        match message.header.exchange {
            ExchangeType::IkeSaInit => Ok(self.sa_init(&received, pools)),
            _ => self.protected(&received, pools),
        }
    }

    /// Expires half-open SAs; resends our unanswered requests (the SAs of
    /// peers that never answer go); starts what is due: DELETEs, rekeys,
    /// liveness checks.
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
            self.computing_auth.remove(spi);
            if let Some(sa) = self.sas.remove(spi) {
                self.by_initiator.remove(&(sa.remote, sa.keymat.spi_i));
                tracing::debug!(peer = %sa.remote, "half-open IKE SA expired without IKE_AUTH");
            }
        }
        self.expire_computing(now, HALF_OPEN_TIMEOUT);
        requests::tick(self, now, pools)
    }

    /// The datapath saw ESP from the peer of IKE SA `spi` (ours): it is
    /// alive, no liveness check is needed (IOS `on-demand`, strongSwan
    /// `dpd_delay`).
    pub fn note_alive(&mut self, spi: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi) {
            sa.last_heard = now;
        }
    }

    /// The datapath saw us send ESP to the peer of IKE SA `spi` (for
    /// `on-demand` dead peer detection).
    pub fn note_sending(&mut self, spi: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi) {
            sa.last_sent = Some(now);
        }
    }

    /// Rows for `show crypto ikev2 sa` and `show crypto session`.
    pub fn report(&self, now: Instant) -> Vec<SaReport> {
        show::rows(self.sas.values(), &self.policy, now)
    }

    /// Whether an IKE SA with our SPI `spi` is in the table.
    pub fn has_sa(&self, spi: u64) -> bool {
        self.sas.contains_key(&spi)
    }

    /// Our SPI of the live (not rekeyed) IKE SA of `tunnel_id`, if any.
    pub fn sa_of_tunnel(&self, tunnel_id: u32) -> Option<u64> {
        self.sas
            .iter()
            .find(|(_, sa)| sa.tunnel_id == tunnel_id && sa.state == SaState::Ready)
            .map(|(spi, _)| *spi)
    }

    /// Tears down every SA (the gateway stopping): DELETE to each peer.
    pub fn shutdown(&mut self, pools: &mut dyn AddressPools) -> Vec<Action> {
        let spis: Vec<u64> = self.sas.keys().copied().collect();
        let mut actions = Vec::new();
        for spi in spis {
            actions.extend(self.delete(spi, "hub shutting down", pools));
        }
        actions
    }

    /// Deletes one IKE SA (ours: `spi`) with its CHILD_SAs: a DELETE to the
    /// peer (RFC 7296 section 1.4.1), sent once without waiting for the
    /// answer, and the local teardown. Used when the SA is no longer wanted
    /// (an idle NHRP shortcut, `clear ip nhrp`, a newer SA of the same
    /// peer).
    pub fn delete(&mut self, spi: u64, reason: &str, pools: &mut dyn AddressPools) -> Vec<Action> {
        let Some(mut sa) = self.sas.remove(&spi) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if matches!(sa.state, SaState::Ready | SaState::Rekeyed) {
            let heard = sa.last_heard;
            let packet = informational::delete_ike(&mut sa, &mut *self.rng, heard);
            actions.push(Action::Send {
                local: sa.local,
                remote: sa.remote,
                packet,
            });
        }
        actions.extend(self.teardown(&sa, reason, pools));
        actions
    }

    /// A new SA with an identity (established, adopted, or made by a rekey)
    /// into the table, and into the identity index.
    pub(crate) fn insert_new(&mut self, sa: IkeSa) {
        self.index_identity(&sa);
        self.sas.insert(sa.keymat.our_spi(), sa);
    }

    fn index_identity(&mut self, sa: &IkeSa) {
        if let Some(identity) = &sa.identity {
            let spis = self.by_identity.entry(identity.clone()).or_default();
            let spi = sa.keymat.our_spi();
            if !spis.contains(&spi) {
                spis.push(spi);
            }
        }
    }

    /// The SA a message names by its SPIs.
    pub(crate) fn sa_of(&mut self, header: &Header) -> Result<&mut IkeSa, Dropped> {
        self.sas
            .get_mut(&our_spi(header))
            .filter(|sa| sa.keymat.spi_i == header.spi_i && sa.keymat.spi_r == header.spi_r)
            .ok_or(Dropped::UnknownSpi)
    }

    /// IKE_SA_INIT: the cached answer to a retransmission, or a new
    /// half-open SA (`ike_sa_init::accept`, its job, `respond`).
    fn sa_init(&mut self, received: &Received<'_>, pools: &mut dyn AddressPools) -> Vec<Action> {
        let header = &received.message.header;
        if header.message_id != 0 || header.spi_r != 0 {
            return vec![];
        }
        let (local, remote) = (received.local, received.remote);
        if let Some(spi) = self.by_initiator.get(&(remote, header.spi_i)) {
            // A retransmission: the same answer again.
            if let Some(sa) = self.sas.get(spi) {
                if sa.init_request == received.datagram {
                    return vec![Action::Send {
                        local,
                        remote,
                        packet: sa.init_response.clone(),
                    }];
                }
                return vec![];
            }
            // None yet while its keys are computed: one computation per
            // request (RFC 7296 section 2.1).
            if self.computing_init.contains_key(spi) {
                return vec![];
            }
        }
        let (sas, computing) = (&self.sas, &self.computing_init);
        let taken = |spi| sas.contains_key(&spi) || computing.contains_key(&spi);
        match ike_sa_init::accept(
            &mut *self.rng,
            &self.policy,
            self.forced_encapsulation,
            taken,
            received,
        ) {
            Ok((accepted, job)) => {
                let spi_r = accepted.spi_r;
                self.by_initiator.insert((remote, header.spi_i), spi_r);
                self.computing_init.insert(spi_r, accepted);
                self.dispatch(Job(Box::new(Work::Init(job))), received.now, pools)
            }
            Err(refused) => refused,
        }
    }

    /// The peer's requests protected by SK: the window, decryption (and
    /// reassembly), then the exchange the request belongs to.
    fn protected(
        &mut self,
        received: &Received<'_>,
        pools: &mut dyn AddressPools,
    ) -> Result<Vec<Action>, Dropped> {
        let (message, local, remote) = (received.message, received.local, received.remote);
        let header = &message.header;
        let spi = our_spi(header);
        if self.computing_auth.contains_key(&spi) {
            // Its IKE_AUTH is being verified: a retransmission does not
            // start a second computation (RFC 7296 section 2.1).
            return Ok(Vec::new());
        }
        let sa = self.sa_of(header)?;
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
        if header.message_id != sa.next_peer_id {
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
        let mut actions = requests::heard_from(sa, received);
        let mut sa = self.sas.remove(&spi).expect("found above");
        let asked = Asked::of(received, &inner, sa.state == SaState::HalfOpen);
        match self.exchange(&mut sa, received, &inner) {
            Exchanged::Answer(answer) => {
                actions.extend(self.answer(spi, sa, &asked, answer, received.now, pools));
            }
            Exchanged::Verify(verify) => {
                let (identified, job) = *verify;
                self.sas.insert(spi, sa);
                let verifying = compute::Verifying {
                    asked,
                    inner,
                    identified,
                };
                self.computing_auth.insert(spi, verifying);
                actions.extend(self.dispatch(Job(Box::new(Work::Auth(job))), received.now, pools));
            }
        }
        Ok(actions)
    }

    /// Seals, caches and sends the answer to the request `asked` on SA
    /// `spi` (taken out of the table), and does what the answer says.
    fn answer(
        &mut self,
        spi: u64,
        mut sa: IkeSa,
        asked: &Asked,
        answer: Answer,
        now: Instant,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if asked.half_open && sa.state == SaState::Ready {
            actions.extend(self.replace_older(&sa, asked.initial_contact, pools));
            self.index_identity(&sa);
            let rekey = lifetime::rekey_of(&self.policy, &sa);
            lifetime::schedule_ike_rekey(&mut sa, &rekey, &mut *self.rng, now);
        }
        let id = asked.message_id;
        let packet = sa
            .keymat
            .seal(&mut *self.rng, asked.exchange, id, true, &answer.payloads);
        sa.last_response = Some((id, packet.clone()));
        sa.next_peer_id = id.wrapping_add(1);
        actions.push(Action::Send {
            local: asked.local,
            remote: asked.remote,
            packet,
        });
        actions.extend(answer.actions);
        if let Some(new) = answer.new_sa {
            self.insert_new(*new);
        }
        if answer.end_sa {
            let reason = if asked.exchange == ExchangeType::IkeAuth {
                "IKE_AUTH failed"
            } else {
                "deleted by peer"
            };
            actions.extend(self.teardown(&sa, reason, pools));
        } else {
            self.sas.insert(spi, sa);
            actions.extend(requests::kick(self, spi, now));
        }
        actions
    }

    /// Routes a decrypted request to its exchange's responder half.
    fn exchange(
        &mut self,
        sa: &mut IkeSa,
        received: &Received<'_>,
        inner: &[Payload],
    ) -> Exchanged {
        let header = &received.message.header;
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
        let answer = match (header.exchange, sa.state, critical) {
            (_, state, Some(kind)) => Answer {
                payloads: vec![notify(NotifyType::UnsupportedCriticalPayload, vec![kind])],
                actions: vec![Action::Refused {
                    peer: received.remote,
                    reason: format!("unsupported critical payload {kind}"),
                }],
                end_sa: state == SaState::HalfOpen,
                ..Answer::default()
            },
            (ExchangeType::IkeAuth, SaState::HalfOpen, None) => {
                match ike_auth::accept(sa, &self.policy, inner) {
                    Ok(verify) => return Exchanged::Verify(Box::new(verify)),
                    Err(refused) => refused,
                }
            }
            (ExchangeType::Informational, SaState::Ready | SaState::Rekeyed, None) => {
                informational::respond(sa, &mut self.child_spis, inner, received.now)
            }
            (ExchangeType::CreateChildSa, SaState::Ready | SaState::Rekeyed, None) => {
                let sas = &self.sas;
                let taken = |spi: u64| sas.contains_key(&spi);
                let mut ctx = exchange::Context {
                    policy: &self.policy,
                    rng: &mut *self.rng,
                    child_spis: &mut self.child_spis,
                    now: received.now,
                };
                create_child_sa::respond(sa, &mut ctx, &taken, inner)
            }
            _ => Answer {
                payloads: vec![notify(NotifyType::InvalidSyntax, vec![])],
                ..Answer::default()
            },
        };
        Exchanged::Answer(answer)
    }

    /// One IKE SA per identity (strongSwan `uniqueids = yes`, what an IOS
    /// hub does): the identity's older SAs go, with their sessions, before
    /// `new`'s is installed. With INITIAL_CONTACT (RFC 7296 section 3.16:
    /// the peer has no other SA with us, it rebooted) they go without a
    /// DELETE; without, the peer is told. An address both hold stays leased.
    fn replace_older(
        &mut self,
        new: &IkeSa,
        initial_contact: bool,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        let Some(identity) = &new.identity else {
            return Vec::new();
        };
        let older: Vec<u64> = self
            .by_identity
            .get(identity)
            .into_iter()
            .flatten()
            .copied()
            .filter(|spi| {
                self.sas.get(spi).is_some_and(|sa| {
                    sa.identity.as_ref() == Some(identity)
                        && sa.tunnel_id != new.tunnel_id
                        && sa.state != SaState::HalfOpen
                })
            })
            .collect();
        let mut actions = Vec::new();
        for spi in older {
            let Some(sa) = self.sas.get_mut(&spi) else {
                continue;
            };
            if sa.lease == new.lease {
                sa.lease = None;
            }
            tracing::info!(
                peer = %sa.remote,
                identity = ?sa.identity.as_ref().map(ToString::to_string),
                initial_contact,
                "a new IKE SA of the same identity replaces this one"
            );
            if initial_contact {
                let sa = self.sas.remove(&spi).expect("found above");
                actions.extend(self.teardown(&sa, "replaced (INITIAL_CONTACT)", pools));
            } else {
                actions.extend(self.delete(
                    spi,
                    "replaced by a new IKE SA of the same identity",
                    pools,
                ));
            }
        }
        actions
    }

    /// Removes an SA's children, releases its address, reports it down. An
    /// SA that was rekeyed has handed all of that to its successor.
    pub(crate) fn teardown(
        &mut self,
        sa: &IkeSa,
        reason: &str,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        self.by_initiator.remove(&(sa.remote, sa.keymat.spi_i));
        self.computing_auth.remove(&sa.keymat.our_spi());
        if let Some(identity) = &sa.identity
            && let Some(spis) = self.by_identity.get_mut(identity)
        {
            spis.retain(|spi| *spi != sa.keymat.our_spi());
            if spis.is_empty() {
                self.by_identity.remove(identity);
            }
        }
        for child in &sa.children {
            self.child_spis.release(child.params.spi_in);
        }
        for (spi_in, ..) in &sa.lingering {
            self.child_spis.release(*spi_in);
        }
        // The reverse of the setup (SessionUp, then each ChildUp): the
        // children go first, last one first, then the session.
        let mut actions: Vec<Action> = sa
            .children
            .iter()
            .map(|c| (c.params.spi_in, c.params.spi_out))
            .chain(sa.lingering.iter().map(|(i, o, _)| (*i, *o)))
            .rev()
            .map(|(spi_in, spi_out)| Action::ChildDown {
                ike_spi: sa.keymat.our_spi(),
                spi_in,
                spi_out,
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
        } else if sa.state == SaState::Rekeyed {
            tracing::debug!(peer = %sa.remote, spi = format_args!("{:016x}", sa.keymat.our_spi()), "rekeyed IKE SA removed");
        }
        actions
    }
}
