//! XDP uplink filter, version 1: the hub's first line of defence.
//!
//! parse (Ethernet / IPv4 / UDP or ESP) -> classify -> look up -> verdict.
//! ESP with an SPI the hub holds an SA for is counted per SA and passed, or,
//! with spreading on, redirected to the CPU its SPI hashes to (ESP has no
//! ports, so RSS cannot spread it; this spreads decryption over cores);
//! unknown SPIs are dropped here, before they cost a socket wake-up or a
//! decryption attempt. IKE is rate-limited per source. Everything else, and
//! anything we cannot parse, goes to the kernel untouched.
#![no_std]
#![no_main]

mod hairpin;

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, CpuMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::XdpContext,
};
use gateway_common::{
    IkeBucket, MAX_IKE_SOURCES, MAX_INBOUND_SAS, SaCounters, Verdict, VerdictCounter, XdpConfig,
    proto::{ETH_P_IPV4, IKE_PORT, IPPROTO_ESP, IPPROTO_UDP, NATT_PORT},
    spread_slot,
};

/// Inbound SPI (host byte order) -> per-CPU counters. Present = the hub holds
/// an SA for this SPI. Written by the daemon only.
#[map(name = "INBOUND_SA")]
static INBOUND_SA: PerCpuHashMap<u32, SaCounters> =
    PerCpuHashMap::with_max_entries(MAX_INBOUND_SAS, 0);

/// IPv4 source (the four address bytes as a native u32) -> IKE token bucket.
/// LRU: spoofed floods evict old entries instead of failing inserts. Shared by
/// all CPUs; a lost update between two CPUs only blurs the limit slightly.
#[map(name = "IKE_BUCKETS")]
static IKE_BUCKETS: LruHashMap<u32, IkeBucket> = LruHashMap::with_max_entries(MAX_IKE_SOURCES, 0);

/// Slot `Verdict as u32` -> packets and bytes with that verdict, per CPU.
#[map(name = "VERDICTS")]
static VERDICTS: PerCpuArray<VerdictCounter> = PerCpuArray::with_max_entries(Verdict::COUNT, 0);

/// Slot 0: settings from the daemon (IKE rate limit, ESP spreading). All
/// zero = no limit, no spreading.
#[map(name = "CONFIG")]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// CPU number -> that CPU's cpumap queue; redirect target of spread ESP.
/// Sized to the possible CPUs by the loader (1 here is a placeholder) and
/// filled only when spreading is on.
#[map(name = "SPREAD_TARGETS")]
static SPREAD_TARGETS: CpuMap = CpuMap::with_max_entries(1, 0);

/// Spreading slot (`spread_slot(spi, spread_cpus)`) -> CPU number: the
/// online CPUs, in order. Sized by the loader like `SPREAD_TARGETS`.
#[map(name = "SPREAD_SLOTS")]
static SPREAD_SLOTS: Array<u32> = Array::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const IPV4_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
/// SPI + sequence number (RFC 4303 section 2).
const ESP_HLEN: usize = 8;
/// Fragment offset bits of the IPv4 flags/offset field (RFC 791).
const IPV4_OFFSET_MASK: u16 = 0x1fff;
/// RFC 3948 section 2.3: a NAT-keepalive is one octet, 0xFF.
const NATT_KEEPALIVE: u8 = 0xff;

#[xdp]
pub fn gateway_uplink(ctx: XdpContext) -> u32 {
    let verdict = classify(&ctx);
    if let Some(slot) = VERDICTS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU slot, and XDP does not preempt itself on one CPU.
        let slot = unsafe { &mut *slot };
        slot.packets += 1;
        slot.bytes += (ctx.data_end() - ctx.data()) as u64;
    }
    if verdict.is_drop() {
        xdp_action::XDP_DROP
    } else if verdict.is_redirect() {
        // bpf_redirect_map succeeded in `spread`; the kernel does the rest.
        xdp_action::XDP_REDIRECT
    } else {
        xdp_action::XDP_PASS
    }
}

/// Bounds-checked pointer to a `T` at `offset` into the frame, or `None`
/// when the frame is too short (the verifier needs this check on every read).
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: ptr_at checked that the bytes are inside the frame.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.read_unaligned() })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

