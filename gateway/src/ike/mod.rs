//! IKEv2 (RFC 7296): the `wire` codec today; later `crypto` (key schedule,
//! SK payload protection), the exchange state machine (no I/O: bytes, time
//! and events in, actions out) and the thin task that owns the UDP 500/4500
//! sockets and timers.

pub mod wire;
