//! Our own requests on established IKE SAs, in either role: liveness
//! checks (RFC 7296 section 2.4), DELETEs (section 1.4.1) and rekeys
//! (CREATE_CHILD_SA, sections 1.3.2 and 1.3.3), one at a time per SA (the
//! window of one, section 2.3), resent until answered; what their answers
//! do; and the events that make them due: lifetimes running out (the
//! IKE SA's by its own timer, the CHILD_SAs' as the datapath reports them),
//! and the peer moving to a new address (NAT rebinding, section 2.23).

use std::{
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use super::Engine;
use crate::ike::{
    exchange::{
        self, Received,
        create_child_sa::{self, Answered},
        informational,
    },
    sa::{Action, AddressPools, Dropped, IkeSa, REQUEST_TRIES, Rekeying, Request, SaState},
    wire::{self, ExchangeType, Payload},
};

/// After a refused rekey, ours is tried again this much later.
const REKEY_RETRY: Duration = Duration::from_secs(10);

fn send(sa: &IkeSa, packet: Vec<u8>) -> Action {
    Action::Send {
        local: sa.local,
        remote: sa.remote,
        packet,
    }
}

/// An authenticated message came from the peer: it is alive; if it came
/// from a new address or port, the SA follows it (section 2.23: only
/// authenticated messages move an SA), and so must the CHILD_SAs' ESP.
pub(crate) fn heard_from(sa: &mut IkeSa, received: &Received<'_>) -> Vec<Action> {
    sa.last_heard = received.now;
    if sa.state == SaState::HalfOpen {
        // The peer may float to 4500 during IKE_AUTH (section 2.23).
        sa.local = received.local;
        sa.remote = received.remote;
        return Vec::new();
    }
    move_peer(sa, received.local, received.remote)
}

fn move_peer(sa: &mut IkeSa, local: SocketAddrV4, remote: SocketAddrV4) -> Vec<Action> {
    if (sa.local, sa.remote) == (local, remote) {
        return Vec::new();
    }
    let from = sa.remote;
    sa.local = local;
    sa.remote = remote;
    if sa.state != SaState::Ready || from == remote {
        return Vec::new();
    }
    for c in &mut sa.children {
        c.params.remote = *remote.ip();
        if let Some((_, port)) = &mut c.params.encap {
            *port = remote.port();
        }
    }
    vec![Action::PeerMoved {
        tunnel_id: sa.tunnel_id,
        from,
        to: remote,
    }]
}

/// A response to one of our requests.
pub(crate) fn answered(
    engine: &mut Engine,
    received: &Received<'_>,
    pools: &mut dyn AddressPools,
) -> Result<Vec<Action>, Dropped> {
    let header = &received.message.header;
    let sa = engine.sa_of(header)?;
    if sa
        .outstanding
        .as_ref()
        .is_none_or(|o| o.id != header.message_id)
    {
        return Err(Dropped::NotARequest);
    }
    let Some(Payload::Encrypted(sk)) = received.message.payloads.last() else {
        return Err(Dropped::Malformed);
    };
    let plaintext = sa
        .keymat
        .open(received.datagram, &sk.body)
        .map_err(|_| Dropped::Integrity)?;
    let inner = wire::parse_payloads(sk.first_inner, &plaintext).map_err(|_| Dropped::Malformed)?;
    let mut actions = heard_from(sa, received);
    let spi = sa.keymat.our_spi();
    let mut sa = engine.sas.remove(&spi).expect("found above");
    let outstanding = sa.outstanding.take().expect("checked above");
    let now = received.now;
    match outstanding.request {
        Request::Liveness => {}
        Request::Delete { children, ike } => {
            for spi_in in children {
                actions.extend(remove_child(engine, &mut sa, spi_in, now));
            }
            if ike {
                actions.extend(engine.teardown(&sa, "deleted", pools));
                return Ok(actions);
            }
        }
        Request::Rekey(rekeying) => {
            actions.extend(rekey_answered(engine, &mut sa, rekeying, &inner, now));
        }
    }
    engine.sas.insert(spi, sa);
    actions.extend(kick(engine, spi, now));
    Ok(actions)
}

fn remove_child(engine: &mut Engine, sa: &mut IkeSa, spi_in: u32, now: Instant) -> Vec<Action> {
    let Some(pos) = sa.children.iter().position(|c| c.params.spi_in == spi_in) else {
        return Vec::new();
    };
    let down = sa.retire_child(pos, now);
    if matches!(down, Action::ChildDown { .. }) {
        engine.child_spis.release(spi_in);
    }
    vec![down]
}

fn rekey_answered(
    engine: &mut Engine,
    sa: &mut IkeSa,
    rekeying: Rekeying,
    inner: &[Payload],
    now: Instant,
) -> Vec<Action> {
    let retry_child = match &rekeying {
        Rekeying::Child { old_spi_in, .. } => Some(*old_spi_in),
        Rekeying::Ike { .. } => None,
    };
    let mut ctx = exchange::Context {
        policy: &engine.policy,
        rng: &mut *engine.rng,
        child_spis: &mut engine.child_spis,
        now,
    };
    match create_child_sa::answered(sa, &mut ctx, rekeying, inner) {
        Answered::Done { actions, new_sa } => {
            let mut actions = actions;
            if let Some(new) = new_sa {
                actions.extend(adopt_successor(engine, sa, *new, now));
            }
            actions
        }
        Answered::RetryWithGroup(group) => {
            let sas = &engine.sas;
            let taken = |spi: u64| sas.contains_key(&spi);
            let mut ctx = exchange::Context {
                policy: &engine.policy,
                rng: &mut *engine.rng,
                child_spis: &mut engine.child_spis,
                now,
            };
            let request = match retry_child {
                Some(old) => create_child_sa::rekey_child_request(sa, &mut ctx, old, Some(group)),
                None => create_child_sa::rekey_ike_request(sa, &mut ctx, &taken, group),
            };
            match request {
                Some((rekeying, payloads)) => {
                    let packet = sa.start_request(
                        &mut *engine.rng,
                        now,
                        ExchangeType::CreateChildSa,
                        &payloads,
                        Request::Rekey(rekeying),
                    );
                    vec![send(sa, packet)]
                }
                None => Vec::new(),
            }
        }
        Answered::Later(reason) => {
            // Section 2.25: after a random delay, so that two ends that
            // refused each other do not collide again.
            let mut b = [0u8; 1];
            engine.rng.fill(&mut b);
            let wait = REKEY_RETRY + Duration::from_millis(u64::from(b[0]) * 40);
            tracing::warn!(peer = %sa.remote, "%IKEV2-4-REKEY_FAILED: rekey refused ({reason}); trying again in {}s", wait.as_secs());
            sa.next_rekey_try = now + wait;
            Vec::new()
        }
        Answered::ChildGone(spi_in) => {
            tracing::warn!(peer = %sa.remote, spi_in = format_args!("{spi_in:#010x}"), "the peer does not know the CHILD_SA it was asked to rekey; removing it");
            remove_child(engine, sa, spi_in, now)
        }
    }
}

/// Our IKE rekey made `new`. If the peer rekeyed the SA at the same time
/// (section 2.8.1) its successor exists already: the one of the two made
/// with the lowest nonce is redundant and is deleted by whoever made it,
/// and the CHILD_SAs belong to the other.
fn adopt_successor(
    engine: &mut Engine,
    old: &mut IkeSa,
    mut new: IkeSa,
    now: Instant,
) -> Vec<Action> {
    let new_spi = new.keymat.our_spi();
    if new.state != SaState::Rekeyed {
        engine.insert_new(new);
        return Vec::new();
    }
    let Some(theirs_spi) = old.rekeyed_to else {
        engine.insert_new(new);
        return Vec::new();
    };
    let Some(mut theirs) = engine.sas.remove(&theirs_spi) else {
        new.pending_delete_ike = true;
        engine.insert_new(new);
        return Vec::new();
    };
    let mut actions = Vec::new();
    if new.rekey_nonce < theirs.rekey_nonce {
        // Ours is redundant: we made it, we delete it.
        new.pending_delete_ike = true;
    } else {
        // Theirs is redundant (the peer deletes it): ours takes over, and we
        // delete the old SA, as the initiator of the surviving rekey.
        new.state = SaState::Ready;
        new.children = std::mem::take(&mut theirs.children);
        for c in &mut new.children {
            c.params.ike_spi = new_spi;
        }
        new.lease = theirs.lease.take();
        new.dpd = theirs.dpd;
        new.dpd_on_demand = theirs.dpd_on_demand;
        new.rekey_at = theirs.rekey_at;
        new.expire_at = theirs.expire_at;
        new.pending_delete = std::mem::take(&mut theirs.pending_delete);
        theirs.state = SaState::Rekeyed;
        theirs.expire_at = Some(now + Duration::from_mins(1));
        old.rekeyed_to = Some(new_spi);
        old.pending_delete_ike = true;
        actions.push(Action::IkeRekeyed {
            tunnel_id: new.tunnel_id,
            peer: new.remote,
            old_spi: theirs_spi,
            new_spi,
            initiated: true,
        });
    }
    tracing::info!(peer = %new.remote, "both ends rekeyed the IKE SA at once; the one with the lowest nonce is redundant");
    engine.sas.insert(theirs_spi, theirs);
    engine.insert_new(new);
    actions
}

/// Starts the next request of SA `spi` that is due, if none is in flight:
/// DELETEs first, then rekeys (the IKE SA's, then CHILD_SAs'), then a
/// liveness check.
pub(crate) fn kick(engine: &mut Engine, spi: u64, now: Instant) -> Vec<Action> {
    let Some(mut sa) = engine.sas.remove(&spi) else {
        return Vec::new();
    };
    let packet = next_request(engine, &mut sa, now);
    let actions = packet.map(|p| vec![send(&sa, p)]).unwrap_or_default();
    engine.sas.insert(spi, sa);
    actions
}

fn next_request(engine: &mut Engine, sa: &mut IkeSa, now: Instant) -> Option<Vec<u8>> {
    if sa.outstanding.is_some() || sa.state == SaState::HalfOpen {
        return None;
    }
    let rng = &mut *engine.rng;
    if !sa.pending_delete.is_empty() {
        let children = std::mem::take(&mut sa.pending_delete);
        return Some(informational::delete_children(sa, rng, now, children));
    }
    if sa.pending_delete_ike {
        sa.pending_delete_ike = false;
        return Some(informational::delete_ike(sa, rng, now));
    }
    if sa.state != SaState::Ready {
        return None;
    }
    if now >= sa.next_rekey_try {
        let sas = &engine.sas;
        let taken = |spi: u64| sas.contains_key(&spi);
        let mut ctx = exchange::Context {
            policy: &engine.policy,
            rng: &mut *engine.rng,
            child_spis: &mut engine.child_spis,
            now,
        };
        let request = if sa.rekey_at.is_some_and(|at| now >= at) {
            tracing::info!(peer = %sa.remote, "IKE SA lifetime: rekeying it");
            create_child_sa::rekey_ike_request(sa, &mut ctx, &taken, sa.keymat.choice.dh)
        } else if let Some(old) = sa
            .children
            .iter()
            .find(|c| c.rekey_due && c.replaced.is_none())
            .map(|c| c.params.spi_in)
        {
            let pfs = crate::ike::lifetime::rekey_of(ctx.policy, sa).pfs;
            create_child_sa::rekey_child_request(sa, &mut ctx, old, pfs)
        } else {
            None
        };
        if let Some((rekeying, payloads)) = request {
            return Some(sa.start_request(
                &mut *engine.rng,
                now,
                ExchangeType::CreateChildSa,
                &payloads,
                Request::Rekey(rekeying),
            ));
        }
    }
    informational::liveness(sa, &mut *engine.rng, now)
}

/// The timers of every SA: retransmissions and their end, the IKE SA's
/// hard lifetime, rekeyed SAs nobody deleted, then whatever is due.
pub(crate) fn tick(engine: &mut Engine, now: Instant, pools: &mut dyn AddressPools) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut dead = Vec::new();
    let mut expired = Vec::new();
    let keepalive = engine.nat_keepalive;
    for (spi, sa) in &mut engine.sas {
        if let Some(every) = keepalive
            && sa.state == SaState::Ready
            && sa
                .keepalive_sent
                .is_some_and(|at| now.saturating_duration_since(at) >= every)
        {
            sa.keepalive_sent = Some(now);
            actions.push(Action::NatKeepalive { remote: sa.remote });
        }
        for down in sa.lingered(Some(now)) {
            if let Action::ChildDown { spi_in, .. } = down {
                engine.child_spis.release(spi_in);
            }
            actions.push(down);
        }
        let retry = sa.retry_interval();
        if let Some(o) = &mut sa.outstanding
            && now >= o.next_try
        {
            if o.tries >= REQUEST_TRIES {
                dead.push(*spi);
                continue;
            }
            o.tries += 1;
            o.next_try = now + retry;
            let packet = o.packet.clone();
            actions.push(send(sa, packet));
        }
        if sa.expire_at.is_some_and(|at| now >= at) && sa.state != SaState::HalfOpen {
            expired.push(*spi);
        }
    }
    for spi in dead {
        if let Some(sa) = engine.sas.remove(&spi) {
            if sa.state == SaState::Ready {
                tracing::info!(peer = %sa.remote, tries = REQUEST_TRIES, "the peer did not answer; deleting its SA");
            }
            actions.extend(engine.teardown(&sa, "DPD: peer not responding", pools));
        }
    }
    for spi in expired {
        let rekeyed = engine
            .sas
            .get(&spi)
            .is_some_and(|sa| sa.state == SaState::Rekeyed);
        if rekeyed {
            if let Some(sa) = engine.sas.remove(&spi) {
                actions.extend(engine.teardown(&sa, "rekeyed", pools));
            }
        } else {
            tracing::warn!("IKE SA lifetime over and no rekey succeeded: deleting it");
            actions.extend(engine.delete(spi, "IKE SA lifetime expired", pools));
        }
    }
    let spis: Vec<u64> = engine.sas.keys().copied().collect();
    for spi in spis {
        actions.extend(kick(engine, spi, now));
    }
    actions
}

