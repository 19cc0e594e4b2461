//! CREATE_CHILD_SA in both roles: our hub's engine against a spoke's engine
//! that adopted the SA it dialled, messages carried between them in memory,
//! with every collision and error path of RFC 7296 sections 1.3 and 2.8.

use super::*;
use crate::ike::sa::SaState;

const T0_OFFSET: Duration = Duration::from_secs(0);

/// Our hub and a spoke that dialled it, each with its engine; the spoke's
/// engine owns the SA it dialled (`Engine::adopt`).
struct Pair {
    hub: Engine,
    spoke: Engine,
    pools: MemPools,
    now: Instant,
    /// Every action either side produced, for the assertions.
    hub_log: Vec<Action>,
    spoke_log: Vec<Action>,
}

impl Pair {
    fn new(esp: &str) -> Self {
        let mut hub = hub("");
        let mut pools = MemPools {
            size: 10,
            ..MemPools::default()
        };
        let mut config = spoke("aes256-sha256-x25519", esp, Mode::Transport);
        config.request_address = true;
        let (result, _, mut initiator) = dial_through(&mut hub, &mut pools, config, 11, |a| a);
        let established = result.unwrap();
        let now = Instant::now() + T0_OFFSET;
        let sa = initiator.take_sa(&established, None, now).unwrap();
        let mut spoke = Engine::new(
            Policy::from_config(&hub_config("")).unwrap(),
            Box::new(SeededRng(99)),
        );
        spoke.adopt(sa, now);
        Pair {
            hub,
            spoke,
            pools,
            now,
            hub_log: Vec::new(),
            spoke_log: Vec::new(),
        }
    }

    /// Carries datagrams back and forth until neither side sends more.
    fn run(&mut self, from_hub: Vec<Action>, from_spoke: Vec<Action>) {
        let mut to_spoke = sends(&from_hub);
        let mut to_hub = sends(&from_spoke);
        self.hub_log.extend(from_hub);
        self.spoke_log.extend(from_spoke);
        for _ in 0..20 {
            if to_spoke.is_empty() && to_hub.is_empty() {
                return;
            }
            let (mut next_spoke, mut next_hub) = (Vec::new(), Vec::new());
            for p in to_hub.drain(..) {
                let a = self
                    .hub
                    .handle(self.now, HUB, SPOKE, &p, &mut self.pools)
                    .unwrap_or_default();
                next_spoke.extend(sends(&a));
                self.hub_log.extend(a);
            }
            for p in to_spoke.drain(..) {
                let a = self
                    .spoke
                    .handle(self.now, SPOKE, HUB, &p, &mut NoPools)
                    .unwrap_or_default();
                next_hub.extend(sends(&a));
                self.spoke_log.extend(a);
            }
            to_spoke = next_spoke;
            to_hub = next_hub;
        }
        panic!("the exchange did not settle");
    }

    /// Past the time deleted CHILD_SAs linger (`sa::LINGER`): a tick on
    /// both ends.
    fn settle(&mut self) {
        self.now += crate::ike::sa::LINGER + Duration::from_secs(1);
        let a = self.hub.tick(self.now, &mut self.pools);
        let b = self.spoke.tick(self.now, &mut NoPools);
        self.run(a, b);
    }

    fn spoke_child(&self) -> Vec<ChildSaParams> {
        children(&self.spoke)
    }

    fn hub_child(&self) -> Vec<ChildSaParams> {
        children(&self.hub)
    }

    /// Both ends hold the same single CHILD_SA, each the other's mirror.
    fn assert_agree(&self) {
        let (h, s) = (self.hub_child(), self.spoke_child());
        assert_eq!((h.len(), s.len()), (1, 1), "hub {h:?}\nspoke {s:?}");
        let (h, s) = (&h[0], &s[0]);
        assert_eq!((h.spi_in, h.spi_out), (s.spi_out, s.spi_in));
        // The exchange's initiator sends with the initiator's keys.
        let (h_send, s_recv) = if h.initiator {
            (&h.keys.encr_i, &s.keys.encr_i)
        } else {
            (&h.keys.encr_r, &s.keys.encr_r)
        };
        assert_eq!(**h_send, **s_recv, "what the hub sends, the spoke opens");
        assert_ne!(h.initiator, s.initiator);
    }

