//! IKEv2 (RFC 7296): the `wire` codec, `crypto` (key exchange, key schedule,
//! SK payload protection, AUTH), the exchange state machine and the socket
//! task.

pub mod crypto;
