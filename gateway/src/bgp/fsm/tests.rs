//! Two FSMs talking through an in-memory TCP pipe (every message encoded
//! and decoded by `wire`), on a clock the test moves; and single FSMs fed
//! events directly.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use super::*;
use crate::bgp::types::{AS_TRANS, Capability};
use crate::bgp::wire::{self, frame_len};

const AS: u32 = 65001;
const HUB_ID: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const SPOKE_ID: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One end: its FSM, the bytes the other end wrote, what it reported.
struct End {
    fsm: Fsm,
    inbox: Vec<u8>,
    /// The other end closed: seen after the inbox is read.
    fin: bool,
    established: Vec<Negotiated>,
    down: Vec<DownReason>,
    /// Every message it sent.
    sent: Vec<Message>,
    /// When it sent each KEEPALIVE.
    keepalives: Vec<Instant>,
}

impl End {
    fn new(config: SessionConfig) -> Self {
        Self {
            fsm: Fsm::new(config).unwrap(),
            inbox: vec![],
            fin: false,
            established: vec![],
            down: vec![],
            sent: vec![],
            keepalives: vec![],
        }
    }

    fn notifications(&self) -> Vec<(u8, u8)> {
        self.sent
            .iter()
            .filter_map(|m| match m {
                Message::Notification(n) => Some((n.code, n.subcode)),
                _ => None,
            })
            .collect()
    }
}

/// End 0 dials (a static neighbor), end 1 listens (a dynamic neighbor).
struct Pipe {
    ends: [End; 2],
    connected: bool,
    events: VecDeque<(usize, Event)>,
    now: Instant,
    /// Whether the wire carries messages (false: a dead link).
    link_up: bool,
}

impl Pipe {
    fn new(dialer: SessionConfig, listener: SessionConfig) -> Self {
        Self {
            ends: [End::new(dialer), End::new(listener)],
            connected: false,
            events: VecDeque::new(),
            now: Instant::now(),
            link_up: true,
        }
    }

    /// The usual pair: hub dialing with `timers 60 180`, spoke listening.
    fn ibgp() -> Self {
        Self::new(
            SessionConfig::active(AS, HUB_ID, AS),
            SessionConfig::passive(AS, SPOKE_ID, AS),
        )
    }

    fn start(&mut self) {
        self.events
            .push_back((1, Event::ManualStartWithPassiveTcpEstablishment));
        self.events.push_back((0, Event::ManualStart));
        self.run();
    }

    fn apply(&mut self, side: usize, actions: Vec<Action>) {
        let other = 1 - side;
        for action in actions {
            let message = match action {
                Action::ConnectTcp => {
                    if self.ends[other].fsm.state() == State::Active && self.link_up {
                        self.connected = true;
                        self.events.push_back((side, Event::TcpCrAcked));
                        self.events
                            .push_back((other, Event::TcpConnectionConfirmed));
                    } else {
                        self.events.push_back((side, Event::TcpConnectionFails));
                    }
                    continue;
                }
                Action::DropTcp => {
                    if self.connected {
                        self.connected = false;
                        self.ends[other].fin = self.link_up;
                    }
                    continue;
                }
                Action::Established(n) => {
                    self.ends[side].established.push(n);
                    continue;
                }
                Action::SessionDown { reason } => {
                    self.ends[side].down.push(reason);
                    continue;
                }
                Action::SendOpen(open) => Message::Open(open),
                Action::SendKeepalive => {
                    self.ends[side].keepalives.push(self.now);
                    Message::Keepalive
                }
                Action::SendNotification(n) => Message::Notification(n),
            };
            if self.connected && self.link_up {
                wire::encode(&message, &mut self.ends[other].inbox).unwrap();
            }
            self.ends[side].sent.push(message);
        }
    }

