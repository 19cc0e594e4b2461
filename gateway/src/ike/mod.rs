//! IKEv2 (RFC 7296): the wire codec (`wire`), the cryptography (`crypto`),
//! what the hub accepts (`proposal`, `policy`), the exchanges as a state
//! machine without I/O (`engine`), the socket task (`task`), and an opt-in
//! key log for decrypting captures with Wireshark (`keylog`).

pub mod crypto;
pub mod engine;
pub mod initiator;
pub mod keylog;
pub mod policy;
pub mod proposal;
pub mod task;
#[cfg(test)]
pub(crate) mod tests;
pub mod wire;
