//! BGP-4 (RFC 4271) for the overlay: iBGP with the spokes as dynamic
//! neighbors (IOS `bgp listen range`), static neighbors (the inter-hub
//! session), aggregates and route reflection.
//!
//! The folder, protocol cores first (no I/O in them):
//!
//! - `types`: the messages and path attributes the others share.
//! - `wire/`: the codec, by hand, between bytes and `types` (header and
//!   framing, OPEN, UPDATE, path attributes, NOTIFICATION codes).
//! - `fsm/`: one session's state machine (RFC 4271 section 8): events and
//!   the time in, actions out.
//! - `rib/`: Adj-RIBs-In, the Loc-RIB with best-path selection and
//!   aggregation, the Adj-RIBs-Out per update group: UPDATEs in, UPDATEs
//!   to send and FIB changes out.
//! - `neighbors`: who may connect (static neighbors, listen ranges, the
//!   listen limit) and with which settings.
//!
//! and the tasks around them (holo-bgp's `tasks` / `events` split):
//!
//! - `session`: a task per session that owns its TCP connection and FSM
//!   and tells the instance what happened.
//! - `events`: what the tasks send the instance (one channel) and what it
//!   sends a session back (its control channel, encoded messages to its
//!   writer).
//! - `speaker/`: the instance (the neighbor table and the RIB, the task
//!   that changes them and sends the UPDATEs), the listener, the FIB the
//!   best routes go into, the kernel routing-table scan; [`speaker::Speaker`]
//!   is the handle the daemon holds.
//! - `show`: `show bgp summary` and `show bgp`, built from the instance's
//!   tables as `gateway_report::bgp` types and rendered as IOS text.
//!
//! Dependencies point one way: `session` and `speaker` both use `events`;
//! `speaker` starts sessions and builds its views with `show`; none of
//! those is used by the cores.

pub mod events;
pub mod fsm;
pub mod neighbors;
pub mod rib;
pub mod session;
pub mod show;
pub mod speaker;
pub mod types;
pub mod wire;
