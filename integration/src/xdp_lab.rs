//! The foundation lab: a hub and two spokes on a bridge, the gateway on the
//! hub with its XDP uplink filter attached natively to the hub's veth, real
//! packets from the spokes, and the counters checked against what was sent.
//! `cargo xtask lab` shows it; `tests/xdp_uplink.rs` asserts it.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    process::ExitStatus,
};

use anyhow::{Context as _, Result, bail, ensure};
use gateway_report::xdp::XdpReport;

use crate::{
    Lab, Netns,
    gateway::Gateway,
    packets::{self, IKE_PORT, IPPROTO_ESP, NATT_PORT, RawIpSocket},
};

pub const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
/// IKE limit in the lab: 5 packets/s per source, bursts of 10.
pub const IKE_RATE: u64 = 5;
pub const IKE_BURST: u64 = 10;
/// SPIs installed on the hub: spoke 1 uses one over UDP 4500, one as raw ESP.
pub const SPI_NATT: u32 = 0x0000_1001;
pub const SPI_RAW: u32 = 0x0000_1002;

pub struct Spoke {
    pub netns: Netns,
    pub address: Ipv4Addr,
}

/// The running lab. Dropping it stops everything and removes the namespaces.
pub struct XdpLab {
    // Field order is drop order: the daemon stops before its namespaces go.
    gateway: Option<Gateway>,
    pub hub: Netns,
    pub spokes: Vec<Spoke>,
    pub uplink: String,
    pub hub_address: Ipv4Addr,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// `xdp.spread_esp` in the hub's config: known-SPI ESP is redirected to
    /// a CPU by SPI hash instead of passed.
    pub spread_esp: bool,
    lab: Lab,
}

/// What the spokes sent, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// IKE from spoke 1 (UDP 500 and 4500 with the non-ESP marker): within its burst.
    pub ike_polite: u64,
    /// IKE from spoke 2 on UDP 500, back to back: far over its bucket.
    pub ike_flood: u64,
    pub esp_in_udp_known: u64,
    pub esp_raw_known: u64,
    pub esp_in_udp_unknown: u64,
    pub esp_raw_unknown: u64,
    pub keepalives: u64,
    pub pings: u64,
}

impl Sent {
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "spoke 1: {} IKE packets (UDP 500, and 4500 behind the non-ESP marker), within its burst",
                self.ike_polite
            ),
            format!(
                "spoke 1: {} ESP-in-UDP with SPI {SPI_NATT:#010x} and {} raw ESP with SPI {SPI_RAW:#010x} (both installed)",
                self.esp_in_udp_known, self.esp_raw_known
            ),
            format!(
                "spoke 1: {} NAT-T keepalives; both spokes: {} pings each",
                self.keepalives, self.pings
            ),
            format!(
                "spoke 2: {} IKE packets back to back (limit {IKE_RATE}/s, burst {IKE_BURST})",
                self.ike_flood
            ),
            format!(
                "spoke 2: {} ESP-in-UDP and {} raw ESP with SPIs the hub never installed",
                self.esp_in_udp_unknown, self.esp_raw_unknown
            ),
        ]
    }
}

impl XdpLab {
    /// Builds the topology, writes the hub's config, starts the gateway and
    /// installs the two SPIs.
    pub fn start(gateway_bin: &Path, tag: &str) -> Result<Self> {
        Self::start_with(gateway_bin, tag, false)
    }

