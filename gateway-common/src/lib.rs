//! Types shared by the XDP uplink filter (`gateway-ebpf`) and the daemon.
//!
//! Every map key and value is `#[repr(C)]`, made only of fixed-width integers,
//! and laid out without implicit padding (checked by the size assertions at the
//! bottom), so the kernel and userspace agree byte for byte. No `bool`: its
//! only valid bit patterns are 0 and 1, and a map value is raw memory.
#![no_std]

/// Map names, as the loader looks them up in the object file.
pub mod maps {
    /// `PerCpuHashMap<u32, SaCounters>`: the inbound SPIs (host byte order)
    /// the hub holds an SA for, each with its counters. The daemon inserts an
    /// SPI (zeroed counters) when a CHILD_SA is installed and removes it when
    /// the SA goes; XDP looks up every ESP packet here, so a known SPI costs
    /// one lookup. Per CPU so the hot path needs no atomics; the daemon sums.
    pub const INBOUND_SA: &str = "INBOUND_SA";
    /// `LruHashMap<u32, IkeBucket>`: IKE token bucket per IPv4 source address
    /// (network byte order). LRU so a flood of spoofed sources evicts itself
    /// instead of filling the map.
    pub const IKE_BUCKETS: &str = "IKE_BUCKETS";
    /// `PerCpuArray<VerdictCounter>`: one slot per [`crate::Verdict`].
    pub const VERDICTS: &str = "VERDICTS";
    /// `Array<XdpConfig>` with one entry: settings written by the daemon.
    pub const CONFIG: &str = "CONFIG";
    /// `CpuMap`, one entry per possible CPU (the loader sets the size): the
    /// CPUs ESP may be redirected to when spreading is on. An entry holds the
    /// queue size of that CPU's cpumap kthread; an empty entry makes the
    /// redirect fail and the packet pass on the CPU it arrived on.
    pub const SPREAD_TARGETS: &str = "SPREAD_TARGETS";
    /// `Array<u32>`, one slot per possible CPU (the loader sets the size):
    /// spreading slot -> CPU number, so ESP spreads over the online CPUs
    /// even when their numbers have holes. Slots `0..XdpConfig::spread_cpus`
    /// are filled.
    pub const SPREAD_SLOTS: &str = "SPREAD_SLOTS";
}

/// Name of the XDP program in the object file.
pub const XDP_PROGRAM: &str = "gateway_uplink";

/// Capacity of `INBOUND_SA`: two SPIs per spoke (one
/// CHILD_SA plus one being rekeyed) for 16k spokes.
pub const MAX_INBOUND_SAS: u32 = 32_768;
/// Capacity of `IKE_BUCKETS`.
pub const MAX_IKE_SOURCES: u32 = 65_536;

/// Protocol numbers and ports, defined once for the eBPF programs and the
/// daemon (which re-exports them from its `net` module).
pub mod proto {
    /// IKE (RFC 7296 section 2) listens on these UDP ports; 4500 also carries
    /// ESP-in-UDP (RFC 3948).
    pub const IKE_PORT: u16 = 500;
    pub const NATT_PORT: u16 = 4500;

    /// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
    pub const IPPROTO_ICMP: u8 = 1;
    pub const IPPROTO_TCP: u8 = 6;
    pub const IPPROTO_UDP: u8 = 17;
    pub const IPPROTO_GRE: u8 = 47;
    pub const IPPROTO_ESP: u8 = 50;

    /// EtherTypes, which are also GRE protocol types (RFC 2784 section 2.4):
    /// IPv4, and NHRP (RFC 2332 section 5, 0x2001 as deployed).
    pub const ETH_P_IPV4: u16 = 0x0800;
    pub const ETH_P_NHRP: u16 = 0x2001;
}

pub use proto::{IKE_PORT, NATT_PORT};

