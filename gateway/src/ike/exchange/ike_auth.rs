//! IKE_AUTH (RFC 7296 sections 1.2, 2.15): the identities, the
//! authentication (pre-shared keys), the configuration payload (section
//! 2.19: an address from the pool, the prefixes each side routes to the
//! other) and the first CHILD_SA with its traffic selectors (section 2.9).
//! The responder half authenticates a spoke and gives it an address and a
//! CHILD_SA; the initiator half is what a spoke asks for and what it makes
//! of the answer.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use super::{
    Answer, Context, Established, InitiatorConfig, InitiatorError, Step, fragments, ike_sa_init,
};
use crate::{
    config::{AuthMethod, Identity},
    iface::SaLifetime,
    ike::{
        crypto,
        job::{AuthJob, Signed},
        policy::{Policy, ProfilePolicy},
        proposal::{self, EspChoice},
        sa::{
            Action, AddressPools, ChildSa, ChildSaParams, IkeSa, InitiatedSa, Keymat, SaState,
            identification_of, identity_of, notify, subnet_attribute, subnet_value,
        },
        wire::{
            self, Auth, AuthMethod as WireAuth, CfgType, Config as CpPayload, ConfigAttribute,
            ConfigAttributeType, ExchangeType, Identification, Message, NotifyType, Payload,
            Proposal, TrafficSelector,
        },
    },
    ipsec::{Mode, Rng, Secret},
    net::{IPPROTO_GRE, Ipv4Prefix, NATT_PORT},
};

// ----- responder -----

/// The payloads of a request the responder works with.
struct AuthRequest<'a> {
    id_i: Option<&'a Identification>,
    auth: Option<&'a Auth>,
    cp_request: Option<&'a CpPayload>,
    sa_proposals: Option<&'a Vec<Proposal>>,
    ts_i: Option<&'a Vec<TrafficSelector>>,
    ts_r: Option<&'a Vec<TrafficSelector>>,
    transport: bool,
}

impl<'a> AuthRequest<'a> {
    fn read(inner: &'a [Payload]) -> Self {
        let mut request = AuthRequest {
            id_i: None,
            auth: None,
            cp_request: None,
            sa_proposals: None,
            ts_i: None,
            ts_r: None,
            transport: false,
        };
        for p in inner {
            match p {
                Payload::IdI(id) => request.id_i = Some(id),
                Payload::Auth(a) => request.auth = Some(a),
                Payload::Cp(cp) if cp.cfg_type == CfgType::Request => request.cp_request = Some(cp),
                Payload::Sa(list) => request.sa_proposals = Some(list),
                Payload::TsI(ts) => request.ts_i = Some(ts),
                Payload::TsR(ts) => request.ts_r = Some(ts),
                Payload::Notify(n) if n.kind == NotifyType::UseTransportMode => {
                    request.transport = true;
                }
                _ => {}
            }
        }
        request
    }
}

/// An initiator whose identity found its profile and keyring peer: who,
/// under which profile, and the keyring peer (named if its AUTH fails).
pub(crate) struct Identified {
    identity: Identity,
    profile: ProfilePolicy,
    keyring_peer: String,
}

/// What the configuration payload gave the initiator (section 2.19).
#[derive(Default)]
struct Configuration {
    /// The pool and the address leased from it.
    lease: Option<(String, Ipv4Addr)>,
    /// The request asked for an address and got none.
    address_failed: bool,
    peer_routes: Vec<Ipv4Prefix>,
}

/// The CHILD_SA the responder accepts: the ESP transforms, the number of
/// the proposal they came in, the peer's SPI, the mode and the narrowed
/// selectors (initiator's, responder's).
struct ChildChoice {
    esp: EspChoice,
    number: u8,
    spi_out: u32,
    mode: Mode,
    ts_i: Vec<TrafficSelector>,
    ts_r: Vec<TrafficSelector>,
}

