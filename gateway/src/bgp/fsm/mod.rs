//! The BGP finite state machine of one session (RFC 4271 section 8), with
//! no I/O: events and the time in, actions out. The neighbor task owns the
//! TCP connection and one clock; it turns what it reads into `Event`s
//! (`Event::from_message`, `Event::from_wire_error`), carries out the
//! `Action`s in order, and sleeps until `next_deadline`, then calls
//! `on_timeout`. The FSM keeps its timers (ConnectRetry, Hold, Keepalive,
//! IdleHold) as deadlines.
//!
//! One FSM per connection: a second connection from the same peer (a
//! collision, RFC 4271 section 6.8) gets its own FSM; the task compares
//! the BGP identifiers and sends `OpenCollisionDump` to the loser.
//!
//! Session choices, and where they depart from the letter of section 8:
//!
//! - Sessions are iBGP or eBGP by `peer_as` against `local_as`; either way
//!   the peer must advertise the 4-octet AS capability (RFC 6793), or it
//!   gets OPEN Message Error / Unsupported Capability with our capability
//!   as data (RFC 5492 section 3): the codec reads AS numbers as four bytes
//!   and keeps no per-session context. Every current IOS, IOS-XE and FRR
//!   sends the capability.
//! - A BGP identifier of 0, or equal to ours on an iBGP session, is a Bad
//!   BGP Identifier (RFC 6286 section 2.2; IOS refuses it too). On eBGP
//!   an identical identifier is allowed, as RFC 6286 says.
//! - Hold time: the smaller of ours and the peer's; 0 means no Hold and no
//!   Keepalive timer; the peer's 1 or 2 is refused (Unacceptable Hold
//!   Time). Keepalives go every min(configured keepalive, hold / 3)
//!   seconds (IOS `timers bgp 60 180`).
//! - PassiveTcpEstablishment (RFC 4271 8.1.1), set by `passive` or by the
//!   ManualStart_with_PassiveTcpEstablishment event: the FSM waits in
//!   Active for the peer and never dials, like IOS dynamic neighbors and
//!   `transport connection-mode passive`; its ConnectRetryTimer is not run.
//! - A NOTIFICATION received in OpenSent closes the connection without an
//!   FSM Error NOTIFICATION in reply (the peer has already closed its
//!   side, section 4.5), as FRR and IOS do.
//! - A message header error is answered with its own NOTIFICATION in every
//!   state (section 6.1), where section 8 would send an FSM Error in
//!   Established.
//! - Automatic restart: a session configured with `idle_hold` restarts
//!   itself (AutomaticStart, section 8.1.2) that long after it fell to
//!   Idle for any reason but ManualStop (static neighbors); dynamic
//!   neighbors have none, and the task drops their FSM when it is Idle.
//! - No DelayOpen, no peer oscillation damping, no jitter on the timers
//!   (section 10 suggests 0.75-1.0: the task can apply it to the deadline
//!   it sleeps until).
//!
//! Layout: this file has the states and their transitions; `config` the
//! session's settings, `open` the OPEN we send and the checks of the
//! peer's.

use std::fmt;
use std::time::{Duration, Instant};

use super::types::{Message, Notification, Open};
use super::wire::{WireError, cease_subcode, error_code, fsm_subcode, open_subcode};

mod config;
mod open;

pub use config::{
    ConfigError, DEFAULT_CONNECT_RETRY, DEFAULT_HOLD_TIME, DEFAULT_IDLE_HOLD, DEFAULT_KEEPALIVE,
    SessionConfig,
};
pub use open::Negotiated;

/// RFC 4271 section 8.2.2: the HoldTimer in OpenSent, "a large value"
/// (4 minutes suggested).
pub const OPEN_SENT_HOLD_TIME: Duration = Duration::from_mins(4);

/// RFC 4271 section 8.2.2 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        })
    }
}

