//! NHRP through the real kernel datapath: a hub and a spoke namespace joined
//! by a veth pair, a [`KernelDatapath`] in each with a virtual-access and a
//! transport-mode SA pair (fixed AES-GCM keys), so that NHRP goes GRE over
//! ESP as in production. Needs ip_gre and esp4: the VM tier runs it; a host
//! without them skips it (or fails it under `GATEWAY_REQUIRE_KERNEL_DATAPATH`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use integration::Netns;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::{KernelDatapath, State, ipsec::InstalledSa};
use crate::{
    iface::{
        Datapath, DatapathError, DatapathEvent, Route, SaLifetime, SaPair, VaId, VirtualAccessSpec,
    },
    ipsec::{Encr, Mode, SaKeys},
    net::{IPPROTO_ESP, Ipv4Prefix},
    sys::xfrm::{
        UdpEncap, Xfrm, XfrmEvent, XfrmLifetime, XfrmMapping, XfrmStateId, XfrmStateInfo,
        XfrmStateStats, set_udp_encap_espinudp,
    },
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

// --- Rekeying, lifetimes, ESN and NAT rebinding ----------------------------

/// Generation `n` of the SA pair of `va` (0 is [`sa_pair`]'s): SPIs and
/// keys of its own, so that two generations can live side by side.
fn generation(va: VaId, local: Ipv4Addr, remote: Ipv4Addr, n: u8) -> SaPair {
    let base = sa_pair(va, local, remote);
    let (up, down) = (keys(0x10 + n), keys(0x40 + n));
    let hub = local == HUB;
    let shift = u32::from(n) << 8;
    SaPair {
        spi_in: base.spi_in + shift,
        spi_out: base.spi_out + shift,
        inbound: if hub { up.clone() } else { down.clone() },
        outbound: if hub { down } else { up },
        ..base
    }
}

/// Puts `sa` in the datapath's books as if installed, without the kernel
/// (which lacks esp4 on hosts outside the VM tier): for the logic that
/// needs no packets.
fn book_pair(dp: &KernelDatapath, sa: &SaPair) {
    let mut s = dp.state();
    let states = State::states(sa, sa.va.raw(), 0).unwrap();
    s.vas.get_mut(&sa.va).unwrap().pairs.push(InstalledSa {
        spi_in: sa.spi_in,
        spi_out: sa.spi_out,
        local: sa.local,
        remote: sa.remote,
        mode: sa.mode,
        states,
        outbound_installed: true,
        retired: false,
        soft_reported: false,
        last_moved: None,
    });
}

fn expire(src: Ipv4Addr, dst: Ipv4Addr, spi: u32, hard: bool) -> XfrmEvent {
    XfrmEvent::Expire {
        state: XfrmStateInfo {
            id: XfrmStateId {
                src,
                dst,
                spi,
                proto: IPPROTO_ESP,
                reqid: HUB_VA.raw(),
            },
            esn: false,
            lifetime: XfrmLifetime::default(),
            stats: XfrmStateStats::default(),
            encap: None,
            replay: None,
            mapping_interval: None,
        },
        hard,
    }
}

/// A hub's datapath in a fresh namespace with two pairs in UDP in its
/// books (an old and a new generation), handed to `f` with them.
fn with_booked_pairs(tag: &str, f: impl FnOnce(&KernelDatapath, &SaPair, &SaPair) + Send) {
    let lab = integration::Lab::new(tag).unwrap();
    let ns = lab.netns("hub").unwrap();
    ns.run_in(|| {
        let dp = KernelDatapath::open(None).unwrap();
        dp.create_virtual_access(&spec(HUB_VA, HUB, SPOKE)).unwrap();
        let [old, new] = [0, 1].map(|n| SaPair {
            encap: Some((4500, 4501)),
            ..generation(HUB_VA, HUB, SPOKE, n)
        });
        book_pair(&dp, &old);
        book_pair(&dp, &new);
        f(&dp, &old, &new);
        dp.remove_virtual_access(HUB_VA).unwrap();
        dp.shutdown();
    })
    .unwrap();
}

/// What the monitor makes of the kernel's expire events, on any kernel:
/// the events are fed in, the pairs are in the books only.
#[test]
fn expire_events_become_sa_expired_once_per_pair() {
    with_booked_pairs("kdpexpire", |dp, old, new| {
        let now = Instant::now();
        let mut s = dp.state();
        let soft = |spi_in| DatapathEvent::SaExpired {
            va: HUB_VA,
            spi_in,
            hard: false,
        };
        // The outbound state's soft expiry is the pair's, named by its
        // inbound SPI; the inbound state's after it is not reported again.
        assert_eq!(
            s.on_xfrm_event(expire(HUB, SPOKE, old.spi_out, false), now),
            Some(soft(old.spi_in))
        );
        assert_eq!(
            s.on_xfrm_event(expire(SPOKE, HUB, old.spi_in, false), now),
            None
        );
        assert_eq!(
            s.on_xfrm_event(expire(SPOKE, HUB, new.spi_in, false), now),
            Some(soft(new.spi_in))
        );
        // Not ours: another SPI, or ours to another address.
        assert_eq!(s.on_xfrm_event(expire(SPOKE, HUB, 0x1234, true), now), None);
        assert_eq!(
            s.on_xfrm_event(expire(SPOKE, SPOKE, old.spi_in, true), now),
            None
        );
        // A hard expiry removes the pair (the kernel deleted the state; the
        // other goes too), once.
        let hard = DatapathEvent::SaExpired {
            va: HUB_VA,
            spi_in: old.spi_in,
            hard: true,
        };
        assert_eq!(
            s.on_xfrm_event(expire(SPOKE, HUB, old.spi_in, true), now),
            Some(hard)
        );
        assert_eq!(
            s.on_xfrm_event(expire(HUB, SPOKE, old.spi_out, true), now),
            None
        );
        let left: Vec<u32> = s.vas[&HUB_VA].pairs.iter().map(|p| p.spi_in).collect();
        assert_eq!(left, vec![new.spi_in]);
        // Counted by the thread, not an event.
        assert_eq!(s.on_xfrm_event(XfrmEvent::Lost, now), None);
        drop(s);
        assert_eq!(dp.sa_event_counters(), super::SaEventCounters::default());
    });
}

/// The kernel's NAT mapping events as PeerMoved: an inbound SA's only, not
/// to where the peer is, at most once a second.
#[test]
fn mapping_events_become_peer_moved_at_most_once_a_second() {
    with_booked_pairs("kdpmapping", |dp, old, new| {
        let now = Instant::now();
        let mut s = dp.state();
        let moved_to: SocketAddrV4 = "192.0.2.2:61000".parse().unwrap();
        let mapping = |dst, spi, new| {
            XfrmEvent::Mapping(XfrmMapping {
                dst,
                spi,
                reqid: HUB_VA.raw(),
                old: SocketAddrV4::new(SPOKE, 4501),
                new,
            })
        };
        let moved = DatapathEvent::PeerMoved {
            va: HUB_VA,
            spi_in: new.spi_in,
            remote: moved_to,
        };
        assert_eq!(
            s.on_xfrm_event(mapping(HUB, new.spi_in, moved_to), now),
            Some(moved.clone())
        );
        let later = now + Duration::from_millis(500);
        assert_eq!(
            s.on_xfrm_event(mapping(HUB, new.spi_in, moved_to), later),
            None
        );
        let later = now + Duration::from_millis(1500);
        assert_eq!(
            s.on_xfrm_event(mapping(HUB, new.spi_in, moved_to), later),
            Some(moved)
        );
        // Where the peer already is: nothing moved.
        let there = SocketAddrV4::new(SPOKE, 4501);
        assert_eq!(s.on_xfrm_event(mapping(HUB, old.spi_in, there), now), None);
        // An outbound SPI has no mapping.
        assert_eq!(
            s.on_xfrm_event(mapping(SPOKE, old.spi_out, moved_to), now),
            None
        );
    });
}

/// The refusals that need no packets: pairs that cannot share an
/// interface, SPIs in use, unknown pairs, and a peer moving its address.
#[test]
fn sa_pairs_and_peer_moves_are_checked_before_the_kernel() {
    let lab = integration::Lab::new("kdppairs").unwrap();
    let ns = lab.netns("hub").unwrap();
    ns.run_in(|| {
        let dp = KernelDatapath::open(None).unwrap();
        dp.create_virtual_access(&spec(HUB_VA, HUB, SPOKE)).unwrap();
        let first = generation(HUB_VA, HUB, SPOKE, 0);
        book_pair(&dp, &first);

        let err = dp
            .install_sa(&SaPair {
                mode: Mode::Tunnel,
                ..generation(HUB_VA, HUB, SPOKE, 1)
            })
            .unwrap_err();
        assert!(matches!(err, DatapathError::Unsupported(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "Virtual-Access7: a new SA pair must have the mode and outer addresses of the \
             pairs there (Transport 192.0.2.1 -> 192.0.2.2), not Tunnel 192.0.2.1 -> 192.0.2.2"
        );
        let err = dp.install_sa(&first).unwrap_err();
        assert!(
            matches!(err, DatapathError::SpiInUse(spi) if spi == first.spi_in),
            "{err}"
        );

        let err = dp.remove_sa(HUB_VA, 0x1234).unwrap_err();
        assert!(matches!(err, DatapathError::NoSuchSa(0x1234)), "{err}");
        let err = dp
            .update_peer(VaId::virtual_access(99), "192.0.2.2:4501".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, DatapathError::NoSuchInterface(_)), "{err}");
        let err = dp
            .update_peer(HUB_VA, "192.0.2.9:4501".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, DatapathError::Unsupported(_)), "{err}");
        assert!(
            err.to_string().starts_with(
                "Virtual-Access7: the peer moved from 192.0.2.2 to 192.0.2.9, and the kernel \
                 datapath follows a port change only"
            ),
            "{err}"
        );
        // Raw ESP has no port: the endpoint is noted, no state changes.
        dp.update_peer(HUB_VA, "192.0.2.2:4501".parse().unwrap())
            .unwrap();
        assert_eq!(
            dp.state().vas[&HUB_VA].spec.remote_outer.to_string(),
            "192.0.2.2:4501"
        );
        // remove_sa of the booked pair: its states were never in this
        // kernel, which is no error (ESRCH, as after a hard expiry).
        dp.remove_sa(HUB_VA, first.spi_in).unwrap();
        assert!(dp.state().vas[&HUB_VA].pairs.is_empty());
        dp.remove_virtual_access(HUB_VA).unwrap();
    })
    .unwrap();
}

#[test]
fn sa_states_carry_lifetimes_esn_and_the_mapping_interval() {
    let sa = SaPair {
        esn: true,
        encap: Some((4500, 4501)),
        lifetime: SaLifetime {
            soft_bytes: Some(1000),
            hard_bytes: Some(2000),
            soft_seconds: Some(30),
            hard_seconds: None,
        },
        ..sa_pair(HUB_VA, HUB, SPOKE)
    };
    let [out, inbound] = State::states(&sa, 7, 0).unwrap();
    for state in [&out, &inbound] {
        assert!(state.esn);
        assert_eq!(state.replay_window, 64, "the kernel wants one with ESN");
        assert_eq!(
            (
                state.lifetime.soft_bytes,
                state.lifetime.hard_bytes,
                state.lifetime.soft_add_seconds,
                state.lifetime.hard_add_seconds
            ),
            (1000, 2000, 30, 0)
        );
    }
    // The outbound state announces the sequence number's wrap with a soft
    // packet limit; inbound counts no packets.
    assert_eq!(out.lifetime.soft_packets, u64::MAX - u64::from(u32::MAX));
    assert_eq!(inbound.lifetime.soft_packets, u64::MAX);
    let [plain_out, _] = State::states(&sa_pair(HUB_VA, HUB, SPOKE), 7, 0).unwrap();
    assert_eq!(plain_out.lifetime.soft_packets, (1 << 32) - (1 << 26));
    assert_eq!(plain_out.replay_window, 0);
    // Mapping changes are reported by inbound states in UDP only.
    assert_eq!(inbound.mapping_interval, Some(1));
    assert_eq!(out.mapping_interval, None);
    assert_eq!(
        (out.encap, inbound.encap),
        (
            Some(UdpEncap {
                sport: 4500,
                dport: 4501
            }),
            Some(UdpEncap {
                sport: 4501,
                dport: 4500
            })
        )
    );
}

// --- In the VM tier: packets ----------------------------------------------

const INNER_PORT: u16 = 7000;

/// A hub and a spoke joined by a veth pair, each with a datapath and an
/// interface (no SA yet), and UDP sockets on the inner addresses.
struct Pair {
    _lab: integration::Lab,
    _rt: tokio::runtime::Runtime,
    hub: End,
    spoke: End,
    hub_sock: Option<UdpSocket>,
    spoke_sock: Option<UdpSocket>,
    sent: u32,
}

fn pair_lab(tag: &str) -> Pair {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lab = integration::Lab::new(tag).unwrap();
    let hub_ns = lab.netns("hub").unwrap();
    let spoke_ns = lab.netns("spoke").unwrap();
    let (hub_link, spoke_link) = lab.veth(&hub_ns, &spoke_ns).unwrap();
    hub_link.add_addr("192.0.2.1/24").unwrap();
    spoke_link.add_addr("192.0.2.2/24").unwrap();
    let open = |ns: &Netns, va, local, remote| {
        let (tx, events) = mpsc::channel(64);
        let dp = ns
            .run_in(|| {
                let _rt = rt.enter();
                let dp = KernelDatapath::open(Some(&tx)).unwrap();
                dp.create_virtual_access(&spec(va, local, remote)).unwrap();
                dp
            })
            .unwrap();
        End {
            ns: ns.clone(),
            dp,
            events,
        }
    };
    let hub = open(&hub_ns, HUB_VA, HUB, SPOKE);
    let spoke = open(&spoke_ns, SPOKE_VA, SPOKE, HUB);
    Pair {
        _lab: lab,
        _rt: rt,
        hub,
        spoke,
        hub_sock: None,
        spoke_sock: None,
        sent: 0,
    }
}

impl Pair {
    /// Installs a pair at each end (inside its namespace: the link's
    /// sysctls are per namespace), then, the first time, the spoke's route
    /// to the hub and the sockets.
    fn install(&mut self, hub: &SaPair, spoke: &SaPair) {
        for (end, sa) in [(&self.hub, hub), (&self.spoke, spoke)] {
            end.ns.run_in(|| end.dp.install_sa(sa)).unwrap().unwrap();
        }
        if self.hub_sock.is_none() {
            self.spoke
                .dp
                .add_route(&Route {
                    prefix: Ipv4Prefix {
                        addr: HUB_INNER,
                        len: 32,
                    },
                    va: SPOKE_VA,
                    next_hop: None,
                })
                .unwrap();
            let bind = |ns: &Netns, addr| {
                ns.run_in(move || {
                    let s = UdpSocket::bind(SocketAddrV4::new(addr, INNER_PORT)).unwrap();
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    s
                })
                .unwrap()
            };
            self.hub_sock = Some(bind(&self.hub.ns, HUB_INNER));
            self.spoke_sock = Some(bind(&self.spoke.ns, SPOKE_INNER));
        }
    }

    /// A datagram of `len` bytes from the hub to the spoke and back through
    /// the GRE links and ESP, within [`WAIT`] each way (datagrams left from
    /// an earlier exchange are skipped by their number).
    fn round_trip(&mut self, len: usize) {
        self.sent += 1;
        let mut payload = vec![0u8; len.max(4)];
        payload[..4].copy_from_slice(&self.sent.to_be_bytes());
        let (hub, spoke) = (
            self.hub_sock.as_ref().unwrap(),
            self.spoke_sock.as_ref().unwrap(),
        );
        hub.send_to(&payload, SocketAddrV4::new(SPOKE_INNER, INNER_PORT))
            .unwrap();
        let expect = |sock: &UdpSocket, side: &str| loop {
            let mut buf = vec![0u8; 2048];
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if buf[..n] == payload[..] => return from,
                Ok(_) => {}
                Err(e) => panic!(
                    "datagram {} did not reach the {side} within {WAIT:?}: {e}\nhub: {}\nspoke: {}",
                    self.sent,
                    diagnostics(&self.hub.ns),
                    diagnostics(&self.spoke.ns)
                ),
            }
        };
        let from = expect(spoke, "spoke");
        spoke.send_to(&payload, from).unwrap();
        expect(hub, "hub");
    }

    /// Datagrams of `len` bytes from the spoke to the hub only.
    fn one_way_up(&mut self, len: usize) {
        self.sent += 1;
        let mut payload = vec![0u8; len.max(4)];
        payload[..4].copy_from_slice(&self.sent.to_be_bytes());
        let (hub, spoke) = (
            self.hub_sock.as_ref().unwrap(),
            self.spoke_sock.as_ref().unwrap(),
        );
        spoke
            .send_to(&payload, SocketAddrV4::new(HUB_INNER, INNER_PORT))
            .unwrap();
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, _) = hub.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "datagram {} did not reach the hub: {e}\nhub: {}",
                    self.sent,
                    diagnostics(&self.hub.ns)
                )
            });
            if buf[..n] == payload[..] {
                return;
            }
        }
    }

    /// A datagram of `len` bytes from the spoke to the hub, not waited for.
    fn send_up(&mut self, len: usize) {
        self.sent += 1;
        let spoke = self.spoke_sock.as_ref().unwrap();
        spoke
            .send_to(&vec![0u8; len], SocketAddrV4::new(HUB_INNER, INNER_PORT))
            .unwrap();
    }

    fn finish(self) {
        for end in [&self.hub, &self.spoke] {
            end.dp.shutdown();
        }
        let _ = self.hub.dp.remove_virtual_access(HUB_VA);
        let _ = self.spoke.dp.remove_virtual_access(SPOKE_VA);
    }
}

