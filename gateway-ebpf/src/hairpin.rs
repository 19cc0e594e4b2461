//! Hairpin detection on the virtual-access links (kernel datapath).
//!
//! A tc ingress classifier on every virtual-access: an IPv4 packet whose
//! route (`bpf_fib_lookup`, the kernel's own FIB) leaves through another
//! watched virtual-access with the same NHRP network id is a hairpin, what
//! an NHRP redirect is sent for. The source, destination and first bytes go
//! to the daemon through a ring buffer, at most once per (source,
//! destination) pair and interval. The packet itself is never touched or
//! dropped: the program always returns `TC_ACT_OK`.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        TC_ACT_OK, bpf_fib_lookup as FibParams,
    },
    helpers::{bpf_fib_lookup, bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TcContext,
};
use gateway_common::{
    HairpinConfig, HairpinCounter, HairpinEvent, HairpinLink, HairpinPair, hairpin,
    proto::ETH_P_IPV4,
};

/// Watched virtual-access ifindex -> NHRP network id and L3 offset.
#[map(name = "HAIRPIN_LINKS")]
static HAIRPIN_LINKS: HashMap<u32, HairpinLink> = HashMap::with_max_entries(hairpin::MAX_LINKS, 0);

/// (source, destination) -> time of the last report.
#[map(name = "HAIRPIN_PAIRS")]
static HAIRPIN_PAIRS: LruHashMap<HairpinPair, u64> =
    LruHashMap::with_max_entries(hairpin::MAX_PAIRS, 0);

#[map(name = "HAIRPIN_EVENTS")]
static HAIRPIN_EVENTS: RingBuf = RingBuf::with_byte_size(hairpin::RING_BYTES, 0);

#[map(name = "HAIRPIN_COUNTERS")]
static HAIRPIN_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HairpinCounter::COUNT, 0);

#[map(name = "HAIRPIN_CONFIG")]
static HAIRPIN_CONFIG: Array<HairpinConfig> = Array::with_max_entries(1, 0);

const IPV4_MIN_HLEN: usize = 20;
const AF_INET: u8 = 2;
const ETH_P_IPV4_BE: u32 = ETH_P_IPV4.to_be() as u32;

#[classifier]
pub fn gateway_hairpin(ctx: TcContext) -> i32 {
    detect(&ctx);
    TC_ACT_OK
}

#[inline(always)]
fn count(counter: HairpinCounter) {
    if let Some(slot) = HAIRPIN_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; tc does not preempt itself on one CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn detect(ctx: &TcContext) {
    let skb = ctx.skb.skb;
    // SAFETY: the context pointer the kernel handed the program.
    let (ingress, protocol, skb_len) = unsafe { ((*skb).ifindex, (*skb).protocol, (*skb).len) };
    if protocol != ETH_P_IPV4_BE {
        return;
    }
    // SAFETY: plain map lookups; the values are copied out.
    let Some(link) = (unsafe { HAIRPIN_LINKS.get(&ingress) }).copied() else {
        return;
    };
    let l3 = link.l3_offset as usize;
    let Ok(ip) = ctx.load::<[u8; IPV4_MIN_HLEN]>(l3) else {
        return;
    };
    if ip[0] >> 4 != 4 || usize::from(ip[0] & 0x0f) * 4 < IPV4_MIN_HLEN {
        return;
    }
    let src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);

    // SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and unions).
    let mut fib: FibParams = unsafe { zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = ip[9];
    fib.__bindgen_anon_2.tos = ip[1];
    fib.__bindgen_anon_3.ipv4_src = src;
    fib.__bindgen_anon_4.ipv4_dst = dst;
    fib.ifindex = ingress;
    // tot_len 0: the helper checks the skb against the egress MTU itself,
    // and still names the egress device when it does not fit.
    // SAFETY: valid context and a params struct of the size passed.
    let rc = unsafe { bpf_fib_lookup(skb.cast(), &raw mut fib, size_of::<FibParams>() as i32, 0) };
    let rc = rc as u32;
    if rc != BPF_FIB_LKUP_RET_SUCCESS
        && rc != BPF_FIB_LKUP_RET_NO_NEIGH
        && rc != BPF_FIB_LKUP_RET_FRAG_NEEDED
    {
        // Local delivery (NOT_FWDED), unreachable, forwarding off: no hairpin.
        return;
    }
    let egress = fib.ifindex;
    if egress == ingress {
        return;
    }
    // SAFETY: plain map lookup.
    let Some(out) = (unsafe { HAIRPIN_LINKS.get(&egress) }) else {
        return;
    };
    if out.network_id != link.network_id {
        return;
    }

    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let interval = match HAIRPIN_CONFIG.get(0) {
        Some(c) if c.interval_ns != 0 => c.interval_ns,
        _ => hairpin::DEFAULT_INTERVAL_NS,
    };
    let pair = HairpinPair { src, dst };
    // SAFETY: plain map lookup, value copied out.
    if let Some(last) = unsafe { HAIRPIN_PAIRS.get(&pair) }.copied() {
        if now.wrapping_sub(last) < interval {
            count(HairpinCounter::RateLimited);
            return;
        }
    }
    // A failed insert (map busy) only means a second event later.
    let _ = HAIRPIN_PAIRS.insert(&pair, &now, 0);

    let Some(mut entry) = HAIRPIN_EVENTS.reserve::<HairpinEvent>(0) else {
        count(HairpinCounter::Lost);
        return;
    };
    let event = entry.as_mut_ptr();
    // How much of the packet to copy: from the IPv4 header to at most
    // HEAD_LEN bytes, never past the end of the skb (at least the 20 bytes
    // already read).
    let available = (skb_len as usize).saturating_sub(l3);
    let mut len = if available < hairpin::HEAD_LEN {
        available
    } else {
        hairpin::HEAD_LEN
    };
    if len < IPV4_MIN_HLEN {
        len = IPV4_MIN_HLEN;
    }
    // SAFETY: `event` points at a reserved, writable HairpinEvent; `len` is
    // within [20, HEAD_LEN], the size of `head`.
    let copied = unsafe {
        (*event).ingress_ifindex = ingress;
        (*event).egress_ifindex = egress;
        (*event).src = src;
        (*event).dst = dst;
        (*event).head_len = len as u32;
        bpf_skb_load_bytes(
            skb.cast(),
            l3 as u32,
            (&raw mut (*event).head).cast(),
            len as u32,
        )
    };
    if copied != 0 {
        entry.discard(0);
        return;
    }
    entry.submit(0);
    count(HairpinCounter::Events);
}