/// FSM events, named after RFC 4271 section 8.1 (number and name in each
/// variant's documentation). Those a session with no DelayOpen and no
/// damping never sees are left out; `RouteRefreshMsg` is RFC 2918's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Event 1: ManualStart (with PassiveTcpEstablishment when the session
    /// is configured `passive`).
    ManualStart,
    /// Event 2: ManualStop.
    ManualStop,
    /// Event 3: AutomaticStart; the FSM raises it itself when IdleHoldTimer
    /// expires.
    AutomaticStart,
    /// Event 4: ManualStart_with_PassiveTcpEstablishment.
    ManualStartWithPassiveTcpEstablishment,
    /// Event 9: ConnectRetryTimer_Expires.
    ConnectRetryTimerExpires,
    /// Event 10: HoldTimer_Expires.
    HoldTimerExpires,
    /// Event 11: KeepaliveTimer_Expires.
    KeepaliveTimerExpires,
    /// Event 13: IdleHoldTimer_Expires.
    IdleHoldTimerExpires,
    /// Event 16: Tcp_CR_Acked: the connection we opened is up.
    TcpCrAcked,
    /// Event 17: TcpConnectionConfirmed: the connection the peer opened is
    /// up.
    TcpConnectionConfirmed,
    /// Event 18: TcpConnectionFails.
    TcpConnectionFails,
    /// Event 19: BGPOpen: an OPEN decoded without error; the FSM makes the
    /// section 6.2 checks that need the session's settings.
    BgpOpen(Open),
    /// Event 21: BGPHeaderErr, with the NOTIFICATION to send.
    BgpHeaderErr(Notification),
    /// Event 22: BGPOpenMsgErr, with the NOTIFICATION to send.
    BgpOpenMsgErr(Notification),
    /// Event 23: OpenCollisionDump: this connection lost a collision.
    OpenCollisionDump,
    /// Event 24: NotifMsgVerErr: a NOTIFICATION with an OPEN Message Error /
    /// Unsupported Version Number.
    NotifMsgVerErr(Notification),
    /// Event 25: NotifMsg.
    NotifMsg(Notification),
    /// Event 26: KeepAliveMsg.
    KeepAliveMsg,
    /// Event 27: UpdateMsg. The task hands the UPDATE to the RIB only if
    /// the FSM is Established after this event.
    UpdateMsg,
    /// Event 28: UpdateMsgErr, with the NOTIFICATION to send.
    UpdateMsgErr(Notification),
    /// RFC 2918 ROUTE-REFRESH: accepted in Established, an FSM error
    /// elsewhere.
    RouteRefreshMsg,
}

impl Event {
    /// The event a decoded message raises.
    pub fn from_message(message: &Message) -> Self {
        match message {
            Message::Open(open) => Self::BgpOpen(open.clone()),
            Message::Update(_) => Self::UpdateMsg,
            Message::Notification(n)
                if n.code == error_code::OPEN_MESSAGE
                    && n.subcode == open_subcode::UNSUPPORTED_VERSION_NUMBER =>
            {
                Self::NotifMsgVerErr(n.clone())
            }
            Message::Notification(n) => Self::NotifMsg(n.clone()),
            Message::Keepalive => Self::KeepAliveMsg,
            Message::RouteRefresh { .. } => Self::RouteRefreshMsg,
        }
    }

    /// The event a message that failed to decode raises, by the error
    /// code of its NOTIFICATION. A ROUTE-REFRESH error (RFC 7313) is
    /// handled like an UPDATE error: NOTIFICATION, then close.
    pub fn from_wire_error(error: &WireError) -> Self {
        let n = error.notification();
        match n.code {
            error_code::MESSAGE_HEADER => Self::BgpHeaderErr(n),
            error_code::OPEN_MESSAGE => Self::BgpOpenMsgErr(n),
            _ => Self::UpdateMsgErr(n),
        }
    }
}

/// Why a session (or an attempt at one) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// ManualStop: Cease / Administrative Shutdown was sent.
    ManualStop,
    /// No KEEPALIVE or UPDATE within the hold time: Hold Timer Expired was
    /// sent.
    HoldTimerExpired,
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// We found an error and sent this NOTIFICATION.
    NotificationSent(Notification),
    /// The TCP connection failed or the peer closed it.
    TcpConnectionFails,
    /// An event the state does not expect, before any OPEN was sent.
    UnexpectedEvent,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ManualStop => f.write_str("administratively shut down"),
            Self::HoldTimerExpired => f.write_str("hold timer expired"),
            Self::NotificationReceived(n) => {
                write!(f, "NOTIFICATION received {}/{}", n.code, n.subcode)
            }
            Self::NotificationSent(n) => write!(f, "NOTIFICATION sent {}/{}", n.code, n.subcode),
            Self::TcpConnectionFails => f.write_str("TCP connection closed"),
            Self::UnexpectedEvent => f.write_str("unexpected event"),
        }
    }
}

/// What the task must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer (answer with `TcpCrAcked` or
    /// `TcpConnectionFails`).
    ConnectTcp,
    /// Close the TCP connection (after sending what came before).
    DropTcp,
    SendOpen(Open),
    SendKeepalive,
    SendNotification(Notification),
    /// The session is up: the RIB may send it routes.
    Established(Negotiated),
    /// An Established session went down: the RIB forgets its routes.
    SessionDown {
        reason: DownReason,
    },
}