/// The (rx, tx) packets of the pair of `end` with `spi_in`.
fn sa_packets(end: &End, spi_in: u32) -> (u64, u64) {
    let report = end.dp.report();
    let sa = report
        .sas
        .iter()
        .find(|s| s.spi_in == spi_in)
        .unwrap_or_else(|| panic!("no SA {spi_in:#010x} in {report:?}"));
    (sa.rx_packets, sa.tx_packets)
}

/// The next SA event of `end` within `wait` (NHRP and hairpins skipped).
fn next_sa_event(end: &mut End, wait: Duration) -> Option<DatapathEvent> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match end.events.try_recv() {
            Ok(e @ (DatapathEvent::SaExpired { .. } | DatapathEvent::PeerMoved { .. })) => {
                return Some(e);
            }
            Ok(_) | Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
        }
    }
    None
}

#[test]
fn sa_pairs_make_before_break_when_the_kernel_has_ip_gre_and_esp4() {
    const TEST: &str = "sa_pairs_make_before_break_when_the_kernel_has_ip_gre_and_esp4";
    if kernel_lacks_gre_or_esp(TEST) {
        return;
    }
    let mut lab = pair_lab("kdprekey");
    let (hub0, spoke0) = (
        generation(HUB_VA, HUB, SPOKE, 0),
        generation(SPOKE_VA, SPOKE, HUB, 0),
    );
    lab.install(&hub0, &spoke0);
    lab.round_trip(100);
    assert_eq!(sa_packets(&lab.hub, hub0.spi_in), (1, 1));

    // A rekey the spoke initiated: its new pair sends at once; the hub
    // answered, so its new outbound SA waits for the old pair to go
    // (defer_outbound).
    let hub1 = SaPair {
        defer_outbound: true,
        ..generation(HUB_VA, HUB, SPOKE, 1)
    };
    let spoke1 = generation(SPOKE_VA, SPOKE, HUB, 1);
    lab.install(&hub1, &spoke1);
    for _ in 0..3 {
        lab.round_trip(100);
    }
    // Up on the new pair (the spoke's newest outbound state), down still on
    // the old one.
    assert_eq!(sa_packets(&lab.spoke, spoke1.spi_in), (0, 3));
    assert_eq!(sa_packets(&lab.spoke, spoke0.spi_in), (4, 1));
    assert_eq!(sa_packets(&lab.hub, hub1.spi_in), (3, 0));
    assert_eq!(sa_packets(&lab.hub, hub0.spi_in), (1, 4));

    // The old pair is deleted (its DELETE exchange is done) and lingers:
    // the hub's deferred outbound SA takes over at once, the old inbound
    // state stays to open what was already on its way.
    let hub_spis = |lab: &Pair| {
        let states = lab
            .hub
            .ns
            .run_in(|| Xfrm::open().unwrap().states().unwrap())
            .unwrap();
        let mut spis: Vec<u32> = states.iter().map(|s| s.spi).collect();
        spis.sort_unstable();
        spis
    };
    lab.hub.dp.retire_sa(HUB_VA, hub0.spi_in).unwrap();
    let spis = hub_spis(&lab);
    assert!(
        spis.contains(&hub0.spi_in) && !spis.contains(&hub0.spi_out),
        "{spis:x?}"
    );
    assert!(spis.contains(&hub1.spi_out), "{spis:x?}");
    for _ in 0..3 {
        lab.round_trip(100);
    }
    // Then it goes, at the hub first (the spoke still decrypts it).
    lab.hub.dp.remove_sa(HUB_VA, hub0.spi_in).unwrap();
    lab.spoke.dp.remove_sa(SPOKE_VA, spoke0.spi_in).unwrap();
    lab.round_trip(100);
    assert_eq!(sa_packets(&lab.hub, hub1.spi_in), (7, 4));
    assert_eq!(sa_packets(&lab.spoke, spoke1.spi_in), (4, 7));
    let report = lab.hub.dp.report();
    assert_eq!(report.sas.len(), 1, "{report:?}");
    // Only the new pair's states are left, the policies with them.
    let spis = hub_spis(&lab);
    let mut expected = vec![hub1.spi_in, hub1.spi_out];
    expected.sort_unstable();
    assert_eq!(spis, expected);
    let err = lab.hub.dp.remove_sa(HUB_VA, hub0.spi_in).unwrap_err();
    assert!(matches!(err, DatapathError::NoSuchSa(_)), "{err}");

    // A third generation without deferral: the newest outbound state sends
    // at once, at both ends.
    let (hub2, spoke2) = (
        generation(HUB_VA, HUB, SPOKE, 2),
        generation(SPOKE_VA, SPOKE, HUB, 2),
    );
    lab.install(&hub2, &spoke2);
    lab.round_trip(100);
    assert_eq!(sa_packets(&lab.hub, hub2.spi_in), (1, 1));
    assert_eq!(sa_packets(&lab.hub, hub1.spi_in), (7, 4));
    lab.finish();
}