fn refusal(remote: SocketAddrV4, kind: NotifyType, reason: String) -> Answer {
    Answer {
        payloads: vec![notify(kind, vec![])],
        actions: vec![Action::Refused {
            peer: remote,
            reason,
        }],
        end_sa: true,
        ..Answer::default()
    }
}

/// An IKE_AUTH request on the half-open `sa`: the initiator's identity, its
/// profile and keyring peer, and the job (`ike::job`) that checks its AUTH
/// and makes ours; `respond` answers with the job's result. The error: the
/// answer that refuses it, which ends the SA.
pub(crate) fn accept(
    sa: &IkeSa,
    policy: &Policy,
    inner: &[Payload],
) -> Result<(Identified, AuthJob), Answer> {
    let request = AuthRequest::read(inner);
    identify(policy, sa, &request).map_err(|(kind, reason)| refusal(sa.remote, kind, reason))
}

/// Answers IKE_AUTH on the half-open `sa` with the result of its job: our
/// AUTH, or `None` if the initiator's did not verify. The SA lives on
/// unless the initiator failed to authenticate.
pub(crate) fn respond(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    pools: &mut dyn AddressPools,
    inner: &[Payload],
    identified: Identified,
    our_auth: Option<Vec<u8>>,
) -> Answer {
    let remote = sa.remote;
    let request = AuthRequest::read(inner);
    let Identified {
        identity,
        profile,
        keyring_peer,
    } = identified;
    let Some(our_auth) = our_auth else {
        return refusal(
            remote,
            NotifyType::AuthenticationFailed,
            format!(
                "identity {identity}: pre-shared key does not match (keyring peer {keyring_peer})"
            ),
        );
    };
    let mut payloads = vec![
        Payload::IdR(identification_of(&profile.local_identity)),
        Payload::Auth(Auth {
            method: WireAuth::SharedKeyMic,
            data: our_auth,
        }),
    ];
    let mut actions = Vec::new();
    let mut refused = |payloads: &mut Vec<Payload>, kind: NotifyType, reason: String| {
        actions.push(Action::Refused {
            peer: remote,
            reason,
        });
        payloads.push(notify(kind, vec![]));
    };
    let cfg = match request.cp_request {
        Some(cp) => configuration(sa, &profile, &identity, cp, pools, &mut payloads)
            .unwrap_or_else(|(cfg, reason)| {
                refused(&mut payloads, NotifyType::InternalAddressFailure, reason);
                cfg
            }),
        None => Configuration::default(),
    };
    // No CHILD_SA without the address asked for (a CFG_REQUEST with only
    // subnets in it asks for none).
    let child = if cfg.address_failed {
        None
    } else {
        match choose_child(sa, &profile, &identity, &request, cfg.lease.as_ref()) {
            Ok(child) => child,
            Err((kind, reason)) => {
                refused(&mut payloads, kind, reason);
                None
            }
        }
    };
    let now = ctx.now;
    if let Some(child) = child {
        let spi_in = ctx.child_spis.allocate(ctx.rng);
        let lifetime = crate::ike::lifetime::child_lifetime(&profile.rekey, ctx.rng);
        let params = install_child(sa, &profile, spi_in, child, &cfg, lifetime, &mut payloads);
        actions.push(Action::KeysDerived(params.derived_keys(false)));
        actions.push(Action::ChildUp(params.clone()));
        sa.children.push(ChildSa::new(params, now));
    }
    establish(sa, now, &identity, &profile, cfg.lease.clone());
    actions.insert(
        0,
        Action::SessionUp {
            tunnel_id: sa.tunnel_id,
            peer: sa.remote,
            identity: identity.to_string(),
            profile: profile.name.clone(),
            address: cfg.lease.map(|l| l.1),
        },
    );
    Answer {
        payloads,
        actions,
        ..Answer::default()
    }
}

