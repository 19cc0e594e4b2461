//! CREATE_CHILD_SA (RFC 7296 section 1.3): rekeying a CHILD_SA (section
//! 1.3.3, with optional PFS) or the IKE SA itself (section 1.3.2), and the
//! collisions of simultaneous rekeys (section 2.8.1), in both roles. A
//! request for an additional CHILD_SA is answered NO_ADDITIONAL_SAS: one
//! CHILD_SA per IKE SA is what a FlexVPN spoke has.
//!
//! The halves work on the shared state of `ike::sa`; the engine routes
//! requests and responses here and sends what they build. Make-before-break:
//! a rekeyed CHILD_SA's new pair is handed out (`Action::ChildUp` with
//! `replaces`) before our response or follow-up leaves, and the old one goes
//! only with its DELETE.

use std::cmp::Ordering;

use super::{Answer, Context};
use crate::{
    ike::{
        crypto::{DhGroup, DhPrivate},
        lifetime::{child_lifetime, rekey_of, schedule_ike_rekey},
        proposal::{self, IkeChoice},
        sa::{Action, ChildSa, ChildSaParams, IkeSa, Keymat, NONCE_LEN, Rekeying, SaState, notify},
        wire::{
            KeyExchange, Notify, NotifyType, Payload, Proposal, ProtocolId, Transform,
            TransformType,
        },
    },
    ipsec::{Mode, Rng, Secret},
};

fn random_nonce(rng: &mut dyn Rng) -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    rng.fill(&mut n);
    n
}

fn dh_transform(group: DhGroup) -> Transform {
    Transform {
        kind: TransformType::Dh,
        id: group.iana(),
        key_length: None,
        other_attributes: vec![],
    }
}

/// The lower of an exchange's two nonces: what section 2.8.1 compares.
fn min_nonce<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    if a.cmp(b) == Ordering::Less { a } else { b }
}

/// The parts of a CREATE_CHILD_SA message this exchange reads.
#[derive(Default)]
struct Parts<'a> {
    sa: Option<&'a [Proposal]>,
    nonce: Option<&'a [u8]>,
    ke: Option<&'a KeyExchange>,
    rekey_sa: Option<&'a Notify>,
    transport: bool,
    error: Option<&'a Notify>,
}

impl<'a> Parts<'a> {
    fn read(inner: &'a [Payload]) -> Self {
        let mut parts = Parts::default();
        for p in inner {
            match p {
                Payload::Sa(proposals) => parts.sa = Some(proposals),
                Payload::Nonce(n) => parts.nonce = Some(n),
                Payload::Ke(ke) => parts.ke = Some(ke),
                Payload::Notify(n) if n.kind == NotifyType::RekeySa => parts.rekey_sa = Some(n),
                Payload::Notify(n) if n.kind == NotifyType::UseTransportMode => {
                    parts.transport = true;
                }
                Payload::Notify(n) if n.kind.is_error() && parts.error.is_none() => {
                    parts.error = Some(n);
                }
                _ => {}
            }
        }
        parts
    }
}

fn refuse(kind: NotifyType, data: Vec<u8>) -> Answer {
    Answer {
        payloads: vec![notify(kind, data)],
        ..Answer::default()
    }
}

// ----- responder -----

