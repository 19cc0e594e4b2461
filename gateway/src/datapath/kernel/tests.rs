//! NHRP through the real kernel datapath: a hub and a spoke namespace joined
//! by a veth pair, a [`KernelDatapath`] in each with a virtual-access and a
//! transport-mode SA pair (fixed AES-GCM keys), so that NHRP goes GRE over
//! ESP as in production. Needs ip_gre and esp4: the VM tier runs it; a host
//! without them skips it (or fails it under `GATEWAY_REQUIRE_KERNEL_DATAPATH`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use integration::Netns;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::KernelDatapath;
use crate::{
    iface::{Datapath, DatapathError, DatapathEvent, SaLifetime, SaPair, VaId, VirtualAccessSpec},
    ipsec::{Encr, Mode, SaKeys},
};

const HUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SPOKE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const HUB_INNER: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const SPOKE_INNER: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);
/// The hub's Virtual-Access7 (link `va7`) and the spoke's Tunnel1
/// (`tunnel1`).
const HUB_VA: VaId = VaId::virtual_access(7);
const SPOKE_VA: VaId = VaId::tunnel(1);
/// Spoke to hub, hub to spoke.
const SPI_UP: u32 = 0xc0de_0001;
const SPI_DOWN: u32 = 0xc0de_0002;
/// Under TCG emulation a first packet (ARP, then ESP) takes a while.
const WAIT: Duration = Duration::from_secs(30);

/// Set in the VM tier, whose kernel has ip_gre and esp4.
const REQUIRE_ENV: &str = "GATEWAY_REQUIRE_KERNEL_DATAPATH";

/// Says why the test cannot run here (and fails it where it must run).
fn kernel_lacks_gre_or_esp(test: &str) -> bool {
    let missing = integration::vm::missing_kernel_datapath_features();
    if missing.is_empty() {
        return false;
    }
    let message = format!(
        "SKIPPED {test}: the kernel lacks {} (GRE: ip_gre, CONFIG_NET_IPGRE; \
         ESP: esp4, CONFIG_INET_ESP); the VM tier (cargo xtask vm-test) runs it",
        missing.join(" and ")
    );
    assert!(std::env::var_os(REQUIRE_ENV).is_none(), "{message}");
    eprintln!("{message}");
    true
}

/// An NHRP Resolution Request as RFC 2332 lays it out (section 5.2.1):
/// fixed header (IPv4 over NBMA IPv4, hop count 255, version 1, type 1),
/// then the mandatory part with 4-byte NBMA and protocol addresses. The
/// datapath does not parse it; the bytes only have to arrive as they left.
fn resolution_request(nbma: Ipv4Addr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![
        0x00, 0x01, // ar$afn: IPv4
        0x08, 0x00, // ar$pro.type: IPv4
        0, 0, 0, 0, 0,   // ar$pro.snap
        255, // ar$hopcnt
        0, 0, // ar$pktsz, below
        0, 0, // ar$chksum (not checked here)
        0, 0, // ar$extoff: no extensions
        1, // ar$op.version
        1, // ar$op.type: Resolution Request
        4, // ar$shtl
        0, // ar$sstl
        4, // src proto len
        4, // dst proto len
        0x80, 0x00, // flags: Q (router)
        0x12, 0x34, 0x56, 0x78, // request id
    ];
    p.extend_from_slice(&nbma.octets());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let len = u16::try_from(p.len()).unwrap();
    p[10..12].copy_from_slice(&len.to_be_bytes());
    p
}

fn spec(id: VaId, local: Ipv4Addr, remote: Ipv4Addr) -> VirtualAccessSpec {
    let hub = local == HUB;
    VirtualAccessSpec {
        id,
        name: if hub { "Virtual-Access7" } else { "Tunnel1" }.into(),
        template: hub.then_some(1),
        unnumbered: if hub { HUB_INNER } else { SPOKE_INNER },
        mtu: 1400,
        // No clamp and no hairpin detector: they would run `nft` and tc in
        // the calling thread's namespace, which is not what this is about.
        tcp_adjust_mss: None,
        nhrp_network_id: None,
        peer_inner: hub.then_some(SPOKE_INNER),
        local_outer: SocketAddrV4::new(local, 500),
        remote_outer: SocketAddrV4::new(remote, 500),
    }
}

