//! ESP (RFC 4303) for the userspace datapath: the anti-replay window now;
//! the packet codec and in-place protection come with the datapath issue.

pub mod replay;
