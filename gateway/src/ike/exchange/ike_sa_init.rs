//! IKE_SA_INIT (RFC 7296 section 1.2): proposals, Diffie-Hellman, nonces,
//! NAT detection (section 2.23) and the fragmentation announcement (RFC
//! 7383), unencrypted; both ends derive the IKE SA's keys from it (section
//! 2.14). The responder half answers a spoke's request and creates a
//! half-open SA; the initiator half is a spoke's first request and what it
//! makes of the answer.

use std::{net::SocketAddrV4, time::Instant};

use super::{InitiatorConfig, InitiatorError, Received};
use crate::{
    ike::{
        crypto::{DhGroup, DhPrivate},
        job::{InitFailed, InitJob, InitKeys},
        policy::Policy,
        proposal::{self, IkeChoice},
        sa::{
            Action, INITIATOR_REQUEST, IkeSa, Keymat, NONCE_LEN, RESPONDER_RESPONSE, Reassembly,
            SaState, fake_nat_hash, header, nat_hash, notify,
        },
        wire::{ExchangeType, KeyExchange, Message, NotifyType, Payload, PayloadType, Proposal},
    },
    ipsec::Rng,
};

// ----- responder -----

/// Why a request is refused: the notify the response carries and the
/// reason the operator reads.
struct Refusal {
    kind: NotifyType,
    data: Vec<u8>,
    reason: String,
}

impl Refusal {
    fn new(kind: NotifyType, reason: impl Into<String>) -> Self {
        Refusal {
            kind,
            data: vec![],
            reason: reason.into(),
        }
    }
}

/// The payloads of a request the responder works with.
struct InitRequest<'a> {
    proposals: &'a [Proposal],
    ke: &'a KeyExchange,
    ni: &'a Vec<u8>,
    nat_src: Vec<Vec<u8>>,
    nat_dst: Option<Vec<u8>>,
}

/// A new IKE_SA_INIT request, accepted, while its job (`ike::job`) runs:
/// what the response and the half-open SA need besides the keys.
pub(crate) struct Accepted {
    choice: IkeChoice,
    /// The number of the proposal chosen, for the response's SA payload.
    number: u8,
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    ni: Vec<u8>,
    nr: Vec<u8>,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    /// When it came: half-open SAs (and requests still computing) expire.
    pub(crate) received: Instant,
    request: Vec<u8>,
    nat: NatFound,
    frag: bool,
}

/// Accepts or refuses an IKE_SA_INIT request that is not a retransmission.
/// Accepted: our SPI (from `spi_taken`'s complement) and nonce, and the
/// job that derives the keys; `respond` makes the answer of its result.
/// Refused: the actions that say so.
pub(crate) fn accept(
    rng: &mut dyn Rng,
    policy: &Policy,
    forced_encapsulation: bool,
    spi_taken: impl Fn(u64) -> bool,
    received: &Received<'_>,
) -> Result<(Accepted, InitJob), Vec<Action>> {
    let spi_i = received.message.header.spi_i;
    let (local, remote) = (received.local, received.remote);
    let refuse = |refusal| refusal_actions(spi_i, local, remote, refusal);
    let request = read_request(received.message).map_err(refuse)?;
    let (choice, number) = choose(policy, &request).map_err(refuse)?;
    let spi_r = new_spi(rng, spi_taken);
    let mut nr = vec![0u8; NONCE_LEN];
    rng.fill(&mut nr);
    let nat = nat_detection(&request, spi_i, local, remote, forced_encapsulation);
    let job = InitJob {
        spi_i,
        spi_r,
        choice,
        peer_ke: request.ke.data.clone(),
        ni: request.ni.clone(),
        nr: nr.clone(),
    };
    let accepted = Accepted {
        choice,
        number,
        spi_i,
        spi_r,
        ni: request.ni.clone(),
        nr,
        local,
        remote,
        received: received.now,
        request: received.datagram.to_vec(),
        nat,
        frag: received
            .message
            .notify(NotifyType::Ikev2FragmentationSupported)
            .is_some(),
    };
    Ok((accepted, job))
}