/// AES-GCM-128 keys with their salt, different for each direction.
fn keys(seed: u8) -> SaKeys {
    SaKeys {
        encr: Zeroizing::new((seed..seed + 20).collect()),
        integ: Zeroizing::new(Vec::new()),
    }
}

fn sa_pair(va: VaId, local: Ipv4Addr, remote: Ipv4Addr) -> SaPair {
    let hub = local == HUB;
    let (up, down) = (keys(0x10), keys(0x40));
    SaPair {
        va,
        spi_in: if hub { SPI_UP } else { SPI_DOWN },
        spi_out: if hub { SPI_DOWN } else { SPI_UP },
        encr: Encr::AesGcm16 { key_bits: 128 },
        integ: None,
        inbound: if hub { up.clone() } else { down.clone() },
        outbound: if hub { down } else { up },
        mode: Mode::Transport,
        encap: None,
        local,
        remote,
        esn: false,
        lifetime: SaLifetime::default(),
        defer_outbound: false,
    }
}

/// One end: its namespace, its datapath and the events it hands up.
struct End {
    ns: Netns,
    dp: KernelDatapath,
    events: mpsc::Receiver<DatapathEvent>,
}

/// Opens a datapath inside `ns` (its sockets stay there), with a
/// virtual-access and an SA pair towards `remote`.
fn end(
    ns: &Netns,
    rt: &tokio::runtime::Handle,
    va: VaId,
    local: Ipv4Addr,
    remote: Ipv4Addr,
) -> End {
    let (tx, events) = mpsc::channel(16);
    let dp = ns
        .run_in(|| {
            // The hairpin detector's reader is a tokio task.
            let _rt = rt.enter();
            let dp = KernelDatapath::open(Some(&tx)).unwrap();
            dp.create_virtual_access(&spec(va, local, remote)).unwrap();
            dp.install_sa(&sa_pair(va, local, remote)).unwrap();
            dp
        })
        .unwrap();
    End {
        ns: ns.clone(),
        dp,
        events,
    }
}

/// The next NHRP event within [`WAIT`] (hairpin events are skipped).
fn next_nhrp(events: &mut mpsc::Receiver<DatapathEvent>) -> Option<(VaId, Vec<u8>)> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match events.try_recv() {
            Ok(DatapathEvent::Nhrp { va, packet }) => return Some((va, packet)),
            Ok(
                DatapathEvent::Hairpin(_)
                | DatapathEvent::SaExpired { .. }
                | DatapathEvent::PeerMoved { .. },
            )
            | Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
        }
    }
    None
}