/// What the filter did with a packet and why: the index of its slot in the
/// `VERDICTS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not IPv4 (ARP, IPv6, VLAN-tagged ...): passed untouched.
    PassNotIpv4 = 0,
    /// IPv4 that is neither IKE nor ESP: passed untouched.
    PassOther = 1,
    /// IKE on UDP 500, or on UDP 4500 behind the non-ESP marker, within the
    /// source's rate: passed.
    PassIke = 2,
    /// IKE over the source's token bucket: dropped.
    DropIkeRateLimited = 3,
    /// ESP (IP protocol 50) with an SPI the hub has an SA for: passed.
    PassEsp = 4,
    /// ESP (IP protocol 50) with an unknown SPI: dropped.
    DropEspUnknownSpi = 5,
    /// ESP-in-UDP (port 4500, SPI != 0) with a known SPI: passed.
    PassEspInUdp = 6,
    /// ESP-in-UDP with an unknown SPI: dropped.
    DropEspInUdpUnknownSpi = 7,
    /// NAT-T keepalive (one 0xFF byte on UDP 4500, RFC 3948 section 2.3): passed.
    PassNattKeepalive = 8,
    /// A non-first IPv4 fragment: no transport header to classify, passed for
    /// the kernel to reassemble.
    PassFragment = 9,
    /// Truncated or malformed Ethernet/IPv4/UDP/ESP header: passed, the kernel
    /// decides (and drops what is really broken).
    PassMalformed = 10,
    /// ESP (IP protocol 50) with a known SPI, spreading on: redirected to the
    /// CPU its SPI hashes to (`XdpConfig::spread_cpus`), which decrypts it.
    /// A failed redirect counts as `PassEsp` instead.
    RedirectEsp = 11,
    /// ESP-in-UDP with a known SPI, spreading on: redirected like `RedirectEsp`.
    RedirectEspInUdp = 12,
}

impl Verdict {
    /// Number of slots in `VERDICTS`.
    pub const COUNT: u32 = 13;

    /// Every verdict, in slot order.
    pub const ALL: [Verdict; Self::COUNT as usize] = [
        Verdict::PassNotIpv4,
        Verdict::PassOther,
        Verdict::PassIke,
        Verdict::DropIkeRateLimited,
        Verdict::PassEsp,
        Verdict::DropEspUnknownSpi,
        Verdict::PassEspInUdp,
        Verdict::DropEspInUdpUnknownSpi,
        Verdict::PassNattKeepalive,
        Verdict::PassFragment,
        Verdict::PassMalformed,
        Verdict::RedirectEsp,
        Verdict::RedirectEspInUdp,
    ];

    /// Stable name for logs, `show xdp` and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::PassNotIpv4 => "pass_not_ipv4",
            Verdict::PassOther => "pass_other",
            Verdict::PassIke => "pass_ike",
            Verdict::DropIkeRateLimited => "drop_ike_rate_limited",
            Verdict::PassEsp => "pass_esp",
            Verdict::DropEspUnknownSpi => "drop_esp_unknown_spi",
            Verdict::PassEspInUdp => "pass_esp_in_udp",
            Verdict::DropEspInUdpUnknownSpi => "drop_esp_in_udp_unknown_spi",
            Verdict::PassNattKeepalive => "pass_natt_keepalive",
            Verdict::PassFragment => "pass_fragment",
            Verdict::PassMalformed => "pass_malformed",
            Verdict::RedirectEsp => "redirect_esp",
            Verdict::RedirectEspInUdp => "redirect_esp_in_udp",
        }
    }

    /// What the program returns for this verdict: `"pass"`, `"drop"` or
    /// `"redirect"` (to another CPU, which then passes it to the stack).
    pub const fn action(self) -> &'static str {
        if self.is_drop() {
            "drop"
        } else if self.is_redirect() {
            "redirect"
        } else {
            "pass"
        }
    }

    /// Whether the packet was redirected to another CPU.
    pub const fn is_redirect(self) -> bool {
        matches!(self, Verdict::RedirectEsp | Verdict::RedirectEspInUdp)
    }

    /// Whether the packet was dropped.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Verdict::DropIkeRateLimited
                | Verdict::DropEspUnknownSpi
                | Verdict::DropEspInUdpUnknownSpi
        )
    }
}

/// One `VERDICTS` slot on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictCounter {
    pub packets: u64,
    /// Frame bytes (Ethernet header included), as XDP sees them.
    pub bytes: u64,
}