/// Answers a CREATE_CHILD_SA request on an established SA. `ike_spi_taken`
/// says which of our IKE SPIs are in use (for a rekeyed IKE SA's).
pub(crate) fn respond(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    ike_spi_taken: &dyn Fn(u64) -> bool,
    inner: &[Payload],
) -> Answer {
    let parts = Parts::read(inner);
    let (Some(proposals), Some(nonce)) = (parts.sa, parts.nonce) else {
        return refuse(NotifyType::InvalidSyntax, vec![]);
    };
    let ours = sa.outstanding.as_ref().and_then(|o| match &o.request {
        crate::ike::sa::Request::Rekey(r) => Some(r),
        _ => None,
    });
    if proposals.iter().any(|p| p.protocol == ProtocolId::Ike) {
        // Section 2.25.2: not while we are rekeying one of its CHILD_SAs.
        if matches!(ours, Some(Rekeying::Child { .. })) || sa.state != SaState::Ready {
            return refuse(NotifyType::TemporaryFailure, vec![]);
        }
        return rekey_ike_respond(sa, ctx, ike_spi_taken, proposals, nonce, parts.ke);
    }
    let Some(rekey) = parts.rekey_sa else {
        // One CHILD_SA per IKE SA (section 1.3: NO_ADDITIONAL_SAS).
        return refuse(NotifyType::NoAdditionalSas, vec![]);
    };
    // Section 2.25.1: not while we are rekeying the IKE SA itself.
    if matches!(ours, Some(Rekeying::Ike { .. })) {
        return refuse(NotifyType::TemporaryFailure, vec![]);
    }
    rekey_child_respond(sa, ctx, rekey, proposals, nonce, parts.ke, parts.transport)
}

/// The peer rekeys one of our CHILD_SAs (section 1.3.3).
fn rekey_child_respond(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    rekey: &Notify,
    proposals: &[Proposal],
    ni: &[u8],
    ke: Option<&KeyExchange>,
    transport: bool,
) -> Answer {
    // The SPI the peer receives on: our outbound SPI of that CHILD_SA.
    let spi_out = <[u8; 4]>::try_from(rekey.spi.as_slice())
        .ok()
        .map(u32::from_be_bytes);
    let Some(index) =
        spi_out.and_then(|spi| sa.children.iter().position(|c| c.params.spi_out == spi))
    else {
        return Answer {
            payloads: vec![Payload::Notify(Notify {
                protocol: ProtocolId::Esp,
                spi: rekey.spi.clone(),
                kind: NotifyType::ChildSaNotFound,
                data: vec![],
            })],
            ..Answer::default()
        };
    };
    let rekey_cfg = rekey_of(ctx.policy, sa);
    let old = &sa.children[index].params;
    let Some((esp, number, peer_spi)) = proposal::choose_esp(
        &[proposal::EspProposal {
            encr: vec![old.esp.encr],
            integ: old.esp.integ.into_iter().collect(),
            esn: true,
        }],
        proposals,
    ) else {
        return refuse(NotifyType::NoProposalChosen, vec![]);
    };
    let offered = offered_groups(proposals, number);
    let (shared, ke_out) = match pfs_group(rekey_cfg.pfs, ke, &offered)
        .and_then(|group| responder_dh(group, ke, ctx.rng))
    {
        Ok(dh) => dh,
        Err(refusal) => return refusal,
    };
    let nr = random_nonce(ctx.rng);
    let Ok(keys) = sa
        .keymat
        .new_child_keys(esp, ni, &nr, shared.as_ref().map(AsRef::as_ref))
    else {
        unreachable!("KEYMAT is derived at exactly the length the split needs")
    };
    let spi_in = ctx.child_spis.allocate(ctx.rng);
    let old = &sa.children[index].params;
    let params = ChildSaParams {
        ike_spi: sa.keymat.our_spi(),
        spi_in,
        spi_out: peer_spi,
        esp,
        keys,
        lifetime: child_lifetime(&rekey_cfg, ctx.rng),
        initiator: false,
        replaces: Some(old.spi_in),
        encap: old.encap.map(|(l, _)| (l, sa.remote.port())),
        remote: *sa.remote.ip(),
        ..old.clone()
    };
    let mut payloads = Vec::new();
    if params.mode == Mode::Transport && transport {
        payloads.push(notify(NotifyType::UseTransportMode, vec![]));
    }
    payloads.push(Payload::Sa(vec![esp.to_proposal(number, spi_in)]));
    payloads.push(Payload::Nonce(nr.clone()));
    if let Some(ke) = ke_out {
        payloads.push(Payload::Ke(ke));
    }
    // The selectors as they are (section 2.9.2: a rekey keeps them).
    payloads.push(Payload::TsI(params.ts_remote.clone()));
    payloads.push(Payload::TsR(params.ts_local.clone()));
    let actions = vec![
        Action::KeysDerived(params.derived_keys(false)),
        Action::ChildUp(params.clone()),
    ];
    let created = min_nonce(ni, &nr).to_vec();
    note_replacement(sa, index, spi_in, created, false);
    sa.children.push(ChildSa::new(params, ctx.now));
    Answer {
        payloads,
        actions,
        ..Answer::default()
    }
}

