//! IKEv2 (RFC 7296). The folder, from the wire up:
//!
//! - `wire`: the message codec (header, payloads, notify types).
//! - `crypto`: Diffie-Hellman, PRFs, SK payload ciphers, key schedules.
//! - `proposal`, `policy`: what the hub accepts (transforms, profiles,
//!   identities, keyrings), from the config.
//! - `sa`: what the exchanges of one IKE SA share (SPIs, keys and ciphers,
//!   message IDs, retransmission cache, DPD, CHILD_SAs) and the helpers
//!   they all use (sealing, NAT detection, identities); the actions they
//!   hand back.
//! - `exchange/*`: one file per exchange, initiator and responder halves
//!   side by side (`ike_sa_init`, `ike_auth`, `informational`,
//!   `create_child_sa`, `fragments`), and `Initiator`, the sequencer a
//!   dialling spoke drives.
//! - `job`: the expensive steps of answering a handshake (Diffie-Hellman,
//!   key derivation, AUTH) as data in and out, so that they can run on
//!   other threads.
//! - `engine`: the responder's dispatcher: the SA table, each datagram to
//!   its SA and exchange, timers, the public `Engine` API; the jobs it runs
//!   or hands out (`engine::compute`).
//! - `show`: `show crypto ikev2 sa` / `show crypto session`.
//! - `task`: the sockets, the clock and the RNG; carries out the actions.
//! - `workers`: the threads that run the engine's jobs for the task.
//! - `keylog`: the opt-in key log for Wireshark (debugging only).
//!
//! None of it below `task` does I/O: no sockets, clocks, files or RNG of
//! its own. A new exchange gets a file in `exchange/` with both halves, and
//! a line in `Engine::exchange` (and the sequencer, for the initiator); a
//! new notify goes into `wire::notify`, and is read or sent by the exchange
//! it belongs to.

pub mod crypto;
pub mod engine;
pub mod exchange;
pub(crate) mod ids;
pub mod job;
pub mod keylog;
pub(crate) mod lifetime;
pub mod policy;
pub mod proposal;
pub mod sa;
pub mod secrets;
pub mod show;
pub mod task;
#[cfg(test)]
pub(crate) mod tests;
pub mod wire;
pub mod workers;