/// The initiator's identity, its profile, its keyring peer (PSK;
/// certificates come with a later issue), and the job that checks its AUTH
/// over its IKE_SA_INIT request and makes ours over our response (section
/// 2.15). The error: the notify and the reason.
fn identify(
    policy: &Policy,
    sa: &IkeSa,
    request: &AuthRequest<'_>,
) -> Result<(Identified, AuthJob), (NotifyType, String)> {
    let fail = |reason: String| Err((NotifyType::AuthenticationFailed, reason));
    let (Some(id_i), Some(auth)) = (request.id_i, request.auth) else {
        return Err((
            NotifyType::InvalidSyntax,
            "IKE_AUTH without IDi or AUTH (EAP is not supported)".into(),
        ));
    };
    let Some(identity) = identity_of(id_i) else {
        return fail(format!("unsupported identity type {:?}", id_i.id_type));
    };
    let Some(profile) = policy.profile_for(&identity).cloned() else {
        return fail(format!("identity {identity} matches no IKEv2 profile"));
    };
    if profile.auth_remote != AuthMethod::PreShare || auth.method != WireAuth::SharedKeyMic {
        return fail(format!(
            "identity {identity}: profile {} expects {:?}, peer used {:?}",
            profile.name, profile.auth_remote, auth.method
        ));
    }
    let Some(entry) = profile.keyring_entry(&identity, *sa.remote.ip()) else {
        return fail(format!(
            "identity {identity}: no keyring peer in profile {}",
            profile.name
        ));
    };
    let (Some(psk_remote), Some(psk_local)) = (&entry.psk_remote, &entry.psk_local) else {
        return fail(format!("keyring peer {} has no pre-shared key", entry.name));
    };
    let k = &sa.keymat;
    let job = AuthJob {
        spi: k.our_spi(),
        prf: k.choice.prf,
        theirs: Signed {
            message: sa.init_request.clone(),
            nonce: k.nr.clone(),
            sk_p: k.keys.sk_pi.clone(),
            id_body: id_i.body_bytes(),
        },
        their_auth: auth.data.clone(),
        psk_remote: Secret::new(psk_remote.clone()),
        ours: Signed {
            message: sa.init_response.clone(),
            nonce: k.ni.clone(),
            sk_p: k.keys.sk_pr.clone(),
            id_body: identification_of(&profile.local_identity).body_bytes(),
        },
        psk_local: Secret::new(psk_local.clone()),
    };
    let identified = Identified {
        identity,
        keyring_peer: entry.name.clone(),
        profile,
    };
    Ok((identified, job))
}

/// The configuration payload: an address from the profile's pool (with the
/// profile's `route set` prefixes, as a CFG_REPLY into `payloads`), and the
/// prefixes behind the peer (`route accept any`). The error: the
/// configuration without address, and why there is none.
fn configuration(
    sa: &IkeSa,
    profile: &ProfilePolicy,
    identity: &Identity,
    cp: &CpPayload,
    pools: &mut dyn AddressPools,
    payloads: &mut Vec<Payload>,
) -> Result<Configuration, (Configuration, String)> {
    let mut cfg = Configuration {
        peer_routes: profile.accepted_routes(*sa.local.ip(), sa.remote, identity, &cp.attributes),
        ..Configuration::default()
    };
    let wants_address = cp
        .attributes
        .iter()
        .any(|a| a.kind == ConfigAttributeType::InternalIp4Address);
    if !wants_address {
        return Ok(cfg);
    }
    let acquired = match &profile.pool {
        Some(pool) => pools
            .acquire(pool, &identity.to_string())
            .map(|address| (pool.clone(), address))
            .map_err(|e| format!("identity {identity}: no address from pool {pool}: {e}")),
        None => Err(format!(
            "identity {identity} asked for an address; profile {} has no pool",
            profile.name
        )),
    };
    match acquired {
        Ok(lease) => {
            let mut attributes = vec![ConfigAttribute {
                kind: ConfigAttributeType::InternalIp4Address,
                value: lease.1.octets().to_vec(),
            }];
            attributes.extend(profile.route_set.iter().map(|prefix| ConfigAttribute {
                kind: ConfigAttributeType::InternalIp4Subnet,
                value: subnet_value(*prefix),
            }));
            payloads.push(Payload::Cp(CpPayload {
                cfg_type: CfgType::Reply,
                attributes,
            }));
            cfg.lease = Some(lease);
            Ok(cfg)
        }
        Err(reason) => {
            cfg.address_failed = true;
            Err((cfg, reason))
        }
    }
}