/// The Diffie-Hellman group of a CHILD_SA rekey (section 1.3.1): the
/// profile's PFS group if it has one, else whatever group the peer's KE is
/// in, if we do that group; or the refusal that asks for the right KE.
fn pfs_group(
    pfs: Option<DhGroup>,
    ke: Option<&KeyExchange>,
    offered_groups: &[u16],
) -> Result<Option<DhGroup>, Answer> {
    let ask = |g: DhGroup| {
        refuse(
            NotifyType::InvalidKePayload,
            g.iana().to_be_bytes().to_vec(),
        )
    };
    match (pfs, ke) {
        // A KE in another group: ask for ours (section 1.3: the responder
        // may insist on a group).
        (Some(g), Some(ke)) if ke.group != g.iana() => Err(ask(g)),
        (Some(g), Some(_)) => Ok(Some(g)),
        // No Diffie-Hellman offered at all where we require PFS.
        (Some(_), None) if offered_groups.is_empty() => {
            Err(refuse(NotifyType::NoProposalChosen, vec![]))
        }
        (Some(g), None) => Err(ask(g)),
        (None, Some(ke)) => match DhGroup::from_iana(ke.group) {
            Some(g) if offered_groups.contains(&ke.group) => Ok(Some(g)),
            _ => Err(refuse(NotifyType::NoProposalChosen, vec![])),
        },
        // The peer wants PFS but sent no KE: ask for its first group.
        (None, None) if !offered_groups.is_empty() => Err(offered_groups
            .iter()
            .find_map(|g| DhGroup::from_iana(*g))
            .map_or_else(|| refuse(NotifyType::NoProposalChosen, vec![]), ask)),
        (None, None) => Ok(None),
    }
}

/// The Diffie-Hellman groups the peer's proposal `number` offers.
fn offered_groups(proposals: &[Proposal], number: u8) -> Vec<u16> {
    proposals
        .iter()
        .filter(|p| p.number == number)
        .flat_map(|p| &p.transforms)
        .filter(|t| t.kind == TransformType::Dh && t.id != 0)
        .map(|t| t.id)
        .collect()
}

/// Our half of a CHILD_SA rekey's Diffie-Hellman in `group`, if any: the
/// shared secret and our KE.
fn responder_dh(
    group: Option<DhGroup>,
    ke: Option<&KeyExchange>,
    rng: &mut dyn Rng,
) -> Result<(Option<Secret>, Option<KeyExchange>), Answer> {
    let (Some(g), Some(ke)) = (group, ke) else {
        return Ok((None, None));
    };
    let dh = g
        .generate(rng)
        .map_err(|_| refuse(NotifyType::NoProposalChosen, vec![]))?;
    let shared = dh
        .shared_secret(&ke.data)
        .map_err(|_| refuse(NotifyType::InvalidSyntax, vec![]))?;
    Ok((
        Some(shared),
        Some(KeyExchange {
            group: g.iana(),
            data: dh.public_key().to_vec(),
        }),
    ))
}

