//! The kernel datapath at scale: the time and memory to create N spokes'
//! objects through our netlink code (an ip_gre link `vaN` per
//! virtual-access, an XFRM state pair and its policies, and a /32 route)
//! and to remove them again, in batches, so that what grows with N shows
//! as a rising time per batch.
//!
//! Run it in the VM tier, whose kernel has ip_gre, esp4 and AES-GCM
//! (`cargo xtask bench-kernel-scale`); on a kernel without them it says
//! which is missing and stops. `KERNEL_SCALE_N` (default 1000) and
//! `KERNEL_SCALE_BATCH` (default 100). Needs root.

// Counts and KiB far below 2^52: exact in an f64.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use gateway::{
    datapath::{kernel::KernelDatapath, select::KernelFeatures},
    iface::{Datapath, Route, SaLifetime, SaPair, VaId, VirtualAccessSpec},
    ipsec::{Encr, Mode, SaKeys},
    net::Ipv4Prefix,
};
use integration::Lab;
use zeroize::Zeroizing;

const HUB: Ipv4Addr = Ipv4Addr::new(172, 27, 0, 1);
const HUB_INNER: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 1);

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Spoke i: its outer address, inner address and SPIs.
fn spoke(i: u32) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i),
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + i),
    )
}

fn spec(i: u32) -> VirtualAccessSpec {
    let (outer, inner) = spoke(i);
    VirtualAccessSpec {
        id: VaId::virtual_access(i + 1),
        name: format!("Virtual-Access{}", i + 1),
        template: Some(1),
        unnumbered: HUB_INNER,
        mtu: 1400,
        // No clamp and no NHRP: those are per-template, not per-spoke work.
        tcp_adjust_mss: None,
        nhrp_network_id: None,
        peer_inner: Some(inner),
        local_outer: SocketAddrV4::new(HUB, 500),
        remote_outer: SocketAddrV4::new(outer, 500),
    }
}

fn keys(i: u32, salt: u8) -> SaKeys {
    let mut key: Vec<u8> = i.to_be_bytes().into_iter().cycle().take(20).collect();
    key[0] ^= salt;
    SaKeys {
        encr: Zeroizing::new(key),
        integ: Zeroizing::new(Vec::new()),
    }
}

fn pair(i: u32) -> SaPair {
    let (outer, _) = spoke(i);
    SaPair {
        va: VaId::virtual_access(i + 1),
        spi_in: 0x1000_0000 + i,
        spi_out: 0x2000_0000 + i,
        encr: Encr::AesGcm16 { key_bits: 128 },
        integ: None,
        inbound: keys(i, 0x11),
        outbound: keys(i, 0x22),
        mode: Mode::Transport,
        encap: None,
        local: HUB,
        remote: outer,
        esn: true,
        lifetime: SaLifetime::default(),
        defer_outbound: false,
    }
}

fn route(i: u32) -> Route {
    let (_, inner) = spoke(i);
    Route {
        prefix: Ipv4Prefix {
            addr: inner,
            len: 32,
        },
        va: VaId::virtual_access(i + 1),
        next_hop: None,
    }
}

/// Kernel memory that these objects live in: slab, in KiB.
fn slab_kib() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no Slab: in /proc/meminfo")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn per_spoke_ms(took: Duration, count: u32) -> f64 {
    took.as_secs_f64() * 1000.0 / f64::from(count.max(1))
}

fn main() -> Result<()> {
    let missing = KernelFeatures::detect().missing();
    if !missing.is_empty() {
        println!(
            "kernel_scale: skipped: this kernel lacks {} (run `cargo xtask bench-kernel-scale`, \
             which uses the VM tier)",
            missing.join(" and ")
        );
        return Ok(());
    }
    let n = env_u32("KERNEL_SCALE_N", 1000);
    let batch = env_u32("KERNEL_SCALE_BATCH", 100).max(1);
    let lab = Lab::new("kscale")?;
    let ns = lab.netns("hub")?;
    ns.set_link_up("lo")?;
    ns.add_addr("lo", &format!("{HUB}/32"))?;
    ns.run_in(move || run(n, batch))?
}

fn run(n: u32, batch: u32) -> Result<()> {
    let dp = KernelDatapath::open(None).context("opening the kernel datapath")?;
    let (slab0, rss0) = (slab_kib()?, rss_kib());
    println!(
        "kernel_scale: {n} spokes (ip_gre link, XFRM state pair and policies, /32 route each), \
         batches of {batch}"
    );
    println!(
        "  {:>6} {:>16} {:>16}",
        "spokes", "create ms/spoke", "remove ms/spoke"
    );
    let mut create = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let t = Instant::now();
        for k in i..end {
            dp.create_virtual_access(&spec(k))
                .with_context(|| format!("creating Virtual-Access{}", k + 1))?;
            dp.install_sa(&pair(k))
                .with_context(|| format!("SA pair of Virtual-Access{}", k + 1))?;
            dp.add_route(&route(k))
                .with_context(|| format!("route of Virtual-Access{}", k + 1))?;
        }
        create.push((end, t.elapsed(), end - i));
        i = end;
    }
    let created = started.elapsed();
    let (slab1, rss1) = (slab_kib()?, rss_kib());
    let mut remove = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let t = Instant::now();
        for k in i..end {
            dp.remove_virtual_access(VaId::virtual_access(k + 1))
                .with_context(|| format!("removing Virtual-Access{}", k + 1))?;
        }
        remove.push((t.elapsed(), end - i));
        i = end;
    }
    let removed = started.elapsed();
    for ((upto, took, count), (rtook, rcount)) in create.iter().zip(&remove) {
        println!(
            "  {upto:>6} {:>16.3} {:>16.3}",
            per_spoke_ms(*took, *count),
            per_spoke_ms(*rtook, *rcount)
        );
    }
    let first = create.first().map_or(0.0, |(_, t, c)| per_spoke_ms(*t, *c));
    let last = create.last().map_or(0.0, |(_, t, c)| per_spoke_ms(*t, *c));
    println!(
        "  all: created in {:.2} s ({:.3} ms/spoke), removed in {:.2} s ({:.3} ms/spoke); \
         last batch / first batch {:.2}",
        created.as_secs_f64(),
        per_spoke_ms(created, n),
        removed.as_secs_f64(),
        per_spoke_ms(removed, n),
        if first > 0.0 { last / first } else { 0.0 }
    );
    println!(
        "  kernel slab +{:.1} KiB/spoke, datapath process RSS +{:.1} KiB/spoke",
        slab1.saturating_sub(slab0) as f64 / f64::from(n),
        rss1.saturating_sub(rss0) as f64 / f64::from(n)
    );
    dp.shutdown();
    Ok(())
}