/// The CHILD_SA created with IKE_AUTH (section 1.2), when the request
/// proposes one: ESP transforms, mode and traffic selectors. The error: the
/// notify and the reason.
fn choose_child(
    sa: &IkeSa,
    profile: &ProfilePolicy,
    identity: &Identity,
    request: &AuthRequest<'_>,
    lease: Option<&(String, Ipv4Addr)>,
) -> Result<Option<ChildChoice>, (NotifyType, String)> {
    let (Some(proposals), Some(ts_i), Some(ts_r)) =
        (request.sa_proposals, request.ts_i, request.ts_r)
    else {
        return Ok(None);
    };
    let Some((esp, number, spi_out)) = proposal::choose_esp(&profile.esp_proposals, proposals)
    else {
        return Err((
            NotifyType::NoProposalChosen,
            format!(
                "identity {identity}: no acceptable ESP proposal; peer offered {}",
                proposal::describe_offer(proposals)
            ),
        ));
    };
    let Some((mode, ts_i, ts_r)) = super::selectors::narrow(
        ts_i,
        ts_r,
        request.transport,
        sa.nat,
        *sa.remote.ip(),
        *sa.local.ip(),
        lease.map(|l| l.1),
    ) else {
        return Err((
            NotifyType::TsUnacceptable,
            format!("identity {identity}: traffic selectors not acceptable"),
        ));
    };
    Ok(Some(ChildChoice {
        esp,
        number,
        spi_out,
        mode,
        ts_i,
        ts_r,
    }))
}

/// The accepted CHILD_SA's keys and its part of the response.
fn install_child(
    sa: &IkeSa,
    profile: &ProfilePolicy,
    spi_in: u32,
    child: ChildChoice,
    cfg: &Configuration,
    lifetime: SaLifetime,
    payloads: &mut Vec<Payload>,
) -> ChildSaParams {
    let Ok(keys) = sa.keymat.child_keys(child.esp) else {
        unreachable!("KEYMAT is derived at exactly the length the split needs")
    };
    if child.mode == Mode::Transport {
        payloads.push(notify(NotifyType::UseTransportMode, vec![]));
    }
    payloads.push(Payload::Sa(vec![
        child.esp.to_proposal(child.number, spi_in),
    ]));
    payloads.push(Payload::TsI(child.ts_i.clone()));
    payloads.push(Payload::TsR(child.ts_r.clone()));
    // ESP in UDP (RFC 3948) from our 4500 to wherever the peer's
    // IKE now comes from: its 4500, or what a NAT made of it.
    let encap = (sa.nat || sa.local.port() == NATT_PORT).then(|| (NATT_PORT, sa.remote.port()));
    ChildSaParams {
        ike_spi: sa.keymat.spi_r,
        tunnel_id: sa.tunnel_id,
        profile: profile.name.clone(),
        virtual_template: profile.virtual_template,
        peer_inner: cfg.lease.as_ref().map(|l| l.1),
        peer_routes: cfg.peer_routes.clone(),
        spi_in,
        spi_out: child.spi_out,
        mode: child.mode,
        encap,
        local: *sa.local.ip(),
        remote: *sa.remote.ip(),
        esp: child.esp,
        keys,
        ts_local: child.ts_r,
        ts_remote: child.ts_i,
        lifetime,
        initiator: false,
        replaces: None,
    }
}

