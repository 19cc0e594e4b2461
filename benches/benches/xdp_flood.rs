//! The XDP uplink filter against a flood of ESP with forged SPIs: how many
//! packets per second the hub gets rid of with the filter (dropped in XDP)
//! and without it (the same packets through the IP stack to XFRM, which
//! finds no state), in one run, and the ratio.
//!
//! A peer namespace floods the hub's uplink veth from a raw socket for a
//! few seconds. On veth the receiving side's work runs in the sender's
//! softirq, so the send rate the flooder reaches is the rate at which the
//! hub disposes of the flood. The hub counts what it dropped: the filter's
//! `drop_esp_unknown_spi` verdict with XDP, `XfrmInNoStates` (or, on a
//! kernel without esp4, the IP layer's `InUnknownProtos`) without.
//!
//! Run it in the VM tier, where the kernel has esp4 (`cargo xtask
//! bench-xdp-flood`), or on the host (`cargo bench -p benches --bench
//! xdp_flood`, with `GATEWAY_BIN` naming a gateway binary). Needs root.
//! `XDP_FLOOD_SECONDS` sets the flood's length (default 3).

// Packet counts far below 2^52: exact in an f64.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use integration::{
    Lab, Netns,
    gateway::{Gateway, gateway_bin},
    packets::{self, RawIpSocket},
};

const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 7, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(172, 25, 7, 2);
const FORGED_SPI: u32 = 0x0bad_f100;
/// ESP payload bytes after the SPI and sequence number: a small packet,
/// the worst case for per-packet cost.
const BODY: usize = 64;

fn config(uplink: &str, dir: &std::path::Path, xdp: bool) -> String {
    format!(
        "[hub]\nrole = \"hub\"\nlocal_address = \"{HUB}\"\nuplink = \"{uplink}\"\n\
         state_dir = \"{state}\"\ncontrol_socket = \"{socket}\"\n\n\
         [xdp]\nenabled = {xdp}\nmode = \"native\"\n",
        state = dir.join("state").display(),
        socket = dir.join("gw.sock").display(),
    )
}

/// The hub's counter of forged ESP dropped without XDP.
fn stack_drops(hub: &Netns) -> Result<(u64, &'static str)> {
    let xfrm = hub.exec(["cat", "/proc/net/xfrm_stat"]);
    let esp4 = std::path::Path::new("/sys/module/esp4").exists();
    if let (Ok(out), true) = (xfrm, esp4) {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix("XfrmInNoStates"))
            .and_then(|v| v.trim().parse().ok())
            .context("XfrmInNoStates in /proc/net/xfrm_stat")?;
        return Ok((v, "XfrmInNoStates"));
    }
    let out = hub.exec(["cat", "/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (
        ip.next().context("Ip: header")?,
        ip.next().context("Ip: values")?,
    );
    let at = names
        .split_whitespace()
        .position(|n| n == "InUnknownProtos")
        .context("InUnknownProtos")?;
    let v = values
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .context("InUnknownProtos value")?;
    Ok((v, "InUnknownProtos"))
}

fn xdp_drops(gateway: &Gateway) -> Result<u64> {
    let report: gateway_report::xdp::XdpReport = gateway.show_report(&["xdp"])?;
    report
        .verdicts
        .iter()
        .find(|v| v.verdict == "drop_esp_unknown_spi")
        .map(|v| v.packets)
        .context("no drop_esp_unknown_spi verdict")
}

/// Floods `HUB` from `peer` for `length`; returns the packets sent.
fn flood(peer: &Netns, length: Duration) -> Result<u64> {
    let socket = RawIpSocket::open_in(peer, gateway::net::IPPROTO_ESP)?;
    let mut packet = packets::esp(FORGED_SPI, 1, BODY);
    let mut sent = 0u64;
    let started = Instant::now();
    while started.elapsed() < length {
        for _ in 0..256 {
            // A new sequence number each time, as a real flood would have.
            packet[4..8].copy_from_slice(&u32::try_from(sent & 0xffff_ffff)?.to_be_bytes());
            match socket.send_to(HUB, &packet) {
                Ok(_) => sent += 1,
                // The device queue is full: the receiver is the bottleneck.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) => return Err(e).context("sending the flood"),
            }
        }
    }
    Ok(sent)
}

struct Run {
    sent: u64,
    dropped: u64,
    counter: &'static str,
    seconds: f64,
}

fn run(
    lab: &Lab,
    hub: &Netns,
    peer: &Netns,
    uplink: &str,
    xdp: bool,
    length: Duration,
) -> Result<Run> {
    let dir = lab.temp_dir().join(if xdp { "with" } else { "without" });
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("hub.toml");
    std::fs::write(&path, config(uplink, &dir, xdp))?;
    let gateway = Gateway::start(hub, &gateway_bin()?, &path, &dir.join("gw.sock"))?;
    let before = if xdp {
        xdp_drops(&gateway)?
    } else {
        stack_drops(hub)?.0
    };
    let started = Instant::now();
    let sent = flood(peer, length)?;
    let seconds = started.elapsed().as_secs_f64();
    // Let the last packets land.
    std::thread::sleep(Duration::from_millis(300));
    let (after, counter) = if xdp {
        (xdp_drops(&gateway)?, "XDP drop_esp_unknown_spi")
    } else {
        stack_drops(hub)?
    };
    gateway.stop()?;
    Ok(Run {
        sent,
        dropped: after - before,
        counter,
        seconds,
    })
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    if !nix_is_root() {
        bail!("xdp_flood needs root (network namespaces, XDP)");
    }
    let length = Duration::from_secs(
        std::env::var("XDP_FLOOD_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let lab = Lab::new("flood")?;
    let hub = lab.netns("hub")?;
    let peer = lab.netns("peer")?;
    let (uplink, peer_link) = lab.veth(&hub, &peer)?;
    uplink.add_addr(&format!("{HUB}/24"))?;
    peer_link.add_addr(&format!("{PEER}/24"))?;
    let kernel = String::from_utf8_lossy(&hub.exec(["uname", "-r"])?.stdout)
        .trim()
        .to_owned();
    println!(
        "xdp_flood: kernel {kernel}, {} s per flood, ESP with a forged SPI, {BODY}-byte body",
        length.as_secs()
    );
    let with = run(&lab, &hub, &peer, uplink.name(), true, length)?;
    let without = run(&lab, &hub, &peer, uplink.name(), false, length)?;
    println!("\n| Filter | Sent | Dropped (counter) | Packets/s |");
    println!("|---|---|---|---|");
    for (name, r) in [("XDP", &with), ("none", &without)] {
        println!(
            "| {name} | {} | {} ({}) | {:.0} |",
            r.sent,
            r.dropped,
            r.counter,
            r.dropped as f64 / r.seconds
        );
    }
    let rate = |r: &Run| r.dropped as f64 / r.seconds;
    println!(
        "\nratio (XDP / none): {:.2}",
        rate(&with) / rate(&without).max(1.0)
    );
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