    /// Delivers events and bytes until nothing moves.
    fn run(&mut self) {
        loop {
            if let Some((side, event)) = self.events.pop_front() {
                let actions = self.ends[side].fsm.handle(event, self.now);
                self.apply(side, actions);
                continue;
            }
            let mut moved = false;
            for side in 0..2 {
                let end = &mut self.ends[side];
                if let Some(len) = frame_len(&end.inbox).unwrap() {
                    let bytes: Vec<u8> = end.inbox.drain(..len).collect();
                    let event = match wire::decode(&bytes) {
                        Ok(message) => Event::from_message(&message),
                        Err(err) => Event::from_wire_error(&err),
                    };
                    self.events.push_back((side, event));
                    moved = true;
                } else if end.fin {
                    end.fin = false;
                    end.inbox.clear();
                    self.events.push_back((side, Event::TcpConnectionFails));
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock to `until`, firing timers on the way.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            let next = (0..2)
                .filter_map(|s| self.ends[s].fsm.next_deadline().map(|d| (d, s)))
                .min();
            match next {
                Some((deadline, side)) if deadline <= until => {
                    self.now = self.now.max(deadline);
                    let actions = self.ends[side].fsm.on_timeout(self.now);
                    self.apply(side, actions);
                    self.run();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn states(&self) -> (State, State) {
        (self.ends[0].fsm.state(), self.ends[1].fsm.state())
    }
}

// ------------------------------------------------------ two peers

#[test]
fn active_and_passive_reach_established() {
    let mut pipe = Pipe::ibgp();
    assert_eq!(pipe.states(), (State::Idle, State::Idle));
    pipe.start();
    assert_eq!(pipe.states(), (State::Established, State::Established));
    for (side, peer_id) in [(0, SPOKE_ID), (1, HUB_ID)] {
        let end = &pipe.ends[side];
        assert_eq!(end.established.len(), 1);
        let n = &end.established[0];
        assert_eq!(n.peer_as, AS);
        assert_eq!(n.peer_router_id, peer_id);
        assert_eq!((n.hold_time, n.keepalive), (180, 60));
        assert!(n.four_octet_as && n.route_refresh && n.ipv4_unicast);
        assert_eq!(end.fsm.negotiated(), Some(n));
        // OPEN, then KEEPALIVE: nothing else.
        assert!(matches!(
            end.sent[..],
            [Message::Open(_), Message::Keepalive]
        ));
    }
    let Message::Open(open) = &pipe.ends[0].sent[0] else {
        unreachable!()
    };
    assert_eq!(open.my_as, 65001);
    assert_eq!(open.hold_time, 180);
    assert_eq!(open.asn(), AS);
}

#[test]
fn four_byte_as_goes_as_as_trans() {
    let big = 4_200_000_000;
    let mut pipe = Pipe::new(
        SessionConfig::active(big, HUB_ID, big),
        SessionConfig::passive(big, SPOKE_ID, big),
    );
    pipe.start();
    assert_eq!(pipe.states(), (State::Established, State::Established));
    let Message::Open(open) = &pipe.ends[0].sent[0] else {
        unreachable!()
    };
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(pipe.ends[1].established[0].peer_as, big);
}

#[test]
fn keepalives_every_hold_over_three_keep_the_session_up() {
    // Hub 60/180, spoke 30/90: hold 90, keepalives at 30 (and our 60 is
    // capped to hold / 3).
    let mut pipe = Pipe::new(
        SessionConfig::active(AS, HUB_ID, AS),
        SessionConfig::passive(AS, SPOKE_ID, AS).with_timers(30, 90),
    );
    pipe.start();
    let start = pipe.now;
    for end in &pipe.ends {
        assert_eq!(end.fsm.negotiated().unwrap().hold_time, 90);
        assert_eq!(end.fsm.negotiated().unwrap().keepalive, 30);
    }
    pipe.advance(secs(600));
    assert_eq!(pipe.states(), (State::Established, State::Established));
    for end in &pipe.ends {
        let times: Vec<u64> = end
            .keepalives
            .iter()
            .map(|t| t.duration_since(start).as_secs())
            .collect();
        // The first went in OpenSent; then one every 30 s.
        assert_eq!(times, (0..=20).map(|i| i * 30).collect::<Vec<_>>());
        assert!(end.down.is_empty());
    }
}

#[test]
fn hold_timer_expiry_sends_hold_timer_expired_and_goes_idle() {
    let mut pipe = Pipe::new(
        SessionConfig::active(AS, HUB_ID, AS).with_timers(3, 9),
        SessionConfig::passive(AS, SPOKE_ID, AS).with_timers(3, 9),
    );
    pipe.start();
    // The link dies: nothing arrives any more, nor does a FIN.
    pipe.link_up = false;
    let died = pipe.now;
    pipe.advance(secs(8));
    assert_eq!(pipe.states(), (State::Established, State::Established));
    pipe.advance(secs(1));
    assert_eq!(pipe.states(), (State::Idle, State::Idle));
    for end in &pipe.ends {
        assert_eq!(end.notifications(), vec![(4, 0)]);
        assert_eq!(end.down, vec![DownReason::HoldTimerExpired]);
        assert_eq!(end.fsm.last_error(), Some(&DownReason::HoldTimerExpired));
        assert_eq!(end.fsm.negotiated(), None);
    }
    assert_eq!(pipe.now.duration_since(died), secs(9));
    // The static neighbor restarts after its idle hold; the dynamic one
    // stays Idle (the task drops it).
    assert_eq!(
        pipe.ends[0].fsm.next_deadline(),
        Some(pipe.now + DEFAULT_IDLE_HOLD)
    );
    assert_eq!(pipe.ends[1].fsm.next_deadline(), None);
}

#[test]
fn static_neighbor_reconnects_after_a_drop() {
    let mut pipe = Pipe::ibgp();
    pipe.start();
    // The spoke is stopped and started again (a new dynamic FSM).
    let actions = pipe.ends[1].fsm.handle(Event::ManualStop, pipe.now);
    pipe.apply(1, actions);
    pipe.run();
    assert_eq!(pipe.states(), (State::Idle, State::Idle));
    assert_eq!(
        pipe.ends[0].down,
        vec![DownReason::NotificationReceived(Notification {
            code: 6,
            subcode: 2,
            data: vec![]
        })]
    );
    pipe.events
        .push_back((1, Event::ManualStartWithPassiveTcpEstablishment));
    pipe.run();
    pipe.advance(DEFAULT_IDLE_HOLD);
    assert_eq!(pipe.states(), (State::Established, State::Established));
    assert_eq!(pipe.ends[0].established.len(), 2);
}

#[test]
fn hold_time_zero_means_no_keepalives() {
    let mut pipe = Pipe::new(
        SessionConfig::active(AS, HUB_ID, AS).with_timers(0, 0),
        SessionConfig::passive(AS, SPOKE_ID, AS),
    );
    pipe.start();
    assert_eq!(pipe.states(), (State::Established, State::Established));
    for end in &pipe.ends {
        let n = end.fsm.negotiated().unwrap();
        assert_eq!((n.hold_time, n.keepalive), (0, 0));
        assert_eq!(end.fsm.next_deadline(), None);
    }
    pipe.advance(secs(3600));
    assert_eq!(pipe.states(), (State::Established, State::Established));
    assert_eq!(pipe.ends[0].keepalives.len(), 1, "only the one in OpenSent");
}

#[test]
fn bad_peer_as_is_refused() {
    let mut pipe = Pipe::new(
        SessionConfig::active(65002, HUB_ID, AS),
        SessionConfig::passive(AS, SPOKE_ID, AS),
    );
    pipe.start();
    assert_eq!(pipe.states(), (State::Idle, State::Idle));
    assert_eq!(pipe.ends[1].notifications(), vec![(2, 2)]);
    assert!(pipe.ends[0].notifications().is_empty());
    assert_eq!(
        pipe.ends[0].fsm.last_error(),
        Some(&DownReason::NotificationReceived(Notification {
            code: 2,
            subcode: 2,
            data: vec![]
        }))
    );
    assert!(
        pipe.ends
            .iter()
            .all(|e| e.established.is_empty() && e.down.is_empty())
    );
}

#[test]
fn identical_router_ids_are_refused_on_ibgp_only() {
    let mut pipe = Pipe::new(
        SessionConfig::active(AS, HUB_ID, AS),
        SessionConfig::passive(AS, HUB_ID, AS),
    );
    pipe.start();
    assert_eq!(pipe.states(), (State::Idle, State::Idle));
    assert_eq!(pipe.ends[1].notifications(), vec![(2, 3)]);

    let mut pipe = Pipe::new(
        SessionConfig::active(65002, HUB_ID, AS),
        SessionConfig::passive(AS, HUB_ID, 65002),
    );
    pipe.start();
    assert_eq!(pipe.states(), (State::Established, State::Established));
}

#[test]
fn notification_received_goes_idle() {
    let mut pipe = Pipe::ibgp();
    pipe.start();
    let cease = Notification {
        code: 6,
        subcode: 4,
        data: vec![],
    };
    let actions = pipe.ends[0]
        .fsm
        .handle(Event::NotifMsg(cease.clone()), pipe.now);
    assert_eq!(
        actions,
        vec![
            Action::DropTcp,
            Action::SessionDown {
                reason: DownReason::NotificationReceived(cease)
            }
        ]
    );
    assert_eq!(pipe.ends[0].fsm.state(), State::Idle);
    assert_eq!(pipe.ends[0].fsm.connect_retry_counter(), 1);
}

#[test]
fn manual_stop_sends_cease() {
    let mut pipe = Pipe::ibgp();
    pipe.start();
    let actions = pipe.ends[0].fsm.handle(Event::ManualStop, pipe.now);
    assert_eq!(
        actions,
        vec![
            Action::SendNotification(Notification {
                code: 6,
                subcode: 2,
                data: vec![]
            }),
            Action::DropTcp,
            Action::SessionDown {
                reason: DownReason::ManualStop
            },
        ]
    );
    pipe.apply(0, actions);
    pipe.run();
    assert_eq!(pipe.states(), (State::Idle, State::Idle));
    // Stopped by hand: no restart, counter zero.
    assert_eq!(pipe.ends[0].fsm.next_deadline(), None);
    assert_eq!(pipe.ends[0].fsm.connect_retry_counter(), 0);
    assert_eq!(pipe.ends[1].down.len(), 1);
}

// ------------------------------------------------------ one FSM

fn open_from_spoke() -> Open {
    Open {
        my_as: 65001,
        hold_time: 180,
        router_id: SPOKE_ID,
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(AS),
        ],
    }
}

/// A hub FSM (passive) with a connection, in OpenSent.
fn open_sent() -> (Fsm, Instant) {
    let now = Instant::now();
    let mut fsm = Fsm::new(SessionConfig::passive(AS, HUB_ID, AS)).unwrap();
    assert!(fsm.handle(Event::ManualStart, now).is_empty());
    assert_eq!(fsm.state(), State::Active);
    assert_eq!(fsm.next_deadline(), None, "a passive session does not dial");
    let actions = fsm.handle(Event::TcpConnectionConfirmed, now);
    assert!(matches!(actions[..], [Action::SendOpen(_)]));
    assert_eq!(fsm.state(), State::OpenSent);
    assert_eq!(fsm.next_deadline(), Some(now + OPEN_SENT_HOLD_TIME));
    (fsm, now)
}

fn refused_with(open: Open) -> Notification {
    let (mut fsm, now) = open_sent();
    let actions = fsm.handle(Event::BgpOpen(open), now);
    assert_eq!(fsm.state(), State::Idle);
    match &actions[..] {
        [Action::SendNotification(n), Action::DropTcp] => n.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unacceptable_hold_time_is_refused() {
    for hold_time in [1, 2] {
        let n = refused_with(Open {
            hold_time,
            ..open_from_spoke()
        });
        assert_eq!((n.code, n.subcode), (2, 6));
    }
    let (mut fsm, now) = open_sent();
    fsm.handle(
        Event::BgpOpen(Open {
            hold_time: 3,
            ..open_from_spoke()
        }),
        now,
    );
    fsm.handle(Event::KeepAliveMsg, now);
    let n = fsm.negotiated().unwrap();
    assert_eq!((n.hold_time, n.keepalive), (3, 1));
}

#[test]
fn open_checks() {
    let n = refused_with(Open {
        router_id: Ipv4Addr::UNSPECIFIED,
        ..open_from_spoke()
    });
    assert_eq!((n.code, n.subcode), (2, 3));

    // No 4-octet AS capability: Unsupported Capability with ours as data.
    let n = refused_with(Open {
        capabilities: vec![Capability::RouteRefresh],
        ..open_from_spoke()
    });
    assert_eq!(
        (n.code, n.subcode, n.data),
        (2, 7, vec![65, 4, 0, 0, 0xfd, 0xe9])
    );

    // The 4-octet AS decides, not the 2-byte field.
    let n = refused_with(Open {
        capabilities: vec![Capability::FourOctetAs(65009)],
        ..open_from_spoke()
    });
    assert_eq!((n.code, n.subcode), (2, 2));
}

#[test]
fn negotiation_outcome() {
    let (mut fsm, now) = open_sent();
    let open = Open {
        capabilities: vec![
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::Other {
                code: 128,
                value: vec![],
            },
            Capability::FourOctetAs(AS),
        ],
        ..open_from_spoke()
    };
    assert_eq!(
        fsm.handle(Event::BgpOpen(open.clone()), now),
        vec![Action::SendKeepalive]
    );
    assert_eq!(fsm.state(), State::OpenConfirm);
    assert_eq!(fsm.negotiated(), None, "exposed once Established");
    let actions = fsm.handle(Event::KeepAliveMsg, now);
    let [Action::Established(n)] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert!(n.route_refresh, "Cisco's pre-standard code counts");
    assert!(!n.ipv4_unicast, "only IPv6 announced");
    assert_eq!(n.peer_capabilities, open.capabilities);
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let (mut fsm, now) = open_sent();
    let actions = fsm.handle(Event::KeepAliveMsg, now);
    assert_eq!(
        actions,
        vec![
            Action::SendNotification(Notification {
                code: 5,
                subcode: 1,
                data: vec![]
            }),
            Action::DropTcp
        ]
    );

    let (mut fsm, now) = open_sent();
    fsm.handle(Event::BgpOpen(open_from_spoke()), now);
    let actions = fsm.handle(Event::UpdateMsg, now);
    assert!(matches!(
        &actions[..],
        [
            Action::SendNotification(Notification {
                code: 5,
                subcode: 2,
                ..
            }),
            Action::DropTcp
        ]
    ));

    let (mut fsm, now) = open_sent();
    fsm.handle(Event::BgpOpen(open_from_spoke()), now);
    fsm.handle(Event::KeepAliveMsg, now);
    let actions = fsm.handle(Event::BgpOpen(open_from_spoke()), now);
    assert!(matches!(
        &actions[..],
        [
            Action::SendNotification(Notification {
                code: 5,
                subcode: 3,
                ..
            }),
            Action::DropTcp,
            Action::SessionDown { .. }
        ]
    ));
}

#[test]
fn decode_errors_send_their_notification() {
    let (mut fsm, now) = open_sent();
    fsm.handle(Event::BgpOpen(open_from_spoke()), now);
    fsm.handle(Event::KeepAliveMsg, now);
    // An UPDATE without NEXT_HOP.
    let mut bytes = vec![0xff; 16];
    let body = [0, 0, 0, 7, 0x40, 1, 1, 0, 0x40, 2, 0, 24, 10, 1, 2];
    bytes.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(&body);
    let err = wire::decode(&bytes).unwrap_err();
    let actions = fsm.handle(Event::from_wire_error(&err), now);
    let n = Notification {
        code: 3,
        subcode: 3,
        data: vec![3],
    };
    assert_eq!(
        actions,
        vec![
            Action::SendNotification(n.clone()),
            Action::DropTcp,
            Action::SessionDown {
                reason: DownReason::NotificationSent(n)
            }
        ]
    );
}

#[test]
fn update_and_keepalive_restart_the_hold_timer_and_updates_sent_the_keepalive_timer() {
    let (mut fsm, t0) = open_sent();
    fsm.handle(Event::BgpOpen(open_from_spoke()), t0);
    fsm.handle(Event::KeepAliveMsg, t0);
    assert_eq!(fsm.next_deadline(), Some(t0 + secs(60)));
    let t1 = t0 + secs(50);
    fsm.handle(Event::UpdateMsg, t1);
    fsm.update_sent(t1);
    assert_eq!(fsm.next_deadline(), Some(t1 + secs(60)));
    assert_eq!(fsm.on_timeout(t1 + secs(60)), vec![Action::SendKeepalive]);
    // Hold: 180 s after the last UPDATE.
    let actions = fsm.on_timeout(t1 + secs(180));
    assert!(actions.contains(&Action::SessionDown {
        reason: DownReason::HoldTimerExpired
    }));
}

#[test]
fn active_session_retries_and_restarts() {
    let t0 = Instant::now();
    let config = SessionConfig::active(AS, HUB_ID, AS);
    let mut fsm = Fsm::new(config).unwrap();
    assert_eq!(fsm.handle(Event::ManualStart, t0), vec![Action::ConnectTcp]);
    assert_eq!(fsm.state(), State::Connect);
    // No answer: ConnectRetryTimer.
    let t1 = t0 + DEFAULT_CONNECT_RETRY;
    assert_eq!(fsm.next_deadline(), Some(t1));
    assert_eq!(
        fsm.on_timeout(t1),
        vec![Action::DropTcp, Action::ConnectTcp]
    );
    assert_eq!(fsm.state(), State::Connect);
    // Refused: Idle, then AutomaticStart after the idle hold time.
    assert!(fsm.handle(Event::TcpConnectionFails, t1).is_empty());
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(fsm.last_error(), Some(&DownReason::TcpConnectionFails));
    let t2 = t1 + DEFAULT_IDLE_HOLD;
    assert_eq!(fsm.next_deadline(), Some(t2));
    assert_eq!(fsm.on_timeout(t2), vec![Action::ConnectTcp]);
    assert_eq!(fsm.state(), State::Connect);
    // ManualStop in Connect: no NOTIFICATION (no OPEN went out).
    assert_eq!(fsm.handle(Event::ManualStop, t2), vec![Action::DropTcp]);
    assert_eq!(fsm.next_deadline(), None);
}

#[test]
fn tcp_failure_in_open_sent_goes_back_to_active() {
    let (mut fsm, now) = open_sent();
    assert_eq!(
        fsm.handle(Event::TcpConnectionFails, now),
        vec![Action::DropTcp]
    );
    assert_eq!(fsm.state(), State::Active);
    assert_eq!(fsm.next_deadline(), None);
}

#[test]
fn version_notification_is_not_counted() {
    let (mut fsm, now) = open_sent();
    let n = Notification {
        code: 2,
        subcode: 1,
        data: vec![0, 4],
    };
    let event = Event::from_message(&Message::Notification(n.clone()));
    assert_eq!(event, Event::NotifMsgVerErr(n));
    assert_eq!(fsm.handle(event, now), vec![Action::DropTcp]);
    assert_eq!(fsm.connect_retry_counter(), 0);
}

#[test]
fn config_is_checked() {
    let good = SessionConfig::active(AS, HUB_ID, AS);
    assert!(Fsm::new(good.clone()).is_ok());
    for (bad, err) in [
        (good.clone().with_timers(1, 2), ConfigError::HoldTime(2)),
        (
            good.clone().with_timers(30, 30),
            ConfigError::Keepalive {
                keepalive: 30,
                hold_time: 30,
            },
        ),
        (
            SessionConfig::active(AS, Ipv4Addr::UNSPECIFIED, AS),
            ConfigError::RouterId,
        ),
        (
            SessionConfig::active(u32::from(AS_TRANS), HUB_ID, AS),
            ConfigError::Asn(23456),
        ),
    ] {
        assert_eq!(Fsm::new(bad).unwrap_err(), err);
    }
}
