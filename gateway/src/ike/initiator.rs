//! The initiator half of IKE_SA_INIT and IKE_AUTH (RFC 7296 section 1.2):
//! what a spoke does to dial the hub, asking for an address (CFG_REQUEST)
//! and one CHILD_SA, GRE in transport mode like an IOS spoke's Tunnel1, or
//! tunnel mode. No I/O: `start` gives the first datagram, `handle` takes
//! each response and gives the next datagram or the result, and `endpoints`
//! says where each datagram goes (UDP 500, or 4500 once NAT-T is in use).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::{
    config::Identity,
    ike::{
        crypto::{self, ChildKeys, DhPrivate, IkeKeys, SkCipher},
        engine::{
            ChildSaParams, fake_nat_hash, identification_of, identity_of, nat_hash, seal_fragments,
            seal_with, subnet_attribute,
        },
        proposal::{self, EspChoice, EspProposal, IkeChoice, IkeProposal},
        wire::{
            self, Auth, AuthMethod as WireAuth, CfgType, Config as CpPayload, ConfigAttribute,
            ConfigAttributeType, ExchangeType, Header, HeaderFlags, KeyExchange, Message, Notify,
            NotifyType, Payload, PayloadType, ProtocolId, TrafficSelector,
        },
    },
    ipsec::{Mode, Rng},
    net::{IPPROTO_GRE, Ipv4Prefix, NATT_PORT},
};

const NONCE_LEN: usize = 32;
/// Requests from the original initiator: I set, R clear (RFC 7296 section 3.1).
const INITIATOR_REQUEST: HeaderFlags = HeaderFlags {
    initiator: true,
    response: false,
    version: false,
};

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
    SentInit {
        dh: DhPrivate,
        ni: Vec<u8>,
        request: Vec<u8>,
        group: u16,
    },
    SentAuth(Box<AuthState>),
    /// The IKE SA is up: INFORMATIONAL requests (DPD, DELETE) can be sent.
    Up(Box<UpState>),
    Done,
}

struct UpState {
    tx: SkCipher,
    rx: SkCipher,
    spi_r: u64,
    next_message_id: u32,
    /// Our inbound SPI of the CHILD_SA, if one was created.
    child_spi: Option<u32>,
}

struct AuthState {
    choice: IkeChoice,
    keys: IkeKeys,
    tx: SkCipher,
    rx: SkCipher,
    ni: Vec<u8>,
    nr: Vec<u8>,
    spi_r: u64,
    child_spi: u32,
    /// The responder signs its IKE_SA_INIT response (section 2.15).
    init_response: Vec<u8>,
}

pub struct Initiator {
    config: InitiatorConfig,
    rng: Box<dyn Rng + Send>,
    spi_i: u64,
    state: State,
    /// NAT-T in use (RFC 7296 section 2.23): requests after IKE_SA_INIT go
    /// on UDP 4500 and ESP in UDP.
    nat: bool,
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

    /// The IKE_SA_INIT request, with a KE for the first group we offer.
    pub fn start(&mut self) -> Result<Vec<u8>, InitiatorError> {
        let group = self
            .config
            .ike
            .first()
            .and_then(|p| p.dh.first())
            .map_or(31, |g| g.iana());
        self.init_request(group)
    }

