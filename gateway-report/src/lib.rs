//! The operator views of the gateway as data: one type per `gateway show
//! ... --json` answer, declared once. The daemon fills them (each protocol
//! module's `show.rs` builds its views and renders them as text for the
//! CLI); the integration tests and `cargo xtask demo` deserialize the same
//! types, so a renamed or retyped field breaks the build instead of
//! silently reading as zero.
//!
//! This crate depends on nothing of the gateway (only serde), so the test
//! harness and xtask can use it without building the daemon and its eBPF
//! program. Addresses are `std::net` types; prefixes, SPIs in hex and
//! algorithm names are strings, as the operator reads them.

pub mod bgp;
pub mod counters;
pub mod ike;
pub mod interfaces;
pub mod ipsec;
pub mod loadgen;
pub mod loadgen_bgp;
pub mod nhrp;
pub mod pool;
pub mod tunnels;
pub mod version;
pub mod xdp;