#[inline(always)]
fn read_be32(ctx: &XdpContext, offset: usize) -> Option<u32> {
    read::<[u8; 4]>(ctx, offset).map(u32::from_be_bytes)
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Verdict {
    let Some(ethertype) = read_be16(ctx, 12) else {
        return Verdict::PassMalformed;
    };
    if ethertype != ETH_P_IPV4 {
        return Verdict::PassNotIpv4;
    }
    let Some(ip) = read::<[u8; IPV4_MIN_HLEN]>(ctx, ETH_HLEN) else {
        return Verdict::PassMalformed;
    };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN {
        return Verdict::PassMalformed;
    }
    let ip_total_len = u64::from(u16::from_be_bytes([ip[2], ip[3]]));
    if u16::from_be_bytes([ip[6], ip[7]]) & IPV4_OFFSET_MASK != 0 {
        return Verdict::PassFragment;
    }
    let l4 = ETH_HLEN + ihl;
    match ip[9] {
        IPPROTO_ESP => {
            let Some(esp) = read::<[u8; ESP_HLEN]>(ctx, l4) else {
                return Verdict::PassMalformed;
            };
            let spi = u32::from_be_bytes([esp[0], esp[1], esp[2], esp[3]]);
            if !count_sa(spi, ip_total_len) {
                Verdict::DropEspUnknownSpi
            } else if spread(spi) {
                Verdict::RedirectEsp
            } else {
                Verdict::PassEsp
            }
        }
        IPPROTO_UDP => {
            let Some(udp) = read::<[u8; UDP_HLEN]>(ctx, l4) else {
                return Verdict::PassMalformed;
            };
            let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            if udp_len < UDP_HLEN {
                return Verdict::PassMalformed;
            }
            // From the UDP length, not the frame: short frames carry padding.
            let payload_len = udp_len - UDP_HLEN;
            let src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
            match dst_port {
                IKE_PORT => ike_verdict(src),
                NATT_PORT => natt_verdict(ctx, l4, payload_len, src, ip_total_len),
                _ => Verdict::PassOther,
            }
        }
        _ => Verdict::PassOther,
    }
}

/// UDP 4500 demultiplexing, RFC 3948 section 2.2: a 4-byte zero non-ESP
/// marker means IKE; otherwise the first four bytes are an ESP SPI.
#[inline(always)]
fn natt_verdict(
    ctx: &XdpContext,
    udp: usize,
    payload_len: usize,
    src: u32,
    ip_total_len: u64,
) -> Verdict {
    let payload = udp + UDP_HLEN;
    if payload_len == 1 {
        // Read the byte together with the UDP header: a 1-byte bounds check
        // becomes `p >= end` in LLVM, from which the verifier grants nothing.
        return match read::<[u8; UDP_HLEN + 1]>(ctx, udp) {
            Some(bytes) if bytes[UDP_HLEN] == NATT_KEEPALIVE => Verdict::PassNattKeepalive,
            _ => Verdict::PassMalformed,
        };
    }
    if payload_len < 4 {
        return Verdict::PassMalformed;
    }
    let Some(marker_or_spi) = read_be32(ctx, payload) else {
        return Verdict::PassMalformed;
    };
    if marker_or_spi == 0 {
        return ike_verdict(src);
    }
    if payload_len < ESP_HLEN || ptr_at::<[u8; ESP_HLEN]>(ctx, payload).is_none() {
        return Verdict::PassMalformed;
    }
    if !count_sa(marker_or_spi, ip_total_len) {
        Verdict::DropEspInUdpUnknownSpi
    } else if spread(marker_or_spi) {
        Verdict::RedirectEspInUdp
    } else {
        Verdict::PassEspInUdp
    }
}

/// With spreading on, redirects the packet of a known SA to the CPU its SPI
/// hashes to; true when the redirect is set up (return XDP_REDIRECT). False
/// when spreading is off or the target is missing: the packet is passed on
/// this CPU, as without spreading.
#[inline(always)]
fn spread(spi: u32) -> bool {
    let Some(config) = CONFIG.get(0) else {
        return false;
    };
    if config.spread_cpus == 0 {
        return false;
    }
    let slot = spread_slot(spi, config.spread_cpus as u32);
    let Some(&cpu) = SPREAD_SLOTS.get(slot) else {
        return false;
    };
    // On failure (no queue for `cpu`) the helper returns the low bits of the
    // flags: XDP_PASS, which `is_ok` reports as false.
    SPREAD_TARGETS
        .redirect(cpu, u64::from(xdp_action::XDP_PASS))
        .is_ok()
}

/// Counts the packet on its SA; false when the hub holds no SA for `spi`.
#[inline(always)]
fn count_sa(spi: u32, bytes: u64) -> bool {
    let Some(sa) = INBOUND_SA.get_ptr_mut(spi) else {
        return false;
    };
    // SAFETY: per-CPU value of an existing entry; only this CPU writes it.
    let sa = unsafe { &mut *sa };
    sa.packets += 1;
    sa.bytes += bytes;
    // SAFETY: helper without arguments.
    sa.last_seen_ns = unsafe { bpf_ktime_get_ns() };
    true
}

#[inline(always)]
fn ike_verdict(src: u32) -> Verdict {
    if ike_allowed(src) {
        Verdict::PassIke
    } else {
        Verdict::DropIkeRateLimited
    }
}

/// Token bucket per source: `ike_rate_per_s` tokens a second, at most
/// `ike_burst` banked, one token per IKE packet.
#[inline(always)]
fn ike_allowed(src: u32) -> bool {
    let Some(config) = CONFIG.get(0) else {
        return true;
    };
    if config.ike_rate_per_s == 0 {
        return true;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let full = config.ike_burst * XdpConfig::NANO;
    let Some(bucket) = IKE_BUCKETS.get_ptr_mut(src) else {
        // First packet from this source: a full bucket, minus this packet.
        let fresh = IkeBucket {
            nano_tokens: full - XdpConfig::NANO,
            last_refill_ns: now,
        };
        // A failed insert (map busy) must not block IKE: allow.
        let _ = IKE_BUCKETS.insert(src, fresh, 0);
        return true;
    };
    // SAFETY: the entry exists; a racing CPU can at worst lose one update.
    let bucket = unsafe { &mut *bucket };
    let mut elapsed = now.saturating_sub(bucket.last_refill_ns);
    if elapsed > config.ike_fill_ns {
        elapsed = config.ike_fill_ns;
    }
    let mut tokens = bucket.nano_tokens + elapsed * config.ike_rate_per_s;
    if tokens > full {
        tokens = full;
    }
    let allowed = tokens >= XdpConfig::NANO;
    if allowed {
        tokens -= XdpConfig::NANO;
    }
    bucket.nano_tokens = tokens;
    bucket.last_refill_ns = now;
    allowed
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