impl Engine {
    /// Takes over an IKE SA this gateway dialled (a spoke's tunnel to its
    /// hub, a shortcut to another spoke) once IKE_AUTH is done: from now on
    /// the engine answers the peer's requests on it, checks liveness and
    /// rekeys it like any other.
    pub(crate) fn adopt(&mut self, mut sa: IkeSa, now: Instant) {
        for c in &sa.children {
            self.child_spis.insert(c.params.spi_in);
        }
        let rekey = crate::ike::lifetime::rekey_of(&self.policy, &sa);
        if sa.rekey_at.is_none() {
            crate::ike::lifetime::schedule_ike_rekey(&mut sa, &rekey, &mut *self.rng, now);
        }
        self.insert_new(sa);
    }

    /// The datapath says a CHILD_SA (our inbound SPI) reached a lifetime
    /// limit: a soft one makes a rekey due; past a hard one the datapath
    /// has removed it, and the peer is told (a DELETE). An IKE SA left with
    /// no CHILD_SA goes too.
    pub fn child_expired(
        &mut self,
        spi_in: u32,
        hard: bool,
        now: Instant,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        let Some(spi) = self.sas.iter().find_map(|(spi, sa)| {
            (sa.state == SaState::Ready && sa.child(spi_in).is_some()).then_some(*spi)
        }) else {
            return Vec::new();
        };
        let Some(mut sa) = self.sas.remove(&spi) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if hard {
            tracing::warn!(peer = %sa.remote, spi_in = format_args!("{spi_in:#010x}"), "CHILD_SA hard lifetime reached before a rekey: deleting it");
            actions.extend(remove_child(self, &mut sa, spi_in, now));
            sa.pending_delete.push(spi_in);
        } else if let Some(child) = sa.children.iter_mut().find(|c| c.params.spi_in == spi_in) {
            child.rekey_due = true;
        }
        let empty = sa.children.is_empty();
        self.sas.insert(spi, sa);
        if empty {
            actions.extend(self.delete(spi, "no CHILD_SA left", pools));
            return actions;
        }
        actions.extend(kick(self, spi, now));
        actions
    }

    /// The datapath saw authenticated ESP for CHILD_SA `spi_in` from
    /// `remote`, a new endpoint of the peer (its NAT rebound): the IKE SA
    /// and its CHILD_SAs move there.
    pub fn esp_moved(&mut self, spi_in: u32, remote: SocketAddrV4) -> Vec<Action> {
        let Some(sa) = self
            .sas
            .values_mut()
            .find(|sa| sa.state == SaState::Ready && sa.child(spi_in).is_some())
        else {
            return Vec::new();
        };
        let local = sa.local;
        move_peer(sa, local, remote)
    }
}
