//! The IKEv2 exchanges, one file each, with the initiator half and the
//! responder half side by side (as strongSwan's `libcharon/sa/ikev2/tasks`):
//!
//! - `ike_sa_init`: proposals, Diffie-Hellman, nonces, NAT detection, a
//!   responder's COOKIE (section 2.6);
//! - `ike_auth`: identities, PSK authentication, configuration payload,
//!   the first CHILD_SA and its traffic selectors;
//! - `informational`: liveness checks (DPD) and DELETE, both ways;
//! - `create_child_sa`: CHILD_SA and IKE SA rekeys, collisions;
//! - `fragments`: RFC 7383 reassembly and fragmenting.
//!
//! The halves work on the shared SA state of `ike::sa` and do no I/O. The
//! responder halves are driven by `ike::engine`, which routes each request
//! to its SA and exchange; the initiator halves by [`Initiator`], the
//! sequencer a dialling spoke uses.

pub(crate) mod create_child_sa;
pub(crate) mod fragments;
pub(crate) mod ike_auth;
pub(crate) mod ike_sa_init;
pub(crate) mod informational;
pub(crate) mod selectors;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Instant,
};

use crate::{
    config::Identity,
    ike::{
        crypto,
        proposal::{EspProposal, IkeChoice, IkeProposal},
        sa::{Action, ChildSa, ChildSaParams, DerivedKeys, IkeSa, InitiatedSa, SaState},
        wire::{Message, NotifyType, Payload, TrafficSelector},
    },
    ipsec::{Mode, Rng},
    net::{Ipv4Prefix, NATT_PORT},
};

/// A request as the engine received it: when, on which of our addresses,
/// from where, its bytes and its parsed form.
pub(crate) struct Received<'a> {
    pub(crate) now: Instant,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    pub(crate) datagram: &'a [u8],
    pub(crate) message: &'a Message,
}

/// A responder half's answer to a request on an existing SA: the payloads
/// of the response (the engine seals and caches it), the actions for the
/// caller, and whether the IKE SA ends with it.
#[derive(Default)]
pub(crate) struct Answer {
    pub(crate) payloads: Vec<Payload>,
    pub(crate) actions: Vec<Action>,
    pub(crate) end_sa: bool,
    /// An IKE SA the request created (a rekey of this one, RFC 7296
    /// section 1.3.2): into the engine's table once the answer is sealed.
    pub(crate) new_sa: Option<Box<crate::ike::sa::IkeSa>>,
}

/// What the engine lends a half that answers or makes a request: the
/// policy, its RNG, the CHILD_SA SPIs in use, the time.
pub(crate) struct Context<'a> {
    pub(crate) policy: &'a crate::ike::policy::Policy,
    pub(crate) rng: &'a mut dyn Rng,
    pub(crate) child_spis: &'a mut crate::ike::sa::ChildSpis,
    pub(crate) now: Instant,
}

