//! Raw Ethernet + IPv4 frames for BPF_PROG_TEST_RUN fixtures.
//!
//! Frames are not padded to the 60-byte Ethernet minimum (a veth does not pad
//! either) and carry no FCS.
//!
//! ```
//! use integration::frame::{self, Ipv4Frame};
//! use std::net::Ipv4Addr;
//! let a = Ipv4Addr::new(172, 25, 1, 2);
//! let b = Ipv4Addr::new(172, 25, 1, 1);
//! let udp = frame::ethernet_ipv4_udp(a, b, 4500, 4500, &[0xff]);
//! assert_eq!(udp.len(), 14 + 20 + 8 + 1);
//! let second_fragment = Ipv4Frame::new(a, b, 17)
//!     .identification(7)
//!     .fragment_offset(185) // 185 * 8 = 1480 bytes
//!     .payload(&[0u8; 100])
//!     .build();
//! assert_eq!(&second_fragment[20..22], &[0x00, 185]);
//! ```

use std::net::Ipv4Addr;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Length of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// Source MAC used unless set (locally administered).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Destination MAC used unless set (locally administered).
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Builder of an Ethernet II frame carrying one IPv4 packet (IHL 5).
/// Total length and header checksum are always computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    tos: u8,
    ttl: u8,
    identification: u16,
    dont_fragment: bool,
    more_fragments: bool,
    fragment_offset: u16,
    payload: Vec<u8>,
}

impl Ipv4Frame {
    /// A frame with TTL 64, TOS 0, id 0, no fragmentation flags, empty payload.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Self {
        Self {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            src,
            dst,
            protocol,
            tos: 0,
            ttl: 64,
            identification: 0,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            payload: Vec::new(),
        }
    }

    /// A frame whose payload is a UDP datagram (see [`udp_datagram`]).
    pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Self {
        Self::new(src, dst, IPPROTO_UDP).payload(&udp_datagram(src, dst, sport, dport, payload))
    }

    /// Ethernet source address.
    #[must_use]
    pub fn src_mac(mut self, mac: [u8; 6]) -> Self {
        self.src_mac = mac;
        self
    }

    /// Ethernet destination address.
    #[must_use]
    pub fn dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = mac;
        self
    }

    /// Type of service / DSCP+ECN byte.
    #[must_use]
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// Time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Identification field.
    #[must_use]
    pub fn identification(mut self, id: u16) -> Self {
        self.identification = id;
        self
    }

    /// The DF flag.
    #[must_use]
    pub fn dont_fragment(mut self, df: bool) -> Self {
        self.dont_fragment = df;
        self
    }

    /// The MF flag (more fragments follow).
    #[must_use]
    pub fn more_fragments(mut self, mf: bool) -> Self {
        self.more_fragments = mf;
        self
    }

    /// Fragment offset in units of 8 bytes, as on the wire (at most 8191).
    ///
    /// # Panics
    /// If `units` does not fit the 13-bit field.
    #[must_use]
    pub fn fragment_offset(mut self, units: u16) -> Self {
        assert!(
            units <= 0x1fff,
            "fragment offset {units} does not fit 13 bits"
        );
        self.fragment_offset = units;
        self
    }

    /// The IP payload (replaces any earlier one).
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// The IPv4 packet alone (no Ethernet header).
    ///
    /// # Panics
    /// If the packet would exceed 65535 bytes.
    pub fn build_ipv4(&self) -> Vec<u8> {
        let total = u16::try_from(IPV4_HEADER_LEN + self.payload.len())
            .expect("IPv4 packet larger than 65535 bytes");
        let flags_offset = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | self.fragment_offset;
        let mut h = [0u8; IPV4_HEADER_LEN];
        h[0] = 0x45; // version 4, IHL 5
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.identification.to_be_bytes());
        h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let checksum = internet_checksum(&h);
        h[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut out = Vec::with_capacity(usize::from(total));
        out.extend_from_slice(&h);
        out.extend_from_slice(&self.payload);
        out
    }

    /// The whole frame: Ethernet II header, then [`build_ipv4`](Self::build_ipv4).
    pub fn build(&self) -> Vec<u8> {
        let ip = self.build_ipv4();
        let mut out = Vec::with_capacity(ETHERNET_HEADER_LEN + ip.len());
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        out.extend_from_slice(&ip);
        out
    }
}

/// An Ethernet frame with an IPv4 packet of protocol `protocol` carrying
/// `payload` (default MACs, TTL 64, not fragmented).
pub fn ethernet_ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    Ipv4Frame::new(src, dst, protocol).payload(payload).build()
}

/// An Ethernet frame with an IPv4/UDP packet carrying `payload`.
pub fn ethernet_ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    Ipv4Frame::udp(src, dst, sport, dport, payload).build()
}

/// A UDP header plus `payload`, with the length field and a correct checksum
/// (pseudo-header of `src`/`dst`; a computed 0 is sent as 0xffff).
///
/// # Panics
/// If the datagram would exceed 65535 bytes.
pub fn udp_datagram(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let len = u16::try_from(UDP_HEADER_LEN + payload.len())
        .expect("UDP datagram larger than 65535 bytes");
    let mut out = Vec::with_capacity(usize::from(len));
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let checksum = match udp_checksum(src, dst, &out) {
        0 => 0xffff,
        c => c,
    };
    out[6..8].copy_from_slice(&checksum.to_be_bytes());
    out
}