/// The answer to an accepted request once its keys are computed: a new
/// half-open SA (tunnel id `tunnel_id`) and the actions that go with it,
/// or the refusal's actions.
pub(crate) fn respond(
    rng: &mut dyn Rng,
    accepted: Accepted,
    computed: Result<InitKeys, InitFailed>,
    forced_encapsulation: bool,
    tunnel_id: u32,
) -> Result<(IkeSa, Vec<Action>), Vec<Action>> {
    let a = accepted;
    let (spi_i, spi_r, local, remote) = (a.spi_i, a.spi_r, a.local, a.remote);
    let refuse = |kind, reason| refusal_actions(spi_i, local, remote, Refusal::new(kind, reason));
    let InitKeys { public, keys } = computed.map_err(|failed| match failed {
        InitFailed::Generate(e) => refuse(
            NotifyType::NoProposalChosen,
            format!("DH key generation failed: {e}"),
        ),
        InitFailed::PeerKe(e) => refuse(
            NotifyType::InvalidSyntax,
            format!("peer's KE is not valid: {e}"),
        ),
    })?;
    let (ni, nr) = (a.ni.clone(), a.nr.clone());
    let keymat = Keymat::with_keys(false, a.choice, keys, ni, nr, spi_i, spi_r).map_err(|e| {
        refuse(
            NotifyType::NoProposalChosen,
            format!("cipher setup failed: {e}"),
        )
    })?;
    let mut payloads = vec![
        Payload::Sa(vec![a.choice.to_proposal(a.number)]),
        Payload::Ke(KeyExchange {
            group: a.choice.dh.iana(),
            data: public,
        }),
        Payload::Nonce(keymat.nr.clone()),
        notify(
            NotifyType::NatDetectionSourceIp,
            if forced_encapsulation {
                fake_nat_hash(rng)
            } else {
                nat_hash(spi_i, spi_r, local)
            },
        ),
        notify(
            NotifyType::NatDetectionDestinationIp,
            nat_hash(spi_i, spi_r, remote),
        ),
    ];
    if a.frag {
        payloads.push(notify(NotifyType::Ikev2FragmentationSupported, vec![]));
    }
    let reply = Message {
        header: header(spi_i, spi_r, ExchangeType::IkeSaInit, 0, RESPONDER_RESPONSE),
        payloads,
    };
    let packet = reply.emit();
    let keys = keymat.secrets();
    let mut sa = half_open(tunnel_id, keymat, &a, packet.clone());
    sa.keepalive_sent = a.nat.behind_nat.then_some(a.received);
    tracing::debug!(peer = %remote, choice = %a.choice, nat = a.nat.encapsulate, forced = a.nat.forced, "IKE_SA_INIT answered");
    let actions = vec![
        Action::KeysDerived(keys),
        Action::Send {
            local,
            remote,
            packet,
        },
    ];
    Ok((sa, actions))
}

/// A refused request gets one notify, no SA (RFC 7296 section 1.2).
fn refusal_actions(
    spi_i: u64,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    refusal: Refusal,
) -> Vec<Action> {
    let reply = Message {
        header: header(spi_i, 0, ExchangeType::IkeSaInit, 0, RESPONDER_RESPONSE),
        payloads: vec![notify(refusal.kind, refusal.data)],
    };
    vec![
        Action::Send {
            local,
            remote,
            packet: reply.emit(),
        },
        Action::Refused {
            peer: remote,
            reason: refusal.reason,
        },
    ]
}