/// The SA is READY (IOS terms), with the profile's DPD settings.
fn establish(
    sa: &mut IkeSa,
    now: Instant,
    identity: &Identity,
    profile: &ProfilePolicy,
    lease: Option<(String, Ipv4Addr)>,
) {
    sa.state = SaState::Ready;
    sa.established = Some(now);
    // Both IKE_SA_INIT messages were kept for the AUTH payloads (section
    // 2.15) and to answer a retransmitted request; neither is needed once
    // IKE_AUTH is done, and they are a tenth of an idle SA's memory.
    sa.init_request = Vec::new();
    sa.init_response = Vec::new();
    sa.identity = Some(identity.clone());
    sa.profile = Some(profile.name.clone());
    sa.dpd_on_demand = profile.dpd_on_demand;
    sa.dpd = profile.dpd.map(|(interval, retry)| {
        (
            Duration::from_secs(u64::from(interval)),
            Duration::from_secs(u64::from(retry)),
        )
    });
    sa.auth_remote = Some(profile.auth_remote);
    sa.auth_local = Some(profile.auth_local);
    sa.lease = lease;
    sa.next_request_id = 0;
}

// ----- initiator -----

/// Our request, waiting for the answer.
pub(crate) struct AuthSent {
    keymat: Keymat,
    /// Our inbound SPI of the proposed CHILD_SA.
    child_spi: u32,
    /// The responder signs its IKE_SA_INIT response (section 2.15).
    init_response: Vec<u8>,
}

/// The request after IKE_SA_INIT: IDi, AUTH, CP, SA, TSi, TSr, as one
/// message or as fragments when configured and the responder supports them.
pub(crate) fn request(
    rng: &mut dyn Rng,
    config: &InitiatorConfig,
    init: Box<ike_sa_init::InitDone>,
) -> (AuthSent, Step) {
    let keymat = init.keymat;
    let id_i = identification_of(&config.identity);
    let octets = crypto::signed_octets(
        &init.request,
        &keymat.nr,
        keymat.choice.prf,
        &keymat.keys.sk_pi,
        &id_i.body_bytes(),
    );
    let auth = crypto::psk_auth(keymat.choice.prf, &config.psk_local, &octets);
    // Every dial starts afresh (a restarted spoke has no SA with the peer):
    // INITIAL_CONTACT lets the peer drop what it still holds for us
    // (RFC 7296 section 3.16), in the place section 1.2 gives it.
    let mut payloads = vec![
        Payload::IdI(id_i),
        notify(NotifyType::InitialContact, vec![]),
    ];
    if let Some(r) = &config.remote_identity {
        payloads.push(Payload::IdR(identification_of(r)));
    }
    payloads.push(Payload::Auth(Auth {
        method: WireAuth::SharedKeyMic,
        data: auth,
    }));
    if config.request_address || !config.route_set.is_empty() {
        payloads.push(cfg_request(config));
    }
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    let child_spi = u32::from_be_bytes(b) | 0x100;
    let offers = config
        .esp
        .iter()
        .enumerate()
        .map(|(i, p)| EspChoice::offer(p, u8::try_from(i + 1).unwrap_or(u8::MAX), child_spi))
        .collect();
    let (ts_i, ts_r) = selectors(config, &mut payloads);
    payloads.push(Payload::Sa(offers));
    payloads.push(Payload::TsI(ts_i));
    payloads.push(Payload::TsR(ts_r));
    let step = match config.fragment_len.filter(|_| init.fragmentation) {
        Some(len) => Step::SendAll(fragments::seal_fragments(
            rng,
            &keymat,
            ExchangeType::IkeAuth,
            1,
            &payloads,
            len,
        )),
        None => Step::Send(keymat.seal(rng, ExchangeType::IkeAuth, 1, false, &payloads)),
    };
    let sent = AuthSent {
        keymat,
        child_spi,
        init_response: init.response,
    };
    (sent, step)
}