/// The state machine of one session.
#[derive(Clone, Debug)]
pub struct Fsm {
    config: SessionConfig,
    state: State,
    /// PassiveTcpEstablishment for the current start.
    passive: bool,
    /// Started and not stopped by ManualStop: restarts after idle hold.
    started: bool,
    connect_retry_counter: u32,
    connect_retry_timer: Option<Instant>,
    hold_timer: Option<Instant>,
    keepalive_timer: Option<Instant>,
    idle_hold_timer: Option<Instant>,
    /// From the peer's accepted OPEN (OpenConfirm and Established).
    negotiated: Option<Negotiated>,
    last_error: Option<DownReason>,
}

impl Fsm {
    /// An Idle session.
    pub fn new(config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            passive: config.passive,
            config,
            state: State::Idle,
            started: false,
            connect_retry_counter: 0,
            connect_retry_timer: None,
            hold_timer: None,
            keepalive_timer: None,
            idle_hold_timer: None,
            negotiated: None,
            last_error: None,
        })
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The negotiated parameters, while Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated
            .as_ref()
            .filter(|_| self.state == State::Established)
    }

    /// RFC 4271 ConnectRetryCounter: failed attempts since the last start.
    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// Why the session last went to Idle.
    pub fn last_error(&self) -> Option<&DownReason> {
        self.last_error.as_ref()
    }

    /// The earliest timer deadline: sleep until then, then `on_timeout`.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.connect_retry_timer,
            self.hold_timer,
            self.keepalive_timer,
            self.idle_hold_timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Raises the events of every timer expired at `now`, earliest first.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        loop {
            let expired = [
                (self.hold_timer, Event::HoldTimerExpires),
                (self.keepalive_timer, Event::KeepaliveTimerExpires),
                (self.connect_retry_timer, Event::ConnectRetryTimerExpires),
                (self.idle_hold_timer, Event::IdleHoldTimerExpires),
            ]
            .into_iter()
            .filter_map(|(deadline, event)| deadline.filter(|d| *d <= now).map(|d| (d, event)))
            .min_by_key(|(deadline, _)| *deadline);
            let Some((_, event)) = expired else {
                return actions;
            };
            actions.extend(self.handle(event, now));
        }
    }

    /// The task sent an UPDATE: it counts as a KEEPALIVE (section 4.4),
    /// so the KeepaliveTimer restarts.
    pub fn update_sent(&mut self, now: Instant) {
        if self.state == State::Established && self.keepalive_timer.is_some() {
            self.restart_keepalive(now);
        }
    }

    /// Processes one event.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        // A timer event means that timer has run out.
        match event {
            Event::ConnectRetryTimerExpires => self.connect_retry_timer = None,
            Event::HoldTimerExpires => self.hold_timer = None,
            Event::KeepaliveTimerExpires => self.keepalive_timer = None,
            Event::IdleHoldTimerExpires => self.idle_hold_timer = None,
            _ => {}
        }
        let mut actions = Vec::new();
        match self.state {
            State::Idle => self.idle(&event, now, &mut actions),
            State::Connect | State::Active => self.connecting(&event, now, &mut actions),
            State::OpenSent => self.open_sent(event, now, &mut actions),
            State::OpenConfirm => self.open_confirm(event, now, &mut actions),
            State::Established => self.established(event, now, &mut actions),
        }
        actions
    }

    // -------------------------------------------------------- the states

    fn idle(&mut self, event: &Event, now: Instant, actions: &mut Vec<Action>) {
        let passive = match event {
            Event::ManualStart => self.config.passive,
            Event::ManualStartWithPassiveTcpEstablishment => true,
            Event::AutomaticStart | Event::IdleHoldTimerExpires => self.passive,
            // The task should not have accepted it: refuse.
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => {
                actions.push(Action::DropTcp);
                return;
            }
            _ => return,
        };
        if matches!(
            event,
            Event::ManualStart | Event::ManualStartWithPassiveTcpEstablishment
        ) {
            self.connect_retry_counter = 0;
        }
        self.started = true;
        self.passive = passive;
        self.idle_hold_timer = None;
        if passive {
            self.state = State::Active;
        } else {
            self.connect_retry_timer = Some(now + self.config.connect_retry);
            actions.push(Action::ConnectTcp);
            self.state = State::Connect;
        }
    }

    /// Connect and Active.
    fn connecting(&mut self, event: &Event, now: Instant, actions: &mut Vec<Action>) {
        match event {
            Event::ManualStart
            | Event::AutomaticStart
            | Event::ManualStartWithPassiveTcpEstablishment => {}
            Event::ManualStop => self.manual_stop(None, now, actions),
            // Passive sessions never dial.
            Event::ConnectRetryTimerExpires if self.passive => {}
            Event::ConnectRetryTimerExpires => {
                if self.state == State::Connect {
                    actions.push(Action::DropTcp);
                }
                self.connect_retry_timer = Some(now + self.config.connect_retry);
                actions.push(Action::ConnectTcp);
                self.state = State::Connect;
            }
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => {
                self.connect_retry_timer = None;
                actions.push(Action::SendOpen(self.our_open()));
                self.hold_timer = Some(now + OPEN_SENT_HOLD_TIME);
                self.state = State::OpenSent;
            }
            // Connect: Idle, the counter unchanged; Active: counted.
            Event::TcpConnectionFails => {
                let count = self.state == State::Active;
                self.go_idle(DownReason::TcpConnectionFails, count, now, actions);
            }
            _ => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::UnexpectedEvent, true, now, actions);
            }
        }
    }

    fn open_sent(&mut self, event: Event, now: Instant, actions: &mut Vec<Action>) {
        match event {
            Event::ManualStart
            | Event::AutomaticStart
            | Event::ManualStartWithPassiveTcpEstablishment
            // A second connection has an FSM of its own.
            | Event::TcpCrAcked
            | Event::TcpConnectionConfirmed => {}
            Event::ManualStop => self.manual_stop(Some(cease_subcode::ADMINISTRATIVE_SHUTDOWN), now, actions),
            Event::HoldTimerExpires => self.hold_timer_expired(now, actions),
            Event::TcpConnectionFails => {
                // Close, listen again (section 8.2.2, OpenSent).
                actions.push(Action::DropTcp);
                self.stop_timers();
                if !self.passive {
                    self.connect_retry_timer = Some(now + self.config.connect_retry);
                }
                self.last_error = Some(DownReason::TcpConnectionFails);
                self.state = State::Active;
            }
            Event::BgpOpen(open) => match self.check_open(&open) {
                Ok(negotiated) => {
                    self.connect_retry_timer = None;
                    actions.push(Action::SendKeepalive);
                    if negotiated.hold_time == 0 {
                        self.hold_timer = None;
                        self.keepalive_timer = None;
                    } else {
                        self.hold_timer =
                            Some(now + Duration::from_secs(negotiated.hold_time.into()));
                        self.keepalive_timer =
                            Some(now + Duration::from_secs(negotiated.keepalive.into()));
                    }
                    self.negotiated = Some(negotiated);
                    self.state = State::OpenConfirm;
                }
                Err(n) => self.send_error(n, now, actions),
            },
            Event::BgpHeaderErr(n) | Event::BgpOpenMsgErr(n) => self.send_error(n, now, actions),
            Event::OpenCollisionDump => self.collision_dump(now, actions),
            Event::NotifMsgVerErr(n) => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::NotificationReceived(n), false, now, actions);
            }
            Event::NotifMsg(n) => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::NotificationReceived(n), true, now, actions);
            }
            _ => self.fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_OPENSENT, now, actions),
        }
    }

    fn open_confirm(&mut self, event: Event, now: Instant, actions: &mut Vec<Action>) {
        match event {
            Event::ManualStart
            | Event::AutomaticStart
            | Event::ManualStartWithPassiveTcpEstablishment
            | Event::TcpCrAcked
            | Event::TcpConnectionConfirmed => {}
            Event::ManualStop => {
                self.manual_stop(Some(cease_subcode::ADMINISTRATIVE_SHUTDOWN), now, actions);
            }
            Event::HoldTimerExpires => self.hold_timer_expired(now, actions),
            Event::KeepaliveTimerExpires => {
                actions.push(Action::SendKeepalive);
                self.restart_keepalive(now);
            }
            Event::TcpConnectionFails => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::TcpConnectionFails, true, now, actions);
            }
            Event::NotifMsg(n) => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::NotificationReceived(n), true, now, actions);
            }
            Event::NotifMsgVerErr(n) => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::NotificationReceived(n), false, now, actions);
            }
            Event::BgpHeaderErr(n) | Event::BgpOpenMsgErr(n) => self.send_error(n, now, actions),
            Event::OpenCollisionDump => self.collision_dump(now, actions),
            Event::KeepAliveMsg => {
                self.restart_hold(now);
                self.state = State::Established;
                if let Some(negotiated) = &self.negotiated {
                    actions.push(Action::Established(negotiated.clone()));
                }
            }
            _ => self.fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_OPENCONFIRM, now, actions),
        }
    }

    fn established(&mut self, event: Event, now: Instant, actions: &mut Vec<Action>) {
        match event {
            Event::ManualStart
            | Event::AutomaticStart
            | Event::ManualStartWithPassiveTcpEstablishment
            | Event::TcpCrAcked
            | Event::TcpConnectionConfirmed
            // The task answers it (RFC 2918 section 4).
            | Event::RouteRefreshMsg => {}
            Event::ManualStop => {
                self.manual_stop(Some(cease_subcode::ADMINISTRATIVE_SHUTDOWN), now, actions);
            }
            Event::HoldTimerExpires => self.hold_timer_expired(now, actions),
            Event::KeepaliveTimerExpires => {
                actions.push(Action::SendKeepalive);
                self.restart_keepalive(now);
            }
            Event::TcpConnectionFails => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::TcpConnectionFails, true, now, actions);
            }
            Event::NotifMsg(n) | Event::NotifMsgVerErr(n) => {
                actions.push(Action::DropTcp);
                self.go_idle(DownReason::NotificationReceived(n), true, now, actions);
            }
            Event::KeepAliveMsg | Event::UpdateMsg => self.restart_hold(now),
            Event::UpdateMsgErr(n) | Event::BgpHeaderErr(n) => self.send_error(n, now, actions),
            Event::OpenCollisionDump => self.collision_dump(now, actions),
            _ => self.fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_ESTABLISHED, now, actions),
        }
    }

    // ---------------------------------------------------------- helpers

    fn restart_hold(&mut self, now: Instant) {
        if let Some(n) = self.negotiated.as_ref().filter(|n| n.hold_time != 0) {
            self.hold_timer = Some(now + Duration::from_secs(n.hold_time.into()));
        }
    }

    fn restart_keepalive(&mut self, now: Instant) {
        if let Some(n) = self.negotiated.as_ref().filter(|n| n.keepalive != 0) {
            self.keepalive_timer = Some(now + Duration::from_secs(n.keepalive.into()));
        }
    }

    fn stop_timers(&mut self) {
        self.connect_retry_timer = None;
        self.hold_timer = None;
        self.keepalive_timer = None;
    }

    /// Releases the session and goes Idle; a session that was Established
    /// reports `SessionDown`.
    fn go_idle(
        &mut self,
        reason: DownReason,
        count: bool,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.stop_timers();
        if count {
            self.connect_retry_counter = self.connect_retry_counter.saturating_add(1);
        }
        if self.state == State::Established {
            actions.push(Action::SessionDown {
                reason: reason.clone(),
            });
        }
        self.negotiated = None;
        self.last_error = Some(reason);
        self.state = State::Idle;
        if self.started
            && let Some(idle_hold) = self.config.idle_hold
        {
            self.idle_hold_timer = Some(now + idle_hold);
        }
    }

    /// Sends `n`, closes, Idle.
    fn send_error(&mut self, n: Notification, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::SendNotification(n.clone()));
        actions.push(Action::DropTcp);
        self.go_idle(DownReason::NotificationSent(n), true, now, actions);
    }

    fn fsm_error(&mut self, subcode: u8, now: Instant, actions: &mut Vec<Action>) {
        let n = Notification {
            code: error_code::FSM,
            subcode,
            data: vec![],
        };
        self.send_error(n, now, actions);
    }

    fn collision_dump(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let n = Notification {
            code: error_code::CEASE,
            subcode: cease_subcode::CONNECTION_COLLISION_RESOLUTION,
            data: vec![],
        };
        self.send_error(n, now, actions);
    }

    fn hold_timer_expired(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::SendNotification(Notification {
            code: error_code::HOLD_TIMER_EXPIRED,
            subcode: 0,
            data: vec![],
        }));
        actions.push(Action::DropTcp);
        self.go_idle(DownReason::HoldTimerExpired, true, now, actions);
    }

    /// ManualStop: Cease (once an OPEN went out), close, Idle, the counter
    /// zeroed, no restart.
    fn manual_stop(&mut self, cease: Option<u8>, now: Instant, actions: &mut Vec<Action>) {
        if let Some(subcode) = cease {
            actions.push(Action::SendNotification(Notification {
                code: error_code::CEASE,
                subcode,
                data: vec![],
            }));
        }
        actions.push(Action::DropTcp);
        self.started = false;
        self.idle_hold_timer = None;
        self.go_idle(DownReason::ManualStop, false, now, actions);
        self.connect_retry_counter = 0;
    }
}

#[cfg(test)]
mod tests;