/// Records that the CHILD_SA at `index` was replaced by `new_spi_in` (made
/// by an exchange with lowest nonce `nonce`, ours if `by_us`). If it was
/// replaced already (both ends rekeyed it at once, section 2.8.1), the one
/// of the two made with the lowest nonce is redundant and is deleted by
/// the end that made it: returns nothing, but queues our DELETE if that is
/// us. Returns whether `new_spi_in` is the redundant one.
fn note_replacement(
    sa: &mut IkeSa,
    index: usize,
    new_spi_in: u32,
    nonce: Vec<u8>,
    by_us: bool,
) -> bool {
    let child = &mut sa.children[index];
    let Some((other_spi, other_nonce, other_by_us)) = child.replaced.take() else {
        child.replaced = Some((new_spi_in, nonce, by_us));
        return false;
    };
    let new_is_redundant = nonce < other_nonce;
    let (redundant, redundant_by_us, winner) = if new_is_redundant {
        (new_spi_in, by_us, (other_spi, other_nonce, other_by_us))
    } else {
        (other_spi, other_by_us, (new_spi_in, nonce, by_us))
    };
    child.replaced = Some(winner);
    tracing::info!(
        peer = %sa.remote,
        spi_in = format_args!("{:#010x}", child.params.spi_in),
        redundant = format_args!("{redundant:#010x}"),
        "both ends rekeyed the CHILD_SA at once; the one with the lowest nonce is redundant"
    );
    if redundant_by_us {
        sa.pending_delete.push(redundant);
    }
    new_is_redundant
}

/// The peer rekeys the IKE SA (section 1.3.2): a new IKE SA with the
/// peer as its original initiator; the CHILD_SAs move to it.
fn rekey_ike_respond(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    ike_spi_taken: &dyn Fn(u64) -> bool,
    proposals: &[Proposal],
    ni: &[u8],
    ke: Option<&KeyExchange>,
) -> Answer {
    let Some(ke) = ke else {
        return refuse(NotifyType::InvalidSyntax, vec![]);
    };
    let Some((choice, number)) =
        proposal::choose_ike(&ctx.policy.ike_proposals, proposals, Some(ke.group))
            .or_else(|| proposal::choose_ike(&[current_ike(sa)], proposals, Some(ke.group)))
    else {
        return refuse(NotifyType::NoProposalChosen, vec![]);
    };
    if choice.dh.iana() != ke.group {
        return refuse(
            NotifyType::InvalidKePayload,
            choice.dh.iana().to_be_bytes().to_vec(),
        );
    }
    let Some(peer_spi) = proposals
        .iter()
        .find(|p| p.number == number)
        .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
        .map(u64::from_be_bytes)
    else {
        return refuse(NotifyType::InvalidSyntax, vec![]);
    };
    let (Ok(dh), our_spi) = (
        choice.dh.generate(ctx.rng),
        new_ike_spi(ctx.rng, ike_spi_taken),
    ) else {
        return refuse(NotifyType::NoProposalChosen, vec![]);
    };
    let Ok(shared) = dh.shared_secret(&ke.data) else {
        return refuse(NotifyType::InvalidSyntax, vec![]);
    };
    let nr = random_nonce(ctx.rng);
    let Ok(keymat) = sa.keymat.rekeyed(
        false,
        choice,
        ni.to_vec(),
        nr.clone(),
        &shared,
        peer_spi,
        our_spi,
    ) else {
        return refuse(NotifyType::NoProposalChosen, vec![]);
    };
    let mut offer = choice.to_proposal(number);
    offer.spi = our_spi.to_be_bytes().to_vec();
    let payloads = vec![
        Payload::Sa(vec![offer]),
        Payload::Nonce(nr.clone()),
        Payload::Ke(KeyExchange {
            group: choice.dh.iana(),
            data: dh.public_key().to_vec(),
        }),
    ];
    let created = min_nonce(ni, &nr).to_vec();
    let (new_sa, actions) = successor(sa, keymat, ctx, created);
    Answer {
        payloads,
        actions,
        new_sa: Some(Box::new(new_sa)),
        ..Answer::default()
    }
}

/// The IKE proposal the SA uses now (accepted again on a rekey).
fn current_ike(sa: &IkeSa) -> proposal::IkeProposal {
    let c = sa.keymat.choice;
    proposal::IkeProposal {
        encr: vec![c.encr],
        integ: c.integ.into_iter().collect(),
        prf: vec![c.prf],
        dh: vec![c.dh],
    }
}

fn new_ike_spi(rng: &mut dyn Rng, taken: &dyn Fn(u64) -> bool) -> u64 {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 && !taken(spi) {
            return spi;
        }
    }
}