    fn expire_spoke_child(&mut self) -> Vec<Action> {
        let spi = self.spoke_child()[0].spi_in;
        self.spoke.child_expired(spi, false, self.now, &mut NoPools)
    }

    fn expire_hub_child(&mut self) -> Vec<Action> {
        let spi = self.hub_child()[0].spi_in;
        self.hub
            .child_expired(spi, false, self.now, &mut self.pools)
    }
}

fn children(engine: &Engine) -> Vec<ChildSaParams> {
    let mut all: Vec<ChildSaParams> = engine
        .sas
        .values()
        .filter(|sa| sa.state == SaState::Ready)
        .flat_map(|sa| sa.children.iter().map(|c| c.params.clone()))
        .collect();
    all.sort_by_key(|c| c.spi_in);
    all
}

fn rekeyed_children(log: &[Action]) -> Vec<ChildSaParams> {
    log.iter()
        .filter_map(|a| match a {
            Action::ChildUp(c) if c.replaces.is_some() => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn retired(log: &[Action]) -> Vec<u32> {
    log.iter()
        .filter_map(|a| match a {
            Action::ChildRetired { spi_in, .. } => Some(*spi_in),
            _ => None,
        })
        .collect()
}

fn downs(log: &[Action]) -> Vec<u32> {
    log.iter()
        .filter_map(|a| match a {
            Action::ChildDown { spi_in, .. } => Some(*spi_in),
            _ => None,
        })
        .collect()
}

#[test]
fn the_spoke_rekeys_its_child_sa_make_before_break_and_deletes_the_old_one() {
    let mut p = Pair::new("aes256gcm16");
    let old_spoke = p.spoke_child()[0].clone();
    let old_hub = p.hub_child()[0].clone();
    let request = p.expire_spoke_child();
    assert_eq!(sends(&request).len(), 1, "a CREATE_CHILD_SA goes out");
    p.run(vec![], request);
    let hub_new = rekeyed_children(&p.hub_log);
    let spoke_new = rekeyed_children(&p.spoke_log);
    assert_eq!((hub_new.len(), spoke_new.len()), (1, 1));
    assert_eq!(hub_new[0].replaces, Some(old_hub.spi_in));
    assert_eq!(spoke_new[0].replaces, Some(old_spoke.spi_in));
    assert!(spoke_new[0].initiator && !hub_new[0].initiator);
    // The new pair is handed out before the old one goes, on both ends.
    // The old pair lingers a moment after its DELETE (ESP already on its
    // way still opens), then goes.
    assert!(downs(&p.hub_log).is_empty() && downs(&p.spoke_log).is_empty());
    // The DELETE is done: the old pairs send no more at once (the hub's
    // new one was deferred until now), they only decrypt while lingering.
    assert_eq!(retired(&p.hub_log), vec![old_hub.spi_in]);
    assert_eq!(retired(&p.spoke_log), vec![old_spoke.spi_in]);
    p.settle();
    let hub_up = p
        .hub_log
        .iter()
        .position(|a| matches!(a, Action::ChildUp(_)));
    let hub_down = p
        .hub_log
        .iter()
        .position(|a| matches!(a, Action::ChildDown { .. }));
    assert!(hub_up < hub_down, "{:?}", p.hub_log);
    assert_eq!(downs(&p.hub_log), vec![old_hub.spi_in]);
    assert_eq!(downs(&p.spoke_log), vec![old_spoke.spi_in]);
    p.assert_agree();
    // The datapath's limits come with the new SA.
    assert_eq!(spoke_new[0].lifetime.hard_seconds, Some(3600));
    assert!(spoke_new[0].lifetime.soft_seconds < Some(3600));
}

#[test]
fn the_hub_rekeys_a_child_sa_when_its_lifetime_runs_out_first() {
    let mut p = Pair::new("aes128-sha256");
    let request = p.expire_hub_child();
    p.run(request, vec![]);
    assert_eq!(rekeyed_children(&p.hub_log).len(), 1);
    assert!(rekeyed_children(&p.hub_log)[0].initiator);
    p.assert_agree();
    // And again, from the new one.
    let request = p.expire_hub_child();
    p.run(request, vec![]);
    assert_eq!(rekeyed_children(&p.hub_log).len(), 2);
    p.assert_agree();
}

#[test]
fn the_ike_sa_is_rekeyed_and_its_child_sa_moves_with_it() {
    let mut p = Pair::new("aes256gcm16");
    let hub_old = *p.hub.sas.keys().next().unwrap();
    let spoke_old = *p.spoke.sas.keys().next().unwrap();
    let child = p.spoke_child()[0].clone();
    // The spoke's lifetime runs out first.
    for sa in p.hub.sas.values_mut() {
        sa.rekey_at = None;
    }
    for sa in p.spoke.sas.values_mut() {
        sa.rekey_at = Some(p.now);
    }
    let request = p.spoke.tick(p.now, &mut NoPools);
    assert_eq!(sends(&request).len(), 1);
    p.run(vec![], request);
    let rekeyed = |log: &[Action]| {
        log.iter()
            .filter_map(|a| match a {
                Action::IkeRekeyed {
                    old_spi, new_spi, ..
                } => Some((*old_spi, *new_spi)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let (h, s) = (rekeyed(&p.hub_log), rekeyed(&p.spoke_log));
    assert_eq!((h.len(), s.len()), (1, 1));
    assert_eq!((h[0].0, s[0].0), (hub_old, spoke_old));
    // The old IKE SAs are gone on both ends; the CHILD_SA lives on.
    assert_eq!(p.hub.sas.keys().copied().collect::<Vec<_>>(), vec![h[0].1]);
    assert_eq!(
        p.spoke.sas.keys().copied().collect::<Vec<_>>(),
        vec![s[0].1]
    );
    assert!(downs(&p.hub_log).is_empty() && downs(&p.spoke_log).is_empty());
    assert!(
        !p.hub_log
            .iter()
            .any(|a| matches!(a, Action::SessionDown { .. }))
    );
    assert_eq!(p.spoke_child()[0].spi_in, child.spi_in);
    assert_eq!(p.spoke_child()[0].ike_spi, s[0].1);
    // The new IKE SA works: a CHILD_SA rekey on it derives matching keys
    // from its new SK_d.
    let request = p.expire_hub_child();
    p.run(request, vec![]);
    p.assert_agree();
    assert_eq!(
        p.hub.sas.values().next().unwrap().keymat.spi_i,
        p.spoke.sas.values().next().unwrap().keymat.spi_i
    );
}

#[test]
fn the_hub_rekeys_the_ike_sa_and_becomes_its_original_initiator() {
    let mut p = Pair::new("aes256gcm16");
    for sa in p.spoke.sas.values_mut() {
        sa.rekey_at = None;
    }
    for sa in p.hub.sas.values_mut() {
        sa.rekey_at = Some(p.now);
    }
    let request = p.hub.tick(p.now, &mut p.pools);
    p.run(request, vec![]);
    let hub_sa = p.hub.sas.values().next().unwrap();
    assert_eq!(p.hub.sas.len(), 1);
    assert!(hub_sa.keymat.initiator, "the rekey's initiator");
    assert_eq!(
        hub_sa.lease.as_ref().map(|l| l.1),
        Some(Ipv4Addr::new(10, 1, 1, 100))
    );
    // Requests each way on the new SA.
    let request = p.expire_spoke_child();
    p.run(vec![], request);
    p.assert_agree();
    assert!(p.pools.released.is_empty(), "the address stays leased");
}

#[test]
fn simultaneous_child_rekeys_keep_exactly_one_child_sa() {
    let mut p = Pair::new("aes256gcm16");
    let from_hub = p.expire_hub_child();
    let from_spoke = p.expire_spoke_child();
    p.run(from_hub, from_spoke);
    p.settle();
    p.assert_agree();
    // Two were made, the redundant one and the old one went.
    assert_eq!(rekeyed_children(&p.hub_log).len(), 2);
    assert_eq!(downs(&p.hub_log).len(), 2);
    assert_eq!(downs(&p.spoke_log).len(), 2);
}

#[test]
fn simultaneous_ike_rekeys_keep_exactly_one_ike_sa() {
    let mut p = Pair::new("aes256gcm16");
    for sa in p.hub.sas.values_mut().chain(p.spoke.sas.values_mut()) {
        sa.rekey_at = Some(p.now);
    }
    let from_hub = p.hub.tick(p.now, &mut p.pools);
    let from_spoke = p.spoke.tick(p.now, &mut NoPools);
    p.run(from_hub, from_spoke);
    let ready = |engine: &Engine| {
        engine
            .sas
            .values()
            .filter(|sa| sa.state == SaState::Ready)
            .count()
    };
    assert_eq!((ready(&p.hub), ready(&p.spoke)), (1, 1));
    let (hub_sa, spoke_sa) = (
        p.hub
            .sas
            .values()
            .find(|sa| sa.state == SaState::Ready)
            .unwrap(),
        p.spoke
            .sas
            .values()
            .find(|sa| sa.state == SaState::Ready)
            .unwrap(),
    );
    assert_eq!(
        (hub_sa.keymat.spi_i, hub_sa.keymat.spi_r),
        (spoke_sa.keymat.spi_i, spoke_sa.keymat.spi_r)
    );
    assert_eq!(hub_sa.children.len(), 1);
    // Nothing is left once the redundant ones are deleted.
    let later = p.now + Duration::from_secs(61);
    p.now = later;
    let a = p.hub.tick(later, &mut p.pools);
    let b = p.spoke.tick(later, &mut NoPools);
    p.run(a, b);
    assert_eq!((p.hub.sas.len(), p.spoke.sas.len()), (1, 1));
    let request = p.expire_spoke_child();
    p.run(vec![], request);
    p.assert_agree();
}

#[test]
fn pfs_is_asked_for_with_invalid_ke_payload_and_the_rekey_retried() {
    let mut p = Pair::new("aes256gcm16");
    // The spoke wants PFS with Curve25519, the hub with P-256.
    p.hub.policy.profiles[0].rekey.pfs = Some(DhGroup::Ecp256);
    p.spoke.policy.profiles[0].rekey.pfs = Some(DhGroup::Curve25519);
    for sa in p.spoke.sas.values_mut() {
        sa.profile = Some("Flex".into());
    }
    let request = p.expire_spoke_child();
    p.run(vec![], request);
    p.assert_agree();
    assert_eq!(rekeyed_children(&p.spoke_log).len(), 1);
}

#[test]
fn a_child_rekey_during_an_ike_rekey_is_refused_for_now_and_retried_later() {
    let mut p = Pair::new("aes256gcm16");
    for sa in p.hub.sas.values_mut() {
        sa.rekey_at = Some(p.now);
    }
    for sa in p.spoke.sas.values_mut() {
        sa.rekey_at = None;
    }
    // The hub's IKE rekey is in flight when the spoke's CHILD rekey arrives.
    let hub_request = p.hub.tick(p.now, &mut p.pools);
    let spoke_request = p.expire_spoke_child();
    let to_hub = sends(&spoke_request);
    let answer = p
        .hub
        .handle(p.now, HUB, SPOKE, &to_hub[0], &mut p.pools)
        .unwrap();
    let spoke_sa = p.spoke.sas.values_mut().next().unwrap();
    let reply = sends(&answer);
    assert_eq!(reply.len(), 1);
    let inner = {
        let m = Message::parse(&reply[0]).unwrap();
        let Some(Payload::Encrypted(sk)) = m.payloads.last() else {
            panic!()
        };
        let plain = spoke_sa.keymat.open(&reply[0], &sk.body).unwrap();
        wire::parse_payloads(sk.first_inner, &plain).unwrap()
    };
    assert!(
        inner
            .iter()
            .any(|p| matches!(p, Payload::Notify(n) if n.kind == NotifyType::TemporaryFailure)),
        "{inner:?}"
    );
    p.run(hub_request, answer);
    // Both try again after a random delay until both rekeys are done.
    for _ in 0..60 {
        p.now += Duration::from_secs(1);
        let a = p.hub.tick(p.now, &mut p.pools);
        let b = p.spoke.tick(p.now, &mut NoPools);
        p.run(a, b);
    }
    p.assert_agree();
    assert_eq!(rekeyed_children(&p.spoke_log).len(), 1);
    let ike_rekeys = p
        .hub_log
        .iter()
        .filter(|a| matches!(a, Action::IkeRekeyed { .. }))
        .count();
    assert_eq!(ike_rekeys, 1);
}

#[test]
fn a_rekey_of_a_child_sa_the_peer_does_not_know_removes_it() {
    let mut p = Pair::new("aes256gcm16");
    // The hub lost the CHILD_SA (its hard lifetime, say).
    let spi = p.hub_child()[0].spi_in;
    for sa in p.hub.sas.values_mut() {
        sa.children.retain(|c| c.params.spi_in != spi);
    }
    let request = p.expire_spoke_child();
    p.run(vec![], request);
    assert!(p.spoke_child().is_empty(), "CHILD_SA_NOT_FOUND: it goes");
    assert_eq!(downs(&p.spoke_log).len(), 1);
}

#[test]
fn a_hard_lifetime_deletes_the_child_sa_and_an_empty_ike_sa_goes() {
    let mut p = Pair::new("aes256gcm16");
    let spi = p.hub_child()[0].spi_in;
    let actions = p.hub.child_expired(spi, true, p.now, &mut p.pools);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::SessionDown { .. }))
    );
    p.run(actions, vec![]);
    assert!(p.spoke.sas.is_empty() || p.spoke_child().is_empty());
}

/// The hub and one established dial of `spoke1.cisco.com` (asking for an
/// address), with the actions of the dial.
fn dial_once(hub: &mut Engine, pools: &mut MemPools, seed: u64) -> Vec<Action> {
    let mut config = spoke("aes256-sha256-x25519", "aes256gcm16", Mode::Transport);
    config.request_address = true;
    let (result, actions) = dial(hub, pools, config, seed);
    result.unwrap();
    actions
}

#[test]
fn a_spoke_that_dials_again_replaces_its_old_session_and_keeps_its_address() {
    let mut hub = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let first = dial_once(&mut hub, &mut pools, 1);
    let first_child = child_up(&first);
    // The spoke rebooted: a new dial, with INITIAL_CONTACT as every dial
    // of ours sends.
    let second = dial_once(&mut hub, &mut pools, 2);
    let down = second
        .iter()
        .position(|a| matches!(a, Action::SessionDown { .. }))
        .expect("the old session goes");
    let up = second
        .iter()
        .position(|a| matches!(a, Action::ChildUp(_)))
        .unwrap();
    assert!(
        down < up,
        "the old one goes before the new one is installed"
    );
    assert!(
        second.iter().any(
            |a| matches!(a, Action::ChildDown { spi_in, .. } if *spi_in == first_child.spi_in)
        )
    );
    // INITIAL_CONTACT: the peer has nothing left to be told (no DELETE).
    assert_eq!(sends(&second).len(), 2, "only the two responses");
    assert_eq!(hub.sas.len(), 1, "exactly one IKE SA");
    assert!(pools.released.is_empty(), "the address stays the spoke's");
    assert_eq!(child_up(&second).peer_inner, first_child.peer_inner);
}

/// The SAs an IKE rekey makes, either end's, belong to the spoke's
/// identity as the first did: a new dial of the spoke replaces them, and
/// once they are gone the identity is forgotten.
#[test]
fn a_spoke_that_dials_again_replaces_the_sa_its_ike_rekey_made() {
    for hub_rekeys in [false, true] {
        let mut p = Pair::new("aes256gcm16");
        let (first, second) = if hub_rekeys {
            (&mut p.spoke, &mut p.hub)
        } else {
            (&mut p.hub, &mut p.spoke)
        };
        for sa in first.sas.values_mut() {
            sa.rekey_at = None;
        }
        for sa in second.sas.values_mut() {
            sa.rekey_at = Some(p.now);
        }
        let request = second.tick(p.now, &mut NoPools);
        if hub_rekeys {
            p.run(request, vec![]);
        } else {
            p.run(vec![], request);
        }
        let rekeyed = *p.hub.sas.keys().next().unwrap();
        assert_eq!(p.hub.sas.len(), 1, "the old IKE SA went");
        let again = dial_once(&mut p.hub, &mut p.pools, 3);
        assert!(
            again
                .iter()
                .any(|a| matches!(a, Action::SessionDown { .. })),
            "hub rekeyed: {hub_rekeys}"
        );
        assert_eq!(p.hub.sas.len(), 1);
        assert!(!p.hub.sas.contains_key(&rekeyed));
        let all = p.hub.shutdown(&mut p.pools);
        assert!(all.iter().any(|a| matches!(a, Action::SessionDown { .. })));
        assert!(p.hub.by_identity.is_empty(), "{:?}", p.hub.by_identity);
    }
}

#[test]
fn an_authenticated_message_from_a_new_port_moves_the_sa_and_its_child_sas() {
    let mut p = Pair::new("aes256gcm16");
    // The spoke's NAT rebinds: its requests now come from port 40000.
    let moved = SocketAddrV4::new(*SPOKE.ip(), 40_000);
    let request = p.expire_spoke_child();
    let packet = sends(&request).remove(0);
    let actions = p
        .hub
        .handle(p.now, HUB, moved, &packet, &mut p.pools)
        .unwrap();
    let moves: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::PeerMoved { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(moves, vec![(SPOKE, moved)]);
    // The answer goes to the new endpoint, and so does the new CHILD_SA.
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Send { remote, .. } if *remote == moved))
    );
    let sa = p.hub.sas.values().next().unwrap();
    assert_eq!(sa.remote, moved);
    // An unauthenticated copy from elsewhere moves nothing.
    let mut forged = packet.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let elsewhere = SocketAddrV4::new(*SPOKE.ip(), 50_000);
    let _ = p.hub.handle(p.now, HUB, elsewhere, &forged, &mut p.pools);
    assert_eq!(p.hub.sas.values().next().unwrap().remote, moved);
    // ESP from yet another port (the datapath's report) moves it too.
    let spi_in = p.hub_child()[0].spi_in;
    let esp_from = SocketAddrV4::new(*SPOKE.ip(), 41_000);
    let actions = p.hub.esp_moved(spi_in, esp_from);
    assert!(matches!(actions[..], [Action::PeerMoved { to, .. }] if to == esp_from));
    for c in p.hub_child() {
        if let Some((_, port)) = c.encap {
            assert_eq!(port, 41_000);
        }
        assert_eq!(c.remote, *SPOKE.ip());
    }
}

#[test]
fn an_accepted_sa_is_rekeyed_by_the_hub_when_its_profile_lifetime_runs_out() {
    let mut p = Pair::new("aes256gcm16");
    let hub_sa = p.hub.sas.values().next().unwrap();
    let (rekey_at, expire_at) = (hub_sa.rekey_at.unwrap(), hub_sa.expire_at.unwrap());
    // 85-95 % of the IOS default of 86,400 s, then the hard end.
    // (The dial's clock ran a little before the pair's.)
    let life = expire_at.saturating_duration_since(p.now);
    assert!(life.abs_diff(Duration::from_hours(24)) < Duration::from_secs(1));
    assert!(rekey_at - p.now >= life.mul_f64(0.85) && rekey_at < expire_at);
    for sa in p.spoke.sas.values_mut() {
        sa.rekey_at = None;
    }
    p.now = rekey_at;
    let request = p.hub.tick(p.now, &mut p.pools);
    p.run(request, vec![]);
    assert!(p.hub.sas.values().next().unwrap().keymat.initiator);
    p.assert_agree();
}

#[test]
fn esn_is_chosen_when_both_ends_offer_it_and_not_otherwise() {
    // Our spoke and our hub: ESN, kept across a rekey.
    let mut p = Pair::new("aes256gcm16");
    assert!(p.hub_child()[0].esp.esn && p.spoke_child()[0].esp.esn);
    let request = p.expire_spoke_child();
    p.run(vec![], request);
    assert!(p.hub_child()[0].esp.esn);
    // A spoke that says `noesn` (or, like strongSwan by default, offers
    // only "no ESN") gets none.
    let mut hub = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let config = spoke("aes256-sha256-x25519", "aes256gcm16-noesn", Mode::Transport);
    let (result, actions) = dial(&mut hub, &mut pools, config, 5);
    assert!(!result.unwrap().child.unwrap().esp.esn);
    assert!(!child_up(&actions).esp.esn);
}