    /// [`start`](Self::start), with `xdp.spread_esp` set to `spread_esp`.
    pub fn start_with(gateway_bin: &Path, tag: &str, spread_esp: bool) -> Result<Self> {
        let lab = Lab::new(tag)?;
        let wan = lab.netns("wan")?;
        wan.ip(["link", "add", "br0", "type", "bridge"])?;
        wan.set_link_up("br0")?;
        let hub = lab.netns("hub")?;
        let (uplink, hub_port) = lab.veth(&hub, &wan)?;
        wan.ip(["link", "set", hub_port.name(), "master", "br0"])?;
        uplink.add_addr(&format!("{HUB_ADDRESS}/24"))?;
        let mut spokes = Vec::new();
        for n in 1..=2u8 {
            let netns = lab.netns(&format!("spoke{n}"))?;
            let (link, port) = lab.veth(&netns, &wan)?;
            wan.ip(["link", "set", port.name(), "master", "br0"])?;
            let address = Ipv4Addr::new(172, 25, 1, 1 + n);
            link.add_addr(&format!("{address}/24"))?;
            spokes.push(Spoke { netns, address });
        }

        let dir = lab.temp_dir().to_owned();
        let socket = dir.join("gateway.sock");
        let config = dir.join("hub.toml");
        std::fs::write(
            &config,
            hub_config(uplink.name(), &dir, &socket, spread_esp),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let gateway = Gateway::start(&hub, gateway_bin, &config, &socket)?;
        for spi in [SPI_NATT, SPI_RAW] {
            gateway.cli_ok(["sa", "add-spi", &format!("{spi:#x}")])?;
        }
        Ok(XdpLab {
            gateway: Some(gateway),
            hub,
            spokes,
            uplink: uplink.name().to_owned(),
            hub_address: HUB_ADDRESS,
            socket,
            config,
            spread_esp,
            lab,
        })
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("gateway runs until stop()")
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Sends the lab's traffic from both spokes.
    pub fn send_traffic(&self) -> Result<Sent> {
        let mut sent = Sent {
            pings: 2,
            ..Sent::default()
        };
        // Ping first: it also resolves ARP, so no datagram waits in a queue.
        for spoke in &self.spokes {
            spoke.netns.exec([
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                &HUB_ADDRESS.to_string(),
            ])?;
        }
        let hub_500 = SocketAddrV4::new(HUB_ADDRESS, IKE_PORT);
        let hub_4500 = SocketAddrV4::new(HUB_ADDRESS, NATT_PORT);
        let ike = packets::ike_sa_init_like(0x1111_2222_3333_4444);

        let polite = &self.spokes[0];
        polite.netns.try_run_in(|| -> Result<()> {
            let s500 = UdpSocket::bind(SocketAddrV4::new(polite.address, IKE_PORT))?;
            let s4500 = UdpSocket::bind(SocketAddrV4::new(polite.address, NATT_PORT))?;
            for _ in 0..3 {
                s500.send_to(&ike, hub_500)?;
                s4500.send_to(&packets::non_esp_marker(&ike), hub_4500)?;
            }
            // ESP-in-UDP goes out with a zero UDP checksum, like an IPsec stack's.
            packets::udp_zero_checksum(&s4500)?;
            for seq in 1..=20 {
                s4500.send_to(&packets::esp(SPI_NATT, seq, 100), hub_4500)?;
            }
            for _ in 0..2 {
                s4500.send_to(&packets::natt_keepalive(), hub_4500)?;
            }
            let raw = RawIpSocket::open(IPPROTO_ESP)?;
            for seq in 1..=10 {
                raw.send_to(HUB_ADDRESS, &packets::esp(SPI_RAW, seq, 100))?;
            }
            Ok(())
        })?;
        sent.ike_polite = 6;
        sent.esp_in_udp_known = 20;
        sent.keepalives = 2;
        sent.esp_raw_known = 10;

        let rogue = &self.spokes[1];
        rogue.netns.try_run_in(|| -> Result<()> {
            let s500 = UdpSocket::bind(SocketAddrV4::new(rogue.address, IKE_PORT))?;
            let s4500 = UdpSocket::bind(SocketAddrV4::new(rogue.address, NATT_PORT))?;
            for _ in 0..40 {
                s500.send_to(&ike, hub_500)?;
            }
            packets::udp_zero_checksum(&s4500)?;
            for n in 0..25 {
                s4500.send_to(&packets::esp(0xbad0_0000 + n, 1, 100), hub_4500)?;
            }
            let raw = RawIpSocket::open(IPPROTO_ESP)?;
            for n in 0..15 {
                raw.send_to(HUB_ADDRESS, &packets::esp(0xbad1_0000 + n, 1, 100))?;
            }
            Ok(())
        })?;
        sent.ike_flood = 40;
        sent.esp_in_udp_unknown = 25;
        sent.esp_raw_unknown = 15;
        Ok(sent)
    }

    /// `gateway show xdp` as the operator sees it.
    pub fn show_xdp_text(&self) -> Result<String> {
        self.gateway().cli_ok(["show", "xdp"])
    }

    /// `gateway show xdp --json`.
    pub fn show_xdp(&self) -> Result<XdpReport> {
        self.gateway().show_report(&["xdp"])
    }

    /// Checks the hub's counters against what was sent (the spokes are the
    /// only senders of IKE and ESP in the lab) and returns a summary.
    /// Waits briefly: a datagram may still be in flight on the veth.
    pub fn check_counters(&self, sent: &Sent) -> Result<Vec<String>> {
        let mut last_error = None;
        for _ in 0..20 {
            let report = self.show_xdp()?;
            match check(&report, sent, self.spread_esp) {
                Ok(summary) => return Ok(summary),
                Err(e) => last_error = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(last_error.expect("at least one check"))
    }

    /// Stops the gateway (SIGTERM), checks that XDP left the uplink, and
    /// returns the exit status and the daemon's log.
    pub fn stop(mut self) -> Result<(ExitStatus, String)> {
        let gateway = self.gateway.take().expect("gateway runs until stop()");
        let log = gateway.process().stderr_path().to_owned();
        let status = gateway.stop()?;
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let link = self.hub.ip(["-d", "link", "show", "dev", &self.uplink])?;
        let link = String::from_utf8_lossy(&link.stdout);
        ensure!(
            !link.contains("prog/xdp"),
            "XDP still attached to {} after the gateway stopped:\n{link}",
            self.uplink
        );
        Ok((status, log))
    }
}

fn hub_config(uplink: &str, dir: &Path, socket: &Path, spread_esp: bool) -> String {
    format!(
        r#"# Lab hub: written by integration::xdp_lab.
[hub]
role = "hub"
local_address = "{HUB_ADDRESS}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

[xdp]
mode = "native"
ike_rate = {IKE_RATE}
ike_burst = {IKE_BURST}
spread_esp = {spread_esp}
"#,
        state = dir.join("state").display(),
        socket = socket.display(),
    )
}

fn verdict(report: &XdpReport, name: &str) -> Result<u64> {
    report
        .verdicts
        .iter()
        .find(|v| v.verdict == name)
        .map(|v| v.packets)
        .with_context(|| format!("verdict {name} missing from `show xdp --json`: {report:?}"))
}

fn sa_packets(report: &XdpReport, spi: u32) -> Result<u64> {
    report
        .sa(spi)
        .map(|s| s.packets)
        .with_context(|| format!("SA {spi:#010x} missing from `show xdp --json`: {report:?}"))
}

fn check(report: &XdpReport, sent: &Sent, spread_esp: bool) -> Result<Vec<String>> {
    let expect_eq = |name: &str, want: u64| -> Result<u64> {
        let got = verdict(report, name)?;
        ensure!(got == want, "{name}: counted {got}, sent {want}");
        Ok(got)
    };
    // Known-SPI ESP is either all passed or, spreading, all redirected.
    let (passed, redirected) = if spread_esp { (0, 1) } else { (1, 0) };
    expect_eq("pass_esp_in_udp", passed * sent.esp_in_udp_known)?;
    expect_eq("pass_esp", passed * sent.esp_raw_known)?;
    expect_eq("redirect_esp_in_udp", redirected * sent.esp_in_udp_known)?;
    expect_eq("redirect_esp", redirected * sent.esp_raw_known)?;
    expect_eq("drop_esp_in_udp_unknown_spi", sent.esp_in_udp_unknown)?;
    expect_eq("drop_esp_unknown_spi", sent.esp_raw_unknown)?;
    expect_eq("pass_natt_keepalive", sent.keepalives)?;
    ensure!(
        sa_packets(report, SPI_NATT)? == sent.esp_in_udp_known,
        "SA {SPI_NATT:#x} packet count"
    );
    ensure!(
        sa_packets(report, SPI_RAW)? == sent.esp_raw_known,
        "SA {SPI_RAW:#x} packet count"
    );
    let ike_pass = verdict(report, "pass_ike")?;
    let ike_drop = verdict(report, "drop_ike_rate_limited")?;
    let ike_sent = sent.ike_polite + sent.ike_flood;
    ensure!(
        ike_pass + ike_drop == ike_sent,
        "IKE: {ike_pass} passed + {ike_drop} dropped != {ike_sent} sent"
    );
    // Spoke 1 stays within its burst; spoke 2 gets at least its burst through.
    ensure!(
        ike_pass >= sent.ike_polite + IKE_BURST,
        "IKE: only {ike_pass} passed"
    );
    if ike_drop == 0 {
        bail!(
            "IKE: spoke 2 sent {} packets back to back and none was rate-limited",
            sent.ike_flood
        );
    }
    let other = verdict(report, "pass_other")?;
    ensure!(
        other >= 2 * sent.pings,
        "pings: {other} other IPv4 packets counted, expected at least {}",
        2 * sent.pings
    );
    Ok(vec![
        format!(
            "unknown SPIs dropped in XDP: {} ESP-in-UDP, {} raw ESP",
            sent.esp_in_udp_unknown, sent.esp_raw_unknown
        ),
        format!(
            "known SPIs {} and counted per SA: {SPI_NATT:#010x} {} packets, {SPI_RAW:#010x} {} packets",
            if spread_esp {
                "redirected to a CPU by SPI hash"
            } else {
                "passed"
            },
            sent.esp_in_udp_known,
            sent.esp_raw_known
        ),
        format!("IKE: {ike_pass} passed, {ike_drop} over the per-source limit dropped"),
        format!(
            "everything else passed to the kernel: {other} IPv4 packets (pings), keepalives {}",
            sent.keepalives
        ),
    ])
}
