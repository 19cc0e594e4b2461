//! ESP (RFC 4303) for the userspace datapath: the anti-replay window and
//! in-place packet protection.

pub mod replay;
pub mod sa;