#[derive(Clone, Debug)]
pub struct InitiatorConfig {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub identity: Identity,
    /// The hub's identity we insist on; `None` accepts what it presents.
    pub remote_identity: Option<Identity>,
    pub psk_local: Vec<u8>,
    pub psk_remote: Vec<u8>,
    pub ike: Vec<IkeProposal>,
    pub esp: Vec<EspProposal>,
    /// Ask for an address from the hub's pool (`ip address negotiated`).
    pub request_address: bool,
    /// Transport: GRE between the outer addresses. Tunnel: our address (or
    /// the one we get) to `ts_remote`.
    pub mode: Mode,
    pub ts_remote: Vec<TrafficSelector>,
    /// Send IKE_AUTH as SKF fragments of this much plaintext (RFC 7383),
    /// when the responder said it supports fragmentation.
    pub fragment_len: Option<usize>,
    /// Put ESP in UDP 4500 even without NAT (strongSwan's `encap = yes`):
    /// the IKE_SA_INIT request's NAT_DETECTION_SOURCE_IP matches no address,
    /// so the responder believes we are behind NAT, and we float to 4500 as
    /// if we were (RFC 7296 section 2.23).
    pub force_encapsulation: bool,
    /// IOS `route set` on the spoke: prefixes behind us, sent as
    /// INTERNAL_IP4_SUBNET in the CFG_REQUEST (after the INTERNAL_IP4_ADDRESS
    /// request), for a hub with `route accept any` to route to us.
    pub route_set: Vec<Ipv4Prefix>,
    /// Copied into `ChildSaParams::tunnel_id`: the spoke's `[tunnel.N]`
    /// number, or whatever handle the caller keeps the tunnel under.
    pub tunnel_id: u32,
    /// Copied into `ChildSaParams::profile`: the `[ikev2.profile.NAME]`
    /// this dial uses.
    pub profile: String,
    /// Copied into `ChildSaParams::virtual_template`: `None` for the static
    /// tunnel to the hub (`[tunnel.N]`), the profile's template for a
    /// tunnel cloned from one (spoke-to-spoke shortcuts).
    pub virtual_template: Option<u16>,
    /// The profile's lifetimes and PFS (the CHILD_SA's limits, and when
    /// the IKE SA is rekeyed once up).
    pub rekey: crate::ike::policy::Rekey,
}

/// The outcome of a successful dial.
#[derive(Clone, Debug)]
pub struct Established {
    pub spi_i: u64,
    pub spi_r: u64,
    pub choice: IkeChoice,
    pub peer_identity: Identity,
    pub address: Option<Ipv4Addr>,
    /// Prefixes the hub pushed (INTERNAL_IP4_SUBNET, `route set`): route
    /// them to it. Malformed ones are left out, with a log line.
    pub routes: Vec<Ipv4Prefix>,
    /// Our view of the CHILD_SA: `keys.encr_i` protects what we send.
    pub child: Option<ChildSaParams>,
}

/// What to do after a response. Datagrams go from and to
/// `Initiator::endpoints()`, read after each `handle`: the IKE_SA_INIT
/// response may move the SA to UDP 4500.
#[derive(Debug)]
pub enum Step {
    Send(Vec<u8>),
    /// One request sent as several datagrams (fragments).
    SendAll(Vec<Vec<u8>>),
    Established(Box<Established>),
}