/// The IKE SA that replaces `sa` (section 2.18): the new keys, the same
/// peer, session and CHILD_SAs (moved), message IDs from zero. `sa` is
/// left `Rekeyed`, empty, waiting for its DELETE.
fn successor(
    sa: &mut IkeSa,
    keymat: Keymat,
    ctx: &mut Context<'_>,
    nonce: Vec<u8>,
) -> (IkeSa, Vec<Action>) {
    let initiated = keymat.initiator;
    let old_spi = sa.keymat.our_spi();
    let new_spi = keymat.our_spi();
    let mut actions = vec![Action::KeysDerived(keymat.secrets())];
    let mut children = std::mem::take(&mut sa.children);
    for c in &mut children {
        c.params.ike_spi = new_spi;
    }
    let rekey = rekey_of(ctx.policy, sa);
    let mut new = sa.next(keymat, ctx.now, nonce);
    new.state = SaState::Ready;
    new.dpd = sa.dpd;
    new.dpd_on_demand = sa.dpd_on_demand;
    new.last_sent = sa.last_sent;
    new.expire_at = None;
    new.lease = sa.lease.take();
    new.children = children;
    new.pending_delete = std::mem::take(&mut sa.pending_delete);
    new.lingering = std::mem::take(&mut sa.lingering);
    schedule_ike_rekey(&mut new, &rekey, ctx.rng, ctx.now);
    sa.state = SaState::Rekeyed;
    sa.rekeyed_to = Some(new_spi);
    // Whoever did not initiate waits this long for the initiator's DELETE
    // of the old SA before dropping it on its own.
    sa.expire_at = Some(ctx.now + std::time::Duration::from_mins(1));
    sa.rekey_at = None;
    actions.push(Action::IkeRekeyed {
        tunnel_id: sa.tunnel_id,
        peer: sa.remote,
        old_spi,
        new_spi,
        initiated,
    });
    (new, actions)
}

// ----- initiator -----

/// A CREATE_CHILD_SA request rekeying the CHILD_SA with inbound SPI
/// `old_spi_in`, with a KE when the profile wants PFS (`group`).
pub(crate) fn rekey_child_request(
    sa: &IkeSa,
    ctx: &mut Context<'_>,
    old_spi_in: u32,
    group: Option<DhGroup>,
) -> Option<(Rekeying, Vec<Payload>)> {
    let old = &sa
        .children
        .iter()
        .find(|c| c.params.spi_in == old_spi_in)?
        .params;
    let new_spi_in = ctx.child_spis.allocate(ctx.rng);
    let ni = random_nonce(ctx.rng);
    let dh = match group {
        Some(g) => Some(g.generate(ctx.rng).ok()?),
        None => None,
    };
    let mut offer = old.esp.to_proposal(1, new_spi_in);
    if let Some(g) = group {
        offer.transforms.push(dh_transform(g));
    }
    let mut payloads = vec![Payload::Notify(Notify {
        protocol: ProtocolId::Esp,
        spi: old.spi_in.to_be_bytes().to_vec(),
        kind: NotifyType::RekeySa,
        data: vec![],
    })];
    if old.mode == Mode::Transport {
        payloads.push(notify(NotifyType::UseTransportMode, vec![]));
    }
    payloads.push(Payload::Sa(vec![offer]));
    payloads.push(Payload::Nonce(ni.clone()));
    if let Some(dh) = &dh {
        payloads.push(Payload::Ke(KeyExchange {
            group: dh.group().iana(),
            data: dh.public_key().to_vec(),
        }));
    }
    payloads.push(Payload::TsI(old.ts_local.clone()));
    payloads.push(Payload::TsR(old.ts_remote.clone()));
    Some((
        Rekeying::Child {
            old_spi_in,
            new_spi_in,
            ni,
            dh,
        },
        payloads,
    ))
}