fn read_request(message: &Message) -> Result<InitRequest<'_>, Refusal> {
    if let Some(kind) = message.unsupported_critical() {
        return Err(Refusal {
            kind: NotifyType::UnsupportedCriticalPayload,
            data: vec![kind],
            reason: format!("IKE_SA_INIT with unsupported critical payload {kind}"),
        });
    }
    let mut proposals = None;
    let mut ke = None;
    let mut ni = None;
    let mut nat_src = Vec::new();
    let mut nat_dst = None;
    for p in &message.payloads {
        match p {
            Payload::Sa(list) => proposals = Some(list),
            Payload::Ke(k) => ke = Some(k),
            Payload::Nonce(n) => ni = Some(n),
            Payload::Notify(n) if n.kind == NotifyType::NatDetectionSourceIp => {
                nat_src.push(n.data.clone());
            }
            Payload::Notify(n) if n.kind == NotifyType::NatDetectionDestinationIp => {
                nat_dst = Some(n.data.clone());
            }
            _ => {}
        }
    }
    let (Some(proposals), Some(ke), Some(ni)) = (proposals, ke, ni) else {
        return Err(Refusal::new(
            NotifyType::InvalidSyntax,
            "IKE_SA_INIT without SA, KE or nonce",
        ));
    };
    if !(16..=256).contains(&ni.len()) {
        return Err(Refusal::new(
            NotifyType::InvalidSyntax,
            format!("nonce of {} bytes", ni.len()),
        ));
    }
    Ok(InitRequest {
        proposals,
        ke,
        ni,
        nat_src,
        nat_dst,
    })
}

/// The proposal we take, and the KE that must come with it.
fn choose(policy: &Policy, request: &InitRequest<'_>) -> Result<(IkeChoice, u8), Refusal> {
    let Some((choice, number)) = proposal::choose_ike(
        &policy.ike_proposals,
        request.proposals,
        Some(request.ke.group),
    ) else {
        return Err(Refusal::new(
            NotifyType::NoProposalChosen,
            format!(
                "no acceptable IKE proposal; peer offered {}",
                proposal::describe_offer(request.proposals)
            ),
        ));
    };
    if request.ke.group != choice.dh.iana() {
        // RFC 7296 section 1.2: tell the initiator which group to use.
        return Err(Refusal {
            kind: NotifyType::InvalidKePayload,
            data: choice.dh.iana().to_be_bytes().to_vec(),
            reason: format!(
                "KE for DH group {} but group {} chosen; asked for a new KE",
                request.ke.group,
                choice.dh.iana()
            ),
        });
    }
    Ok((choice, number))
}

/// Our SPI: random, non-zero, not in use.
fn new_spi(rng: &mut dyn Rng, taken: impl Fn(u64) -> bool) -> u64 {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 && !taken(spi) {
            return spi;
        }
    }
}

/// What NAT detection found.
struct NatFound {
    /// ESP goes in UDP.
    encapsulate: bool,
    /// Because we force it.
    forced: bool,
    /// We are the side behind a NAT (we send the keepalives).
    behind_nat: bool,
}

/// NAT detection (section 2.23): the peer's hashes against what we see.
fn nat_detection(
    request: &InitRequest<'_>,
    spi_i: u64,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    forced_encapsulation: bool,
) -> NatFound {
    let nat_src = &request.nat_src;
    let peer_natted =
        !nat_src.is_empty() && !nat_src.iter().any(|h| *h == nat_hash(spi_i, 0, remote));
    let we_natted = request
        .nat_dst
        .as_ref()
        .is_some_and(|h| *h != nat_hash(spi_i, 0, local));
    // Forcing takes a peer that does NAT-T at all (it sent both
    // notifies), as strongSwan's COND_NAT_FAKE does: one that does not
    // would never float to 4500 nor encapsulate.
    let peer_does_natt = !nat_src.is_empty() && request.nat_dst.is_some();
    let forced = forced_encapsulation && peer_does_natt;
    if forced_encapsulation && !peer_does_natt {
        tracing::warn!(peer = %remote, "UDP encapsulation is forced but the peer sent no NAT_DETECTION notifies (no NAT-T): its ESP will not be in UDP");
    }
    NatFound {
        encapsulate: peer_natted || we_natted || forced,
        forced,
        behind_nat: we_natted,
    }
}

