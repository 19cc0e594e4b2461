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

        /// In `0..bound` (0 when `bound` is 0).
        pub fn below(&mut self, bound: usize) -> usize {
            let bound = u64::try_from(bound.max(1)).unwrap_or(u64::MAX);
            usize::try_from(self.next() % bound).unwrap_or(0)
        }

        pub fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }
}

/// The packets built here, dissected by tshark: an independent check of
/// the byte layouts and every checksum.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{io::ErrorKind, net::Ipv4Addr, path::Path, process::Command};

    use super::*;
    use crate::net::{ETH_P_IPV4, IPPROTO_GRE, IPPROTO_UDP};

    const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
    const SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 2);

    /// A pcap file (LINKTYPE_RAW: each packet starts with its IP header).
    fn write_pcap(path: &Path, packets: &[&[u8]]) {
        // Global header: magic, version 2.4, zone, sigfigs, snaplen, link.
        let mut file = 0xa1b2_c3d4_u32.to_le_bytes().to_vec();
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&4u16.to_le_bytes());
        for word in [0, 0, 65_535, 101_u32] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        for (seconds, packet) in (1_u32..).zip(packets) {
            let len = u32::try_from(packet.len()).unwrap();
            for word in [seconds, 0, len, len] {
                file.extend_from_slice(&word.to_le_bytes());
            }
            file.extend_from_slice(packet);
        }
        std::fs::write(path, file).unwrap();
    }

    /// `inner` in GRE (`gre`) in IPv4 from SPOKE to HUB.
    fn encapsulate(gre: GreRepr, inner: &[u8]) -> Vec<u8> {
        let outer = Ipv4Repr {
            src: SPOKE,
            dst: HUB,
            protocol: IPPROTO_GRE,
            ttl: 255,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len: gre.header_len() + inner.len(),
        };
        let mut packet = vec![testing::JUNK; outer.total_len()];
        packet[outer.header_len() + gre.header_len()..].copy_from_slice(inner);
        outer.emit(&mut packet).unwrap();
        gre.emit(&mut packet[outer.header_len()..]).unwrap();
        packet
    }

    #[test]
    fn tshark_agrees() {
        let mut clamped = tcp_mss::tests::SYN;
        assert_eq!(clamp_mss(&mut clamped, 1360), Ok(true));
        let gre_full = encapsulate(
            GreRepr {
                checksum: true,
                key: Some(1),
                sequence: Some(5),
                protocol: ETH_P_IPV4,
            },
            &clamped,
        );
        let gre_plain = encapsulate(
            GreRepr {
                protocol: ETH_P_IPV4,
                ..GreRepr::default()
            },
            &tcp_mss::tests::SYN,
        );
        let mut icmp_syn = [0; 600];
        let len = frag_needed(&tcp_mss::tests::SYN, HUB, 1400, &mut icmp_syn).unwrap();
        let icmp_syn = &icmp_syn[..len];
        // A full-sized UDP datagram (no UDP checksum), quoted up to 576
        // bytes.
        let mut big = vec![0; 1500];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 1, 1, 100),
            dst: Ipv4Addr::new(192, 168, 1, 10),
            protocol: IPPROTO_UDP,
            ttl: 63,
            dscp_ecn: 0,
            ident: 0x2222,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len: 1480,
        }
        .emit(&mut big)
        .unwrap();
        big[20..26].copy_from_slice(&[0x30, 0x39, 0xc3, 0x50, 0x05, 0xc8]);
        let mut icmp_big = [0; 1600];
        let len = frag_needed(&big, HUB, 1400, &mut icmp_big).unwrap();
        assert_eq!(len, icmp::MAX_ERROR_LEN);
        let icmp_big = &icmp_big[..len];

        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("datapath-wire.pcap");
        write_pcap(&pcap, &[&gre_full, &gre_plain, icmp_syn, icmp_big]);
        let output = match Command::new("tshark")
            .args(["-n", "-V", "-o", "ip.check_checksum:TRUE"])
            .args(["-o", "tcp.check_checksum:TRUE", "-r"])
            .arg(&pcap)
            .output()
        {
            Ok(output) => output,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                eprintln!("SKIPPED tshark_agrees: tshark is not installed");
                return;
            }
            Err(error) => panic!("tshark: {error}"),
        };
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "tshark failed: {output:?}");
        for bad in [
            "Malformed",
            "incorrect",
            "Status: Bad",
            "Bad checksum",
            "Expert Info (Error",
        ] {
            assert!(!text.contains(bad), "tshark says {bad:?}:\n{text}");
        }
        for good in [
            "Generic Routing Encapsulation (IP)",
            "Checksum Status: Good",
            "Key: 0x00000001",
            "Sequence Number: 5",
            "Maximum segment size: 1360 bytes",
            "Maximum segment size: 1460 bytes",
            "Type: 3 (Destination unreachable)",
            "Code: 4 (Fragmentation needed)",
            "MTU of next hop: 1400",
        ] {
            assert!(text.contains(good), "tshark does not say {good:?}:\n{text}");
        }
        // Every checksum tshark verifies: the IP headers (outer, inner,
        // quoted), GRE, TCP (inner and the quoted SYN), ICMP.
        assert_eq!(text.matches("[correct]").count(), 14, "{text}");
    }
}