#[test]
fn esn_carries_traffic_across_2_pow_32_when_the_kernel_has_ip_gre_and_esp4() {
    const TEST: &str = "esn_carries_traffic_across_2_pow_32_when_the_kernel_has_ip_gre_and_esp4";
    if kernel_lacks_gre_or_esp(TEST) {
        return;
    }
    let mut lab = pair_lab("kdpesn");
    // Both ends start at 2^32 - 3: the third packet each way is 2^32, whose
    // high half is only in the ICV (RFC 4303 section 2.2.1).
    let start = (1u64 << 32) - 3;
    for end in [&lab.hub, &lab.spoke] {
        end.dp.state().initial_seq = start;
    }
    let esn = |sa: SaPair| SaPair { esn: true, ..sa };
    let (hub, spoke) = (
        esn(sa_pair(HUB_VA, HUB, SPOKE)),
        esn(sa_pair(SPOKE_VA, SPOKE, HUB)),
    );
    lab.install(&hub, &spoke);
    for _ in 0..6 {
        lab.round_trip(100);
    }
    assert_eq!(sa_packets(&lab.hub, hub.spi_in), (6, 6));
    let (out, inbound) = lab
        .hub
        .ns
        .run_in(|| {
            let mut x = Xfrm::open().unwrap();
            (
                x.get_state(SPOKE, hub.spi_out).unwrap(),
                x.get_state(HUB, hub.spi_in).unwrap(),
            )
        })
        .unwrap();
    assert!(out.esn && inbound.esn);
    assert_eq!(out.replay.map(|r| r.oseq), Some(start + 6), "{out:?}");
    assert_eq!(
        inbound.replay.map(|r| r.seq),
        Some(start + 6),
        "{inbound:?}"
    );
    assert_eq!(inbound.stats.integrity_failed, 0);
    lab.finish();
}