    fn init_request(&mut self, group: u16) -> Result<Vec<u8>, InitiatorError> {
        let dh_group = crypto::DhGroup::from_iana(group)
            .ok_or(InitiatorError::Unexpected("unknown DH group"))?;
        let dh = dh_group.generate(&mut *self.rng)?;
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut ni);
        let proposals = self
            .config
            .ike
            .iter()
            .enumerate()
            .map(|(i, p)| IkeChoice::offer(p, u8::try_from(i + 1).unwrap_or(u8::MAX)))
            .collect();
        let message = Message {
            header: request_header(self.spi_i, 0, ExchangeType::IkeSaInit, 0),
            payloads: vec![
                Payload::Sa(proposals),
                Payload::Ke(KeyExchange {
                    group,
                    data: dh.public_key().to_vec(),
                }),
                Payload::Nonce(ni.clone()),
                notify(
                    NotifyType::NatDetectionSourceIp,
                    // A hash that matches no address: the responder sees
                    // us behind NAT (`engine::fake_nat_hash` says why random).
                    if self.config.force_encapsulation {
                        fake_nat_hash(&mut *self.rng)
                    } else {
                        nat_hash(self.spi_i, 0, self.config.local)
                    },
                ),
                notify(
                    NotifyType::NatDetectionDestinationIp,
                    nat_hash(self.spi_i, 0, self.config.remote),
                ),
                notify(NotifyType::Ikev2FragmentationSupported, vec![]),
            ],
        };
        let request = message.emit();
        self.state = State::SentInit {
            dh,
            ni,
            request: request.clone(),
            group,
        };
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
            State::SentInit {
                dh,
                ni,
                request,
                group,
            } => self.init_response(&message, datagram, dh, ni, &request, group),
            State::SentAuth(auth) => self.auth_response(&message, datagram, *auth),
            State::Up(up) => {
                self.state = State::Up(up);
                Err(InitiatorError::Unexpected(
                    "use informational_response for an established SA",
                ))
            }
            State::Idle | State::Done => Err(InitiatorError::Unexpected("no request outstanding")),
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "reads top to bottom like RFC 7296 section 1.2"
    )]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the DH private key and nonce are consumed with the state"
    )]
    fn init_response(
        &mut self,
        message: &Message,
        datagram: &[u8],
        dh: DhPrivate,
        ni: Vec<u8>,
        request: &[u8],
        group: u16,
    ) -> Result<Step, InitiatorError> {
        if let Some(n) = message.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) if n.kind.is_error() => Some(n),
            _ => None,
        }) {
            // RFC 7296 section 1.2: start over with the group the responder wants.
            if n.kind == NotifyType::InvalidKePayload && n.data.len() == 2 {
                let wanted = u16::from_be_bytes([n.data[0], n.data[1]]);
                if wanted != group {
                    return self.init_request(wanted).map(Step::Send);
                }
            }
            return Err(InitiatorError::Refused(n.kind));
        }
        let (mut sa, mut ke, mut nr) = (None, None, None);
        let (mut nat_src, mut nat_dst) = (Vec::new(), None);
        for p in &message.payloads {
            match p {
                Payload::Sa(list) => sa = list.first(),
                Payload::Ke(k) => ke = Some(k),
                Payload::Nonce(n) => nr = Some(n.clone()),
                Payload::Notify(n) if n.kind == NotifyType::NatDetectionSourceIp => {
                    nat_src.push(&n.data);
                }
                Payload::Notify(n) if n.kind == NotifyType::NatDetectionDestinationIp => {
                    nat_dst = Some(&n.data);
                }
                _ => {}
            }
        }
        let (Some(sa), Some(ke), Some(nr)) = (sa, ke, nr) else {
            return Err(InitiatorError::Malformed(
                "IKE_SA_INIT response without SA, KE or nonce".into(),
            ));
        };
        let (choice, _) =
            proposal::choose_ike(&self.config.ike, std::slice::from_ref(sa), Some(ke.group))
                .ok_or(InitiatorError::Unexpected(
                    "the responder chose a proposal we did not offer",
                ))?;
        let shared = dh.shared_secret(&ke.data)?;
        let spi_r = message.header.spi_r;
        // NAT detection (RFC 7296 section 2.23), with the responder's SPI
        // now known. Without I/O we take the response to come from where we
        // sent the request, and our address to be the configured one.
        let they_natted = !nat_src.is_empty()
            && !nat_src
                .iter()
                .any(|h| **h == nat_hash(self.spi_i, spi_r, self.config.remote));
        let we_natted =
            nat_dst.is_some_and(|h| *h != nat_hash(self.spi_i, spi_r, self.config.local));
        let responder_does_natt = !nat_src.is_empty() && nat_dst.is_some();
        let nat =
            responder_does_natt && (they_natted || we_natted || self.config.force_encapsulation);
        let keys = IkeKeys::derive(
            choice.prf,
            choice.encr,
            choice.integ,
            &ni,
            &nr,
            &shared,
            self.spi_i,
            spi_r,
        );
        let sk_a = |k: &[u8]| choice.integ.map(|_| k.to_vec());
        let tx = SkCipher::new(
            choice.encr,
            choice.integ,
            &keys.sk_ei,
            sk_a(&keys.sk_ai).as_deref(),
        )?;
        let rx = SkCipher::new(
            choice.encr,
            choice.integ,
            &keys.sk_er,
            sk_a(&keys.sk_ar).as_deref(),
        )?;

        // IKE_AUTH: IDi, AUTH, CP, SA, TSi, TSr.
        let id_i = identification_of(&self.config.identity);
        let octets =
            crypto::signed_octets(request, &nr, choice.prf, &keys.sk_pi, &id_i.body_bytes());
        let auth = crypto::psk_auth(choice.prf, &self.config.psk_local, &octets);
        let mut payloads = vec![Payload::IdI(id_i)];
        if let Some(r) = &self.config.remote_identity {
            payloads.push(Payload::IdR(identification_of(r)));
        }
        payloads.push(Payload::Auth(Auth {
            method: WireAuth::SharedKeyMic,
            data: auth,
        }));
        if self.config.request_address || !self.config.route_set.is_empty() {
            let address = self.config.request_address.then(|| ConfigAttribute {
                kind: ConfigAttributeType::InternalIp4Address,
                value: vec![],
            });
            // RFC 7296 section 3.15.1: address then netmask, 8 octets.
            let subnets = self.config.route_set.iter().map(|prefix| ConfigAttribute {
                kind: ConfigAttributeType::InternalIp4Subnet,
                value: [prefix.addr.octets(), prefix.netmask().octets()].concat(),
            });
            payloads.push(Payload::Cp(CpPayload {
                cfg_type: CfgType::Request,
                attributes: address.into_iter().chain(subnets).collect(),
            }));
        }
        let mut b = [0u8; 4];
        self.rng.fill(&mut b);
        let child_spi = u32::from_be_bytes(b) | 0x100;
        let offers = self
            .config
            .esp
            .iter()
            .enumerate()
            .map(|(i, p)| EspChoice::offer(p, u8::try_from(i + 1).unwrap_or(u8::MAX), child_spi))
            .collect();
        let (ts_i, ts_r) = match self.config.mode {
            Mode::Transport => {
                payloads.push(notify(NotifyType::UseTransportMode, vec![]));
                let me = *self.config.local.ip();
                let hub = *self.config.remote.ip();
                (
                    vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, me, me)],
                    vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, hub, hub)],
                )
            }
            Mode::Tunnel => {
                let any =
                    TrafficSelector::ipv4(0, 0..=65535, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
                let me = *self.config.local.ip();
                let own = if self.config.request_address {
                    any
                } else {
                    TrafficSelector::ipv4(0, 0..=65535, me, me)
                };
                (vec![own], self.config.ts_remote.clone())
            }
        };
        payloads.push(Payload::Sa(offers));
        payloads.push(Payload::TsI(ts_i));
        payloads.push(Payload::TsR(ts_r));
        let fragmenting = self.config.fragment_len.filter(|_| {
            message
                .notify(NotifyType::Ikev2FragmentationSupported)
                .is_some()
        });
        let (spi_i, rng) = (self.spi_i, &mut *self.rng);
        let step = match fragmenting {
            Some(len) => Step::SendAll(seal_fragments(
                rng,
                &tx,
                spi_i,
                spi_r,
                ExchangeType::IkeAuth,
                1,
                INITIATOR_REQUEST,
                &payloads,
                len,
            )),
            None => Step::Send(seal_with(
                rng,
                &tx,
                spi_i,
                spi_r,
                ExchangeType::IkeAuth,
                1,
                INITIATOR_REQUEST,
                &payloads,
            )),
        };
        let init_response = datagram.to_vec();
        self.nat = nat;
        if nat {
            tracing::debug!(remote = %self.config.remote, they_natted, we_natted, forced = self.config.force_encapsulation, "NAT-T: IKE moves to UDP 4500, ESP goes in UDP");
        }
        self.state = State::SentAuth(Box::new(AuthState {
            choice,
            keys,
            tx,
            rx,
            ni,
            nr,
            spi_r,
            child_spi,
            init_response,
        }));
        Ok(step)
    }

    #[allow(
        clippy::too_many_lines,
        reason = "reads top to bottom like RFC 7296 section 1.2"
    )]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the exchange state is consumed"
    )]
    fn auth_response(
        &mut self,
        message: &Message,
        datagram: &[u8],
        st: AuthState,
    ) -> Result<Step, InitiatorError> {
        let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
            return Err(InitiatorError::Malformed(
                "IKE_AUTH response without SK".into(),
            ));
        };
        let aad = &datagram[..datagram.len() - sk.body.len()];
        let plaintext = st.rx.open(aad, &sk.body)?;
        let inner = wire::parse_payloads(sk.first_inner, &plaintext)
            .map_err(|e| InitiatorError::Malformed(e.to_string()))?;
        let (mut id_r, mut auth, mut address, mut sa, mut ts_i, mut ts_r, mut transport) =
            (None, None, None, None, None, None, false);
        let mut routes = Vec::new();
        for p in &inner {
            match p {
                Payload::Notify(n)
                    if n.kind.is_error() && n.kind == NotifyType::AuthenticationFailed =>
                {
                    return Err(InitiatorError::Refused(n.kind));
                }
                Payload::Notify(n) if n.kind == NotifyType::UseTransportMode => transport = true,
                Payload::IdR(id) => id_r = Some(id),
                Payload::Auth(a) => auth = Some(a),
                Payload::Cp(cp) if cp.cfg_type == CfgType::Reply => {
                    // The hub's `route set`. A default route is fine here
                    // (the hub may take all our traffic); a malformed one
                    // is left out rather than guessed at.
                    routes = Vec::new();
                    for a in &cp.attributes {
                        if a.kind != ConfigAttributeType::InternalIp4Subnet {
                            continue;
                        }
                        match subnet_attribute(&a.value) {
                            Ok(prefix) if !routes.contains(&prefix) => routes.push(prefix),
                            Ok(_) => {}
                            Err(why) => tracing::warn!(
                                remote = %self.config.remote,
                                "INTERNAL_IP4_SUBNET in the CFG_REPLY left out: {why}"
                            ),
                        }
                    }
                    address = cp.attributes.iter().find_map(|a| {
                        (a.kind == ConfigAttributeType::InternalIp4Address)
                            .then(|| {
                                <[u8; 4]>::try_from(a.value.as_slice())
                                    .ok()
                                    .map(Ipv4Addr::from)
                            })
                            .flatten()
                    });
                }
                Payload::Sa(list) => sa = list.first(),
                Payload::TsI(t) => ts_i = Some(t.clone()),
                Payload::TsR(t) => ts_r = Some(t.clone()),
                _ => {}
            }
        }
        let (Some(id_r), Some(auth)) = (id_r, auth) else {
            return Err(InitiatorError::Malformed(
                "IKE_AUTH response without IDr or AUTH".into(),
            ));
        };
        let peer_identity = identity_of(id_r).ok_or(InitiatorError::AuthFailed)?;
        if self
            .config
            .remote_identity
            .as_ref()
            .is_some_and(|want| *want != peer_identity)
        {
            return Err(InitiatorError::AuthFailed);
        }
        let octets = crypto::signed_octets(
            &st.init_response,
            &st.ni,
            st.choice.prf,
            &st.keys.sk_pr,
            &id_r.body_bytes(),
        );
        if auth.method != WireAuth::SharedKeyMic
            || !crypto::psk_auth_verify(st.choice.prf, &self.config.psk_remote, &octets, &auth.data)
        {
            return Err(InitiatorError::AuthFailed);
        }
        let child = match (sa, ts_i, ts_r) {
            (Some(sa), Some(ts_i), Some(ts_r)) => {
                let (esp, _, spi_out) =
                    proposal::choose_esp(&self.config.esp, std::slice::from_ref(sa)).ok_or(
                        InitiatorError::Unexpected(
                            "the responder chose an ESP proposal we did not offer",
                        ),
                    )?;
                let len = ChildKeys::keymat_len(esp.encr, esp.integ);
                let keymat =
                    crypto::child_keymat(st.choice.prf, &st.keys.sk_d, &st.ni, &st.nr, None, len);
                let keys = ChildKeys::split(&keymat, esp.encr, esp.integ)?;
                Some(ChildSaParams {
                    ike_spi: self.spi_i,
                    tunnel_id: self.config.tunnel_id,
                    profile: self.config.profile.clone(),
                    virtual_template: self.config.virtual_template,
                    peer_inner: None,
                    peer_routes: routes.clone(),
                    spi_in: st.child_spi,
                    spi_out,
                    mode: if transport {
                        Mode::Transport
                    } else {
                        Mode::Tunnel
                    },
                    encap: self.nat.then_some((NATT_PORT, NATT_PORT)),
                    local: *self.config.local.ip(),
                    remote: *self.config.remote.ip(),
                    esp,
                    keys,
                    ts_local: ts_i,
                    ts_remote: ts_r,
                })
            }
            _ => None,
        };
        self.state = State::Up(Box::new(UpState {
            tx: st.tx,
            rx: st.rx,
            spi_r: st.spi_r,
            next_message_id: 2,
            child_spi: child.as_ref().map(|c| c.spi_in),
        }));
        Ok(Step::Established(Box::new(Established {
            spi_i: self.spi_i,
            spi_r: st.spi_r,
            choice: st.choice,
            peer_identity,
            address,
            routes,
            child,
        })))
    }
}