/// A CREATE_CHILD_SA request rekeying the IKE SA, with the algorithms it
/// has now (in group `group`).
pub(crate) fn rekey_ike_request(
    sa: &IkeSa,
    ctx: &mut Context<'_>,
    ike_spi_taken: &dyn Fn(u64) -> bool,
    group: DhGroup,
) -> Option<(Rekeying, Vec<Payload>)> {
    let new_spi = new_ike_spi(ctx.rng, ike_spi_taken);
    let ni = random_nonce(ctx.rng);
    let dh = group.generate(ctx.rng).ok()?;
    let choice = IkeChoice {
        dh: group,
        ..sa.keymat.choice
    };
    let mut offer = choice.to_proposal(1);
    offer.spi = new_spi.to_be_bytes().to_vec();
    let payloads = vec![
        Payload::Sa(vec![offer]),
        Payload::Nonce(ni.clone()),
        Payload::Ke(KeyExchange {
            group: group.iana(),
            data: dh.public_key().to_vec(),
        }),
    ];
    Some((Rekeying::Ike { new_spi, ni, dh }, payloads))
}

/// What the answer to our rekey leads to.
pub(crate) enum Answered {
    /// Done: these actions, and a new IKE SA if the IKE SA was rekeyed.
    Done {
        actions: Vec<Action>,
        new_sa: Option<Box<IkeSa>>,
    },
    /// The peer wants the KE in this group (INVALID_KE_PAYLOAD): ask again.
    RetryWithGroup(DhGroup),
    /// The peer refused (TEMPORARY_FAILURE and the like): try later.
    Later(String),
    /// The CHILD_SA is unknown to the peer: it goes.
    ChildGone(u32),
}