#[test]
fn sa_lifetimes_expire_soft_then_hard_when_the_kernel_has_ip_gre_and_esp4() {
    const TEST: &str = "sa_lifetimes_expire_soft_then_hard_when_the_kernel_has_ip_gre_and_esp4";
    if kernel_lacks_gre_or_esp(TEST) {
        return;
    }
    let mut lab = pair_lab("kdplife");
    // Bytes: a few datagrams of 500 bytes reach the soft limit, a few more
    // the hard one.
    let hub = SaPair {
        lifetime: SaLifetime {
            soft_bytes: Some(3_000),
            hard_bytes: Some(8_000),
            ..SaLifetime::default()
        },
        ..sa_pair(HUB_VA, HUB, SPOKE)
    };
    lab.install(&hub, &sa_pair(SPOKE_VA, SPOKE, HUB));
    let mut seen = Vec::new();
    for _ in 0..40 {
        // Not waited for: the packet after the hard limit is dropped.
        lab.send_up(500);
        while let Some(e) = next_sa_event(&mut lab.hub, Duration::from_millis(200)) {
            seen.push(e);
        }
        if seen.len() >= 2 {
            break;
        }
    }
    let expired = |hard| DatapathEvent::SaExpired {
        va: HUB_VA,
        spi_in: hub.spi_in,
        hard,
    };
    // The hard expiry's removal happens before its event is sent.
    assert_eq!(seen, vec![expired(false), expired(true)]);
    assert!(lab.hub.dp.report().sas.is_empty());
    let left = lab
        .hub
        .ns
        .run_in(|| Xfrm::open().unwrap().states().unwrap())
        .unwrap();
    assert_eq!(left, vec![], "both states of the pair are gone");
    assert!(next_sa_event(&mut lab.hub, Duration::from_secs(2)).is_none());

    // Seconds: soft after 1, hard after 3 (the kernel's timer; a wide
    // margin for the emulated CPU).
    let timed = SaPair {
        lifetime: SaLifetime {
            soft_seconds: Some(1),
            hard_seconds: Some(3),
            ..SaLifetime::default()
        },
        ..generation(HUB_VA, HUB, SPOKE, 1)
    };
    lab.hub
        .ns
        .run_in(|| lab.hub.dp.install_sa(&timed))
        .unwrap()
        .unwrap();
    let expired = |hard| DatapathEvent::SaExpired {
        va: HUB_VA,
        spi_in: timed.spi_in,
        hard,
    };
    assert_eq!(next_sa_event(&mut lab.hub, WAIT), Some(expired(false)));
    assert_eq!(next_sa_event(&mut lab.hub, WAIT), Some(expired(true)));
    assert!(lab.hub.dp.report().sas.is_empty());
    assert_eq!(lab.hub.dp.sa_event_counters().queue_full, 0);
    lab.finish();
}

