//! The settings of one session (RFC 4271 section 8.1.1's mandatory
//! attributes and the optional ones this FSM has), with IOS's defaults.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::bgp::types::AS_TRANS;

/// IOS default hold time, seconds.
pub const DEFAULT_HOLD_TIME: u16 = 180;
/// IOS default keepalive interval, seconds.
pub const DEFAULT_KEEPALIVE: u16 = 60;
/// RFC 4271 section 10: ConnectRetryTime, suggested 120 seconds.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_mins(2);
/// The restart delay of a static neighbor that fell to Idle.
pub const DEFAULT_IDLE_HOLD: Duration = Duration::from_secs(10);

/// One session's settings (RFC 4271 section 8.1.1's mandatory attributes
/// and the optional ones this FSM has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// The AS the peer must announce (Bad Peer AS otherwise); equal to
    /// `local_as` for iBGP.
    pub peer_as: u32,
    /// Seconds, 0 or 3..=65535.
    pub hold_time: u16,
    /// Seconds, below `hold_time` (0 when `hold_time` is 0).
    pub keepalive: u16,
    /// PassiveTcpEstablishment: wait for the peer to connect.
    pub passive: bool,
    pub connect_retry: Duration,
    /// Restart this long after falling to Idle (not after ManualStop);
    /// `None`: stay Idle.
    pub idle_hold: Option<Duration>,
}

impl SessionConfig {
    /// A static neighbor: dials out, retries, restarts after a failure.
    pub fn active(local_as: u32, router_id: Ipv4Addr, peer_as: u32) -> Self {
        Self {
            local_as,
            router_id,
            peer_as,
            hold_time: DEFAULT_HOLD_TIME,
            keepalive: DEFAULT_KEEPALIVE,
            passive: false,
            connect_retry: DEFAULT_CONNECT_RETRY,
            idle_hold: Some(DEFAULT_IDLE_HOLD),
        }
    }

    /// A dynamic neighbor (IOS `bgp listen range`): passive, and done once
    /// it falls to Idle.
    pub fn passive(local_as: u32, router_id: Ipv4Addr, peer_as: u32) -> Self {
        Self {
            passive: true,
            idle_hold: None,
            ..Self::active(local_as, router_id, peer_as)
        }
    }

    /// IOS `timers KEEPALIVE HOLD`.
    #[must_use]
    pub fn with_timers(mut self, keepalive: u16, hold_time: u16) -> Self {
        self.keepalive = keepalive;
        self.hold_time = hold_time;
        self
    }

    pub fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for asn in [self.local_as, self.peer_as] {
            if asn == 0 || asn == u32::from(AS_TRANS) {
                return Err(ConfigError::Asn(asn));
            }
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        if matches!(self.hold_time, 1 | 2) {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if (self.hold_time == 0 && self.keepalive != 0)
            || (self.hold_time != 0 && self.keepalive >= self.hold_time)
        {
            return Err(ConfigError::Keepalive {
                keepalive: self.keepalive,
                hold_time: self.hold_time,
            });
        }
        if self.connect_retry.is_zero() || self.idle_hold.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroTimer);
        }
        Ok(())
    }
}

/// A `SessionConfig` the FSM cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("AS {0} cannot be used (0 and 23456, AS_TRANS, are reserved)")]
    Asn(u32),
    #[error("router id 0.0.0.0 cannot be used")]
    RouterId,
    #[error("hold time {0} must be 0 (no hold timer) or 3..=65535")]
    HoldTime(u16),
    #[error("keepalive {keepalive} must be below hold time {hold_time} (0 with hold time 0)")]
    Keepalive { keepalive: u16, hold_time: u16 },
    #[error("the connect retry and idle hold times must not be zero")]
    ZeroTimer,
}