/// The CFG_REQUEST: an address (`ip address negotiated`) and our `route
/// set` prefixes.
fn cfg_request(config: &InitiatorConfig) -> Payload {
    let address = config.request_address.then(|| ConfigAttribute {
        kind: ConfigAttributeType::InternalIp4Address,
        value: vec![],
    });
    let subnets = config.route_set.iter().map(|prefix| ConfigAttribute {
        kind: ConfigAttributeType::InternalIp4Subnet,
        value: subnet_value(*prefix),
    });
    Payload::Cp(CpPayload {
        cfg_type: CfgType::Request,
        attributes: address.into_iter().chain(subnets).collect(),
    })
}

/// The traffic selectors we propose (and USE_TRANSPORT_MODE into
/// `payloads` for GRE): GRE between the outer addresses, or our address
/// (any, when we ask for one) to `ts_remote`.
fn selectors(
    config: &InitiatorConfig,
    payloads: &mut Vec<Payload>,
) -> (Vec<TrafficSelector>, Vec<TrafficSelector>) {
    let me = *config.local.ip();
    match config.mode {
        Mode::Transport => {
            payloads.push(notify(NotifyType::UseTransportMode, vec![]));
            let hub = *config.remote.ip();
            (
                vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, me, me)],
                vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, hub, hub)],
            )
        }
        Mode::Tunnel => {
            let any =
                TrafficSelector::ipv4(0, 0..=65535, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
            let own = if config.request_address {
                any
            } else {
                TrafficSelector::ipv4(0, 0..=65535, me, me)
            };
            (vec![own], config.ts_remote.clone())
        }
    }
}

/// The payloads of the response the initiator works with.
#[derive(Default)]
struct AuthResponse<'a> {
    id_r: Option<&'a Identification>,
    auth: Option<&'a Auth>,
    address: Option<Ipv4Addr>,
    routes: Vec<Ipv4Prefix>,
    sa: Option<&'a Proposal>,
    ts_i: Option<Vec<TrafficSelector>>,
    ts_r: Option<Vec<TrafficSelector>>,
    transport: bool,
}

impl<'a> AuthResponse<'a> {
    fn read(config: &InitiatorConfig, inner: &'a [Payload]) -> Result<Self, InitiatorError> {
        let mut response = AuthResponse::default();
        for p in inner {
            match p {
                Payload::Notify(n)
                    if n.kind.is_error() && n.kind == NotifyType::AuthenticationFailed =>
                {
                    return Err(InitiatorError::Refused(n.kind));
                }
                Payload::Notify(n) if n.kind == NotifyType::UseTransportMode => {
                    response.transport = true;
                }
                Payload::IdR(id) => response.id_r = Some(id),
                Payload::Auth(a) => response.auth = Some(a),
                Payload::Cp(cp) if cp.cfg_type == CfgType::Reply => {
                    response.routes = pushed_routes(config, cp);
                    response.address = cp.attributes.iter().find_map(|a| {
                        (a.kind == ConfigAttributeType::InternalIp4Address)
                            .then(|| {
                                <[u8; 4]>::try_from(a.value.as_slice())
                                    .ok()
                                    .map(Ipv4Addr::from)
                            })
                            .flatten()
                    });
                }
                Payload::Sa(list) => response.sa = list.first(),
                Payload::TsI(t) => response.ts_i = Some(t.clone()),
                Payload::TsR(t) => response.ts_r = Some(t.clone()),
                _ => {}
            }
        }
        Ok(response)
    }
}

/// The hub's `route set`. A default route is fine here (the hub may take
/// all our traffic); a malformed one is left out rather than guessed at.
fn pushed_routes(config: &InitiatorConfig, cp: &CpPayload) -> Vec<Ipv4Prefix> {
    let mut routes = Vec::new();
    for a in &cp.attributes {
        if a.kind != ConfigAttributeType::InternalIp4Subnet {
            continue;
        }
        match subnet_attribute(&a.value) {
            Ok(prefix) if !routes.contains(&prefix) => routes.push(prefix),
            Ok(_) => {}
            Err(why) => tracing::warn!(
                remote = %config.remote,
                "INTERNAL_IP4_SUBNET in the CFG_REPLY left out: {why}"
            ),
        }
    }
    routes
}