/// Per-SA counters on one CPU (`INBOUND_SA` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaCounters {
    pub packets: u64,
    /// Bytes from the IPv4 header on (what the SA carried, outer headers included).
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last packet; 0 = never.
    /// Feeds DPD on-demand: a peer that sends is alive.
    pub last_seen_ns: u64,
}

/// Token bucket of one IKE source (`IKE_BUCKETS` value).
///
/// Tokens are kept in nano-tokens (1e-9 token) so refill is an integer
/// multiply: `elapsed_ns * rate_per_s` nano-tokens.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IkeBucket {
    pub nano_tokens: u64,
    pub last_refill_ns: u64,
}

/// Settings the daemon writes into `CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// IKE packets per second allowed per source; 0 disables the limit.
    pub ike_rate_per_s: u64,
    /// Bucket depth in packets (at least 1 when the limit is on).
    pub ike_burst: u64,
    /// Time an empty bucket takes to fill, `burst * 1e9 / rate` ns: refill
    /// is capped at this elapsed time, so the multiply cannot overflow.
    pub ike_fill_ns: u64,
    /// Number of CPUs known-SPI ESP is spread over (slots of
    /// `SPREAD_SLOTS`); 0 turns spreading off and ESP is passed on the CPU
    /// it arrived on. ESP has no ports, so RSS hashes every packet of a peer
    /// to one queue; spreading by SPI lets the SAs decrypt on many cores.
    pub spread_cpus: u64,
}

impl XdpConfig {
    pub const NANO: u64 = 1_000_000_000;

    /// Settings for a limit of `rate_per_s` packets per second with bursts of
    /// `burst`; `rate_per_s == 0` turns the limit off.
    pub const fn ike_limit(rate_per_s: u64, burst: u64) -> Self {
        if rate_per_s == 0 {
            return XdpConfig {
                ike_rate_per_s: 0,
                ike_burst: 0,
                ike_fill_ns: 0,
                spread_cpus: 0,
            };
        }
        let burst = if burst == 0 { 1 } else { burst };
        XdpConfig {
            ike_rate_per_s: rate_per_s,
            ike_burst: burst,
            ike_fill_ns: burst.saturating_mul(Self::NANO) / rate_per_s,
            spread_cpus: 0,
        }
    }

    /// The same settings with ESP spread over `cpus` CPUs (0: off).
    #[must_use]
    pub const fn with_spread(self, cpus: u64) -> Self {
        XdpConfig {
            spread_cpus: cpus,
            ..self
        }
    }
}

/// The spreading slot of `spi` among `cpus` slots: a murmur3 finalizer
/// mixes the SPI (consecutive SPIs land far apart), then the remainder picks
/// the slot; 0 when `cpus` is 0. Shared by the program and the tests.
#[allow(
    clippy::inline_always,
    reason = "runs per ESP packet in the XDP program, where a BPF-to-BPF call costs more than the body"
)]
#[inline(always)]
pub const fn spread_slot(spi: u32, cpus: u32) -> u32 {
    if cpus == 0 {
        return 0;
    }
    let mut h = spi;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h % cpus
}

// No implicit padding: each size is the sum of its fields.
const _: () = assert!(core::mem::size_of::<VerdictCounter>() == 16);
const _: () = assert!(core::mem::size_of::<SaCounters>() == 24);
const _: () = assert!(core::mem::size_of::<IkeBucket>() == 16);
const _: () = assert!(core::mem::size_of::<XdpConfig>() == 32);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all four are #[repr(C)], made of u64 fields only, with no padding
    // (asserted above): every bit pattern is a valid value.
    unsafe impl aya::Pod for super::VerdictCounter {}
    unsafe impl aya::Pod for super::SaCounters {}
    unsafe impl aya::Pod for super::IkeBucket {}
    unsafe impl aya::Pod for super::XdpConfig {}
}

// ---------------------------------------------------------------------------
// Hairpin detection (tc classifier on the virtual-access links, kernel mode)
// ---------------------------------------------------------------------------