#[test]
fn update_peer_moves_the_udp_port_when_the_kernel_has_ip_gre_and_esp4() {
    const TEST: &str = "update_peer_moves_the_udp_port_when_the_kernel_has_ip_gre_and_esp4";
    if kernel_lacks_gre_or_esp(TEST) {
        return;
    }
    let mut lab = pair_lab("kdpnat");
    // ESP in UDP: the hub on 4500, the spoke on 4501, each with a socket
    // that hands ESP to the kernel (as the daemon's port 4500 socket does).
    let encap_socket = |ns: &Netns, addr: &str| {
        let addr: SocketAddrV4 = addr.parse().unwrap();
        ns.run_in(move || {
            let s = UdpSocket::bind(addr).unwrap();
            set_udp_encap_espinudp(&s).unwrap();
            s
        })
        .unwrap()
    };
    let _hub_4500 = encap_socket(&lab.hub.ns, "192.0.2.1:4500");
    let spoke_4501 = encap_socket(&lab.spoke.ns, "192.0.2.2:4501");
    let hub = SaPair {
        encap: Some((4500, 4501)),
        ..sa_pair(HUB_VA, HUB, SPOKE)
    };
    let spoke = SaPair {
        encap: Some((4501, 4500)),
        ..sa_pair(SPOKE_VA, SPOKE, HUB)
    };
    lab.install(&hub, &spoke);
    lab.round_trip(100);

    // The spoke's NAT mapping moves to port 4502: its outbound SA now
    // leaves from there (the spoke's kernel state, changed under its
    // datapath, plays the NAT), and only port 4502 takes ESP back.
    let moved = SocketAddrV4::new(SPOKE, 4502);
    let [mut out, _] = State::states(&spoke, SPOKE_VA.raw(), 0).unwrap();
    out.encap = Some(UdpEncap {
        sport: 4502,
        dport: 4500,
    });
    lab.spoke
        .ns
        .run_in(|| Xfrm::open().unwrap().update_state(&out))
        .unwrap()
        .unwrap();
    drop(spoke_4501);
    let _spoke_4502 = encap_socket(&lab.spoke.ns, "192.0.2.2:4502");
    // Authenticated ESP from the new port: the hub hears of it.
    lab.one_way_up(100);
    assert_eq!(
        next_sa_event(&mut lab.hub, WAIT),
        Some(DatapathEvent::PeerMoved {
            va: HUB_VA,
            spi_in: hub.spi_in,
            remote: moved,
        })
    );

    // The control plane follows: the hub's states move to 4502.
    lab.hub.dp.update_peer(HUB_VA, moved).unwrap();
    let (hub_out, hub_in) = lab
        .hub
        .ns
        .run_in(|| {
            let mut x = Xfrm::open().unwrap();
            (
                x.get_state(SPOKE, hub.spi_out).unwrap(),
                x.get_state(HUB, hub.spi_in).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(
        (hub_out.encap, hub_in.encap),
        (
            Some(UdpEncap {
                sport: 4500,
                dport: 4502
            }),
            Some(UdpEncap {
                sport: 4502,
                dport: 4500
            })
        )
    );
    for _ in 0..3 {
        lab.round_trip(100);
    }
    // Where the peer now is, nothing more is reported.
    assert!(next_sa_event(&mut lab.hub, Duration::from_secs(3)).is_none());
    assert_eq!(
        lab.hub.dp.report().virtual_access[0].remote_outer,
        "192.0.2.2:4502"
    );
    let err = lab
        .hub
        .dp
        .update_peer(HUB_VA, "192.0.2.3:4502".parse().unwrap())
        .unwrap_err();
    assert!(matches!(err, DatapathError::Unsupported(_)), "{err}");
    lab.finish();
}
