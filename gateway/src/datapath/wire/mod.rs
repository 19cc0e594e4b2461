//! Packet codecs and in-place edits for the userspace datapath: GRE (RFC
//! 2784/2890) encapsulation and decapsulation, IPv4 headers and their
//! checksums (RFC 791, 1071, 1624), TCP MSS clamping (IOS `ip tcp
//! adjust-mss`) and the ICMP "fragmentation needed" error (RFC 1191).
//!
//! Shaped like `ike::wire` and smoltcp's `wire`: checked views over the
//! caller's bytes, representations that parse and emit. Unlike IKE, all of
//! this runs once per packet, so nothing here allocates: every function
//! reads and writes the buffers it is given (headers are emitted in front
//! of a payload already in place), and any input, however malformed, is an
//! error and never a panic.

pub mod gre;
pub mod icmp;
pub mod ipv4;
pub mod tcp_mss;

pub use gre::{GreError, GrePacket, GreRepr, decap};
pub use icmp::{frag_needed, is_icmp_error};
pub use ipv4::{Ipv4Error, Ipv4Packet, Ipv4Repr, checksum, checksum_update};
pub use tcp_mss::{MssError, clamp_mss};

/// Helpers for the per-file tests.
#[cfg(test)]
mod testing {
    /// The byte emit buffers are pre-filled with: a byte the emitter should
    /// have written and skipped stays visible.
    pub const JUNK: u8 = 0xAA;

    /// xorshift64: a small deterministic RNG, so failures replay.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            Self(seed | 1)
        }

        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub fn below(&mut self, bound: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(bound).unwrap_or(1)).unwrap_or(0)
        }

        pub fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }
}
