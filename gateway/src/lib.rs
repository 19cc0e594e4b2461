//! The hub gateway: daemon, control plane and datapath glue.
//!
//! Layout (ARCHITECTURE.md): one folder per protocol (`ike`, `bgp`, `nhrp`),
//! each with its wire codec, a state machine without I/O and a thin task;
//! `session` turns IKE sessions into interfaces, SAs and routes; `iface` is
//! the contract with the two datapaths (`datapath`); `ipsec` and `net` hold
//! the types they all share; `sys` is the OS layer; `xdp` drives the uplink
//! filter; `control` is the operator's socket; `daemon` wires them together.

pub mod bgp;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod esp;
pub mod iface;
pub mod ike;
pub mod ipsec;
pub mod net;
pub mod nhrp;
pub mod pool;
pub mod session;
pub mod spoke;
pub mod sys;
pub mod xdp;