#[test]
fn nhrp_crosses_a_gre_link_when_the_kernel_has_ip_gre_and_esp4() {
    const TEST: &str = "nhrp_crosses_a_gre_link_when_the_kernel_has_ip_gre_and_esp4";
    if kernel_lacks_gre_or_esp(TEST) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lab = integration::Lab::new("kdpnhrp").unwrap();
    let hub_ns = lab.netns("hub").unwrap();
    let spoke_ns = lab.netns("spoke").unwrap();
    let (hub_link, spoke_link) = lab.veth(&hub_ns, &spoke_ns).unwrap();
    hub_link.add_addr("192.0.2.1/24").unwrap();
    spoke_link.add_addr("192.0.2.2/24").unwrap();

    let mut hub = end(&hub_ns, rt.handle(), HUB_VA, HUB, SPOKE);
    let mut spoke = end(&spoke_ns, rt.handle(), SPOKE_VA, SPOKE, HUB);

    // Spoke to hub: a Resolution Request comes up as the hub's
    // Virtual-Access7, byte for byte.
    let request = resolution_request(SPOKE, SPOKE_INNER, Ipv4Addr::new(10, 1, 1, 101));
    spoke.dp.send_nhrp(SPOKE_VA, &request).unwrap();
    let got = next_nhrp(&mut hub.events).unwrap_or_else(|| {
        panic!(
            "no NHRP at the hub within {WAIT:?}\nhub: {}\nspoke: {}",
            diagnostics(&hub.ns),
            diagnostics(&spoke.ns)
        )
    });
    assert_eq!(got, (HUB_VA, request.clone()));

    // And back: the spoke's Tunnel1.
    let reply = resolution_request(HUB, HUB_INNER, SPOKE_INNER);
    hub.dp.send_nhrp(HUB_VA, &reply).unwrap();
    let got = next_nhrp(&mut spoke.events).expect("no NHRP at the spoke");
    assert_eq!(got, (SPOKE_VA, reply));

    // It went in ESP: one packet each way on the hub's SAs.
    let report = hub.dp.report();
    assert_eq!(report.global.nhrp_to_control, 1, "{report:?}");
    let sa = &report.sas[0];
    assert_eq!(
        (sa.spi_in, sa.rx_packets, sa.tx_packets),
        (SPI_UP, 1, 1),
        "{sa:?}"
    );
    let counters = hub.dp.nhrp_counters();
    assert_eq!(
        (counters.queue_full, counters.unknown_link),
        (0, 0),
        "{counters:?}"
    );

    // A tunnel-mode peer has SAs but no link to carry GRE.
    let tunnel_va = VaId::virtual_access(9);
    let far = Ipv4Addr::new(192, 0, 2, 3);
    hub.dp
        .create_virtual_access(&spec(tunnel_va, HUB, far))
        .unwrap();
    hub.dp
        .install_sa(&SaPair {
            spi_in: 0xc0de_0901,
            spi_out: 0xc0de_0902,
            mode: Mode::Tunnel,
            ..sa_pair(tunnel_va, HUB, far)
        })
        .unwrap();
    let err = hub.dp.send_nhrp(tunnel_va, &request).unwrap_err();
    assert!(matches!(err, DatapathError::Unsupported(_)), "{err}");
    assert!(
        err.to_string()
            .contains("a tunnel-mode peer has no GRE link, and NHRP travels in GRE"),
        "{err}"
    );
    hub.dp.remove_virtual_access(tunnel_va).unwrap();

    // Gone with its virtual-access.
    hub.dp.remove_virtual_access(HUB_VA).unwrap();
    let err = hub.dp.send_nhrp(HUB_VA, &reply_bytes()).unwrap_err();
    assert!(
        matches!(err, DatapathError::NoSuchInterface(HUB_VA)),
        "{err}"
    );
    let links = text(
        &hub.ns
            .ip(["-o", "link", "show", "type", "gre"])
            .unwrap()
            .stdout,
    );
    assert!(!links.contains("va7"), "{links}");

    // The readers stop promptly: they are woken, not left to time out.
    // A functional bound with a wide margin for the emulated CPU of the VM
    // tier (it takes milliseconds); the time goes to the output.
    for end in [&hub, &spoke] {
        let started = Instant::now();
        end.dp.shutdown();
        eprintln!("datapath shutdown took {:?}", started.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
    spoke.dp.remove_virtual_access(SPOKE_VA).unwrap();
    drop((hub, spoke));
}

fn reply_bytes() -> Vec<u8> {
    resolution_request(HUB, HUB_INNER, SPOKE_INNER)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Links and XFRM state of `ns`, for a failure message.
fn diagnostics(ns: &Netns) -> String {
    let run = |args: &[&str]| {
        ns.ip(args)
            .map_or_else(|e| format!("{e:#}"), |o| text(&o.stdout))
    };
    format!(
        "{}{}",
        run(&["-d", "-s", "link", "show"]),
        run(&["-s", "xfrm", "state"])
    )
}

/// The errors that need no GRE: an unknown virtual-access, and one whose
/// SA (and so its link) is not there yet. Runs on any kernel.
#[test]
fn nhrp_to_a_virtual_access_without_a_link_is_refused() {
    let lab = integration::Lab::new("kdpnhrperr").unwrap();
    let ns = lab.netns("hub").unwrap();
    ns.run_in(|| {
        // Without events: a send-only socket.
        let dp = KernelDatapath::open(None).unwrap();
        let err = dp.send_nhrp(HUB_VA, &reply_bytes()).unwrap_err();
        assert!(
            matches!(err, DatapathError::NoSuchInterface(HUB_VA)),
            "{err}"
        );
        assert_eq!(err.to_string(), "Virtual-Access7 does not exist");
        dp.create_virtual_access(&spec(HUB_VA, HUB, SPOKE)).unwrap();
        let err = dp.send_nhrp(HUB_VA, &reply_bytes()).unwrap_err();
        assert!(matches!(err, DatapathError::Unsupported(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "Virtual-Access7: no GRE link for NHRP before the peer's SA is installed"
        );
        dp.remove_virtual_access(HUB_VA).unwrap();
        assert_eq!(dp.nhrp_counters(), super::NhrpCounters::default());
        assert_eq!(dp.report().global.nhrp_to_control, 0);
        dp.shutdown();
    })
    .unwrap();
}
