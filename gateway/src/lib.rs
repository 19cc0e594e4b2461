//! The hub gateway: daemon, control plane and datapath glue.
//!
//! Layout (DESIGN.md): one folder per protocol, each with its wire codec, a
//! state machine without I/O and a thin task; `xdp` drives the uplink filter;
//! `control` is the operator's socket; `daemon` wires them together.

pub mod bgp;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod esp;
pub mod ike;
pub mod nhrp;
pub mod pool;
pub mod spoke;
pub mod xdp;