/// The SA the response creates, waiting for IKE_AUTH.
fn half_open(tunnel_id: u32, keymat: Keymat, a: &Accepted, init_response: Vec<u8>) -> IkeSa {
    IkeSa {
        tunnel_id,
        keymat,
        local: a.local,
        remote: a.remote,
        state: SaState::HalfOpen,
        init_request: a.request.clone(),
        init_response,
        nat: a.nat.encapsulate,
        keepalive_sent: None,
        next_request_id: 0,
        next_peer_id: 1,
        last_response: None,
        last_heard: a.received,
        dpd: None,
        dpd_on_demand: true,
        last_sent: None,
        outstanding: None,
        rekey_at: None,
        expire_at: None,
        created: a.received,
        established: None,
        identity: None,
        profile: None,
        auth_remote: None,
        auth_local: None,
        lease: None,
        children: Vec::new(),
        fragments: Reassembly::default(),
        pending_delete: Vec::new(),
        pending_delete_ike: false,
        next_rekey_try: a.received,
        rekey_nonce: None,
        rekeyed_to: None,
        lingering: Vec::new(),
    }
}

// ----- initiator -----

/// Our request, waiting for the answer.
pub(crate) struct InitSent {
    dh: DhPrivate,
    ni: Vec<u8>,
    request: Vec<u8>,
    group: u16,
    /// The responder's COOKIE (section 2.6), first in every request since.
    pub(crate) cookie: Option<Vec<u8>>,
    cookie_rounds: u8,
}

impl InitSent {
    /// The request as last sent.
    pub(crate) fn request(&self) -> &[u8] {
        &self.request
    }
}

/// COOKIEs answered before giving up: a responder under load asks once; one
/// that asks again and again is not going to answer.
const COOKIE_ROUNDS: u8 = 3;

/// What the responder's answer leads to.
pub(crate) enum InitResponse {
    /// INVALID_KE_PAYLOAD: start over with this group (section 1.2), and
    /// the cookie if we were given one (section 2.6).
    Retry(u16, Option<Vec<u8>>),
    /// COOKIE (section 2.6): send the same request again with the cookie
    /// first (`InitSent::request`), and wait in this state.
    Cookie(Box<InitSent>),
    Done(Box<InitDone>),
}

/// The IKE SA as IKE_SA_INIT leaves it, for IKE_AUTH.
pub(crate) struct InitDone {
    pub(crate) keymat: Keymat,
    /// NAT-T in use: IKE moves to 4500 and ESP goes in UDP.
    pub(crate) nat: bool,
    /// We are behind the NAT: we send the keepalives.
    pub(crate) behind_nat: bool,
    /// Our request, which our AUTH signs (section 2.15).
    pub(crate) request: Vec<u8>,
    /// The responder's answer, which its AUTH signs.
    pub(crate) response: Vec<u8>,
    /// The responder supports fragmentation (RFC 7383 section 2.3).
    pub(crate) fragmentation: bool,
}

/// The request, with a KE for `group`.
pub(crate) fn request(
    rng: &mut dyn Rng,
    config: &InitiatorConfig,
    spi_i: u64,
    group: u16,
    cookie: Option<Vec<u8>>,
) -> Result<(InitSent, Vec<u8>), InitiatorError> {
    let dh_group =
        DhGroup::from_iana(group).ok_or(InitiatorError::Unexpected("unknown DH group"))?;
    let dh = dh_group.generate(rng)?;
    let mut ni = vec![0u8; NONCE_LEN];
    rng.fill(&mut ni);
    let proposals = config
        .ike
        .iter()
        .enumerate()
        .map(|(i, p)| IkeChoice::offer(p, u8::try_from(i + 1).unwrap_or(u8::MAX)))
        .collect();
    let mut message = Message {
        header: header(spi_i, 0, ExchangeType::IkeSaInit, 0, INITIATOR_REQUEST),
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
                // us behind NAT (`sa::fake_nat_hash` says why random).
                if config.force_encapsulation {
                    fake_nat_hash(rng)
                } else {
                    nat_hash(spi_i, 0, config.local)
                },
            ),
            notify(
                NotifyType::NatDetectionDestinationIp,
                nat_hash(spi_i, 0, config.remote),
            ),
            notify(NotifyType::Ikev2FragmentationSupported, vec![]),
        ],
    };
    if let Some(cookie) = &cookie {
        message
            .payloads
            .insert(0, notify(NotifyType::Cookie, cookie.clone()));
    }
    let request = message.emit();
    let sent = InitSent {
        dh,
        ni,
        request: request.clone(),
        group,
        cookie,
        cookie_rounds: 0,
    };
    Ok((sent, request))
}