/// The UDP checksum of `segment` (header with checksum field as given, plus
/// payload) over the IPv4 pseudo-header. Over a segment that already holds
/// its checksum, a correct one gives 0.
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.push(0);
    pseudo.push(IPPROTO_UDP);
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(segment);
    internet_checksum(&pseudo)
}

/// The RFC 1071 Internet checksum (one's complement of the one's-complement
/// sum of 16-bit big-endian words; an odd last byte is padded with zero).
/// Over data that already contains its correct checksum, this returns 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 2);
    const B: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn header_checksum_matches_a_known_header() {
        // The classic example header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let ip = Ipv4Frame::new(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            17,
        )
        .dont_fragment(true)
        .payload(&[0u8; 0x73 - 20])
        .build_ipv4();
        assert_eq!(
            &ip[..20],
            &[
                0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
                0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7
            ]
        );
        assert_eq!(internet_checksum(&ip[..20]), 0);
    }

    #[test]
    fn ethernet_ipv4_layout_and_lengths() {
        let f = ethernet_ipv4(A, B, 50, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(f.len(), 14 + 20 + 9);
        assert_eq!(&f[0..6], &DEFAULT_DST_MAC);
        assert_eq!(&f[6..12], &DEFAULT_SRC_MAC);
        assert_eq!(be16(&f, 12), ETHERTYPE_IPV4);
        let ip = &f[14..];
        assert_eq!(ip[0], 0x45);
        assert_eq!(usize::from(be16(ip, 2)), 29);
        assert_eq!(be16(ip, 6), 0); // no flags, offset 0
        assert_eq!(ip[8], 64);
        assert_eq!(ip[9], 50);
        assert_eq!(&ip[12..16], &A.octets());
        assert_eq!(&ip[16..20], &B.octets());
        assert_eq!(internet_checksum(&ip[..20]), 0, "header checksum verifies");
        assert_eq!(&ip[20..], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn udp_lengths_and_checksum() {
        let payload = b"hello, odd!"; // odd length exercises the padding
        let f = ethernet_ipv4_udp(A, B, 4500, 500, payload);
        let ip = &f[14..];
        assert_eq!(usize::from(be16(ip, 2)), 20 + 8 + payload.len());
        assert_eq!(ip[9], IPPROTO_UDP);
        assert_eq!(internet_checksum(&ip[..20]), 0);
        let udp = &ip[20..];
        assert_eq!(be16(udp, 0), 4500);
        assert_eq!(be16(udp, 2), 500);
        assert_eq!(usize::from(be16(udp, 4)), 8 + payload.len());
        assert_ne!(be16(udp, 6), 0);
        assert_eq!(udp_checksum(A, B, udp), 0, "UDP checksum verifies");
        assert_eq!(&udp[8..], payload);
    }

    #[test]
    fn fragments_set_flags_and_offset() {
        let first = Ipv4Frame::new(A, B, 17)
            .identification(0x1234)
            .more_fragments(true)
            .payload(&[0u8; 16])
            .build();
        let ip = &first[14..];
        assert_eq!(be16(ip, 4), 0x1234);
        assert_eq!(be16(ip, 6), 0x2000);
        assert_eq!(internet_checksum(&ip[..20]), 0);

        let middle = Ipv4Frame::new(A, B, 17)
            .more_fragments(true)
            .fragment_offset(2)
            .payload(&[0u8; 16])
            .build_ipv4();
        assert_eq!(be16(&middle, 6), 0x2002);

        let last = Ipv4Frame::new(A, B, 17)
            .dont_fragment(false)
            .fragment_offset(0x1fff)
            .ttl(1)
            .tos(0xb8)
            .build_ipv4();
        assert_eq!(be16(&last, 6), 0x1fff);
        assert_eq!(last[8], 1);
        assert_eq!(last[1], 0xb8);
        assert_eq!(last.len(), 20);
        assert_eq!(internet_checksum(&last), 0);
    }

    #[test]
    #[should_panic(expected = "does not fit 13 bits")]
    fn fragment_offset_is_bounded() {
        let _ = Ipv4Frame::new(A, B, 17).fragment_offset(0x2000);
    }

    #[test]
    fn macs_can_be_set() {
        let f = Ipv4Frame::new(A, B, 1)
            .src_mac([1, 2, 3, 4, 5, 6])
            .dst_mac([7, 8, 9, 10, 11, 12])
            .build();
        assert_eq!(&f[..12], &[7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn checksum_of_odd_and_empty_data() {
        assert_eq!(internet_checksum(&[]), 0xffff);
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
        // Carries fold back in.
        assert_eq!(internet_checksum(&[0xff, 0xff, 0x00, 0x01]), !0x0001);
    }

    #[test]
    fn udp_zero_checksum_is_sent_as_ffff() {
        // Find a payload whose checksum computes to 0 by solving for the
        // last word: choose it so the sum becomes 0xffff.
        let mut payload = vec![0u8, 0];
        let partial = {
            let mut seg = udp_datagram(A, B, 1, 2, &payload);
            seg[6] = 0;
            seg[7] = 0;
            !udp_checksum(A, B, &seg)
        };
        let word = 0xffff - partial; // one's-complement sum becomes 0xffff
        payload.copy_from_slice(&word.to_be_bytes());
        let seg = udp_datagram(A, B, 1, 2, &payload);
        assert_eq!(be16(&seg, 6), 0xffff);
        assert_eq!(udp_checksum(A, B, &seg), 0);
    }
}