/// Takes the response to our CREATE_CHILD_SA.
pub(crate) fn answered(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    rekeying: Rekeying,
    inner: &[Payload],
) -> Answered {
    let parts = Parts::read(inner);
    if let Some(error) = parts.error {
        return match (error.kind, &rekeying) {
            (NotifyType::InvalidKePayload, _) => <[u8; 2]>::try_from(error.data.as_slice())
                .ok()
                .and_then(|g| DhGroup::from_iana(u16::from_be_bytes(g)))
                .map_or_else(
                    || Answered::Later("INVALID_KE_PAYLOAD for a group we do not have".into()),
                    Answered::RetryWithGroup,
                ),
            (NotifyType::ChildSaNotFound, Rekeying::Child { old_spi_in, .. }) => {
                Answered::ChildGone(*old_spi_in)
            }
            (kind, _) => Answered::Later(format!("the peer answered {kind:?}")),
        };
    }
    let (Some(proposals), Some(nr)) = (parts.sa, parts.nonce) else {
        return Answered::Later("response without SA or nonce".into());
    };
    match rekeying {
        Rekeying::Child {
            old_spi_in,
            new_spi_in,
            ni,
            dh,
        } => child_answered(
            sa, ctx, old_spi_in, new_spi_in, &ni, dh, proposals, nr, parts.ke,
        ),
        Rekeying::Ike { new_spi, ni, dh } => {
            ike_answered(sa, ctx, new_spi, &ni, &dh, proposals, nr, parts.ke)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn child_answered(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    old_spi_in: u32,
    new_spi_in: u32,
    ni: &[u8],
    dh: Option<DhPrivate>,
    proposals: &[Proposal],
    nr: &[u8],
    ke: Option<&KeyExchange>,
) -> Answered {
    let Some(index) = sa
        .children
        .iter()
        .position(|c| c.params.spi_in == old_spi_in)
    else {
        ctx.child_spis.release(new_spi_in);
        return Answered::Later("the CHILD_SA went while it was rekeyed".into());
    };
    let old = &sa.children[index].params;
    let Some((esp, _, spi_out)) = proposal::choose_esp(
        &[proposal::EspProposal {
            encr: vec![old.esp.encr],
            integ: old.esp.integ.into_iter().collect(),
            esn: old.esp.esn,
        }],
        proposals,
    ) else {
        ctx.child_spis.release(new_spi_in);
        return Answered::Later("the peer chose a proposal we did not offer".into());
    };
    let shared = match (dh, ke) {
        (Some(dh), Some(ke)) if ke.group == dh.group().iana() => match dh.shared_secret(&ke.data) {
            Ok(s) => Some(s),
            Err(e) => {
                ctx.child_spis.release(new_spi_in);
                return Answered::Later(format!("the peer's KE: {e}"));
            }
        },
        (None, None) => None,
        _ => {
            ctx.child_spis.release(new_spi_in);
            return Answered::Later("the peer's KE does not match ours".into());
        }
    };
    let Ok(keys) = sa
        .keymat
        .new_child_keys(esp, ni, nr, shared.as_ref().map(AsRef::as_ref))
    else {
        unreachable!("KEYMAT is derived at exactly the length the split needs")
    };
    let rekey_cfg = rekey_of(ctx.policy, sa);
    let params = ChildSaParams {
        ike_spi: sa.keymat.our_spi(),
        spi_in: new_spi_in,
        spi_out,
        esp,
        keys,
        lifetime: child_lifetime(&rekey_cfg, ctx.rng),
        initiator: true,
        replaces: Some(old_spi_in),
        encap: old.encap.map(|(l, _)| (l, sa.remote.port())),
        remote: *sa.remote.ip(),
        ..old.clone()
    };
    let actions = vec![
        Action::KeysDerived(params.derived_keys(true)),
        Action::ChildUp(params.clone()),
    ];
    let redundant = note_replacement(sa, index, new_spi_in, min_nonce(ni, nr).to_vec(), true);
    sa.children.push(ChildSa::new(params, ctx.now));
    if !redundant {
        // Section 1.3.3: the rekey's initiator deletes the old SA.
        sa.pending_delete.push(old_spi_in);
    }
    Answered::Done {
        actions,
        new_sa: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn ike_answered(
    sa: &mut IkeSa,
    ctx: &mut Context<'_>,
    new_spi: u64,
    ni: &[u8],
    dh: &DhPrivate,
    proposals: &[Proposal],
    nr: &[u8],
    ke: Option<&KeyExchange>,
) -> Answered {
    let Some((choice, _)) =
        proposal::choose_ike(&[current_ike_with(sa, dh.group())], proposals, None)
    else {
        return Answered::Later("the peer chose an IKE proposal we did not offer".into());
    };
    let Some(peer_spi) = proposals
        .first()
        .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
        .map(u64::from_be_bytes)
    else {
        return Answered::Later("the peer's IKE proposal has no SPI".into());
    };
    let Some(ke) = ke.filter(|k| k.group == dh.group().iana()) else {
        return Answered::Later("the peer's KE does not match ours".into());
    };
    let shared = match dh.shared_secret(&ke.data) {
        Ok(s) => s,
        Err(e) => return Answered::Later(format!("the peer's KE: {e}")),
    };
    let keymat = match sa.keymat.rekeyed(
        true,
        choice,
        ni.to_vec(),
        nr.to_vec(),
        &shared,
        new_spi,
        peer_spi,
    ) {
        Ok(k) => k,
        Err(e) => return Answered::Later(format!("keys: {e}")),
    };
    let nonce = min_nonce(ni, nr).to_vec();
    if sa.state == SaState::Rekeyed {
        // Both ends rekeyed the IKE SA at once (section 2.8.1): the peer's
        // successor exists already. Ours is redundant if its lowest nonce is
        // the lower; then it is made only to be deleted by us.
        return Answered::Done {
            actions: Vec::new(),
            new_sa: Some(Box::new(sa.next(keymat, ctx.now, nonce))),
        };
    }
    let (new, actions) = successor(sa, keymat, ctx, nonce);
    // We initiated: we delete the old SA (section 1.3.2).
    sa.pending_delete_ike = true;
    Answered::Done {
        actions,
        new_sa: Some(Box::new(new)),
    }
}

fn current_ike_with(sa: &IkeSa, group: DhGroup) -> proposal::IkeProposal {
    proposal::IkeProposal {
        dh: vec![group],
        ..current_ike(sa)
    }
}