/// Map and program names of the hairpin detector (`gateway-ebpf/src/hairpin.rs`).
pub mod hairpin {
    /// Name of the tc classifier in the object file.
    pub const PROGRAM: &str = "gateway_hairpin";
    /// `HashMap<u32, HairpinLink>`: the virtual-access ifindexes the program
    /// watches, each with its NHRP network id. Written by the daemon only.
    pub const LINKS: &str = "HAIRPIN_LINKS";
    /// `LruHashMap<HairpinPair, u64>`: `bpf_ktime_get_ns()` of the last
    /// report for a (source, destination) pair.
    pub const PAIRS: &str = "HAIRPIN_PAIRS";
    /// `RingBuf` of [`super::HairpinEvent`]s.
    pub const EVENTS: &str = "HAIRPIN_EVENTS";
    /// `PerCpuArray<u64>`: one slot per [`super::HairpinCounter`].
    pub const COUNTERS: &str = "HAIRPIN_COUNTERS";
    /// `Array<HairpinConfig>` with one entry.
    pub const CONFIG: &str = "HAIRPIN_CONFIG";

    /// Capacity of `LINKS`: one virtual-access per spoke.
    pub const MAX_LINKS: u32 = 16_384;
    /// Capacity of `PAIRS`.
    pub const MAX_PAIRS: u32 = 65_536;
    /// Size of `EVENTS` in bytes (a power of two, a multiple of the page).
    pub const RING_BYTES: u32 = 256 * 1024;
    /// How much of the packet an event carries: as `HAIRPIN_HEAD_LEN` of the
    /// userspace datapath (IPv4 header with options and 8 bytes beyond).
    pub const HEAD_LEN: usize = 68;
    /// Rate limit per pair when the daemon sets none (IOS: one redirect per
    /// pair and interval).
    pub const DEFAULT_INTERVAL_NS: u64 = 1_000_000_000;
}

/// `HAIRPIN_LINKS` value: a watched virtual-access.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HairpinLink {
    /// IOS `ip nhrp network-id`: a hairpin is reported only between two
    /// links with the same id.
    pub network_id: u32,
    /// Where the IPv4 header starts in the skb at tc ingress: 0 on an ip_gre
    /// point-to-point link (no link-layer header), 14 on Ethernet (veth).
    pub l3_offset: u32,
}

/// `HAIRPIN_PAIRS` key. Addresses as their four bytes read as a native u32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HairpinPair {
    pub src: u32,
    pub dst: u32,
}

/// `HAIRPIN_CONFIG[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HairpinConfig {
    /// At most one event per (source, destination) pair in this interval;
    /// 0 = [`hairpin::DEFAULT_INTERVAL_NS`].
    pub interval_ns: u64,
}

/// One record in `HAIRPIN_EVENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HairpinEvent {
    pub ingress_ifindex: u32,
    pub egress_ifindex: u32,
    /// The four address bytes read as a native u32 (network order in memory).
    pub src: u32,
    pub dst: u32,
    /// Valid bytes in `head`.
    pub head_len: u32,
    /// The start of the IPv4 packet.
    pub head: [u8; hairpin::HEAD_LEN],
}

/// Slots of `HAIRPIN_COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HairpinCounter {
    /// Events written to the ring buffer.
    Events = 0,
    /// Events lost because the ring buffer was full.
    Lost = 1,
    /// Hairpins not reported again within the pair's interval.
    RateLimited = 2,
}

impl HairpinCounter {
    pub const COUNT: u32 = 3;
}

const _: () = assert!(core::mem::size_of::<HairpinLink>() == 8);
const _: () = assert!(core::mem::size_of::<HairpinPair>() == 8);
const _: () = assert!(core::mem::size_of::<HairpinConfig>() == 8);
const _: () = assert!(core::mem::size_of::<HairpinEvent>() == 20 + hairpin::HEAD_LEN);

#[cfg(feature = "user")]
mod hairpin_pod {
    // SAFETY: #[repr(C)], integer fields only, no padding (asserted above).
    unsafe impl aya::Pod for super::HairpinLink {}
    unsafe impl aya::Pod for super::HairpinPair {}
    unsafe impl aya::Pod for super::HairpinConfig {}
}