/// The same request with the responder's COOKIE first and every other
/// payload unchanged (RFC 7296 section 2.6); it replaces the one our AUTH
/// signs, as it is the request the responder answers (section 2.15).
fn with_cookie(mut sent: InitSent, cookie: Vec<u8>) -> Result<InitResponse, InitiatorError> {
    if sent.cookie_rounds >= COOKIE_ROUNDS {
        return Err(InitiatorError::Refused(NotifyType::Cookie));
    }
    let mut message =
        Message::parse(&sent.request).map_err(|e| InitiatorError::Malformed(e.to_string()))?;
    message
        .payloads
        .retain(|p| !matches!(p, Payload::Notify(n) if n.kind == NotifyType::Cookie));
    message
        .payloads
        .insert(0, notify(NotifyType::Cookie, cookie.clone()));
    sent.request = message.emit();
    sent.cookie = Some(cookie);
    sent.cookie_rounds += 1;
    Ok(InitResponse::Cookie(Box::new(sent)))
}

/// The responder's answer: a new group to try, or the IKE SA's keys.
pub(crate) fn response(
    config: &InitiatorConfig,
    spi_i: u64,
    sent: InitSent,
    message: &Message,
    datagram: &[u8],
) -> Result<InitResponse, InitiatorError> {
    if let Some(n) = message.payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.kind.is_error() => Some(n),
        _ => None,
    }) {
        // RFC 7296 section 1.2: start over with the group the responder wants.
        if n.kind == NotifyType::InvalidKePayload && n.data.len() == 2 {
            let wanted = u16::from_be_bytes([n.data[0], n.data[1]]);
            if wanted != sent.group {
                return Ok(InitResponse::Retry(wanted, sent.cookie));
            }
        }
        return Err(InitiatorError::Refused(n.kind));
    }
    // Section 2.6: a responder under load answers with a COOKIE only (1 to
    // 64 octets) and keeps no state until we send it back.
    if let Some(cookie) = message.notify(NotifyType::Cookie)
        && message.find(PayloadType::Sa).is_none()
    {
        if cookie.data.is_empty() || cookie.data.len() > 64 {
            return Err(InitiatorError::Malformed(format!(
                "a COOKIE of {} octets",
                cookie.data.len()
            )));
        }
        return with_cookie(sent, cookie.data.clone());
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
    let (choice, _) = proposal::choose_ike(&config.ike, std::slice::from_ref(sa), Some(ke.group))
        .ok_or(InitiatorError::Unexpected(
        "the responder chose a proposal we did not offer",
    ))?;
    let shared = sent.dh.shared_secret(&ke.data)?;
    let spi_r = message.header.spi_r;
    // NAT detection (RFC 7296 section 2.23), with the responder's SPI
    // now known. Without I/O we take the response to come from where we
    // sent the request, and our address to be the configured one.
    let they_natted = !nat_src.is_empty()
        && !nat_src
            .iter()
            .any(|h| **h == nat_hash(spi_i, spi_r, config.remote));
    let we_natted = nat_dst.is_some_and(|h| *h != nat_hash(spi_i, spi_r, config.local));
    let responder_does_natt = !nat_src.is_empty() && nat_dst.is_some();
    let nat = responder_does_natt && (they_natted || we_natted || config.force_encapsulation);
    let keymat = Keymat::derive(true, choice, sent.ni, nr, &shared, spi_i, spi_r)?;
    if nat {
        tracing::debug!(remote = %config.remote, they_natted, we_natted, forced = config.force_encapsulation, "NAT-T: IKE moves to UDP 4500, ESP goes in UDP");
    }
    Ok(InitResponse::Done(Box::new(InitDone {
        keymat,
        nat,
        behind_nat: responder_does_natt && we_natted,
        request: sent.request,
        response: datagram.to_vec(),
        fragmentation: message
            .notify(NotifyType::Ikev2FragmentationSupported)
            .is_some(),
    })))
}