#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("the responder refused: {0:?}")]
    Refused(NotifyType),
    #[error("the responder's AUTH does not verify")]
    AuthFailed,
    #[error("unexpected response (state {0})")]
    Unexpected(&'static str),
    #[error("crypto: {0}")]
    Crypto(#[from] crypto::CryptoError),
}

enum State {
    Idle,
    SentInit(ike_sa_init::InitSent),
    SentAuth(Box<ike_auth::AuthSent>),
    /// The IKE SA is up: INFORMATIONAL requests (DPD, DELETE) can be sent.
    Up(Box<InitiatedSa>),
    Done,
}

/// The initiator of IKE_SA_INIT and IKE_AUTH (RFC 7296 section 1.2): what a
/// spoke does to dial the hub, asking for an address (CFG_REQUEST) and one
/// CHILD_SA, GRE in transport mode like an IOS spoke's Tunnel1, or tunnel
/// mode; then the INFORMATIONAL exchanges of the established SA. No I/O:
/// `start` gives the first datagram, `handle` takes each response and gives
/// the next datagram or the result, `endpoints` says where each datagram
/// goes (UDP 500, or 4500 once NAT-T is in use), and `take_derived_keys`
/// hands out the keys derived so far, for the key log.
pub struct Initiator {
    config: InitiatorConfig,
    rng: Box<dyn Rng + Send>,
    spi_i: u64,
    state: State,
    /// NAT-T in use (RFC 7296 section 2.23): requests after IKE_SA_INIT go
    /// on UDP 4500 and ESP in UDP.
    nat: bool,
    /// We are behind the NAT (we send the keepalives).
    behind_nat: bool,
    /// Keys derived and not yet taken by the caller.
    derived: Vec<DerivedKeys>,
}

impl Initiator {
    pub fn new(config: InitiatorConfig, mut rng: Box<dyn Rng + Send>) -> Self {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let spi_i = u64::from_be_bytes(b) | 1;
        Initiator {
            config,
            rng,
            spi_i,
            state: State::Idle,
            nat: false,
            behind_nat: false,
            derived: Vec::new(),
        }
    }

    pub fn spi_i(&self) -> u64 {
        self.spi_i
    }

    /// Whether NAT-T is in use, known from the IKE_SA_INIT response: a
    /// NAT_DETECTION hash of the responder's did not match what we see
    /// (a NAT on either side, or the responder forcing encapsulation), or we
    /// forced it, and the responder does NAT-T (it sent both notifies).
    pub fn nat_detected(&self) -> bool {
        self.nat
    }

    /// Where the next request goes: (our end, the responder's end). The
    /// configured addresses until the IKE_SA_INIT response; with NAT-T, from
    /// our port 4500 to the responder's port 4500 after it (RFC 7296 section
    /// 2.23), where the socket layer puts the four-byte non-ESP marker in
    /// front of each message and strips it from responses (RFC 3948 section
    /// 2.2, as `ike::task` does), and ESP goes in UDP between the same ports.
    pub fn endpoints(&self) -> (SocketAddrV4, SocketAddrV4) {
        let (local, remote) = (self.config.local, self.config.remote);
        if self.nat {
            (
                SocketAddrV4::new(*local.ip(), NATT_PORT),
                SocketAddrV4::new(*remote.ip(), NATT_PORT),
            )
        } else {
            (local, remote)
        }
    }

    /// Keys derived since the last call (the IKE SA's after IKE_SA_INIT,
    /// the CHILD_SA's after IKE_AUTH): for the key log, which the caller
    /// writes if it keeps one.
    pub fn take_derived_keys(&mut self) -> Vec<DerivedKeys> {
        std::mem::take(&mut self.derived)
    }

    /// The IKE_SA_INIT request, with a KE for the first group we offer.
    pub fn start(&mut self) -> Result<Vec<u8>, InitiatorError> {
        let group = self
            .config
            .ike
            .first()
            .and_then(|p| p.dh.first())
            .map_or(31, |g| g.iana());
        self.init_request(group, None)
    }

    fn init_request(
        &mut self,
        group: u16,
        cookie: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, InitiatorError> {
        let (sent, request) =
            ike_sa_init::request(&mut *self.rng, &self.config, self.spi_i, group, cookie)?;
        self.state = State::SentInit(sent);
        Ok(request)
    }

    /// Takes a response; returns the next request or the result.
    pub fn handle(&mut self, datagram: &[u8]) -> Result<Step, InitiatorError> {
        let message =
            Message::parse(datagram).map_err(|e| InitiatorError::Malformed(e.to_string()))?;
        if !message.header.flags.response || message.header.spi_i != self.spi_i {
            return Err(InitiatorError::Unexpected("not a response to us"));
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::SentInit(sent) => {
                match ike_sa_init::response(&self.config, self.spi_i, sent, &message, datagram)? {
                    ike_sa_init::InitResponse::Retry(group, cookie) => {
                        self.init_request(group, cookie).map(Step::Send)
                    }
                    ike_sa_init::InitResponse::Cookie(sent) => {
                        let request = sent.request().to_vec();
                        self.state = State::SentInit(*sent);
                        Ok(Step::Send(request))
                    }
                    ike_sa_init::InitResponse::Done(init) => Ok(self.auth_request(init)),
                }
            }
            State::SentAuth(sent) => {
                let (established, up) = ike_auth::response(
                    &mut *self.rng,
                    &self.config,
                    self.nat,
                    *sent,
                    &message,
                    datagram,
                )?;
                if let Some(child) = &established.child {
                    self.derived.push(child.derived_keys(true));
                }
                self.state = State::Up(Box::new(up));
                Ok(Step::Established(Box::new(established)))
            }
            State::Up(up) => {
                self.state = State::Up(up);
                Err(InitiatorError::Unexpected(
                    "use informational_response for an established SA",
                ))
            }
            State::Idle | State::Done => Err(InitiatorError::Unexpected("no request outstanding")),
        }
    }

    /// IKE_SA_INIT is done: the IKE SA's keys are known, IKE_AUTH is next.
    fn auth_request(&mut self, init: Box<ike_sa_init::InitDone>) -> Step {
        self.derived.push(init.keymat.secrets());
        let nat = init.nat;
        self.behind_nat = init.behind_nat;
        let (sent, step) = ike_auth::request(&mut *self.rng, &self.config, init);
        self.nat = nat;
        self.state = State::SentAuth(Box::new(sent));
        step
    }

    /// An INFORMATIONAL request on the established SA: empty for a liveness
    /// check (DPD, RFC 7296 section 1.4), or with Delete payloads.
    pub fn informational(&mut self, payloads: &[Payload]) -> Result<Vec<u8>, InitiatorError> {
        let State::Up(up) = &mut self.state else {
            return Err(InitiatorError::Unexpected("the IKE SA is not established"));
        };
        Ok(informational::request(&mut *self.rng, up, payloads))
    }

    /// Answers an INFORMATIONAL request from the responder (its liveness
    /// check, or a Delete when the hub goes away: RFC 7296 section 1.4):
    /// returns our response and the request's payloads. A Delete of the IKE
    /// SA is acknowledged with an empty response (section 1.4.1).
    pub fn respond(&mut self, datagram: &[u8]) -> Result<(Vec<u8>, Vec<Payload>), InitiatorError> {
        let State::Up(up) = &self.state else {
            return Err(InitiatorError::Unexpected("the IKE SA is not established"));
        };
        informational::answer(&mut *self.rng, up, datagram)
    }

    /// The established IKE SA, to hand to the engine (`Engine::adopt`),
    /// which answers the peer's requests on it, checks liveness and rekeys
    /// it from then on; the initiator is done with it. `dpd`: the liveness
    /// check interval and retry.
    pub(crate) fn take_sa(
        &mut self,
        established: &Established,
        dpd: Option<(std::time::Duration, std::time::Duration)>,
        now: Instant,
    ) -> Option<IkeSa> {
        let State::Up(up) = std::mem::replace(&mut self.state, State::Done) else {
            return None;
        };
        let (local, remote) = self.endpoints();
        let mut sa = IkeSa {
            tunnel_id: self.config.tunnel_id,
            local,
            remote,
            nat: self.nat,
            keepalive_sent: self.behind_nat.then_some(now),
            dpd,
            dpd_on_demand: false,
            identity: Some(established.peer_identity.clone()),
            profile: Some(self.config.profile.clone()),
            auth_local: Some(crate::config::AuthMethod::PreShare),
            auth_remote: Some(crate::config::AuthMethod::PreShare),
            children: established
                .child
                .iter()
                .map(|c| ChildSa::new(c.clone(), now))
                .collect(),
            ..IkeSa::placeholder(up.keymat, now)
        };
        sa.state = SaState::Ready;
        sa.next_request_id = up.next_message_id;
        // Our requests so far were IKE_SA_INIT and IKE_AUTH; the responder
        // has sent none (section 2.2: each direction counts from zero).
        sa.next_peer_id = 0;
        sa.expire_at = None;
        Some(sa)
    }

    /// The payloads of the response to an INFORMATIONAL request.
    pub fn informational_response(
        &mut self,
        datagram: &[u8],
    ) -> Result<Vec<Payload>, InitiatorError> {
        let State::Up(up) = &self.state else {
            return Err(InitiatorError::Unexpected("the IKE SA is not established"));
        };
        informational::response(up, datagram)
    }
}