/// The responder's answer: its identity and AUTH checked, our address and
/// routes, the CHILD_SA. Returns the result and the established SA.
pub(crate) fn response(
    rng: &mut dyn Rng,
    config: &InitiatorConfig,
    nat: bool,
    sent: AuthSent,
    message: &Message,
    datagram: &[u8],
) -> Result<(Established, InitiatedSa), InitiatorError> {
    let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
        return Err(InitiatorError::Malformed(
            "IKE_AUTH response without SK".into(),
        ));
    };
    let plaintext = sent.keymat.open(datagram, &sk.body)?;
    let inner = wire::parse_payloads(sk.first_inner, &plaintext)
        .map_err(|e| InitiatorError::Malformed(e.to_string()))?;
    let response = AuthResponse::read(config, &inner)?;
    let (Some(id_r), Some(auth)) = (response.id_r, response.auth) else {
        return Err(InitiatorError::Malformed(
            "IKE_AUTH response without IDr or AUTH".into(),
        ));
    };
    let peer_identity = identity_of(id_r).ok_or(InitiatorError::AuthFailed)?;
    if config
        .remote_identity
        .as_ref()
        .is_some_and(|want| *want != peer_identity)
    {
        return Err(InitiatorError::AuthFailed);
    }
    let k = &sent.keymat;
    let octets = crypto::signed_octets(
        &sent.init_response,
        &k.ni,
        k.choice.prf,
        &k.keys.sk_pr,
        &id_r.body_bytes(),
    );
    if auth.method != WireAuth::SharedKeyMic
        || !crypto::psk_auth_verify(k.choice.prf, &config.psk_remote, &octets, &auth.data)
    {
        return Err(InitiatorError::AuthFailed);
    }
    let child = our_child(config, nat, &sent, &response, rng)?;
    let established = Established {
        spi_i: k.spi_i,
        spi_r: k.spi_r,
        choice: k.choice,
        peer_identity,
        address: response.address,
        routes: response.routes,
        child,
    };
    let up = InitiatedSa {
        child_spi: established.child.as_ref().map(|c| c.spi_in),
        keymat: sent.keymat,
        next_message_id: 2,
    };
    Ok((established, up))
}

/// Our view of the CHILD_SA the responder created, if it did.
fn our_child(
    config: &InitiatorConfig,
    nat: bool,
    sent: &AuthSent,
    response: &AuthResponse<'_>,
    rng: &mut dyn Rng,
) -> Result<Option<ChildSaParams>, InitiatorError> {
    let (Some(sa), Some(ts_i), Some(ts_r)) = (response.sa, &response.ts_i, &response.ts_r) else {
        return Ok(None);
    };
    let (esp, _, spi_out) = proposal::choose_esp(&config.esp, std::slice::from_ref(sa)).ok_or(
        InitiatorError::Unexpected("the responder chose an ESP proposal we did not offer"),
    )?;
    let keys = sent.keymat.child_keys(esp)?;
    Ok(Some(ChildSaParams {
        ike_spi: sent.keymat.spi_i,
        tunnel_id: config.tunnel_id,
        profile: config.profile.clone(),
        virtual_template: config.virtual_template,
        peer_inner: None,
        peer_routes: response.routes.clone(),
        spi_in: sent.child_spi,
        spi_out,
        mode: if response.transport {
            Mode::Transport
        } else {
            Mode::Tunnel
        },
        encap: nat.then_some((NATT_PORT, NATT_PORT)),
        local: *config.local.ip(),
        remote: *config.remote.ip(),
        esp,
        keys,
        ts_local: ts_i.clone(),
        ts_remote: ts_r.clone(),
        lifetime: crate::ike::lifetime::child_lifetime(&config.rekey, rng),
        initiator: true,
        replaces: None,
    }))
}