fn request_header(spi_i: u64, spi_r: u64, exchange: ExchangeType, message_id: u32) -> Header {
    Header {
        spi_i,
        spi_r,
        next_payload: PayloadType::None,
        major_version: 2,
        minor_version: 0,
        exchange,
        flags: HeaderFlags {
            initiator: true,
            response: false,
            version: false,
        },
        message_id,
        length: 0,
    }
}

fn notify(kind: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol: ProtocolId::None,
        spi: vec![],
        kind,
        data,
    })
}

impl Initiator {
    /// An INFORMATIONAL request on the established SA: empty for a liveness
    /// check (DPD, RFC 7296 section 1.4), or with Delete payloads.
    pub fn informational(&mut self, payloads: &[Payload]) -> Result<Vec<u8>, InitiatorError> {
        let State::Up(up) = &mut self.state else {
            return Err(InitiatorError::Unexpected("the IKE SA is not established"));
        };
        let id = up.next_message_id;
        up.next_message_id += 1;
        Ok(seal_with(
            &mut *self.rng,
            &up.tx,
            self.spi_i,
            up.spi_r,
            ExchangeType::Informational,
            id,
            INITIATOR_REQUEST,
            payloads,
        ))
    }

    /// Answers an INFORMATIONAL request from the responder (its liveness
    /// check, or a Delete when the hub goes away: RFC 7296 section 1.4):
    /// returns our response and the request's payloads. A Delete of the IKE
    /// SA is acknowledged with an empty response (section 1.4.1).
    pub fn respond(&mut self, datagram: &[u8]) -> Result<(Vec<u8>, Vec<Payload>), InitiatorError> {
        let State::Up(up) = &self.state else {
            return Err(InitiatorError::Unexpected("the IKE SA is not established"));
        };
        let message =
            Message::parse(datagram).map_err(|e| InitiatorError::Malformed(e.to_string()))?;
        if message.header.flags.response
            || message.header.exchange != ExchangeType::Informational
            || message.header.spi_i != self.spi_i
        {
            return Err(InitiatorError::Unexpected(
                "not an INFORMATIONAL request for us",
            ));
        }
        let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
            return Err(InitiatorError::Malformed("INFORMATIONAL without SK".into()));
        };
        let aad = &datagram[..datagram.len() - sk.body.len()];
        let plaintext = up.rx.open(aad, &sk.body)?;
        let payloads = wire::parse_payloads(sk.first_inner, &plaintext)
            .map_err(|e| InitiatorError::Malformed(e.to_string()))?;
        // Deleted CHILD_SAs are answered with ours (section 1.4.1); the
        // caller tears the tunnel down either way.
        let reply: Vec<Payload> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::Delete(d) if d.protocol == ProtocolId::Esp => up.child_spi.map(|spi| {
                    Payload::Delete(wire::Delete {
                        protocol: ProtocolId::Esp,
                        spi_size: 4,
                        spis: vec![spi.to_be_bytes().to_vec()],
                    })
                }),
                _ => None,
            })
            .collect();
        let response = seal_with(
            &mut *self.rng,
            &up.tx,
            self.spi_i,
            up.spi_r,
            ExchangeType::Informational,
            message.header.message_id,
            HeaderFlags {
                initiator: true,
                response: true,
                version: false,
            },
            &reply,
        );
        Ok((response, payloads))
    }

    /// The payloads of the response to an INFORMATIONAL request.
    pub fn informational_response(
        &mut self,
        datagram: &[u8],
    ) -> Result<Vec<Payload>, InitiatorError> {
        let State::Up(up) = &self.state else {
            return Err(InitiatorError::Unexpected("the IKE SA is not established"));
        };
        let message =
            Message::parse(datagram).map_err(|e| InitiatorError::Malformed(e.to_string()))?;
        if !message.header.flags.response || message.header.exchange != ExchangeType::Informational
        {
            return Err(InitiatorError::Unexpected("not an INFORMATIONAL response"));
        }
        let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
            return Err(InitiatorError::Malformed("INFORMATIONAL without SK".into()));
        };
        let aad = &datagram[..datagram.len() - sk.body.len()];
        let plaintext = up.rx.open(aad, &sk.body)?;
        wire::parse_payloads(sk.first_inner, &plaintext)
            .map_err(|e| InitiatorError::Malformed(e.to_string()))
    }
}
