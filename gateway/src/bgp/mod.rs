//! BGP-4 (RFC 4271) for the overlay: iBGP with the spokes as dynamic
//! neighbors (IOS `bgp listen range`), static neighbors (the inter-hub
//! session), aggregates and route reflection.
//!
//! Layout (DESIGN.md): `wire` (the codec, written by hand, into the types
//! below), `fsm` (the RFC 4271 section 8 state machine, no I/O),
//! `rib` (Adj-RIB-In, Loc-RIB with best-path selection, origination and
//! what each peer is sent), `session` (a task per session: the socket and
//! the FSM's timers) and `speaker` (the listener, the static neighbors, the
//! RIB they share and what it installs).

pub mod events;
pub mod fsm;
pub mod neighbors;
pub mod rib;
pub mod session;
pub mod show;
pub mod speaker;
pub mod types;
pub mod wire;
